import { Transform, type TransformCallback } from 'node:stream';
import { LadingError } from '../errors';
import { createDigester, finishDigest, type Digest, type DigestAlgorithm } from '../image/digest';

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
  private readonly hash;
  private readonly alg: DigestAlgorithm;
  size = 0;
  digest: Digest | undefined;

  constructor(private readonly expect: Expectation) {
    super({ highWaterMark: 1024 * 1024 });
    this.alg = expect.digest?.startsWith('sha512:') ? 'sha512' : 'sha256';
    this.hash = createDigester(this.alg);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.size += chunk.length;
    if (this.expect.size !== undefined && this.size > this.expect.size) {
      cb(new LadingError('SIZE_MISMATCH', `${this.expect.what}: more than the ${this.expect.size} bytes expected`));
      return;
    }
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    this.digest = finishDigest(this.hash, this.alg);
    if (this.expect.size !== undefined && this.size !== this.expect.size) {
      cb(new LadingError('SIZE_MISMATCH', `${this.expect.what}: ${this.size} bytes, expected ${this.expect.size}`));
      return;
    }
    if (this.expect.digest !== undefined && this.digest !== this.expect.digest) {
      cb(new LadingError('DIGEST_MISMATCH', `${this.expect.what}: content has digest ${this.digest}, expected ${this.expect.digest}`));
      return;
    }
    cb();
  }
}
