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
 *
 * ## Agreeing with the other readers (issue 19)
 *
 * docker load, containerd, skopeo and crane read archives with Go's archive/tar; people check
 * them with GNU tar or Python's tarfile. Where those readers would see other entries than
 * lading (another name, other data, a header where lading sees data), lading could verify one
 * image while docker or skopeo loads another. Each header field and entry type where they
 * can disagree was checked against Go 1.26's archive/tar (reader.go, strconv.go, format.go),
 * Python 3.11's tarfile and GNU tar 1.34, on archives built byte by byte (the cases of
 * test/archive/differentials.test.ts, which runs Python and GNU tar, and Go when installed).
 * The rule: read what all three read, or refuse with NOT_A_TAR ("readers disagree"):
 *
 * - Entries that carry no data (POSIX: hard link 1, symlink 2, char 3 and block 4 devices,
 *   directory 5, FIFO 6): Go and Python read no data after them whatever `size` says; GNU
 *   tar skips `size` bytes after 2, 3, 4 and 6 (and none after 1 and 5). lading reads no
 *   data, and refuses such an entry with a nonzero size (header or pax), the only case
 *   where the readers split (a "FIFO" whose data is a smuggled manifest.json).
 * - `\0` typeflag with a trailing slash (old directories): Go decides on the final name
 *   (after pax/GNU names), Python on the 100-byte name field; refused when they differ,
 *   and with a nonzero size (as above). A `0`/`7` regular file whose name ends in `/` is a
 *   file to Go and Python, a directory to GNU tar: refused.
 * - Other typeflags: GNU sparse `S` (its map can continue in extra header blocks that its
 *   size does not count), Solaris `X` (a pax header to Python, a plain entry to Go), GNU
 *   `D`/`M`/`N`/`V`, vendor letters: no image producer writes them; refused.
 * - pax `path`, `linkpath`, `size` in an `x` header: applied to the next entry, as all do.
 *   An empty value means "keep the ustar field" to Go, "empty" to Python, an error to GNU
 *   tar: refused. `size` must be decimal digits (Go accepts `+5`, Python `0_5`: refused).
 * - pax records: the length must be decimal digits and the record end in a newline, with
 *   nothing after the last record (Go refuses otherwise; Python ignores the junk): refused.
 *   A key repeated in one header: the last wins in all three (and here).
 * - pax GNU sparse keys (`GNU.sparse.*`, formats 0.0, 0.1, 1.0): Go and Python rename the
 *   entry (`GNU.sparse.name`) and read a map from its data; refused.
 * - Two `x` headers, two `L` or two `K` records for one entry: Go keeps the last, Python the
 *   first: refused. A pax `path` and a GNU `L` name for one entry (or `linkpath` and `K`):
 *   Go takes the GNU name, Python the pax one when `x` comes first: refused.
 * - Global pax headers (`g`): Go reports them as an entry and applies them to nothing;
 *   Python and GNU tar apply them to every later entry. One that sets `path`, `linkpath`,
 *   `size` or sparse keys is refused; others (git archive's `comment`) change nothing for
 *   anyone and are ignored. A `g` between an `x`/`L`/`K` and its entry (Go drops the `x`,
 *   Python applies it) is refused.
 * - GNU long names/links (`L`, `K`): the data up to the first NUL, as all three read it;
 *   over 1 MiB refused (Go's limit too). Names over 4,096 characters (Linux's PATH_MAX:
 *   docker cannot extract them) and more than 16 MiB of names in all are refused
 *   (LIMIT_EXCEEDED), which bounds memory.
 * - The ustar prefix (bytes 345..500) is joined to the name only under the `ustar\0`
 *   magic (Go and lading); Python joins it under any magic, and Go also falls back to it in
 *   a GNU header whose atime does not parse. So a GNU or v7 header with anything at byte
 *   345 is refused; and a star header (trailer `tar\0` at 508, where Go reads a 131-byte
 *   prefix and Python 155 bytes) whose prefix is not NUL-terminated within 131 bytes.
 * - Numeric fields (mode, uid, gid, size, mtime, checksum, devmajor, devminor): Go trims
 *   leading NULs and spaces, Python cuts at the first NUL and strips any whitespace and
 *   reads `+`, `0o` and `_`; a field with digits after a NUL (Go: the number, Python: 0),
 *   tabs, signs or other bytes is refused. An invalid field in a later header ends the
 *   archive silently for Python and fails Go: refused (lading used to check only size and
 *   checksum). Base-256 (GNU): first byte 0x80 (positive) or, outside `size`, 0xff
 *   (negative), as Python reads them; other high-bit bytes mean other numbers to Go and
 *   errors to Python: refused. Sizes past 2^53 are LIMIT_EXCEEDED.
 * - Checksums: the unsigned or the signed sum, as all three accept.
 * - End of archive: an all-zero block ends it for Python and GNU tar (and lading), but Go
 *   fails if a non-zero block follows a lone zero block: refused. After the second zero
 *   block nobody reads on; lading reads at most 1 MiB more (the rest of a tar record, or of
 *   a compressed stream whose end it can then check) and stops, so an input that never
 *   ends after the archive (`yes | ...`) does not keep it reading.
 * - Hard links: resolved from the archive root, as tar, docker load and Go's extraction do
 *   (see entries.ts for crane's reading).
 * - Names are UTF-8 (refused otherwise: Go takes bytes, Python decodes with surrogates);
 *   duplicates of a path must have identical content (see store.ts).
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
/** pax and GNU long-name records are tiny in practice; a huge one is an attack (Go's limit too). */
const MAX_META_SIZE = 1024 * 1024;
/** Longest entry name, as Linux's PATH_MAX: docker load cannot extract a longer one. */
export const MAX_NAME = 4096;
/** All entry names together: what holding the entry table may cost. */
export const MAX_NAMES_TOTAL = 16 * 1024 * 1024;
/** What is read after the end-of-archive marker, at most (then reading stops). */
export const MAX_TRAILER = 1024 * 1024;

interface RawHeader {
  name: string;
  /** The 100-byte name field alone (before the ustar prefix). */
  rawName: string;
  typeflag: string;
  size: number;
  linkname: string;
}

function cstring(b: Buffer, start: number, end: number): Buffer {
  const z = b.indexOf(0, start);
  return b.subarray(start, z === -1 || z > end ? end : z);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** At most 200 characters of an untrusted string, JSON-quoted, for messages. */
export function shown(s: string): string {
  return JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}...` : s);
}

function decodeName(bytes: Buffer, where: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new LadingError('UNSAFE_PATH', `${where}: entry name is not valid UTF-8`);
  }
}

function disagree(where: string, what: string): LadingError {
  return new LadingError(
    'NOT_A_TAR',
    `${where}: ${what}; tar readers disagree on what such an archive holds, so it is refused`,
  );
}

/**
 * A numeric header field, read as strictly as both Go's archive/tar and Python's tarfile
 * read it the same way (see the notes at the top).
 */
function parseNumeric(b: Buffer, start: number, len: number, what: string, where: string, isSize: boolean): number {
  const first = b[start]!;
  if ((first & 0x80) !== 0) {
    // GNU base-256. 0x80: positive; 0xff: negative (mtimes before 1970). Go reads any
    // first byte with the high bit (bit 0x40 as the sign), Python only these two.
    if (first === 0xff && !isSize) {
      for (let i = start + 1; i < start + len - 7; i++)
        if (b[i] !== 0xff) throw new LadingError('NOT_A_TAR', `${where}: ${what} in tar header is out of range`);
      return -1;
    }
    if (isSize && (first & 0x40) !== 0) throw new LadingError('NOT_A_TAR', `${where}: negative ${what} in tar header`);
    if (!isSize && first !== 0x80) throw disagree(where, `${what} field with base-256 marker 0x${first.toString(16)}`);
    let v = first & 0x3f;
    for (let i = start + 1; i < start + len; i++) {
      v = v * 256 + b[i]!;
      if (v > Number.MAX_SAFE_INTEGER) {
        if (isSize) throw new LadingError('LIMIT_EXCEEDED', `${where}: ${what} in tar header is too large`);
        throw new LadingError('NOT_A_TAR', `${where}: ${what} in tar header is out of range`);
      }
    }
    return v;
  }
  const end = start + len;
  const nul = b.indexOf(0, start);
  const stop = nul === -1 || nul >= end ? end : nul;
  for (let i = stop; i < end; i++) {
    if (b[i] !== 0 && b[i] !== 0x20) throw disagree(where, `${what} field with characters after a NUL`);
  }
  const s = b.toString('latin1', start, stop);
  if (!/^ *[0-7]* *$/.test(s)) throw new LadingError('NOT_A_TAR', `${where}: invalid ${what} field in tar header`);
  const digits = s.trim();
  if (digits === '') return 0;
  const v = parseInt(digits, 8);
  if (!Number.isSafeInteger(v)) {
    if (isSize) throw new LadingError('LIMIT_EXCEEDED', `${where}: ${what} in tar header is too large`);
    throw new LadingError('NOT_A_TAR', `${where}: ${what} in tar header is out of range`);
  }
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
  let stored: number;
  try {
    stored = parseNumeric(b, 148, 8, 'checksum', where, false);
  } catch {
    throw new LadingError('NOT_A_TAR', `${where}: not a tar archive (bad header checksum)`);
  }
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
  // Fields lading does not use, but Go and Python parse: invalid ones fail Go and end the
  // archive early for Python.
  parseNumeric(b, 100, 8, 'mode', where, false);
  parseNumeric(b, 108, 8, 'uid', where, false);
  parseNumeric(b, 116, 8, 'gid', where, false);
  parseNumeric(b, 136, 12, 'mtime', where, false);
  parseNumeric(b, 329, 8, 'devmajor', where, false);
  parseNumeric(b, 337, 8, 'devminor', where, false);
  const size = parseNumeric(b, 124, 12, 'size', where, true);
  const ustar = b.toString('latin1', 257, 263) === 'ustar\0';
  const rawName = decodeName(cstring(b, 0, 100), where);
  let name = rawName;
  if (ustar) {
    // star: the prefix is 131 bytes (then atime, ctime, and the trailer "tar\0" at 508).
    const star = b.toString('latin1', 508, 512) === 'tar\0';
    if (star && b.indexOf(0, 345) > 475)
      throw disagree(where, 'a star header whose name prefix runs into its time fields');
    const prefix = cstring(b, 345, 500);
    if (prefix.length > 0) name = `${decodeName(prefix, where)}/${name}`;
  } else if (b[345] !== 0) {
    // GNU headers keep times there, v7 headers nothing; Python reads it as a name prefix.
    throw disagree(
      where,
      `a ${b.toString('latin1', 257, 263) === 'ustar ' ? 'GNU' : 'v7'} header with bytes in the ustar name-prefix area`,
    );
  }
  return {
    name,
    rawName,
    typeflag: String.fromCharCode(b[156]!),
    size,
    linkname: decodeName(cstring(b, 157, 257), where),
  };
}

/**
 * Parses pax extended header records (`"%d %s=%s\n"`), strictly: Go refuses what is not
 * exactly that, Python skips it (see the notes at the top).
 */
export function decodePax(data: Buffer, where: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < data.length) {
    const sp = data.indexOf(0x20, i);
    const digits = sp === -1 ? '' : data.toString('latin1', i, sp);
    if (!/^[0-9]{1,19}$/.test(digits)) throw new LadingError('NOT_A_TAR', `${where}: malformed pax header record`);
    const len = Number(digits);
    if (!Number.isSafeInteger(len) || len <= sp - i + 1 || i + len > data.length || data[i + len - 1] !== 0x0a) {
      throw new LadingError('NOT_A_TAR', `${where}: malformed pax header record`);
    }
    const rec = data.subarray(sp + 1, i + len - 1); // drop trailing \n
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw new LadingError('NOT_A_TAR', `${where}: malformed pax header record`);
    let key: string;
    let value: string;
    try {
      key = utf8.decode(rec.subarray(0, eq));
    } catch {
      throw new LadingError('NOT_A_TAR', `${where}: a pax record key is not valid UTF-8`);
    }
    try {
      value = utf8.decode(rec.subarray(eq + 1));
    } catch {
      throw new LadingError('UNSAFE_PATH', `${where}: pax record ${shown(key)} is not valid UTF-8`);
    }
    out.set(key, value);
    i += len;
  }
  return out;
}

/** pax keys that change what an entry is (name, link, size), and GNU's sparse keys. */
const PAX_SHAPING = new Set(['path', 'linkpath', 'size']);
function isSparseKey(k: string): boolean {
  return k.startsWith('GNU.sparse.');
}

const TYPE_NAMES: Record<string, string> = {
  '1': 'hard link',
  '2': 'symlink',
  '3': 'character device',
  '4': 'block device',
  '5': 'directory',
  '6': 'FIFO',
};

/**
 * Turns the sequence of raw headers (including pax and GNU meta entries) into entries.
 * Both readers drive it, so they agree on every name and size.
 */
export class HeaderResolver {
  private pax: Map<string, string> | undefined;
  private longName: string | undefined;
  private longLink: string | undefined;
  private namesTotal = 0;
  count = 0;

  constructor(private readonly where: string) {}

  /** Whether this header's data is metadata the resolver must be given (via `meta`). */
  isMeta(h: RawHeader): boolean {
    return h.typeflag === 'x' || h.typeflag === 'g' || h.typeflag === 'L' || h.typeflag === 'K';
  }

  /** Whether pax or GNU long-name records wait for the entry they describe. */
  get pending(): boolean {
    return this.pax !== undefined || this.longName !== undefined || this.longLink !== undefined;
  }

  /** At the end of the archive: records still pending mean the entry they describe was cut off. */
  finish(): void {
    if (this.pending) {
      throw new LadingError(
        'TRUNCATED',
        `${this.where}: archive ends after a pax or GNU long-name header, before the entry it describes`,
      );
    }
  }

  metaLimit(h: RawHeader): void {
    if (h.size > MAX_META_SIZE) {
      throw new LadingError(
        'LIMIT_EXCEEDED',
        `${this.where}: tar ${h.typeflag} header of ${h.size} bytes (limit ${MAX_META_SIZE})`,
      );
    }
  }

  meta(h: RawHeader, data: Buffer): void {
    const where = this.where;
    switch (h.typeflag) {
      case 'x': {
        if (this.pax !== undefined) throw disagree(where, 'two pax extended headers for one entry');
        const pax = decodePax(data, where);
        for (const [k, v] of pax) {
          if (isSparseKey(k)) throw disagree(where, `a pax GNU sparse record (${shown(k)})`);
          if (PAX_SHAPING.has(k) && v === '') throw disagree(where, `an empty pax ${k} record`);
        }
        this.pax = pax;
        break;
      }
      case 'g': {
        if (this.pending) throw disagree(where, 'a global pax header between an extended header and its entry');
        for (const k of decodePax(data, where).keys()) {
          if (PAX_SHAPING.has(k) || isSparseKey(k))
            throw disagree(
              where,
              `a global pax ${shown(k)} record (applied to later entries by GNU tar and Python, ignored by Go)`,
            );
        }
        break;
      }
      case 'L':
        if (this.longName !== undefined) throw disagree(where, 'two GNU long names for one entry');
        this.longName = decodeName(cstring(data, 0, data.length), where);
        break;
      case 'K':
        if (this.longLink !== undefined) throw disagree(where, 'two GNU long link names for one entry');
        this.longLink = decodeName(cstring(data, 0, data.length), where);
        break;
    }
  }

  entry(h: RawHeader, dataOffset: number): TarEntry {
    const where = this.where;
    if (++this.count > MAX_ENTRIES) {
      throw new LadingError('LIMIT_EXCEEDED', `${where}: more than ${MAX_ENTRIES} tar entries; not an image archive`);
    }
    const pax = this.pax ?? new Map<string, string>();
    const paxPath = pax.get('path');
    const paxLink = pax.get('linkpath');
    if (paxPath !== undefined && this.longName !== undefined)
      throw disagree(where, 'a pax path and a GNU long name for one entry');
    if (paxLink !== undefined && this.longLink !== undefined)
      throw disagree(where, 'a pax linkpath and a GNU long link name for one entry');
    const name = paxPath ?? this.longName ?? h.name;
    const linkname = paxLink ?? this.longLink ?? h.linkname;
    let size = h.size;
    const paxSize = pax.get('size');
    if (paxSize !== undefined) {
      if (!/^[0-9]+$/.test(paxSize) || !Number.isSafeInteger(Number(paxSize))) {
        throw new LadingError('NOT_A_TAR', `${where}: invalid pax size for ${shown(name)}`);
      }
      size = Number(paxSize);
    }
    if (name.includes('\0') || linkname.includes('\0')) {
      throw new LadingError('UNSAFE_PATH', `${where}: entry name contains a NUL byte`);
    }
    if (name.length > MAX_NAME || linkname.length > MAX_NAME) {
      throw new LadingError(
        'LIMIT_EXCEEDED',
        `${where}: entry ${shown(name)} has a name or link target longer than ${MAX_NAME} characters`,
      );
    }
    this.namesTotal += name.length + linkname.length;
    if (this.namesTotal > MAX_NAMES_TOTAL) {
      throw new LadingError(
        'LIMIT_EXCEEDED',
        `${where}: entry names add up to more than ${MAX_NAMES_TOTAL} characters; not an image archive`,
      );
    }
    this.pax = undefined;
    this.longName = undefined;
    this.longLink = undefined;
    let type: TarEntryType;
    switch (h.typeflag) {
      case '0':
      case '7':
        if (name.endsWith('/'))
          throw disagree(
            where,
            `regular file ${shown(name)} named like a directory (a file to Go and Python, a directory to GNU tar)`,
          );
        type = 'file';
        break;
      case '\0': {
        // Old tars mark directories by a trailing slash: Go looks at the final name,
        // Python at the 100-byte name field.
        const dir = name.endsWith('/');
        if (dir !== h.rawName.endsWith('/'))
          throw disagree(where, `entry ${shown(name)} is a directory by one name and a file by the other`);
        type = dir ? 'directory' : 'file';
        if (dir && size !== 0) throw disagree(where, `old-style directory ${shown(name)} with ${size} bytes of data`);
        break;
      }
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
        // POSIX: these carry no data. Go and Python read none whatever the size says; GNU
        // tar skips `size` bytes after 2, 3, 4 and 6.
        if (size !== 0)
          throw disagree(where, `${TYPE_NAMES[h.typeflag]} entry ${shown(name)} declaring ${size} bytes of data`);
        type =
          h.typeflag === '1' ? 'hardlink' : h.typeflag === '2' ? 'symlink' : h.typeflag === '5' ? 'directory' : 'other';
        break;
      case 'S':
        throw disagree(where, `GNU sparse file ${shown(name)}`);
      default:
        throw disagree(where, `entry ${shown(name)} of unsupported type ${JSON.stringify(h.typeflag)}`);
    }
    const e: TarEntry = { name, type, size, dataOffset };
    if (type === 'symlink' || type === 'hardlink') e.linkname = linkname;
    return e;
  }
}

/** Bytes of data that follow the header in the stream (only regular files carry any). */
export function dataSizeOf(e: TarEntry): number {
  return e.type === 'file' ? e.size : 0;
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
export async function indexTarFile(
  fh: PositionalReader,
  fileSize: number,
  where: string,
  opts: { signal?: AbortSignal } = {},
): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const resolver = new HeaderResolver(where);
  const block = Buffer.alloc(BLOCK);
  let pos = 0;
  if (fileSize < BLOCK) {
    throw new LadingError(
      fileSize === 0 ? 'NOT_A_TAR' : 'TRUNCATED',
      `${where}: ${fileSize === 0 ? 'empty file, not a tar archive' : 'too short to be a tar archive'}`,
    );
  }
  while (pos < fileSize) {
    if (pos + BLOCK > fileSize)
      throw new LadingError('TRUNCATED', `${where}: archive ends inside a tar header at byte ${pos}`);
    opts.signal?.throwIfAborted();
    await readFully(fh, block, pos, where);
    const h = decodeHeader(block, where);
    if (h === undefined) {
      resolver.finish();
      // End of archive. Go's reader fails when a lone zero block is followed by a header;
      // Python's and GNU tar stop at the first: refuse what they would read differently.
      if (pos + 2 * BLOCK <= fileSize) {
        await readFully(fh, block, pos + BLOCK, where);
        if (!isZeroBlock(block)) throw endMarkerThenHeader(where);
      }
      break;
    }
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
      throw new LadingError(
        'TRUNCATED',
        `${where}: archive is truncated inside ${JSON.stringify(e.name)} (needs ${size} bytes at offset ${dataOffset})`,
      );
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
    if (bytesRead === 0)
      throw new LadingError('TRUNCATED', `${where}: archive is truncated (it ends at byte ${position + off})`);
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

  constructor(
    source: AsyncIterable<Buffer | Uint8Array | string>,
    private readonly signal?: AbortSignal,
  ) {
    const inner = source[Symbol.asyncIterator]();
    this.it = {
      next: async () => {
        const r = await inner.next();
        if (r.done) return r;
        const v = r.value;
        return {
          done: false,
          value:
            typeof v === 'string'
              ? Buffer.from(v)
              : Buffer.isBuffer(v)
                ? v
                : Buffer.from(v.buffer, v.byteOffset, v.byteLength),
        };
      },
      return: async () => {
        await inner.return?.();
        return { done: true, value: undefined };
      },
    };
  }

  private async fill(): Promise<boolean> {
    if (this.done) return false;
    // Skipping a large entry reads on without the caller looking: the signal is checked here.
    this.signal?.throwIfAborted();
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
export async function* readTarStream(
  source: AsyncIterable<Buffer | Uint8Array | string>,
  where: string,
  opts: { signal?: AbortSignal } = {},
): AsyncGenerator<StreamedEntry> {
  const r = new ByteReader(source, opts.signal);
  const resolver = new HeaderResolver(where);
  let first = true;
  try {
    while (true) {
      opts.signal?.throwIfAborted();
      const block = await r.read(BLOCK);
      if (block.length === 0) {
        if (first) throw new LadingError('NOT_A_TAR', `${where}: empty input, not a tar archive`);
        resolver.finish();
        return; // EOF at a header boundary without end blocks: accepted, as GNU tar does
      }
      if (block.length < BLOCK) {
        throw new LadingError(
          first ? 'NOT_A_TAR' : 'TRUNCATED',
          first ? `${where}: too short to be a tar archive` : `${where}: archive ends inside a tar header`,
        );
      }
      const h = decodeHeader(Buffer.from(block), where);
      first = false;
      if (h === undefined) {
        resolver.finish();
        const next = await r.read(BLOCK);
        if (next.length === BLOCK && !isZeroBlock(Buffer.from(next))) throw endMarkerThenHeader(where);
        // End of archive. Drain what follows (zero padding to the end of a tar record, a
        // compressed stream's trailer, which the decompressor then checks), but only so much:
        // an input that goes on sending after the archive must not keep lading reading.
        await r.skip(MAX_TRAILER);
        return;
      }
      const dataOffset = r.position;
      if (resolver.isMeta(h)) {
        resolver.metaLimit(h);
        const data = await r.read(h.size);
        if (data.length < h.size)
          throw new LadingError('TRUNCATED', `${where}: archive ends inside a tar header record`);
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
          if (consumed < size)
            throw new LadingError(
              'TRUNCATED',
              `${where}: archive is truncated inside ${JSON.stringify(entry.name)} (${consumed} of ${size} bytes)`,
            );
        },
      };
      yield { entry, body };
      if (consumed < size) {
        const n = await r.skip(size - consumed);
        consumed += n;
        if (consumed < size)
          throw new LadingError(
            'TRUNCATED',
            `${where}: archive is truncated inside ${JSON.stringify(entry.name)} (${consumed} of ${size} bytes)`,
          );
      }
      await skipExact(r, padded(size) - size, where, entry.name);
    }
  } finally {
    await r.close();
  }
}

function endMarkerThenHeader(where: string): LadingError {
  return disagree(
    where,
    'a lone zero block (end of archive to Python and GNU tar) followed by more headers (an error to Go)',
  );
}

async function skipExact(r: ByteReader, n: number, where: string, name: string): Promise<void> {
  if (n === 0) return;
  const got = await r.skip(n);
  // Some writers omit the padding of the very last entry; only complain if data follows.
  if (got < n && got !== 0)
    throw new LadingError('TRUNCATED', `${where}: archive is truncated after ${JSON.stringify(name)}`);
}
