import type { Readable } from 'node:stream';
import { LadingError } from '../errors';
import type { Digest } from '../image/digest';
import { layerCompressionOf, type Compression } from '../image/media-types';
import type { BlobExpectation, ImageSource, OfferedBlob, PlacedBlob } from '../image/source';
import type { Destination } from './destination';
import type { CopyEvent } from './events';
import type { CopyOptions, CopyResult } from './options';
import type { BlobJob } from './plan';

type Codec = Exclude<Compression, 'none'>;

/**
 * Puts blobs in place at a destination: each one skipped when the destination has it (or its
 * compressed form), mounted when the destination can link it, else uploaded, as stored or
 * compressed by the source on the way. Counts what it did and tells the listener.
 */
export class BlobCopier {
  readonly stats: CopyResult['blobs'] = { uploaded: 0, skipped: 0, mounted: 0, bytesUploaded: 0 };
  private readonly known = new Map<Digest, Promise<boolean>>();
  private uploadsStarted = 0;
  private ids = 0;

  constructor(
    private readonly dest: Destination,
    /** The codec for layers stored uncompressed; 'none' keeps them so. */
    private readonly codec: Compression,
    private readonly opts: CopyOptions,
    private readonly emit: (e: CopyEvent) => void,
  ) {}

  private get level(): number | undefined {
    return this.opts.compressionLevel;
  }

  /** Whether the destination has a blob, asked once per digest per copy. */
  private hasBlob(digest: Digest): Promise<boolean> {
    let p = this.known.get(digest);
    if (p === undefined) {
      p = this.dest.hasBlob(digest, this.opts.signal);
      this.known.set(digest, p);
    }
    return p;
  }

  /**
   * For a destination that batches existence checks: asks at once about every blob whose
   * digest is known before reading it (declared, claimed by its name, a diff_id, a cached
   * compressed digest), so a whole re-push is answered in one request instead of one per wave
   * of uploads. A question that turns out unneeded costs a digest in the batch.
   */
  askAhead(jobs: BlobJob[]): void {
    for (const job of jobs) {
      const candidates = [job.declared?.digest ?? job.blob.claimed ?? job.diffId];
      if (job.kind === 'layer' && job.diffId && this.codec !== 'none') {
        candidates.push(this.opts.cache?.get(job.diffId, this.codec, this.level)?.digest);
      }
      for (const d of candidates) if (d !== undefined) this.hasBlob(d).catch(() => undefined);
    }
  }

  /**
   * Takes a blob a one-pass source offers as it streams by, before the documents that say what
   * it is: uploaded (an uncompressed one compressed on the way, as the plan would do it), unless
   * its name states a digest the destination already has, or this is a dry run.
   */
  async take(offer: OfferedBlob): Promise<PlacedBlob | undefined> {
    const codec = offer.compression === 'none' ? this.codec : 'none';
    const claimed = offer.blob.claimed;
    if (this.opts.dryRun || (codec === 'none' && claimed !== undefined && (await this.hasBlob(claimed))))
      return undefined;
    const label = offer.blob.name;
    if (codec === 'none') {
      const out = await this.upload(
        label,
        'upload',
        offer.blob.size,
        () => offer.open(),
        claimed && { digest: claimed, size: offer.blob.size },
      );
      return { ...out, compression: offer.compression };
    }
    const out = await this.upload(label, 'compress+upload', offer.blob.size, () =>
      offer.openCompressed(codec, this.level),
    );
    return { ...out, compression: codec };
  }

