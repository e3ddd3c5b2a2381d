import { openArchive, type ArchiveInput } from '../archive/archive';
import { LadingError } from '../errors';
import { MediaType } from '../image/media-types';
import { platformFields } from '../image/platform';
import type { ManifestInfo } from '../image/model';
import type { ImageSource } from '../image/source';
import { mapLimit } from '../util/concurrency';
import { BlobCopier } from './blobs';
import type { Destination, ManifestToPut } from './destination';
import type { CopyEvent } from './events';
import { composeManifests } from './manifests';
import type { CopyOptions, CopyResult } from './options';
import { planCopy, type CopyPlan } from './plan';

export type { CopyOptions, CopyResult, PlannedBlob } from './options';

/**
 * Copies one image from a source to a destination, in four steps:
 *
 * 1. plan: choose the image, platforms and tags; list the blobs they need (`planCopy`);
 * 2. blobs: put each blob in place, skipping what the destination has (`BlobCopier`);
 * 3. manifests: compose the documents, rewritten only where a blob changed (`composeManifests`);
 * 4. tags: push the documents children first, and the tags last, once everything they
 *    name is in place. A failure before step 4 leaves no tag, so nothing is ever lost.
 *
 * A one-pass source (a compressed archive, standard input) is read once: its large blobs are
 * offered to step 2 while they stream by, before the documents that explain them are read.
 */
export class CopyEngine {
  private readonly emit: (e: CopyEvent) => void;
  private readonly blobs: BlobCopier;

  constructor(
    private readonly dest: Destination,
    private readonly opts: CopyOptions = {},
  ) {
    this.emit = opts.onEvent ?? (() => undefined);
    const codec = dest.capabilities.compressesLayers ? (opts.compress ?? 'gzip') : 'none';
    this.blobs = new BlobCopier(dest, codec, opts, this.emit);
  }

  /** Opens the input and copies from it; a one-pass input uploads its large blobs as they stream by. */
  async copy(input: ArchiveInput): Promise<CopyResult> {
    await this.opts.cache?.load();
    const source = await openArchive(input, {
      signal: this.opts.signal,
      logger: this.opts.logger,
      onOffer: (offer) => this.blobs.take(offer),
      verifyDiffIds: this.opts.verifyDiffIds,
    });
    try {
      return await this.copyFrom(source);
    } finally {
      await source.close();
    }
  }

  /** Copies from an open source. */
  async copyFrom(source: ImageSource): Promise<CopyResult> {
    await this.opts.cache?.load();
    const plan = await planCopy(source, this.opts, this.dest.capabilities.foreignLayerUrls);
    const blobs = this.blobs;
    this.emit({
      type: 'plan',
      blobs: plan.jobs.length,
      bytes: plan.jobs.reduce((n, j) => n + j.blob.size, 0),
      manifests: plan.choice.manifests.length,
    });
    if (this.dest.capabilities.batchesExistenceChecks) blobs.askAhead(plan.jobs);
    await mapLimit(plan.jobs, this.opts.concurrency ?? 3, (job) => blobs.place(source, job));
    this.opts.signal?.throwIfAborted();
    if (this.opts.dryRun && plan.jobs.some((j) => j.placed === undefined)) return this.planOnly(plan, blobs);

    const ociOnly = !this.dest.capabilities.manifestMediaTypes.includes(MediaType.DockerManifest);
    const docs = await composeManifests(source, plan, ociOnly);
    if (!this.opts.dryRun) {
      for (const a of docs.artifacts) await this.putArtifact(a);
      for (const c of docs.children) await this.putManifest(c, undefined);
      if (plan.tags.length === 0) await this.putManifest(docs.top, undefined);
      for (const t of plan.tags) await this.putManifest(docs.top, t);
    }
    const result: CopyResult = {
      digest: docs.top.digest,
      mediaType: docs.top.mediaType,
      reference: this.dest.pinned(docs.top.digest),
      tags: plan.tags,
      tagSource: plan.tagSource,
      manifests: docs.manifests,
      blobs: { ...blobs.stats },
      rewritten: docs.rewritten,
    };
    if (this.opts.dryRun) result.plan = plan.jobs.map((j) => j.planned!).filter(Boolean);
    if (plan.image.warnings) result.warnings = plan.image.warnings;
    return result;
  }

  /** A dry run whose compression would decide the digests: the plan is all there is to show. */
  private planOnly(plan: CopyPlan, blobs: BlobCopier): CopyResult {
    return {
      digest: null,
      mediaType: plan.image.mediaType,
      reference: null,
      tags: plan.tags,
      tagSource: plan.tagSource,
      manifests: plan.choice.manifests.map((m) => ({
        // null: a legacy image's manifest depends on how its layers are compressed.
        digest: (m.descriptor as ManifestInfo['descriptor'] | undefined)?.digest ?? null,
        mediaType: (m.descriptor as ManifestInfo['descriptor'] | undefined)?.mediaType ?? plan.image.mediaType,
        platform: m.platform ? platformFields(m.platform) : null,
      })) as CopyResult['manifests'],
      blobs: { ...blobs.stats },
      rewritten: [],
      plan: plan.jobs.map((j) => j.planned!).filter(Boolean),
    };
  }

  private async putManifest(p: ManifestToPut, tag: string | undefined): Promise<void> {
    if (tag === undefined && (await this.dest.hasManifest(p.digest, this.opts.signal))) return;
    await this.dest.putManifest(p, tag, this.opts.signal);
    this.emit({ type: 'manifest', digest: p.digest, mediaType: p.mediaType, tag });
  }

  /** An artifact the index names: a destination that refuses it fails the whole index. */
  private async putArtifact(a: ManifestToPut): Promise<void> {
    try {
      await this.putManifest(a, undefined);
    } catch (e) {
      if (!(e instanceof LadingError)) throw e;
      throw new LadingError(
        e.code,
        `${e.message}; the index lists artifact ${a.digest} (${a.mediaType}), which ${this.dest.name} refused`,
        { cause: e, remedy: 'choose-platforms' },
      );
    }
  }
}

/** Copies an image from an archive (a path, a stream, a random-access source) to a destination. */
export function copyImage(input: ArchiveInput, dest: Destination, opts: CopyOptions = {}): Promise<CopyResult> {
  return new CopyEngine(dest, opts).copy(input);
}
