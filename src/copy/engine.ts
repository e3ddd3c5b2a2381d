import { PassThrough, Readable, pipeline, type Transform } from 'node:stream';
import { openArchive, type ArchiveInput, type ImageArchive } from '../archive/archive';
import type { BlobFacts } from '../archive/analyze';
import type { Entry } from '../archive/entries';
import type { ArchiveImage, BlobRef, LayerInfo, ManifestInfo } from '../archive/model';
import { createCompressor } from '../compress/codecs';
import type { DigestCache } from '../compress/cache';
import { MAGIC_BYTES, supportedCompression } from '../compress/detect';
import { LadingError } from '../errors';
import type { Descriptor } from '../image/descriptor';
import { digestOf, type Digest } from '../image/digest';
import { buildManifest, serializeJson, type ImageIndex } from '../image/manifest';
import {
  familyOf,
  isIndexMediaType,
  layerCompressionOf,
  layerMediaType,
  MediaType,
  type Compression,
} from '../image/media-types';
import type { Platform } from '../image/platform';
import { mapLimit } from '../util/concurrency';
import type { Destination, ManifestToPut } from './destination';
import type { CopyEvent, CopyEventListener } from './events';
import { archiveTags, selectImage, selectPlatforms } from './select';
import { DiffIdCheck, VerifyingStream } from './verify';

export interface CopyOptions {
  /** Name or digest of the image to take from a multi-image archive. */
  image?: string;
  /** Platforms to push; empty or undefined: all, the original index bytes preserved. */
  platforms?: Platform[];
  /** What to do with uncompressed layers (default gzip); compressed layers are kept. */
  compress?: Compression;
  compressionLevel?: number;
  /** Tags to write once everything they need is in place. */
  tags?: string[];
  /**
   * When `tags` is empty: the tags the chosen image carries in the archive (`RepoTags`,
   * `org.opencontainers.image.ref.name`, `io.containerd.image.name`), `latest` when it names none.
   */
  tagsFromArchive?: boolean;
  /**
   * Also hold compressed layers whose digest the archive declares (OCI layouts) to the config's
   * diff_ids, inflating each one (~1 CPU-second per GiB). Without it those layers are verified
   * against their declared digest only, as skopeo and crane do; layers the archive declares no
   * digest for (legacy `docker save` with compressed layers) are always checked. @default false
   */
  verifyDiffIds?: boolean;
  /** Blobs in flight at once (default 3). */
  concurrency?: number;
  signal?: AbortSignal;
  /**
   * A softer stop than `signal`: once aborted, no new upload is started (but the first, so a run
   * always makes progress), those in flight finish, and the copy then fails with the signal's
   * reason, writing no manifest. For a caller with a
   * deadline that will run the copy again (the CDK handler's next invocation): the bytes in
   * flight are not thrown away.
   */
  drain?: AbortSignal;
  onEvent?: CopyEventListener;
  /** Compressed-digest cache; null disables it. */
  cache?: DigestCache | null;
  /** Push foreign (non-distributable) layers the archive holds as ordinary layers, instead of by reference. */
  pushForeignLayers?: boolean;
  /** Convert Docker media types to OCI (an OCI layout destination wants them). */
  oci?: boolean;
  /** Plan only: ask the destination what it has, upload and write nothing. */
  dryRun?: boolean;
  logger?: (line: string) => void;
}

export interface PlannedBlob {
  label: string;
  action: 'upload' | 'compress+upload' | 'skip' | 'foreign';
  digest?: Digest;
  size?: number;
  reason?: string;
}

export interface CopyResult {
  /** null only for a dry run whose compression would decide it. */
  digest: Digest | null;
  mediaType: string;
  reference: string | null;
  tags: string[];
  /** Where the tags came from: given, the archive's own, or the `latest` default. */
  tagSource: 'given' | 'archive' | 'default';
  manifests: { digest: Digest; mediaType: string; platform: Platform | null; attestation?: true }[];
  /** `mounted`: linked by the destination from another repository (a cross-repository mount), nothing sent. */
  blobs: { uploaded: number; skipped: number; mounted: number; bytesUploaded: number };
  /** Under dryRun: what would happen to each blob. */
  plan?: PlannedBlob[];
  /** Documents lading wrote itself instead of pushing stored bytes. */
  rewritten: Digest[];
}

