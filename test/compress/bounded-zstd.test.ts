/**
 * zstd decompression stays bounded on hostile input (issue 19): a 128 KiB zstd layer that
 * inflates to 4 GiB goes through the push's diff_id verification (analyzeBlob, DiffIdCheck) in
 * bounded memory, on both zstd implementations lading uses (zstd-napi through
 * BoundedZstdDecompress; Node's own, the fallback on Node >= 22.15 without zstd-napi); a frame
 * asking for a window over 128 MiB is refused with a one-line DECOMPRESSION_FAILED naming the
 * window and the blob; and the bounded decoder is a faithful zstd decoder: random inputs (several
 * frames, skippable frames) round-trip however the input is cut and however slowly the output is
 * read, the output waiting in it stays bounded, and a cut stream is an error. Node's own zstd,
 * where it cannot read an input (several frames in one write, nodejs/node#64741), fails rather
 * than giving less.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, type Duplex } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { analyzeBlob } from '../../src/archive/analyze';
import { BoundedZstdDecompress, zstdFrameWindow, type ZstdBinding } from '../../src/compress/bounded-zstd';
import {
  createDecompressor,
  nodeZstdDecompressor,
  ZSTD_WINDOW_LOG_MAX,
  zstdImplementation,
} from '../../src/compress/codecs';
import { DiffIdCheck } from '../../src/archive/verify';
import { LadingError } from '../../src/errors';

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const envRuns = process.env.FC_NUM_RUNS === undefined ? undefined : Number(process.env.FC_NUM_RUNS);
const runs = (byDefault: number): number => envRuns ?? byDefault;
const replay =
  process.env.FC_SEED === undefined
    ? {}
    : { seed: Number(process.env.FC_SEED), ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}) };
const has = (cmd: string): boolean => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;

interface Napi {
  compress(data: Uint8Array, params?: Record<string, unknown>): Buffer;
}
function load<T>(id: string): T | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require(id) as T;
  } catch {
    return undefined;
  }
}
const napi = load<Napi>('zstd-napi');
const binding = napi && load<ZstdBinding>('zstd-napi/binding');
const needNapi = binding ? {} : { skip: 'zstd-napi is not installed' };
const needZstd = zstdImplementation() === 'none' ? { skip: 'no zstd on this Node.js without zstd-napi' } : {};
/** Node's own zstd (>= 22.15): what lading uses without zstd-napi. */
const ownZstd = nodeZstdDecompressor() !== undefined;

/**
 * One zstd frame of `total` zero bytes as RLE blocks: 4 bytes per 128 KiB (zstd's largest block),
 * the highest ratio zstd has (`zstd -19` of 4 GiB of zeros is the same shape, 129 KiB). The
 * window is 128 KiB (log 17): a small window, so only the output can grow.
 */
export function zstdZeros(total: number): Buffer {
  const BLOCK = 128 * 1024;
  const n = Math.max(1, Math.ceil(total / BLOCK));
  const out = Buffer.alloc(6 + 4 * n);
  out.set([0x28, 0xb5, 0x2f, 0xfd, 0x00, (17 - 10) << 3]);
  for (let i = 0; i < n; i++) {
    const size = Math.min(BLOCK, total - i * BLOCK);
    const h = (i === n - 1 ? 1 : 0) | (1 << 1) | (size << 3); // last?, RLE, size
    out.writeUIntLE(h, 6 + 4 * i, 3);
  }
  return out;
}

/** A frame with the given window descriptor byte (or single-segment content size) and one raw block. */
function frameWith(header: number[], content = Buffer.from('hello, window\n')): Buffer {
  const h = 1 | (content.length << 3); // last, raw
  return Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd, ...header]), Buffer.from([h, h >> 8, h >> 16]), content]);
}

async function* chunks(data: Buffer, size = MiB): AsyncGenerator<Buffer> {
  for (let off = 0; off < data.length; off += size) yield data.subarray(off, off + size);
}

// ------------------------------------------------------------------------------------------

/**
 * The bomb runs in a child process, which reports its own peak RSS (getrusage maxRSS) before
 * and after; the parent also watches the child's RSS and stops it past 1 GiB, so a regression
 * fails in seconds instead of taking the machine's memory (before the fix, analyzeBlob on
 * zstd-napi passed 3 GiB on this bomb and was still growing).
 */
