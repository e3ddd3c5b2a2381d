import { PassThrough, Readable, pipeline } from 'node:stream';
import { createCompressor } from '../compress/codecs';
import { MAGIC_BYTES, supportedCompression } from '../compress/detect';
import { LadingError } from '../errors';
import type { BlobFacts } from '../image/model';
import type { OfferedBlob, OfferTaker, PlacedBlob } from '../image/source';
import { blobPathDigest } from './blob-path';
import { peek } from './peek';
import type { Entry } from './entries';
import { blobRef } from './model';
import { DiffIdCheck, piped, VerifyingStream } from './verify';

/**
 * Offers a large entry of a one-pass read to `take`, then learns what it was: the taker may read
 * it (as stored, or compressed by `compressedStream`), and what it leaves is hashed here. The
 * bytes are verified either way: against the digest the entry's name claims, and the stored
 * size. A compressed blob's diff_id is computed when `diffIds` says so (the caller compares it
 * once the config is known).
 */
export async function offerEntry(
  where: string,
  entry: Entry,
  body: AsyncIterable<Buffer>,
  take: OfferTaker,
  diffIds: 'always' | 'unclaimed',
): Promise<{ facts: BlobFacts; placed: PlacedBlob | undefined }> {
  const { head, rest: all } = await peek(body, MAGIC_BYTES);
  const what = `${where}: ${entry.path}`;
  const compression = supportedCompression(head, what);
  const claimed = blobPathDigest(entry.path);
  const blob = blobRef(entry, entry.path, claimed);
  const verify = new VerifyingStream({ what, digest: claimed, size: entry.size });
  const diffId =
    compression !== 'none' && (diffIds === 'always' || claimed === undefined)
      ? new DiffIdCheck(compression, { what })
      : undefined;
  const source = Readable.from(all);
  let opened = false;
  const once = (): void => {
    if (opened) {
      throw new LadingError(
        'NETWORK',
        `${what}: the upload failed, and a one-pass source (a compressed archive or standard input) cannot be read again; what was uploaded is kept`,
        { remedy: 'run-again' },
      );
    }
    opened = true;
  };
  const offer: OfferedBlob = {
    blob,
    compression,
    open: () => {
      once();
      return piped(source, diffId ? [verify, diffId] : [verify]);
    },
    openCompressed: (codec, level) => {
      once();
      if (compression !== 'none') throw new LadingError('INTERNAL', `${what}: already ${compression}-compressed`);
      return piped(source, [verify, createCompressor(codec, level)], true);
    },
  };
  const placed = await take(offer);
  if (!opened) {
    opened = true;
    await new Promise<void>((resolve, reject) =>
      pipeline([source, verify, ...(diffId ? [diffId] : []), new PassThrough().resume()], (e) =>
        e ? reject(e) : resolve(),
      ),
    );
  }
  const facts: BlobFacts = { digest: verify.digest!, size: verify.size, compression };
  if (compression === 'none') facts.diffId = verify.digest!;
  else if (diffId?.diffId) facts.diffId = diffId.diffId;
  return { facts, placed };
}
