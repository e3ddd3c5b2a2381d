/**
 * Stream digests off the main thread (src/image/stream-digest.ts): whatever the chunks, the
 * digest is Node's crypto's of the same bytes; pooled chunks stay intact until hashed; a writer
 * is held back when hashing lags; a failed hash fails the digest. And the native calls refuse
 * misuse instead of racing.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { VerifyingStream } from '../../src/archive/verify';
import type { Digest } from '../../src/image/digest';
import { createStreamDigester, MainThreadDigester, PoolDigester } from '../../src/image/stream-digest';
import { nativeBinding, type NativeBinding, type NativeHash } from '../../src/native/binding';
import { BufferPool, release } from '../../src/util/buffer-pool';

const hex = (alg: string, b: Buffer): string => `${alg}:${createHash(alg).update(b).digest('hex')}`;
const native = nativeBinding();
const hashing = native?.hashCreate ? (native as Required<NativeBinding>) : undefined;

describe('stream digests', () => {
  it('native hashing is there where CI runs (the binding is built and finds Node’s OpenSSL)', () => {
    if (process.env.CI !== undefined) assert.ok(hashing, 'hashCreate/hashUpdate/hashDigest in the binding');
    // Small or unknown sizes: a known small stream stays on the main thread.
    assert.ok(createStreamDigester('sha256', 100) instanceof MainThreadDigester);
    const big = createStreamDigester('sha256', 64 * 1024 * 1024);
    assert.ok(hashing ? big instanceof PoolDigester : big instanceof MainThreadDigester);
  });

  it('property: any chunks, sha256 or sha512, give Node crypto’s digest of their concatenation', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ maxLength: 70_000 }), { maxLength: 12 }),
        fc.constantFrom('sha256' as const, 'sha512' as const),
        fc.boolean(),
        async (chunks, alg, yieldBetween) => {
          const d = createStreamDigester(alg);
          for (const c of chunks) {
            d.update(Buffer.from(c));
            if (yieldBetween) await new Promise((resolve) => setImmediate(resolve));
          }
          assert.equal(await d.digest(), hex(alg, Buffer.concat(chunks.map((c) => Buffer.from(c)))));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('pooled chunks are held until hashed: released (and poisoned) downstream at once, the digest is still right', async () => {
    BufferPool.poison = true;
    try {
      const pool = new BufferPool(256 * 1024, 8);
      const data = randomBytes(40 * 256 * 1024 + 17);
      const d = createStreamDigester('sha256');
      const made = new Set<Buffer>();
      for (let off = 0; off < data.length; off += 256 * 1024) {
        const whole = pool.take();
        made.add(whole);
        const n = data.copy(whole, 0, off, off + 256 * 1024);
        const chunk = pool.emit(whole, n);
        d.update(chunk);
        // The next stage is done with it at once (a socket write that completed).
        release(chunk);
      }
      assert.equal(await d.digest(), hex('sha256', data));
      assert.equal(pool.idle, Math.min(8, made.size), 'every buffer went back to the pool once hashed');
    } finally {
      BufferPool.poison = false;
    }
  });

  it('ready() holds a writer back while more than 4 MiB wait to be hashed, and lets it go once hashed', async (t) => {
    if (!hashing) {
      assert.ok(process.env.CI === undefined, 'native hashing is missing');
      t.skip('native hashing not available here');
      return;
    }
    const d = new PoolDigester(hashing, 'sha256');
    const data = randomBytes(12 * 1024 * 1024);
    for (let off = 0; off < data.length; off += 1024 * 1024) d.update(data.subarray(off, off + 1024 * 1024));
    const wait = d.ready();
    assert.ok(wait instanceof Promise, 'over 4 MiB queued: the writer waits');
    await wait;
    assert.equal(d.ready(), undefined, 'caught up: no wait');
    assert.equal(await d.digest(), hex('sha256', data));
  });

  it('a hash that fails on the pool fails the digest, and gives the chunks back', async () => {
    let created = 0;
    const failing: Required<NativeBinding> = {
      deflate: () => Promise.reject(new Error('unused')),
      hashCreate: () => ({ n: created++ }) as unknown as NativeHash,
      hashUpdate: () => Promise.reject(Object.assign(new Error('hash update failed'), { code: 'NATIVE_HASH' })),
      hashDigest: () => Buffer.alloc(32),
    };
    const pool = new BufferPool(1024, 4);
    const chunk = pool.emit(pool.take(), 1024);
    const d = new PoolDigester(failing, 'sha256');
    d.update(chunk);
    release(chunk);
    await assert.rejects(d.digest(), { code: 'NATIVE_HASH' });
    assert.equal(pool.idle, 1, 'the held chunk went back to its pool');
    assert.equal(d.ready(), undefined, 'a failed digester holds no writer');
  });

  it('the binding refuses a second update of one context while one runs, and any use after the digest', async (t) => {
    if (!hashing) {
      assert.ok(process.env.CI === undefined, 'native hashing is missing');
      t.skip('native hashing not available here');
      return;
    }
    const ctx = hashing.hashCreate('sha256');
    const first = hashing.hashUpdate(ctx, [randomBytes(1024 * 1024)]);
    assert.throws(() => hashing.hashUpdate(ctx, [Buffer.alloc(1)]), /while another runs/);
    assert.throws(() => hashing.hashDigest(ctx), /while an update runs/);
    await first;
    hashing.hashDigest(ctx);
    assert.throws(() => hashing.hashUpdate(ctx, [Buffer.alloc(1)]), /after hashDigest/);
    assert.throws(() => hashing.hashDigest(ctx), /twice/);
    const call = (...args: unknown[]): unknown => (hashing.hashCreate as (...a: unknown[]) => unknown)(...args);
    assert.throws(() => call('md5'), { name: 'TypeError' });
    assert.throws(() => hashing.hashUpdate(hashing.hashCreate('sha256'), [1 as unknown as Buffer]), {
      name: 'TypeError',
    });
  });

  it('VerifyingStream over a large blob: the right digest passes, a wrong one fails with DIGEST_MISMATCH', async () => {
    const data = randomBytes(5 * 1024 * 1024 + 3);
    const run = (digest: string): Promise<VerifyingStream> =>
      new Promise((resolve, reject) => {
        const v = new VerifyingStream({ what: 'layer 1', digest: digest as Digest, size: data.length });
        v.on('data', () => undefined);
        v.once('end', () => resolve(v));
        v.once('error', reject);
        for (let off = 0; off < data.length; off += 256 * 1024) v.write(data.subarray(off, off + 256 * 1024));
        v.end();
      });
    const ok = await run(hex('sha256', data));
    assert.equal(ok.digest, hex('sha256', data));
    const wrong = `sha256:${'0'.repeat(64)}`;
    await assert.rejects(run(wrong), {
      code: 'DIGEST_MISMATCH',
      message: `layer 1: content has digest ${hex('sha256', data)}, expected ${wrong}`,
    });
  });

  it('LADING_NATIVE=0 turns the binding off: zlib and the main thread (child process)', () => {
    const dir = join(__dirname, '..', '..', 'src');
    const script = `
      const { nativeBinding } = require(${JSON.stringify(join(dir, 'native', 'binding.js'))});
      const { defaultGzipEngine } = require(${JSON.stringify(join(dir, 'compress', 'adaptive-gzip.js'))});
      const { createStreamDigester } = require(${JSON.stringify(join(dir, 'image', 'stream-digest.js'))});
      process.stdout.write([nativeBinding() === null, defaultGzipEngine(), createStreamDigester('sha256').constructor.name].join(' '));`;
    const r = spawnSync(process.execPath, ['-e', script], {
      env: { ...process.env, LADING_NATIVE: '0' },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'true zlib MainThreadDigester');
  });
});