interface Uploaded {
  digest: Digest;
  size: number;
  compression: Compression;
}

/** A blob to put in place: a config or a layer, deduplicated by archive entry. */
interface Job {
  key: string;
  label: string;
  ref: BlobRef;
  kind: 'config' | 'layer';
  /** Declared descriptor (stored manifests) or undefined (legacy docker layers). */
  declared?: Descriptor;
  diffId?: Digest;
  result?: Uploaded;
  /** For dry runs. */
  planned?: PlannedBlob;
}

/** What a one-pass read did with a large entry while it streamed by. */
interface StreamedUpload {
  facts: BlobFacts;
  uploaded?: Uploaded;
}

export class CopyEngine {
  private readonly emit: (e: CopyEvent) => void;
  private readonly compress: Compression;
  private readonly streamedUploads = new Map<string, StreamedUpload>();
  private readonly known = new Map<Digest, Promise<boolean>>();
  private stats = { uploaded: 0, skipped: 0, mounted: 0, bytesUploaded: 0 };
  private uploadsStarted = 0;
  private ids = 0;

  constructor(
    private readonly dest: Destination,
    private readonly opts: CopyOptions = {},
  ) {
    this.emit = opts.onEvent ?? (() => undefined);
    this.compress = opts.compress ?? 'gzip';
  }

  /** Opens the archive; a one-pass source uploads its large entries as they stream by. */
  async copy(input: ArchiveInput): Promise<CopyResult> {
    const archive = await openArchive(input, {
      ...(this.opts.signal ? { signal: this.opts.signal } : {}),
      ...(this.opts.logger ? { logger: this.opts.logger } : {}),
      onStreamedEntry: (entry, body) => this.streamedEntry(entry, body),
    });
    try {
      return await this.copyFrom(archive);
    } finally {
      await archive.close();
    }
  }

  private level(): number | undefined {
    return this.opts.compressionLevel;
  }

  /**
   * One-pass sources: a large entry is uploaded while it is read, before manifest.json or
   * index.json (often at the end) says what it is. Uncompressed ones are compressed on
   * the way, as the plan would do. A blob whose name states a digest the destination
   * already has is only hashed.
   */
  private async streamedEntry(entry: Entry, body: AsyncIterable<Buffer>): Promise<BlobFacts> {
    const it = body[Symbol.asyncIterator]();
    const first: Buffer[] = [];
    let have = 0;
    let done = false;
    while (have < MAGIC_BYTES) {
      const r = await it.next();
      if (r.done) {
        done = true;
        break;
      }
      first.push(r.value);
      have += r.value.length;
    }
    const head = Buffer.concat(first);
    const where = `${entry.path}`;
    const compression = supportedCompression(head, where);
    const rest = async function* (): AsyncGenerator<Buffer> {
      if (head.length > 0) yield head;
      if (done) return;
      while (true) {
        const r = await it.next();
        if (r.done) return;
        yield r.value;
      }
    };
    const transform = compression === 'none' ? this.compress : 'none';
    const m = /^blobs\/(sha256|sha512)\/([a-f0-9]+)$/.exec(entry.path);
    const claimed = m ? (`${m[1]}:${m[2]}` as Digest) : undefined;
    const verify = new VerifyingStream({ what: `${where}`, ...(claimed ? { digest: claimed } : {}), size: entry.size });
    const source = Readable.from(rest());
    const signal = this.opts.signal;

    // As for a file (runJob): a compressed layer's uncompressed digest is taken when the archive
    // declares no digest for it, or when asked; it is compared once the config is known.
    const diffIds =
      compression !== 'none' && (this.opts.verifyDiffIds === true || claimed === undefined)
        ? new DiffIdCheck(compression, { what: where })
        : undefined;
    const checked: Transform[] = diffIds ? [verify, diffIds] : [verify];
    const factsOf = (): BlobFacts => {
      const facts: BlobFacts = { digest: verify.digest!, size: verify.size, compression };
      if (compression === 'none') facts.diffId = verify.digest!;
      else if (diffIds?.diffId) facts.diffId = diffIds.diffId;
      return facts;
    };

    const skip = this.opts.dryRun || (transform === 'none' && claimed !== undefined && (await this.hasBlob(claimed)));
    if (skip) {
      await new Promise<void>((resolve, reject) =>
        pipeline([source, ...checked, new PassThrough().resume()], (e) => (e ? reject(e) : resolve())),
      );
      const facts = factsOf();
      this.streamedUploads.set(entry.path, { facts });
      return facts;
    }
    const id = this.nextId();
    this.emit({
      type: 'blob-start',
      id,
      label: entry.path,
      size: entry.size,
      action: transform === 'none' ? 'upload' : 'compress+upload',
    });
    let opened = false;
    const out = await this.dest.putBlob(
      {
        open: () => {
          if (opened)
            throw new LadingError(
              'NETWORK',
              `${where}: the upload failed and a one-pass source (compressed archive or stdin) cannot be re-read; run the command again: what was uploaded is kept`,
            );
          opened = true;
          const tail = new PassThrough({ highWaterMark: 1024 * 1024 });
          const fail = (e: NodeJS.ErrnoException | null): void => {
            if (e) tail.destroy(e);
          };
          if (transform === 'none') pipeline([source, ...checked, tail], fail);
          else pipeline(source, verify, createCompressor(transform, this.level()), tail, fail);
          return tail;
        },
        ...(transform === 'none' && claimed ? { digest: claimed, size: entry.size } : {}),
      },
      { ...(signal ? { signal } : {}), onProgress: (n) => this.emit({ type: 'blob-progress', id, bytes: n }) },
    );
    const facts = factsOf();
    const uploaded: Uploaded = {
      digest: out.digest,
      size: out.size,
      compression: transform === 'none' ? compression : transform,
    };
    this.count(out);
    this.emit({ type: 'blob-done', id, digest: out.digest, size: out.size });
    if (transform !== 'none' && facts.diffId) await this.opts.cache?.put(facts.diffId, transform, this.level(), out);
    this.streamedUploads.set(entry.path, { facts, uploaded });
    return facts;
  }

