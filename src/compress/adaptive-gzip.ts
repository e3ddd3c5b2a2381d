import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { concatReleasing, hold, linkView, release } from '../util/buffer-pool';
import { crc32, crc32Combine } from './crc32';
import { igzip, type Igzip } from './igzip';

/**
 * gzip of one stream on every core, deterministic, that does not waste time on data it cannot
 * shrink.
 *
 * Parallel (after pigz's design, written anew): the input is cut into fixed blocks of
 * `blockSize` bytes (the last one shorter). Each block is compressed on its own as a raw
 * deflate stream, asynchronously, so several blocks run at once on the libuv thread pool (one
 * block per pool thread, 4 by default); a block is primed with the 32 KiB of input just before
 * it as a preset dictionary, so matches reach back across the block boundary as in one stream,
 * and ends with a sync flush: its last deflate block is non-final and the output ends on a byte
 * boundary with an empty stored block. The blocks' outputs are written in input order, then
 * one final empty deflate block (`03 00`), making ONE gzip member whose CRC-32 (each block's,
 * joined in order) and length cover the whole input.
 *
 * Two engines make the deflate streams: ISA-L's igzip through lading's optional native binding
 * (src/compress/igzip.ts; ~400 MiB/s per core on real files at its level 2, which also
 * checksums each block on the pool thread), the default wherever the binding is built; and
 * Node's zlib (~60 MiB/s per core at level 2), everywhere else and whenever a zlib level is
 * asked for. Both write the same format; the bytes differ between engines.
 *
 * Deterministic: block boundaries depend on byte counts only, the dictionary is the raw
 * input (not anything compressed), and each block's deflate stream is a pure function of
 * (block, dictionary, level). The same input, level and block size give the same bytes
 * whatever the core count, the thread pool's size or the order blocks finish in, so digests
 * are reproducible and the compressed-digest cache holds across machines with the same engine
 * (a Node.js whose zlib changed, or another ISA-L, may emit other, equally valid, bytes).
 *
 * Adaptive: layers often hold already-compressed files (packages, images, jars) that deflate
 * can only make bigger, and Node's zlib crawls through such data at ~44 MiB/s here. A block
 * whose sampled byte entropy is close to 8 bits is written as deflate stored blocks by this
 * stream itself (no copy: a 5-byte header per 64 KiB in front of views of the input).
 *
 * Memory: at most `inFlight` blocks are compressing or waiting to be written at once (each
 * holds its input, zlib's state, ~550 KiB with memLevel 9, and its output); the writable side takes
 * no more input until a block is written, and the readable side's buffer stops it as usual.
 */
/**
 * The block size. Each block costs the main thread a deflate stream's set-up and dispatch (~0.2 ms,
 * most of it zlib's init with the dictionary and the output buffer): at 256 KiB that was ~1 s of
 * serial main-thread work per 500 MiB layer, which capped two cores at ~1.5x one. At 1 MiB a
 * push of the bench's real-files layer took 5.2-5.5 s instead of 5.8-6.3 s on two cores (A/B, 3
 * runs each), for +7 MiB peak RSS and a 0.2% larger layer.
 */
export const BLOCK_SIZE = 1024 * 1024;
/**
 * The default level. On a layer of real files (binaries, libraries, text; bench scenario
 * "real"), level 2 with MEM_LEVEL 9 costs the CPU of level 1 with zlib's default memLevel 8
 * and makes a layer 1.5% smaller: 1.03-1.04x the size of skopeo's, where level 1 gave
 * 1.04-1.055x (the issue allows 1.05x).
 */
export const DEFAULT_LEVEL = 2;
/**
 * igzip's level when it is the engine. On the bench's real-files layer (495 MiB, 1 MiB blocks
 * with dictionaries, this stream): level 1 makes a layer 1.055x the size of skopeo's, level 2
 * 1.044x, level 3 1.036x. Level 2, not 3: ISA-L picks its code by the CPU's instruction set,
 * and its level 3 writes other bytes with AVX-512 than with AVX2 or SSE4.2 (the same blocks
 * compressed under qemu-x86_64 -cpu Haswell and -cpu Nehalem), so a layer's digest would change
 * from machine to machine; levels 1 and 2 write the same bytes on all three
 * (test/compress/igzip-isa.test.ts). Level 2 deflates at ~400 MiB/s per core, zlib's level 2
 * at ~60.
 */
export const IGZIP_DEFAULT_LEVEL = 2;

export type GzipEngine = 'igzip' | 'zlib';

