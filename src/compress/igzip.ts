import { join } from 'node:path';

/**
 * lading's optional binding to ISA-L's igzip (native/lading_isal.c, built at install time by
 * scripts/build-native.js when a C compiler and libisal are there): a block's raw deflate,
 * primed with a dictionary and ended by a sync flush, and its CRC-32, computed on the libuv
 * thread pool. Absent (not built, another platform, the CDK handler's bundle), gzip uses
 * Node's zlib.
 */
export interface Igzip {
  deflate(input: Buffer, dictionary: Buffer | null, level: number): Promise<{ data: Buffer; crc: number }>;
}

/** igzip's levels (1-3; its 0 is another format's fast path lading does not use). */
export const IGZIP_LEVELS = [1, 2, 3] as const;

let loaded: Igzip | null | undefined;

/** The binding, or null where it is not built or LADING_GZIP_ENGINE=zlib asks for zlib. */
export function igzip(): Igzip | null {
  if (loaded === undefined) {
    loaded = null;
    if (process.env.LADING_GZIP_ENGINE !== 'zlib') {
      try {
        // From dist/src/compress (or a .build-* tree) to the package's native/build.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        loaded = require(join(__dirname, '..', '..', '..', 'native', 'build', 'lading_isal.node')) as Igzip;
      } catch {
        loaded = null;
      }
    }
  }
  return loaded;
}
