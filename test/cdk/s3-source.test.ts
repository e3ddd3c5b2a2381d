/**
 * S3Source against a real S3-compatible server (s3rver) behind a proxy that records each
 * GET's range and the body bytes it sent, and can cut a response short: small reads share
 * small blocks with a read-ahead that grows only over packed small entries, blob streams take
 * from those blocks what they hold; a broken blob stream resumes from the last byte received;
 * reads past the end and a missing object behave.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3Source } from '../../src/cdk/s3-source';
import { pseudoRandom } from '../fixtures';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require('s3rver') as new (opts: Record<string, unknown>) => { run(): Promise<AddressInfo>; close(): Promise<void> };
const KiB = 1024;
const MiB = 1024 * KiB;

interface Get {
  key: string;
  range: string;
  bytes: number;
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
    s3rver = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir, configureBuckets: [{ name: 'b', configs: [] }] });
    const port = (await s3rver.run()).port;
    proxy = createServer((req, res) => {
      const g: Get | undefined = req.method === 'GET' && req.headers.range ? { key: req.url!.replace(/^\/b\//, '').replace(/\?.*$/, ''), range: req.headers.range, bytes: 0 } : undefined;
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
    s3 = new S3Client({ endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, maxAttempts: 1 });
    await s3.send(new PutObjectCommand({ Bucket: 'b', Key: 'obj', Body: data }));
  });
  after(async () => {
    s3.destroy();
    await new Promise((r) => proxy.close(r));
    await s3rver.close();
    rmSync(dir, { recursive: true, force: true });
  });

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
    assert.deepEqual(ranges('obj'), [r(0, 64), r(64, 192), r(192, 448), r(448, 960), r(960, 1984), r(1984, 3008), r(3008, 4032)]);
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
    assert.ok(lines.some((l) => /resuming \(1\/4\)/.test(l)), lines.join('\n'));
    assert.ok(src.stats.bytes <= data.length, `${src.stats.bytes} bytes received for ${data.length}`);
    await src.close();
  });

  it('an empty object fails at once as not an image archive', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'b', Key: 'empty.tar', Body: Buffer.alloc(0) }));
    await assert.rejects(S3Source.open({ client: s3, bucket: 'b', key: 'empty.tar' }), (e: Error & { code?: string }) => e.code === 'NOT_A_TAR' && /s3:\/\/b\/empty\.tar: empty object/.test(e.message));
  });

  it('a missing object fails with a clear error', async () => {
    await assert.rejects(S3Source.open({ client: s3, bucket: 'b', key: 'nope' }), /s3:\/\/b\/nope.*missing/);
  });
});
