import type { Descriptor } from '../image/descriptor';
import type { Digest } from '../image/digest';
import type { ImageConfig, ImageIndex, ImageManifest } from '../image/manifest';
import type { Compression } from '../image/media-types';
import type { Platform } from '../image/platform';
import type { Entry } from './entries';

export type ArchiveFormat = 'docker-archive' | 'oci-archive' | 'oci-layout';

/** A blob as the archive stores it. */
export interface BlobRef {
  entry: Entry;
  /** Name of the blob as the archive refers to it (before links), for messages. */
  name: string;
  /** Digest the archive claims for it (descriptor, or a digest-shaped file name), verified on read. */
  claimed?: Digest;
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
  /** The descriptor that points at this manifest (from an index, or made for it). */
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
}

export interface ArchiveModel {
  format: ArchiveFormat;
  compression: Compression;
  images: ArchiveImage[];
}
