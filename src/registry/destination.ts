import type {
  BlobSource,
  Destination,
  DestinationCapabilities,
  ManifestToPut,
  PutBlobOptions,
} from '../copy/destination';
import { MediaType } from '../image/media-types';
import { LadingError } from '../errors';
import type { Digest } from '../image/digest';
import type { RegistryClient } from './client';

export interface RegistryDestinationOptions {
  /** Try cross-repository mounts from this repository of the same registry first. */
  mountFrom?: string;
  /** Upload in PATCH chunks of this size instead of one streamed request. */
  chunkSize?: number;
  /** Name shown in references, when it differs from the client's host (e.g. an ECR proxy endpoint). */
  host?: string;
  /** Runs after the client is closed. */
  onClose?: () => Promise<void>;
}

/** What a registry takes (distribution, ECR's /v2/, most others): Docker and OCI documents, one question at a time. */
export const REGISTRY_CAPABILITIES: DestinationCapabilities = {
  manifestMediaTypes: [
    MediaType.DockerManifest,
    MediaType.DockerManifestList,
    MediaType.OciManifest,
    MediaType.OciIndex,
  ],
  compressesLayers: true,
  foreignLayerUrls: true,
  batchesExistenceChecks: false,
};

/** Any registry speaking the OCI distribution API, through a RegistryClient. */
export class RegistryDestination implements Destination {
  readonly name: string;
  readonly capabilities = REGISTRY_CAPABILITIES;
  private readonly host: string;

  constructor(
    readonly client: RegistryClient,
    readonly repository: string,
    private readonly opts: RegistryDestinationOptions = {},
  ) {
    this.host = opts.host ?? client.registry;
    this.name = `${this.host}/${repository}`;
  }

  async hasBlob(digest: Digest, signal?: AbortSignal): Promise<boolean> {
    return (await this.client.blobExists(this.repository, digest, signal)) !== undefined;
  }

  async mountBlob(digest: Digest, _size: number, signal?: AbortSignal): Promise<boolean> {
    if (!this.opts.mountFrom || this.opts.mountFrom === this.repository) return false;
    return this.client.mountBlob(this.repository, digest, this.opts.mountFrom, signal);
  }

  async putBlob(
    src: BlobSource,
    opts: PutBlobOptions = {},
  ): Promise<{ digest: Digest; size: number; mounted?: boolean }> {
    let sent = 0;
    const out = await this.client.uploadBlob(
      this.repository,
      {
        open: src.open,
        ...(src.digest ? { digest: src.digest } : {}),
        size: src.size,
      },
      {
        signal: opts.signal,
        ...(this.opts.mountFrom && src.digest ? { mountFrom: this.opts.mountFrom } : {}),
        ...(this.opts.chunkSize ? { chunkSize: this.opts.chunkSize } : {}),
        // The client counts per attempt; the engine wants new bytes only.
        onProgress: ({ bytes }) => {
          if (bytes < sent) sent = 0;
          if (bytes > sent) opts.onProgress?.(bytes - sent);
          sent = bytes;
        },
      },
    );
    const size = out.size ?? src.size;
    if (size === undefined)
      throw new LadingError(
        'REGISTRY',
        `${this.name}: the registry did not say the size of mounted blob ${out.digest}`,
      );
    return { digest: out.digest, size, ...(out.mounted ? { mounted: true } : {}) };
  }

  async hasManifest(digest: Digest, signal?: AbortSignal): Promise<boolean> {
    return (await this.client.headManifest(this.repository, digest, signal)) !== undefined;
  }

  async putManifest(m: ManifestToPut, tag: string | undefined, signal?: AbortSignal): Promise<void> {
    const got = await this.client.putManifest(this.repository, tag ?? m.digest, m.bytes, m.mediaType, signal);
    if (got !== m.digest)
      throw new LadingError('DIGEST_MISMATCH', `${this.name}: the registry stored manifest ${m.digest} as ${got}`);
  }

  pinned(digest: Digest): string {
    return `${this.host}/${this.repository}@${digest}`;
  }

  async close(): Promise<void> {
    await this.client.close();
    await this.opts.onClose?.();
  }
}
