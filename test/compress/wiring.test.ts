/**
 * Every layer lading compresses goes through createCompressor, so the parallel gzip reaches
 * every destination (registry, both ECR transports, OCI layout) and the CDK handler, which
 * all push through the copy engine. Checked here end to end on the engine's two paths (an
 * archive file read by ranges, and a one-pass stream): the layer written is exactly what the
 * parallel compressor makes of the layer tar, a valid multi-block gzip member.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { AdaptiveGzip, BLOCK_SIZE, DEFAULT_LEVEL, IGZIP_DEFAULT_LEVEL } from '../../src/compress/adaptive-gzip';
import { DigestCache } from '../../src/compress/cache';
import { createCompressor, describeCompression } from '../../src/compress/codecs';
import { igzip } from '../../src/compress/igzip';
import { copyImage } from '../../src/copy/engine';
import { OciLayoutDestination } from '../../src/layout/destination';
import { RegistryClient } from '../../src/registry/client';
import { RegistryDestination } from '../../src/registry/destination';
import { dockerArchiveParts, file, hexOf, makeLayer, pseudoRandom, tarBuffer, type Layer } from '../fixtures';
import { registryAvailable, startRegistry } from '../helpers/registry-server';

const root = mkdtempSync(join(tmpdir(), 'lading-gzip-wiring-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function gzipOf(data: Buffer): Promise<Buffer> {
  const gz = new AdaptiveGzip();
  const out: Buffer[] = [];
  gz.on('data', (c: Buffer) => out.push(Buffer.from(c)));
  const done = new Promise((resolve, reject) => {
    gz.once('end', resolve);
    gz.once('error', reject);
  });
  gz.end(data);
  await done;
  return Buffer.concat(out);
}

/** The layer blobs of the image `digest` in an OCI layout. */
function layerBlobs(dir: string, digest: string): Buffer[] {
  const blob = (d: string): Buffer => readFileSync(join(dir, 'blobs', 'sha256', hexOf(d)));
  const m = JSON.parse(blob(digest).toString('utf8')) as { layers: { digest: string }[] };
  return m.layers.map((l) => blob(l.digest));
}

/** A docker archive of one uncompressed layer of text and noise in many blocks (deflated and stored). */
async function wiringArchive(): Promise<{ archive: string; layer: Layer }> {
  const text = Buffer.from(
    Array.from({ length: 30_000 }, (_, i) => `usr/share/doc/file-${i % 611}.txt: some text\n`).join(''),
  );
  const layer = await makeLayer([
    file('data/text.txt', text),
    file('data/noise.bin', pseudoRandom('wiring', 3 * BLOCK_SIZE + 99)),
    file('data/more.txt', text.subarray(0, 400_000)),
  ]);
  const parts = dockerArchiveParts(
    [{ repoTags: ['wiring:1'], platform: { os: 'linux', architecture: 'amd64' }, layers: [layer] }],
    { order: 'sorted' },
  );
  const archive = join(root, 'wiring.tar');
  if (!existsSync(archive)) writeFileSync(archive, await tarBuffer(parts.entries));
  return { archive, layer };
}

