import { Transform, type TransformCallback } from 'node:stream';

/**
 * zstd decompression whose memory stays bounded whatever the input (issue 19, "zstd bomb").
 *
 * Why not zstd-napi's own DecompressStream: its `_transform` decompresses a whole input chunk
 * in one synchronous loop and pushes every 128 KiB it makes without looking at what `push`
 * returns. zstd inflates up to ~32,000:1 (a 4-byte RLE block is 128 KiB of output), so one
 * 1 MiB input chunk can be 32 GiB of output: behind a consumer that reads asynchronously
 * (`for await`, `analyzeBlob`, the one-pass archive reader) it all piles up in the readable
 * buffer (a 128 KiB, 4 GiB bomb passed 3 GiB of RSS); behind a synchronous one (a hash in a
 * 'data' handler) memory stays flat but the event loop is blocked until the bomb is spent
 * (14.6 s for 4 GiB, deaf to SIGTERM).
 *
 * Here `ZSTD_decompressStream` is called with one output buffer of zstd's recommended size
 * (ZSTD_DStreamOutSize, 128 KiB: one full block) at a time, so each call does a bounded amount
 * of work and makes at most 128 KiB. After each push:
 * - `push` returned false (the consumer is behind): stop, and go on from `_read`, when the
 *   consumer asks for more (the same backpressure Node's own zlib streams honour);
 * - past a time slice, go on in `setImmediate`, so a fast consumer (a hash in a 'data'
 *   handler, or `for await`, which asks for the next chunk in a microtask) cannot keep the
 *   event loop (signals, timers, other streams) waiting for a whole bomb.
 * The input chunk is held (its write callback not called) until zstd has consumed all of it
 * and flushed all it can, so a writer sees backpressure too and the chunk is not reused early.
 *
 * The window: zstd's frame header says how much history the decoder must keep (up to 2 GiB,
 * more with long mode). `windowLogMax` makes zstd refuse a frame asking for more than
 * 2^windowLogMax bytes before allocating anything; the error names the window the frame asked
 * for (see windowMessage).
 */

/** What lading uses of zstd-napi's low-level binding (`zstd-napi/binding`). */
export interface ZstdBinding {
  DCtx: new () => ZstdDCtx;
  DParameter: { windowLogMax: number };
  dStreamOutSize(): number;
}

interface ZstdDCtx {
  /** ZSTD_decompressStream: [hint (0: a frame is complete and flushed), bytes produced, bytes consumed]. */
  decompressStream(dst: Uint8Array, src: Uint8Array): [number, number, number];
  setParameter(param: number, value: number): void;
}

/** The longest the event loop waits on one stream's decompression before other work runs. */
const SLICE_MS = 10;

/** The bytes a zstd frame header takes at most (magic, descriptor, window, dictionary ID, size). */
const FRAME_HEADER_MAX = 18;

const EMPTY = Buffer.alloc(0);

export class BoundedZstdDecompress extends Transform {
  private readonly dctx: ZstdDCtx;
  private readonly outSize: number;
  /** Input not yet consumed by zstd, and the callback that releases it. */
  private src: Buffer = EMPTY;
  private done: TransformCallback | undefined;
  /** Waiting for the consumer (`_read`) before making more output. */
  private waiting = false;
  /** Inside a frame: the input must not end here. */
  private inFrame = false;
  /** Input bytes consumed, and where the current frame started (for messages). */
  private consumed = 0;
  private frameStart = 0;
  /** The first bytes of the stream: the first frame's header, read again to name its window. */
  private head: Buffer = EMPTY;
  /** When this stream last let the event loop run (see SLICE_MS). */
  private sliceStart = performance.now();

