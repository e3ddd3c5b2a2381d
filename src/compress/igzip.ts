import { nativeBinding } from '../native/binding';

/** igzip's deflate: a block's raw deflate with its dictionary and sync flush, and its CRC-32. */
export interface Igzip {
  deflate(input: Buffer, dictionary: Buffer | null, level: number): Promise<{ data: Buffer; crc: number }>;
}

/** igzip through lading's native binding, or null where it is not built or LADING_GZIP_ENGINE=zlib asks for zlib. */
export function igzip(): Igzip | null {
  if (process.env.LADING_GZIP_ENGINE === 'zlib') return null;
  return nativeBinding();
}
