import { GetObjectCommand, type GetObjectCommandOutput, type S3Client } from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import { LadingError } from '../errors';
import { awsTransportFailure } from '../net/tls-errors';
import type { RandomAccessSource } from '../archive/source';

export interface S3SourceOptions {
  client: S3Client;
  bucket: string;
  key: string;
  /**
   * Small reads (tar headers, JSON documents, magic bytes) fetch whole blocks of this size and
   * keep them. Small, because the block holding a tar header also holds the end of one entry's
   * data and the start of the next one's: kept until their blobs stream, a few hundred large
   * layers must fit in the cache. @default 64 KiB
   */
  blockSize?: number;
  /**
   * The most one GET of small reads asks for: a miss just past the previous one's end (small
   * entries packed together) doubles the read-ahead up to this; any other miss starts again
   * at one block. @default 1 MiB
   */
  readAhead?: number;
  /** Bytes of blocks kept, least recently used dropped first. @default 16 MiB */
  cacheBytes?: number;
  /** Times a broken blob stream is resumed from where it stopped. @default 4 */
  resumeAttempts?: number;
  signal?: AbortSignal;
  logger?: (line: string) => void;
}

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * An S3 object as a random-access source, through ranged GETs (`Range: bytes=a-b`), never
 * downloaded whole unless the archive is compressed (then `stream(0, size-1)` is one GET).
 *
 * Each byte of an uncompressed archive is fetched once. Indexing a tar reads one 512-byte
 * header per entry: those reads go through a cache of small blocks, fetched with read-ahead
 * only while entries are small and packed together, so that one GET serves many headers but
 * never the bulk of a large entry. Blob streams take what the cache holds (the entry's first
 * bytes, which came with its header, and its last ones, which came with the next header) from
 * it, and the rest in one GET, resumed from the last byte received when the connection
 * breaks. The cache is bounded (16 MiB): past it, blocks dropped before their blob is read
 * are fetched again, which is the only other way a byte is read twice. Every GET after the
 * first carries `If-Match` with the first response's ETag, so an object replaced mid-read
 * fails instead of mixing two versions.
 */
export class S3Source implements RandomAccessSource {
  readonly where: string;
  /** GETs made and body bytes received: the logs and the tests read them. */
  readonly stats = { requests: 0, bytes: 0 };
  private readonly blockSize: number;
  private readonly maxAhead: number;
  private readonly maxBlocks: number;
  /** Block index -> its bytes (in flight or fetched), in least-recently-used order. */
  private readonly blocks = new Map<number, Promise<Buffer>>();
  /** The block just past the last read-ahead, and that read-ahead's length, in blocks. */
  private nextAhead = 1;
  private ahead = 1;

  private constructor(
    private readonly opts: S3SourceOptions,
    readonly size: number,
    private readonly etag: string | undefined,
    first: Buffer,
  ) {
    this.where = `s3://${opts.bucket}/${opts.key}`;
    this.blockSize = opts.blockSize ?? 64 * KiB;
    this.maxAhead = Math.max(1, Math.floor((opts.readAhead ?? MiB) / this.blockSize));
    // Room for two read-aheads: a window's blocks must outlive the header reads that walk through it.
    this.maxBlocks = Math.max(2 * this.maxAhead, Math.floor((opts.cacheBytes ?? 16 * MiB) / this.blockSize));
    this.blocks.set(0, Promise.resolve(first));
  }

