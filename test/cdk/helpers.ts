/**
 * Helpers for the TarballImage tests: the handler bundle the construct ships (built into
 * this compile's output dir when missing), and sample archives written to temp files.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { sampleDockerArchive } from '../../src/sample';
import { TarballImageValidationError } from '../../src/cdk/tarball-image';
import {
  BlobStore,
  digestOf,
  file,
  freshPath,
  indexJson,
  json,
  MT,
  OCI_LAYOUT,
  putImageManifest,
  putIndex,
  sampleLayers,
  tarBuffer,
  withAnnotations,
  withPlatform,
} from '../fixtures';

/** Compile output root (dist/ or .build-cdk/): this file is OUT/test/cdk/helpers.js. */
export const OUT_ROOT = resolve(__dirname, '..', '..');
export const REPO_ROOT = resolve(OUT_ROOT, '..');

/** Makes sure OUT/cdk-handler/index.js exists, as `npm run build` leaves it. */
export function ensureHandlerBundle(): void {
  if (existsSync(join(OUT_ROOT, 'cdk-handler', 'index.js'))) return;
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'scripts', 'bundle-cdk-handler.js'), OUT_ROOT], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`bundling the handler failed: ${r.stderr}`);
}

/** The demo's sample image (docker save layout, linux/amd64, two uncompressed layers). */
export function sampleArchive(name = 'lading-demo:latest'): string {
  const p = freshPath('sample.tar');
  writeFileSync(p, sampleDockerArchive(name));
  return p;
}

/**
 * A complete multi-platform OCI archive: an index (ref.name `app:multi`) of linux/amd64 and
 * linux/arm64 (gzip layers) and a buildx attestation manifest (unknown/unknown).
 */
export async function multiPlatformArchive(): Promise<string> {
  const store = new BlobStore();
  const amd = putImageManifest(
    store,
    { os: 'linux', architecture: 'amd64' },
    await sampleLayers('mp-amd64', ['gzip', 'gzip']),
  );
  const arm = putImageManifest(store, { os: 'linux', architecture: 'arm64' }, await sampleLayers('mp-arm64', ['gzip']));
  const statement = json({
    _type: 'https://in-toto.io/Statement/v0.1',
    predicateType: 'https://spdx.dev/Document',
    subject: [{ name: 'app', digest: { sha256: amd.desc.digest.slice(7) } }],
    predicate: {},
  });
  const d = digestOf(statement);
  const att = putImageManifest(
    store,
    { os: 'unknown', architecture: 'unknown' },
    [{ tar: statement, diffId: d, compression: 'none', data: statement, digest: d, size: statement.length }],
    {
      layerMediaTypes: [MT.inToto],
    },
  );
  const index = putIndex(store, [
    withPlatform(amd.desc, { os: 'linux', architecture: 'amd64' }),
    withPlatform(arm.desc, { os: 'linux', architecture: 'arm64' }),
    withPlatform(
      att.desc,
      { os: 'unknown', architecture: 'unknown' },
      { 'vnd.docker.reference.digest': amd.desc.digest, 'vnd.docker.reference.type': 'attestation-manifest' },
    ),
  ]);
  const top = withAnnotations(index, { 'org.opencontainers.image.ref.name': 'app:multi' });
  const p = freshPath('multi-platform.tar');
  writeFileSync(
    p,
    await tarBuffer([...store.entries(), file('index.json', indexJson([top])), file('oci-layout', OCI_LAYOUT)]),
  );
  return p;
}

/** The actions of a policy statement, whether CloudFormation holds one or a list. */
export function actionsOf(s: { Action: string | string[] }): string[] {
  return Array.isArray(s.Action) ? s.Action : [s.Action];
}

/**
 * Expects `fn` to throw a one-line Error that starts with the construct path and matches `re`:
 * a TarballImageValidationError of that construct.
 */
export function throwsAt(fn: () => unknown, path: string, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Error);
    assert.ok(e instanceof TarballImageValidationError, `a TarballImageValidationError: ${String(e)}`);
    assert.equal(e.name, 'TarballImageValidationError');
    assert.equal(e.constructPath, path);
    assert.ok(e.message.startsWith(`${path}: `), `message names the path: ${e.message}`);
    assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}
