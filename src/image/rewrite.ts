import type { Descriptor } from './descriptor';
import { digestOf, type Digest } from './digest';
import { buildManifest, serializeJson, type ImageIndex, type ImageManifest } from './manifest';
import {
  familyOf,
  isForeignLayerMediaType,
  layerCompressionOf,
  layerMediaType,
  MediaType,
  type Compression,
  type MediaTypeFamily,
} from './media-types';
import type { Platform } from './platform';

/**
 * Manifest and index rewriting, as pure functions: stored document + what changed in, new
 * bytes out. A copy rewrites a document only when it must (a layer compressed on the way, a
 * destination that takes OCI types only); otherwise the stored bytes, and so the digest, are
 * kept. A rewrite keeps every field the stored document has (annotations, subject, ...).
 */

/** A document to push: its exact bytes, its media type and their digest. */
export interface ManifestDoc {
  bytes: Buffer;
  mediaType: string;
  digest: Digest;
}

/** A layer as it is now in place at the destination. */
export interface PlacedLayer {
  digest: Digest;
  size: number;
  compression: Compression;
}

/**
 * The descriptor of a layer once its blob is in place. Its stored media type is kept while it
 * still says the right compression; a foreign layer pushed as an ordinary one loses its foreign
 * media type and its URLs.
 */
export function placedLayerDescriptor(
  stored: Descriptor | undefined,
  family: MediaTypeFamily,
  placed: PlacedLayer,
  foreign: boolean,
): Descriptor {
  if (foreign) {
    const { urls: _urls, ...rest } = stored ?? ({} as Descriptor);
    return { ...rest, mediaType: layerMediaType(family, placed.compression), digest: placed.digest, size: placed.size };
  }
  // A media type lading does not know (an artifact's) is kept while the bytes are the stored ones.
  const said = stored ? layerCompressionOf(stored.mediaType) : undefined;
  const keep =
    stored !== undefined && (said === placed.compression || (said === undefined && stored.digest === placed.digest));
  const mediaType = keep ? stored.mediaType : layerMediaType(family, placed.compression);
  return { ...stored, mediaType, digest: placed.digest, size: placed.size };
}

/**
 * The OCI twin of a Docker media type (manifest, list, config, layers; foreign layers become
 * non-distributable ones); any other media type is returned as it is.
 */
export function ociMediaType(mt: string): string {
  switch (mt) {
    case MediaType.DockerManifest:
      return MediaType.OciManifest;
    case MediaType.DockerManifestList:
      return MediaType.OciIndex;
    case MediaType.DockerConfig:
      return MediaType.OciConfig;
  }
  const compression = layerCompressionOf(mt);
  if (compression === undefined || !mt.startsWith('application/vnd.docker.')) return mt;
  return layerMediaType('oci', compression, isForeignLayerMediaType(mt));
}

/**
 * Whether a manifest must become OCI: the destination takes OCI types only, or a layer is
 * zstd, which has no Docker schema 2 media type every client accepts.
 */
export function mustBecomeOci(manifestMediaType: string, layers: Descriptor[], ociOnly: boolean): boolean {
  if (familyOf(manifestMediaType) !== 'docker') return false;
  return ociOnly || layers.some((d) => layerCompressionOf(d.mediaType) === 'zstd');
}

function sameDescriptor(a: Descriptor, b: Descriptor): boolean {
  return (
    a.digest === b.digest &&
    a.size === b.size &&
    a.mediaType === b.mediaType &&
    JSON.stringify(a.urls ?? null) === JSON.stringify(b.urls ?? null)
  );
}

/**
 * The manifest to push for an image whose layers are now `layers`. `stored` is the archive's
 * own manifest, or undefined when it holds none (a legacy `docker save`): then one is built,
 * Docker schema 2 unless it must be OCI.
 */
