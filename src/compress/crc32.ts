import * as zlib from 'node:zlib';

/** CRC-32 (ISO 3309, the gzip trailer's): `crc32(b, crc32(a)) === crc32(a ++ b)`. */
export type Crc32 = (data: Uint8Array, value?: number) => number;

/**
 * A table-driven CRC-32, one byte at a time (~400 MiB/s). Only for Node.js < 20.15, whose zlib
 * has no `crc32` (engines allows Node >= 20.0); zlib's own is SIMD and ~2.4 GiB/s here.
 * Written from the definition (reflected polynomial 0xEDB88320, initial and final XOR
 * 0xFFFFFFFF); tests check it against zlib's.
 */
export function crc32Table(): Crc32 {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return (data, value = 0) => {
    let c = (value ^ 0xffffffff) >>> 0;
    for (let i = 0; i < data.length; i++) c = table[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
}

export const crc32: Crc32 = (zlib as unknown as { crc32?: Crc32 }).crc32 ?? crc32Table();