  /** Puts one job's blob in place (or, in a dry run, says what would be done). */
  async place(source: ImageSource, job: BlobJob): Promise<void> {
    this.opts.signal?.throwIfAborted();
    const what = `${source.where}: ${job.label} (${job.blob.key})`;
    const stored = job.kind === 'config' ? 'none' : await source.storedCompression(job.blob);
    const declared = job.declared ? layerCompressionOf(job.declared.mediaType) : undefined;
    if (job.kind === 'layer' && declared !== undefined && declared !== stored) {
      throw new LadingError(
        'BAD_MANIFEST',
        `${what}: media type ${job.declared!.mediaType} says ${declared} but the bytes are ${stored === 'none' ? 'uncompressed' : stored}`,
      );
    }
    const codec: Compression = job.kind === 'layer' && stored === 'none' ? this.codec : 'none';

    // What the stored bytes must be.
    const declaredDigest = job.declared?.digest ?? job.blob.claimed;
    const expectDigest = declaredDigest ?? (stored === 'none' ? job.diffId : undefined);
    const expectSize = job.declared?.size;
    if (job.diffId && stored === 'none' && expectDigest !== undefined && expectDigest !== job.diffId) {
      throw new LadingError(
        'DIFF_ID_MISMATCH',
        `${what}: the layer is uncompressed, so its digest ${expectDigest} must equal its diff_id ${job.diffId}`,
      );
    }

    const streamed = source.streamed(job.blob);
    if (streamed) {
      // Read (and maybe placed) while a one-pass source streamed by: held to the plan now.
      const f = streamed.facts;
      if (expectDigest && f.digest !== expectDigest) {
        throw new LadingError('DIGEST_MISMATCH', `${what}: content has digest ${f.digest}, expected ${expectDigest}`);
      }
      if (expectSize !== undefined && f.size !== expectSize) {
        throw new LadingError('SIZE_MISMATCH', `${what}: ${f.size} bytes, expected ${expectSize}`);
      }
      if (job.diffId && f.diffId && f.diffId !== job.diffId) {
        throw new LadingError(
          'DIFF_ID_MISMATCH',
          `${what}: uncompressed content has digest ${f.diffId}, the config's diff_id is ${job.diffId}`,
        );
      }
      const placed = streamed.placed;
      if (placed && placed.compression !== f.compression && f.diffId) {
        await this.opts.cache?.put(f.diffId, placed.compression as Codec, this.level, {
          digest: placed.digest,
          size: placed.size,
        });
      }
      job.placed = placed ?? { digest: f.digest, size: f.size, compression: f.compression };
      if (!placed) this.skipped(job, 'exists');
      return;
    }

    if (codec === 'none') {
      const digest =
        expectDigest ?? (await source.blobFacts(job.blob, { diffId: false, signal: this.opts.signal })).digest;
      const size = expectSize ?? job.blob.size;
      job.placed = { digest, size, compression: stored };
      if (await this.hasBlob(digest)) return this.skipped(job, 'exists');
      if (this.opts.dryRun) {
        job.planned = { label: job.label, action: 'upload', digest, size };
        return;
      }
      // The diff_id is the only digest a legacy archive states for a compressed layer; where the
      // archive declares the layer's own digest, that check suffices unless asked for more.
      const holdToDiffId =
        job.kind === 'layer' &&
        stored !== 'none' &&
        job.diffId &&
        (this.opts.verifyDiffIds === true || declaredDigest === undefined);
      const expect: BlobExpectation = { what, digest, size };
      if (holdToDiffId) expect.diffId = { digest: job.diffId!, compression: stored };
      const out = await this.upload(job.label, 'upload', size, () => source.open(job.blob, expect), { digest, size });
      job.placed = { ...out, compression: stored };
      return;
    }

    // An uncompressed layer to compress: maybe the destination has its compressed form already,
    // or, compressed for another repository earlier, can link it from there.
    const cached = job.diffId ? this.opts.cache?.get(job.diffId, codec, this.level) : undefined;
    if (cached && (await this.hasBlob(cached.digest))) {
      job.placed = { ...cached, compression: codec };
      return this.skipped(job, 'cached');
    }
    if (cached && !this.opts.dryRun && (await this.dest.mountBlob?.(cached.digest, cached.size, this.opts.signal))) {
      job.placed = { ...cached, compression: codec, mounted: true };
      this.stats.mounted++;
      this.emit({
        type: 'blob-skip',
        id: job.key,
        label: job.label,
        digest: cached.digest,
        size: cached.size,
        reason: 'mounted',
      });
      return;
    }
    if (this.opts.dryRun) {
      job.planned = { label: job.label, action: 'compress+upload', size: job.blob.size };
      return;
    }
    const expect: BlobExpectation = { what, digest: expectDigest, size: expectSize };
    const out = await this.upload(job.label, 'compress+upload', job.blob.size, () =>
      source.openCompressed(job.blob, codec, this.level, expect),
    );
    job.placed = { ...out, compression: codec };
    if (job.diffId) await this.opts.cache?.put(job.diffId, codec, this.level, { digest: out.digest, size: out.size });
  }

  private skipped(job: BlobJob, reason: 'exists' | 'cached'): void {
    const r = job.placed!;
    this.stats.skipped++;
    job.planned = {
      label: job.label,
      action: 'skip',
      digest: r.digest,
      size: r.size,
      reason: reason === 'exists' ? 'already in destination' : 'compressed form already in destination',
    };
    this.emit({ type: 'blob-skip', id: job.key, label: job.label, digest: r.digest, size: r.size, reason });
  }

  private async upload(
    label: string,
    action: 'upload' | 'compress+upload',
    storedSize: number,
    open: () => Readable,
    known?: { digest: Digest; size: number },
  ): Promise<{ digest: Digest; size: number; mounted?: boolean }> {
    // Draining: no new upload, except the first of this copy, so every run makes progress
    // however late it drains (blobs found already there are still skipped meanwhile).
    if (this.opts.drain?.aborted && this.uploadsStarted > 0) throw this.opts.drain.reason;
    this.uploadsStarted++;
    const id = `b${++this.ids}`;
    this.emit({ type: 'blob-start', id, label, size: known?.size ?? storedSize, action });
    const out = await this.dest.putBlob(
      { open, digest: known?.digest, size: known?.size },
      { signal: this.opts.signal, onProgress: (n) => this.emit({ type: 'blob-progress', id, bytes: n }) },
    );
    if (out.mounted) {
      this.stats.mounted++;
    } else {
      this.stats.uploaded++;
      this.stats.bytesUploaded += out.size;
    }
    this.emit({ type: 'blob-done', id, digest: out.digest, size: out.size });
    return out;
  }
}