export function rewriteManifest(
  stored: ImageManifest | undefined,
  config: Descriptor,
  layers: Descriptor[],
  opts: { ociOnly: boolean },
): { doc: ManifestDoc; rewritten: boolean } {
  const toOci = mustBecomeOci(stored?.mediaType ?? MediaType.DockerManifest, layers, opts.ociOnly);
  if (!stored) {
    const built = toOci
      ? buildManifest(
          MediaType.OciManifest,
          { ...config, mediaType: ociMediaType(config.mediaType) },
          layers.map((d) => ({ ...d, mediaType: ociMediaType(d.mediaType) })),
        )
      : buildManifest(MediaType.DockerManifest, config, layers);
    return { doc: { bytes: built.bytes, mediaType: built.mediaType, digest: built.digest }, rewritten: true };
  }
  const unchanged =
    !toOci && layers.length === stored.layers.length && layers.every((d, i) => sameDescriptor(d, stored.layers[i]!));
  if (unchanged)
    return { doc: { bytes: stored.bytes, mediaType: stored.mediaType, digest: stored.digest }, rewritten: false };

  const o = JSON.parse(stored.bytes.toString('utf8')) as {
    mediaType?: string;
    config: { mediaType: string };
    layers: Record<string, unknown>[];
  };
  o.layers = o.layers.map((l, i) => {
    const d = layers[i]!;
    const out: Record<string, unknown> = { ...l, mediaType: d.mediaType, digest: d.digest, size: d.size };
    if (d.urls === undefined) delete out.urls;
    return out;
  });
  let mediaType = stored.mediaType;
  if (toOci) {
    mediaType = MediaType.OciManifest;
    o.mediaType = mediaType;
    o.config.mediaType = ociMediaType(o.config.mediaType);
    for (const l of o.layers) l.mediaType = ociMediaType(String(l.mediaType));
  }
  const bytes = serializeJson(o);
  return { doc: { bytes, mediaType, digest: digestOf(bytes) }, rewritten: true };
}

/**
 * An index whose children may have changed: `children` maps a child's stored digest to its
 * descriptor now. Unchanged children and no OCI requirement: the stored bytes. A Docker list
 * becomes an OCI index when the destination takes OCI only or a child became OCI.
 */
export function rewriteIndex(
  idx: ImageIndex,
  children: ReadonlyMap<Digest, Descriptor>,
  opts: { ociOnly: boolean },
): { doc: ManifestDoc; rewritten: boolean } {
  const now = (d: Descriptor): Descriptor => children.get(d.digest) ?? d;
  const childChanged = idx.manifests.some((d) => now(d).digest !== d.digest);
  const docker = idx.mediaType === MediaType.DockerManifestList;
  const childBecameOci = idx.manifests.some(
    (d) => now(d).mediaType !== d.mediaType && familyOf(now(d).mediaType) === 'oci',
  );
  const toOci = docker && (opts.ociOnly || childBecameOci);
  if (!childChanged && !toOci) {
    return { doc: { bytes: idx.bytes, mediaType: idx.mediaType, digest: idx.digest }, rewritten: false };
  }
  const o = JSON.parse(idx.bytes.toString('utf8')) as { mediaType?: string; manifests: Record<string, unknown>[] };
  const mediaType = toOci ? MediaType.OciIndex : idx.mediaType;
  if (toOci) o.mediaType = mediaType;
  o.manifests = o.manifests.map((entry, i) => {
    const n = children.get(idx.manifests[i]!.digest);
    return n ? { ...entry, mediaType: n.mediaType, digest: n.digest, size: n.size } : entry;
  });
  const bytes = serializeJson(o);
  return { doc: { bytes, mediaType, digest: digestOf(bytes) }, rewritten: true };
}

/**
 * A new index holding only the given children (some platforms of a larger one). A Docker list
 * stays one while every child is Docker and the destination takes Docker types; else OCI.
 */
export function buildIndex(
  children: { descriptor: Descriptor; platform?: Platform }[],
  storedMediaType: string | undefined,
  opts: { ociOnly: boolean },
): ManifestDoc {
  const anyOci = children.some((c) => familyOf(c.descriptor.mediaType) === 'oci');
  const mediaType =
    storedMediaType === MediaType.DockerManifestList && !anyOci && !opts.ociOnly
      ? MediaType.DockerManifestList
      : MediaType.OciIndex;
  const manifests = children.map(({ descriptor: d, platform }) => {
    const out: Record<string, unknown> = { mediaType: d.mediaType, digest: d.digest, size: d.size };
    if (d.annotations) out.annotations = d.annotations;
    const p = d.platform ?? platform;
    if (p) out.platform = p;
    return out;
  });
  const bytes = serializeJson({ schemaVersion: 2, mediaType, manifests });
  return { bytes, mediaType, digest: digestOf(bytes) };
}
