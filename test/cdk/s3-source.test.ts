/**
 * S3Source against a real S3-compatible server (s3rver) behind a proxy that can cut a
 * response short: small reads share 1 MiB blocks, a blob stream broken mid-way resumes
 * from the last byte received, reads past the end and a missing object behave.
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
const MiB = 1024 * 1024;

describe('S3Source (ranged GETs over s3rver)', () => {
  let dir: string;
  let s3rver: InstanceType<typeof S3rver>;
  let proxy: Server;
  let s3: S3Client;
  const ranges: string[] = [];
  /** Cut the next response carrying more than this many bytes after half of them. */
  let cutNextLarge = false;
  const data = pseudoRandom('s3-source', 5 * MiB + 123);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'lading-s3src-'));
    s3rver = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir, configureBuckets: [{ name: 'b', configs: [] }] });
    const port = (await s3rver.run()).port;
    proxy = createServer((req, res) => {
      if (req.method === 'GET' && req.headers.range) ranges.push(req.headers.range);
      const up = request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
        res.writeHead(ur.statusCode!, ur.headers);
        // Headers go out now, not with the first body byte (which may never come: see the empty object).
        res.flushHeaders();
        const len = Number(ur.headers['content-length'] ?? 0);
        if (cutNextLarge && req.method === 'GET' && len > 2 * MiB) {
          cutNextLarge = false;
          let sent = 0;
          ur.on('data', (c: Buffer) => {
            if (sent >= len / 2) return;
            sent += c.length;
            res.write(c);
            if (sent >= len / 2) res.destroy();
          });
          return;
        }
        ur.pipe(res);
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

  it('small reads are served from 1 MiB blocks: 512-byte reads across 3 MiB cost 3 GETs', async () => {
    ranges.length = 0;
    const src = await S3Source.open({ client: s3, bucket: 'b', key: 'obj' });
    assert.equal(src.size, data.length);
    const buf = Buffer.alloc(512);
    for (let pos = 0; pos < 3 * MiB; pos += 4096) {
      const { bytesRead } = await src.read(buf, 0, 512, pos);
      assert.equal(bytesRead, 512);
      assert.ok(buf.equals(data.subarray(pos, pos + 512)));
    }
    // A read straddling two blocks.
    const straddle = Buffer.alloc(1000);
    await src.read(straddle, 0, 1000, MiB - 500);
    assert.ok(straddle.equals(data.subarray(MiB - 500, MiB + 500)));
    assert.equal(ranges.length, 3, ranges.join(' '));
    assert.deepEqual(ranges, [`bytes=0-${MiB - 1}`, `bytes=${MiB}-${2 * MiB - 1}`, `bytes=${2 * MiB}-${3 * MiB - 1}`]);
    // Past the end: short read, then nothing.
    const tail = Buffer.alloc(1000);
    assert.equal((await src.read(tail, 0, 1000, data.length - 10)).bytesRead, 10);
    assert.equal((await src.read(tail, 0, 1000, data.length)).bytesRead, 0);
    await src.close();
  });

  it('a blob stream broken mid-way resumes from the last byte received', async () => {
    const src = await S3Source.open({ client: s3, bucket: 'b', key: 'obj' });
    ranges.length = 0;
    cutNextLarge = true;
    const lines: string[] = [];
    const s2 = await S3Source.open({ client: s3, bucket: 'b', key: 'obj', logger: (l) => lines.push(l) });
    ranges.length = 0;
    const chunks: Buffer[] = [];
    for await (const c of s2.stream(100, data.length - 1)) chunks.push(c as Buffer);
    assert.ok(Buffer.concat(chunks).equals(data.subarray(100)));
    assert.equal(ranges.length, 2, ranges.join(' '));
    assert.equal(ranges[0], `bytes=100-${data.length - 1}`);
    assert.match(ranges[1]!, new RegExp(`^bytes=\\d+-${data.length - 1}$`));
    assert.ok(lines.some((l) => /resuming \(1\/4\)/.test(l)), lines.join('\n'));
    await src.close();
    await s2.close();
  });

  it('an empty object fails at once as not an image archive', async () => {
    await s3.send(new PutObjectCommand({ Bucket: 'b', Key: 'empty.tar', Body: Buffer.alloc(0) }));
    await assert.rejects(S3Source.open({ client: s3, bucket: 'b', key: 'empty.tar' }), (e: Error & { code?: string }) => e.code === 'NOT_A_TAR' && /s3:\/\/b\/empty\.tar: empty object/.test(e.message));
  });

  it('a missing object fails with a clear error', async () => {
    await assert.rejects(S3Source.open({ client: s3, bucket: 'b', key: 'nope' }), /s3:\/\/b\/nope.*missing/);
  });
});
