import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { LadingError } from '../errors';
import { BufferPool } from '../util/buffer-pool';

/**
 * Bytes that can be read at any offset: an archive file, or an object in a store that
 * serves byte ranges (S3 through ranged GETs, see `lading/cdk`). An uncompressed tar
 * behind one is indexed once and its blobs are read as ranges, in parallel; a compressed
 * one is read in one sequential pass through `stream(0, size - 1)`.
 *
 * Contract: `read` and `stream` may be called concurrently; `stream` yields exactly the
 * bytes `start..endInclusive` (or fails); `close` is called once, when the archive closes.
 */
export interface RandomAccessSource {
  /** For messages: a path, `s3://bucket/key`... */
  readonly where: string;
  /** Total size in bytes. */
  readonly size: number;
  /** Like `FileHandle.read`: fewer bytes than asked only at the end. */
  read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  /**
   * `pooled`: the caller's pipeline follows the buffer pool's protocol (see util/buffer-pool),
   * so chunks may come from a pool and go back to it; a source may ignore it.
   */
  stream(start: number, endInclusive: number, options?: { pooled?: boolean }): Readable;
  close(): Promise<void>;
}

export function isRandomAccessSource(x: unknown): x is RandomAccessSource {
  if (typeof x !== 'object' || x === null) return false;
  const s = x as Partial<RandomAccessSource>;
  return (
    typeof s.size === 'number' &&
    typeof s.where === 'string' &&
    typeof s.read === 'function' &&
    typeof s.stream === 'function' &&
    typeof s.close === 'function'
  );
}

/**
 * Read size. 256 KiB: a stage holds at least one chunk whatever its high-water mark, so
 * smaller chunks mean less memory in flight per blob (1 MiB reads measured 13 MiB more RSS on
 * a push, for no speed); and a multiple of the adaptive gzip's segment, for its fast path.
 */
const CHUNK = 256 * 1024;
/** Shared by every file read: idle buffers kept for reuse are bounded, in-flight ones by the pipelines' high-water marks. */
const filePool = new BufferPool(CHUNK, 32);

/** A file through its handle: positional reads, so several blobs can stream in parallel. */
export class FileSource implements RandomAccessSource {
  constructor(
    readonly where: string,
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    return this.fh.read(buf, offset, length, position);
  }

  stream(start: number, endInclusive: number, options: { pooled?: boolean } = {}): Readable {
    return new RangeStream(this, start, endInclusive + 1, options.pooled === true ? filePool : undefined);
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/**
 * Bytes `start..end-1` of a file by positional reads. Unlike `FileHandle.createReadStream`,
 * destroying it never closes the shared handle (other blobs read through it), and its
 * buffers can come from a pool.
 */
class RangeStream extends Readable {
  private pos: number;

  constructor(
    private readonly src: FileSource,
    start: number,
    private readonly end: number,
    private readonly pool: BufferPool | undefined,
  ) {
    super({ highWaterMark: CHUNK });
    this.pos = start;
  }

  override _read(): void {
    const want = Math.min(CHUNK, this.end - this.pos);
    if (want <= 0) {
      this.push(null);
      return;
    }
    const buf = this.pool ? this.pool.take() : Buffer.allocUnsafeSlow(want);
    this.src.read(buf, 0, want, this.pos).then(
      ({ bytesRead }) => {
        if (this.destroyed) {
          this.pool?.giveBack(buf);
          return;
        }
        if (bytesRead === 0) {
          this.pool?.giveBack(buf);
          this.destroy(
            new LadingError(
              'TRUNCATED',
              `${this.src.where}: the file ends at byte ${this.pos}, before byte ${this.end} (was it changed while being read?)`,
            ),
          );
          return;
        }
        this.pos += bytesRead;
        this.push(
          this.pool ? this.pool.emit(buf, bytesRead) : bytesRead === buf.length ? buf : buf.subarray(0, bytesRead),
        );
      },
      (e: unknown) => {
        this.pool?.giveBack(buf);
        this.destroy(e as Error);
      },
    );
  }
}
