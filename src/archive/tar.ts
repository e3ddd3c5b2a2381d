/**
 * A tar reader written for lading's two access patterns.
 *
 * Why not a tar library: the widely used parsers (tar-stream, node-tar) only stream; none
 * reports the byte offset of an entry's data, and lading's speed comes from indexing an
 * uncompressed archive once (reading only the 512-byte headers, seeking over the data)
 * and then opening blobs as byte ranges, in parallel, without extracting. The same header
 * decoder serves the one-pass streaming reader used for compressed archives and stdin, so
 * both paths see identical entries. Covers ustar, GNU (long names, base-256 sizes) and
 * pax (path, linkpath, size) headers: what docker, containerd, Go's archive/tar, Python's
 * tarfile and GNU tar write.
 */
import { LadingError } from '../errors';

export type TarEntryType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'other';

export interface TarEntry {
  /** The name exactly as recorded (after pax / GNU long-name resolution). */
  name: string;
  type: TarEntryType;
  size: number;
  linkname?: string;
  /** Offset of the entry's data in the (uncompressed) tar stream. */
  dataOffset: number;
}

export const BLOCK = 512;
/** Archives with more entries than this are refused: image archives hold dozens, not millions. */
export const MAX_ENTRIES = 100_000;
/** pax and GNU long-name records are tiny in practice; a huge one is an attack. */
const MAX_META_SIZE = 1024 * 1024;

interface RawHeader {
  name: string;
  typeflag: string;
  size: number;
  linkname: string;
}

function cstring(b: Buffer, start: number, end: number): Buffer {
  const z = b.indexOf(0, start);
  return b.subarray(start, z === -1 || z > end ? end : z);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeName(bytes: Buffer, where: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new LadingError('UNSAFE_PATH', `${where}: entry name is not valid UTF-8`);
  }
}

function parseOctal(b: Buffer, start: number, len: number, what: string, where: string): number {
  const field = b.subarray(start, start + len);
  // GNU base-256: high bit of the first byte set; used for sizes of 8 GiB and more.
  if ((field[0]! & 0x80) !== 0) {
    if ((field[0]! & 0x40) !== 0) throw new LadingError('NOT_A_TAR', `${where}: negative ${what} in tar header`);
    let v = field[0]! & 0x3f;
    for (let i = 1; i < field.length; i++) {
      v = v * 256 + field[i]!;
      if (v > Number.MAX_SAFE_INTEGER) throw new LadingError('LIMIT_EXCEEDED', `${where}: ${what} in tar header is too large`);
    }
    return v;
  }
  const s = field.toString('latin1').replace(/\0.*$/s, '').trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new LadingError('NOT_A_TAR', `${where}: invalid ${what} field in tar header`);
  const v = parseInt(s, 8);
  if (!Number.isSafeInteger(v)) throw new LadingError('LIMIT_EXCEEDED', `${where}: ${what} in tar header is too large`);
  return v;
}

