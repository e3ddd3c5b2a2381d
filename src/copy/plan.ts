import { LadingError } from '../errors';
import type { Descriptor } from '../image/descriptor';
import type { Digest } from '../image/digest';
import type { ArchiveImage, BlobRef, ManifestInfo } from '../image/model';
import { formatPlatform } from '../image/platform';
import type { ImageSource, PlacedBlob } from '../image/source';
import type { CopyOptions, CopyResult, PlannedBlob } from './options';
import { archiveTags, selectImage, selectPlatforms, type PlatformChoice } from './select';

/** A blob to put in place: a config or a layer, one per stored blob however many manifests share it. */
export interface BlobJob {
  /** `config:KEY` or `layer:KEY`, KEY the stored blob's. */
  key: string;
  label: string;
  blob: BlobRef;
  kind: 'config' | 'layer';
  /** Declared descriptor (stored manifests) or undefined (legacy docker layers). */
  declared?: Descriptor;
  diffId?: Digest;
  /** Where it is once in place. */
  placed?: PlacedBlob;
  /** Dry runs: what would happen. */
  planned?: PlannedBlob;
}

/** What a copy will do: the image and platforms chosen, the tags, and the blobs to put in place. */
export interface CopyPlan {
  image: ArchiveImage;
  choice: PlatformChoice;
  tags: string[];
  tagSource: CopyResult['tagSource'];
  /** Every blob, in the order the source stores them. */
  jobs: BlobJob[];
  /** Per manifest, the job of each layer; undefined for a foreign layer kept as a reference. */
  layerJobs: Map<ManifestInfo, (BlobJob | undefined)[]>;
}

/** The tags to write and where they came from. */
function chooseTags(image: ArchiveImage, opts: CopyOptions): { tags: string[]; tagSource: CopyResult['tagSource'] } {
  const given = opts.tags ?? [];
  if (given.length > 0 || !opts.tagsFromArchive) return { tags: given, tagSource: 'given' };
  const own = archiveTags(image);
  return own.length > 0 ? { tags: own, tagSource: 'archive' } : { tags: ['latest'], tagSource: 'default' };
}

/**
 * Chooses the image, its platforms and tags, and lists the blobs they need. Fails, before
 * anything is sent, when the source lacks a blob the chosen manifests need.
 */
export async function planCopy(source: ImageSource, opts: CopyOptions, foreignUrls: boolean): Promise<CopyPlan> {
  // A legacy image's digest exists once its manifest is synthesized (reads its layers).
  if (opts.image?.startsWith('sha256:')) {
    for (const img of source.images) await source.resolveSynthesized(img, opts.signal);
  }
  const image = selectImage(source.images, opts.image, source.where);
  const choice = selectPlatforms(image, opts.platforms ?? [], source.where);
  const { tags, tagSource } = chooseTags(image, opts);
  if (tagSource !== 'given') {
    opts.logger?.(
      `tags: ${tags.join(', ')} (${tagSource === 'archive' ? "the image's own, from the archive" : 'the archive names none'})`,
    );
  }

  const jobs = new Map<string, BlobJob>();
  const job = (kind: BlobJob['kind'], blob: BlobRef, label: string): BlobJob => {
    const key = `${kind}:${blob.key}`;
    let j = jobs.get(key);
    if (j === undefined) jobs.set(key, (j = { key, label, blob, kind }));
    return j;
  };
  const layerJobs = new Map<ManifestInfo, (BlobJob | undefined)[]>();
  for (const m of choice.manifests) {
    const plat = m.platform ? formatPlatform(m.platform) : 'image';
    if (m.config && !m.config.blob) {
      throw new LadingError(
        'BLOB_MISSING',
        `${source.where}: config ${m.config.descriptor.digest} of ${plat} is not in the archive`,
      );
    }
    if (m.config?.blob) job('config', m.config.blob, `config of ${plat}`).declared ??= m.config.descriptor;
    const perLayer = m.layers.map((l, i) => {
      // Foreign layers travel as references unless asked, or unless the destination keeps no URLs.
      const asReference = l.foreign && !((opts.pushForeignLayers || !foreignUrls) && l.blob);
      if (asReference) return undefined;
      if (!l.blob) {
        throw new LadingError(
          'BLOB_MISSING',
          `${source.where}: layer ${i} of ${plat} (${l.descriptor?.digest ?? '?'}) is not in the archive`,
        );
      }
      const j = job('layer', l.blob, `layer ${i + 1}/${m.layers.length} of ${plat}`);
      if (l.descriptor && !l.foreign) j.declared = l.descriptor;
      if (l.diffId) j.diffId = l.diffId;
      return j;
    });
    layerJobs.set(m, perLayer);
  }
  const ordered = [...jobs.values()].sort((a, b) => a.blob.offset - b.blob.offset);
  return { image, choice, tags, tagSource, jobs: ordered, layerJobs };
}