describe('the parallel gzip on every compression path', () => {
  it('createCompressor gives it for gzip', () => {
    const gz = createCompressor('gzip') as AdaptiveGzip;
    assert.ok(gz instanceof AdaptiveGzip);
    assert.equal(gz.level, gz.engine === 'igzip' ? IGZIP_DEFAULT_LEVEL : DEFAULT_LEVEL);
    if (process.env.CI !== undefined) assert.equal(gz.engine, 'igzip', 'CI builds the igzip binding');
    // A level is zlib's, with or without the binding: the bytes do not depend on it.
    const six = createCompressor('gzip', 6) as AdaptiveGzip;
    assert.deepEqual([six.engine, six.level], ['zlib', 6]);
  });

  it('--debug says which engine and level compress, and where digests are computed', () => {
    const line = describeCompression('gzip', undefined);
    if (igzip())
      assert.match(line, /^compression: gzip, igzip level 2 \(ISA-L, native binding\); digests on the thread pool/);
    else assert.match(line, /^compression: gzip, zlib level 2 \(no native binding/);
    assert.match(describeCompression('gzip', 6), /^compression: gzip, zlib level 6 \(an explicit level is zlib's\)/);
    assert.match(describeCompression('none', undefined), /^compression: none; digests on/);
    const child = spawnSync(
      process.execPath,
      [
        '-e',
        `process.stdout.write(require(${JSON.stringify(join(__dirname, '..', '..', 'src', 'compress', 'codecs.js'))}).describeCompression('gzip'))`,
      ],
      { env: { ...process.env, LADING_NATIVE: '0' }, encoding: 'utf8' },
    );
    assert.equal(
      child.stdout,
      'compression: gzip, zlib level 2 (no native binding: npm rebuild lading with a C compiler and libisal-dev); digests on the main thread',
    );
  });

  it('a docker archive file and the same archive as a stream: the layer is the parallel gzip of its tar, and a re-push finds it in the cache', async () => {
    const { archive, layer } = await wiringArchive();
    const expected = await gzipOf(layer.tar);
    assert.ok(expected.length < layer.tar.length);

    const cache = new DigestCache(join(root, 'cache.jsonl'));
    const a = join(root, 'from-file');
    const res = await copyImage(archive, new OciLayoutDestination(a), { cache, tags: ['1'] });
    const [fromFile] = layerBlobs(a, res.digest!);
    assert.ok(fromFile!.equals(expected), 'file path: the parallel gzip of the layer tar');

    const b = join(root, 'from-stream');
    const res2 = await copyImage(createReadStream(archive), new OciLayoutDestination(b), {
      cache: null,
      tags: ['1'],
    });
    assert.equal(res2.digest, res.digest, 'same image digest from a stream');
    assert.ok(layerBlobs(b, res2.digest!)[0]!.equals(expected), 'stream path: the same bytes');

    assert.ok(gunzipSync(expected).equals(layer.tar));
    for (const tool of ['gzip', 'pigz']) {
      const t = spawnSync(tool, ['-t'], { input: expected });
      if (t.error && process.env.CI === undefined) continue;
      assert.equal(t.status, 0, `${tool} -t: ${t.stderr?.toString()}`);
    }

    // Re-push to the same layout: the cache names the compressed layer, which is there.
    const again = await copyImage(archive, new OciLayoutDestination(a), {
      cache: new DigestCache(join(root, 'cache.jsonl')),
      tags: ['1'],
    });
    assert.equal(again.digest, res.digest);
    assert.equal(again.blobs.uploaded, 0, 'nothing compressed or written again');
  });

  it(
    'pushed to a registry, skopeo pulls it and inflates it to the layer tar (its diff_id)',
    registryAvailable && existsSync('/usr/bin/skopeo') ? {} : { skip: 'needs docker-registry and skopeo' },
    async () => {
      const { archive, layer } = await wiringArchive();
      const reg = await startRegistry();
      try {
        const d = new RegistryDestination(new RegistryClient({ registry: reg.host }), 'wiring/gzip');
        const res = await copyImage(archive, d, { cache: null, tags: ['1'] }).finally(() => d.close());
        const out = join(root, 'pulled');
        execFileSync(
          'skopeo',
          [
            'copy',
            '--quiet',
            '--src-tls-verify=false',
            '--dest-decompress',
            `docker://${reg.host}/wiring/gzip@${res.digest}`,
            `dir:${out}`,
          ],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        );
        const digests = readdirSync(out)
          .filter((f) => /^[0-9a-f]{64}$/.test(f))
          .map(
            (f) =>
              `sha256:${createHash('sha256')
                .update(readFileSync(join(out, f)))
                .digest('hex')}`,
          );
        assert.ok(digests.includes(layer.diffId), `skopeo's inflated layer is the layer tar (${digests.join(', ')})`);
      } finally {
        await reg.stop();
      }
    },
  );
});
