/**
 * Read buffers that go back to a pool once every holder is done with them.
 *
 * Why: a push streams gigabytes through 1 MiB Buffers. Allocated fresh for each read, each
 * one dies a few stages later, but V8 collects such memory (held outside its heap) only after
 * ~64 MiB of it has piled up, while the small JavaScript heap triggers nothing: on a 1.25 GiB
 * push, about half the peak RSS was dead buffers. Reused, the same few buffers carry the data.
 *
 * The protocol is reference counting on the exact Buffer objects a pooled source emits:
 * - a pooled chunk starts with one reference, owned by whichever stage ends its journey (the
 *   one that copies it, writes it to a socket or a file, or compresses it);
 * - a stage that passes a chunk on unchanged (hashing, counting) does nothing;
 * - a stage that keeps using a chunk after passing it on (an inflater reading it
 *   asynchronously) calls `hold` first and `release` when it is done;
 * - a stage that emits views of a chunk instead of the chunk (stored deflate blocks) links
 *   each view with `linkView`, then releases the chunk: the view's release stands for it.
 * `release` on any other Buffer does nothing, so a stage that knows nothing of the pool, or
 * drops a chunk on an error path, only leaves it to the garbage collector, never corrupts it.
 */

import type { Writable } from 'node:stream';

interface Tracked {
  pool: BufferPool;
  /** The pool's whole buffer (the chunk may be a shorter view of its start). */
  whole: Buffer;
  refs: number;
}

const tracked = new WeakMap<Buffer, Tracked>();
/** A view emitted in place of (part of) a pooled chunk: its last release is one of the chunk's. */
const views = new WeakMap<Buffer, { parent: Buffer; refs: number }>();

export class BufferPool {
  private readonly free: Buffer[] = [];

  /**
   * @param size bytes per buffer
   * @param keep how many idle buffers to keep for reuse; more are left to the GC
   */
  constructor(
    readonly size: number,
    private readonly keep: number,
  ) {}

  /** A buffer of `size` bytes, not yet tracked: fill it, then `emit` the part holding data. */
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  /** Starts tracking `chunk` (a view of the start of `whole`, from take()) with one reference. */
  emit(whole: Buffer, length: number): Buffer {
    const chunk = length === whole.length ? whole : whole.subarray(0, length);
    tracked.set(chunk, { pool: this, whole, refs: 1 });
    return chunk;
  }

  /**
   * Tests set this: a buffer coming back is overwritten at once, so a stage that still reads
   * a released chunk sees garbage instead of, most of the time, the right bytes.
   */
  static poison = false;

  /** Gives back a buffer from take() (a failed or empty read, or a chunk's last release). */
  giveBack(whole: Buffer): void {
    if (BufferPool.poison) whole.fill(0xa5);
    if (this.free.length < this.keep && whole.length === this.size) this.free.push(whole);
  }

  /** Idle buffers held (for tests). */
  get idle(): number {
    return this.free.length;
  }
}

/** One more holder of `chunk` (see the protocol above); no-op for untracked buffers. */
export function hold(chunk: Buffer): void {
  const v = views.get(chunk);
  if (v) {
    v.refs++;
    return;
  }
  const t = tracked.get(chunk);
  if (t) t.refs++;
}

/** A holder of `chunk`, or of a view linked to it, is done with it. */
export function release(chunk: Buffer): void {
  const v = views.get(chunk);
  if (v) {
    if (--v.refs > 0) return;
    views.delete(chunk);
    release(v.parent);
    return;
  }
  const t = tracked.get(chunk);
  if (!t) return;
  if (--t.refs > 0) return;
  tracked.delete(chunk);
  t.pool.giveBack(t.whole);
}

/** `view` (a new object over part of `chunk`'s memory) is passed on in its place: one more reference to `chunk`, released with the view. */
export function linkView(view: Buffer, chunk: Buffer): void {
  const t = tracked.get(chunk);
  if (!t || view === chunk || views.has(view)) return;
  t.refs++;
  views.set(view, { parent: chunk, refs: 1 });
}

/**
 * Writes `data` (or a view of `owner`) to a stream that reads it after write() returns (zlib):
 * `owner` is held until the stream is done with it. Returns write()'s answer.
 */
export function writeHeld(w: Writable, data: Buffer, owner: Buffer = data): boolean {
  hold(owner);
  return w.write(data, () => release(owner));
}

/** The chunks in one new buffer; the chunks themselves, copied, are released. */
export function concatReleasing(chunks: readonly Buffer[]): Buffer {
  const all = Buffer.concat(chunks);
  for (const c of chunks) release(c);
  return all;
}

/** Whether `chunk` is a pooled chunk or a linked view (for tests and assertions). */
export function isTracked(chunk: Buffer): boolean {
  return tracked.has(chunk) || views.has(chunk);
}
