import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { createDecompressor } from '../compress/codecs';
import { MAGIC_BYTES, supportedCompression } from '../compress/detect';
import { asLadingError, LadingError } from '../errors';
import type { Descriptor } from '../image/descriptor';
import { digestAlgorithm, digestOf, type Digest } from '../image/digest';
import { buildManifest } from '../image/manifest';
import { layerCompressionOf, layerMediaType, MediaType, type Compression } from '../image/media-types';
import { mapLimit } from '../util/concurrency';
import { analyzeBlob, decompressionError, type BlobFacts } from './analyze';
import type { Entry } from './entries';
import { readDockerImages } from './formats/docker';
import { OciBlobs, readOciImages } from './formats/oci';
import type { BlobExpectation, ImageSource, OfferTaker, PlacedBlob, StreamedBlob } from '../image/source';
import type {
  ArchiveBlobRef,
  ArchiveFormat,
  ArchiveImage,
  ArchiveModel,
  BlobRef,
  LayerInfo,
  ManifestInfo,
} from './model';
import { offerEntry } from './offer';
import { peek } from './peek';
import { compressedStream, verifiedStream } from './verify';
import { FileSource, isRandomAccessSource, type RandomAccessSource } from './source';
import { DirectoryStore, StreamStore, TarFileStore, type ArchiveStore, type StreamedEntryHandler } from './store';

export interface OpenArchiveOptions {
  signal?: AbortSignal;
  /** Debug lines (temp files, access mode); never secrets. */
  logger?: (line: string) => void;
  /**
   * One-pass sources (compressed archives, stdin) offer each large blob to this taker as it
   * streams by, in archive order, before the documents that explain it are read (the copy
   * engine uploads it then). Without one, each is only analysed (digest, compression, diff_id).
   */
  onOffer?: OfferTaker;
  /**
   * With `onOffer`: compute the diff_id of every compressed offered blob, not only of those
   * whose name states no digest. @default false
   */
  verifyDiffIds?: boolean;
}

/**
 * A path (file or OCI layout directory), `-` (stdin), a one-pass stream, or a
 * random-access source (an object read through ranged GETs...).
 */
export type ArchiveInput = string | NodeJS.ReadableStream | RandomAccessSource;

function decompressed(
  source: AsyncIterable<Buffer>,
  c: Exclude<Compression, 'none'>,
  where: string,
  signal: AbortSignal | undefined,
): AsyncIterable<Buffer> {
  // With the signal, a one-pass read of a decompression bomb stops as soon as it is interrupted.
  const dec = createDecompressor(c, signal);
  const input = Readable.from(source, { objectMode: false });
  input.on('error', (e) => dec.destroy(e));
  input.pipe(dec);
  return (async function* () {
    try {
      for await (const chunk of dec as AsyncIterable<Buffer>) yield chunk;
    } catch (e) {
      throw e instanceof LadingError ? e : decompressionError(e, `${where} (${c})`);
    } finally {
      input.destroy();
      dec.destroy();
    }
  })();
}

