import { appendFile, mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { isDigest, type Digest } from '../image/digest';

export interface CachedCompression {
  digest: Digest;
  size: number;
}

/**
 * Remembers which compressed blob an uncompressed layer became: (diff_id, algorithm,
 * level) -> (digest, size). A re-push then asks the registry for that digest first and
 * compresses nothing it already has. An append-only JSON-lines file in the XDG cache
 * dir; a corrupt line is ignored, never trusted (the registry is asked anyway).
 */
export class DigestCache {
  private readonly map = new Map<string, CachedCompression>();
  private loaded = false;

  /** `file` undefined: kept in memory only (a subclass may persist it elsewhere). */
  constructor(readonly file: string | undefined) {}

  static defaultFile(env: NodeJS.ProcessEnv = process.env): string {
    const base =
      env.XDG_CACHE_HOME && env.XDG_CACHE_HOME.startsWith('/') ? env.XDG_CACHE_HOME : join(homedir(), '.cache');
    return join(base, 'lading', 'compressed-digests.jsonl');
  }

  private key(diffId: Digest, algorithm: string, level: number | undefined): string {
    return `${diffId}|${algorithm}|${level ?? 'default'}`;
  }

  async load(): Promise<void> {
    if (this.loaded) return;
    this.loaded = true;
    if (this.file === undefined) return;
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch {
      return;
    }
    this.ingest(text);
  }

  /** Adds the valid lines of a JSON-lines text; returns how many there were. */
  protected ingest(text: string): number {
    let n = 0;
    for (const line of text.split('\n')) {
      try {
        const r = JSON.parse(line) as { u?: unknown; a?: unknown; l?: unknown; d?: unknown; s?: unknown };
        if (
          isDigest(r.u) &&
          typeof r.a === 'string' &&
          isDigest(r.d) &&
          typeof r.s === 'number' &&
          Number.isSafeInteger(r.s) &&
          r.s >= 0
        ) {
          this.map.set(this.key(r.u, r.a, typeof r.l === 'number' ? r.l : undefined), { digest: r.d, size: r.s });
          n++;
        }
      } catch {
        // a torn or foreign line: skip it
      }
    }
    return n;
  }

  private static line(k: string, v: CachedCompression): string {
    const [u, a, l] = k.split('|') as [string, string, string];
    return JSON.stringify({ u, a, l: l === 'default' ? null : Number(l), d: v.digest, s: v.size });
  }

  /** Every entry, as the JSON-lines text the file holds. */
  serialize(): string {
    return [...this.map].map(([k, v]) => `${DigestCache.line(k, v)}\n`).join('');
  }

  get(diffId: Digest, algorithm: string, level: number | undefined): CachedCompression | undefined {
    return this.map.get(this.key(diffId, algorithm, level));
  }

  async put(diffId: Digest, algorithm: string, level: number | undefined, value: CachedCompression): Promise<void> {
    const k = this.key(diffId, algorithm, level);
    const prev = this.map.get(k);
    if (prev && prev.digest === value.digest) return;
    this.map.set(k, value);
    await this.persist(DigestCache.line(k, value));
  }

  /** Records one new entry; a cache that cannot be written only costs speed on the next push. */
  protected async persist(line: string): Promise<void> {
    if (this.file === undefined) return;
    try {
      await mkdir(join(this.file, '..'), { recursive: true, mode: 0o700 });
      await appendFile(this.file, `${line}\n`, { mode: 0o600 });
    } catch {
      // speed only
    }
  }
}
