import { LadingError } from '../errors';
import type { Descriptor } from '../image/descriptor';
import type { Digest } from '../image/digest';
import { familyOf, MediaType } from '../image/media-types';
import type { ManifestInfo } from '../image/model';
import { platformFields } from '../image/platform';
import { buildIndex, placedLayerDescriptor, rewriteIndex, rewriteManifest } from '../image/rewrite';
import type { ImageSource } from '../image/source';
import type { ManifestToPut } from './destination';
import type { CopyResult } from './options';
import type { BlobJob, CopyPlan } from './plan';

/** The documents a copy pushes, in the order it pushes them. */
export interface ManifestPushes {
  /** Index children lading does not interpret (artifacts), carried as they are. */
  artifacts: ManifestToPut[];
  /** Image manifests, then nested indexes bottom-up: every child before its parent. */
  children: ManifestToPut[];
  /** The document the tags name: the image's manifest or its index. */
  top: ManifestToPut;
  /** Documents lading wrote itself instead of pushing stored bytes. */
  rewritten: Digest[];
  manifests: CopyResult['manifests'];
}

/** The manifest of one image once its blobs are in place: stored bytes when nothing changed. */
function manifestFor(m: ManifestInfo, jobs: (BlobJob | undefined)[], ociOnly: boolean) {
  const stored = m.manifest && !m.synthesized ? m.manifest : undefined;
  const family = familyOf(stored?.mediaType ?? MediaType.DockerManifest);
  const layers = m.layers.map((l, i) => {
    const job = jobs[i];
    return job ? placedLayerDescriptor(l.descriptor, family, job.placed!, l.foreign) : l.descriptor!;
  });
  return rewriteManifest(stored, m.config!.descriptor, layers, { ociOnly });
}

/**
 * Composes the manifests and indexes to push once every blob of the plan is in place
 * (`job.placed` set): the stored documents where nothing changed, else rewritten (src/image/rewrite).
 */
export async function composeManifests(source: ImageSource, plan: CopyPlan, ociOnly: boolean): Promise<ManifestPushes> {
  const { image, choice } = plan;
  const rewritten: Digest[] = [];
  const docs: ManifestToPut[] = [];
  const now = new Map<Digest, Descriptor>();
  const placed = new Map<ManifestInfo, Descriptor>();
  const manifests: CopyResult['manifests'] = [];
  for (const m of choice.manifests) {
    const { doc, rewritten: changed } = manifestFor(m, plan.layerJobs.get(m)!, ociOnly);
    if (changed) rewritten.push(doc.digest);
    docs.push(doc);
    const d: Descriptor = { ...m.descriptor, mediaType: doc.mediaType, digest: doc.digest, size: doc.bytes.length };
    placed.set(m, d);
    // A legacy image has no descriptor of its own until its manifest is made.
    if ((m.descriptor as Descriptor | undefined) !== undefined) now.set(m.descriptor.digest, d);
    manifests.push({
      digest: doc.digest,
      mediaType: doc.mediaType,
      platform: m.platform ? platformFields(m.platform) : null,
      ...(m.attestation ? { attestation: true as const } : {}),
    });
  }

  if (choice.all && image.indexes.length > 0) {
    // The whole index: its artifacts too, since it names them; nested indexes bottom-up.
    const artifacts: ManifestToPut[] = [];
    for (const o of image.others) {
      const d = o.descriptor;
      if (!o.blob) {
        throw new LadingError(
          'BLOB_MISSING',
          `${source.where}: the index lists ${d.digest} (${d.mediaType}), which the archive lacks`,
          { remedy: 'choose-platforms' },
        );
      }
      artifacts.push({ bytes: await source.readSmall(o.blob, d), mediaType: d.mediaType, digest: d.digest });
    }
    const indexes = new Map<Digest, ManifestToPut>();
    for (const idx of [...image.indexes].reverse()) {
      const { doc, rewritten: changed } = rewriteIndex(idx, now, { ociOnly });
      if (changed) rewritten.push(doc.digest);
      now.set(idx.digest, { mediaType: doc.mediaType, digest: doc.digest, size: doc.bytes.length });
      indexes.set(idx.digest, doc);
    }
    const nested = image.indexes
      .slice(1)
      .reverse()
      .map((idx) => indexes.get(idx.digest)!);
    const top = indexes.get(image.indexes[0]!.digest)!;
    return { artifacts, children: [...docs, ...nested], top, rewritten, manifests };
  }
  if (choice.manifests.length === 1) {
    return { artifacts: [], children: [], top: docs[0]!, rewritten, manifests };
  }
  // Some platforms of an index: a new index of those.
  const top = buildIndex(
    choice.manifests.map((m) => ({ descriptor: placed.get(m)!, platform: m.platform })),
    image.indexes[0]?.mediaType,
    { ociOnly },
  );
  rewritten.push(top.digest);
  return { artifacts: [], children: docs, top, rewritten, manifests };
}
