import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { FileSink } from './file-sink';
import { Readable, Transform } from 'node:stream';
import type {
  BlobSource,
  Destination,
  DestinationCapabilities,
  ManifestToPut,
  PutBlobOptions,
} from '../copy/destination';
import { LadingError, asLadingError } from '../errors';
import { createDigester, digestAlgorithm, digestHex, finishDigest, type Digest } from '../image/digest';
import { parseManifestDocument } from '../image/manifest';
import { MediaType } from '../image/media-types';

/**
 * Writes an OCI image layout directory (`oci:PATH`): blobs under blobs/<alg>/<hex>,
 * written to a temp name and renamed once verified, and index.json updated last, so a
 * crash leaves no reference to a missing blob. File names come from validated digests only.
 */
export class OciLayoutDestination implements Destination {
  readonly name: string;
  // An OCI image layout holds OCI documents (as skopeo's oci: transport writes them).
  readonly capabilities: DestinationCapabilities = {
    manifestMediaTypes: [MediaType.OciManifest, MediaType.OciIndex],
    compressesLayers: true,
    foreignLayerUrls: true,
    batchesExistenceChecks: false,
  };

  constructor(readonly root: string) {
    this.name = `oci:${root}`;
  }

  private blobFile(d: Digest): string {
    return join(this.root, 'blobs', digestAlgorithm(d), digestHex(d));
  }

  private async init(): Promise<void> {
    await mkdir(join(this.root, 'blobs', 'sha256'), { recursive: true });
    const layout = join(this.root, 'oci-layout');
    await stat(layout).catch(() => writeFile(layout, JSON.stringify({ imageLayoutVersion: '1.0.0' })));
  }

  async hasBlob(d: Digest): Promise<boolean> {
    try {
      return (await stat(this.blobFile(d))).isFile();
    } catch {
      return false;
    }
  }

  async putBlob(src: BlobSource, opts: PutBlobOptions = {}): Promise<{ digest: Digest; size: number }> {
    await this.init();
    const tmp = join(this.root, 'blobs', `.tmp-${randomBytes(8).toString('hex')}`);
    const alg = src.digest ? digestAlgorithm(src.digest) : 'sha256';
    const h = createDigester(alg);
    let size = 0;
    const count = new Transform({
      transform(chunk: Buffer, _e, cb) {
        h.update(chunk);
        size += chunk.length;
        opts.onProgress?.(chunk.length);
        cb(null, chunk);
      },
    });
    try {
      await pipeline(await src.open(), count, new FileSink(tmp), ...(opts.signal ? [{ signal: opts.signal }] : []));
      const digest = finishDigest(h, alg);
      if (src.digest && digest !== src.digest)
        throw new LadingError(
          'DIGEST_MISMATCH',
          `${this.name}: blob content has digest ${digest}, expected ${src.digest}`,
        );
      if (src.size !== undefined && size !== src.size)
        throw new LadingError('SIZE_MISMATCH', `${this.name}: blob ${digest} has ${size} bytes, expected ${src.size}`);
      await mkdir(join(this.root, 'blobs', alg), { recursive: true });
      await rename(tmp, this.blobFile(digest));
      return { digest, size };
    } catch (e) {
      await rm(tmp, { force: true });
      throw asLadingError(e, 'IO', `${this.name}: writing blob`);
    }
  }

  hasManifest(d: Digest): Promise<boolean> {
    return this.hasBlob(d);
  }

  async putManifest(m: ManifestToPut, tag: string | undefined): Promise<void> {
    await this.init();
    if (!(await this.hasBlob(m.digest))) {
      await this.putBlob({ open: () => Readable.from([m.bytes]), digest: m.digest, size: m.bytes.length });
    }
    if (tag === undefined) return;
    // index.json: one entry per ref name; re-tagging replaces the old entry.
    const file = join(this.root, 'index.json');
    let index: { schemaVersion: number; mediaType?: string; manifests: Record<string, unknown>[] } = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: [],
    };
    try {
      const bytes = await readFile(file);
      const doc = parseManifestDocument(bytes, `${file}`, MediaType.OciIndex);
      if (doc.kind !== 'index') throw new LadingError('BAD_MANIFEST', `${file} is not an image index`);
      index = JSON.parse(bytes.toString('utf8')) as typeof index;
      index.manifests ??= [];
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    index.manifests = index.manifests.filter(
      (d) => (d.annotations as Record<string, string> | undefined)?.['org.opencontainers.image.ref.name'] !== tag,
    );
    index.manifests.push({
      mediaType: m.mediaType,
      digest: m.digest,
      size: m.bytes.length,
      annotations: { 'org.opencontainers.image.ref.name': tag },
    });
    const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`;
    await writeFile(tmp, JSON.stringify(index));
    await rename(tmp, file);
  }

  pinned(d: Digest): string {
    return `oci:${this.root}@${d}`;
  }

  async close(): Promise<void> {}
}
