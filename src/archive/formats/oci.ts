import { LadingError } from '../../errors';
import type { Descriptor } from '../../image/descriptor';
import { digestAlgorithm, digestHex, digestOf, type Digest } from '../../image/digest';
import {
  configPlatform,
  isAttestation,
  parseImageConfig,
  parseManifestDocument,
  type ImageManifest,
  type ManifestDocument,
} from '../../image/manifest';
import {
  isForeignLayerMediaType,
  isIndexMediaType,
  layerCompressionOf,
  isManifestMediaType,
  isSchema1MediaType,
  MediaType,
} from '../../image/media-types';
import type { Entry } from '../entries';
import {
  blobRef,
  type ArchiveBlobRef,
  type ArchiveImage,
  type ConfigInfo,
  type LayerInfo,
  type ManifestInfo,
} from '../model';
import type { ArchiveStore } from '../store';
import { shown } from '../tar';

/** Nesting deeper than this is refused: real indexes nest two levels at most. */
const MAX_INDEX_DEPTH = 16;
/**
 * Descriptors of manifests and indexes visited in all (every image of the archive, each
 * listing counted, repeats included). Real archives visit dozens, a few thousand for a big
 * multi-image save; a hostile index that lists the next one thousands of times, nested, is
 * refused here instead of being walked (each digest is walked once per image anyway).
 */
export const MAX_MANIFESTS_VISITED = 100_000;
/**
 * Bytes of JSON documents (indexes, manifests, configs) read and kept for the model of one
 * archive: what the model may cost in memory, whatever the number of documents.
 */
export const MAX_DOCUMENT_BYTES = 64 * 1024 * 1024;

export function blobPath(d: Digest): string {
  return `blobs/${digestAlgorithm(d)}/${digestHex(d)}`;
}

export function isImageConfigMediaType(mt: string): boolean {
  return mt === MediaType.OciConfig || mt === MediaType.DockerConfig;
}

/**
 * Reads blobs of an OCI layout (`blobs/<alg>/<hex>`) and the documents in them, once each,
 * verifying size and digest of every JSON document it reads.
 */
export class OciBlobs {
  private readonly docs = new Map<Digest, ManifestDocument>();
  private readonly configs = new Map<Digest, ReturnType<typeof parseImageConfig>>();
  private visited = 0;
  private documentBytes = 0;

  constructor(readonly store: ArchiveStore) {}

  /** Counts JSON bytes kept for the model (see MAX_DOCUMENT_BYTES). */
  account(bytes: number, what: string): void {
    this.documentBytes += bytes;
    if (this.documentBytes > MAX_DOCUMENT_BYTES) {
      throw new LadingError(
        'LIMIT_EXCEEDED',
        `${this.store.where}: ${what}: the archive's JSON documents add up to more than ${MAX_DOCUMENT_BYTES} bytes`,
      );
    }
  }

  /** One more manifest or index descriptor visited; lets signals in now and then. */
  private async visit(): Promise<void> {
    if (++this.visited > MAX_MANIFESTS_VISITED) {
      throw new LadingError(
        'LIMIT_EXCEEDED',
        `${this.store.where}: indexes list more than ${MAX_MANIFESTS_VISITED} manifests in all (counting repeats)`,
      );
    }
    if (this.visited % 1000 === 0) {
      // Documents of a one-pass read come from memory: without this the walk never yields.
      await new Promise((resolve) => setImmediate(resolve));
      this.store.table.signal?.throwIfAborted();
    }
  }

  ref(d: Descriptor | Digest): ArchiveBlobRef | undefined {
    const digest = typeof d === 'string' ? d : d.digest;
    const name = blobPath(digest);
    const entry = this.store.table.lookup(name);
    return entry === undefined ? undefined : blobRef(entry, name, digest);
  }

  async readVerified(d: Descriptor, entry: Entry, what: string): Promise<Buffer> {
    const where = `${this.store.where}: ${what} ${d.digest}`;
    if (entry.size !== d.size) {
      throw new LadingError(
        'SIZE_MISMATCH',
        `${where}: the archive holds ${entry.size} bytes (${entry.path}), the descriptor says ${d.size}`,
      );
    }
    const bytes = await this.store.readSmall(entry);
    this.account(bytes.length, `${what} ${d.digest}`);
    const actual = digestOf(bytes, digestAlgorithm(d.digest));
    if (actual !== d.digest) {
      throw new LadingError('DIGEST_MISMATCH', `${where}: content of ${entry.path} has digest ${actual}`);
    }
    return bytes;
  }

