import type { ArchiveImage, BlobRef } from '../image/model';
import type { Compression } from '../image/media-types';
import type { Entry } from './entries';

export type { ArchiveImage, BlobRef, ConfigInfo, LayerInfo, ManifestInfo } from '../image/model';

export type ArchiveFormat = 'docker-archive' | 'oci-archive' | 'oci-layout';

/** A blob of an archive: the entry that stores it. */
export interface ArchiveBlobRef extends BlobRef {
  entry: Entry;
}

/** Makes the reference to a blob stored in `entry` (after links). */
export function blobRef(entry: Entry, name: string, claimed?: BlobRef['claimed']): ArchiveBlobRef {
  const ref: ArchiveBlobRef = { entry, key: entry.path, name, size: entry.size, offset: entry.dataOffset };
  if (claimed !== undefined) ref.claimed = claimed;
  return ref;
}

export interface ArchiveModel {
  format: ArchiveFormat;
  compression: Compression;
  images: ArchiveImage[];
}