  private nextId(): string {
    return `b${++this.ids}`;
  }

  /** Copies from an already opened archive. */
  async copyFrom(archive: ImageArchive): Promise<CopyResult> {
    const signal = this.opts.signal;
    await this.opts.cache?.load();
    // A legacy image's digest exists once its manifest is synthesized (reads its layers).
    if (this.opts.image?.startsWith('sha256:'))
      for (const img of archive.images) await archive.resolveSynthesized(img, signal);
    const image = selectImage(archive.images, this.opts.image, archive.where);
    const choice = selectPlatforms(image, this.opts.platforms ?? [], archive.where);
    const given = this.opts.tags ?? [];
    const own = given.length === 0 && this.opts.tagsFromArchive ? archiveTags(image) : [];
    const tagSource: CopyResult['tagSource'] =
      given.length > 0 || !this.opts.tagsFromArchive ? 'given' : own.length > 0 ? 'archive' : 'default';
    const tags = tagSource === 'given' ? given : tagSource === 'archive' ? own : ['latest'];
    if (tagSource !== 'given')
      this.opts.logger?.(
        `tags: ${tags.join(', ')} (${tagSource === 'archive' ? "the image's own, from the archive" : 'the archive names none'})`,
      );
    const jobs = new Map<string, Job>();
    const layerJobs = new Map<ManifestInfo, (Job | undefined)[]>();
    for (const m of choice.manifests) {
      const plat = m.platform
        ? `${m.platform.os}/${m.platform.architecture}${m.platform.variant ? `/${m.platform.variant}` : ''}`
        : 'image';
      if (m.config?.blob) {
        const key = `config:${m.config.blob.entry.path}`;
        const job = jobs.get(key) ?? {
          key,
          label: `config of ${plat}`,
          ref: m.config.blob,
          kind: 'config',
          declared: m.config.descriptor,
        };
        jobs.set(key, job);
      } else if (m.config) {
        throw new LadingError(
          'BLOB_MISSING',
          `${archive.where}: config ${m.config.descriptor.digest} of ${plat} is not in the archive`,
        );
      }
      layerJobs.set(
        m,
        m.layers.map((l, i) => {
          // Foreign layers travel as references unless asked (registries may refuse their URLs).
          if (l.foreign && !(this.opts.pushForeignLayers && l.blob)) return undefined;
          if (!l.blob)
            throw new LadingError(
              'BLOB_MISSING',
              `${archive.where}: layer ${i} of ${plat} (${l.descriptor?.digest ?? '?'}) is not in the archive`,
            );
          const key = `layer:${l.blob.entry.path}`;
          const job: Job = jobs.get(key) ?? {
            key,
            label: `layer ${i + 1}/${m.layers.length} of ${plat}`,
            ref: l.blob,
            kind: 'layer',
          };
          if (l.descriptor && !l.foreign) job.declared = l.descriptor;
          if (l.diffId) job.diffId = l.diffId;
          jobs.set(key, job);
          return job;
        }),
      );
    }
    const all = [...jobs.values()].sort((a, b) => a.ref.entry.dataOffset - b.ref.entry.dataOffset);
    this.emit({
      type: 'plan',
      blobs: all.length,
      bytes: all.reduce((n, j) => n + j.ref.entry.size, 0),
      manifests: choice.manifests.length,
    });

    this.askAhead(all);
    await mapLimit(all, this.opts.concurrency ?? 3, (job) => this.runJob(archive, job));
    signal?.throwIfAborted();
    if (this.opts.dryRun && all.some((j) => j.result === undefined)) {
      // Compression decides the digests: the plan is all there is to show.
      return {
        digest: null,
        mediaType: image.mediaType,
        reference: null,
        tags,
        tagSource,
        manifests: choice.manifests.map((m) => ({
          digest: m.descriptor?.digest ?? null,
          mediaType: m.descriptor?.mediaType ?? image.mediaType,
          platform: m.platform ? platformJson(m.platform) : null,
        })) as CopyResult['manifests'],
        blobs: { ...this.stats },
        rewritten: [],
        plan: all.map((j) => j.planned!).filter(Boolean),
      };
    }

    // Manifests: stored bytes when nothing changed, rewritten otherwise.
    const rewritten: Digest[] = [];
    const pushes: ManifestToPut[] = [];
    const newDescriptor = new Map<Digest, Descriptor>();
    const results: CopyResult['manifests'] = [];
    for (const m of choice.manifests) {
      const doc = this.manifestFor(m, layerJobs.get(m)!);
      if (doc.rewritten) rewritten.push(doc.digest);
      pushes.push(doc);
      const d: Descriptor = { ...m.descriptor, mediaType: doc.mediaType, digest: doc.digest, size: doc.bytes.length };
      if (m.descriptor) newDescriptor.set(m.descriptor.digest, d);
      results.push({
        digest: doc.digest,
        mediaType: doc.mediaType,
        platform: m.platform ? platformJson(m.platform) : null,
        ...(m.attestation ? { attestation: true as const } : {}),
      });
    }
    let top: ManifestToPut;
    const artifacts: ManifestToPut[] = [];
    if (choice.all && image.indexes.length > 0) {
      for (const o of image.others) artifacts.push(await this.artifact(archive, o));
      const out = this.rewriteIndexes(image, newDescriptor, rewritten);
      pushes.push(...out.children);
      top = out.top;
    } else if (choice.manifests.length === 1) {
      top = pushes.pop()!;
    } else {
      top = this.newIndex(image, choice.manifests, newDescriptor);
      rewritten.push(top.digest);
    }

    if (!this.opts.dryRun) {
      for (const a of artifacts) {
        try {
          await this.putManifest(a, undefined);
        } catch (e) {
          if (!(e instanceof LadingError)) throw e;
          throw new LadingError(
            e.code,
            `${e.message}; the index lists artifact ${a.digest} (${a.mediaType}), which ${this.dest.name} refused: push the images alone with --platform`,
            { cause: e },
          );
        }
      }
      for (const p of pushes) await this.putManifest(p, undefined);
      if (tags.length === 0) await this.putManifest(top, undefined);
      for (const t of tags) await this.putManifest(top, t);
    }
    const result: CopyResult = {
      digest: top.digest,
      mediaType: top.mediaType,
      reference: this.dest.pinned(top.digest),
      tags,
      tagSource,
      manifests: results,
      blobs: { ...this.stats },
      rewritten,
    };
    if (this.opts.dryRun) result.plan = all.map((j) => j.planned!).filter(Boolean);
    return result;
  }

