import { PassThrough, pipeline, Transform, type Readable, type TransformCallback } from 'node:stream';
import { LadingError } from '../errors';
import { decompressionError } from './analyze';
import { createCompressor, createDecompressor } from '../compress/codecs';
import { writeHeld } from '../util/buffer-pool';
import { createDigester, finishDigest, type Digest, type DigestAlgorithm } from '../image/digest';
import { createStreamDigester, hashThen, type StreamDigester } from '../image/stream-digest';
import type { Compression } from '../image/media-types';
import type { BlobExpectation } from '../image/source';

export interface Expectation {
  digest?: Digest;
  size?: number;
  /** What the bytes are, for the error message: `layer 2 (abc/layer.tar) of archive.tar`. */
  what: string;
}

/**
 * Passes bytes through while hashing them; at the end, a digest or size that differs from
 * what was promised fails the stream, so the upload it feeds is abandoned before the
 * destination commits it. `result` holds what was seen.
 */
export class VerifyingStream extends Transform {
  private readonly hash: StreamDigester;
  size = 0;
  digest: Digest | undefined;

  constructor(private readonly expect: Expectation) {
    super({ highWaterMark: 1024 * 1024 });
    const alg: DigestAlgorithm = expect.digest?.startsWith('sha512:') ? 'sha512' : 'sha256';
    this.hash = createStreamDigester(alg, expect.size);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.size += chunk.length;
    if (this.expect.size !== undefined && this.size > this.expect.size) {
      cb(new LadingError('SIZE_MISMATCH', `${this.expect.what}: more than the ${this.expect.size} bytes expected`));
      return;
    }
    hashThen(this.hash, chunk, () => cb(null, chunk));
  }

  override _flush(cb: TransformCallback): void {
    this.hash.digest().then((d) => this.verdict(d, cb), cb);
  }

  private verdict(digest: Digest, cb: TransformCallback): void {
    this.digest = digest;
    if (this.expect.size !== undefined && this.size !== this.expect.size) {
      cb(new LadingError('SIZE_MISMATCH', `${this.expect.what}: ${this.size} bytes, expected ${this.expect.size}`));
      return;
    }
    if (this.expect.digest !== undefined && this.digest !== this.expect.digest) {
      cb(
        new LadingError(
          'DIGEST_MISMATCH',
          `${this.expect.what}: content has digest ${this.digest}, expected ${this.expect.digest}`,
        ),
      );
      return;
    }
    cb();
  }
}

/**
 * Passes compressed bytes through unchanged while decompressing a copy of them and hashing the
 * result: at the end, an uncompressed digest other than the config's diff_id fails the stream
 * (so a layer pushed as it is, without recompression, is held to its diff_id too). Without an
 * expected diff_id it only records the digest (`diffId`), for a caller that learns the
 * expectation later (a one-pass source reads layers before the config).
 */
export class DiffIdCheck extends Transform {
  private readonly dec: Transform;
  private readonly hash;
  private readonly alg: DigestAlgorithm;
  private readonly ended: Promise<void>;
  private failed: Error | undefined;
  private pending: (() => void) | undefined;
  /** The uncompressed digest, once the stream has ended. */
  diffId: Digest | undefined;

  constructor(
    compression: Exclude<Compression, 'none'>,
    private readonly expect: { diffId?: Digest; what: string },
  ) {
    super({ highWaterMark: 1024 * 1024 });
    this.alg = expect.diffId?.startsWith('sha512:') ? 'sha512' : 'sha256';
    this.hash = createDigester(this.alg);
    this.dec = createDecompressor(compression);
    this.dec.on('data', (c: Buffer) => this.hash.update(c));
    this.ended = new Promise<void>((resolve, reject) => {
      this.dec.once('end', resolve);
      this.dec.once('error', (e: Error) => {
        this.failed = decompressionError(e, expect.what);
        reject(this.failed);
        this.release();
      });
    });
    this.ended.catch(() => undefined);
  }

  private release(): void {
    const p = this.pending;
    this.pending = undefined;
    p?.();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.failed) return cb(this.failed);
    // The inflater reads the chunk after write() returns, while it travels on: a pooled chunk
    // must not go back to its pool before both are done (see util/buffer-pool).
    if (writeHeld(this.dec, chunk)) return cb(null, chunk);
    this.pending = () => (this.failed ? cb(this.failed) : cb(null, chunk));
    this.dec.once('drain', () => this.release());
  }

  override _flush(cb: TransformCallback): void {
    if (this.failed) return cb(this.failed);
    this.dec.end();
    this.ended.then(
      () => {
        const got = finishDigest(this.hash, this.alg);
        this.diffId = got;
        if (this.expect.diffId !== undefined && got !== this.expect.diffId)
          cb(
            new LadingError(
              'DIFF_ID_MISMATCH',
              `${this.expect.what}: uncompressed content has digest ${got}, the config's diff_id is ${this.expect.diffId}`,
            ),
          );
        else cb();
      },
      (e: Error) => cb(e),
    );
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.dec.destroy();
    cb(err);
  }
}

/**
 * The stages that hold bytes to an expectation: the stored digest and size, and for a
 * compressed blob held to its diff_id, the uncompressed digest too.
 */
export function verifyingStages(expect: BlobExpectation): { verify: VerifyingStream; stages: Transform[] } {
  const verify = new VerifyingStream({ what: expect.what, digest: expect.digest, size: expect.size });
  if (!expect.diffId) return { verify, stages: [verify] };
  const check = new DiffIdCheck(expect.diffId.compression, { diffId: expect.diffId.digest, what: expect.what });
  return { verify, stages: [verify, check] };
}

/**
 * `body` through `stages`; the consumer reads the last stage, or, with `buffer`, a 1 MiB buffer
 * after it (a compressor's output, so it keeps compressing while the upload waits). An error
 * anywhere on the way fails what the consumer reads, so an upload is abandoned, never committed.
 * No buffer for stored bytes: each stage already holds up to 1 MiB, and more in flight costs
 * pooled chunks (a push of gzip layers peaked ~12 MiB higher with one).
 */
export function piped(body: Readable, stages: Transform[], buffer = false): Readable {
  const tail = buffer ? new PassThrough({ highWaterMark: 1024 * 1024 }) : stages[stages.length - 1]!;
  pipeline([body, ...stages, ...(buffer ? [tail] : [])], (e) => {
    if (e) tail.destroy(e);
  });
  return tail;
}

/** Stored bytes, verified as they are read. */
export function verifiedStream(body: Readable, expect: BlobExpectation): Readable {
  return piped(body, verifyingStages(expect).stages);
}

/** Uncompressed stored bytes, verified, then compressed with `codec`. */
export function compressedStream(
  body: Readable,
  codec: Exclude<Compression, 'none'>,
  level: number | undefined,
  expect: BlobExpectation,
): Readable {
  return piped(body, [...verifyingStages(expect).stages, createCompressor(codec, level)], true);
}
