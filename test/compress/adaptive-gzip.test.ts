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
        reject(
          new Error(`AdaptiveGzip stalled after ${got} output bytes (${off} of ${data.length} input bytes written)`),
        );
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

  it('writes incompressible data as stored blocks: ~5 bytes per 64 KiB over the input, valid gzip', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 12345);
    const gz = await slowRoundTrip(data, 1024 * 1024, 1024 * 1024, 0);
    assert.ok(gunzipSync(gz).equals(data));
    // A stored block per 65535 bytes, split at each 256 KiB segment; gzip header 10 +
    // trailer 8 + the final empty block zlib ends with (2 bytes).
    const blocks = Math.ceil(data.length / 65535) + Math.ceil(data.length / (256 * 1024));
    assert.ok(gz.length <= data.length + 5 * blocks + 20, `${gz.length} bytes for ${data.length}`);
    const g = new AdaptiveGzip(1);
    g.end(data);
    for await (const _ of g) void _;
    assert.equal(g.storedBytes, data.length);
  });

  it('handles empty input and a stored stretch followed by compressible data', async () => {
    assert.equal(gunzipSync(await slowRoundTrip(Buffer.alloc(0), 1, 65536, 0)).length, 0);
    const text = Buffer.from('0123456789 abcdefghij '.repeat(50_000));
    const data = Buffer.concat([randomBytes(600_000), text, randomBytes(70_000), text]);
    assert.ok(gunzipSync(await slowRoundTrip(data, 256 * 1024, 100_000, 0)).equals(data));
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
