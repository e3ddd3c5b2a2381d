import type { Readable } from 'node:stream';
import type { Digest } from '../image/digest';
import type { ManifestDoc } from '../image/rewrite';

/**
 * Bytes to upload. `open` may be called again when an upload is retried (a one-pass source
 * refuses, with a typed error). The stream is verified as it is read and fails at its end when
 * the bytes are not what was promised: a destination commits a blob only once it has read the
 * stream to its end without error. Chunks may come from a buffer pool: the destination, which
 * ends their journey (a socket, a file), releases each once written (util/buffer-pool).
 */
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

/** A manifest or index to store: its exact bytes, media type and their digest. */
export type ManifestToPut = ManifestDoc;

/**
 * What a destination takes, declared once, so the engine needs no knowledge of its kind
 * (as containers/image's SupportedManifestMIMETypes / DesiredLayerCompression and regclient's
 * Info do).
 */
export interface DestinationCapabilities {
  /**
   * Manifest and index media types it stores. When the Docker schema 2 types are missing,
   * Docker documents are converted to their OCI twins (an OCI image layout).
   */
  manifestMediaTypes: readonly string[];
  /** Whether layers stored uncompressed are compressed on the way (with the copy's codec). */
  compressesLayers: boolean;
  /** Whether it keeps foreign (non-distributable) layers as references, by URL. */
  foreignLayerUrls: boolean;
  /**
   * Whether it answers existence checks in batches (ECR: 100 digests per call): then the engine
   * asks about every blob whose digest it knows at once, before uploading, instead of one by one.
   */
  batchesExistenceChecks: boolean;
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
  readonly capabilities: DestinationCapabilities;
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
