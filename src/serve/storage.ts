/**
 * The emulator's storage: one OCI image layout per repository under the data directory
 * (`<data>/<repository path>/` holding `oci-layout`, `index.json`, `blobs/<alg>/<hex>`),
 * so `skopeo inspect oci:<data>/<repo>:<tag>` reads what was pushed. Tags are
 * `org.opencontainers.image.ref.name` annotations in index.json (one entry per tag);
 * untagged images keep an entry without it. Repository settings sit beside index.json in
 * `.repository.json`. Every file is written to a temporary name and renamed into place.
 *
 * Blobs are per repository, as in ECR (a layer pushed to one repository is not available
 * in another). Images (manifests that were put) are the entries of index.json; a manifest
 * blob alone is not an image.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { asLadingError, LadingError } from '../errors';
import { parseDescriptor, type Descriptor } from '../image/descriptor';
import { digestAlgorithm, digestHex, type Digest } from '../image/digest';
import { parseManifestDocument } from '../image/manifest';
import { isForeignLayerMediaType, MediaType } from '../image/media-types';
import { repositoryNameProblem } from './names';

export const REF_NAME = 'org.opencontainers.image.ref.name';
export const SETTINGS_FILE = '.repository.json';
/** Upload temp files and other scratch files: a dot name can never be a repository path. */
export const SCRATCH_DIR = '.uploads';

export type TagMutability = 'MUTABLE' | 'IMMUTABLE' | 'MUTABLE_WITH_EXCLUSION' | 'IMMUTABLE_WITH_EXCLUSION';

export interface ExclusionFilter {
  filterType: 'WILDCARD';
  filter: string;
}

export interface RepositorySettings {
  imageTagMutability: TagMutability;
  imageTagMutabilityExclusionFilters?: ExclusionFilter[];
  /** ISO date. */
  createdAt: string;
}

export interface ImageRecord {
  digest: Digest;
  mediaType: string;
  size: number;
  pushedAt: Date;
  /** Annotations of the index.json entry, without the ref name (kept when other tools wrote them). */
  annotations?: Record<string, string>;
}

/** What the emulator needs to know about a stored manifest, parsed once (manifests never change). */
export interface ManifestInfo {
  kind: 'manifest' | 'index';
  mediaType: string;
  config?: Descriptor;
  layers: Descriptor[];
  children: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** Runs async critical sections one after the other. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

export class Repository {
  readonly images = new Map<Digest, ImageRecord>();
  /** tag -> digest, in the order tags were set. */
  readonly tags = new Map<string, Digest>();
  readonly lock = new Mutex();

  constructor(
    readonly name: string,
    readonly dir: string,
    public settings: RepositorySettings,
  ) {}

  blobPath(d: Digest): string {
    return join(this.dir, 'blobs', digestAlgorithm(d), digestHex(d));
  }

  tagsOf(d: Digest): string[] {
    const out: string[] = [];
    for (const [t, v] of this.tags) if (v === d) out.push(t);
    return out;
  }

