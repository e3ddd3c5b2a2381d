import type { DigestCache } from '../compress/cache';
import type { Digest } from '../image/digest';
import type { Compression } from '../image/media-types';
import type { Platform } from '../image/platform';
import type { CopyEventListener } from './events';

/** What a copy is asked to do: the options of `CopyEngine` and `copyImage`. */
export interface CopyOptions {
  /** Name or digest of the image to take from a multi-image archive. */
  image?: string;
  /** Platforms to push; empty or undefined: all, the original index bytes preserved. */
  platforms?: Platform[];
  /**
   * The codec for layers stored uncompressed, when the destination compresses layers (every
   * destination lading has does; default gzip). Compressed layers are kept as they are.
   */
  compress?: Compression;
  compressionLevel?: number;
  /** Tags to write once everything they need is in place. */
  tags?: string[];
  /**
   * When `tags` is empty: the tags the chosen image carries in the archive (`RepoTags`,
   * `org.opencontainers.image.ref.name`, `io.containerd.image.name`), `latest` when it names none.
   */
  tagsFromArchive?: boolean;
  /**
   * Also hold compressed layers whose digest the archive declares (OCI layouts) to the config's
   * diff_ids, inflating each one (~1 CPU-second per GiB). Without it those layers are verified
   * against their declared digest only, as skopeo and crane do; layers the archive declares no
   * digest for (legacy `docker save` with compressed layers) are always checked. @default false
   */
  verifyDiffIds?: boolean;
  /** Blobs in flight at once (default 3). */
  concurrency?: number;
  signal?: AbortSignal;
  /**
   * A softer stop than `signal`: once aborted, no new upload is started (but the first, so a run
   * always makes progress), those in flight finish, and the copy then fails with the signal's
   * reason, writing no manifest. For a caller with a deadline that will run the copy again (the CDK handler's next invocation): the bytes in
   * flight are not thrown away.
   */
  drain?: AbortSignal;
  onEvent?: CopyEventListener;
  /** Compressed-digest cache; null disables it. */
  cache?: DigestCache | null;
  /** Push foreign (non-distributable) layers the archive holds as ordinary layers, instead of by reference. */
  pushForeignLayers?: boolean;
  /** Plan only: ask the destination what it has, upload and write nothing. */
  dryRun?: boolean;
  logger?: (line: string) => void;
}

export interface PlannedBlob {
  label: string;
  action: 'upload' | 'compress+upload' | 'skip';
  digest?: Digest;
  size?: number;
  reason?: string;
}

export interface CopyResult {
  /** null only for a dry run whose compression would decide it. */
  digest: Digest | null;
  mediaType: string;
  reference: string | null;
  tags: string[];
  /** Where the tags came from: given, the archive's own, or the `latest` default. */
  tagSource: 'given' | 'archive' | 'default';
  manifests: { digest: Digest; mediaType: string; platform: Platform | null; attestation?: true }[];
  /** `mounted`: linked by the destination from another repository (a cross-repository mount), nothing sent. */
  blobs: { uploaded: number; skipped: number; mounted: number; bytesUploaded: number };
  /** Under dryRun: what would happen to each blob. */
  plan?: PlannedBlob[];
  /** Documents lading wrote itself instead of pushing stored bytes. */
  rewritten: Digest[];
  /** What the source said that lading accepted with a warning (see `ArchiveImage.warnings`). */
  warnings?: string[];
}
