/**
 * The copy engine end to end into an OCI image layout (`oci:DIR`): every fixture format,
 * platform selection, compression, digest preservation, re-push, stdin, dry run. What was
 * written is read back with lading's own verifying reader and, independently, with skopeo.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { inspectArchive } from '../../src/archive';
import { main } from '../../src/cli/main';
import { DigestCache } from '../../src/compress/cache';
import { copyImage, type CopyOptions } from '../../src/copy/engine';
import { isLadingError } from '../../src/errors';
import { parsePlatform } from '../../src/image/platform';
import { OciLayoutDestination } from '../../src/layout/destination';
import {
  BlobStore,
  dockerArchiveParts,
  file,
  freshPath,
  indexJson,
  OCI_LAYOUT,
  putImageManifest,
  sampleLayers,
  tarBuffer,
  withAnnotations,
} from '../fixtures';
import { writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import {
  compressedFixture,
  dockerSave25,
  dockerSave25Containerd,
  FORMAT_BUILDERS,
  legacyDockerSave,
  legacyDockerSaveTwoImages,
  ociArchive,
  ociLayoutDir,
} from '../fixtures';

const root = mkdtempSync(join(tmpdir(), 'lading-push-oci-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = (): string => join(root, `out${++n}`);
const skopeo = existsSync('/usr/bin/skopeo');

function push(input: string | NodeJS.ReadableStream, dir: string, opts: CopyOptions = {}) {
  return copyImage(input, new OciLayoutDestination(dir), { cache: null, ...opts });
}

/** Reads the layout back, verifying every blob, and returns the image with that tag. */
async function readBack(dir: string, tag: string) {
  const r = await inspectArchive(dir, { verify: true });
  const img = r.images.find((i) => i.names.includes(tag));
  assert.ok(img, `tag ${tag} in ${dir}`);
  return img;
}