  /** Reads the first block, which also tells the object's size (Content-Range) and ETag. */
  static async open(opts: S3SourceOptions): Promise<S3Source> {
    const blockSize = opts.blockSize ?? 64 * KiB;
    const stats = { requests: 0, bytes: 0 };
    let out: GetObjectCommandOutput;
    let first: Buffer;
    let size: number;
    try {
      stats.requests++;
      out = await opts.client.send(
        new GetObjectCommand({ Bucket: opts.bucket, Key: opts.key, Range: `bytes=0-${blockSize - 1}` }),
        { abortSignal: opts.signal },
      );
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
        new GetObjectCommand({
          Bucket: this.opts.bucket,
          Key: this.opts.key,
          Range: `bytes=${start}-${endInclusive}`,
          ...(this.etag ? { IfMatch: this.etag } : {}),
        }),
        { abortSignal: this.opts.signal },
      );
    } catch (e) {
      throw s3Error(e, this.where, `reading bytes ${start}-${endInclusive}`);
    }
  }

  /** A cached block (fetched or in flight), now the most recently used. */
  private cached(i: number): Promise<Buffer> | undefined {
    const p = this.blocks.get(i);
    if (p !== undefined) {
      this.blocks.delete(i);
      this.blocks.set(i, p);
    }
    return p;
  }

  /**
   * Fetches block `i` (missing) through at least `last`, or up to the read-ahead, in one GET,
   * stopping before any block already held; caches each block and returns them in order.
   */
  private fetch(i: number, last: number): Promise<Buffer[]> {
    // A miss where the previous read-ahead ended means entries small enough to walk through
    // block by block: read further. Any other miss follows a skip over a large entry, whose
    // bytes the blob's own stream will fetch: read just its block.
    this.ahead = i === this.nextAhead ? Math.min(2 * this.ahead, this.maxAhead) : 1;
    const bs = this.blockSize;
    let j = Math.min(Math.ceil(this.size / bs) - 1, Math.max(last, i + this.ahead - 1));
    for (let k = i + 1; k <= j; k++) {
      if (this.blocks.has(k)) {
        j = k - 1;
        break;
      }
    }
    this.nextAhead = j + 1;
    const start = i * bs;
    const end = Math.min(this.size, (j + 1) * bs) - 1;
    const whole = this.get(start, end).then(async (out) => {
      const b = await bodyBytes(out);
      this.stats.bytes += b.length;
      if (b.length !== end - start + 1)
        throw new LadingError('TRUNCATED', `${this.where}: asked bytes ${start}-${end}, got ${b.length} bytes`);
      return b;
    });
    const parts: Promise<Buffer>[] = [];
    for (let k = i; k <= j; k++) {
      // Copies, so that dropping a block frees its memory even while its neighbours stay.
      const p = j === i ? whole : whole.then((b) => Buffer.from(b.subarray((k - i) * bs, (k - i + 1) * bs)));
      p.catch(() => {
        if (this.blocks.get(k) === p) this.blocks.delete(k);
      });
      this.blocks.set(k, p);
      parts.push(p);
    }
    while (this.blocks.size > this.maxBlocks) this.blocks.delete(this.blocks.keys().next().value!);
    return Promise.all(parts);
  }

  async read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    const n = Math.max(0, Math.min(length, this.size - position));
    if (n === 0) return { bytesRead: 0 };
    const bs = this.blockSize;
    const last = Math.floor((position + n - 1) / bs);
    let done = 0;
    let i = Math.floor(position / bs);
    while (i <= last) {
      const hit = this.cached(i);
      for (const b of hit ? [await hit] : await this.fetch(i, last)) {
        if (i > last) break;
        const from = position + done - i * bs;
        const take = Math.min(b.length - from, n - done);
        b.copy(buf, offset + done, from, from + take);
        done += take;
        i++;
      }
    }
    return { bytesRead: done };
  }

  stream(start: number, endInclusive: number): Readable {
    return Readable.from(this.ranges(start, endInclusive), { objectMode: false, highWaterMark: 1 });
  }

  /** The end of the GET that reads on from `pos`: just before the next cached block, or `endInclusive`. */
  private gapEnd(pos: number, endInclusive: number): number {
    const after = Math.floor(pos / this.blockSize);
    const last = Math.floor(endInclusive / this.blockSize);
    let next = Infinity;
    for (const k of this.blocks.keys()) if (k > after && k <= last && k < next) next = k;
    return next === Infinity ? endInclusive : next * this.blockSize - 1;
  }

  /**
   * The range from the cache where it holds it, the gaps by one GET each (one in all for a
   * blob larger than a block), each resumed from the last byte received if its body breaks.
   */
  private async *ranges(start: number, endInclusive: number): AsyncGenerator<Buffer> {
    const attempts = this.opts.resumeAttempts ?? 4;
    const bs = this.blockSize;
    // The whole object is a compressed archive's one pass: one GET, S3's fastest read, at the
    // cost of the first block read twice.
    const useCache = !(start === 0 && endInclusive === this.size - 1);
    let pos = start;
    let failures = 0;
    while (pos <= endInclusive) {
      const i = Math.floor(pos / bs);
      const hit = useCache ? await this.blocks.get(i)?.catch(() => undefined) : undefined;
      if (hit !== undefined) {
        const to = Math.min(hit.length, endInclusive + 1 - i * bs);
        // A copy: the block stays cached, and whoever ends this chunk's journey may reuse it.
        yield Buffer.from(hit.subarray(pos - i * bs, to));
        pos = i * bs + to;
        continue;
      }
      const stop = useCache ? this.gapEnd(pos, endInclusive) : endInclusive;
      try {
        const out = await this.get(pos, stop);
        for await (const chunk of out.Body as AsyncIterable<Uint8Array>) {
          const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
          const take = Math.min(b.length, stop - pos + 1);
          this.stats.bytes += b.length;
          pos += take;
          failures = 0;
          yield take === b.length ? b : b.subarray(0, take);
          if (pos > stop) break;
        }
        if (pos <= stop)
          throw new LadingError('TRUNCATED', `${this.where}: the body ended at byte ${pos}, before ${stop}`);
      } catch (e) {
        const code = (e as { code?: string }).code;
        const fatal = this.opts.signal?.aborted || code === 'NOT_FOUND' || code === 'AUTH' || code === 'CONFLICT';
        if (fatal || ++failures > attempts) throw e;
        this.opts.logger?.(
          `${this.where}: stream broke at byte ${pos} (${(e as Error).message}); resuming (${failures}/${attempts})`,
        );
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
    return new LadingError(
      'NOT_FOUND',
      `${where}: ${name} while ${doing}: the asset object is missing (was the file asset published?)`,
      { cause: e },
    );
  }
  if (name === 'AccessDenied' || status === 403) {
    return new LadingError(
      'AUTH',
      `${where}: access denied while ${doing}: the object does not exist (without s3:ListBucket S3 answers 403 for a missing key: was the file asset published?), or the handler's role lacks s3:GetObject on it (${msg})`,
      { cause: e },
    );
  }
  if (name === 'PreconditionFailed' || status === 412) {
    return new LadingError(
      'CONFLICT',
      `${where}: the object changed while it was read (ETag no longer matches); deploy again`,
      { cause: e },
    );
  }
  return new LadingError('NETWORK', `${where}: ${name} while ${doing}: ${msg}`, { cause: e });
}
