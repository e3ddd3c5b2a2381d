/**
 * `lading push` against the real CNCF distribution registry (Debian docker-registry),
 * checked independently with skopeo: `inspect --raw` (the digest lading reports is that of
 * the bytes served) and `copy --all` (every blob fetched and verified).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { main } from '../../src/cli/main';
import { DigestCache } from '../../src/compress/cache';
import { copyImage, type CopyOptions } from '../../src/copy/engine';
import { isLadingError } from '../../src/errors';
import { RegistryClient } from '../../src/registry/client';
import { RegistryDestination } from '../../src/registry/destination';
import { digestMismatch, availablePlatforms, FORMAT_BUILDERS, pushablePlatforms, legacyDockerSave } from '../fixtures';
import { realToolArchives, realToolsGate } from '../fixtures/real-tools';
import { freePort, registryAvailable, startRegistry, type RegistryServer } from '../helpers/registry-server';
import { startFaultProxy } from '../registry/fault-proxy';

const tmp = mkdtempSync(join(tmpdir(), 'lading-push-reg-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const gate = registryAvailable ? {} : { skip: 'docker-registry is not installed (apt-get install docker-registry)' };

function skopeo(args: string[]): Buffer {
  return execFileSync('skopeo', args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 28 });
}

/** skopeo's view: the bytes it is served hash to `digest`, and every blob can be fetched and verified. */
function verifyWithSkopeo(host: string, repo: string, digest: string): void {
  const raw = skopeo(['inspect', '--tls-verify=false', '--raw', `docker://${host}/${repo}@${digest}`]);
  assert.equal(
    `sha256:${createHash('sha256').update(raw).digest('hex')}`,
    digest,
    'digest of the manifest bytes served',
  );
  const out = mkdtempSync(join(tmp, 'skopeo-'));
  skopeo([
    'copy',
    '--all',
    '--preserve-digests',
    '--src-tls-verify=false',
    `docker://${host}/${repo}@${digest}`,
    `oci:${out}:x`,
  ]);
  rmSync(out, { recursive: true, force: true });
}

