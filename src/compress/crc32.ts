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

/** The reflected polynomial, as in crc32Table. */
const POLY = 0xedb88320;

/** a(x) * b(x) modulo the CRC polynomial, both reflected (zlib's multmodp). */
function multmodp(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** x^(2^k) modulo the polynomial, k = 0..31. */
const X2N: number[] = (() => {
  const t: number[] = [];
  let p = 0x40000000; // x^1
  t.push(p);
  for (let k = 1; k < 32; k++) t.push((p = multmodp(p, p)));
  return t;
})();

/**
 * The CRC-32 of a ++ b from crc32(a), crc32(b) and b's length (zlib's crc32_combine, written
 * from its description): blocks checksummed on other threads join in order on this one in a
 * few hundred operations each.
 */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  // x^(8 * lengthB): the shift of a's CRC past b's bytes.
  let p = 0x80000000; // x^0
  let k = 3;
  for (let n = lengthB; n > 0; n = Math.floor(n / 2), k++) if (n % 2 === 1) p = multmodp(X2N[k & 31]!, p);
  return (multmodp(p, crcA >>> 0) ^ crcB) >>> 0;
}
