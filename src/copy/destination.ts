import type { Readable } from 'node:stream';
import type { Digest } from '../image/digest';

/** Bytes to upload. `open` may be called again when an upload is retried. */
export interface BlobSource {
  open(): Readable | Promise<Readable>;
  /** Known before reading for stored blobs; unknown for a layer compressed on the fly. */
  digest?: Digest;
  size?: number;
  mediaType?: string;
}

export interface PutBlobOptions {
  signal?: AbortSignal;
  /** Called with the number of new bytes sent. */
  onProgress?: (bytes: number) => void;
}

export interface ManifestToPut {
  bytes: Buffer;
  mediaType: string;
  digest: Digest;
}

/**
 * Where images go: a registry, Amazon ECR, or an OCI layout directory. The copy engine
 * knows nothing more of them than this. Contract: `putBlob` verifies what it stored
 * (a known digest must match the bytes; an unknown one is computed); `putManifest` is
 * called children first, and with a tag only once everything it needs is in place.
 */
export interface Destination {
  /** For messages: `host/repository` or `oci:PATH`. */
  readonly name: string;
  hasBlob(digest: Digest, signal?: AbortSignal): Promise<boolean>;
  /** `mounted`: the destination linked the blob from elsewhere (a cross-repository mount): nothing was sent. */
  putBlob(src: BlobSource, opts?: PutBlobOptions): Promise<{ digest: Digest; size: number; mounted?: boolean }>;
  /**
   * Optional: links a blob the destination may hold elsewhere (a registry's cross-repository
   * mount) without sending it; false when it could not.
   */
  mountBlob?(digest: Digest, size: number, signal?: AbortSignal): Promise<boolean>;
  /** Whether a manifest is already stored (by digest). */
  hasManifest(digest: Digest, signal?: AbortSignal): Promise<boolean>;
  /** Stores a manifest by digest (`tag` undefined) or under a tag. */
  putManifest(m: ManifestToPut, tag: string | undefined, signal?: AbortSignal): Promise<void>;
  /** The pinned reference printed on success: `host/repository@sha256:...`. */
  pinned(digest: Digest): string;
  close(): Promise<void>;
}