const CHILD = `
const [mode, root, bombPath] = process.argv.slice(1);
const { readFileSync } = require('node:fs');
const { analyzeBlob } = require(root + '/archive/analyze.js');
const { DiffIdCheck } = require(root + '/archive/verify.js');
const { nodeZstdDecompressor } = require(root + '/compress/codecs.js');
const bomb = readFileSync(bombPath);
async function* chunks() { for (let o = 0; o < bomb.length; o += 1 << 20) yield bomb.subarray(o, o + (1 << 20)); }
(async () => {
  const before = process.resourceUsage().maxRSS;
  const out = {};
  if (mode === 'push') {
    // The push's two diff_id paths: a 'data' consumer (DiffIdCheck) and a for-await one (analyzeBlob).
    const facts = await analyzeBlob(chunks(), { where: 'layer 1 of bomb.tar', diffId: true });
    out.analyzed = facts.uncompressedSize;
    const check = new DiffIdCheck('zstd', { diffId: 'sha256:' + '0'.repeat(64), what: 'layer 1 of bomb.tar' });
    check.resume();
    out.checked = await new Promise((resolve) => {
      check.once('error', (e) => resolve(e.code));
      check.once('finish', () => resolve('finished'));
      check.end(bomb);
    });
  } else {
    // Node's own zstd, as lading uses it without zstd-napi, read as the one-pass archive reader reads.
    const d = nodeZstdDecompressor();
    require('node:stream').Readable.from(chunks()).pipe(d);
    let n = 0;
    for await (const c of d) n += c.length;
    out.analyzed = n;
  }
  out.growthKiB = process.resourceUsage().maxRSS - before;
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
`;

