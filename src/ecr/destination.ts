import {
  BatchCheckLayerAvailabilityCommand,
  BatchGetImageCommand,
  CompleteLayerUploadCommand,
  ECRClient,
  InitiateLayerUploadCommand,
  PutImageCommand,
  UploadLayerPartCommand,
  type ECRClientConfig,
} from '@aws-sdk/client-ecr';
import type {
  BlobSource,
  Destination,
  DestinationCapabilities,
  ManifestToPut,
  PutBlobOptions,
} from '../copy/destination';
import { LadingError } from '../errors';
import { createDigester, finishDigest, type Digest } from '../image/digest';
import { ecrError } from './errors';
import { defaultNetwork, type Network } from '../net/network';
import { REGISTRY_CAPABILITIES, type RegistryDestination } from '../registry/destination';
import { ensureRepository } from './repository';
import { release } from '../util/buffer-pool';
import { partBodyCapacity, PartBody, PartBuffers } from './part-body';

/** An UploadLayerPart command whose request body is `body` (see partRequestBody). */
function uploadPartCommand(
  ids: { repositoryName: string; registryId?: string },
  uploadId: string,
  first: number,
  last: number,
  body: Buffer,
): UploadLayerPartCommand {
  // The SDK serializes a placeholder; the build step then swaps in the prepared body.
  const command = new UploadLayerPartCommand({
    ...ids,
    uploadId,
    partFirstByte: first,
    partLastByte: last,
    layerPartBlob: new Uint8Array(0),
  });
  command.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { body?: unknown; headers: Record<string, string> };
      request.body = body;
      for (const h of Object.keys(request.headers)) if (h.toLowerCase() === 'content-length') delete request.headers[h];
      request.headers['content-length'] = String(body.length);
      return next(args);
    },
    { step: 'build', name: 'ladingUploadPartBody', priority: 'high' },
  );
  return command;
}

export interface EcrDestinationOptions {
  /** Registry host, for the pinned reference: ACCOUNT.dkr.ecr.REGION.amazonaws.com (or a local endpoint's). */
  host: string;
  repository: string;
  /** The account (registryId); default: the caller's. */
  registryId?: string;
  region?: string;
  profile?: string;
  /** Endpoint URL (lading serve, a VPC endpoint); AWS_ENDPOINT_URL_ECR / AWS_ENDPOINT_URL are honoured by the SDK. */
  endpoint?: string;
  createRepository?: boolean;
  imageTagMutability?: 'MUTABLE' | 'IMMUTABLE';
  /** Attempts per API call, throttling and 5xx included (SDK standard retry with backoff and jitter). */
  maxAttempts?: number;
  /** Uploads of one blob restarted from scratch after a failed part (the SDK retries each call first). */
  blobAttempts?: number;
  /**
   * UploadLayerPart bodies (~14 MB each) shared by all blobs in flight: memory is this many
   * bodies, whatever the concurrency. Two keep the endpoint busy (one part in flight while
   * the next fills) at ~28 MB. @default 2
   */
  partBuffers?: number;
  /** TLS without verification for the registry endpoint that zero-byte blobs take. */
  insecure?: boolean;
  /** Proxies and certificates, for the client made here and the registry endpoint. @default from the process environment */
  network?: Network;
  /** A client made by the caller, who then owns it (see onClose). */
  client?: ECRClient;
  /** Runs when the destination closes. */
  onClose?: () => Promise<void>;
  logger?: (line: string) => void;
}

const MiB = 1024 * 1024;
/** How long availability questions gather before one BatchCheckLayerAvailability. */
const CHECK_WINDOW_MS = 15;

/**
 * Amazon ECR through its native API (@aws-sdk/client-ecr): BatchCheckLayerAvailability,
 * InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload, PutImage. Parts of one
 * upload are sent strictly in order, each encoded into a request body as it is read (see
 * part-body.ts); different blobs upload in parallel (the engine's concurrency), sharing
 * `partBuffers` bodies.
 */
