import { LadingError } from '../../errors';
import { parseDescriptor, type Descriptor } from '../../image/descriptor';
import { digestOf, parseDigest, type Digest } from '../../image/digest';
import { expectObject, parseJsonBytes } from '../../image/json';
import { configPlatform, parseImageConfig, parseManifestDocument, type ImageManifest } from '../../image/manifest';
import { isForeignLayerMediaType, MediaType } from '../../image/media-types';
import { blobPathDigestText } from '../blob-path';
import { blobRef, type ArchiveImage, type LayerInfo, type ManifestInfo } from '../model';
import type { ArchiveStore } from '../store';
import { shown } from '../tar';
import type { OciBlobs } from './oci';

/** One entry of docker's manifest.json. */
export interface DockerManifestEntry {
  config: string;
  repoTags: string[];
  layers: string[];
  layerSources: Map<string, Descriptor>;
}

/**
 * Images one manifest.json may list, and layers in all its images: as many as an index may
 * list manifests and a manifest layers. docker save writes one entry per image saved.
 */
export const MAX_DOCKER_IMAGES = 10_000;
export const MAX_DOCKER_LAYERS = 100_000;

export function parseDockerManifestJson(bytes: Buffer, where: string): DockerManifestEntry[] {
  const doc = parseJsonBytes(bytes, where);
  if (!Array.isArray(doc)) {
    throw new LadingError(
      'BAD_MANIFEST',
      `${where}: expected an array of images, got ${doc === null ? 'null' : typeof doc}`,
    );
  }
  if (doc.length === 0) throw new LadingError('BAD_MANIFEST', `${where}: lists no images`);
  if (doc.length > MAX_DOCKER_IMAGES)
    throw new LadingError('LIMIT_EXCEEDED', `${where}: lists ${doc.length} images (limit ${MAX_DOCKER_IMAGES})`);
  let layers = 0;
  return doc.map((raw, i) => {
    const w = `${where}[${i}]`;
    const o = expectObject(raw, w);
    if (typeof o.Config !== 'string' || o.Config === '')
      throw new LadingError('BAD_MANIFEST', `${w}: "Config" must be a file name`);
    if (!Array.isArray(o.Layers) || !o.Layers.every((l) => typeof l === 'string' && l !== '')) {
      throw new LadingError('BAD_MANIFEST', `${w}: "Layers" must be an array of file names`);
    }
    layers += o.Layers.length;
    if (layers > MAX_DOCKER_LAYERS)
      throw new LadingError('LIMIT_EXCEEDED', `${where}: lists more than ${MAX_DOCKER_LAYERS} layers in all`);
    const tags = o.RepoTags ?? [];
    if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) {
      throw new LadingError('BAD_MANIFEST', `${w}: "RepoTags" must be an array of strings`);
    }
    const layerSources = new Map<string, Descriptor>();
    if (o.LayerSources !== undefined && o.LayerSources !== null) {
      const ls = expectObject(o.LayerSources, `${w}.LayerSources`);
      for (const [diffId, d] of Object.entries(ls)) {
        parseDigest(diffId, `${w}.LayerSources key`);
        layerSources.set(diffId, parseDescriptor(d, `${w}.LayerSources[${diffId}]`));
      }
    }
    return { config: o.Config, repoTags: tags as string[], layers: o.Layers as string[], layerSources };
  });
}

/** A file name that states a digest: `blobs/sha256/<hex>`, `sha256:<hex>` (ggcr), `<hex>.json` (docker). */
function claimedDigest(name: string): Digest | undefined {
  const path = blobPathDigestText(name);
  if (path !== undefined) return parseDigest(path, name);
  const m = /^(?:sha256:|)([a-f0-9]{64})(?:\.json)?$/.exec(name);
  if (m && (name.startsWith('sha256:') || name.endsWith('.json'))) return `sha256:${m[1]}` as Digest;
  return undefined;
}

export interface DockerImages {
  /** Images explained by manifest.json alone. */
  images: ArchiveImage[];
}

/**
 * Reads manifest.json. Entries whose config is that of an image already read from
 * index.json (Docker >= 25) only add their RepoTags to it; the others become images of
 * their own, with a stored manifest when the archive holds one that matches (Docker >= 25
 * stores it under blobs/), else a manifest lading will synthesize once the layers are read.
 */
