/**
 * A minimal ustar writer for the archives lading makes itself (the demo's sample image).
 * Names up to 100 bytes, regular files and directories only: all it needs.
 */
import { LadingError } from '../errors';

function octal(n: number, width: number): string {
  return `${n.toString(8).padStart(width - 1, '0')}\0`;
}

export function tarHeader(
  name: string,
  size: number,
  type: 'file' | 'directory' = 'file',
  mode = type === 'directory' ? 0o755 : 0o644,
): Buffer {
  if (Buffer.byteLength(name) > 100) throw new LadingError('INTERNAL', `tar name too long: ${name}`);
  const h = Buffer.alloc(512);
  h.write(name, 0, 'utf8');
  h.write(octal(mode, 8), 100, 'latin1');
  h.write(octal(0, 8), 108, 'latin1');
  h.write(octal(0, 8), 116, 'latin1');
  h.write(octal(size, 12), 124, 'latin1');
  h.write(octal(0, 12), 136, 'latin1');
  h.write('        ', 148, 'latin1');
  h.write(type === 'directory' ? '5' : '0', 156, 'latin1');
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7), 148, 'latin1');
  return h;
}

/** A whole tar in memory from a list of files (small archives only). */
export function tarOf(files: { name: string; data?: Buffer; type?: 'file' | 'directory' }[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of files) {
    const data = f.data ?? Buffer.alloc(0);
    parts.push(tarHeader(f.name, f.type === 'directory' ? 0 : data.length, f.type ?? 'file'));
    if (f.type !== 'directory' && data.length > 0) {
      parts.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
    }
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}