export class EcrDestination implements Destination {
  readonly name: string;
  // A registry's, but BatchCheckLayerAvailability answers 100 digests per call.
  readonly capabilities: DestinationCapabilities = { ...REGISTRY_CAPABILITIES, batchesExistenceChecks: true };
  readonly client: ECRClient;
  private pending: { digest: Digest; resolve: (v: boolean) => void; reject: (e: unknown) => void }[] = [];
  private flushScheduled = false;
  private repoChecked: Promise<void> | undefined;
  /** Request bodies, made on first need. */
  private bodies: PartBuffers | undefined;
  /** The registry endpoint, for zero-byte blobs only. */
  private registry: Promise<RegistryDestination> | undefined;
  /** Calls made, by operation: the tests and --debug read them. */
  readonly calls: Record<string, number> = {};

  constructor(private readonly opts: EcrDestinationOptions) {
    this.name = `${opts.host}/${opts.repository}`;
    const config: ECRClientConfig = {
      maxAttempts: opts.maxAttempts ?? 6,
      ...(opts.region ? { region: opts.region } : {}),
      ...(opts.profile ? { profile: opts.profile } : {}),
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      requestHandler: (opts.network ?? defaultNetwork()).awsRequestHandler(),
    };
    this.client = opts.client ?? new ECRClient(config);
  }

  private ids(): { repositoryName: string; registryId?: string } {
    return {
      repositoryName: this.opts.repository,
      ...(this.opts.registryId ? { registryId: this.opts.registryId } : {}),
    };
  }

  private async send<T>(op: string, run: () => Promise<T>, context: string): Promise<T> {
    this.calls[op] = (this.calls[op] ?? 0) + 1;
    try {
      return await run();
    } catch (e) {
      throw ecrError(e, op, this.name, context);
    }
  }

  /**
   * Once per push, before anything else: the repository exists (created with
   * --create-repository), so a missing one fails with its fix before any upload starts.
   */
  private ensureRepository(signal?: AbortSignal): Promise<void> {
    this.repoChecked ??= ensureRepository(this.client, {
      repository: this.opts.repository,
      registryId: this.opts.registryId,
      create: this.opts.createRepository,
      imageTagMutability: this.opts.imageTagMutability,
      where: this.name,
      signal,
      logger: this.opts.logger,
      count: (op) => (this.calls[op] = (this.calls[op] ?? 0) + 1),
    });
    return this.repoChecked;
  }