  private async putManifest(p: ManifestToPut, tag: string | undefined): Promise<void> {
    if (tag === undefined && (await this.dest.hasManifest(p.digest, this.opts.signal))) return;
    await this.dest.putManifest(p, tag, this.opts.signal);
    this.emit({ type: 'manifest', digest: p.digest, mediaType: p.mediaType, tag });
  }

  /** An index child of a media type lading does not interpret, carried as it is. */
  private async artifact(archive: ImageArchive, o: ArchiveImage['others'][number]): Promise<ManifestToPut> {
    const d = o.descriptor;
    if (!o.blob) {
      throw new LadingError(
        'BLOB_MISSING',
        `${archive.where}: the index lists ${d.digest} (${d.mediaType}), which the archive lacks; push the images alone with --platform`,
      );
    }
    const bytes = await archive.store.readSmall(o.blob.entry);
    if (bytes.length !== d.size || digestOf(bytes, d.digest.startsWith('sha512:') ? 'sha512' : 'sha256') !== d.digest) {
      throw new LadingError(
        'DIGEST_MISMATCH',
        `${archive.where}: ${o.blob.entry.path} does not match the descriptor ${d.digest} the index gives it`,
      );
    }
    return { bytes, mediaType: d.mediaType, digest: d.digest };
  }

