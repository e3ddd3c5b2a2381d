import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { AdaptiveGzip } from '../../src/compress/adaptive-gzip';

/**
 * Feeds `data` in `chunk`-sized writes (honouring backpressure) while a paused-mode reader
 * takes `readSize` bytes every `everyMs`, as a slow upload does. Rejects when no byte comes
 * out for 2 s (the stream hung).
 */
function slowRoundTrip(data: Buffer, chunk: number, readSize: number, everyMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const gz = new AdaptiveGzip(1);
    let off = 0;
    const feed = (): void => {
      while (off < data.length) {
        const c = data.subarray(off, off + chunk);
        off += c.length;
        if (!gz.write(c)) {
          gz.once('drain', feed);
          return;
        }
      }
      gz.end();
    };
    const out: Buffer[] = [];
    let got = 0;
    let seen = -1;
    const reader = setInterval(() => {
      const c = gz.read(readSize) as Buffer | null;
      if (c) {
        out.push(c);
        got += c.length;
      }
    }, everyMs);
    const watchdog = setInterval(() => {
      if (got === seen) {
        clearInterval(reader);
        clearInterval(watchdog);
        gz.destroy();
        reject(new Error(`AdaptiveGzip stalled after ${got} output bytes (${off} of ${data.length} input bytes written)`));
      }
      seen = got;
    }, 2000);
    gz.once('end', () => {
      clearInterval(reader);
      clearInterval(watchdog);
      resolve(Buffer.concat(out));
    });
    gz.once('error', reject);
    feed();
  });
}

describe('AdaptiveGzip', () => {
  it('does not hang when its reader is slower than deflate (the write callback Transform parks is released)', async () => {
    // Random data goes through stored blocks: output as large as input, so the readable side
    // fills while a segment is written. Every combination hung before the fix.
    const data = randomBytes(6 * 1024 * 1024);
    for (const [chunk, readSize] of [
      [1024 * 1024, 64 * 1024],
      [64 * 1024, 1024 * 1024],
      [4 * 1024 * 1024, 300_000],
    ] as const) {
      const gz = await slowRoundTrip(data, chunk, readSize, 1);
      assert.ok(gunzipSync(gz).equals(data), `round trip with ${chunk}-byte writes, ${readSize}-byte reads`);
    }
  });

  it('round-trips mixed compressible and random data, deterministically', async () => {
    const text = Buffer.from('lading pushes image archives without docker. '.repeat(40_000));
    const data = Buffer.concat([text, randomBytes(1024 * 1024 + 17), text.subarray(0, 300_001), randomBytes(4096)]);
    const a = await slowRoundTrip(data, 100_000, 1024 * 1024, 0);
    const b = await slowRoundTrip(data, 1024 * 1024, 65_536, 0);
    assert.ok(gunzipSync(a).equals(data));
    assert.ok(a.equals(b), 'same input, same bytes, however it was written and read');
    assert.ok(a.length < data.length, 'the text stretches were compressed');
  });
});