  /**
   * Batched: the engine asks blob by blob as it learns digests (a few milliseconds apart
   * while it reads the archive); ECR takes up to 100 digests per call, so questions are
   * gathered for a short window, which a re-push of a whole image answers in one call.
   */
  hasBlob(digest: Digest, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.pending.push({ digest, resolve, reject });
      if (this.pending.length >= 100) void this.flushChecks(signal);
      else if (!this.flushScheduled) {
        this.flushScheduled = true;
        setTimeout(() => void this.flushChecks(signal), CHECK_WINDOW_MS);
      }
    });
  }

  private async flushChecks(signal?: AbortSignal): Promise<void> {
    this.flushScheduled = false;
    const batch = this.pending.splice(0, 100);
    if (batch.length === 0) return;
    try {
      await this.ensureRepository(signal);
      const digests = [...new Set(batch.map((b) => b.digest))];
      const out = await this.send(
        'BatchCheckLayerAvailability',
        () =>
          this.client.send(new BatchCheckLayerAvailabilityCommand({ ...this.ids(), layerDigests: digests }), {
            abortSignal: signal,
          }),
        `checking ${digests.length} blobs`,
      );
      const available = new Set(
        (out.layers ?? []).filter((l) => l.layerAvailability === 'AVAILABLE').map((l) => l.layerDigest),
      );
      for (const b of batch) b.resolve(available.has(b.digest));
    } catch (e) {
      for (const b of batch) b.reject(e);
    }
    if (this.pending.length > 0) void this.flushChecks(signal);
  }

  async putBlob(src: BlobSource, opts: PutBlobOptions = {}): Promise<{ digest: Digest; size: number }> {
    await this.ensureRepository(opts.signal);
    if (src.size === 0) return this.empty(src, opts);
    const attempts = this.opts.blobAttempts ?? 3;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.uploadOnce(src, opts);
      } catch (e) {
        const retryable = e instanceof LadingError && (e.code === 'NETWORK' || e.code === 'REGISTRY');
        if (!retryable || attempt >= attempts || opts.signal?.aborted) throw e;
        this.opts.logger?.(
          `ECR upload failed (${(e as Error).message}); restarting the blob, attempt ${attempt + 1} of ${attempts}`,
        );
      }
    }
  }

  /**
   * A zero-byte blob cannot go through the layer API (no part: EmptyUploadException), so it
   * takes the registry endpoint (GetAuthorizationToken, then /v2/), opened on first need.
   */
  private empty(src: BlobSource, opts: PutBlobOptions): Promise<{ digest: Digest; size: number }> {
    this.registry ??= (async () => {
      // Loaded here: the registry client is not needed by the native path otherwise.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { ecrRegistryDestination } = require('./registry-transport') as typeof import('./registry-transport');
      return ecrRegistryDestination({
        client: this.client,
        repository: this.opts.repository,
        host: this.opts.host,
        skipRepositoryCheck: true,
        registryId: this.opts.registryId,
        insecure: this.opts.insecure,
        network: this.opts.network,
        logger: this.opts.logger,
      });
    })();
    return this.registry.then((d) => d.putBlob(src, opts));
  }

  private async uploadOnce(src: BlobSource, opts: PutBlobOptions): Promise<{ digest: Digest; size: number }> {
    const signal = opts.signal;
    const init = await this.send(
      'InitiateLayerUpload',
      () => this.client.send(new InitiateLayerUploadCommand(this.ids()), { abortSignal: signal }),
      'starting an upload',
    );
    const uploadId = init.uploadId!;
    // ECR says 10 MiB; parts must be 5..10 MiB (Amazon ECR service quotas, "Layer part size"), whatever an endpoint answers.
    const partSize = Math.min(Math.max(init.partSize ?? 10 * MiB, 5 * MiB), 10 * MiB);
    this.bodies ??= new PartBuffers(partBodyCapacity(10 * MiB), this.opts.partBuffers ?? 2);
    const bodies = this.bodies;
    const alg = src.digest?.startsWith('sha512:') ? 'sha512' : 'sha256';
    const hash = createDigester(alg);
    let sent = 0;
    // The part being filled, and the one in flight: reading overlaps the upload, parts stay
    // strictly consecutive, and a blob holds at most two body buffers of the shared pool.
    let body: PartBody | undefined;
    let inflight: Promise<void> | undefined;
    const sendPart = async (): Promise<void> => {
      const b = body!;
      body = undefined;
      // The previous part must be in before this one goes (ECR's rule). If it failed, this
      // body goes back unsent: the pool is shared, a lost buffer would stall every later blob.
      try {
        if (inflight) await inflight;
      } catch (e) {
        bodies.release(b.buf);
        throw e;
      }
      const first = sent;
      const last = sent + b.bytes - 1;
      const length = b.bytes;
      sent += length;
      const request = b.finish({ ...this.ids(), uploadId, partFirstByte: first, partLastByte: last });
      inflight = this.send(
        'UploadLayerPart',
        () => this.client.send(uploadPartCommand(this.ids(), uploadId, first, last, request), { abortSignal: signal }),
        `uploading bytes ${first}-${last}`,
      )
        .then(() => opts.onProgress?.(length))
        .finally(() => bodies.release(b.buf));
      // A failure surfaces at the next part or at the end; never unhandled meanwhile.
      inflight.catch(() => undefined);
    };
    const stream = await src.open();
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        signal?.throwIfAborted();
        hash.update(chunk);
        let off = 0;
        while (off < chunk.length) {
          body ??= new PartBody(await bodies.acquire(signal));
          const n = Math.min(partSize - body.bytes, chunk.length - off);
          body.append(n === chunk.length ? chunk : chunk.subarray(off, off + n));
          off += n;
          if (body.bytes === partSize) await sendPart();
        }
        // Encoded into the body: the chunk's journey ends here (see util/buffer-pool).
        release(chunk);
      }
      if (body && body.bytes > 0) await sendPart();
      if (inflight) await inflight;
    } catch (e) {
      stream.destroy();
      if (inflight) await inflight.catch(() => undefined);
      throw e;
    } finally {
      if (body) bodies.release(body.buf);
    }
    const digest = finishDigest(hash, alg);
    if (sent === 0) return this.empty({ ...src, open: () => src.open() }, opts);
    if (src.digest && digest !== src.digest) {
      throw new LadingError(
        'DIGEST_MISMATCH',
        `${this.name}: blob content has digest ${digest}, expected ${src.digest}; upload abandoned`,
      );
    }
    if (src.size !== undefined && sent !== src.size) {
      throw new LadingError(
        'SIZE_MISMATCH',
        `${this.name}: blob ${digest} has ${sent} bytes, expected ${src.size}; upload abandoned`,
      );
    }
    try {
      await this.send(
        'CompleteLayerUpload',
        () =>
          this.client.send(new CompleteLayerUploadCommand({ ...this.ids(), uploadId, layerDigests: [digest] }), {
            abortSignal: signal,
          }),
        `completing blob ${digest}`,
      );
    } catch (e) {
      // Another push got there first: the blob is in place, which is all that matters.
      if (!(e instanceof LadingError && e.details?.awsCode === 'LayerAlreadyExistsException')) throw e;
    }
    return { digest, size: sent };
  }

  async hasManifest(digest: Digest, signal?: AbortSignal): Promise<boolean> {
    await this.ensureRepository(signal);
    const out = await this.send(
      'BatchGetImage',
      () =>
        this.client.send(
          new BatchGetImageCommand({
            ...this.ids(),
            imageIds: [{ imageDigest: digest }],
            acceptedMediaTypes: [
              'application/vnd.oci.image.manifest.v1+json',
              'application/vnd.oci.image.index.v1+json',
              'application/vnd.docker.distribution.manifest.v2+json',
              'application/vnd.docker.distribution.manifest.list.v2+json',
            ],
          }),
          { abortSignal: signal },
        ),
      `looking up manifest ${digest}`,
    );
    return (out.images ?? []).length > 0;
  }

  async putManifest(m: ManifestToPut, tag: string | undefined, signal?: AbortSignal): Promise<void> {
    await this.ensureRepository(signal);
    try {
      const out = await this.send(
        'PutImage',
        () =>
          this.client.send(
            new PutImageCommand({
              ...this.ids(),
              imageManifest: m.bytes.toString('utf8'),
              imageManifestMediaType: m.mediaType,
              imageDigest: m.digest,
              imageTag: tag,
            }),
            { abortSignal: signal },
          ),
        tag !== undefined ? `tagging ${m.digest} as ${tag}` : `putting manifest ${m.digest}`,
      );
      const got = out.image?.imageId?.imageDigest;
      if (got && got !== m.digest) {
        throw new LadingError('DIGEST_MISMATCH', `${this.name}: ECR stored manifest ${m.digest} as ${got}`);
      }
    } catch (e) {
      // Same manifest under the same tag (or untagged) already there: done.
      if (e instanceof LadingError && e.details?.awsCode === 'ImageAlreadyExistsException') return;
      throw e;
    }
  }

  pinned(digest: Digest): string {
    return `${this.opts.host}/${this.opts.repository}@${digest}`;
  }

  async close(): Promise<void> {
    const registry = await this.registry?.catch(() => undefined);
    await registry?.close();
    if (!this.opts.client) this.client.destroy();
    await this.opts.onClose?.();
  }
}