  /** The stored compression of a blob, from its first bytes (never from its name). */
  private async storedCompression(archive: ImageArchive, job: Job): Promise<Compression> {
    const streamed = archive.store.streamed(job.ref.entry);
    if (streamed) return streamed.compression;
    return supportedCompression(
      await archive.store.head(job.ref.entry, MAGIC_BYTES),
      `${archive.where}: ${job.ref.entry.path}`,
    );
  }

  /** Whether the destination has a blob, asked once per digest per push. */
  private hasBlob(digest: Digest): Promise<boolean> {
    let p = this.known.get(digest);
    if (p === undefined) {
      p = this.dest.hasBlob(digest, this.opts.signal);
      this.known.set(digest, p);
    }
    return p;
  }

  /**
   * Asks, all at once, about every blob whose digest is known before reading it (declared,
   * named in the archive, a diff_id, a cached compressed digest), so that a destination
   * that batches (ECR: 100 digests per call) answers a whole re-push in one request
   * instead of one per wave of the upload pool. A question that turns out unneeded costs
   * nothing but a digest in the batch.
   */
  private askAhead(jobs: Job[]): void {
    for (const job of jobs) {
      const candidates = [job.declared?.digest ?? job.ref.claimed ?? job.diffId];
      if (job.kind === 'layer' && job.diffId && this.compress !== 'none')
        candidates.push(this.opts.cache?.get(job.diffId, this.compress, this.level())?.digest);
      for (const d of candidates) if (d !== undefined) this.hasBlob(d).catch(() => undefined);
    }
  }

