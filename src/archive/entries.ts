import { LadingError } from '../errors';
import type { TarEntry, TarEntryType } from './tar';

export interface Entry {
  /** Normalised path inside the archive: no leading `./` or `/`, no `..`, no empty parts. */
  path: string;
  type: TarEntryType;
  size: number;
  linkname?: string;
  /** Offset of the data in the uncompressed tar (tar stores only). */
  dataOffset: number;
}

/** Symlink hops allowed when resolving one path, as Linux's MAXSYMLINKS. */
const MAX_HOPS = 40;
/**
 * Longest path (and link target) resolved, as Linux's PATH_MAX. Resolution looks up every
 * prefix of the path, so without a bound a hostile link target or manifest path of a few
 * hundred KiB costs minutes of CPU (quadratic in its length).
 */
const MAX_PATH = 4096;

function shown(p: string): string {
  return JSON.stringify(p.length > 200 ? `${p.slice(0, 200)}...` : p);
}

/**
 * Normalises an entry name, refusing names that would escape the archive when extracted
 * (`..`, absolute paths). Returns '' for the archive root itself (`./`).
 */
export function normalizeEntryName(raw: string, where: string): string {
  if (raw.startsWith('/')) {
    throw new LadingError('UNSAFE_PATH', `${where}: entry ${JSON.stringify(raw)} has an absolute path`);
  }
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) {
    throw new LadingError('UNSAFE_PATH', `${where}: entry ${JSON.stringify(raw)} contains ".." and would escape the archive`);
  }
  return parts.join('/');
}

/**
 * The entries of an archive (tar or directory), with symlink and hard-link resolution that
 * never leaves the archive.
 */
export class EntryTable {
  private readonly map = new Map<string, Entry>();
  /** Earlier copies of paths that appeared more than once with the same size: their contents must agree. */
  readonly duplicates = new Map<string, Entry[]>();
  private readonly resolving = new Map<string, string>();

  constructor(readonly where: string) {}

  add(e: TarEntry): void {
    const path = normalizeEntryName(e.name, this.where);
    if (path === '') return;
    const entry: Entry = { path, type: e.type, size: e.size, dataOffset: e.dataOffset };
    if (e.linkname !== undefined) entry.linkname = e.linkname;
    // A new entry (a directory symlink above earlier entries, say) can change how paths
    // resolve; the streaming store looks paths up between adds, so forget earlier answers.
    this.resolving.clear();
    const prev = this.map.get(path);
    if (prev !== undefined) {
      const same = prev.type === entry.type && prev.size === entry.size && prev.linkname === entry.linkname;
      if (!same && !(prev.type === 'directory' && entry.type === 'directory')) {
        throw new LadingError('DUPLICATE_ENTRY', `${this.where}: entry ${JSON.stringify(path)} appears twice with different content`);
      }
      if (entry.type === 'file') this.duplicates.set(path, [...(this.duplicates.get(path) ?? []), prev]);
    }
    this.map.set(path, entry);
  }

  get entries(): IterableIterator<Entry> {
    return this.map.values();
  }

  has(path: string): boolean {
    return this.lookup(path) !== undefined;
  }

  /** The regular-file entry a path leads to, following links; undefined when absent. */
  lookup(path: string): Entry | undefined {
    const real = this.resolvePath(path);
    if (real === undefined) return undefined;
    const e = this.map.get(real);
    return e !== undefined && e.type === 'file' ? e : undefined;
  }

  /** Like lookup, but a missing entry is a BLOB_MISSING error naming what wanted it. */
  require(path: string, what: string): Entry {
    const e = this.lookup(path);
    if (e === undefined) {
      throw new LadingError('BLOB_MISSING', `${this.where}: ${what} refers to ${JSON.stringify(path)}, which is not in the archive`);
    }
    return e;
  }

  /**
   * Resolves every symlink along a path (in directories too) and hard links at the end.
   * Escaping the archive or looping is an error; a dangling link resolves to undefined.
   */
  resolvePath(path: string): string | undefined {
    const cached = this.resolving.get(path);
    if (cached !== undefined) return cached;
    let hops = 0;
    let pending = normalizeEntryName(path, this.where).split('/').filter((p) => p !== '');
    const done: string[] = [];
    while (pending.length > 0) {
      const part = pending.shift()!;
      if (part === '..') {
        if (done.length === 0) {
          throw new LadingError('SYMLINK_ESCAPE', `${this.where}: a link on the way to ${JSON.stringify(path)} points outside the archive`);
        }
        done.pop();
        continue;
      }
      if (part === '.') continue;
      done.push(part);
      const key = done.join('/');
      if (key.length > MAX_PATH) {
        throw new LadingError('LIMIT_EXCEEDED', `${this.where}: resolving ${shown(path)} leads to a path longer than ${MAX_PATH} characters`);
      }
      const e = this.map.get(key);
      if (e === undefined) {
        if (pending.length === 0) break;
        continue;
      }
      if (e.type === 'symlink' || (e.type === 'hardlink' && pending.length === 0)) {
        if (++hops > MAX_HOPS) throw new LadingError('SYMLINK_LOOP', `${this.where}: links starting at ${JSON.stringify(path)} loop`);
        const target = e.linkname ?? '';
        if (target.length > MAX_PATH) {
          throw new LadingError('LIMIT_EXCEEDED', `${this.where}: link ${shown(e.path)} has a target longer than ${MAX_PATH} characters`);
        }
        if (target.startsWith('/')) {
          throw new LadingError('SYMLINK_ESCAPE', `${this.where}: link ${JSON.stringify(e.path)} -> ${JSON.stringify(target)} points outside the archive`);
        }
        done.pop();
        // Symlinks are relative to their directory; hard links to the archive root.
        const base = e.type === 'symlink' ? done : [];
        pending = [...target.split('/').filter((p) => p !== ''), ...pending];
        if (e.type === 'hardlink') done.length = 0;
        else done.splice(0, done.length, ...base);
      }
    }
    const real = done.join('/');
    const e = this.map.get(real);
    const result = e === undefined ? undefined : real;
    if (result !== undefined) this.resolving.set(path, result);
    return result;
  }
}