async function runBomb(
  mode: 'push' | 'node',
  bombPath: string,
): Promise<{ out: Record<string, unknown>; peakMiB: number }> {
  const root = join(__dirname, '..', '..', 'src');
  const child = spawn(process.execPath, ['-e', CHILD, mode, root, bombPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  let peakMiB = 0;
  let killed = false;
  const watch = setInterval(() => {
    try {
      const kib = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0);
      peakMiB = Math.max(peakMiB, kib / 1024);
      if (kib > 1024 * 1024 && !killed) {
        killed = true;
        child.kill('SIGKILL');
      }
    } catch {
      // the child has exited (or there is no /proc): its own report is what counts
    }
  }, 50);
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  clearInterval(watch);
  assert.ok(!killed, `the child's RSS passed 1 GiB (${peakMiB.toFixed(0)} MiB) decompressing a 4 GiB zstd bomb`);
  assert.equal(code, 0, stderr);
  return { out: JSON.parse(stdout) as Record<string, unknown>, peakMiB };
}

describe('a zstd bomb: 128 KiB inflating to 4 GiB', needZstd, () => {
  const bombPath = join(tmpdir(), `lading-zstd-bomb-${process.pid}.zst`);

  it(`through analyzeBlob and DiffIdCheck (${zstdImplementation()}): under 200 MiB of RSS growth`, async (t) => {
    const bomb = zstdZeros(4 * GiB);
    writeFileSync(bombPath, bomb);
    t.after(() => rmSync(bombPath, { force: true }));
    assert.ok(bomb.length < 132 * 1024);
    if (has('zstd')) {
      const l = spawnSync('zstd', ['-t', '-q', bombPath]);
      assert.equal(l.status, 0, 'the zstd CLI reads the bomb as valid zstd');
    }
    const { out, peakMiB } = await runBomb('push', bombPath);
    const growthMiB = (out.growthKiB as number) / 1024;
    t.diagnostic(
      `${zstdImplementation()}: peak RSS growth ${growthMiB.toFixed(0)} MiB (watched: ${peakMiB.toFixed(0)} MiB)`,
    );
    assert.equal(out.analyzed, 4 * GiB, 'analyzeBlob inflated all 4 GiB');
    assert.equal(out.checked, 'DIFF_ID_MISMATCH');
    assert.ok(growthMiB < 200, `peak RSS grew by ${growthMiB.toFixed(0)} MiB`);
  });

  // Registered only where it means something (a skip fails CI): Node.js 20 has no zstd of its own,
  // so this runs in the Node 22 and 24 legs of npm test (scripts/node-legs.js); without
  // zstd-napi the test above already ran through Node's zstd.
  if (ownZstd && zstdImplementation() !== 'node:zlib')
    it("through Node.js's own zstd (lading's fallback without zstd-napi): under 200 MiB too", async (t) => {
      writeFileSync(bombPath, zstdZeros(4 * GiB));
      t.after(() => rmSync(bombPath, { force: true }));
      const { out } = await runBomb('node', bombPath);
      const growthMiB = (out.growthKiB as number) / 1024;
      t.diagnostic(`node:zlib: peak RSS growth ${growthMiB.toFixed(0)} MiB`);
      assert.equal(out.analyzed, 4 * GiB);
      assert.ok(growthMiB < 200, `peak RSS grew by ${growthMiB.toFixed(0)} MiB`);
    });
});

describe('while a bomb inflates, the event loop runs', needZstd, () => {
  // No timing is asserted: only that a timer set before the bomb fires before its end.
  it('a timer fires before the end of a 1 GiB bomb, and aborting stops analyzeBlob at once', async () => {
    // 1 GiB: in this process, so a regression that buffers the output costs 1 GiB, not 4.
    const bomb = zstdZeros(GiB);
    // analyzeBlob reads with for await (the next chunk is asked for in a microtask).
    const ac = new AbortController();
    setTimeout(() => ac.abort(new LadingError('ABORTED', 'interrupted')), 20);
    await assert.rejects(analyzeBlob(chunks(bomb), { where: 'bomb', diffId: true, signal: ac.signal }));
    // DiffIdCheck hashes in a 'data' handler.
    const check = new DiffIdCheck('zstd', { what: 'bomb' });
    check.resume();
    check.on('error', () => undefined);
    let finishedFirst: boolean | undefined;
    setTimeout(() => {
      finishedFirst = check.writableFinished;
      check.destroy();
    }, 20);
    check.end(bomb);
    await new Promise((resolve) => check.once('close', resolve));
    assert.equal(finishedFirst, false, "the timer fired only after DiffIdCheck's end");
  });
});

// ------------------------------------------------------------------------------------------

describe('zstd frames asking for a window over 128 MiB', needZstd, () => {
  const refuse = async (frame: Buffer, window: RegExp): Promise<void> => {
    await assert.rejects(analyzeBlob(chunks(frame), { where: 'layer 2 of x.tar', diffId: true }), (e: unknown) => {
      assert.ok(e instanceof LadingError, String(e));
      assert.equal(e.code, 'DECOMPRESSION_FAILED');
      assert.doesNotMatch(e.message, /\n/);
      assert.match(e.message, /^layer 2 of x\.tar: cannot decompress: zstd: the frame (at byte 0 )?needs a /);
      assert.match(e.message, window);
      assert.match(e.message, /lading allows at most 128 MiB/);
      return true;
    });
  };

  it('are refused with a one-line DECOMPRESSION_FAILED naming the window and the blob', async () => {
    assert.equal(ZSTD_WINDOW_LOG_MAX, 27);
    await refuse(frameWith([0x00, 21 << 3]), /needs a 2048 MiB window/); // window log 31
    await refuse(frameWith([0x00, (17 << 3) | 1]), /needs a 144 MiB window/); // 128 MiB + 1/8
    // Single segment: the window is the content size, 200 MiB (4 bytes), whatever follows.
    const fcs = Buffer.alloc(4);
    fcs.writeUInt32LE(200 * MiB);
    await refuse(frameWith([(2 << 6) | (1 << 5), ...fcs]), /needs a 200 MiB window/);
    // The same through DiffIdCheck (the push of a layer as it is).
    const check = new DiffIdCheck('zstd', { what: 'layer 3 of y.tar' });
    check.resume();
    const err = await new Promise<unknown>((resolve) => {
      check.once('error', resolve);
      check.once('finish', () => resolve(undefined));
      check.end(frameWith([0x00, 21 << 3]));
    });
    assert.ok(err instanceof LadingError && err.code === 'DECOMPRESSION_FAILED', String(err));
    assert.match(err.message, /^layer 3 of y\.tar: cannot decompress: zstd: the frame .*2048 MiB window/);
  });

  // Node.js 20 has no zstd of its own: this runs in the Node 22 and 24 legs (scripts/node-legs.js).
  if (ownZstd)
    it("Node.js's own zstd refuses them with the same words", async () => {
      for (const [frame, window] of [
        [frameWith([0x00, 21 << 3]), '2048 MiB'],
        [frameWith([0x00, (17 << 3) | 1]), '144 MiB'],
      ] as const) {
        const d = nodeZstdDecompressor()!;
        d.end(frame);
        await assert.rejects(slowRead(d, [0]), (e: NodeJS.ErrnoException) => {
          assert.equal(e.code, 'ERR_ZSTD_WINDOW');
          assert.equal(e.message.split(' window;')[0], `zstd: the frame needs a ${window}`);
          return true;
        });
      }
    });

  it('a window of exactly 128 MiB is read', async () => {
    const facts = await analyzeBlob(chunks(frameWith([0x00, 17 << 3])), { where: 'w', diffId: true });
    assert.equal(facts.uncompressedSize, 'hello, window\n'.length);
  });

  it('the zstd CLI agrees: what it needs --memory for, lading refuses', { skip: !has('zstd') }, async () => {
    // From a pipe the size is unknown, so --long=28 keeps its 256 MiB window even for 6 bytes.
    const frame = spawnSync('zstd', ['--long=28', '-c', '-q'], { input: 'hello\n' }).stdout;
    assert.equal(zstdFrameWindow(frame), 256 * MiB);
    assert.notEqual(spawnSync('zstd', ['-d', '-c', '-q'], { input: frame }).status, 0, 'zstd -d refuses it');
    await refuse(frame, /needs a 256 MiB window/);
  });

  it('zstdFrameWindow reads window descriptors and single-segment content sizes', () => {
    assert.equal(zstdFrameWindow(frameWith([0x00, 0x00])), 1024);
    assert.equal(zstdFrameWindow(frameWith([0x00, (17 << 3) | 7])), 2 ** 27 + 7 * 2 ** 24);
    assert.equal(zstdFrameWindow(frameWith([(0 << 6) | (1 << 5), 200])), 200); // 1-byte size
    assert.equal(zstdFrameWindow(frameWith([(1 << 6) | (1 << 5), 0x00, 0x01])), 256 + 256); // 2 bytes: +256
    assert.equal(zstdFrameWindow(frameWith([(3 << 6) | (1 << 5) | 1, 9, 0, 0, 0, 0, 0, 0, 0, 1])), 2 ** 56); // dict id, 8 bytes
    assert.equal(zstdFrameWindow(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xe0])), undefined); // cut short
    assert.equal(zstdFrameWindow(Buffer.from('not zstd at all')), undefined);
  });
});