/** igzip where lading's binding is built (and LADING_GZIP_ENGINE is not 'zlib'), else zlib. */
export function defaultGzipEngine(): GzipEngine {
  return igzip() ? 'igzip' : 'zlib';
}

/** An engine's level when none is given. */
export function defaultGzipLevel(engine: GzipEngine): number {
  return engine === 'igzip' ? IGZIP_DEFAULT_LEVEL : DEFAULT_LEVEL;
}
/**
 * zlib's memLevel: 9 doubles the hash table (fewer collisions: ~8% less CPU at levels 1-2
 * on real files, and slightly smaller output) for ~200 KiB more per block in flight. Part
 * of what determines the bytes, like the level and the block size.
 */
const MEM_LEVEL = 9;
/** Deflate's window: the history a block's dictionary gives it. */
const WINDOW = 32 * 1024;
const SAMPLE = 4096;
/**
 * Estimated bits per byte above which a block is stored rather than deflated (random data:
 * ~7.955 from 4,096 samples). zlib crawls through such data (~44 MiB/s), so it stores from 7.8;
 * igzip does not, and deflating blocks between 7.8 and 7.9 made the real-files layer 0.5%
 * smaller (1.044x skopeo's instead of 1.0495x at level 2), so it stores from 7.9 only.
 */
export const STORE_ABOVE: Readonly<Record<GzipEngine, number>> = { zlib: 7.8, igzip: 7.9 };

/**
 * Blocks in flight per stream by default: two per core, at least 4. One per core keeps the
 * cores busy only if blocks finish in order; the second lets a core start the next block
 * while an earlier, slower one holds up the output.
 */
export function defaultInFlight(): number {
  return Math.max(4, 2 * availableParallelism());
}

const log2 = Math.log2;

/** Deflate's output for a block of `n` bytes fits in this (its worst case is a few bytes per 16 KiB over the input). */
function outputBound(n: number): number {
  return n + (n >>> 10) + 64;
}

/** Releases a pooled chunk's reference, if there is a chunk. */
function drop(parent: Buffer | undefined): void {
  if (parent) release(parent);
}

/** Shannon entropy of a strided sample of the block, in bits per byte. */
export function sampleEntropy(buf: Buffer): number {
  const counts = new Uint32Array(256);
  const n = Math.min(SAMPLE, buf.length);
  if (n === 0) return 0;
  const step = buf.length / n;
  for (let i = 0; i < n; i++) counts[buf[Math.floor(i * step)]!]!++;
  let h = 0;
  for (let i = 0; i < 256; i++) {
    const c = counts[i]!;
    if (c > 0) {
      const p = c / n;
      h -= p * log2(p);
    }
  }
  return h;
}

/** Fixed header: no name, mtime 0, OS "unknown" (as Go's writer): reproducible bytes. */
const HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
/** An empty final deflate block with fixed codes (BFINAL 1, BTYPE 01, end-of-block code): ends the stream. */
const FINAL_BLOCK = Buffer.from([0x03, 0x00]);

/** Largest stored block deflate allows (LEN is 16 bits). */
const STORED_MAX = 65535;

/**
 * Deflate stored blocks (RFC 1951 3.2.4) holding `seg`, none final: a byte-aligned header
 * (BFINAL 0, BTYPE 00), LEN and NLEN, then the bytes themselves (views, not copies).
 */
export function storedBlocks(seg: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < seg.length; off += STORED_MAX) {
    const n = Math.min(STORED_MAX, seg.length - off);
    const h = Buffer.allocUnsafe(5);
    h[0] = 0;
    h.writeUInt16LE(n, 1);
    h.writeUInt16LE(~n & 0xffff, 3);
    out.push(h, seg.subarray(off, off + n));
  }
  return out;
}

export interface AdaptiveGzipOptions {
  /** What deflates the blocks. @default defaultGzipEngine() */
  engine?: GzipEngine;
  /** The engine's level: zlib 0-9, igzip 1-3. @default DEFAULT_LEVEL (zlib 2) or IGZIP_DEFAULT_LEVEL (igzip 2) */
  level?: number;
  /** Bytes per block; part of what determines the output bytes. At least 32 KiB. @default 1 MiB */
  blockSize?: number;
  /** Blocks compressing or waiting to be written at once; does not change the output. @default defaultInFlight() */
  inFlight?: number;
}

/**
 * A block cut from the input: `data` may be a view of the pooled chunk `parent`, on which it
 * then holds two references: one for its own compression, released when zlib is done (or
 * passed on to the views of stored blocks), and one for the next block's dictionary, released
 * when that block is done with it (or when there is no next block).
 */
