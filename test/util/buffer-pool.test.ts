import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { after, describe, test } from 'node:test';
import { FileSource } from '../../src/archive/source';
import { AdaptiveGzip } from '../../src/compress/adaptive-gzip';
import { DiffIdCheck, VerifyingStream } from '../../src/archive/verify';
import { FileSink } from '../../src/layout/file-sink';
import { BufferPool, hold, isTracked, linkView, release } from '../../src/util/buffer-pool';
import type { Digest } from '../../src/image/digest';

const root = mkdtempSync(join(tmpdir(), 'lading-pool-'));
// A chunk released too early is then overwritten: the byte checks below catch it.
BufferPool.poison = true;
after(() => {
  BufferPool.poison = false;
  rmSync(root, { recursive: true, force: true });
});

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Random and text stretches, so the adaptive gzip takes both of its paths. */
function mixed(mib: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < mib; i++)
    parts.push(
      i % 3 === 1
        ? Buffer.from(`line ${i} of text that deflate shrinks well\n`.repeat(26_000)).subarray(0, 1024 * 1024)
        : randomBytes(1024 * 1024),
    );
  parts.push(randomBytes(12_345));
  return Buffer.concat(parts);
}

/** `bytes` written to a file of the test's temp dir, read through a FileSource for the length of `fn`. */
async function withFile<T>(name: string, bytes: Buffer, fn: (src: FileSource) => Promise<T>): Promise<T> {
  const path = join(root, name);
  writeFileSync(path, bytes);
  const fh = await open(path);
  try {
    return await fn(new FileSource(path, fh, bytes.length));
  } finally {
    await fh.close();
  }
}

/** A terminal that copies each chunk into `out` as it comes, then releases it when asked to. */
function copyingSink(out: Buffer[], opts: { release?: boolean } = {}): Writable {
  return new Writable({
    write(c: Buffer, _e, cb) {
      out.push(Buffer.from(c));
      if (opts.release) release(c); // and the pool may refill it at once
      cb();
    },
  });
}

/**
 * A terminal like a socket under load: it accepts each chunk at once but reads it later (a
 * few milliseconds, in order), then releases it. A chunk released too early by another stage
 * is poisoned by then.
 */
function slowSink(out: Buffer[]): Writable {
  let queue = Promise.resolve();
  return new Writable({
    highWaterMark: 64 * 1024 * 1024,
    write(chunk: Buffer, _e, cb) {
      const i = out.length;
      out.push(Buffer.alloc(0));
      queue = queue.then(
        () =>
          new Promise<void>((resolve) =>
            setTimeout(
              () => {
                out[i] = Buffer.from(chunk);
                release(chunk);
                resolve();
              },
              Math.random() < 0.9 ? 0 : 2,
            ),
          ),
      );
      cb();
    },
    final(cb) {
      void queue.then(() => cb());
    },
  });
}

describe('buffer pool', () => {
  test('a chunk goes back to its pool when its last holder releases it', () => {
    const pool = new BufferPool(1024, 4);
    const whole = pool.take();
    const chunk = pool.emit(whole, 100);
    assert.equal(chunk.length, 100);
    assert.ok(isTracked(chunk));
    hold(chunk);
    release(chunk);
    assert.equal(pool.idle, 0, 'one holder left');
    const view = chunk.subarray(10, 20);
    linkView(view, chunk);
    release(chunk);
    assert.equal(pool.idle, 0, 'the view still holds it');
    release(view);
    assert.equal(pool.idle, 1);
    assert.equal(pool.take(), whole, 'reused');
    release(view);
    release(chunk);
    assert.equal(pool.idle, 0, 'a second release is a no-op');
  });

  test('a held view needs as many releases before its chunk is freed', () => {
    const pool = new BufferPool(256, 4);
    const chunk = pool.emit(pool.take(), 256);
    const view = chunk.subarray(0, 64);
    linkView(view, chunk);
    release(chunk);
    hold(view);
    release(view);
    assert.equal(pool.idle, 0, 'one holder of the view left');
    release(view);
    assert.equal(pool.idle, 1);
  });

  test('buffers it knows nothing of are left alone; idle buffers are bounded', () => {
    const pool = new BufferPool(64, 2);
    release(Buffer.alloc(64));
    hold(Buffer.alloc(64));
    const chunks = Array.from({ length: 5 }, () => pool.emit(pool.take(), 64));
    for (const c of chunks) release(c);
    assert.equal(pool.idle, 2);
  });

  test('file -> verify -> adaptive gzip -> a terminal releasing late: the bytes are intact', async () => {
    const data = mixed(9);
    await withFile('mixed.bin', data, async (src) => {
      // Twice at once, so the blobs' buffers interleave in the pool.
      await Promise.all(
        [0, 1].map(async () => {
          const out: Buffer[] = [];
          const gz = new AdaptiveGzip(1);
          await pipeline(
            src.stream(0, data.length - 1, { pooled: true }),
            new VerifyingStream({ what: 'x', digest: `sha256:${sha(data)}` as Digest, size: data.length }),
            gz,
            slowSink(out),
          );
          assert.ok(gz.storedBytes > 0, 'stored blocks were written');
          const back: Buffer[] = [];
          await pipeline(
            async function* () {
              yield Buffer.concat(out);
            },
            createGunzip(),
            copyingSink(back),
          );
          assert.equal(sha(Buffer.concat(back)), sha(data));
        }),
      );
    });
  });

  test('file -> diff_id check -> a terminal releasing at once: the inflater reads intact chunks', async () => {
    const tar = mixed(6);
    const gz: Buffer[] = [];
    await pipeline(
      async function* () {
        yield tar;
      },
      new AdaptiveGzip(1),
      copyingSink(gz),
    );
    const blob = Buffer.concat(gz);
    await withFile('layer.gz', blob, async (src) => {
      const check = new DiffIdCheck('gzip', { diffId: `sha256:${sha(tar)}` as Digest, what: 'layer' });
      const seen: Buffer[] = [];
      await pipeline(src.stream(0, blob.length - 1, { pooled: true }), check, copyingSink(seen, { release: true }));
      assert.equal(check.diffId, `sha256:${sha(tar)}`);
      assert.equal(sha(Buffer.concat(seen)), sha(blob));
    });
  });

  test('FileSink writes every byte and releases what it wrote', async () => {
    const data = mixed(4);
    await withFile('src.bin', data, async (src) => {
      const dest = join(root, 'copy.bin');
      await pipeline(src.stream(0, data.length - 1, { pooled: true }), new FileSink(dest));
      assert.equal(sha(readFileSync(dest)), sha(data));
    });
  });

  test('a range past the end of the file fails as truncated, and the handle stays open', async () => {
    await withFile('short.bin', Buffer.alloc(1000), async (src) => {
      await assert.rejects(
        pipeline(src.stream(0, 1999, { pooled: true }), slowSink([])),
        (e: Error & { code?: string }) => e.code === 'TRUNCATED' && /short\.bin/.test(e.message),
      );
      const stream = src.stream(0, 9);
      stream.destroy();
      const b = Buffer.alloc(10);
      assert.equal(
        (await src.read(b, 0, 10, 0)).bytesRead,
        10,
        'destroying a range stream does not close the shared handle',
      );
    });
  });
});