// ------------------------------------------------------------------------------------------

/** Reads `d` as a slow consumer would, checking what waits in it never grows past two chunks. */
async function slowRead(d: Duplex, pauses: number[], bound?: number): Promise<Buffer> {
  const out: Buffer[] = [];
  let i = 0;
  for await (const c of d as AsyncIterable<Buffer>) {
    out.push(Buffer.from(c));
    if (bound !== undefined) assert.ok(d.readableLength <= bound, `${d.readableLength} bytes waiting`);
    const p = pauses[i++ % pauses.length]!;
    if (p === 1) await tick();
    else if (p > 1) await new Promise((r) => setTimeout(r, p - 2));
  }
  return Buffer.concat(out);
}

/** Inputs zstd compresses a little or a lot: noise, text, long runs (up to 2,000:1 and more). */
const piece = fc.oneof(
  fc.uint8Array({ maxLength: 3000 }).map((a) => Buffer.from(a)),
  fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 2 * MiB })).map(([b, n]) => Buffer.alloc(n, b)),
  fc
    .tuple(fc.string({ minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 5000 }))
    .map(([s, n]) => Buffer.from(s.repeat(n))),
);
const frames = fc.array(
  fc.record({
    parts: fc.array(piece, { maxLength: 4 }),
    level: fc.integer({ min: 1, max: 19 }),
    skippable: fc.boolean(),
  }),
  { minLength: 1, maxLength: 3 },
);
const cuts = fc.array(fc.integer({ min: 1, max: 200_000 }), { minLength: 1, maxLength: 6 });
const pauses = fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 5 });

function compressed(fs: { parts: Buffer[]; level: number; skippable: boolean }[]): { plain: Buffer; zst: Buffer } {
  const plain: Buffer[] = [];
  const zst: Buffer[] = [];
  for (const f of fs) {
    const data = Buffer.concat(f.parts);
    plain.push(data);
    zst.push(napi!.compress(data, { compressionLevel: f.level }));
    // A skippable frame (pzstd and seekable zstd write them): no output.
    if (f.skippable) zst.push(Buffer.from([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]));
  }
  return { plain: Buffer.concat(plain), zst: Buffer.concat(zst) };
}

async function feed(d: Duplex, zst: Buffer, sizes: number[]): Promise<void> {
  let i = 0;
  for (let off = 0; off < zst.length;) {
    const n = sizes[i++ % sizes.length]!;
    if (!d.write(zst.subarray(off, off + n))) await new Promise((r) => d.once('drain', r));
    off += n;
  }
  d.end();
}