export async function readDockerImages(
  store: ArchiveStore,
  blobs: OciBlobs,
  ociImages: ArchiveImage[],
): Promise<ArchiveImage[]> {
  const mj = store.table.lookup('manifest.json')!;
  const mjBytes = await store.readSmall(mj);
  blobs.account(mjBytes.length, 'manifest.json');
  const entries = parseDockerManifestJson(mjBytes, `${store.where}: manifest.json`);
  const out: ArchiveImage[] = [];
  let storedManifests: ImageManifest[] | undefined;
  // Each config read and parsed once, however many entries name it (memory in proportion to
  // the distinct configs, not to the entries).
  const configs = new Map<string, { cbytes: Buffer; cdigest: Digest; config: ReturnType<typeof parseImageConfig> }>();
  // Docker >= 25: images already known from index.json, by config digest; their names once.
  const byConfig = new Map<Digest, ArchiveImage>();
  for (const img of ociImages)
    for (const m of img.manifests)
      if (m.config && !byConfig.has(m.config.descriptor.digest)) byConfig.set(m.config.descriptor.digest, img);
  const names = new Map<ArchiveImage, Set<string>>();
  const warnings = new Map<Digest, string>();

  for (const [i, e] of entries.entries()) {
    if (i % 1000 === 999) {
      // Held documents come from memory: let signals in now and then.
      await new Promise((resolve) => setImmediate(resolve));
      store.table.signal?.throwIfAborted();
    }
    const what = `manifest.json[${i}]`;
    const centry = store.table.require(e.config, `${what}.Config`);
    let c = configs.get(centry.path);
    if (c === undefined) {
      const cbytes = await store.readSmall(centry);
      blobs.account(cbytes.length, shown(e.config));
      const cdigest = digestOf(cbytes);
      const claimed = claimedDigest(centry.path) ?? claimedDigest(e.config);
      if (claimed !== undefined && claimed.startsWith('sha256:') && claimed !== cdigest) {
        const mismatch = `config ${shown(e.config)} has digest ${cdigest}, its name says ${claimed}`;
        // A blobs/ path is how OCI documents link to each other: a wrong one is refused. A
        // legacy config's file name only names it; docker, skopeo and crane identify a config by
        // its content, so the image goes with its real digest, and the mismatch is reported.
        if (blobPathDigestText(centry.path) !== undefined || blobPathDigestText(e.config) !== undefined) {
          throw new LadingError('DIGEST_MISMATCH', `${store.where}: ${mismatch}`);
        }
        warnings.set(cdigest, `${mismatch}; the config goes by its content's digest`);
      }
      c = { cbytes, cdigest, config: parseImageConfig(cbytes, `${store.where}: ${shown(e.config)}`) };
      configs.set(centry.path, c);
    }
    const { cbytes, cdigest, config } = c;
    if (config.diffIds.length !== e.layers.length) {
      throw new LadingError(
        'BAD_MANIFEST',
        `${store.where}: ${what} lists ${e.layers.length} layers but config ${shown(e.config)} has ${config.diffIds.length} diff_ids`,
      );
    }

    // Docker >= 25: the same image is already known from index.json.
    const known = byConfig.get(cdigest);
    if (known) {
      let set = names.get(known);
      if (set === undefined) names.set(known, (set = new Set()));
      for (const t of e.repoTags) set.add(t);
      continue;
    }

    const layerPaths = e.layers.map((l, j) => store.table.require(l, `${what}.Layers[${j}]`));
    // A stored manifest for exactly this config and these layer blobs keeps its digest.
    storedManifests ??= await findStoredManifests(store, blobs);
    const stored = storedManifests.find(
      (m) =>
        m.config.digest === cdigest &&
        m.layers.length === layerPaths.length &&
        m.layers.every((l, j) => claimedDigest(layerPaths[j]!.path) === l.digest),
    );
    if (stored) {
      const d: Descriptor = { mediaType: stored.mediaType, digest: stored.digest, size: stored.bytes.length };
      const image: ArchiveImage = {
        names: [...e.repoTags],
        mediaType: stored.mediaType,
        digest: stored.digest,
        indexes: [],
        manifests: [],
        others: [],
      };
      const info = await blobs.manifestInfo(d, stored);
      if (!info.platform) {
        const p = configPlatform(config);
        if (p) info.platform = p;
      }
      image.manifests.push(info);
      out.push(image);
      continue;
    }

    const configRef = blobRef(centry, e.config, cdigest);
    const layers: LayerInfo[] = e.layers.map((name, j) => {
      const diffId = config.diffIds[j]!;
      // LayerSources describes where a layer came from; only a foreign one (Windows base
      // layers) is pushed by reference. Any other entry names a compressed blob the
      // archive does not hold: the stored bytes are what gets pushed.
      const ls = e.layerSources.get(diffId);
      const source = ls !== undefined && isForeignLayerMediaType(ls.mediaType) ? ls : undefined;
      const entry = layerPaths[j]!;
      const layer: LayerInfo = { blob: blobRef(entry, name), diffId, foreign: source !== undefined };
      const c = claimedDigest(entry.path);
      if (c) layer.blob!.claimed = c;
      if (source) layer.descriptor = source;
      return layer;
    });
    const info: ManifestInfo = {
      descriptor: undefined as unknown as Descriptor,
      config: {
        descriptor: { mediaType: MediaType.DockerConfig, digest: cdigest, size: cbytes.length },
        blob: configRef,
        parsed: config,
      },
      layers,
      attestation: false,
      available: true,
      synthesized: true,
    };
    const p = configPlatform(config);
    if (p) info.platform = p;
    out.push({
      names: [...e.repoTags],
      mediaType: MediaType.DockerManifest,
      indexes: [],
      manifests: [info],
      others: [],
    });
  }
  for (const [img, tags] of names) img.names = [...new Set([...tags, ...img.names])];
  for (const img of out) {
    const found = img.manifests.flatMap((m) => warnings.get(m.config?.descriptor.digest as Digest) ?? []);
    if (found.length > 0) img.warnings = [...new Set(found)];
  }
  return out;
}

/** Image manifests stored as small blobs under blobs/ (Docker >= 25 keeps them even when index.json is empty). */
async function findStoredManifests(store: ArchiveStore, blobs: OciBlobs): Promise<ImageManifest[]> {
  const found: ImageManifest[] = [];
  let looked = 0;
  for (const e of store.table.entries) {
    if (e.type !== 'file' || e.size > 64 * 1024 || !/^blobs\/sha256\/[a-f0-9]{64}$/.test(e.path)) continue;
    if (++looked > 1000) break;
    const bytes = await store.readSmall(e);
    if (bytes[0] !== 0x7b) continue; // not a JSON object
    try {
      const doc = parseManifestDocument(bytes, `${store.where}: ${e.path}`);
      if (doc.kind === 'manifest' && doc.digest === `sha256:${e.path.slice(13)}`) {
        blobs.account(bytes.length, e.path);
        found.push(doc);
      }
    } catch {
      // Not a manifest: a config or some other JSON blob.
    }
  }
  return found;
}
