export { openArchive, ImageArchive, type ArchiveInput, type OpenArchiveOptions } from './archive';
export { FileSource, isRandomAccessSource, type RandomAccessSource } from './source';
export {
  inspectArchive,
  describeArchive,
  type InspectResult,
  type InspectImage,
  type InspectManifest,
  type InspectOptions,
} from './inspect';
export type { ArchiveFormat, ArchiveImage, ArchiveModel, BlobRef, ConfigInfo, LayerInfo, ManifestInfo } from './model';
export type { BlobFacts } from './analyze';
export { analyzeBlob } from './analyze';
