/**
 * lading: read container image archives and ship them to OCI registries and Amazon ECR,
 * natively from Node.js.
 */
export * from './errors';
export * from './image';
export * from './archive';
export { detectCompression } from './compress/detect';
export { createCompressor, createDecompressor, zstdImplementation } from './compress/codecs';
export { copyImage, CopyEngine, type CopyOptions, type CopyResult, type PlannedBlob } from './copy/engine';
export type { CopyEvent, CopyEventListener } from './copy/events';
export type {
  Destination,
  DestinationCapabilities,
  BlobSource,
  PutBlobOptions,
  ManifestToPut,
} from './copy/destination';
export { OciLayoutDestination } from './layout/destination';
export { RegistryDestination } from './registry/destination';
export { RegistryClient, type RegistryClientOptions } from './registry';
export { EcrDestination, type EcrDestinationOptions } from './ecr/destination';
export { ecrRegistryDestination, type EcrRegistryOptions } from './ecr/registry-transport';
export { parseEcrHost, type EcrHost } from './ecr/host';
export { openDestination, type DestinationOptions } from './destinations/open';
export { DigestCache } from './compress/cache';
export { hold, release } from './util/buffer-pool';
