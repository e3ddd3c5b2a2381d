import { GetObjectCommand, type GetObjectCommandOutput, type S3Client } from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import { LadingError } from '../errors';
import { awsTransportFailure } from '../net/tls-errors';
import type { RandomAccessSource } from '../archive/source';

export interface S3SourceOptions {
  client: S3Client;
  bucket: string;
  key: string;
  /** Small reads (tar headers, JSON documents) are served from blocks of this size. @default 1 MiB */
  blockSize?: number;
  /** Blocks kept (least recently used dropped first). @default 16 */
  cacheBlocks?: number;
  /** Times a broken blob stream is resumed from where it stopped. @default 4 */
  resumeAttempts?: number;
  signal?: AbortSignal;
  logger?: (line: string) => void;
}

const MiB = 1024 * 1024;

/**
 * An S3 object as a random-access source, through ranged GETs (`Range: bytes=a-b`), never
 * downloaded whole unless the archive is compressed (then `stream(0, size-1)` is one GET).
 *
 * Indexing a tar reads one 512-byte header per entry: each would be one GET, so small reads
 * go through a block cache (1 MiB blocks, 16 kept, concurrent misses of one block share
 * the request). Blob streams are one GET each, resumed from the last byte received when
 * the connection breaks. Every GET after the first carries `If-Match` with the first
 * response's ETag, so an object replaced mid-read fails instead of mixing two versions.
 */
export class S3Source implements RandomAccessSource {
  readonly where: string;
  /** GETs made and body bytes received: the logs and the tests read them. */
  readonly stats = { requests: 0, bytes: 0 };
  private readonly blockSize: number;
  private readonly cacheBlocks: number;
  private readonly blocks = new Map<number, Promise<Buffer>>();

  private constructor(
    private readonly opts: S3SourceOptions,
    readonly size: number,
    private readonly etag: string | undefined,
    first: Buffer,
  ) {
    this.where = `s3://${opts.bucket}/${opts.key}`;
    this.blockSize = opts.blockSize ?? MiB;
    this.cacheBlocks = Math.max(2, opts.cacheBlocks ?? 16);
    this.blocks.set(0, Promise.resolve(first));
  }

  /** Reads the first block, which also tells the object's size (Content-Range) and ETag. */
  static async open(opts: S3SourceOptions): Promise<S3Source> {
    const blockSize = opts.blockSize ?? MiB;
    const stats = { requests: 0, bytes: 0 };
    let out: GetObjectCommandOutput;
    let first: Buffer;
    let size: number;
    try {
      stats.requests++;
      out = await opts.client.send(new GetObjectCommand({ Bucket: opts.bucket, Key: opts.key, Range: `bytes=0-${blockSize - 1}` }), { abortSignal: opts.signal });
      const total = /\/(\d+)$/.exec(out.ContentRange ?? '');
      if (total && Number(total[1]) === 0) {
        // S3 answers an empty object's range with 416 (below); some compatible servers with a
        // 206 for "bytes 0-0/0" whose promised byte never comes: go by the total, not the body.
        (out.Body as { destroy?: () => void } | undefined)?.destroy?.();
        throw Object.assign(new Error('empty object'), { name: 'InvalidRange' });
      }
      first = await bodyBytes(out);
      stats.bytes += first.length;
      size = total ? Number(total[1]) : first.length;
    } catch (e) {
      const name = (e as { name?: string }).name;
      if (name === 'InvalidRange') {
        // Only an empty object has no byte 0.
        throw new LadingError('NOT_A_TAR', `s3://${opts.bucket}/${opts.key}: empty object, not an image archive`);
      }
      throw s3Error(e, `s3://${opts.bucket}/${opts.key}`, 'reading the first block');
    }
    const src = new S3Source(opts, size, out.ETag, first);
    src.stats.requests += stats.requests;
    src.stats.bytes += stats.bytes;
    opts.logger?.(`${src.where}: ${size} bytes, read with ranged GETs`);
    return src;
  }

  private async get(start: number, endInclusive: number): Promise<GetObjectCommandOutput> {
    this.stats.requests++;
    try {
      return await this.opts.client.send(
        new GetObjectCommand({ Bucket: this.opts.bucket, Key: this.opts.key, Range: `bytes=${start}-${endInclusive}`, ...(this.etag ? { IfMatch: this.etag } : {}) }),
        { abortSignal: this.opts.signal },
      );
    } catch (e) {
      throw s3Error(e, this.where, `reading bytes ${start}-${endInclusive}`);
    }
  }

