/**
 * Blob upload sessions, shared by the ECR layer API (InitiateLayerUpload ...) and the
 * registry API (POST/PATCH/PUT blobs/uploads). A session is a temp file under the data
 * directory plus an incremental sha256: bytes are appended as they arrive and hashed once,
 * never held whole in memory. Work on one session is serialized.
 */
import { randomUUID, type Hash } from 'node:crypto';
import { promises as fsp, type promises } from 'node:fs';
import { join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createDigester, finishDigest, type Digest } from '../image/digest';
import { Mutex } from './storage';

/** Writes at increasing positions of an open file, hashing what was written. */
class PositionalWriter extends Writable {
  written = 0;
  constructor(
    private readonly fh: promises.FileHandle,
    private position: number,
    private readonly hash: Hash,
    private readonly limit: number,
  ) {
    super();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.written + chunk.length > this.limit) {
      cb(new Error(`more than the ${this.limit} bytes announced`));
      return;
    }
    this.fh.write(chunk, 0, chunk.length, this.position).then(
      () => {
        this.position += chunk.length;
        this.written += chunk.length;
        this.hash.update(chunk);
        cb();
      },
      (e: Error) => cb(e),
    );
  }
}

export class Upload {
  /** Bytes received so far (= the next expected offset). */
  size = 0;
  /** Size of each part (ECR) or chunk (registry PATCH / PUT body) received, in order. */
  readonly chunks: number[] = [];
  lastActive = Date.now();
  private hash: Hash = createDigester('sha256');
  private fh: promises.FileHandle | undefined;
  private readonly mutex = new Mutex();
  closed = false;
  /** Requests using or waiting for the session. */
  private busy = 0;

  get idle(): boolean {
    return this.busy === 0;
  }

  constructor(
    readonly id: string,
    readonly repository: string,
    readonly api: 'ecr' | 'registry',
    readonly path: string,
  ) {}

  async open(): Promise<void> {
    this.fh = await fsp.open(this.path, 'w+');
  }

  /** Serializes work on this session (parts of one upload are applied in arrival order). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.busy++;
    return this.mutex.run(async () => {
      try {
        return await fn();
      } finally {
        this.busy--;
        this.lastActive = Date.now();
      }
    });
  }

  /** Appends one part held in memory (ECR parts are at most 10 MiB). */
  async append(buf: Buffer): Promise<void> {
    if (!this.fh) throw new Error('upload is closed');
    let off = 0;
    while (off < buf.length) {
      const { bytesWritten } = await this.fh.write(buf, off, buf.length - off, this.size + off);
      off += bytesWritten;
    }
    this.hash.update(buf);
    this.size += buf.length;
    this.chunks.push(buf.length);
  }

  /**
   * Appends a streamed chunk. The hash is advanced on a copy and kept only when the whole
   * chunk arrived, so an interrupted PATCH leaves the session as it was.
   */
  async appendStream(body: Readable, limit = Number.MAX_SAFE_INTEGER): Promise<number> {
    if (!this.fh) throw new Error('upload is closed');
    const h = this.hash.copy();
    const w = new PositionalWriter(this.fh, this.size, h, limit);
    await pipeline(body, w);
    this.hash = h;
    this.size += w.written;
    if (w.written > 0) this.chunks.push(w.written);
    return w.written;
  }

  /** The digest of everything received so far (the session can go on). */
  digest(): Digest {
    return finishDigest(this.hash.copy(), 'sha256');
  }

  /** Closes the file, keeping it (to be renamed into place). */
  async finish(): Promise<void> {
    this.closed = true;
    const fh = this.fh;
    this.fh = undefined;
    if (fh) {
      await fh.truncate(this.size);
      await fh.close();
    }
  }

  async discard(): Promise<void> {
    this.closed = true;
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close().catch(() => undefined);
    await fsp.rm(this.path, { force: true });
  }
}

export class Uploads {
  private readonly sessions = new Map<string, Upload>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly dir: string,
    /** Sessions idle longer than this are dropped with their temp file. */
    private readonly ttlMs: number,
  ) {
    this.timer = setInterval(() => void this.sweep(), Math.min(60_000, Math.max(1000, ttlMs / 2)));
    this.timer.unref();
  }

  async create(repository: string, api: 'ecr' | 'registry'): Promise<Upload> {
    const id = randomUUID();
    const u = new Upload(id, repository, api, join(this.dir, `upload-${id}`));
    await u.open();
    this.sessions.set(id, u);
    return u;
  }

  /** The session, when it exists, belongs to `repository` and was started on the same API. */
  get(id: string, repository: string, api: 'ecr' | 'registry'): Upload | undefined {
    const u = this.sessions.get(id);
    return u && u.repository === repository && u.api === api && !u.closed ? u : undefined;
  }

  /** Forgets a session; its temp file is left to the caller (renamed or discarded). */
  forget(u: Upload): void {
    this.sessions.delete(u.id);
  }

  async drop(u: Upload): Promise<void> {
    this.sessions.delete(u.id);
    await u.discard();
  }

  get size(): number {
    return this.sessions.size;
  }

  async sweep(now = Date.now()): Promise<void> {
    for (const u of [...this.sessions.values()]) {
      if (u.idle && now - u.lastActive > this.ttlMs) await this.drop(u).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const u of [...this.sessions.values()]) await this.drop(u).catch(() => undefined);
  }
}