interface Cut {
  data: Buffer;
  parent: Buffer | undefined;
}

interface Running {
  /** Its output, once compressed. */
  out: Buffer[] | undefined;
  /** Its input's CRC-32 and length, joined to the stream's when written. */
  crc: number;
  length: number;
  /** Pooled chunks it holds (its input, its dictionary's), released when the engine is done. */
  held: Buffer[];
}

export class AdaptiveGzip extends Transform {
  readonly engine: GzipEngine;
  readonly level: number;
  readonly blockSize: number;
  readonly inFlight: number;
  private readonly binding: Igzip | null;
  private crc = 0;
  private size = 0;
  private pending: Buffer[] = [];
  private pendingLen = 0;
  /** Blocks cut but not yet handed to zlib, in order. */
  private readonly queue: Cut[] = [];
  /** Blocks handed to zlib (or stored), in order, until written. */
  private readonly running: Running[] = [];
  /** The last block handed out, whose tail is the next block's dictionary. */
  private prev: Cut | undefined;
  /** _transform's callback, called once its input is all handed out. */
  private waiting: TransformCallback | undefined;
  /** _flush's callback, called once every block is written. */
  private finishing: TransformCallback | undefined;
  /** Bytes that went through stored blocks, for --debug and the benchmark. */
  storedBytes = 0;
  /** Blocks compressed by zlib and blocks stored (for tests). */
  readonly blocks = { deflated: 0, stored: 0 };

  constructor(levelOrOptions: number | AdaptiveGzipOptions = {}) {
    super({ highWaterMark: 1024 * 1024 });
    // A bare number is a zlib level (the CLI's --compression-level).
    const o: AdaptiveGzipOptions =
      typeof levelOrOptions === 'number' ? { level: levelOrOptions, engine: 'zlib' } : levelOrOptions;
    this.engine = o.engine ?? defaultGzipEngine();
    this.binding = this.engine === 'igzip' ? igzip() : null;
    if (this.engine === 'igzip' && !this.binding)
      throw new Error("gzip engine igzip: lading's native binding is not built (npm rebuild lading, with libisal-dev)");
    this.level = o.level ?? defaultGzipLevel(this.engine);
    this.blockSize = o.blockSize ?? BLOCK_SIZE;
    this.inFlight = o.inFlight ?? defaultInFlight();
    const [lo, hi] = this.engine === 'igzip' ? [1, 3] : [0, 9];
    if (!Number.isInteger(this.level) || this.level < lo || this.level > hi)
      throw new RangeError(`${this.engine} level must be ${lo}-${hi}, not ${this.level}`);
    if (!Number.isInteger(this.blockSize) || this.blockSize < WINDOW || this.blockSize > 64 * 1024 * 1024)
      throw new RangeError(`gzip block size must be an integer from ${WINDOW} to 64 MiB`);
    if (!Number.isInteger(this.inFlight) || this.inFlight < 1) throw new RangeError('blocks in flight must be >= 1');
    this.push(HEADER);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const B = this.blockSize;
    if (this.pendingLen === 0 && chunk.length % B === 0) {
      // Whole blocks (a chunk of a multiple of the block size): views of the chunk, each holding it;
      // the chunk goes back to its pool when the last of them is done with.
      for (let off = 0; off < chunk.length; off += B) {
        hold(chunk);
        hold(chunk);
        this.cut(chunk.subarray(off, off + B), chunk);
      }
      release(chunk);
    } else {
      this.pending.push(chunk);
      this.pendingLen += chunk.length;
      if (this.pendingLen >= B) {
        // Copied into one buffer (the chunks are released), cut there; the rest waits.
        const all = concatReleasing(this.pending);
        const whole = all.length - (all.length % B);
        for (let off = 0; off < whole; off += B) this.cut(all.subarray(off, off + B), undefined);
        const rest = all.subarray(whole);
        this.pending = rest.length > 0 ? [rest] : [];
        this.pendingLen = rest.length;
      }
    }
    this.waiting = cb;
    this.pump();
  }

  override _flush(cb: TransformCallback): void {
    if (this.pendingLen > 0) this.cut(concatReleasing(this.pending), undefined);
    this.pending = [];
    this.pendingLen = 0;
    this.finishing = cb;
    this.pump();
  }

  /** Takes the next block of the input, in order. */
  private cut(data: Buffer, parent: Buffer | undefined): void {
    this.size += data.length;
    this.queue.push({ data, parent });
  }