function isZeroBlock(b: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

/** Decodes one header block; undefined for an all-zero (end-of-archive) block. */
export function decodeHeader(b: Buffer, where: string): RawHeader | undefined {
  if (b.length < BLOCK) throw new LadingError('TRUNCATED', `${where}: archive ends inside a tar header`);
  if (isZeroBlock(b)) return undefined;
  // Checksums are always octal: a base-256 marker there means this is no tar header (and
  // must not surface as LIMIT_EXCEEDED or "negative checksum" for, say, a random binary).
  if ((b[148]! & 0x80) !== 0) throw new LadingError('NOT_A_TAR', `${where}: not a tar archive (bad header checksum)`);
  const stored = parseOctal(b, 148, 8, 'checksum', where);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 32 : b[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  if (stored !== unsigned && stored !== signed) {
    throw new LadingError('NOT_A_TAR', `${where}: not a tar archive (bad header checksum)`);
  }
  const magic = b.toString('latin1', 257, 263);
  const ustar = magic === 'ustar\0' || magic === 'ustar ';
  let name = decodeName(cstring(b, 0, 100), where);
  if (ustar && magic === 'ustar\0') {
    const prefix = cstring(b, 345, 500);
    if (prefix.length > 0) name = `${decodeName(prefix, where)}/${name}`;
  }
  return {
    name,
    typeflag: String.fromCharCode(b[156]!),
    size: parseOctal(b, 124, 12, 'size', where),
    linkname: decodeName(cstring(b, 157, 257), where),
  };
}

/** Parses pax extended header records (`"%d %s=%s\n"`). */
export function decodePax(data: Buffer, where: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    if (sp === -1) break;
    const len = Number(data.toString('latin1', i, sp));
    if (!Number.isSafeInteger(len) || len <= sp - i || i + len > data.length) {
      throw new LadingError('NOT_A_TAR', `${where}: malformed pax header record`);
    }
    const rec = data.subarray(sp + 1, i + len - 1); // drop trailing \n
    const eq = rec.indexOf(0x3d);
    if (eq === -1) throw new LadingError('NOT_A_TAR', `${where}: malformed pax header record`);
    const key = rec.toString('utf8', 0, eq);
    let value: string;
    try {
      value = utf8.decode(rec.subarray(eq + 1));
    } catch {
      throw new LadingError('UNSAFE_PATH', `${where}: pax record "${key}" is not valid UTF-8`);
    }
    out.set(key, value);
    i += len;
  }
  return out;
}

/**
 * Turns the sequence of raw headers (including pax and GNU meta entries) into entries.
 * Both readers drive it, so they agree on every name and size.
 */
export class HeaderResolver {
  private pax = new Map<string, string>();
  private globalPax = new Map<string, string>();
  private longName: string | undefined;
  private longLink: string | undefined;
  count = 0;

  constructor(private readonly where: string) {}

  /** Whether this header's data is metadata the resolver must be given (via `meta`). */
  isMeta(h: RawHeader): boolean {
    return h.typeflag === 'x' || h.typeflag === 'g' || h.typeflag === 'L' || h.typeflag === 'K';
  }

  /** Whether pax or GNU long-name records wait for the entry they describe. */
  get pending(): boolean {
    return this.pax.size > 0 || this.longName !== undefined || this.longLink !== undefined;
  }

  /** At the end of the archive: records still pending mean the entry they describe was cut off. */
  finish(): void {
    if (this.pending) {
      throw new LadingError('TRUNCATED', `${this.where}: archive ends after a pax or GNU long-name header, before the entry it describes`);
    }
  }

  metaLimit(h: RawHeader): void {
    if (h.size > MAX_META_SIZE) {
      throw new LadingError('LIMIT_EXCEEDED', `${this.where}: tar ${h.typeflag} header of ${h.size} bytes (limit ${MAX_META_SIZE})`);
    }
  }

  meta(h: RawHeader, data: Buffer): void {
    switch (h.typeflag) {
      case 'x':
        this.pax = decodePax(data, this.where);
        break;
      case 'g':
        for (const [k, v] of decodePax(data, this.where)) this.globalPax.set(k, v);
        break;
      case 'L':
        this.longName = decodeName(cstring(data, 0, data.length), this.where);
        break;
      case 'K':
        this.longLink = decodeName(cstring(data, 0, data.length), this.where);
        break;
    }
  }

  entry(h: RawHeader, dataOffset: number): TarEntry {
    if (++this.count > MAX_ENTRIES) {
      throw new LadingError('LIMIT_EXCEEDED', `${this.where}: more than ${MAX_ENTRIES} tar entries; not an image archive`);
    }
    const get = (k: string): string | undefined => this.pax.get(k) ?? this.globalPax.get(k);
    const name = get('path') ?? this.longName ?? h.name;
    const linkname = get('linkpath') ?? this.longLink ?? h.linkname;
    let size = h.size;
    const paxSize = get('size');
    if (paxSize !== undefined) {
      if (!/^[0-9]+$/.test(paxSize) || !Number.isSafeInteger(Number(paxSize))) {
        throw new LadingError('NOT_A_TAR', `${this.where}: invalid pax size for ${JSON.stringify(name)}`);
      }
      size = Number(paxSize);
    }
    if (name.includes('\0') || linkname.includes('\0')) {
      throw new LadingError('UNSAFE_PATH', `${this.where}: entry name contains a NUL byte`);
    }
    this.pax = new Map();
    this.longName = undefined;
    this.longLink = undefined;
    let type: TarEntryType;
    switch (h.typeflag) {
      case '0':
      case '\0':
      case '7':
        type = 'file';
        break;
      case '1':
        type = 'hardlink';
        size = 0;
        break;
      case '2':
        type = 'symlink';
        size = 0;
        break;
      case '5':
        type = 'directory';
        size = 0;
        break;
      default:
        type = 'other';
    }
    // Old tars mark directories only by a trailing slash.
    if (type === 'file' && name.endsWith('/')) type = 'directory';
    const e: TarEntry = { name, type, size, dataOffset };
    if (type === 'symlink' || type === 'hardlink') e.linkname = linkname;
    return e;
  }
}

/** Bytes of data that follow the header in the stream (links and directories carry none). */
export function dataSizeOf(e: TarEntry): number {
  return e.type === 'file' || e.type === 'other' ? e.size : 0;
}

export function padded(size: number): number {
  return Math.ceil(size / BLOCK) * BLOCK;
}

/** What indexing needs of a file: positional reads (a `FileHandle`, a `RandomAccessSource`). */
export interface PositionalReader {
  read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
}

/**
 * Indexes an uncompressed tar file by reading its headers only: one small read per entry,
 * whatever the size of the data.
 */
export async function indexTarFile(fh: PositionalReader, fileSize: number, where: string): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const resolver = new HeaderResolver(where);
  const block = Buffer.alloc(BLOCK);
  let pos = 0;
  if (fileSize < BLOCK) {
    throw new LadingError(fileSize === 0 ? 'NOT_A_TAR' : 'TRUNCATED', `${where}: ${fileSize === 0 ? 'empty file, not a tar archive' : 'too short to be a tar archive'}`);
  }
  while (pos < fileSize) {
    if (pos + BLOCK > fileSize) throw new LadingError('TRUNCATED', `${where}: archive ends inside a tar header at byte ${pos}`);
    await readFully(fh, block, pos, where);
    const h = decodeHeader(block, where);
    if (h === undefined) break; // end-of-archive marker
    const dataOffset = pos + BLOCK;
    if (resolver.isMeta(h)) {
      resolver.metaLimit(h);
      const data = Buffer.alloc(h.size);
      await readFully(fh, data, dataOffset, where);
      resolver.meta(h, data);
      pos = dataOffset + padded(h.size);
      continue;
    }
    const e = resolver.entry(h, dataOffset);
    entries.push(e);
    const size = dataSizeOf(e);
    if (dataOffset + size > fileSize) {
      throw new LadingError('TRUNCATED', `${where}: archive is truncated inside ${JSON.stringify(e.name)} (needs ${size} bytes at offset ${dataOffset})`);
    }
    // As the stream reader: the last entry's padding may be missing, but not cut short.
    const rest = fileSize - (dataOffset + size);
    if (rest > 0 && rest < padded(size) - size) {
      throw new LadingError('TRUNCATED', `${where}: archive is truncated after ${JSON.stringify(e.name)}`);
    }
    pos = dataOffset + padded(size);
  }
  resolver.finish();
  return entries;
}

