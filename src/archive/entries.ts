import { randomInt } from 'node:crypto';
import { LadingError } from '../errors';
import { shown, type TarEntry, type TarEntryType } from './tar';

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
 * Longest path (and link target) resolved, as Linux's PATH_MAX: what a link may make of a
 * path is bounded, whatever the links.
 */
const MAX_PATH = 4096;

const NOT_NORMAL = /^\/|\/$|\/\/|(?:^|\/)\.\.?(?:\/|$)/;

/**
 * Normalises an entry name, refusing names that would escape the archive when extracted
 * (`..`, absolute paths). Returns '' for the archive root itself (`./`).
 */
export function normalizeEntryName(raw: string, where: string): string {
  // Most names are already normal: no empty, "." or ".." parts, no slash at either end.
  if (raw !== '' && !NOT_NORMAL.test(raw)) return raw;
  if (raw.startsWith('/')) {
    throw new LadingError('UNSAFE_PATH', `${where}: entry ${shown(raw)} has an absolute path`);
  }
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) {
    throw new LadingError('UNSAFE_PATH', `${where}: entry ${shown(raw)} contains ".." and would escape the archive`);
  }
  return parts.join('/');
}

/**
 * A directory reached while resolving a path: an immutable chain up to the root (undefined),
 * so that a resolved link can be remembered and shared, and ".." is a step up. Each node
 * carries two hashes of its path, extended one component at a time, so that asking "is this
 * prefix a link?" costs the length of the component, not of the path: resolution is linear in
 * what it walks, however deep the path.
 */
interface PathNode {
  readonly parent: PathNode | undefined;
  readonly name: string;
  /** Characters of the path (components and the slashes between). */
  readonly length: number;
  readonly key: number;
  readonly h1: number;
  readonly h2: number;
  path?: string;
}

// Random per process: an archive cannot be made of prefixes that collide with its links.
const M1 = randomInt(1 << 20, 1 << 30) * 2 + 1;
const M2 = randomInt(1 << 20, 1 << 30) * 2 + 1;
const SEED1 = randomInt(0, 2 ** 31);
const SEED2 = randomInt(0, 2 ** 31);

function extend(h1: number, h2: number, name: string): [number, number] {
  h1 = (Math.imul(h1, M1) + 0x2f) >>> 0;
  h2 = (Math.imul(h2, M2) + 0x2f) >>> 0;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    h1 = (Math.imul(h1, M1) + c) >>> 0;
    h2 = (Math.imul(h2, M2) + c) >>> 0;
  }
  return [h1, h2];
}

function keyOf(h1: number, h2: number): number {
  return h1 * 0x200000 + (h2 & 0x1fffff);
}

function keyOfPath(path: string): number {
  let h1 = SEED1;
  let h2 = SEED2;
  for (const part of path.split('/')) [h1, h2] = extend(h1, h2, part);
  return keyOf(h1, h2);
}

function pathOf(n: PathNode | undefined): string {
  if (n === undefined) return '';
  if (n.path === undefined) {
    const parts: string[] = [];
    for (let p: PathNode | undefined = n; p !== undefined; p = p.parent) parts.push(p.name);
    n.path = parts.reverse().join('/');
  }
  return n.path;
}

/** Lexically `dir/target`, normalised; undefined when it climbs above the root. */
function lexicalJoin(dir: string, target: string): string | undefined {
  const out = dir === '' ? [] : dir.split('/');
  for (const p of target.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') {
      if (out.length === 0) return undefined;
      out.pop();
    } else out.push(p);
  }
  return out.join('/');
}

interface Walk {
  /** The path asked for, for messages. */
  origin: string;
  hops: number;
  steps: number;
}

/**
 * The entries of an archive (tar or directory), with symlink and hard-link resolution that
 * never leaves the archive.
 *
 * Resolution is bounded and linear: each step costs the length of one name; a link's
 * resolution is remembered (until a link is added), so a chain or tree of links is walked
 * once, however many paths go through it; at most 40 hops per lookup (as Linux) and paths
 * of at most 4,096 characters. Long work checks `signal`.
 */
