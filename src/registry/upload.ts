import { pipeline, Transform, type Readable, type TransformCallback } from 'node:stream';
import { LadingError } from '../errors';
import { concatReleasing } from '../util/buffer-pool';
import { createDigester, digestAlgorithm, finishDigest, type Digest, type DigestAlgorithm } from '../image/digest';
import { createStreamDigester, hashThen, type StreamDigester } from '../image/stream-digest';
import type { Scope } from './auth';
import { RegistryError, type OperationContext } from './errors';
import { discard, header } from './http';
import type { RegistryTransport } from './transport';

/**
 * A blob to upload. `open` is called once per attempt, so a retry re-reads the source
 * from the start instead of holding the blob in memory.
 */
export interface BlobSource {
  open: () => Readable | Promise<Readable>;
  /** Known up front: enables the single streamed PUT. Otherwise it is computed while streaming. */
  digest?: Digest;
  /** Known up front: sent as Content-Length and checked. */
  size?: number;
}

/** Byte counts of one attempt (a retry starts again from 0). */
export interface UploadProgress {
  bytes: number;
  total: number | undefined;
}

export interface UploadOptions {
  signal?: AbortSignal;
  onProgress?: (progress: UploadProgress) => void;
  /** Try a cross-repository mount from this repository first (same registry). */
  mountFrom?: string;
  /** Upload in PATCH chunks of this many bytes (raised to the registry's `OCI-Chunk-Min-Length`). */
  chunkSize?: number;
}

export interface UploadResult {
  digest: Digest;
  /** Undefined only after a mount of a blob whose size the caller did not give. */
  size: number | undefined;
  /** True when the registry mounted the blob from `mountFrom` and nothing was sent. */
  mounted: boolean;
}

/** Counts (and optionally hashes) bytes flowing to the request, and enforces a declared size. */
class Meter extends Transform {
  bytes = 0;
  failure: LadingError | undefined;
  constructor(
    private readonly expected: number | undefined,
    private readonly hash: StreamDigester | undefined,
    private readonly onBytes: (n: number) => void,
    private readonly what: string,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.expected !== undefined && this.bytes > this.expected) {
      this.failure = new LadingError(
        'SIZE_MISMATCH',
        `${this.what}: the source has more than the declared ${this.expected} bytes`,
      );
      cb(this.failure);
      return;
    }
    this.onBytes(this.bytes);
    if (this.hash) hashThen(this.hash, chunk, () => cb(null, chunk));
    else cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    if (this.expected !== undefined && this.bytes !== this.expected) {
      this.failure = new LadingError(
        'SIZE_MISMATCH',
        `${this.what}: the source has ${this.bytes} bytes, ${this.expected} were declared`,
      );
      cb(this.failure);
      return;
    }
    cb();
  }
}

function withDigest(location: URL, digest: Digest): URL {
  // Append rather than use searchParams: re-encoding an opaque `_state` or a presigned
  // query could break it.
  const u = new URL(location);
  const param = `digest=${encodeURIComponent(digest)}`;
  u.search = u.search.length > 1 ? `${u.search}&${param}` : `?${param}`;
  return u;
}

function nextLocation(
  t: RegistryTransport,
  res: { headers: Record<string, string | string[] | undefined> },
  current: URL,
  ctx: OperationContext,
): URL {
  const loc = header(res.headers, 'location');
  if (loc === undefined || loc === '') {
    throw new RegistryError(
      'REGISTRY',
      t.redact(`${ctx.operation} ${ctx.registry}/${ctx.repository ?? ''} failed: the registry sent no upload Location`),
      { status: 0, retryable: true },
    );
  }
  return new URL(loc, current);
}

export function shortDigest(d: Digest): string {
  return d.slice(0, d.indexOf(':') + 13);
}