async function readFully(fh: PositionalReader, buf: Buffer, position: number, where: string): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesRead } = await fh.read(buf, off, buf.length - off, position + off);
    if (bytesRead === 0) throw new LadingError('TRUNCATED', `${where}: archive is truncated (it ends at byte ${position + off})`);
    off += bytesRead;
  }
}

/**
 * Pulls exact byte counts out of an async stream of chunks, keeping at most one chunk
 * (plus a header) in memory.
 */
export class ByteReader {
  private buf: Buffer = Buffer.alloc(0);
  private done = false;
  private readonly it: AsyncIterator<Buffer>;
  /** Bytes consumed so far: the current offset in the stream. */
  position = 0;

  constructor(source: AsyncIterable<Buffer | Uint8Array | string>) {
    const inner = source[Symbol.asyncIterator]();
    this.it = {
      next: async () => {
        const r = await inner.next();
        if (r.done) return r;
        const v = r.value;
        return { done: false, value: typeof v === 'string' ? Buffer.from(v) : Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength) };
      },
      return: async () => {
        await inner.return?.();
        return { done: true, value: undefined };
      },
    };
  }

  private async fill(): Promise<boolean> {
    if (this.done) return false;
    const r = await this.it.next();
    if (r.done) {
      this.done = true;
      return false;
    }
    this.buf = this.buf.length === 0 ? r.value : Buffer.concat([this.buf, r.value]);
    return true;
  }

  /** Exactly n bytes, or fewer only at the end of the stream. */
  async read(n: number): Promise<Buffer> {
    while (this.buf.length < n && (await this.fill()));
    const out = this.buf.subarray(0, Math.min(n, this.buf.length));
    this.buf = this.buf.subarray(out.length);
    this.position += out.length;
    return out;
  }

  /** Up to n bytes as they arrive, without copying. */
  async *take(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.buf.length === 0 && !(await this.fill())) return;
      const chunk = this.buf.subarray(0, Math.min(left, this.buf.length));
      this.buf = this.buf.subarray(chunk.length);
      this.position += chunk.length;
      left -= chunk.length;
      yield chunk;
    }
  }

  async skip(n: number): Promise<number> {
    let skipped = 0;
    for await (const c of this.take(n)) skipped += c.length;
    return skipped;
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }
}

