/**
 * S3Source against a real S3-compatible server (s3rver) behind a proxy that records each
 * GET's range and the body bytes it sent, and can cut a response short: small reads share
 * small blocks with a read-ahead that grows only over packed small entries, blob streams take
 * from those blocks what they hold, so an uncompressed archive is pushed with each byte read
 * once; a gzip archive is one sequential GET; a broken blob stream resumes from the last byte
 * received; reads past the end and a missing object behave.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { inspectArchive } from '../../src/archive';
import { S3Source, type S3SourceOptions } from '../../src/cdk/s3-source';
import { copyImage } from '../../src/copy/engine';
import { OciLayoutDestination } from '../../src/layout/destination';
import {
  BlobStore,
  dockerArchiveParts,
  file,
  indexJson,
  makeLayer,
  OCI_LAYOUT,
  pseudoRandom,
  putImageManifest,
  tarBuffer,
  withAnnotations,
  type Layer,
} from '../fixtures';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require('s3rver') as new (opts: Record<string, unknown>) => {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
};
const KiB = 1024;
const MiB = 1024 * KiB;
const AMD64 = { os: 'linux', architecture: 'amd64' };

interface Get {
  key: string;
  range: string;
  bytes: number;
}

/** Uncompressed layers holding one file of `size` random bytes each. */
function layers(seed: string, sizes: readonly number[]): Promise<Layer[]> {
  return Promise.all(sizes.map((n, i) => makeLayer([file(`data/${i}.bin`, pseudoRandom(`${seed}-${i}`, n))], 'none')));
}

/** docker save (Docker <= 24): <id>/{VERSION,json,layer.tar} in lexical order, directory entries, repositories. */
async function dockerArchive(seed: string, sizes: readonly number[]): Promise<Buffer> {
  const parts = dockerArchiveParts(
    [{ repoTags: [`lading/${seed}:1`], platform: AMD64, layers: await layers(seed, sizes) }],
    { order: 'sorted', repositories: true, dirEntries: true },
  );
  return tarBuffer(parts.entries);
}

/** An OCI archive: blobs/sha256/* (config, layers, manifest), then index.json and oci-layout. */
async function ociArchive(seed: string, sizes: readonly number[]): Promise<Buffer> {
  const store = new BlobStore();
  const m = putImageManifest(store, AMD64, await layers(seed, sizes));
  return tarBuffer([
    ...store.entries(),
    file('index.json', indexJson([withAnnotations(m.desc, { 'org.opencontainers.image.ref.name': seed })])),
    file('oci-layout', OCI_LAYOUT),
  ]);
}

