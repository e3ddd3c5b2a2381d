import { LadingError } from '../errors';
import { parseDescriptor, type Descriptor } from './descriptor';
import { digestOf, parseDigest, type Digest } from './digest';
import { expectObject, optionalString, parseJsonBytes, stringMap } from './json';
import { isIndexMediaType, isManifestMediaType, isSchema1MediaType, MediaType } from './media-types';
import { isUnknownPlatform, type Platform } from './platform';

/** An image manifest (OCI or Docker v2 schema 2), with the exact bytes it was parsed from. */
export interface ImageManifest {
  kind: 'manifest';
  mediaType: string;
  digest: Digest;
  bytes: Buffer;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** An image index (OCI) or manifest list (Docker), with its exact bytes. */
export interface ImageIndex {
  kind: 'index';
  mediaType: string;
  digest: Digest;
  bytes: Buffer;
  manifests: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export type ManifestDocument = ImageManifest | ImageIndex;

/** The parts of an image config lading needs; the bytes are never rewritten. */
export interface ImageConfig {
  digest: Digest;
  bytes: Buffer;
  os?: string;
  architecture?: string;
  variant?: string;
  'os.version'?: string;
  diffIds: Digest[];
}

function schemaVersion(o: Record<string, unknown>, where: string): void {
  if (o.schemaVersion === 1) {
    throw new LadingError(
      'UNSUPPORTED_SCHEMA',
      `${where}: Docker schema 1 manifests are unsupported (deprecated since 2017); rebuild or convert the image to schema 2 / OCI`,
    );
  }
  if (o.schemaVersion !== 2) {
    throw new LadingError(
      'UNSUPPORTED_SCHEMA',
      `${where}: unknown schemaVersion ${JSON.stringify(o.schemaVersion)} (expected 2)`,
    );
  }
}

/**
 * Parses a manifest or an index. `declared` is the media type of the descriptor that pointed
 * here (it wins when the document has none, as OCI allows); the document's own field must
 * not contradict it.
 */
export function parseManifestDocument(bytes: Buffer, where: string, declared?: string): ManifestDocument {
  const o = expectObject(parseJsonBytes(bytes, where), where);
  const own = optionalString(o, 'mediaType', where);
  if (isSchema1MediaType(own) || isSchema1MediaType(declared) || o.schemaVersion === 1) {
    throw new LadingError(
      'UNSUPPORTED_SCHEMA',
      `${where}: Docker schema 1 manifests are unsupported (deprecated since 2017); rebuild or convert the image to schema 2 / OCI`,
    );
  }
  schemaVersion(o, where);
  if (
    own !== undefined &&
    declared !== undefined &&
    own !== declared &&
    (isIndexMediaType(declared) || isManifestMediaType(declared))
  ) {
    throw new LadingError(
      'BAD_MANIFEST',
      `${where}: document says mediaType ${own} but its descriptor says ${declared}`,
    );
  }
  let mediaType = own ?? declared;
  if (mediaType === undefined) {
    // Neither says: the shape decides, as the OCI spec allows for mediaType-less documents.
    // `"manifests": null` is an empty index (Go's ocispec.Index with a nil slice and no MediaType).
    const indexShaped = Array.isArray(o.manifests) || (o.manifests === null && o.config === undefined);
    mediaType = indexShaped ? MediaType.OciIndex : MediaType.OciManifest;
  }
  const digest = digestOf(bytes);
  const common = {
    mediaType,
    digest,
    bytes,
    ...(o.artifactType !== undefined ? { artifactType: optionalString(o, 'artifactType', where)! } : {}),
    ...(o.annotations !== undefined ? { annotations: stringMap(o.annotations, `${where}.annotations`) } : {}),
    ...(o.subject !== undefined ? { subject: parseDescriptor(o.subject, `${where}.subject`) } : {}),
  };
  if (isIndexMediaType(mediaType)) {
    // Docker >= 25 writes `"manifests": null` in index.json of an empty layout.
    const list = o.manifests ?? [];
    if (!Array.isArray(list)) throw new LadingError('BAD_MANIFEST', `${where}: "manifests" must be an array`);
    if (list.length > 10000)
      throw new LadingError('LIMIT_EXCEEDED', `${where}: index lists ${list.length} manifests (limit 10000)`);
    const manifests = list.map((m, i) => parseDescriptor(m, `${where}.manifests[${i}]`));
    return { kind: 'index', ...common, manifests };
  }
  if (isManifestMediaType(mediaType)) {
    const config = parseDescriptor(o.config, `${where}.config`);
    if (!Array.isArray(o.layers)) throw new LadingError('BAD_MANIFEST', `${where}: "layers" must be an array`);
    if (o.layers.length > 10000)
      throw new LadingError('LIMIT_EXCEEDED', `${where}: manifest lists ${o.layers.length} layers (limit 10000)`);
    const layers = o.layers.map((l, i) => parseDescriptor(l, `${where}.layers[${i}]`));
    return { kind: 'manifest', ...common, config, layers };
  }
  throw new LadingError('BAD_MANIFEST', `${where}: unsupported manifest media type ${mediaType}`);
}

export function parseImageConfig(bytes: Buffer, where: string): ImageConfig {
  const o = expectObject(parseJsonBytes(bytes, where), where);
  const rootfs = o.rootfs;
  const diffIds: Digest[] = [];
  if (rootfs !== undefined) {
    const r = expectObject(rootfs, `${where}.rootfs`);
    const ids = r.diff_ids ?? [];
    if (!Array.isArray(ids)) throw new LadingError('BAD_MANIFEST', `${where}: rootfs.diff_ids must be an array`);
    ids.forEach((d, i) => diffIds.push(parseDigest(d, `${where}.rootfs.diff_ids[${i}]`)));
  }
  const cfg: ImageConfig = { digest: digestOf(bytes), bytes, diffIds };
  for (const k of ['os', 'architecture', 'variant', 'os.version'] as const) {
    const v = o[k];
    if (typeof v === 'string' && v !== '') cfg[k] = v;
  }
  return cfg;
}

export function configPlatform(cfg: ImageConfig): Platform | undefined {
  if (cfg.os === undefined || cfg.architecture === undefined) return undefined;
  const p: Platform = { os: cfg.os, architecture: cfg.architecture };
  if (cfg.variant) p.variant = cfg.variant;
  if (cfg['os.version']) p['os.version'] = cfg['os.version'];
  return p;
}

/** Attestation manifests (buildx provenance/SBOM) are not runnable images. */
export function isAttestation(d: Descriptor): boolean {
  return d.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' || isUnknownPlatform(d.platform);
}

/** Serialises a document lading writes itself: compact JSON, keys in the order given. */
export function serializeJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

function descriptorFields(d: Descriptor, family: 'oci' | 'docker'): Record<string, unknown> {
  // Docker's own tools write mediaType, size, digest; OCI's write mediaType, digest, size.
  const out: Record<string, unknown> =
    family === 'docker'
      ? { mediaType: d.mediaType, size: d.size, digest: d.digest }
      : { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.urls) out.urls = d.urls;
  if (d.annotations) out.annotations = d.annotations;
  if (d.platform) out.platform = d.platform;
  if (d.artifactType) out.artifactType = d.artifactType;
  return out;
}

/**
 * Builds a manifest from scratch: what lading pushes for a legacy docker archive, which
 * stores none. Deterministic, so the digest `inspect` shows is the one `push` produces.
 */
export function buildManifest(mediaType: string, config: Descriptor, layers: Descriptor[]): ImageManifest {
  const family = mediaType === MediaType.DockerManifest ? 'docker' : 'oci';
  const bytes = serializeJson({
    schemaVersion: 2,
    mediaType,
    config: descriptorFields(config, family),
    layers: layers.map((l) => descriptorFields(l, family)),
  });
  return { kind: 'manifest', mediaType, digest: digestOf(bytes), bytes, config, layers };
}
