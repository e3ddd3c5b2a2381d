/**
 * zstd compresses a layer on several cores (zstd's own worker threads, fixed job size): the
 * bytes must not depend on how the input is written, on the core count or on the thread pool,
 * and must be a valid zstd stream that the zstd CLI and lading's decompressor read back.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Transform } from 'node:stream';
import { createCompressor, createDecompressor, ZSTD_JOB_SIZE, zstdImplementation } from '../../src/compress/codecs';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const has = (cmd: string, args = ['--version']): boolean => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;
// Several cores through zstd-napi only (Node's own zstd fails with workers, nodejs/node#59899).
const gate =
  zstdImplementation('compress') === 'zstd-napi'
    ? {}
    : { skip: 'zstd-napi is not installed: zstd compresses on one core' };

/** Half text, half noise, from a seed; the same function runs in the child processes. */
function layerLike(seed: number, size: number): Buffer {
  let x = seed >>> 0 || 1;
  const next = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
  const out = Buffer.alloc(size);
  for (let off = 0; off < size; off += 4096) {
    const end = Math.min(size, off + 4096);
    if (next() % 2 === 0) for (let i = off; i < end; i++) out[i] = next() & 0xff;
    else for (let i = off; i < end; i++) out[i] = 0x61 + ((i * 7 + (next() % 3)) % 26);
  }
  return out;
}

async function run(t: Transform, data: Buffer, piece: number): Promise<Buffer> {
  const out: Buffer[] = [];
  t.on('data', (c: Buffer) => out.push(Buffer.from(c)));
  const done = new Promise((resolve, reject) => {
    t.once('end', resolve);
    t.once('error', reject);
  });
  for (let off = 0; off < data.length; off += piece) {
    if (!t.write(data.subarray(off, off + piece))) await new Promise((resolve) => t.once('drain', resolve));
  }
  t.end();
  await done;
  return Buffer.concat(out);
}

describe('zstd on several cores (zstd-napi)', gate, () => {
  const data = layerLike(7, 3 * ZSTD_JOB_SIZE + 12345);

  it('the same bytes however the input is written; lading and the zstd CLI read them back', async () => {
    const a = await run(createCompressor('zstd'), data, 1024 * 1024);
    const b = await run(createCompressor('zstd'), data, 77_777);
    assert.ok(a.equals(b), 'same bytes for 1 MiB and 77,777-byte writes');
    assert.ok(a.length < data.length * 0.75);
    assert.ok((await run(createDecompressor('zstd'), a, 65536)).equals(data));
    if (has('zstd')) {
      assert.equal(spawnSync('zstd', ['-t', '-q'], { input: a }).status, 0, 'zstd -t');
      const d = spawnSync('zstd', ['-dc'], { input: a, maxBuffer: 1 << 28 });
      assert.ok(d.stdout.equals(data), 'zstd -dc gives the input');
    } else assert.ok(process.env.CI === undefined, 'zstd CLI missing');
  });

  it('the same bytes with 1, 2, 4 or 8 pool threads and on one core (child processes)', async () => {
    const mod = join(__dirname, '..', '..', 'src', 'compress', 'codecs.js');
    const script = `
      const { createCompressor } = require(${JSON.stringify(mod)});
      const { createHash } = require('node:crypto');
      ${layerLike.toString()}
      const data = layerLike(7, ${data.length});
      const z = createCompressor('zstd');
      const h = createHash('sha256');
      z.on('data', (c) => h.update(c));
      z.on('end', () => process.stdout.write(h.digest('hex')));
      for (let off = 0; off < data.length; off += 300000) z.write(data.subarray(off, off + 300000));
      z.end();
    `;
    const here = sha(await run(createCompressor('zstd'), data, 1024 * 1024));
    const runs: [string, string[]][] = ['1', '2', '4', '8'].map((n) => [
      `UV_THREADPOOL_SIZE=${n}`,
      [process.execPath, '-e', script],
    ]);
    // taskset: availableParallelism() is 1, so one zstd worker instead of two or more.
    if (has('taskset', ['-V'])) runs.push(['taskset -c 0', ['taskset', '-c', '0', process.execPath, '-e', script]]);
    for (const [what, [cmd, ...args]] of runs) {
      const env = { ...process.env, ...(what.startsWith('UV_') ? { UV_THREADPOOL_SIZE: what.split('=')[1] } : {}) };
      const r = spawnSync(cmd!, args, { env, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, here, `${what}: same bytes`);
    }
  });
});