function checkReturnedDigest(
  t: RegistryTransport,
  res: { headers: Record<string, string | string[] | undefined> },
  expected: Digest,
  ctx: OperationContext,
): void {
  const got = header(res.headers, 'docker-content-digest');
  if (got !== undefined && got !== expected) {
    throw new LadingError(
      'DIGEST_MISMATCH',
      t.redact(
        `${ctx.operation} to ${ctx.registry}/${ctx.repository ?? ''}: the registry stored ${got}, expected ${expected}`,
      ),
    );
  }
}

/**
 * One attempt of a blob upload: POST (or mount), then the body, then the closing PUT.
 * The caller retries the whole attempt, which restarts from a fresh POST.
 */
export async function uploadOnce(
  t: RegistryTransport,
  repository: string,
  source: BlobSource,
  options: UploadOptions,
): Promise<UploadResult> {
  const signal = options.signal;
  const ctx: OperationContext = {
    operation: `push blob ${source.digest !== undefined ? shortDigest(source.digest) : '(digest computed while streaming)'}`,
    registry: t.registry,
    repository,
  };
  const scopes: Scope[] = [{ repository, actions: ['pull', 'push'] }];
  let postUrl = `/v2/${repository}/blobs/uploads/`;
  const mountFrom =
    options.mountFrom !== undefined && options.mountFrom !== repository && source.digest !== undefined
      ? options.mountFrom
      : undefined;
  if (mountFrom !== undefined) {
    scopes.push({ repository: mountFrom, actions: ['pull'] });
    postUrl += `?mount=${encodeURIComponent(source.digest!)}&from=${encodeURIComponent(mountFrom)}`;
  }
  const started = await t.request(
    ctx,
    {
      method: 'POST',
      url: postUrl,
      headers: { 'content-length': '0' },
      body: Buffer.alloc(0),
      scopes,
      expect: [201, 202],
    },
    signal,
  );
  if (started.status === 201) {
    await discard(started);
    if (mountFrom === undefined) {
      throw new RegistryError(
        'REGISTRY',
        t.redact(`${ctx.operation} ${t.registry}/${repository} failed: the registry answered 201 to an upload start`),
        { status: 201 },
      );
    }
    checkReturnedDigest(t, started, source.digest!, ctx);
    t.log(`mounted ${source.digest!} from ${mountFrom} into ${repository}`);
    return { digest: source.digest!, size: source.size, mounted: true };
  }
  let location = nextLocation(t, started, t.resolve(postUrl), ctx);
  const minChunk = Number(header(started.headers, 'oci-chunk-min-length') ?? '0');
  await discard(started);

  const algorithm: DigestAlgorithm = source.digest !== undefined ? digestAlgorithm(source.digest) : 'sha256';
  const progress = (bytes: number): void => options.onProgress?.({ bytes, total: source.size });
  let stream: Readable | undefined;
  try {
    stream = await source.open();
    let digest: Digest;
    let size: number;
    let done;
    if (options.chunkSize !== undefined && options.chunkSize > 0) {
      const chunkSize = Math.max(options.chunkSize, Number.isFinite(minChunk) ? minChunk : 0);
      ({ digest, size, location } = await sendChunks(
        t,
        ctx,
        scopes,
        location,
        stream,
        chunkSize,
        algorithm,
        progress,
        signal,
      ));
      checkSource(t, ctx, source, digest, size);
      done = await t.request(
        ctx,
        {
          method: 'PUT',
          url: withDigest(location, digest),
          headers: { 'content-length': '0' },
          body: Buffer.alloc(0),
          scopes,
          expect: [201, 204],
        },
        signal,
      );
    } else if (source.digest !== undefined && source.size !== undefined) {
      // Monolithic: one request carries the whole blob; the registry verifies the digest.
      digest = source.digest;
      size = source.size;
      const meter = new Meter(size, undefined, progress, ctx.operation);
      const body = pipeline(stream, meter, () => undefined);
      try {
        done = await t.request(
          ctx,
          {
            method: 'PUT',
            url: withDigest(location, digest),
            headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
            body,
            scopes,
            expect: [201, 204],
          },
          signal,
        );
      } catch (e) {
        throw meter.failure ?? e;
      }
    } else {
      // Digest unknown (compressed on the fly): stream one PATCH while hashing, then close.
      const hash = createStreamDigester(algorithm, source.size);
      const meter = new Meter(source.size, hash, progress, ctx.operation);
      const body = pipeline(stream, meter, () => undefined);
      let patched;
      try {
        patched = await t.request(
          ctx,
          {
            method: 'PATCH',
            url: location,
            headers: { 'content-type': 'application/octet-stream' },
            body,
            scopes,
            expect: [201, 202, 204],
          },
          signal,
        );
      } catch (e) {
        throw meter.failure ?? e;
      }
      location = nextLocation(t, patched, location, ctx);
      await discard(patched);
      digest = await hash.digest();
      size = meter.bytes;
      checkSource(t, ctx, source, digest, size);
      done = await t.request(
        ctx,
        {
          method: 'PUT',
          url: withDigest(location, digest),
          headers: { 'content-length': '0' },
          body: Buffer.alloc(0),
          scopes,
          expect: [201, 204],
        },
        signal,
      );
    }
    await discard(done);
    checkReturnedDigest(t, done, digest, ctx);
    return { digest, size, mounted: false };
  } finally {
    // A failed session is not cancelled: DELETE needs the `delete` action, which pushers
    // rarely have, and registries purge abandoned uploads themselves (docker does the same).
    stream?.destroy();
  }
}

