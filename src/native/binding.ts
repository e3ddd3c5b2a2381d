import { join } from 'node:path';

/**
 * lading's optional native binding (native/lading_isal.c, built at install time by
 * scripts/build-native.js where a C compiler and ISA-L's libisal are there): igzip's deflate,
 * and hashing with Node's own OpenSSL, both on the libuv thread pool. Absent (not built,
 * another platform, the CDK handler's bundle), lading does the same work with Node's zlib and
 * crypto.
 */
export interface NativeBinding {
  /** A block's raw deflate, primed with `dictionary`, ended by a sync flush; and its CRC-32. */
  deflate(input: Buffer, dictionary: Buffer | null, level: number): Promise<{ data: Buffer; crc: number }>;
  /** Absent where Node's OpenSSL functions cannot be found. */
  hashCreate?(algorithm: 'sha256' | 'sha512'): NativeHash;
  /** Hashes the Buffers in order; one update at a time per context (the binding throws otherwise). */
  hashUpdate?(context: NativeHash, data: Buffer[]): Promise<void>;
  hashDigest?(context: NativeHash): Buffer;
}

/** An opaque OpenSSL digest context. */
export type NativeHash = { readonly __nativeHash: unique symbol };

let loaded: NativeBinding | null | undefined;

/** The binding, or null where it is not built or LADING_NATIVE=0 turns it off. */
export function nativeBinding(): NativeBinding | null {
  if (loaded === undefined) {
    loaded = null;
    if (process.env.LADING_NATIVE !== '0') {
      try {
        // From dist/src/native (or a .build-* tree) to the package's native/build.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        loaded = require(join(__dirname, '..', '..', '..', 'native', 'build', 'lading_isal.node')) as NativeBinding;
      } catch {
        loaded = null;
      }
    }
  }
  return loaded;
}