  private async runJob(archive: ImageArchive, job: Job): Promise<void> {
    const signal = this.opts.signal;
    signal?.throwIfAborted();
    const what = `${archive.where}: ${job.label} (${job.ref.entry.path})`;
    const stored = job.kind === 'config' ? 'none' : await this.storedCompression(archive, job);
    const declared = job.declared ? layerCompressionOf(job.declared.mediaType) : undefined;
    if (job.kind === 'layer' && declared !== undefined && declared !== stored) {
      throw new LadingError(
        'BAD_MANIFEST',
        `${what}: media type ${job.declared!.mediaType} says ${declared} but the bytes are ${stored === 'none' ? 'uncompressed' : stored}`,
      );
    }
    const transform: Compression = job.kind === 'layer' && stored === 'none' ? this.compress : 'none';

    // What the stored bytes must be.
    const declaredDigest = job.declared?.digest ?? job.ref.claimed;
    let expectDigest = declaredDigest;
    if (expectDigest === undefined && stored === 'none' && job.diffId) expectDigest = job.diffId;
    const expectSize = job.declared?.size;
    if (job.diffId && stored === 'none' && expectDigest !== undefined && expectDigest !== job.diffId) {
      throw new LadingError(
        'DIFF_ID_MISMATCH',
        `${what}: the layer is uncompressed, so its digest ${expectDigest} must equal its diff_id ${job.diffId}`,
      );
    }

    // Already handled while a one-pass source streamed by.
    const streamed = this.streamedUploads.get(job.ref.entry.path);
    if (streamed) {
      const f = streamed.facts;
      if (expectDigest && f.digest !== expectDigest)
        throw new LadingError('DIGEST_MISMATCH', `${what}: content has digest ${f.digest}, expected ${expectDigest}`);
      if (expectSize !== undefined && f.size !== expectSize)
        throw new LadingError('SIZE_MISMATCH', `${what}: ${f.size} bytes, expected ${expectSize}`);
      if (job.diffId && f.diffId && f.diffId !== job.diffId)
        throw new LadingError(
          'DIFF_ID_MISMATCH',
          `${what}: uncompressed content has digest ${f.diffId}, the config's diff_id is ${job.diffId}`,
        );
      job.result = streamed.uploaded ?? { digest: f.digest, size: f.size, compression: f.compression };
      if (!streamed.uploaded) this.skipped(job, job.result, 'exists');
      return;
    }

    if (transform === 'none') {
      let digest = expectDigest;
      if (digest === undefined)
        digest = (await archive.blobFacts(job.ref, { diffId: false, ...(signal ? { signal } : {}) })).digest;
      const size = expectSize ?? job.ref.entry.size;
      job.result = { digest, size, compression: stored };
      if (await this.hasBlob(digest)) return this.skipped(job, job.result, 'exists');
      if (this.opts.dryRun) {
        job.planned = { label: job.label, action: 'upload', digest, size };
        return;
      }
      // The diff_id is the only digest a legacy archive states for a compressed layer; where the
      // archive declares the layer's own digest, that check suffices unless asked for more.
      const diffId =
        job.kind === 'layer' && stored !== 'none' && (this.opts.verifyDiffIds === true || declaredDigest === undefined)
          ? job.diffId
          : undefined;
      const open = (): Readable => {
        if (diffId === undefined || stored === 'none')
          return archive.openBlob(job.ref).pipe(new VerifyingStream({ what, digest, size }));
        // A compressed layer pushed as it is: its uncompressed digest must be the diff_id too.
        const check = new DiffIdCheck(stored, { diffId, what });
        pipeline(archive.openBlob(job.ref), new VerifyingStream({ what, digest, size }), check, (e) => {
          if (e) check.destroy(e);
        });
        return check;
      };
      await this.upload(job, 'upload', open, { digest, size });
      return;
    }

    // An uncompressed layer to compress: maybe the registry already has its compressed form.
    const cached = job.diffId ? this.opts.cache?.get(job.diffId, transform, this.level()) : undefined;
    if (cached && (await this.hasBlob(cached.digest))) {
      job.result = { ...cached, compression: transform };
      return this.skipped(job, job.result, 'cached');
    }
    // Compressed for another repository earlier: the destination may link it from there.
    if (
      cached &&
      !this.opts.dryRun &&
      this.dest.mountBlob &&
      (await this.dest.mountBlob(cached.digest, cached.size, this.opts.signal))
    ) {
      job.result = { ...cached, compression: transform };
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
      job.planned = { label: job.label, action: 'compress+upload', size: job.ref.entry.size };
      return;
    }
    const out = await this.upload(job, 'compress+upload', () => {
      const verify = new VerifyingStream({
        what,
        ...(expectDigest ? { digest: expectDigest } : {}),
        ...(expectSize !== undefined ? { size: expectSize } : {}),
      });
      const comp = createCompressor(transform, this.level());
      const tail = new PassThrough({ highWaterMark: 1024 * 1024 });
      pipeline(archive.openBlob(job.ref), verify, comp, tail, (e) => {
        if (e) tail.destroy(e);
      });
      return tail;
    });
    job.result = { ...out, compression: transform };
    if (job.diffId) await this.opts.cache?.put(job.diffId, transform, this.level(), out);
  }

  private skipped(job: Job, r: Uploaded, reason: 'exists' | 'cached'): void {
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
    job: Job,
    action: 'upload' | 'compress+upload',
    open: () => Readable,
    known?: { digest: Digest; size: number },
  ): Promise<{ digest: Digest; size: number }> {
    // Draining: no new upload, except the first of this copy, so every run makes progress
    // however late it drains (blobs found already there are still skipped meanwhile).
    if (this.opts.drain?.aborted && this.uploadsStarted > 0) throw this.opts.drain.reason;
    this.uploadsStarted++;
    const id = this.nextId();
    this.emit({ type: 'blob-start', id, label: job.label, size: known?.size ?? job.ref.entry.size, action });
    const out = await this.dest.putBlob(
      { open, ...(known ? { digest: known.digest, size: known.size } : {}) },
      {
        ...(this.opts.signal ? { signal: this.opts.signal } : {}),
        onProgress: (n) => this.emit({ type: 'blob-progress', id, bytes: n }),
      },
    );
    this.count(out);
    this.emit({ type: 'blob-done', id, digest: out.digest, size: out.size });
    return out;
  }