describe('push to a registry', gate, () => {
  let reg: RegistryServer;
  let n = 0;
  const repo = (): string => `lading/test${++n}`;
  before(async () => {
    reg = await startRegistry();
  });
  after(async () => {
    await reg.stop();
  });
  const dest = (repository: string): RegistryDestination =>
    new RegistryDestination(new RegistryClient({ registry: reg.host }), repository);
  const push = async (input: string | NodeJS.ReadableStream, repository: string, opts: CopyOptions = {}) => {
    const d = dest(repository);
    try {
      return await copyImage(input, d, { cache: null, ...opts });
    } finally {
      await d.close();
    }
  };

  for (const [name, build] of FORMAT_BUILDERS) {
    it(`${name}: pushed and verified by skopeo`, async () => {
      const f = await build();
      for (const [i, img] of f.expected.images.entries()) {
        if (f.expected.images.length > 1 && img.names.length === 0) continue;
        const r = repo();
        const opts: CopyOptions = {
          tags: [`t${i}`],
          platforms: pushablePlatforms(img),
          pushForeignLayers: true,
          image: f.expected.images.length > 1 ? img.names[0] : undefined,
        };
        let res;
        try {
          res = await push(f.path, r, opts);
        } catch (e) {
          // distribution 2.8 refuses an index child that is not a manifest (an artifact blob):
          // lading says so, and names the remedy (the CLI words it: test/cli/remedies.test.ts).
          assert.ok(
            isLadingError(e) && /which .* refused$/.test(e.message) && e.remedy === 'choose-platforms',
            String(e),
          );
          const client = new RegistryClient({ registry: reg.host });
          assert.equal(await client.headManifest(r, `t${i}`), undefined, 'no tag written');
          await client.close();
          const plats = availablePlatforms(img);
          res = await push(f.path, r, { ...opts, platforms: plats });
        }
        verifyWithSkopeo(reg.host, r, res.digest!);
      }
    });
  }

  it('archives written by skopeo, umoci and buildah', realToolsGate(), async () => {
    const a = await realToolArchives();
    for (const path of [
      a.skopeoDockerArchive,
      a.skopeoOciArchive,
      a.skopeoOciLayout,
      a.buildahOciArchive,
      a.buildahDockerArchive,
      a.buildahIndexLayout,
    ]) {
      const r = repo();
      const res = await push(path, r, { tags: ['v1'] });
      verifyWithSkopeo(reg.host, r, res.digest!);
    }
    const r = repo();
    const res = await push(a.umociLayout, r, { image: 'arm64', tags: ['arm64'], compress: 'none' });
    verifyWithSkopeo(reg.host, r, res.digest!);
  });

  it(
    'multi-platform (buildah manifest list): all (digest preserved), one, several; re-push uploads nothing',
    realToolsGate(),
    async () => {
      const a = await realToolArchives();
      const layout = a.buildahIndexLayout;
      const stored = `sha256:${createHash('sha256')
        .update(skopeo(['inspect', '--raw', `oci:${layout}:list`]))
        .digest('hex')}`;
      const r = repo();
      const all = await push(layout, r, { tags: ['all'], compress: 'none' });
      assert.equal(all.digest, stored, 'the stored index is pushed byte for byte');
      assert.equal(all.manifests.length, 2);
      verifyWithSkopeo(reg.host, r, all.digest!);
      const plats = all.manifests.map((m) => m.platform!);
      const one = await push(layout, r, { tags: ['one'], platforms: [plats[1]!], compress: 'none' });
      assert.equal(one.manifests.length, 1);
      assert.match(one.mediaType, /manifest/);
      assert.equal(one.blobs.uploaded, 0, 'blobs shared with the first push are skipped');
      verifyWithSkopeo(reg.host, r, one.digest!);
      const two = await push(layout, r, { tags: ['two'], platforms: plats, compress: 'none' });
      assert.match(two.mediaType, /index/);
      verifyWithSkopeo(reg.host, r, two.digest!);
      const again = await push(layout, r, { tags: ['all'], compress: 'none' });
      assert.equal(again.blobs.uploaded, 0);
    },
  );

  it('--compress none|gzip|zstd, several tags, re-push through the digest cache uploads nothing', async () => {
    const f = await legacyDockerSave();
    const image = f.expected.images[0]!.names[0]!;
    const cache = new DigestCache(join(tmp, 'cache.jsonl'));
    for (const compress of ['none', 'gzip', 'zstd'] as const) {
      const r = repo();
      const res = await push(f.path, r, { image, tags: ['a', 'b'], compress, cache });
      verifyWithSkopeo(reg.host, r, res.digest!);
      const raw = JSON.parse(
        skopeo(['inspect', '--tls-verify=false', '--raw', `docker://${reg.host}/${r}:b`]).toString(),
      ) as { layers: { mediaType: string }[] };
      const want = compress === 'none' ? /\.tar$/ : compress === 'gzip' ? /gzip$/ : /zstd$/;
      for (const l of raw.layers) assert.match(l.mediaType, want);
      const again = await push(f.path, r, { image, tags: ['a', 'b'], compress, cache: new DigestCache(cache.file) });
      assert.equal(again.blobs.uploaded, 0, `re-push with --compress ${compress}`);
      assert.equal(again.digest, res.digest);
    }
  });

  it('standard input (one pass) gives the same image as the file', async () => {
    const f = await legacyDockerSave();
    const image = f.expected.images[0]!.names[0]!;
    const a = await push(f.path, repo(), { image, tags: ['x'] });
    const r = repo();
    const b = await push(createReadStream(f.path), r, { image, tags: ['x'] });
    assert.equal(b.digest, a.digest);
    verifyWithSkopeo(reg.host, r, b.digest!);
  });

  it('a blob that does not match its digest aborts the push: no tag is written', async () => {
    const f = await digestMismatch();
    const r = repo();
    // Either the bytes' digest or their inconsistency with the diff_id is caught before anything is tagged.
    await assert.rejects(
      push(f.path, r, { tags: ['bad'] }),
      (e) => isLadingError(e) && (e.code === 'DIGEST_MISMATCH' || e.code === 'DIFF_ID_MISMATCH'),
    );
    const client = new RegistryClient({ registry: reg.host });
    assert.equal(await client.headManifest(r, 'bad'), undefined);
    await client.close();
  });

  it('a 500 and a reset in the middle of blob uploads are retried; the push completes', async () => {
    let faults = 0;
    const proxy = await startFaultProxy({ port: reg.port }, (req) => {
      if ((req.method === 'PUT' || req.method === 'PATCH') && req.url?.includes('/blobs/uploads/') && faults < 2) {
        faults++;
        return faults === 1 ? { status: 500 } : 'reset';
      }
      return undefined;
    });
    try {
      const f = await legacyDockerSave();
      const d = new RegistryDestination(
        new RegistryClient({ registry: proxy.host, retryBaseDelayMs: 20 }),
        'lading/faulty',
      );
      const res = await copyImage(f.path, d, { cache: null, image: f.expected.images[0]!.names[0]!, tags: ['v1'] });
      await d.close();
      assert.equal(faults, 2);
      verifyWithSkopeo(reg.host, 'lading/faulty', res.digest!);
    } finally {
      await proxy.stop();
    }
  });

  it('CLI: registry down, wrong password, success line', async () => {
    const f = await legacyDockerSave();
    const image = f.expected.images[0]!.names[0]!;
    const out: string[] = [];
    const err: string[] = [];
    const io = {
      stdout: (s: string) => out.push(s),
      stderr: (s: string) => err.push(s),
      env: { ...process.env, XDG_CACHE_HOME: join(tmp, 'xdg'), DOCKER_CONFIG: join(tmp, 'nodocker') },
    };
    const down = await freePort();
    assert.equal(await main(['push', f.path, `127.0.0.1:${down}/x/y:1`, '--image', image, '--json'], io), 1);
    assert.equal((JSON.parse(out.join('')) as { error: { code: string } }).error.code, 'NETWORK');
    out.length = 0;
    const secured = await startRegistry({ htpasswd: { alice: 's3cret' } });
    try {
      assert.equal(
        await main(['push', f.path, `${secured.host}/x/y:1`, '--image', image, '--username', 'alice', '--json'], io),
        1,
      );
      const doc = JSON.parse(out.join('')) as { error: { code: string; message: string } };
      assert.equal(doc.error.code, 'AUTH');
      out.length = 0;
      assert.equal(await main(['push', f.path, `${reg.host}/cli/ok:1`, '--image', image], io), 0);
      assert.match(out[out.length - 1]!, new RegExp(`^${reg.host}/cli/ok@sha256:[0-9a-f]{64}$`));
    } finally {
      await secured.stop();
    }
  });
});
