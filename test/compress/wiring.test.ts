/**
 * Every layer lading compresses goes through createCompressor, so the parallel gzip reaches
 * every destination (registry, both ECR transports, OCI layout) and the CDK handler, which
 * all push through the copy engine. Checked here end to end on the engine's two paths (an
 * archive file read by ranges, and a one-pass stream): the layer written is exactly what the
 * parallel compressor makes of the layer tar, a valid multi-block gzip member.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { AdaptiveGzip, BLOCK_SIZE } from '../../src/compress/adaptive-gzip';
import { DigestCache } from '../../src/compress/cache';
import { createCompressor } from '../../src/compress/codecs';
import { copyImage } from '../../src/copy/engine';
import { OciLayoutDestination } from '../../src/layout/destination';
import { dockerArchiveParts, file, hexOf, makeLayer, pseudoRandom, tarBuffer } from '../fixtures';

const root = mkdtempSync(join(tmpdir(), 'lading-gzip-wiring-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function gzipOf(data: Buffer): Promise<Buffer> {
  const gz = new AdaptiveGzip(1);
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

describe('the parallel gzip on every compression path', () => {
  it('createCompressor gives it for gzip', () => {
    assert.ok(createCompressor('gzip') instanceof AdaptiveGzip);
    assert.equal((createCompressor('gzip', 6) as AdaptiveGzip).level, 6);
  });

  it('a docker archive file and the same archive as a stream: the layer is the parallel gzip of its tar, and a re-push finds it in the cache', async () => {
    // Text and noise in many blocks: deflated and stored blocks both.
    const text = Buffer.from(Array.from({ length: 30_000 }, (_, i) => `usr/share/doc/file-${i % 611}.txt: some text\n`).join(''));
    const layer = await makeLayer([file('data/text.txt', text), file('data/noise.bin', pseudoRandom('wiring', 3 * BLOCK_SIZE + 99)), file('data/more.txt', text.subarray(0, 400_000))]);
    const parts = dockerArchiveParts([{ repoTags: ['wiring:1'], platform: { os: 'linux', architecture: 'amd64' }, layers: [layer] }], { order: 'sorted' });
    const archive = join(root, 'wiring.tar');
    writeFileSync(archive, await tarBuffer(parts.entries));
    const expected = await gzipOf(layer.tar);
    assert.ok(expected.length < layer.tar.length);

    const cache = new DigestCache(join(root, 'cache.jsonl'));
    const a = join(root, 'from-file');
    const res = await copyImage(archive, new OciLayoutDestination(a), { oci: true, cache, tags: ['1'] });
    const [fromFile] = layerBlobs(a, res.digest!);
    assert.ok(fromFile!.equals(expected), 'file path: the parallel gzip of the layer tar');

    const b = join(root, 'from-stream');
    const res2 = await copyImage(createReadStream(archive), new OciLayoutDestination(b), { oci: true, cache: null, tags: ['1'] });
    assert.equal(res2.digest, res.digest, 'same image digest from a stream');
    assert.ok(layerBlobs(b, res2.digest!)[0]!.equals(expected), 'stream path: the same bytes');

    assert.ok(gunzipSync(expected).equals(layer.tar));
    for (const tool of ['gzip', 'pigz']) {
      const t = spawnSync(tool, ['-t'], { input: expected });
      if (t.error && process.env.CI === undefined) continue;
      assert.equal(t.status, 0, `${tool} -t: ${t.stderr?.toString()}`);
    }

    // Re-push to the same layout: the cache names the compressed layer, which is there.
    const again = await copyImage(archive, new OciLayoutDestination(a), { oci: true, cache: new DigestCache(join(root, 'cache.jsonl')), tags: ['1'] });
    assert.equal(again.digest, res.digest);
    assert.equal(again.blobs.uploaded, 0, 'nothing compressed or written again');
  });
});
