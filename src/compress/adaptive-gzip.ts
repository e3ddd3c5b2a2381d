import { Transform, type TransformCallback } from 'node:stream';
import * as zlib from 'node:zlib';
import { concatReleasing, linkView, release, writeHeld } from '../util/buffer-pool';

/**
 * gzip that does not waste time on data it cannot shrink.
 *
 * Layers often hold already-compressed files (packages, images, jars) that deflate can
 * only make bigger; Node's zlib at level 1 crawls through such data at ~44 MiB/s here. This
 * stream samples each 256 KiB segment and, when it looks incompressible (byte entropy
 * close to 8 bits), writes it as deflate stored blocks itself (no copy: a 5-byte header
 * per 64 KiB in front of views of the input), after ending the deflate stream's run with a
 * full flush (byte-aligned, no back-references across it); compressible segments go to
 * zlib. The output is an ordinary single-member gzip stream, and deterministic: the same
 * input always makes the same bytes, so digests stay stable across pushes.
 *
 * The deflate data is spliced from two writers, so this writes the gzip framing itself
 * (RFC 1952: a 10-byte header, then CRC-32 and length) around a DeflateRaw stream.
 */
const SEGMENT = 256 * 1024;
const SAMPLE = 4096;
/** Estimated bits per byte above which deflate is not worth running (random data: ~7.95). */
const THRESHOLD = 7.8;

const log2 = Math.log2;

/** Shannon entropy of a strided sample of the segment, in bits per byte. */
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

type Crc32 = (data: Buffer, value?: number) => number;
const crc32: Crc32 =
  (zlib as unknown as { crc32?: Crc32 }).crc32 ??
  ((): Crc32 => {
    // Node < 20.15 lacks zlib.crc32: a table-driven fallback.
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
    return (data, value = 0) => {
      let c = (value ^ 0xffffffff) >>> 0;
      for (const b of data) c = table[(c ^ b) & 0xff]! ^ (c >>> 8);
      return (c ^ 0xffffffff) >>> 0;
    };
  })();

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

export class AdaptiveGzip extends Transform {
  private readonly gz: zlib.DeflateRaw;
  private crc = 0;
  private size = 0;
  private pending: Buffer[] = [];
  private pendingLen = 0;
  /** Bytes written to the deflate stream since its last full flush. */
  private gzDirty = false;
  /** Bytes that went through stored blocks, for --debug and the benchmark. */
  storedBytes = 0;

  constructor(level = 1) {
    super({ highWaterMark: 1024 * 1024 });
    this.gz = zlib.createDeflateRaw({ level, chunkSize: 256 * 1024 });
    this.push(HEADER);
    this.gz.on('data', (c: Buffer) => {
      if (!this.push(c)) this.gz.pause();
    });
    this.gz.on('error', (e) => this.destroy(e));
  }

  override _read(size: number): void {
    this.gz.resume();
    // Transform parks the write callback of a _transform that finished while the readable
    // side was full and releases it from its own _read: skip this and, once the deflate
    // stream has nothing left to emit, nobody ever calls it again and the pipeline hangs
    // (seen as pushes stalling at a few hundred MiB under a slow registry).
    super._read(size);
  }

  /**
   * Ends the deflate stream's current run at a byte boundary with no reference to what came
   * before (Z_FULL_FLUSH), and waits until all it produced has been passed on, so stored
   * blocks written next land after it. Deflate resumes later as if starting afresh.
   */
  private async settleDeflate(): Promise<void> {
    if (!this.gzDirty) return;
    this.gzDirty = false;
    await new Promise<void>((resolve) => this.gz.flush(zlib.constants.Z_FULL_FLUSH, () => resolve()));
    // Output still buffered in the (paused) deflate stream flows once the reader wants more.
    while (this.gz.readableLength > 0 && !this.destroyed) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.gz.off('data', done);
          this.off('close', done);
          resolve();
        };
        this.gz.on('data', done);
        this.once('close', done);
      });
    }
    if (this.destroyed) throw this.errored ?? new Error('compression stream destroyed');
  }

  /**
   * `parent`: the pooled chunk `seg` is a view of (see util/buffer-pool), which this stream
   * then keeps alive for as long as zlib reads the segment or a stored block views it.
   */
  private async writeSegment(seg: Buffer, parent?: Buffer): Promise<void> {
    this.crc = crc32(seg, this.crc);
    this.size += seg.length;
    if (sampleEntropy(seg) > THRESHOLD) {
      // Incompressible: stored blocks written here directly. Running them through zlib at
      // level 0 would cost a copy into its window and out again (~1.5 CPU-s per GiB).
      await this.settleDeflate();
      this.storedBytes += seg.length;
      // storedBlocks gives header, data, header, data...: each data view holds the chunk.
      storedBlocks(seg).forEach((b, i) => {
        if (parent && i % 2 === 1) linkView(b, parent);
        this.push(b);
      });
      return;
    }
    this.gzDirty = true;
    // zlib reads the segment after write() returns: the chunk is released once it is done.
    const ok = parent ? writeHeld(this.gz, seg, parent) : this.gz.write(seg);
    if (!ok) await new Promise<void>((resolve) => this.gz.once('drain', resolve));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.pendingLen === 0 && chunk.length % SEGMENT === 0) {
      // Whole segments (a file read gives 1 MiB chunks): written as views of the chunk, which
      // goes back to its pool when the last of them is done with.
      (async () => {
        for (let off = 0; off < chunk.length; off += SEGMENT) await this.writeSegment(chunk.subarray(off, off + SEGMENT), chunk);
      })().then(
        () => {
          release(chunk);
          cb();
        },
        cb,
      );
      return;
    }
    this.pending.push(chunk);
    this.pendingLen += chunk.length;
    if (this.pendingLen < SEGMENT) {
      cb();
      return;
    }
    // A chunk kept whole here may still be viewed by `rest`: it is left to the GC, not released.
    const all = this.pending.length === 1 ? this.pending[0]! : concatReleasing(this.pending);
    const whole = all.length - (all.length % SEGMENT);
    const rest = all.subarray(whole);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingLen = rest.length;
    (async () => {
      for (let off = 0; off < whole; off += SEGMENT) await this.writeSegment(all.subarray(off, off + SEGMENT));
    })().then(() => cb(), cb);
  }


  override _flush(cb: TransformCallback): void {
    const tail = concatReleasing(this.pending);
    this.pending = [];
    (async () => {
      if (tail.length > 0) await this.writeSegment(tail);
      await new Promise<void>((resolve, reject) => {
        this.gz.once('end', resolve);
        this.gz.once('error', reject);
        this.gz.end();
      });
      const trailer = Buffer.alloc(8);
      trailer.writeUInt32LE(this.crc >>> 0, 0);
      trailer.writeUInt32LE(this.size % 0x100000000, 4);
      this.push(trailer);
    })().then(() => cb(), cb);
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.gz.destroy();
    cb(err);
  }
}
