import { createReadStream } from 'node:fs';
import { lstat, mkdtemp, open, opendir, readlink, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { Readable } from 'node:stream';
import { LadingError } from '../errors';
import type { Compression } from '../image/media-types';
import { MAX_JSON_BYTES } from '../image/json';
import type { BlobFacts } from './analyze';
import { EntryTable, type Entry } from './entries';
import type { RandomAccessSource } from './source';
import { indexTarFile, MAX_ENTRIES, readTarStream, shown } from './tar';

/**
 * Where an archive's entries live and how to read them. Three kinds: an uncompressed tar
 * file or other random-access source (indexed, random access), a directory (OCI layout), and a one-pass stream
 * (compressed archive or stdin) whose small entries are held and large ones were
 * analysed as they streamed by.
 */
export interface ArchiveStore {
  readonly kind: 'tar' | 'directory' | 'stream';
  readonly where: string;
  readonly table: EntryTable;
  readonly compression: Compression;
  readSmall(entry: Entry, limit?: number): Promise<Buffer>;
  /** The first bytes of an entry (magic-byte sniffing), without reading the rest. */
  head(entry: Entry, n: number): Promise<Buffer>;
  open(entry: Entry): Readable;
  /** Facts of a large entry analysed during a one-pass read. */
  streamed(entry: Entry): BlobFacts | undefined;
  close(): Promise<void>;
}

function tooLarge(store: ArchiveStore, e: Entry, limit: number): LadingError {
  return new LadingError(
    'JSON_TOO_LARGE',
    `${store.where}: ${shown(e.path)} is ${e.size} bytes, over the ${limit}-byte limit for a JSON document`,
  );
}

async function collect(stream: AsyncIterable<Buffer>, size: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(size);
  let off = 0;
  for await (const c of stream) {
    if (off + c.length > size) throw new LadingError('SIZE_MISMATCH', `entry is longer than its recorded size ${size}`);
    c.copy(out, off);
    off += c.length;
  }
  if (off !== size) throw new LadingError('TRUNCATED', `entry has ${off} of its ${size} bytes`);
  return out;
}

export class TarFileStore implements ArchiveStore {
  readonly kind = 'tar' as const;
  readonly compression = 'none' as const;

  private constructor(
    readonly where: string,
    readonly table: EntryTable,
    private readonly fh: RandomAccessSource,
  ) {}

  /**
   * Indexes the tar's headers and compares the entries it holds twice; the store owns
   * `source` once this returns (closed by `close`), the caller until then.
   */
  static async open(source: RandomAccessSource, opts: { signal?: AbortSignal } = {}): Promise<TarFileStore> {
    const table = new EntryTable(source.where);
    table.signal = opts.signal;
    for (const e of await indexTarFile(source, source.size, source.where, opts)) table.add(e);
    const store = new TarFileStore(source.where, table, source);
    await store.compareDuplicates(opts.signal);
    return store;
  }

  /**
   * A path stored twice (same type and size) must hold the same bytes: skopeo reads the
   * first copy, docker load keeps the last, lading the last. Compared here, for every file,
   * documents and blobs alike, before anything is read from the archive.
   */
  private async compareDuplicates(signal: AbortSignal | undefined): Promise<void> {
    for (const [path, earlier] of this.table.duplicates) {
      const last = this.table.get(path)!;
      for (const e of earlier) {
        signal?.throwIfAborted();
        if (!(await this.sameBytes(e, last))) {
          throw new LadingError(
            'DUPLICATE_ENTRY',
            `${this.where}: entry ${shown(path)} appears twice with different content`,
          );
        }
      }
    }
  }

  private async sameBytes(a: Entry, b: Entry): Promise<boolean> {
    const chunk = Math.min(a.size, 1024 * 1024);
    const x = Buffer.alloc(chunk);
    const y = Buffer.alloc(chunk);
    for (let off = 0; off < a.size; off += chunk) {
      const n = Math.min(chunk, a.size - off);
      await this.readAt(x, n, a.dataOffset + off, a.path);
      await this.readAt(y, n, b.dataOffset + off, b.path);
      if (!x.subarray(0, n).equals(y.subarray(0, n))) return false;
    }
    return true;
  }

  private async readAt(buf: Buffer, n: number, position: number, path: string): Promise<void> {
    let off = 0;
    while (off < n) {
      const { bytesRead } = await this.fh.read(buf, off, n - off, position + off);
      if (bytesRead === 0) throw new LadingError('TRUNCATED', `${this.where}: ${shown(path)} is truncated`);
      off += bytesRead;
    }
  }

  async readSmall(e: Entry, limit = MAX_JSON_BYTES): Promise<Buffer> {
    if (e.size > limit) throw tooLarge(this, e, limit);
    const buf = Buffer.alloc(e.size);
    let off = 0;
    while (off < e.size) {
      const { bytesRead } = await this.fh.read(buf, off, e.size - off, e.dataOffset + off);
      if (bytesRead === 0) throw new LadingError('TRUNCATED', `${this.where}: ${shown(e.path)} is truncated`);
      off += bytesRead;
    }
    return buf;
  }

  async head(e: Entry, n: number): Promise<Buffer> {
    const buf = Buffer.alloc(Math.min(n, e.size));
    const { bytesRead } = await this.fh.read(buf, 0, buf.length, e.dataOffset);
    return buf.subarray(0, bytesRead);
  }

  open(e: Entry): Readable {
    if (e.size === 0) return Readable.from([]);
    // Positional reads on the shared handle: several blobs can stream in parallel. Pooled: what
    // reads a blob either ends the chunks' journey or passes them on (see util/buffer-pool).
    return this.fh.stream(e.dataOffset, e.dataOffset + e.size - 1, { pooled: true });
  }

  streamed(): undefined {
    return undefined;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

export class DirectoryStore implements ArchiveStore {
  readonly kind = 'directory' as const;
  readonly compression = 'none' as const;

  private constructor(
    readonly where: string,
    readonly table: EntryTable,
  ) {}

  /** Lists the directory; symlinks are recorded, not followed, so escapes are caught. */
  static async open(root: string, signal?: AbortSignal): Promise<DirectoryStore> {
    const table = new EntryTable(root);
    table.signal = signal;
    let count = 0;
    const walk = async (dir: string): Promise<void> => {
      for await (const d of await opendir(dir)) {
        signal?.throwIfAborted();
        if (++count > MAX_ENTRIES)
          throw new LadingError('LIMIT_EXCEEDED', `${root}: more than ${MAX_ENTRIES} files; not an image layout`);
        const full = join(dir, d.name);
        const rel = relative(root, full).split(sep).join('/');
        if (d.isDirectory()) {
          table.add({ name: rel, type: 'directory', size: 0, dataOffset: 0 });
          await walk(full);
        } else if (d.isSymbolicLink()) {
          table.add({ name: rel, type: 'symlink', size: 0, dataOffset: 0, linkname: await readlink(full) });
        } else if (d.isFile()) {
          const st = await lstat(full);
          table.add({ name: rel, type: 'file', size: st.size, dataOffset: 0 });
        }
      }
    };
    await walk(root);
    return new DirectoryStore(root, table);
  }

  async readSmall(e: Entry, limit = MAX_JSON_BYTES): Promise<Buffer> {
    if (e.size > limit) throw tooLarge(this, e, limit);
    const fh = await open(join(this.where, e.path), 'r');
    try {
      return await collect(fh.createReadStream({ autoClose: false }) as AsyncIterable<Buffer>, e.size);
    } catch (err) {
      throw err instanceof LadingError ? new LadingError(err.code, `${this.where}/${e.path}: ${err.message}`) : err;
    } finally {
      await fh.close();
    }
  }

  async head(e: Entry, n: number): Promise<Buffer> {
    const fh = await open(join(this.where, e.path), 'r');
    try {
      const buf = Buffer.alloc(Math.min(n, e.size));
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }

  open(e: Entry): Readable {
    return createReadStream(join(this.where, e.path), { highWaterMark: 1024 * 1024 });
  }

  streamed(): undefined {
    return undefined;
  }

  async close(): Promise<void> {}
}

/** Held small entries stay in memory up to this; beyond it they go to a temp file. */
const HOLD_MEMORY = 64 * 1024 * 1024;

export type StreamedEntryHandler = (entry: Entry, body: AsyncIterable<Buffer>) => Promise<BlobFacts>;

export interface StreamStoreOptions {
  where: string;
  compression: Compression;
  /** Entries larger than this are handed to `onLarge` as they stream; smaller ones are held. */
  holdLimit?: number;
  onLarge: StreamedEntryHandler;
  logger?: (line: string) => void;
  signal?: AbortSignal;
}

/**
 * One pass over a tar stream. Entries that may be JSON (<= 4 MiB) are held, since
 * manifest.json may come last and explain them; large entries go to `onLarge` in archive
 * order (hashing, or uploading while reading). Held bytes beyond 64 MiB spill to a temp
 * file that `close` always deletes.
 */
export class StreamStore implements ArchiveStore {
  readonly kind = 'stream' as const;
  readonly table: EntryTable;
  readonly where: string;
  readonly compression: Compression;
  private readonly held = new Map<string, Buffer | { offset: number; size: number }>();
  private readonly facts = new Map<string, BlobFacts>();
  private memory = 0;
  private spool: { dir: string; fh: FileHandle; size: number } | undefined;
  private readonly logger: ((line: string) => void) | undefined;

  private constructor(opts: StreamStoreOptions) {
    this.where = opts.where;
    this.compression = opts.compression;
    this.table = new EntryTable(opts.where);
    this.logger = opts.logger;
  }

  static async read(source: AsyncIterable<Buffer>, opts: StreamStoreOptions): Promise<StreamStore> {
    const store = new StreamStore(opts);
    const limit = opts.holdLimit ?? MAX_JSON_BYTES;
    try {
      store.table.signal = opts.signal;
      for await (const { entry, body } of readTarStream(source, opts.where, { signal: opts.signal })) {
        // Held or analysed under its own name: links are resolved when paths are looked up,
        // once the whole table is known (resolving each entry as it streams by would cost
        // a resolution per entry, and see only the links before it).
        const e = store.table.add(entry);
        if (e === undefined || e.type !== 'file') continue;
        if (entry.size <= limit) {
          await store.hold(e.path, await collect(body, entry.size));
        } else {
          const facts = await opts.onLarge(e, body);
          const prev = store.facts.get(e.path);
          if (prev !== undefined && prev.digest !== facts.digest) {
            throw new LadingError(
              'DUPLICATE_ENTRY',
              `${opts.where}: entry ${shown(e.path)} appears twice with different content`,
            );
          }
          store.facts.set(e.path, facts);
        }
      }
    } catch (e) {
      await store.close();
      throw e;
    }
    return store;
  }

  private async hold(path: string, data: Buffer): Promise<void> {
    const prev = this.held.get(path);
    if (prev !== undefined) {
      const old = Buffer.isBuffer(prev) ? prev : await this.readSpool(prev);
      if (!old.equals(data))
        throw new LadingError(
          'DUPLICATE_ENTRY',
          `${this.where}: entry ${shown(path)} appears twice with different content`,
        );
      return;
    }
    if (this.memory + data.length <= HOLD_MEMORY) {
      this.memory += data.length;
      this.held.set(path, data);
      return;
    }
    if (this.spool === undefined) {
      const dir = await mkdtemp(join(tmpdir(), 'lading-spool-'));
      const fh = await open(join(dir, 'held'), 'w+', 0o600);
      this.spool = { dir, fh, size: 0 };
      this.logger?.(
        `holding small entries of ${this.where} beyond ${HOLD_MEMORY} bytes in temp file ${join(dir, 'held')} (deleted when done)`,
      );
    }
    const offset = this.spool.size;
    await this.spool.fh.write(data, 0, data.length, offset);
    this.spool.size += data.length;
    this.held.set(path, { offset, size: data.length });
  }

  private async readSpool(loc: { offset: number; size: number }): Promise<Buffer> {
    const buf = Buffer.alloc(loc.size);
    await this.spool!.fh.read(buf, 0, loc.size, loc.offset);
    return buf;
  }

  async readSmall(e: Entry, limit = MAX_JSON_BYTES): Promise<Buffer> {
    if (e.size > limit) throw tooLarge(this, e, limit);
    const h = this.held.get(e.path);
    if (h === undefined) throw new LadingError('INTERNAL', `${this.where}: ${shown(e.path)} was not held`);
    return Buffer.isBuffer(h) ? h : this.readSpool(h);
  }

  async head(e: Entry, n: number): Promise<Buffer> {
    const h = this.held.get(e.path);
    if (h === undefined)
      throw new LadingError('INTERNAL', `${this.where}: ${shown(e.path)} was streamed once and cannot be read again`);
    return (Buffer.isBuffer(h) ? h : await this.readSpool(h)).subarray(0, n);
  }

  open(e: Entry): Readable {
    const h = this.held.get(e.path);
    if (h === undefined) {
      throw new LadingError('INTERNAL', `${this.where}: ${shown(e.path)} was streamed once and cannot be read again`);
    }
    if (Buffer.isBuffer(h)) return Readable.from([h]);
    const spool = this.spool!;
    return Readable.from(
      (async function* () {
        const buf = Buffer.alloc(h.size);
        await spool.fh.read(buf, 0, h.size, h.offset);
        yield buf;
      })(),
    );
  }

  streamed(e: Entry): BlobFacts | undefined {
    return this.facts.get(e.path);
  }

  async close(): Promise<void> {
    const s = this.spool;
    this.spool = undefined;
    if (s !== undefined) {
      await s.fh.close().catch(() => undefined);
      await rm(s.dir, { recursive: true, force: true });
      this.logger?.(`removed temp dir ${s.dir}`);
    }
  }
}