  async document(d: Descriptor, what: string): Promise<ManifestDocument | undefined> {
    const cached = this.docs.get(d.digest);
    if (cached) return cached;
    const ref = this.ref(d);
    if (ref === undefined) return undefined;
    const bytes = await this.readVerified(d, ref.entry, what);
    const doc = parseManifestDocument(bytes, `${this.store.where}: ${what} ${d.digest}`, d.mediaType);
    this.docs.set(d.digest, doc);
    return doc;
  }

  async config(d: Descriptor, ref: ArchiveBlobRef): Promise<ReturnType<typeof parseImageConfig>> {
    const cached = this.configs.get(d.digest);
    if (cached) return cached;
    const bytes = await this.readVerified(d, ref.entry, 'config');
    const cfg = parseImageConfig(bytes, `${this.store.where}: config ${d.digest}`);
    this.configs.set(d.digest, cfg);
    return cfg;
  }

  /** Builds the ManifestInfo of an image manifest (present or not). */
  async manifestInfo(d: Descriptor, manifest: ImageManifest | undefined): Promise<ManifestInfo> {
    const info: ManifestInfo = {
      descriptor: d,
      layers: [],
      attestation: isAttestation(d),
      available: false,
      synthesized: false,
    };
    if (d.platform) info.platform = d.platform;
    if (manifest === undefined) return info;
    info.manifest = manifest;
    const cref = this.ref(manifest.config);
    const config: ConfigInfo = { descriptor: manifest.config };
    if (cref) {
      config.blob = cref;
      if (isImageConfigMediaType(manifest.config.mediaType)) config.parsed = await this.config(manifest.config, cref);
    }
    info.config = config;
    // Artifacts (layers of non-layer media types) may use an image config of `{}`.
    // Their diff_ids still count when they match (buildx attestations list them).
    const isImage = manifest.layers.every((l) => layerCompressionOf(l.mediaType) !== undefined);
    const listed = config.parsed?.diffIds;
    const diffIds = isImage || listed?.length === manifest.layers.length ? listed : undefined;
    if (diffIds !== undefined && diffIds.length !== manifest.layers.length) {
      throw new LadingError(
        'BAD_MANIFEST',
        `${this.store.where}: manifest ${d.digest} has ${manifest.layers.length} layers but its config lists ${diffIds.length} diff_ids`,
      );
    }
    let complete = cref !== undefined;
    manifest.layers.forEach((ld, i) => {
      const foreign = isForeignLayerMediaType(ld.mediaType);
      const layer: LayerInfo = { descriptor: ld, foreign };
      const r = this.ref(ld);
      if (r) layer.blob = r;
      else if (!foreign) complete = false;
      if (diffIds) layer.diffId = diffIds[i];
      info.layers.push(layer);
    });
    info.available = complete;
    if (info.platform === undefined && config.parsed) {
      const p = configPlatform(config.parsed);
      if (p) info.platform = p;
    }
    return info;
  }

  /**
   * Depth-first walk from a top-level descriptor; fills `image.indexes` and
   * `image.manifests`, each document once (`seen`: digests already walked for this image).
   * Unknown media types in an index are skipped, as the spec asks.
   */
  async walk(
    d: Descriptor,
    image: ArchiveImage,
    stack: Digest[],
    what: string,
    seen = new Set<Digest>(),
  ): Promise<void> {
    await this.visit();
    if (stack.includes(d.digest)) {
      throw new LadingError(
        'INDEX_CYCLE',
        `${this.store.where}: index ${stack[stack.length - 1]} refers back to ${d.digest}: the indexes form a cycle`,
      );
    }
    if (stack.length >= MAX_INDEX_DEPTH) {
      throw new LadingError(
        'LIMIT_EXCEEDED',
        `${this.store.where}: indexes nest deeper than ${MAX_INDEX_DEPTH} levels`,
      );
    }
    // An index listing the same digest again (or a child listed by two indexes): already in
    // the model, with everything below it.
    if (seen.has(d.digest)) return;
    seen.add(d.digest);
    const doc = await this.document(d, what);
    if (doc === undefined) {
      if (stack.length === 0) {
        throw new LadingError(
          'BLOB_MISSING',
          `${this.store.where}: ${what} ${d.digest} is not in the archive (expected at ${blobPath(d.digest)})`,
        );
      }
      // A child the archive does not carry (Docker's containerd store saves only the
      // platforms it pulled): listed, marked unavailable.
      if (!isIndexMediaType(d.mediaType)) image.manifests.push(await this.manifestInfo(d, undefined));
      return;
    }
    if (doc.kind === 'index') {
      image.indexes.push(doc);
      for (const [i, child] of doc.manifests.entries()) {
        if (isSchema1MediaType(child.mediaType)) {
          throw new LadingError(
            'UNSUPPORTED_SCHEMA',
            `${this.store.where}: index ${d.digest} lists a Docker schema 1 manifest; schema 1 is unsupported`,
          );
        }
        if (!isIndexMediaType(child.mediaType) && !isManifestMediaType(child.mediaType)) {
          await this.visit();
          if (seen.has(child.digest)) continue;
          seen.add(child.digest);
          const ref = this.ref(child);
          image.others.push(ref ? { descriptor: child, blob: ref } : { descriptor: child });
          continue;
        }
        await this.walk(child, image, [...stack, d.digest], `manifest ${i} of index`, seen);
      }
      return;
    }
    image.manifests.push(await this.manifestInfo(d, doc));
  }
}