  private count(out: { size: number; mounted?: boolean }): void {
    if (out.mounted) {
      this.stats.mounted++;
    } else {
      this.stats.uploaded++;
      this.stats.bytesUploaded += out.size;
    }
  }

  /** The manifest to push for one image: stored bytes when nothing changed, else rewritten. */
  private manifestFor(m: ManifestInfo, layers: (Job | undefined)[]): ManifestToPut & { rewritten: boolean } {
    const stored = m.manifest && !m.synthesized ? m.manifest : undefined;
    const newLayers: Descriptor[] = m.layers.map((l: LayerInfo, i) => {
      const job = layers[i];
      if (!job) return l.descriptor!;
      const r = job.result!;
      const family = familyOf(stored?.mediaType ?? MediaType.DockerManifest);
      if (l.foreign) {
        // Pushed as an ordinary layer: no foreign media type, no URLs.
        const { urls: _urls, ...rest } = l.descriptor ?? ({} as Descriptor);
        return { ...rest, mediaType: layerMediaType(family, r.compression), digest: r.digest, size: r.size };
      }
      const mediaType =
        l.descriptor && layerCompressionOf(l.descriptor.mediaType) === r.compression
          ? l.descriptor.mediaType
          : layerMediaType(family, r.compression);
      return { ...(l.descriptor ?? {}), mediaType, digest: r.digest, size: r.size };
    });
    // zstd has no Docker schema 2 media type that every client accepts: such images go OCI.
    const docker = familyOf(stored?.mediaType ?? MediaType.DockerManifest) === 'docker';
    const toOci =
      docker && (this.opts.oci === true || newLayers.some((d) => layerCompressionOf(d.mediaType) === 'zstd'));
    const changed = !stored || toOci || newLayers.some((d, i) => d.digest !== stored.layers[i]!.digest);
    if (!changed) return { bytes: stored.bytes, mediaType: stored.mediaType, digest: stored.digest, rewritten: false };
    if (!stored) {
      const config = m.config!.descriptor;
      if (toOci) {
        const layersOci = newLayers.map((d) => ({
          ...d,
          mediaType: layerMediaType('oci', layerCompressionOf(d.mediaType) ?? 'gzip', d.mediaType.includes('foreign')),
        }));
        const built = buildManifest(MediaType.OciManifest, { ...config, mediaType: MediaType.OciConfig }, layersOci);
        return { bytes: built.bytes, mediaType: built.mediaType, digest: built.digest, rewritten: true };
      }
      const built = buildManifest(MediaType.DockerManifest, config, newLayers);
      return { bytes: built.bytes, mediaType: built.mediaType, digest: built.digest, rewritten: true };
    }
    // Rewrite the stored document, keeping every field it has (annotations, subject...).
    const o = JSON.parse(stored.bytes.toString('utf8')) as {
      mediaType?: string;
      config: { mediaType: string };
      layers: Record<string, unknown>[];
    };
    o.layers = o.layers.map((l, i) => {
      const out: Record<string, unknown> = {
        ...l,
        mediaType: newLayers[i]!.mediaType,
        digest: newLayers[i]!.digest,
        size: newLayers[i]!.size,
      };
      if (newLayers[i]!.urls === undefined) delete out.urls;
      return out;
    });
    let mediaType = stored.mediaType;
    if (toOci) {
      mediaType = MediaType.OciManifest;
      o.mediaType = mediaType;
      if (o.config.mediaType === MediaType.DockerConfig) o.config.mediaType = MediaType.OciConfig;
      o.layers = o.layers.map((l) => ({
        ...l,
        mediaType: layerMediaType(
          'oci',
          layerCompressionOf(String(l.mediaType)) ?? 'gzip',
          String(l.mediaType).includes('foreign'),
        ),
      }));
    }
    const bytes = serializeJson(o);
    return { bytes, mediaType, digest: digestOf(bytes), rewritten: true };
  }