export interface StreamedEntry {
  entry: TarEntry;
  /**
   * The entry's data. Consume it before asking for the next entry; whatever is left
   * unread is skipped.
   */
  body: AsyncIterable<Buffer>;
}

/** Reads a tar stream in one pass. */
export async function* readTarStream(source: AsyncIterable<Buffer | Uint8Array | string>, where: string): AsyncGenerator<StreamedEntry> {
  const r = new ByteReader(source);
  const resolver = new HeaderResolver(where);
  let first = true;
  try {
    while (true) {
      const block = await r.read(BLOCK);
      if (block.length === 0) {
        if (first) throw new LadingError('NOT_A_TAR', `${where}: empty input, not a tar archive`);
        resolver.finish();
        return; // EOF at a header boundary without end blocks: accepted, as GNU tar does
      }
      if (block.length < BLOCK) {
        throw new LadingError(first ? 'NOT_A_TAR' : 'TRUNCATED', first ? `${where}: too short to be a tar archive` : `${where}: archive ends inside a tar header`);
      }
      const h = decodeHeader(Buffer.from(block), where);
      first = false;
      if (h === undefined) {
        resolver.finish();
        // End of archive. Drain the rest (zero padding, or a nix/zstd frame trailer) so the
        // decompressor reports a corrupt trailer instead of us ignoring it.
        for await (const _ of r.take(Number.MAX_SAFE_INTEGER)) void _;
        return;
      }
      const dataOffset = r.position;
      if (resolver.isMeta(h)) {
        resolver.metaLimit(h);
        const data = await r.read(h.size);
        if (data.length < h.size) throw new LadingError('TRUNCATED', `${where}: archive ends inside a tar header record`);
        resolver.meta(h, Buffer.from(data));
        await skipExact(r, padded(h.size) - h.size, where, h.name);
        continue;
      }
      const entry = resolver.entry(h, dataOffset);
      const size = dataSizeOf(entry);
      let consumed = 0;
      const body: AsyncIterable<Buffer> = {
        [Symbol.asyncIterator]: async function* () {
          for await (const c of r.take(size - consumed)) {
            consumed += c.length;
            yield c;
          }
          if (consumed < size) throw new LadingError('TRUNCATED', `${where}: archive is truncated inside ${JSON.stringify(entry.name)} (${consumed} of ${size} bytes)`);
        },
      };
      yield { entry, body };
      if (consumed < size) {
        const n = await r.skip(size - consumed);
        consumed += n;
        if (consumed < size) throw new LadingError('TRUNCATED', `${where}: archive is truncated inside ${JSON.stringify(entry.name)} (${consumed} of ${size} bytes)`);
      }
      await skipExact(r, padded(size) - size, where, entry.name);
    }
  } finally {
    await r.close();
  }
}

async function skipExact(r: ByteReader, n: number, where: string, name: string): Promise<void> {
  if (n === 0) return;
  const got = await r.skip(n);
  // Some writers omit the padding of the very last entry; only complain if data follows.
  if (got < n && got !== 0) throw new LadingError('TRUNCATED', `${where}: archive is truncated after ${JSON.stringify(name)}`);
}