  private block(i: number): Promise<Buffer> {
    let p = this.blocks.get(i);
    if (p !== undefined) {
      // Most recently used goes last.
      this.blocks.delete(i);
      this.blocks.set(i, p);
      return p;
    }
    const start = i * this.blockSize;
    const end = Math.min(this.size, start + this.blockSize) - 1;
    p = this.get(start, end).then(async (out) => {
      const b = await bodyBytes(out);
      this.stats.bytes += b.length;
      if (b.length !== end - start + 1) throw new LadingError('TRUNCATED', `${this.where}: asked bytes ${start}-${end}, got ${b.length} bytes`);
      return b;
    });
    p.catch(() => this.blocks.delete(i));
    this.blocks.set(i, p);
    while (this.blocks.size > this.cacheBlocks) this.blocks.delete(this.blocks.keys().next().value!);
    return p;
  }

  async read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    const n = Math.max(0, Math.min(length, this.size - position));
    if (n === 0) return { bytesRead: 0 };
    const firstBlock = Math.floor(position / this.blockSize);
    const lastBlock = Math.floor((position + n - 1) / this.blockSize);
    if (lastBlock - firstBlock >= 4) {
      // A large read (a JSON document of several MiB): one GET, not through the cache.
      const out = await this.get(position, position + n - 1);
      const b = await bodyBytes(out);
      this.stats.bytes += b.length;
      b.copy(buf, offset, 0, Math.min(b.length, n));
      return { bytesRead: Math.min(b.length, n) };
    }
    let done = 0;
    for (let i = firstBlock; i <= lastBlock; i++) {
      const b = await this.block(i);
      const from = position + done - i * this.blockSize;
      const take = Math.min(b.length - from, n - done);
      b.copy(buf, offset + done, from, from + take);
      done += take;
    }
    return { bytesRead: done };
  }

  stream(start: number, endInclusive: number): Readable {
    return Readable.from(this.ranges(start, endInclusive), { objectMode: false, highWaterMark: 1 });
  }

  /** One GET for the range, resumed from the last byte received if the body breaks. */
  private async *ranges(start: number, endInclusive: number): AsyncGenerator<Buffer> {
    const attempts = this.opts.resumeAttempts ?? 4;
    let pos = start;
    let failures = 0;
    while (pos <= endInclusive) {
      try {
        const out = await this.get(pos, endInclusive);
        for await (const chunk of out.Body as AsyncIterable<Uint8Array>) {
          const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
          const take = Math.min(b.length, endInclusive - pos + 1);
          this.stats.bytes += b.length;
          pos += take;
          failures = 0;
          yield take === b.length ? b : b.subarray(0, take);
          if (pos > endInclusive) break;
        }
        if (pos <= endInclusive) throw new LadingError('TRUNCATED', `${this.where}: the body ended at byte ${pos}, before ${endInclusive}`);
      } catch (e) {
        const code = (e as { code?: string }).code;
        const fatal = this.opts.signal?.aborted || code === 'NOT_FOUND' || code === 'AUTH' || code === 'CONFLICT';
        if (fatal || ++failures > attempts) throw e;
        this.opts.logger?.(`${this.where}: stream broke at byte ${pos} (${(e as Error).message}); resuming (${failures}/${attempts})`);
      }
    }
  }

  async close(): Promise<void> {
    this.blocks.clear();
  }
}

async function bodyBytes(out: GetObjectCommandOutput): Promise<Buffer> {
  if (out.Body === undefined) return Buffer.alloc(0);
  return Buffer.from(await out.Body.transformToByteArray());
}

function s3Error(e: unknown, where: string, doing: string): Error {
  if (e instanceof LadingError) return e;
  const transport = awsTransportFailure(e, `${where}: ${doing}`, 'the S3 endpoint');
  if (transport) return transport;
  const name = (e as { name?: string }).name ?? 'Error';
  const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  const msg = (e as Error).message ?? String(e);
  if (name === 'NoSuchKey' || name === 'NoSuchBucket' || status === 404) {
    return new LadingError('NOT_FOUND', `${where}: ${name} while ${doing}: the asset object is missing (was the file asset published?)`, { cause: e });
  }
  if (name === 'AccessDenied' || status === 403) {
    return new LadingError('AUTH', `${where}: access denied while ${doing}: the handler's role needs s3:GetObject on this object (${msg})`, { cause: e });
  }
  if (name === 'PreconditionFailed' || status === 412) {
    return new LadingError('CONFLICT', `${where}: the object changed while it was read (ETag no longer matches); deploy again`, { cause: e });
  }
  return new LadingError('NETWORK', `${where}: ${name} while ${doing}: ${msg}`, { cause: e });
}