  /**
   * All platforms of an index: the stored index bytes when no child changed (digest
   * preserved), else every index on the way rewritten bottom-up with the new children.
   */
  private rewriteIndexes(
    image: ArchiveImage,
    newDescriptor: Map<Digest, Descriptor>,
    rewritten: Digest[],
  ): { top: ManifestToPut; children: ManifestToPut[] } {
    const children: ManifestToPut[] = [];
    const docs = new Map<Digest, ManifestToPut>();
    for (const idx of [...image.indexes].reverse()) {
      const changed =
        (this.opts.oci === true && idx.mediaType === MediaType.DockerManifestList) ||
        idx.manifests.some((d) => {
          const n = newDescriptor.get(d.digest);
          return n !== undefined && n.digest !== d.digest;
        });
      let put: ManifestToPut;
      if (!changed) {
        put = { bytes: idx.bytes, mediaType: idx.mediaType, digest: idx.digest };
      } else {
        put = rewriteIndex(idx, newDescriptor, this.opts.oci === true);
        rewritten.push(put.digest);
      }
      newDescriptor.set(idx.digest, { mediaType: put.mediaType, digest: put.digest, size: put.bytes.length });
      docs.set(idx.digest, put);
    }
    const top = docs.get(image.indexes[0]!.digest)!;
    for (const idx of image.indexes.slice(1).reverse()) children.push(docs.get(idx.digest)!);
    return { top, children };
  }

  /** Several platforms chosen: a new index holding only those. */
  private newIndex(
    image: ArchiveImage,
    manifests: ManifestInfo[],
    newDescriptor: Map<Digest, Descriptor>,
  ): ManifestToPut {
    const anyOci = manifests.some((m) => familyOf(newDescriptor.get(m.descriptor.digest)?.mediaType) === 'oci');
    const top = image.indexes[0];
    const mediaType =
      top &&
      isIndexMediaType(top.mediaType) &&
      top.mediaType === MediaType.DockerManifestList &&
      !anyOci &&
      !this.opts.oci
        ? MediaType.DockerManifestList
        : MediaType.OciIndex;
    const list = manifests.map((m) => {
      const d = newDescriptor.get(m.descriptor.digest) ?? m.descriptor;
      const out: Record<string, unknown> = { mediaType: d.mediaType, digest: d.digest, size: d.size };
      if (d.annotations) out.annotations = d.annotations;
      const p = d.platform ?? m.platform;
      if (p) out.platform = p;
      return out;
    });
    const bytes = serializeJson({ schemaVersion: 2, mediaType, manifests: list });
    return { bytes, mediaType, digest: digestOf(bytes) };
  }
}

function rewriteIndex(idx: ImageIndex, newDescriptor: Map<Digest, Descriptor>, oci: boolean): ManifestToPut {
  const o = JSON.parse(idx.bytes.toString('utf8')) as { mediaType?: string; manifests: Record<string, unknown>[] };
  const anyOci = idx.manifests.some(
    (d) =>
      familyOf(newDescriptor.get(d.digest)?.mediaType) === 'oci' &&
      newDescriptor.get(d.digest)?.mediaType !== d.mediaType,
  );
  let mediaType = idx.mediaType;
  if ((oci || anyOci) && mediaType === MediaType.DockerManifestList) {
    mediaType = MediaType.OciIndex;
    o.mediaType = mediaType;
  }
  o.manifests = o.manifests.map((entry, i) => {
    const n = newDescriptor.get(idx.manifests[i]!.digest);
    return n ? { ...entry, mediaType: n.mediaType, digest: n.digest, size: n.size } : entry;
  });
  const bytes = serializeJson(o);
  return { bytes, mediaType, digest: digestOf(bytes) };
}

function platformJson(p: Platform): Platform {
  const out: Platform = { os: p.os, architecture: p.architecture };
  if (p.variant) out.variant = p.variant;
  if (p['os.version']) out['os.version'] = p['os.version'];
  return out;
}

/** Convenience: copy an archive to a destination. */
export function copyImage(input: ArchiveInput, dest: Destination, opts: CopyOptions = {}): Promise<CopyResult> {
  return new CopyEngine(dest, opts).copy(input);
}
