import { nativeBinding, type NativeBinding } from '../native/binding';

/** igzip's deflate: a block's raw deflate with its dictionary and sync flush, and its CRC-32. */
export type Igzip = Pick<NativeBinding, 'deflate'>;

/** igzip through lading's native binding, or null where it is not built or LADING_GZIP_ENGINE=zlib asks for zlib. */
export function igzip(): Igzip | null {
  if (process.env.LADING_GZIP_ENGINE === 'zlib') return null;
  return nativeBinding();
}
