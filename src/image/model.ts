import type { Descriptor } from './descriptor';
import type { Digest } from './digest';
import type { ImageConfig, ImageIndex, ImageManifest } from './manifest';
import type { Compression } from './media-types';
import type { Platform } from './platform';

/**
 * The image model: what a source (an archive, an OCI layout, an S3 object) holds, as the copy
 * engine sees it. Sources fill it in; the engine plans from it and never looks further.
 */

/** A blob as its source stores it. */
export interface BlobRef {
  /** Identity of the stored bytes within the source: two refs with one key are one blob. */
  key: string;
  /** Name of the blob as the source refers to it (before links), for messages. */
  name: string;
  /** Stored size in bytes. */
  size: number;
  /** Where the blob sits in its source: blobs read in this order keep a disk or a stream moving forward. */
  offset: number;
  /** Digest the source claims for it (descriptor, or a digest-shaped file name), verified on read. */
  claimed?: Digest;
}

/** What reading a blob once tells: its digest and size, its real compression, its diff_id. */
export interface BlobFacts {
  digest: Digest;
  size: number;
  compression: Compression;
  /** sha256 of the uncompressed bytes; undefined when not computed (compressed, diffId not asked). */
  diffId?: Digest;
  uncompressedSize?: number;
}

export interface LayerInfo {
  /** Declared descriptor (OCI manifests); legacy docker layers get theirs once read. */
  descriptor?: Descriptor;
  blob?: BlobRef;
  /** From the config's rootfs.diff_ids. */
  diffId?: Digest;
  /** Foreign / non-distributable: may be absent from the archive, never pushed by default. */
  foreign: boolean;
}

export interface ConfigInfo {
  descriptor: Descriptor;
  blob?: BlobRef;
  /** Parsed when the config is an image config and present. */
  parsed?: ImageConfig;
}

export interface ManifestInfo {
  /**
   * The descriptor that points at this manifest (from an index, or made for it). A legacy
   * `docker save` image has none until `resolveSynthesized` has made its manifest.
   */
  descriptor: Descriptor;
  /** Stored manifest; undefined when absent or synthesized from a legacy manifest.json. */
  manifest?: ImageManifest;
  config?: ConfigInfo;
  layers: LayerInfo[];
  platform?: Platform;
  attestation: boolean;
  /** Every blob it needs is in the archive. */
  available: boolean;
  /** Legacy docker: the manifest is made by lading (its digest depends on the layers' bytes). */
  synthesized: boolean;
}

export interface ArchiveImage {
  names: string[];
  /** Top-level document: an index or a manifest, stored or (legacy docker) synthesized. */
  mediaType: string;
  /** undefined until known for a synthesized manifest. */
  digest?: Digest;
  /** The top-level index, when there is one, and every nested index below it (parent first). */
  indexes: ImageIndex[];
  manifests: ManifestInfo[];
  /**
   * Index children of media types lading does not interpret (artifacts): ignored as images,
   * but carried when the whole index is pushed, since the index names them.
   */
  others: { descriptor: Descriptor; blob?: BlobRef }[];
  /** What the source noticed and accepted, as skopeo and docker would (e.g. a config file name that disagrees with its content). */
  warnings?: string[];
}
