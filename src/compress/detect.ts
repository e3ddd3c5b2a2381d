import { LadingError } from '../errors';
import type { Compression } from '../image/media-types';

/** Bytes needed to recognise every format below. */
export const MAGIC_BYTES = 6;

/**
 * Detects compression from magic bytes. Names lie (rules_oci names every layer `.tar.gz`),
 * so lading never trusts them. Formats it cannot read are recognised so the error can say
 * what the input is rather than "not a tar".
 */
export function detectCompression(head: Uint8Array): Compression | 'bzip2' | 'xz' | 'lz4' {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return 'zstd';
  if (head.length >= 3 && head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) return 'bzip2';
  if (
    head.length >= 6 &&
    head[0] === 0xfd &&
    head[1] === 0x37 &&
    head[2] === 0x7a &&
    head[3] === 0x58 &&
    head[4] === 0x5a &&
    head[5] === 0x00
  )
    return 'xz';
  if (head.length >= 4 && head[0] === 0x04 && head[1] === 0x22 && head[2] === 0x4d && head[3] === 0x18) return 'lz4';
  return 'none';
}

/** Like detectCompression, but formats lading cannot decompress are an error naming `where`. */
export function supportedCompression(head: Uint8Array, where: string): Compression {
  const c = detectCompression(head);
  if (c === 'bzip2' || c === 'xz' || c === 'lz4') {
    throw new LadingError(
      'UNSUPPORTED_COMPRESSION',
      `${where}: ${c} compression is not supported (gzip and zstd are); decompress it first, e.g. \`${c === 'bzip2' ? 'bunzip2' : c === 'xz' ? 'unxz' : 'lz4 -d'} FILE\``,
    );
  }
  return c;
}