async function openStore(
  input: ArchiveInput,
  opts: OpenArchiveOptions,
  placedWhileStreaming: Map<string, PlacedBlob>,
): Promise<ArchiveStore> {
  const log = opts.logger;
  const take = opts.onOffer;
  const onLarge: StreamedEntryHandler = take
    ? async (entry, body) => {
        const { facts, placed } = await offerEntry(
          where,
          entry,
          body,
          take,
          opts.verifyDiffIds ? 'always' : 'unclaimed',
        );
        if (placed) placedWhileStreaming.set(entry.path, placed);
        return facts;
      }
    : (entry, body) =>
        analyzeBlob(body, {
          where: `${where}: ${entry.path}`,
          diffId: true,
          algorithm: algorithmFor(entry),
          signal: opts.signal,
        });
  let where: string;
  let source: AsyncIterable<Buffer>;
  if (typeof input === 'string' && input !== '-') {
    where = input;
    let st;
    try {
      st = await stat(input);
    } catch (e) {
      throw asLadingError(e, 'IO', `cannot read ${input}`);
    }
    if (st.isDirectory()) {
      log?.(`${input}: directory, reading as an OCI image layout`);
      return DirectoryStore.open(input, opts.signal);
    }
    if (!st.isFile()) {
      // A FIFO (`lading inspect <(...)`), a character device, a socket: no positions to
      // read at, so read it once, as standard input.
      log?.(`${input}: not a regular file, reading it as a stream`);
      where = input;
      const { head, rest } = await peek(
        createReadStream(input, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>,
        MAGIC_BYTES,
      );
      const c = supportedCompression(head, where);
      source = c === 'none' ? rest : decompressed(rest, c, where, opts.signal);
      return StreamStore.read(source, { where, compression: c, onLarge, signal: opts.signal, logger: log });
    }
    const fh = await open(input, 'r').catch((e: unknown) => {
      throw asLadingError(e, 'IO', `cannot open ${input}`);
    });
    try {
      const head = Buffer.alloc(MAGIC_BYTES);
      const { bytesRead } = await fh.read(head, 0, MAGIC_BYTES, 0);
      const c = supportedCompression(head.subarray(0, bytesRead), input);
      if (c === 'none') {
        log?.(`${input}: uncompressed tar, indexing headers for random access`);
        return await TarFileStore.open(new FileSource(input, fh, st.size), { signal: opts.signal });
      }
      await fh.close();
      log?.(`${input}: ${c}-compressed archive, reading in one pass`);
      source = decompressed(
        createReadStream(input, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>,
        c,
        input,
        opts.signal,
      );
      return await StreamStore.read(source, {
        where,
        compression: c,
        onLarge,
        signal: opts.signal,
        logger: log,
      });
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e;
    }
  }
  if (isRandomAccessSource(input)) {
    where = input.where;
    try {
      const head = Buffer.alloc(Math.min(MAGIC_BYTES, input.size));
      const { bytesRead } = head.length > 0 ? await input.read(head, 0, head.length, 0) : { bytesRead: 0 };
      const c = supportedCompression(head.subarray(0, bytesRead), where);
      if (c === 'none') {
        log?.(`${where}: uncompressed tar, indexing headers for random access`);
        return await TarFileStore.open(input, { signal: opts.signal });
      }
      log?.(`${where}: ${c}-compressed archive, reading in one pass`);
      const body = input.size > 0 ? input.stream(0, input.size - 1) : Readable.from([]);
      const store = await StreamStore.read(decompressed(body as AsyncIterable<Buffer>, c, where, opts.signal), {
        where,
        compression: c,
        onLarge,
        signal: opts.signal,
        logger: log,
      });
      await input.close();
      return store;
    } catch (e) {
      await input.close().catch(() => undefined);
      throw e;
    }
  }
  where = input === '-' ? 'stdin' : 'stream';
  const stream = input === '-' ? process.stdin : input;
  const { head, rest } = await peek(stream as AsyncIterable<Buffer>, MAGIC_BYTES);
  const c = supportedCompression(head, where);
  log?.(`${where}: ${c === 'none' ? 'uncompressed' : c}, reading in one pass`);
  source = c === 'none' ? rest : decompressed(rest, c, where, opts.signal);
  return StreamStore.read(source, { where, compression: c, onLarge, signal: opts.signal, logger: log });
}

function algorithmFor(e: Entry): 'sha256' | 'sha512' {
  return e.path.startsWith('blobs/sha512/') ? 'sha512' : 'sha256';
}

/**
 * An image archive: its model (images, manifests, configs, layers) and access to its blobs.
 * Create with `openArchive`; always `close()` it.
 */
export class ImageArchive implements ArchiveModel, ImageSource {
  private readonly facts = new Map<string, Promise<BlobFacts>>();

  private constructor(
    readonly store: ArchiveStore,
    readonly format: ArchiveFormat,
    readonly images: ArchiveImage[],
    private readonly placedWhileStreaming: ReadonlyMap<string, PlacedBlob>,
  ) {}

  get compression(): Compression {
    return this.store.compression;
  }

  get where(): string {
    return this.store.where;
  }

  static async fromStore(
    store: ArchiveStore,
    placedWhileStreaming: ReadonlyMap<string, PlacedBlob> = new Map(),
  ): Promise<ImageArchive> {
    try {
      const t = store.table;
      const hasManifestJson = t.lookup('manifest.json') !== undefined;
      const hasIndex = t.lookup('index.json') !== undefined;
      if (!hasManifestJson && !hasIndex) {
        const legacy = t.lookup('repositories') !== undefined;
        throw new LadingError(
          'NO_MANIFEST',
          legacy
            ? `${store.where}: no manifest.json: this is the pre-1.10 docker save format, which is not supported; re-save the image with a current docker, podman or skopeo`
            : `${store.where}: neither manifest.json nor index.json found: not a docker save archive or an OCI image layout`,
        );
      }
      const blobs = new OciBlobs(store);
      const oci = hasIndex ? await readOciImages(store, blobs) : [];
      const docker = hasManifestJson ? await readDockerImages(store, blobs, oci) : [];
      const images = [...oci, ...docker];
      if (images.length === 0) throw new LadingError('NO_MANIFEST', `${store.where}: index.json lists no images`);
      const format: ArchiveFormat = hasManifestJson
        ? 'docker-archive'
        : store.kind === 'directory'
          ? 'oci-layout'
          : 'oci-archive';
      return new ImageArchive(store, format, images, placedWhileStreaming);
    } catch (e) {
      await store.close();
      throw e;
    }
  }

  /**
   * Opens a blob's stored bytes (random-access stores, or small entries of a one-pass read).
   * Chunks of a file come from a buffer pool and go back to it when a lading writer (an upload,
   * an OCI layout) is done with them: a consumer that also keeps a chunk must `hold` it and
   * `release` it after (exported by the package; see util/buffer-pool).
   */
  openBlob(ref: BlobRef): Readable {
    return this.store.open(this.entryOf(ref));
  }

  /** The entry that stores a blob: refs made by this archive carry it; others are looked up by key. */
  private entryOf(ref: BlobRef): Entry {
    const own = (ref as Partial<ArchiveBlobRef>).entry;
    if (own !== undefined) return own;
    const found = this.store.table.lookup(ref.key);
    if (found === undefined) throw new LadingError('BLOB_MISSING', `${this.where}: ${ref.name} is not in the archive`);
    return found;
  }

  async storedCompression(ref: BlobRef): Promise<Compression> {
    const entry = this.entryOf(ref);
    const streamed = this.store.streamed(entry);
    if (streamed) return streamed.compression;
    return supportedCompression(await this.store.head(entry, MAGIC_BYTES), `${this.where}: ${entry.path}`);
  }

  streamed(ref: BlobRef): StreamedBlob | undefined {
    const entry = this.entryOf(ref);
    const facts = this.store.streamed(entry);
    if (facts === undefined) return undefined;
    const placed = this.placedWhileStreaming.get(entry.path);
    return placed ? { facts, placed } : { facts };
  }

  open(ref: BlobRef, expect: BlobExpectation): Readable {
    return verifiedStream(this.openBlob(ref), expect);
  }

  openCompressed(
    ref: BlobRef,
    codec: Exclude<Compression, 'none'>,
    level: number | undefined,
    expect: BlobExpectation,
  ): Readable {
    return compressedStream(this.openBlob(ref), codec, level, expect);
  }

  async readSmall(ref: BlobRef, expect: { digest: Digest; size: number }): Promise<Buffer> {
    const entry = this.entryOf(ref);
    const bytes = await this.store.readSmall(entry);
    if (bytes.length !== expect.size || digestOf(bytes, digestAlgorithm(expect.digest)) !== expect.digest) {
      throw new LadingError(
        'DIGEST_MISMATCH',
        `${this.where}: ${entry.path} does not match the descriptor ${expect.digest}`,
      );
    }
    return bytes;
  }

  /** Reads a blob once (or recalls what the one-pass read learnt) and caches what it found. */
  blobFacts(ref: BlobRef, opts: { diffId?: boolean; signal?: AbortSignal } = {}): Promise<BlobFacts> {
    const entry = this.entryOf(ref);
    const key = entry.path;
    let p = this.facts.get(key);
    if (p === undefined) {
      const streamed = this.store.streamed(entry);
      const where = `${this.where}: ${entry.path}`;
      p = streamed
        ? Promise.resolve(streamed)
        : analyzeBlob(this.openBlob(ref) as AsyncIterable<Buffer>, {
            where,
            diffId: opts.diffId ?? true,
            algorithm: ref.claimed ? digestAlgorithm(ref.claimed) : algorithmFor(entry),
            signal: opts.signal,
          });
      this.facts.set(key, p);
      p.catch(() => this.facts.delete(key));
    }
    return p;
  }

  /** Every distinct layer blob of the archive's available manifests, in archive order. */
  layerBlobs(): BlobRef[] {
    const seen = new Map<string, BlobRef>();
    for (const img of this.images) {
      for (const m of img.manifests) {
        for (const l of m.layers) if (l.blob && !seen.has(l.blob.key)) seen.set(l.blob.key, l.blob);
      }
    }
    return [...seen.values()].sort((a, b) => a.offset - b.offset);
  }

  /**
   * Reads and verifies every layer blob: digest and size against the descriptor or the
   * name that claims them, real compression against the media type, and diff_id against
   * the config. Fills in the manifests lading synthesizes for legacy docker archives.
   */
  async verify(
    opts: { concurrency?: number; signal?: AbortSignal; onBlob?: (ref: BlobRef, facts: BlobFacts) => void } = {},
  ): Promise<void> {
    const refs = this.layerBlobs();
    await mapLimit(refs, opts.concurrency ?? 2, async (ref) => {
      // Entries stored twice were compared when the archive was opened (every store).
      const f = await this.blobFacts(ref, { diffId: true, signal: opts.signal });
      opts.onBlob?.(ref, f);
    });
    for (const img of this.images) {
      for (const m of img.manifests) {
        for (const [i, l] of m.layers.entries()) if (l.blob) this.checkLayer(m, i, l, await this.blobFacts(l.blob));
      }
      await this.resolveSynthesized(img);
    }
  }

  private checkLayer(m: ManifestInfo, i: number, l: LayerInfo, f: BlobFacts): void {
    const where = `${this.where}: layer ${i}${m.descriptor ? ` of manifest ${m.descriptor.digest}` : ''} (${l.blob!.key})`;
    const d = l.descriptor;
    // A foreign layer's descriptor names the remote blob; docker save stores the layer
    // uncompressed beside it, so only its diff_id can be checked.
    if (d && !l.foreign) {
      if (f.size !== d.size)
        throw new LadingError('SIZE_MISMATCH', `${where}: ${f.size} bytes stored, the descriptor says ${d.size}`);
      if (f.digest !== d.digest)
        throw new LadingError(
          'DIGEST_MISMATCH',
          `${where}: content has digest ${f.digest}, the descriptor says ${d.digest}`,
        );
      const declared = layerCompressionOf(d.mediaType);
      if (declared !== undefined && declared !== f.compression) {
        throw new LadingError(
          'BAD_MANIFEST',
          `${where}: media type ${d.mediaType} says ${declared} but the bytes are ${f.compression === 'none' ? 'uncompressed' : f.compression}`,
        );
      }
    }
    const claimed = l.blob!.claimed;
    if (claimed && claimed !== f.digest)
      throw new LadingError('DIGEST_MISMATCH', `${where}: content has digest ${f.digest}, its name says ${claimed}`);
    if (l.diffId && f.diffId && f.diffId !== l.diffId) {
      throw new LadingError(
        'DIFF_ID_MISMATCH',
        `${where}: uncompressed content has digest ${f.diffId}, the config's diff_id is ${l.diffId}`,
      );
    }
  }

  /**
   * Legacy docker archives store no manifest: make the one `push --compress none` would
   * push, from the layers' real digests and compression. Reads layers not yet read.
   */
  async resolveSynthesized(img: ArchiveImage, signal?: AbortSignal): Promise<void> {
    for (const m of img.manifests) {
      if (!m.synthesized || m.manifest) continue;
      const layers: Descriptor[] = [];
      for (const [i, l] of m.layers.entries()) {
        if (l.descriptor && (l.foreign || !l.blob)) {
          layers.push(l.descriptor);
          continue;
        }
        const f = await this.blobFacts(l.blob!, { diffId: true, signal });
        this.checkLayer(m, i, l, f);
        layers.push({
          mediaType: l.descriptor?.mediaType ?? layerMediaType('docker', f.compression),
          digest: f.digest,
          size: f.size,
        });
      }
      const manifest = buildManifest(MediaType.DockerManifest, m.config!.descriptor, layers);
      m.manifest = manifest;
      m.layers.forEach((l, i) => (l.descriptor = layers[i]));
      m.descriptor = { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.length };
      if (img.manifests.length === 1 && img.indexes.length === 0) img.digest = manifest.digest;
    }
  }

  async close(): Promise<void> {
    await this.store.close();
  }
}

/** Opens an archive file, OCI layout directory, `-` (stdin) or a stream, and reads its model. */
export async function openArchive(input: ArchiveInput, opts: OpenArchiveOptions = {}): Promise<ImageArchive> {
  const placed = new Map<string, PlacedBlob>();
  const store = await openStore(input, opts, placed);
  return ImageArchive.fromStore(store, placed);
}

export type { Digest };
