import { once } from 'node:events';
import type { Transform } from 'node:stream';
import { createDecompressor } from '../compress/codecs';
import { MAGIC_BYTES, supportedCompression } from '../compress/detect';
import { asLadingError, LadingError } from '../errors';
import { release, writeHeld } from '../util/buffer-pool';
import { createDigester, finishDigest, type Digest, type DigestAlgorithm } from '../image/digest';
import type { Compression } from '../image/media-types';
import type { BlobFacts } from '../image/model';

export type { BlobFacts } from '../image/model';

export interface AnalyzeOptions {
  where: string;
  algorithm?: DigestAlgorithm;
  /** Decompress compressed blobs to compute their diff_id (uncompressed blobs get it for free). */
  diffId?: boolean;
  signal?: AbortSignal;
  /**
   * Observes each chunk of stored bytes as it passes (progress, or a tee into an upload). The
   * chunk may go back to a buffer pool once this returns (or its promise settles): an observer
   * that keeps it longer must `hold` it (see util/buffer-pool).
   */
  onChunk?: (chunk: Buffer) => void | Promise<void>;
}

/**
 * Reads a blob once: hashes the stored bytes, detects compression from its first bytes and,
 * when asked, decompresses on the side (zlib runs on the thread pool) to hash the
 * uncompressed stream, so a layer is verified against both its digest and its diff_id in a
 * single pass.
 */
export async function analyzeBlob(body: AsyncIterable<Buffer>, opts: AnalyzeOptions): Promise<BlobFacts> {
  const alg = opts.algorithm ?? 'sha256';
  const raw = createDigester(alg);
  let size = 0;
  let head: Buffer | undefined = Buffer.alloc(0);
  let compression: Compression | undefined;
  let dec: Transform | undefined;
  let decDone: Promise<{ digest: Digest; size: number }> | undefined;
  let decError: unknown;

  const startDecompressor = (c: Exclude<Compression, 'none'>): void => {
    dec = createDecompressor(c, opts.signal);
    const d = dec;
    const h = createDigester('sha256');
    let n = 0;
    decDone = (async () => {
      for await (const chunk of d as AsyncIterable<Buffer>) {
        h.update(chunk);
        n += chunk.length;
      }
      return { digest: finishDigest(h, 'sha256'), size: n };
    })();
    decDone.catch((e: unknown) => {
      decError = e;
    });
  };

  // The end of a chunk's journey (see util/buffer-pool): released once hashed, and once the
  // inflater, which reads it on the thread pool, is done with it.
  const feed = async (chunk: Buffer): Promise<void> => {
    raw.update(chunk);
    size += chunk.length;
    if (opts.onChunk) await opts.onChunk(chunk);
    if (dec !== undefined && decError === undefined) {
      if (!writeHeld(dec, chunk)) await Promise.race([once(dec, 'drain'), decDone]);
    }
    release(chunk);
  };

  try {
    for await (const chunk of body) {
      opts.signal?.throwIfAborted();
      if (compression === undefined) {
        head = Buffer.concat([head!, chunk]);
        release(chunk);
        if (head.length < MAGIC_BYTES) continue;
        compression = supportedCompression(head, opts.where);
        if (compression !== 'none' && opts.diffId) startDecompressor(compression);
        const first = head;
        head = undefined;
        await feed(first);
        continue;
      }
      await feed(chunk);
    }
    if (compression === undefined) {
      compression = supportedCompression(head!, opts.where);
      if (compression !== 'none' && opts.diffId) startDecompressor(compression);
      if (head!.length > 0) await feed(head!);
    }
    const digest = finishDigest(raw, alg);
    const facts: BlobFacts = { digest, size, compression };
    if (compression === 'none') {
      // A sha512-addressed blob's diff_id (always sha256) is left to the caller.
      if (alg === 'sha256') facts.diffId = digest;
      facts.uncompressedSize = size;
    } else if (dec !== undefined) {
      dec.end();
      const u = await decDone!;
      facts.diffId = u.digest;
      facts.uncompressedSize = u.size;
    }
    return facts;
  } catch (e) {
    dec?.destroy();
    throw decompressionError(e, opts.where);
  }
}

function decompressionError(e: unknown, where: string): LadingError {
  if (e instanceof LadingError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err.code === 'Z_BUF_ERROR' || /unexpected end/i.test(err.message ?? '')) {
    return new LadingError('TRUNCATED', `${where}: compressed data is truncated`, { cause: e });
  }
  if (
    typeof err.code === 'string' &&
    (err.code.startsWith('Z_') ||
      err.code.startsWith('ERR_ZSTD') ||
      /zstd|incorrect header|invalid/i.test(err.message ?? ''))
  ) {
    return new LadingError('DECOMPRESSION_FAILED', `${where}: cannot decompress: ${err.message}`, { cause: e });
  }
  return asLadingError(e, 'IO', where);
}

export { decompressionError };