describe('push to an OCI layout', () => {
  for (const [name, build] of FORMAT_BUILDERS) {
    it(`${name}: pushes, reads back verified, and skopeo agrees`, async () => {
      const f = await build();
      const images = f.expected.images;
      const dir = fresh();
      for (const [i, img] of images.entries()) {
        const available = img.manifests.filter((m) => m.available && !m.attestation);
        const platforms =
          available.length < img.manifests.length
            ? available.map((m) =>
                parsePlatform(
                  `${m.platform!.os}/${m.platform!.architecture}${m.platform!.variant ? `/${m.platform!.variant}` : ''}`,
                ),
              )
            : [];
        if (images.length > 1 && img.names.length === 0) continue; // unnamed legacy image: chosen by digest elsewhere
        const image = images.length > 1 ? img.names[0] : undefined;
        const tag = `t${i}`;
        const res = await push(f.path, dir, { tags: [tag], platforms, image });
        const back = await readBack(dir, tag);
        assert.equal(back.digest, res.digest);
        assert.equal(res.reference, `oci:${dir}@${res.digest}`);
        for (const m of back.manifests)
          for (const l of m.layers)
            assert.doesNotMatch(l.mediaType, /\.tar$/, 'uncompressed layers were gzip-compressed');
        if (skopeo && res.mediaType === 'application/vnd.oci.image.manifest.v1+json') {
          const raw = execFileSync('skopeo', ['inspect', '--raw', `oci:${dir}:${tag}`]);
          assert.equal(`sha256:${createHash('sha256').update(raw).digest('hex')}`, res.digest);
        }
      }
    });
  }

  it('keeps the stored bytes (and digest) of an OCI archive when nothing needs compressing', async () => {
    const f = await ociArchive();
    const img = f.expected.images.find((i) => i.names.includes('v1'))!;
    const res = await push(f.path, fresh(), { image: 'v1', tags: ['v1'], compress: 'none' });
    assert.equal(res.digest, img.digest);
    assert.deepEqual(res.rewritten, []);
  });

  it('re-push uploads nothing (the digest cache remembers what compression made)', async () => {
    const f = await legacyDockerSave();
    const dir = fresh();
    const cache = new DigestCache(join(root, 'cache', 'digests.jsonl'));
    const first = await push(f.path, dir, { tags: ['a'], image: f.expected.images[0]!.names[0]!, cache });
    assert.ok(first.blobs.uploaded > 0);
    const again = await push(f.path, dir, {
      tags: ['a'],
      image: f.expected.images[0]!.names[0]!,
      cache: new DigestCache(cache.file),
    });
    assert.equal(again.blobs.uploaded, 0);
    assert.equal(again.digest, first.digest);
  });

  it('zstd compression makes OCI zstd layers, and stdin gives the same digest as the file', async () => {
    const f = await legacyDockerSave();
    const image = f.expected.images[0]!.names[0]!;
    const a = await push(f.path, fresh(), { tags: ['z'], compress: 'zstd', image });
    const b = await push(createReadStream(f.path), fresh(), { tags: ['z'], compress: 'zstd', image });
    assert.equal(a.digest, b.digest);
    const gz = compressedFixture(f, 'gzip');
    const c = await push(createReadStream((await gz).path), fresh(), { tags: ['z'], compress: 'zstd', image });
    assert.equal(c.digest, a.digest);
  });

  it('platform selection: all (index preserved), one (manifest alone), several (new index)', async () => {
    const f = await ociLayoutDir();
    const multi = f.expected.images.find(
      (i) => i.mediaType.includes('index') && i.manifests.filter((m) => m.available && !m.attestation).length >= 2,
    );
    assert.ok(multi, 'the OCI layout fixture has a multi-platform index');
    const image = multi.names[0] ?? multi.digest!;
    const all = await push(f.path, fresh(), { image, tags: ['all'], compress: 'none' });
    assert.equal(all.digest, multi.digest);
    const plats = multi.manifests
      .filter((m) => m.platform && !m.attestation)
      .map((m) =>
        parsePlatform(
          `${m.platform!.os}/${m.platform!.architecture}${m.platform!.variant ? `/${m.platform!.variant}` : ''}`,
        ),
      );
    const one = await push(f.path, fresh(), { image, tags: ['one'], platforms: [plats[0]!], compress: 'none' });
    assert.equal(one.manifests.length, 1);
    assert.match(one.mediaType, /manifest/);
    const several = await push(f.path, fresh(), {
      image,
      tags: ['two'],
      platforms: plats.slice(0, 2),
      compress: 'none',
    });
    assert.match(several.mediaType, /index/);
    assert.equal(several.manifests.length, 2);
  });

  it('containerd store archive: all platforms refused (content absent), one platform works', async () => {
    const f = await dockerSave25Containerd();
    await assert.rejects(
      push(f.path, fresh(), { tags: ['x'] }),
      // The library names the remedy; the CLI words it (test/cli/remedies.test.ts).
      (e) => isLadingError(e) && e.code === 'BLOB_MISSING' && e.remedy === 'choose-platforms',
    );
    const res = await push(f.path, fresh(), { tags: ['x'], platforms: [parsePlatform('linux/amd64')] });
    assert.equal(res.manifests.length, 1);
    await assert.rejects(
      push(f.path, fresh(), { tags: ['x'], platforms: [parsePlatform('linux/s390x')] }),
      (e) => isLadingError(e) && e.code === 'PLATFORM_NOT_FOUND',
    );
  });

  it('several images: --image required, unknown names listed', async () => {
    const f = await legacyDockerSaveTwoImages();
    await assert.rejects(push(f.path, fresh()), (e) => isLadingError(e) && e.code === 'AMBIGUOUS_IMAGE');
    await assert.rejects(
      push(f.path, fresh(), { image: 'nope:1' }),
      (e) => isLadingError(e) && e.code === 'IMAGE_NOT_FOUND' && e.message.includes(f.expected.images[0]!.names[0]!),
    );
  });

  // Compressed layers whose config diff_id is wrong (the config names the other layer's).
  async function wrongDiffIds(kind: 'oci' | 'legacy'): Promise<string> {
    const [a, b] = await sampleLayers(`diffid-${kind}`, ['gzip', 'gzip']);
    const layers = [a!, { ...b!, diffId: a!.diffId }];
    const p = freshPath(`wrong-diffid-${kind}.tar`);
    if (kind === 'legacy') {
      const { entries } = dockerArchiveParts(
        [{ repoTags: ['lading/diffid:1'], platform: { os: 'linux', architecture: 'amd64' }, layers }],
        { order: 'sorted' },
      );
      writeFileSync(p, await tarBuffer(entries));
    } else {
      const store = new BlobStore();
      const m = putImageManifest(store, { os: 'linux', architecture: 'amd64' }, layers);
      writeFileSync(
        p,
        await tarBuffer([
          ...store.entries(),
          file('index.json', indexJson([withAnnotations(m.desc, { 'org.opencontainers.image.ref.name': 'x' })])),
          file('oci-layout', OCI_LAYOUT),
        ]),
      );
    }
    return p;
  }
  const viaStdin = (p: string): NodeJS.ReadableStream => Readable.from(createReadStream(p));

  it('compressed layers with a declared digest: verified by that digest; diff_ids checked with verifyDiffIds (file and stdin)', async () => {
    const p = await wrongDiffIds('oci');
    // The bytes are exactly those the manifest names: pushed as they are, digest preserved.
    const res = await push(p, fresh(), { tags: ['x'] });
    assert.equal(res.blobs.uploaded, 3);
    await push(viaStdin(p), fresh(), { tags: ['x'] });
    for (const input of [p, viaStdin(p)]) {
      const dir = fresh();
      await assert.rejects(
        push(input, dir, { tags: ['x'], verifyDiffIds: true }),
        (e) => isLadingError(e) && e.code === 'DIFF_ID_MISMATCH' && /diff_id/.test(e.message),
      );
      assert.ok(
        !existsSync(join(dir, 'index.json')) || !readFileSync(join(dir, 'index.json'), 'utf8').includes('"x"'),
        'no tag written',
      );
    }
    const io = {
      stdout: () => undefined,
      stderr: () => undefined,
      env: { ...process.env, XDG_CACHE_HOME: join(root, 'xdg-diffid') },
    };
    assert.equal(await main(['push', p, `oci:${fresh()}`, '--verify-diff-ids', '--quiet'], io), 1);
    assert.equal(await main(['push', p, `oci:${fresh()}`, '--quiet'], io), 0);
  });

  it('compressed layers of a legacy docker archive (no digest declared): always held to their diff_ids (file and stdin)', async () => {
    const p = await wrongDiffIds('legacy');
    for (const input of [p, viaStdin(p)]) {
      await assert.rejects(
        push(input, fresh(), { tags: ['x'] }),
        (e) => isLadingError(e) && e.code === 'DIFF_ID_MISMATCH',
      );
    }
  });

  it('dry run writes nothing', async () => {
    const f = await dockerSave25();
    const dir = fresh();
    const res = await push(f.path, dir, { tags: ['d'], dryRun: true });
    assert.ok((res.plan ?? []).length > 0);
    assert.equal(existsSync(dir) ? readdirSync(join(dir, 'blobs', 'sha256')).length : 0, 0);
  });

  it('CLI: pinned reference on the last stdout line, --json document, exit codes', async () => {
    const f = await legacyDockerSave();
    const out: string[] = [];
    const err: string[] = [];
    const io = {
      stdout: (s: string) => out.push(s),
      stderr: (s: string) => err.push(s),
      env: { ...process.env, XDG_CACHE_HOME: join(root, 'xdg') },
    };
    const dir = fresh();
    assert.equal(await main(['push', f.path, `oci:${dir}`, '--tag', 'v1'], io), 0);
    assert.match(out[out.length - 1]!, new RegExp(`^oci:${dir}@sha256:[0-9a-f]{64}$`));
    out.length = 0;
    assert.equal(await main(['push', f.path, `oci:${dir}`, '--tag', 'v1', '--json'], io), 0);
    const doc = JSON.parse(out.join('\n')) as {
      digest: string;
      reference: string;
      tags: string[];
      blobs: { uploaded: number; skipped: number };
    };
    assert.equal(doc.blobs.uploaded, 0);
    assert.deepEqual(doc.tags, ['v1']);
    assert.equal(await main(['push', f.path], io), 2);
    assert.equal(await main(['push', f.path, `oci:${dir}`, '--compress', 'lzma'], io), 2);
    assert.equal(await main(['push', join(root, 'missing.tar'), `oci:${dir}`], io), 1);
    assert.ok(err.some((l) => /lading: .*missing\.tar/.test(l)));
    assert.ok(!err.some((l) => /\n\s+at /.test(l)), 'no stack trace without --debug');
  });
});
