import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';

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
  stream(start: number, endInclusive: number): Readable;
  close(): Promise<void>;
}

export function isRandomAccessSource(x: unknown): x is RandomAccessSource {
  if (typeof x !== 'object' || x === null) return false;
  const s = x as Partial<RandomAccessSource>;
  return typeof s.size === 'number' && typeof s.where === 'string' && typeof s.read === 'function' && typeof s.stream === 'function' && typeof s.close === 'function';
}

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

  stream(start: number, endInclusive: number): Readable {
    return this.fh.createReadStream({ start, end: endInclusive, autoClose: false, highWaterMark: 1024 * 1024 });
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