  constructor(
    binding: ZstdBinding,
    private readonly windowLogMax: number,
  ) {
    const outSize = binding.dStreamOutSize();
    // One output chunk waiting for the consumer at most, plus the one being made.
    super({ readableHighWaterMark: outSize });
    this.outSize = outSize;
    this.dctx = new binding.DCtx();
    this.dctx.setParameter(binding.DParameter.windowLogMax, windowLogMax);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.head.length < FRAME_HEADER_MAX)
      this.head = Buffer.concat([this.head, chunk.subarray(0, FRAME_HEADER_MAX - this.head.length)]);
    this.src = chunk;
    this.done = done;
    this.pump();
  }

  override _read(size: number): void {
    if (this.waiting) {
      this.waiting = false;
      this.pump();
    }
    // Transform's own _read: releases a write held back while the readable side was full.
    super._read(size);
  }

  override _flush(done: TransformCallback): void {
    if (this.inFrame)
      done(zstdError('ERR_ZSTD_TRUNCATED', `zstd: unexpected end of data inside the frame at byte ${this.frameStart}`));
    else done();
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.src = EMPTY;
    this.done = undefined;
    this.waiting = false;
    cb(err);
  }

  private pump(): void {
    const done = this.done;
    if (done === undefined || this.destroyed) return;
    try {
      for (;;) {
        // Checked across calls: a consumer reading with `for await` takes each chunk and asks
        // for the next in microtasks, so without this the event loop would wait for the bomb.
        if (performance.now() - this.sliceStart > SLICE_MS) {
          setImmediate(() => {
            this.sliceStart = performance.now();
            this.pump();
          });
          return;
        }
        let out = Buffer.allocUnsafe(this.outSize);
        const [hint, produced, used] = this.dctx.decompressStream(out, this.src);
        this.src = this.src.subarray(used);
        this.consumed += used;
        // zstd answers 0 once a frame is decoded and flushed; a call that then has nothing to do
        // answers how much of the next frame's header it wants, which is not being in a frame.
        if (used > 0 || produced > 0 || hint === 0) this.inFrame = hint !== 0;
        if (hint === 0) this.frameStart = this.consumed;
        let more = true;
        if (produced > 0) {
          // A short output keeps only its bytes, not the whole 128 KiB buffer behind a view.
          out = produced < this.outSize / 4 ? Buffer.from(out.subarray(0, produced)) : out.subarray(0, produced);
          more = this.push(out);
          if (this.destroyed) return;
        }
        // zstd has consumed the chunk and flushed all it could (the output was not filled).
        if (this.src.length === 0 && produced < this.outSize) {
          this.src = EMPTY;
          this.done = undefined;
          done();
          return;
        }
        if (!more) {
          this.waiting = true;
          return;
        }
      }
    } catch (e) {
      this.src = EMPTY;
      this.done = undefined;
      done(this.describe(e as Error));
    }
  }

  private describe(e: Error): Error {
    return zstdError(
      isWindowError(e) ? 'ERR_ZSTD_WINDOW' : 'ERR_ZSTD_DECOMPRESS',
      isWindowError(e)
        ? windowMessage(this.frameStart === 0 ? this.head : undefined, this.frameStart, this.windowLogMax)
        : `zstd: ${e.message} (in the frame at byte ${this.frameStart})`,
      e,
    );
  }
}

function zstdError(code: string, message: string, cause?: Error): Error {
  const err: NodeJS.ErrnoException = new Error(message, cause === undefined ? undefined : { cause });
  err.code = code;
  return err;
}

/** zstd's "frame parameter window too large" (ZSTD_error_frameParameter_windowTooLarge). */
export function isWindowError(e: Error): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ZSTD_error_frameParameter_windowTooLarge' || /requires too much memory/i.test(e.message);
}

/** The one-line reason a frame is refused for its window, naming the window it asked for when known. */
export function windowMessage(head: Uint8Array | undefined, at: number | undefined, windowLogMax: number): string {
  const limit = 2 ** windowLogMax;
  const asked = head === undefined ? undefined : zstdFrameWindow(head);
  const needs = asked === undefined || asked <= limit ? `more than ${mib(limit)}` : mib(asked);
  return `zstd: the frame${at === undefined ? '' : ` at byte ${at}`} needs a ${needs} window; lading allows at most ${mib(limit)} (zstd's own default limit, what \`zstd -d\` accepts without --memory)`;
}

function mib(n: number): string {
  const m = n / 2 ** 20;
  return `${Number.isInteger(m) ? m : m.toFixed(1)} MiB`;
}

/**
 * The window a zstd frame declares (RFC 8878 3.1.1.1), from the frame's first bytes; undefined
 * when they are not a whole zstd frame header. Single-segment frames have no window
 * descriptor: their window is their content size.
 */
export function zstdFrameWindow(head: Uint8Array): number | undefined {
  if (head.length < 6 || head[0] !== 0x28 || head[1] !== 0xb5 || head[2] !== 0x2f || head[3] !== 0xfd) return undefined;
  const fhd = head[4]!;
  const singleSegment = (fhd >> 5) & 1;
  if (!singleSegment) {
    const wd = head[5]!;
    const base = 2 ** (10 + (wd >> 3));
    return base + (base / 8) * (wd & 7);
  }
  const at = 5 + [0, 1, 2, 4][fhd & 3]!;
  const len = [1, 2, 4, 8][fhd >> 6]!;
  if (head.length < at + len) return undefined;
  let size = 0;
  for (let i = len - 1; i >= 0; i--) size = size * 256 + head[at + i]!;
  return len === 2 ? size + 256 : size;
}