describe('the bounded zstd decoder is zstd', needNapi, () => {
  it('random inputs round-trip however the input is cut and however slowly the output is read', async () => {
    await fc.assert(
      fc.asyncProperty(frames, cuts, pauses, async (fs, sizes, ps) => {
        const { plain, zst } = compressed(fs);
        // BoundedZstdDecompress itself, with what waits in it checked...
        const d = new BoundedZstdDecompress(binding!, ZSTD_WINDOW_LOG_MAX);
        const [got] = await Promise.all([slowRead(d, ps, 2 * 128 * 1024), feed(d, zst, sizes)]);
        assert.ok(got.equals(plain), `${got.length} bytes, expected ${plain.length}`);
        // ...and whatever createDecompressor gives on this Node.js, read through a pipe as the
        // one-pass archive reader reads it.
        const e = createDecompressor('zstd');
        Readable.from(chunks(zst, sizes[0]!)).pipe(e);
        assert.ok((await slowRead(e, ps)).equals(plain));
        // Node's own zstd: the same bytes, or (several frames in one write) an error, never less.
        const n = nodeZstdDecompressor();
        if (n) {
          Readable.from(chunks(zst, sizes[0]!)).pipe(n);
          const own = await slowRead(n, ps).catch((err: NodeJS.ErrnoException) => err);
          if (Buffer.isBuffer(own)) assert.ok(own.equals(plain), `node:zlib: ${own.length} bytes of ${plain.length}`);
          else assert.ok(['ERR_ZSTD_FRAMES', 'ERR_ZSTD_DECOMPRESS'].includes(own.code ?? ''), String(own));
        }
      }),
      { numRuns: runs(60), ...replay },
    );
  });

  it('a stream cut inside a frame is an error (TRUNCATED), never a short success', async () => {
    await fc.assert(
      fc.asyncProperty(frames, fc.double({ min: 0, max: 1, noNaN: true }), async (fs, at) => {
        const { zst } = compressed(fs.map((f) => ({ ...f, skippable: false })));
        // Cut strictly inside the last frame (past its magic, before its end).
        const last = napi!.compress(Buffer.concat(fs[fs.length - 1]!.parts), {
          compressionLevel: fs[fs.length - 1]!.level,
        });
        const start = zst.length - last.length;
        const cut = start + 4 + Math.floor(at * (last.length - 5));
        // Through the push's path (Node's own zstd, the fallback, ends a cut stream without an
        // error on 22, nodejs/node#64592; 24 reports it).
        await assert.rejects(
          analyzeBlob(chunks(zst.subarray(0, cut), 7777), { where: 'cut', diffId: true }),
          (e: unknown) => e instanceof LadingError && ['TRUNCATED', 'DECOMPRESSION_FAILED'].includes(e.code),
        );
        const d = new BoundedZstdDecompress(binding!, ZSTD_WINDOW_LOG_MAX);
        d.end(zst.subarray(0, cut));
        await assert.rejects(slowRead(d, [0]), (e: NodeJS.ErrnoException) =>
          ['ERR_ZSTD_TRUNCATED', 'ERR_ZSTD_DECOMPRESS'].includes(e.code ?? ''),
        );
      }),
      { numRuns: runs(40), ...replay },
    );
  });

  it('an empty stream is empty, and a chunk is not released before zstd is done with it', async () => {
    const d = new BoundedZstdDecompress(binding!, ZSTD_WINDOW_LOG_MAX);
    d.end();
    assert.equal((await slowRead(d, [0])).length, 0);
    // The write callback (which returns a pooled chunk to its pool) comes only once all the
    // chunk's output has been made: 64 MiB of zeros from one small write, read slowly.
    const e = new BoundedZstdDecompress(binding!, ZSTD_WINDOW_LOG_MAX);
    const bomb = zstdZeros(64 * MiB);
    let released = false;
    let seen = 0;
    e.write(bomb, () => (released = true));
    e.end();
    for await (const c of e as AsyncIterable<Buffer>) {
      seen += c.length;
      // What is released may still wait in the readable buffer: at most two chunks.
      if (seen < 64 * MiB - 256 * 1024) assert.equal(released, false, `released after ${seen} bytes`);
      if (seen % (8 * MiB) === 0) await tick();
    }
    assert.equal(seen, 64 * MiB);
  });

  it('several frames in one write: all of them (zstd-napi); an error, not the first alone (Node.js)', async () => {
    const two = Buffer.concat([napi!.compress(Buffer.from('hello ')), napi!.compress(Buffer.from('world'))]);
    const d = createDecompressor('zstd');
    d.end(two);
    assert.equal((await slowRead(d, [0])).toString(), 'hello world');
    const n = nodeZstdDecompressor();
    if (n) {
      n.end(two);
      await assert.rejects(slowRead(n, [0]), (e: NodeJS.ErrnoException) => {
        assert.equal(e.code, 'ERR_ZSTD_FRAMES', e.message);
        assert.match(
          e.message,
          /^zstd: the input goes on after byte \d+, where Node\.js's own zstd stopped .*nodejs\/node#64741.*zstd-napi/,
        );
        return true;
      });
    }
  });
});