function missingBlob(store: ArchiveStore, m: ManifestInfo): LadingError {
  const config = m.config && !m.config.blob ? [m.config.descriptor.digest] : [];
  const layers = m.layers.filter((l) => !l.blob && !l.foreign).map((l) => l.descriptor!.digest);
  const missing = [...config, ...layers];
  return new LadingError(
    'BLOB_MISSING',
    `${store.where}: manifest ${m.descriptor.digest} needs ${missing.length === 1 ? 'blob' : 'blobs'} ${missing.join(', ')}, not in the archive`,
  );
}

function annotationNames(d: Descriptor): string[] {
  const out: string[] = [];
  const a = d.annotations ?? {};
  const full = a['io.containerd.image.name'];
  const ref = a['org.opencontainers.image.ref.name'];
  if (full) out.push(full);
  if (ref) out.push(ref);
  return out;
}

/** Images of an OCI layout's index.json: one per distinct top-level digest. */
export async function readOciImages(store: ArchiveStore, blobs: OciBlobs): Promise<ArchiveImage[]> {
  const entry = store.table.lookup('index.json');
  if (entry === undefined) return [];
  const bytes = await store.readSmall(entry);
  blobs.account(bytes.length, 'index.json');
  const index = parseManifestDocument(bytes, `${store.where}: index.json`, MediaType.OciIndex);
  if (index.kind !== 'index') throw new LadingError('BAD_MANIFEST', `${store.where}: index.json is not an image index`);
  const layout = store.table.lookup('oci-layout');
  if (layout !== undefined) {
    const text = (await store.readSmall(layout)).toString('utf8');
    let version: unknown;
    try {
      version = (JSON.parse(text) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
    } catch {
      throw new LadingError('BAD_JSON', `${store.where}: oci-layout is not valid JSON`);
    }
    if (typeof version !== 'string' || !version.startsWith('1.')) {
      throw new LadingError(
        'UNSUPPORTED_SCHEMA',
        `${store.where}: unsupported OCI layout version ${typeof version === 'string' ? shown(version) : JSON.stringify(version)?.slice(0, 200)}`,
      );
    }
  }
  const byDigest = new Map<Digest, { d: Descriptor; names: string[] }>();
  index.manifests.forEach((d, i) => {
    if (isSchema1MediaType(d.mediaType)) {
      throw new LadingError(
        'UNSUPPORTED_SCHEMA',
        `${store.where}: index.json entry ${i} is a Docker schema 1 manifest; schema 1 is unsupported`,
      );
    }
    if (!isIndexMediaType(d.mediaType) && !isManifestMediaType(d.mediaType)) return;
    const g = byDigest.get(d.digest);
    if (g) g.names.push(...annotationNames(d));
    else byDigest.set(d.digest, { d, names: annotationNames(d) });
  });
  const images: ArchiveImage[] = [];
  for (const { d, names } of byDigest.values()) {
    const image: ArchiveImage = {
      names: [...new Set(names)],
      mediaType: d.mediaType,
      digest: d.digest,
      indexes: [],
      manifests: [],
      others: [],
    };
    await blobs.walk(d, image, [], isIndexMediaType(d.mediaType) ? 'index' : 'manifest');
    // A lone manifest must be whole; only an index may list children the archive lacks.
    const lone = image.indexes.length === 0 ? image.manifests[0] : undefined;
    if (lone && !lone.available) throw missingBlob(store, lone);
    images.push(image);
  }
  return images;
}