export class EntryTable {
  private readonly map = new Map<string, Entry>();
  /** Earlier copies of paths that appeared more than once with the same size: their contents must agree. */
  readonly duplicates = new Map<string, Entry[]>();
  /** Links by the key of their path (candidates: the path is compared on a hit). */
  private readonly symlinks = new Map<number, Entry[]>();
  private readonly hardlinks = new Map<number, Entry[]>();
  /** What a lookup resolved to, and where each link leads (with the hops it took). */
  private readonly resolved = new Map<string, string>();
  private readonly linkMemo = new Map<Entry, { node: PathNode | undefined; hops: number }>();
  private readonly inProgress = new Set<Entry>();
  /** Checked during long resolutions. */
  signal: AbortSignal | undefined;

  constructor(readonly where: string) {}

  /** Adds an entry; returns what the table holds for it (undefined for the root). */
  add(e: TarEntry): Entry | undefined {
    const path = normalizeEntryName(e.name, this.where);
    if (path === '') return undefined;
    const entry: Entry = { path, type: e.type, size: e.size, dataOffset: e.dataOffset };
    if (e.linkname !== undefined) entry.linkname = e.linkname;
    const prev = this.map.get(path);
    if (prev !== undefined) {
      const same = prev.type === entry.type && prev.size === entry.size && prev.linkname === entry.linkname;
      if (!same && !(prev.type === 'directory' && entry.type === 'directory')) {
        throw new LadingError(
          'DUPLICATE_ENTRY',
          `${this.where}: entry ${shown(path)} appears twice with different content`,
        );
      }
      if (entry.type === 'file') this.duplicates.set(path, [...(this.duplicates.get(path) ?? []), prev]);
    }
    this.map.set(path, entry);
    if (entry.type === 'symlink' || entry.type === 'hardlink') {
      // A new link can change how paths resolve (a directory symlink above earlier entries);
      // the streaming store looks paths up between adds: forget earlier answers. Other
      // entries cannot change where a walk goes.
      const byKey = entry.type === 'symlink' ? this.symlinks : this.hardlinks;
      const k = keyOfPath(path);
      const list = byKey.get(k);
      if (list === undefined) byKey.set(k, [entry]);
      else list.push(entry);
      this.resolved.clear();
      this.linkMemo.clear();
    }
    return entry;
  }

  get entries(): IterableIterator<Entry> {
    return this.map.values();
  }

