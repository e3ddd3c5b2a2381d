import type { Readable } from 'node:stream';
import type { Digest } from './digest';
import type { Compression } from './media-types';
import type { ArchiveImage, BlobFacts, BlobRef } from './model';

/**
 * Where the copy engine reads images from: the engine's only view of its input. `ImageArchive`
 * (src/archive) implements it for every input lading reads: an archive file, an OCI layout
 * directory, a compressed archive or standard input read in one pass, and the CDK handler's S3
 * object (a random-access source read by ranged GETs).
 *
 * The contract:
 * - Every stream a source opens is verified as it is read: bytes that differ from what was
 *   expected (digest, size, diff_id) fail the stream at its end, before the destination can
 *   commit them. A consumer must therefore read to the end before it trusts the bytes.
 * - Chunks may come from a buffer pool (util/buffer-pool): the stage that ends a chunk's
 *   journey (writes it to a socket or a file, copies it, compresses it) releases it; a stage
 *   that keeps a chunk after passing it on holds it first. A consumer that knows nothing of the
 *   pool only leaves chunks to the garbage collector.
 * - A one-pass source cannot seek: it offers its large blobs while they stream by (`onOffer`
 *   when it is opened), before the documents that explain them (often at the end) are read.
 *   What was done with an offered blob is recalled later by `streamed`.
 * - The source, not the engine, decides how a stored blob becomes a compressed one
 *   (`openCompressed`).
 */
export interface ImageSource {
  /** For messages: the path or address of the input. */
  readonly where: string;
  readonly images: ArchiveImage[];
  /** Fills in the manifests a source makes itself (a legacy `docker save` stores none), reading the layers it needs. */
  resolveSynthesized(image: ArchiveImage, signal?: AbortSignal): Promise<void>;
  /** The stored compression of a blob, from its first bytes (never from its name). */
  storedCompression(blob: BlobRef): Promise<Compression>;
  /** Reads a blob once (or recalls what a one-pass read learnt) and remembers what it found. */
  blobFacts(blob: BlobRef, opts?: { diffId?: boolean; signal?: AbortSignal }): Promise<BlobFacts>;
  /** What a one-pass read learnt, and placed, while this blob streamed by; undefined otherwise. */
  streamed(blob: BlobRef): StreamedBlob | undefined;
  /** The stored bytes, verified against `expect` as they are read. */
  open(blob: BlobRef, expect: BlobExpectation): Readable;
  /** The stored (uncompressed) bytes compressed with `codec`; the input is verified against `expect`. */
  openCompressed(
    blob: BlobRef,
    codec: Exclude<Compression, 'none'>,
    level: number | undefined,
    expect: BlobExpectation,
  ): Readable;
  /** A small blob (an artifact's manifest), whole, checked against its claimed digest. */
  readSmall(blob: BlobRef, expect: { digest: Digest; size: number }): Promise<Buffer>;
  close(): Promise<void>;
}

/** What the bytes of a blob must be. */
export interface BlobExpectation {
  /** What the bytes are, for messages: `archive.tar: layer 2/3 of linux/amd64 (abc/layer.tar)`. */
  what: string;
  digest?: Digest;
  size?: number;
  /** A compressed blob held to its uncompressed digest too (the config's diff_id). */
  diffId?: { digest: Digest; compression: Exclude<Compression, 'none'> };
}

/** A blob as it is now in place at a destination. */
export interface PlacedBlob {
  digest: Digest;
  size: number;
  compression: Compression;
  /** Linked by the destination from elsewhere (a cross-repository mount): nothing was sent. */
  mounted?: boolean;
}

export interface StreamedBlob {
  facts: BlobFacts;
  /** Set when the offer's taker put the blob in place while it streamed by. */
  placed?: PlacedBlob;
}

/**
 * A large blob a one-pass source offers while it streams by. The taker may read it once, as
 * stored or compressed; what it does not read, the source reads itself (hashing only) when
 * the taker returns. A second `open` fails: the bytes have gone by.
 */
export interface OfferedBlob {
  readonly blob: BlobRef;
  readonly compression: Compression;
  open(): Readable;
  openCompressed(codec: Exclude<Compression, 'none'>, level: number | undefined): Readable;
}

/** Takes an offered blob: returns where it was placed, or undefined when it was left alone. */
export type OfferTaker = (offer: OfferedBlob) => Promise<PlacedBlob | undefined>;
