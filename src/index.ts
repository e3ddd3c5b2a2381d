/**
 * lading: read container image archives and ship them to OCI registries and Amazon ECR,
 * natively from Node.js.
 */
export * from './errors';
export * from './image';
export * from './archive';
export { detectCompression } from './compress/detect';
export { createCompressor, createDecompressor, zstdImplementation } from './compress/codecs';