  /** The entry stored at exactly this normalised path (no link resolution). */
  get(path: string): Entry | undefined {
    return this.map.get(path);
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
      throw new LadingError(
        'BLOB_MISSING',
        `${this.where}: ${what} refers to ${shown(path)}, which is not in the archive`,
      );
    }
    return e;
  }

  /**
   * Resolves every symlink along a path (in directories too) and hard links at the end.
   * Escaping the archive or looping is an error; a dangling link resolves to undefined.
   */
  resolvePath(path: string): string | undefined {
    const cached = this.resolved.get(path);
    if (cached !== undefined) return cached;
    this.signal?.throwIfAborted();
    const parts = normalizeEntryName(path, this.where).split('/');
    const ctx: Walk = { origin: path, hops: 0, steps: 0 };
    const real = pathOf(this.walk(undefined, parts, ctx));
    const result = this.map.has(real) ? real : undefined;
    if (result !== undefined) this.resolved.set(path, result);
    return result;
  }

  private child(parent: PathNode | undefined, name: string, ctx: Walk): PathNode {
    const length = (parent === undefined ? 0 : parent.length + 1) + name.length;
    if (length > MAX_PATH) {
      throw new LadingError(
        'LIMIT_EXCEEDED',
        `${this.where}: resolving ${shown(ctx.origin)} leads to a path longer than ${MAX_PATH} characters`,
      );
    }
    const [h1, h2] = extend(parent?.h1 ?? SEED1, parent?.h2 ?? SEED2, name);
    return { parent, name, length, h1, h2, key: keyOf(h1, h2) };
  }

  private linkAt(n: PathNode, atEnd: boolean): Entry | undefined {
    const sym = this.symlinks.get(n.key);
    if (sym !== undefined) {
      const p = pathOf(n);
      const e = sym.find((l) => l.path === p);
      if (e !== undefined) return e;
    }
    // A hard link is a file: it only redirects when it is what the path names.
    if (atEnd) {
      const hard = this.hardlinks.get(n.key);
      if (hard !== undefined) {
        const p = pathOf(n);
        return hard.find((l) => l.path === p);
      }
    }
    return undefined;
  }

  /** Walks `parts` from `start` (undefined: the root); returns where it ends. */
  private walk(start: PathNode | undefined, parts: string[], ctx: Walk): PathNode | undefined {
    let cur = start;
    const pending = parts.slice().reverse();
    while (pending.length > 0) {
      if ((++ctx.steps & 0xfff) === 0) this.signal?.throwIfAborted();
      const part = pending.pop()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (cur === undefined) {
          throw new LadingError(
            'SYMLINK_ESCAPE',
            `${this.where}: a link on the way to ${shown(ctx.origin)} points outside the archive`,
          );
        }
        cur = cur.parent;
        continue;
      }
      cur = this.child(cur, part, ctx);
      const link = this.linkAt(cur, pending.length === 0);
      if (link !== undefined) cur = this.follow(link, cur.parent, ctx);
    }
    return cur;
  }

  /** Where a link leads: remembered, with the hops it took, so each link is walked once. */
  private follow(link: Entry, dir: PathNode | undefined, ctx: Walk): PathNode | undefined {
    const memo = this.linkMemo.get(link);
    if (memo !== undefined) {
      ctx.hops += memo.hops;
      if (ctx.hops > MAX_HOPS) throw this.loop(ctx);
      return memo.node;
    }
    if (this.inProgress.has(link) || ++ctx.hops > MAX_HOPS) throw this.loop(ctx);
    const before = ctx.hops - 1;
    const target = link.linkname ?? '';
    if (target.length > MAX_PATH) {
      throw new LadingError(
        'LIMIT_EXCEEDED',
        `${this.where}: link ${shown(link.path)} has a target longer than ${MAX_PATH} characters`,
      );
    }
    if (target.startsWith('/')) {
      throw new LadingError(
        'SYMLINK_ESCAPE',
        `${this.where}: link ${shown(link.path)} -> ${shown(target)} points outside the archive`,
      );
    }
    this.inProgress.add(link);
    try {
      // Symlinks are relative to their directory; hard links to the archive root (as tar,
      // docker load and Go's extraction read them).
      const node = this.walk(link.type === 'symlink' ? dir : undefined, target.split('/'), ctx);
      if (link.type === 'hardlink' && dir !== undefined) {
        // crane (go-containerregistry's tarball) reads a hard link from its own directory:
        // if that names another entry, the two would push different blobs.
        const alt = lexicalJoin(pathOf(dir), target);
        const real = pathOf(node);
        if (alt !== undefined && alt !== real && this.map.has(alt)) {
          throw new LadingError(
            'NOT_A_TAR',
            `${this.where}: hard link ${shown(link.path)} -> ${shown(target)} names ${shown(real)} from the archive root but ${shown(alt)} from its own directory (as crane reads it); refused as ambiguous`,
          );
        }
      }
      this.linkMemo.set(link, { node, hops: ctx.hops - before });
      return node;
    } finally {
      this.inProgress.delete(link);
    }
  }

  private loop(ctx: Walk): LadingError {
    return new LadingError('SYMLINK_LOOP', `${this.where}: links starting at ${shown(ctx.origin)} loop`);
  }
}