  /** index.json as the OCI image layout spec has it: one entry per tag, one per untagged image. */
  indexJson(): Buffer {
    const manifests: Record<string, unknown>[] = [];
    const entry = (img: ImageRecord, tag?: string): Record<string, unknown> => {
      const annotations = { ...img.annotations, ...(tag !== undefined ? { [REF_NAME]: tag } : {}) };
      return {
        mediaType: img.mediaType,
        digest: img.digest,
        size: img.size,
        ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
      };
    };
    for (const img of this.images.values()) {
      const tags = this.tagsOf(img.digest);
      if (tags.length === 0) manifests.push(entry(img));
      for (const t of tags) manifests.push(entry(img, t));
    }
    return Buffer.from(
      `${JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }, null, 2)}\n`,
      'utf8',
    );
  }
}

function tmpName(): string {
  return `.tmp-${process.pid}-${randomBytes(8).toString('hex')}`;
}

/** Writes a file under a temporary name in the same directory, then renames it into place. */
export async function writeFileAtomic(path: string, data: Buffer | string, dir: string): Promise<void> {
  const tmp = join(dir, tmpName());
  try {
    await fsp.writeFile(tmp, data);
    await fsp.rename(tmp, path);
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}

const LOCK_FILE = '.lock';
/** Data directories open in this process (a pid check cannot tell them apart). */
const openRoots = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class Storage {
  readonly repos = new Map<string, Repository>();
  private readonly infoCache = new Map<string, ManifestInfo>();

  private constructor(
    readonly root: string,
    private readonly log: (line: string) => void,
  ) {}

  get scratchDir(): string {
    return join(this.root, SCRATCH_DIR);
  }

  /**
   * Opens (creating if needed) a data directory and loads the repositories already in it.
   * One server per directory: a `.lock` file holds the owner's pid.
   */
  static async open(root: string, log: (line: string) => void = () => undefined): Promise<Storage> {
    const s = new Storage(root, log);
    await fsp.mkdir(root, { recursive: true });
    await s.lock();
    // Upload sessions live in memory: their leftovers from a previous run are garbage.
    await fsp.rm(s.scratchDir, { recursive: true, force: true });
    await fsp.mkdir(s.scratchDir, { recursive: true });
    await s.discover(root);
    return s;
  }

  private get lockFile(): string {
    return join(this.root, LOCK_FILE);
  }

  private async lock(): Promise<void> {
    const key = resolve(this.root);
    for (let attempt = 0; ; attempt++) {
      try {
        await fsp.writeFile(this.lockFile, `${process.pid}\n`, { flag: 'wx' });
        openRoots.add(key);
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0)
          throw asLadingError(e, 'IO', `locking ${this.root}`);
      }
      const pid = Number((await fsp.readFile(this.lockFile, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && (pid !== process.pid || openRoots.has(key)) && alive(pid)) {
        throw new LadingError(
          'CONFLICT',
          `${this.root} is in use by another lading serve (pid ${pid}); give each server its own --data directory`,
        );
      }
      // A stale lock (its process is gone): take it over.
      await fsp.rm(this.lockFile, { force: true });
    }
  }

  /** Releases the data directory. */
  async release(): Promise<void> {
    openRoots.delete(resolve(this.root));
    await fsp.rm(this.lockFile, { force: true });
  }

  private async discover(dir: string): Promise<void> {
    let entries;
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    const names = new Set(entries.map((e) => e.name));
    const isRepo =
      dir !== this.root && (names.has(SETTINGS_FILE) || (names.has('index.json') && names.has('oci-layout')));
    if (isRepo) {
      const name = relative(this.root, dir).split(sep).join('/');
      if (repositoryNameProblem(name) !== undefined)
        this.log(`ignoring ${dir}: "${name}" is not a valid repository name`);
      else {
        try {
          await this.load(name, dir);
        } catch (e) {
          this.log(`ignoring repository ${name}: ${(e as Error).message}`);
        }
      }
    }
    for (const e of entries) {
      if (!e.isDirectory() || e.name.startsWith('.')) continue;
      if (isRepo && e.name === 'blobs') continue;
      await this.discover(join(dir, e.name));
    }
  }

  private async load(name: string, dir: string): Promise<void> {
    let settings: RepositorySettings = {
      imageTagMutability: 'MUTABLE',
      createdAt: (await fsp.stat(dir)).mtime.toISOString(),
    };
    try {
      const raw = JSON.parse(await fsp.readFile(join(dir, SETTINGS_FILE), 'utf8')) as Partial<RepositorySettings>;
      settings = { ...settings, ...raw };
    } catch {
      // A plain OCI layout (no settings yet): a mutable repository.
    }
    const repo = new Repository(name, dir, settings);
    let index: { manifests?: unknown } = {};
    try {
      index = JSON.parse(await fsp.readFile(join(dir, 'index.json'), 'utf8')) as { manifests?: unknown };
    } catch {
      // no index yet
    }
    const list = Array.isArray(index.manifests) ? index.manifests : [];
    for (const [i, raw] of list.entries()) {
      let d: Descriptor;
      try {
        d = parseDescriptor(raw, `${name}/index.json manifests[${i}]`);
      } catch (e) {
        this.log(`${name}: skipping index.json entry ${i}: ${(e as Error).message}`);
        continue;
      }
      let st;
      try {
        st = await fsp.stat(repo.blobPath(d.digest));
      } catch {
        this.log(`${name}: skipping index.json entry ${i}: blob ${d.digest} is missing`);
        continue;
      }
      const { [REF_NAME]: tag, ...rest } = d.annotations ?? {};
      if (!repo.images.has(d.digest)) {
        repo.images.set(d.digest, {
          digest: d.digest,
          mediaType: d.mediaType,
          size: d.size,
          pushedAt: st.mtime,
          ...(Object.keys(rest).length > 0 ? { annotations: rest } : {}),
        });
      }
      if (tag !== undefined) {
        repo.tags.delete(tag);
        repo.tags.set(tag, d.digest);
      }
    }
    this.repos.set(name, repo);
  }

  get(name: string): Repository | undefined {
    return this.repos.get(name);
  }

  async create(name: string, settings: RepositorySettings): Promise<Repository> {
    const dir = join(this.root, ...name.split('/'));
    const repo = new Repository(name, dir, settings);
    await fsp.mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    await writeFileAtomic(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}\n', dir);
    await this.writeSettings(repo);
    await this.writeIndex(repo);
    this.repos.set(name, repo);
    return repo;
  }

  async writeSettings(repo: Repository): Promise<void> {
    await writeFileAtomic(
      join(repo.dir, SETTINGS_FILE),
      `${JSON.stringify({ repositoryName: repo.name, ...repo.settings }, null, 2)}\n`,
      repo.dir,
    );
  }

  async writeIndex(repo: Repository): Promise<void> {
    await writeFileAtomic(join(repo.dir, 'index.json'), repo.indexJson(), repo.dir);
  }

  /** Removes a repository's files (DeleteRepository); nested repositories' directories stay. */
  async remove(repo: Repository): Promise<void> {
    this.repos.delete(repo.name);
    for (const f of ['blobs', 'index.json', 'oci-layout', SETTINGS_FILE])
      await fsp.rm(join(repo.dir, f), { recursive: true, force: true });
    await fsp.rmdir(repo.dir).catch(() => undefined);
  }

  /** Size of a blob in a repository, or undefined when it has none. */
  async blobSize(repo: Repository, d: Digest): Promise<number | undefined> {
    try {
      const st = await fsp.stat(repo.blobPath(d));
      return st.isFile() ? st.size : undefined;
    } catch {
      return undefined;
    }
  }

  /** Moves a verified temp file (under the scratch dir) into place as a blob. */
  async commitBlob(repo: Repository, tempPath: string, d: Digest): Promise<void> {
    const target = repo.blobPath(d);
    await fsp.mkdir(join(repo.dir, 'blobs', digestAlgorithm(d)), { recursive: true });
    await fsp.rename(tempPath, target);
  }

  /** Writes small content (a manifest) as a blob. */
  async writeBlob(repo: Repository, d: Digest, bytes: Buffer): Promise<void> {
    const tmp = join(this.scratchDir, tmpName());
    try {
      await fsp.writeFile(tmp, bytes);
      await this.commitBlob(repo, tmp, d);
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      throw e;
    }
  }

  /** Links (or copies) a blob of one repository into another (blob mounting). */
  async mountBlob(from: Repository, to: Repository, d: Digest): Promise<void> {
    const tmp = join(this.scratchDir, tmpName());
    try {
      try {
        await fsp.link(from.blobPath(d), tmp);
      } catch {
        await fsp.copyFile(from.blobPath(d), tmp);
      }
      await this.commitBlob(to, tmp, d);
    } catch (e) {
      await fsp.rm(tmp, { force: true });
      throw e;
    }
  }

  readBlob(repo: Repository, d: Digest): Promise<Buffer> {
    return fsp.readFile(repo.blobPath(d));
  }

  /** Parsed facts about an image of the repository (cached by repository and digest). */
  async manifestInfo(repo: Repository, img: ImageRecord): Promise<ManifestInfo> {
    const key = `${repo.dir}\0${img.digest}`;
    const hit = this.infoCache.get(key);
    if (hit) return hit;
    const bytes = await this.readBlob(repo, img.digest);
    const doc = parseManifestDocument(bytes, `${repo.name}@${img.digest}`, img.mediaType);
    const info: ManifestInfo =
      doc.kind === 'manifest'
        ? { kind: 'manifest', mediaType: doc.mediaType, config: doc.config, layers: doc.layers, children: [] }
        : { kind: 'index', mediaType: doc.mediaType, layers: [], children: doc.manifests };
    if (doc.subject) info.subject = doc.subject;
    if (doc.artifactType) info.artifactType = doc.artifactType;
    if (doc.annotations) info.annotations = doc.annotations;
    this.infoCache.set(key, info);
    return info;
  }

  /**
   * ECR's imageSizeInBytes: the sum of the (compressed) layer sizes of a manifest; for an
   * index, the largest of its manifests' sizes.
   */
  async imageSize(repo: Repository, img: ImageRecord, depth = 0): Promise<number> {
    let info: ManifestInfo;
    try {
      info = await this.manifestInfo(repo, img);
    } catch {
      return img.size;
    }
    if (info.kind === 'manifest')
      return info.layers.filter((l) => !isForeignLayerMediaType(l.mediaType)).reduce((n, l) => n + l.size, 0);
    if (depth > 4) return 0;
    let max = 0;
    for (const c of info.children) {
      const child = repo.images.get(c.digest);
      if (child) max = Math.max(max, await this.imageSize(repo, child, depth + 1));
    }
    return max;
  }
}