function checkSource(
  t: RegistryTransport,
  ctx: OperationContext,
  source: BlobSource,
  digest: Digest,
  size: number,
): void {
  if (source.size !== undefined && size !== source.size) {
    throw new LadingError(
      'SIZE_MISMATCH',
      t.redact(
        `${ctx.operation} to ${ctx.registry}/${ctx.repository ?? ''}: the source had ${size} bytes, ${source.size} were declared`,
      ),
    );
  }
  if (source.digest !== undefined && digest !== source.digest) {
    throw new LadingError(
      'DIGEST_MISMATCH',
      t.redact(
        `${ctx.operation} to ${ctx.registry}/${ctx.repository ?? ''}: the source hashes to ${digest}, not the declared ${source.digest}`,
      ),
    );
  }
}

/**
 * Sends the stream as PATCH chunks of exactly `chunkSize` bytes (the last may be shorter),
 * each with its Content-Range. One chunk is buffered at a time: that is the memory bound.
 */
async function sendChunks(
  t: RegistryTransport,
  ctx: OperationContext,
  scopes: Scope[],
  start: URL,
  stream: Readable,
  chunkSize: number,
  algorithm: DigestAlgorithm,
  progress: (bytes: number) => void,
  signal: AbortSignal | undefined,
): Promise<{ digest: Digest; size: number; location: URL }> {
  const hash = createDigester(algorithm);
  let location = start;
  let offset = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const flush = async (chunk: Buffer): Promise<void> => {
    const res = await t.request(
      ctx,
      {
        method: 'PATCH',
        url: location,
        headers: {
          'content-type': 'application/octet-stream',
          'content-range': `${offset}-${offset + chunk.length - 1}`,
          'content-length': String(chunk.length),
        },
        body: chunk,
        scopes,
        expect: [201, 202, 204],
      },
      signal,
    );
    location = nextLocation(t, res, location, ctx);
    await discard(res);
    offset += chunk.length;
    progress(offset);
  };
  for await (const piece of stream) {
    const b = Buffer.isBuffer(piece) ? piece : Buffer.from(piece as Uint8Array);
    hash.update(b);
    pending.push(b);
    pendingBytes += b.length;
    while (pendingBytes >= chunkSize) {
      // Copied: the chunks' journey ends here (see util/buffer-pool).
      const all = concatReleasing(pending);
      await flush(all.subarray(0, chunkSize));
      const rest = all.subarray(chunkSize);
      pending = rest.length > 0 ? [rest] : [];
      pendingBytes = rest.length;
    }
  }
  if (pendingBytes > 0) await flush(concatReleasing(pending));
  return { digest: finishDigest(hash, algorithm), size: offset, location };
}