  private pumping = false;
  private pumpAgain = false;

  /**
   * Hands queued blocks out while there is room, writes finished blocks in order, calls back.
   * Not re-entered: a push() or a callback that leads back here makes the running call loop.
   */
  private pump(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        this.pumpOnce();
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }

  private pumpOnce(): void {
    if (this.destroyed) return;
    // Written first, so their places go to the next blocks; stored blocks are done as they
    // start, and written by the loop the caller runs again.
    this.writeDone();
    while (this.queue.length > 0 && this.running.length < this.inFlight) this.start(this.queue.shift()!);
    if (this.writeDone()) this.pumpAgain = true;
    if (this.queue.length === 0 && this.waiting) {
      const cb = this.waiting;
      this.waiting = undefined;
      cb();
    }
    if (this.finishing && this.queue.length === 0 && this.running.length === 0) {
      const cb = this.finishing;
      this.finishing = undefined;
      drop(this.prev?.parent);
      this.prev = undefined;
      const trailer = Buffer.allocUnsafe(8);
      trailer.writeUInt32LE(this.crc >>> 0, 0);
      trailer.writeUInt32LE(this.size % 0x100000000, 4);
      this.push(FINAL_BLOCK);
      this.push(trailer);
      cb();
    }
  }

  /** Writes the finished blocks at the head, in order; whether there were any. */
  private writeDone(): boolean {
    let any = false;
    while (this.running.length > 0 && this.running[0]!.out !== undefined) {
      const r = this.running.shift()!;
      this.crc = crc32Combine(this.crc, r.crc, r.length);
      for (const b of r.out!) this.push(b);
      any = true;
    }
    return any;
  }

  private start(block: Cut): void {
    const { data, parent } = block;
    const prev = this.prev;
    this.prev = block;
    if (sampleEntropy(data) > STORE_ABOVE[this.engine]) {
      // Incompressible: stored blocks, written here. Each view of the data holds the chunk.
      const out = storedBlocks(data);
      if (parent) for (let i = 1; i < out.length; i += 2) linkView(out[i]!, parent);
      this.storedBytes += data.length;
      this.blocks.stored++;
      this.running.push({ out, held: [], crc: crc32(data), length: data.length });
      // No dictionary needed: the previous block's reference goes; this block's own reference
      // now lives in its views.
      drop(prev?.parent);
      drop(parent);
      return;
    }
    const job: Running = { out: undefined, held: [], crc: 0, length: data.length };
    // This block's input and its dictionary's stay held until the engine has read them (zlib
    // copies the dictionary when the stream is created, but that is its business, not ours).
    if (parent) job.held.push(parent);
    const dictionary = prev ? prev.data.subarray(Math.max(0, prev.data.length - WINDOW)) : undefined;
    // The previous block's dictionary reference, now this job's to release.
    if (prev?.parent) job.held.push(prev.parent);
    this.running.push(job);
    this.blocks.deflated++;
    const done = (err: Error | null, out?: Buffer): void => {
      for (const h of job.held) release(h);
      job.held = [];
      if (this.destroyed) return;
      if (err) {
        this.destroy(err);
        return;
      }
      job.out = [out!];
      this.pump();
    };
    if (this.binding) {
      this.binding.deflate(data, dictionary ?? null, this.level).then(
        (r) => {
          job.crc = r.crc;
          done(null, r.data);
        },
        (err: Error) => done(err),
      );
      return;
    }
    job.crc = crc32(data);
    const opts: zlib.ZlibOptions = {
      level: this.level,
      memLevel: MEM_LEVEL,
      // Z_SYNC_FLUSH instead of Z_FINISH: no final block, the output ends byte-aligned. With
      // the data itself (flush), so all the output comes in one piece, not two to concatenate.
      flush: zlib.constants.Z_SYNC_FLUSH,
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
      // One output buffer for the whole block, so one trip to the thread pool.
      chunkSize: outputBound(data.length),
    };
    if (dictionary) opts.dictionary = dictionary;
    zlib.deflateRaw(data, opts, done);
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    // Blocks not handed out, and stored views not written, give their chunks back.
    for (const c of this.queue) {
      drop(c.parent);
      drop(c.parent);
    }
    this.queue.length = 0;
    for (const r of this.running) for (const b of r.out ?? []) release(b);
    drop(this.prev?.parent);
    this.prev = undefined;
    for (const c of this.pending) release(c);
    this.pending = [];
    cb(err);
  }
}
