import { createHash, type Hash } from 'node:crypto';
import { nativeBinding, type NativeBinding, type NativeHash } from '../native/binding';
import { hold, release } from '../util/buffer-pool';
import type { Digest, DigestAlgorithm } from './digest';

/**
 * A digest of a stream's bytes, computed as they pass. Where lading's native binding is built,
 * off the main thread: a push's main thread is its bottleneck once deflate runs on the pool
 * (igzip), and a third of its work was hashing the layer as read and the compressed layer as
 * sent. Elsewhere, Node's crypto on the main thread, as before.
 */
export interface StreamDigester {
  /** Takes `chunk` to hash; a pooled chunk is held until it is hashed. */
  update(chunk: Buffer): void;
  /** When hashing lags far behind (its queue over LAG bytes): resolves once it has caught up. */
  ready(): Promise<void> | undefined;
  /** The digest of everything given; rejects if hashing failed. */
  digest(): Promise<Digest>;
}

/** Bytes waiting to be hashed before a writer is asked to wait (see `ready`). */
const LAG = 4 * 1024 * 1024;

/** On the main thread, with Node's crypto. */
export class MainThreadDigester implements StreamDigester {
  private readonly hash: Hash;
  constructor(private readonly alg: DigestAlgorithm) {
    this.hash = createHash(alg);
  }
  update(chunk: Buffer): void {
    this.hash.update(chunk);
  }
  ready(): undefined {
    return undefined;
  }
  digest(): Promise<Digest> {
    return Promise.resolve(`${this.alg}:${this.hash.digest('hex')}` as Digest);
  }
}

/**
 * On the libuv thread pool, with Node's OpenSSL through the binding. Updates of one context run
 * one at a time, in order; chunks that arrive meanwhile wait and go in the next trip together,
 * so hashing keeps pace however long the pool's queue (compression jobs) makes each trip.
 */
export class PoolDigester implements StreamDigester {
  private readonly ctx: NativeHash;
  private queue: Buffer[] = [];
  private queued = 0;
  private running = false;
  private failed: Error | undefined;
  private waiters: (() => void)[] = [];
  private finish: { resolve: (d: Digest) => void; reject: (e: Error) => void } | undefined;

  constructor(
    private readonly b: Required<NativeBinding>,
    private readonly alg: DigestAlgorithm,
  ) {
    this.ctx = b.hashCreate(alg);
  }

  update(chunk: Buffer): void {
    if (chunk.length === 0) return;
    hold(chunk);
    this.queue.push(chunk);
    this.queued += chunk.length;
    this.next();
  }

  ready(): Promise<void> | undefined {
    if (this.queued <= LAG || this.failed) return undefined;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  digest(): Promise<Digest> {
    return new Promise((resolve, reject) => {
      this.finish = { resolve, reject };
      this.next();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private next(): void {
    if (this.running) return;
    if (this.failed) {
      this.finish?.reject(this.failed);
      this.finish = undefined;
      return;
    }
    if (this.queue.length === 0) {
      this.wake();
      if (this.finish) {
        const f = this.finish;
        this.finish = undefined;
        f.resolve(`${this.alg}:${this.b.hashDigest(this.ctx).toString('hex')}` as Digest);
      }
      return;
    }
    const batch = this.queue;
    this.queue = [];
    this.running = true;
    const done = (e?: Error): void => {
      for (const c of batch) {
        this.queued -= c.length;
        release(c);
      }
      this.running = false;
      if (e) {
        this.failed = e;
        this.wake();
      } else if (this.queued <= LAG) this.wake();
      this.next();
    };
    this.b.hashUpdate(this.ctx, batch).then(() => done(), done);
  }
}

/**
 * Hands `chunk` to `d`, then calls `next` at once, or once hashing has caught up when it lags
 * (what a Transform that hashes as bytes pass does before passing a chunk on).
 */
export function hashThen(d: StreamDigester, chunk: Buffer, next: () => void): void {
  d.update(chunk);
  const wait = d.ready();
  if (wait) void wait.then(next);
  else next();
}

/** Below this many bytes (when known), hashing stays on the main thread: a trip to the pool costs more. */
const POOL_MIN = 1024 * 1024;

/** A digester for a stream of `size` bytes (undefined: unknown). */
export function createStreamDigester(alg: DigestAlgorithm, size?: number): StreamDigester {
  const b = nativeBinding();
  if (b?.hashCreate && b.hashUpdate && b.hashDigest && (size === undefined || size >= POOL_MIN))
    return new PoolDigester(b as Required<NativeBinding>, alg);
  return new MainThreadDigester(alg);
}
