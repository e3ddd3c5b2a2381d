export * from './digest';
export * from './descriptor';
export * from './media-types';
export * from './platform';
export * from './manifest';
export { MAX_JSON_BYTES, parseJsonBytes } from './json';
export * from './rewrite';
export type { BlobExpectation, ImageSource, OfferedBlob, OfferTaker, PlacedBlob, StreamedBlob } from './source';