describe('S3Source (ranged GETs over s3rver)', () => {
  let dir: string;
  let s3rver: InstanceType<typeof S3rver>;
  let proxy: Server;
  let s3: S3Client;
  const gets: Get[] = [];
  const ranges = (key: string): string[] => gets.filter((g) => g.key === key).map((g) => g.range);
  /** Cut the next response carrying more than 2 MiB after half of it. */
  let cutNextLarge = false;
  const data = pseudoRandom('s3-source', 5 * MiB + 123);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lading-s3src-'));
    s3rver = new S3rver({
      address: '127.0.0.1',
      port: 0,
      silent: true,
      directory: dir,
      configureBuckets: [{ name: 'b', configs: [] }],
    });
    const port = (await s3rver.run()).port;
    proxy = createServer((req, res) => {
      const g: Get | undefined =
        req.method === 'GET' && req.headers.range
          ? { key: req.url!.replace(/^\/b\//, '').replace(/\?.*$/, ''), range: req.headers.range, bytes: 0 }
          : undefined;
      if (g) gets.push(g);
      const up = request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
        res.writeHead(ur.statusCode!, ur.headers);
        // Headers go out now, not with the first body byte (which may never come: see the empty object).
        res.flushHeaders();
        const len = Number(ur.headers['content-length'] ?? 0);
        const cut = cutNextLarge && g !== undefined && len > 2 * MiB;
        if (cut) cutNextLarge = false;
        ur.on('data', (c: Buffer) => {
          if (cut && g!.bytes >= len / 2) return;
          if (g) g.bytes += c.length;
          res.write(c);
          if (cut && g!.bytes >= len / 2) res.destroy();
        });
        ur.on('end', () => res.end());
      });
      req.pipe(up);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    s3 = new S3Client({
      endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      maxAttempts: 1,
    });
    await s3.send(new PutObjectCommand({ Bucket: 'b', Key: 'obj', Body: data }));
  });
  after(async () => {
    s3.destroy();
    await new Promise((r) => proxy.close(r));
    await s3rver.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Stores `body` under `key`, pushes it to an OCI layout through an S3Source, and returns what was read. */
  async function push(
    key: string,
    body: Buffer,
    opts: Partial<S3SourceOptions> = {},
  ): Promise<{ src: S3Source; gets: Get[]; bytes: number; lines: string[]; summary: string }> {
    await s3.send(new PutObjectCommand({ Bucket: 'b', Key: key, Body: body }));
    gets.length = 0;
    const lines: string[] = [];
    const src = await S3Source.open({ client: s3, bucket: 'b', key, logger: (l) => lines.push(l), ...opts });
    const out = mkdtempSync(join(dir, 'layout-'));
    await copyImage(src, new OciLayoutDestination(out), {
      cache: null,
      tags: ['pushed'],
      logger: (l) => lines.push(l),
    });
    // What was pushed reads back whole and verified.
    const back = await inspectArchive(out, { verify: true });
    assert.equal(back.images.length, 1);
    const mine = gets.filter((g) => g.key === key);
    const bytes = mine.reduce((t, g) => t + g.bytes, 0);
    // The summary line the handler logs ('N GETs, X of Y bytes') counts what the server sent
    // (less, when a cut connection lost what it had in flight).
    assert.equal(src.stats.requests, mine.length, 'stats.requests counts every GET');
    if (lines.some((l) => /stream broke/.test(l)))
      assert.ok(src.stats.bytes <= bytes, `${src.stats.bytes} received, ${bytes} sent`);
    else assert.equal(src.stats.bytes, bytes, 'stats.bytes counts every body byte');
    return {
      src,
      gets: mine,
      bytes,
      lines,
      summary: `${src.stats.requests} GETs, ${src.stats.bytes} of ${src.size} bytes`,
    };
  }

  it('small reads share 64 KiB blocks; the read-ahead doubles over consecutive misses up to 1 MiB and restarts at one block after a skip', async () => {
    gets.length = 0;
    const src = await S3Source.open({ client: s3, bucket: 'b', key: 'obj' });
    assert.equal(src.size, data.length);
    const buf = Buffer.alloc(512);
    for (let pos = 0; pos < 3 * MiB; pos += 4096) {
      const { bytesRead } = await src.read(buf, 0, 512, pos);
      assert.equal(bytesRead, 512);
      assert.ok(buf.equals(data.subarray(pos, pos + 512)));
    }
    // A read straddling two blocks, both held.
    const straddle = Buffer.alloc(1000);
    await src.read(straddle, 0, 1000, MiB - 500);
    assert.ok(straddle.equals(data.subarray(MiB - 500, MiB + 500)));
    const at = (kib: number): number => kib * KiB;
    const r = (a: number, b: number): string => `bytes=${at(a)}-${at(b) - 1}`;
    assert.deepEqual(ranges('obj'), [
      r(0, 64),
      r(64, 192),
      r(192, 448),
      r(448, 960),
      r(960, 1984),
      r(1984, 3008),
      r(3008, 4032),
    ]);
    // After a skip (the reader jumped over a large entry): one block.
    gets.length = 0;
    await src.read(buf, 0, 512, at(4608) - 100);
    assert.ok(buf.equals(data.subarray(at(4608) - 100, at(4608) + 412)));
    assert.deepEqual(ranges('obj'), [r(4608 - 64, 4608 + 64)], 'the read spans two blocks: those, nothing more');
    // Past the end: short read, then nothing.
    const tail = Buffer.alloc(1000);
    assert.equal((await src.read(tail, 0, 1000, data.length - 10)).bytesRead, 10);
    assert.equal((await src.read(tail, 0, 1000, data.length)).bytesRead, 0);
    await src.close();
  });

  it('a stream takes the blocks held from the cache and the gap between them in one GET', async () => {
    gets.length = 0;
    const src = await S3Source.open({ client: s3, bucket: 'b', key: 'obj' });
    const buf = Buffer.alloc(512);
    await src.read(buf, 0, 512, 3 * MiB + 100); // one block: 3 MiB .. 3 MiB + 64 KiB
    gets.length = 0;
    const chunks: Buffer[] = [];
    for await (const c of src.stream(1000, 3 * MiB + 5000)) chunks.push(c as Buffer);
    assert.ok(Buffer.concat(chunks).equals(data.subarray(1000, 3 * MiB + 5001)));
    assert.deepEqual(ranges('obj'), [`bytes=${64 * KiB}-${3 * MiB - 1}`]);
    assert.equal(src.stats.bytes, 3 * MiB + 64 * KiB, 'every byte of 0 .. 3 MiB + 64 KiB once');
    // The whole object is a compressed archive's one pass: one GET, cache or not.
    gets.length = 0;
    let n = 0;
    for await (const c of src.stream(0, data.length - 1)) n += (c as Buffer).length;
    assert.equal(n, data.length);
    assert.deepEqual(ranges('obj'), [`bytes=0-${data.length - 1}`]);
    await src.close();
  });

  it('a blob stream broken mid-way resumes from the last byte received, and reads no byte twice', async () => {
    cutNextLarge = true;
    const lines: string[] = [];
    gets.length = 0;
    const src = await S3Source.open({ client: s3, bucket: 'b', key: 'obj', logger: (l) => lines.push(l) });
    const chunks: Buffer[] = [];
    for await (const c of src.stream(100, data.length - 1)) chunks.push(c as Buffer);
    assert.ok(Buffer.concat(chunks).equals(data.subarray(100)));
    const rs = ranges('obj');
    assert.equal(rs.length, 3, rs.join(' '));
    assert.equal(rs[0], `bytes=0-${64 * KiB - 1}`, 'the first block, which also serves the start of the stream');
    assert.equal(rs[1], `bytes=${64 * KiB}-${data.length - 1}`);
    assert.match(rs[2]!, new RegExp(`^bytes=\\d+-${data.length - 1}$`));
    assert.ok(
      lines.some((l) => /resuming \(1\/4\)/.test(l)),
      lines.join('\n'),
    );
    assert.ok(src.stats.bytes <= data.length, `${src.stats.bytes} bytes received for ${data.length}`);
    await src.close();
  });

  // Bytes beyond the archive's own: the open's first block that a compressed archive's one GET
  // reads again, and blocks past what a read needs that no one reads (a few KiB of small entries
  // no image uses, the end-of-archive padding).
  const slack = (size: number): number => Math.floor(size * 0.02) + 64 * KiB;

  for (const [format, build] of [
    ['docker save', dockerArchive],
    ['OCI archive', ociArchive],
  ] as const) {
    for (const [what, sizes] of [
      ['2 MB, five layers', [MiB, 600 * KiB, 300 * KiB, 100 * KiB, 10 * KiB]],
      ['9 MiB, five layers', [5 * MiB, 3 * MiB, 700 * KiB, 40 * KiB, 2 * KiB]],
    ] as const) {
      it(`${format}, ${what}, uncompressed: each byte is read once, one GET per layer larger than a block`, async (t) => {
        const body = await build(`${format}-${what}`.replace(/\W+/g, '-'), sizes);
        const key = `several-${format}-${what}.tar`.replace(/[^\w.]+/g, '-');
        const r = await push(key, body);
        t.diagnostic(r.summary);
        assert.ok(
          r.bytes <= body.length + slack(body.length),
          `${r.bytes} bytes read for a ${body.length}-byte archive:\n${r.gets.map((g) => `${g.range} ${g.bytes}`).join('\n')}`,
        );
        // The open; the block of the header after each entry larger than a block, and one GET for
        // that entry's middle; one more where small entries spill past a block. The small entries
        // come with the blocks, and their blobs from the cache.
        const large = sizes.filter((n) => n > 64 * KiB).length;
        assert.ok(
          r.gets.length <= 1 + 2 * large + 1,
          `${r.gets.length} GETs for ${large} large layers:\n${r.gets.map((g) => `${g.range} ${g.bytes}`).join('\n')}`,
        );
        await r.src.close();
      });
    }
  }

  it('a small cache drops blocks before their blobs are read: those are fetched again, and the push is still right', async (t) => {
    const body = await dockerArchive('small-cache', [3 * MiB, 200 * KiB, 100 * KiB, 90 * KiB, 80 * KiB, 20 * KiB]);
    const r = await push('small-cache.tar', body, { readAhead: 128 * KiB, cacheBytes: 0 });
    t.diagnostic(r.summary);
    assert.ok(r.bytes >= body.length, `${r.bytes} of ${body.length}`);
    await r.src.close();
  });

  it('a blob stream broken during a push resumes where it broke: one GET more, no byte read twice', async (t) => {
    const body = await dockerArchive('broken', [5 * MiB, 300 * KiB, 4 * KiB]);
    cutNextLarge = true;
    const r = await push('broken.tar', body);
    t.diagnostic(r.summary);
    assert.equal(cutNextLarge, false, 'a response was cut');
    assert.ok(
      r.lines.some((l) => /stream broke at byte \d+ .*resuming \(1\/4\)/.test(l)),
      r.lines.join('\n'),
    );
    assert.ok(r.bytes <= body.length + slack(body.length), `${r.bytes} bytes read for a ${body.length}-byte archive`);
    await r.src.close();
  });

  it('a gzip archive is read in one sequential GET, after the first block', async (t) => {
    const body = gzipSync(await dockerArchive('gzip', [3 * MiB, 300 * KiB, 4 * KiB]));
    const r = await push('whole.tar.gz', body);
    t.diagnostic(r.summary);
    assert.deepEqual(
      r.gets.map((g) => g.range),
      [`bytes=0-${64 * KiB - 1}`, `bytes=0-${body.length - 1}`],
    );
    assert.equal(r.bytes, body.length + 64 * KiB);
    await r.src.close();
  });

  it('an empty object fails at once as not an image archive', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'b', Key: 'empty.tar', Body: Buffer.alloc(0) }));
    await assert.rejects(
      S3Source.open({ client: s3, bucket: 'b', key: 'empty.tar' }),
      (e: Error & { code?: string }) => e.code === 'NOT_A_TAR' && /s3:\/\/b\/empty\.tar: empty object/.test(e.message),
    );
  });

  it('a missing object fails with a clear error', async () => {
    await assert.rejects(S3Source.open({ client: s3, bucket: 'b', key: 'nope' }), /s3:\/\/b\/nope.*missing/);
  });
});
