import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { LadingError } from '../errors';
import { createDigester, digestAlgorithm, digestOf, finishDigest, isDigest, type Digest } from '../image/digest';
import { MAX_JSON_BYTES } from '../image/json';
import { MediaType } from '../image/media-types';
import { retry } from '../util/retry';
import type { AuthScheme, Scope } from './auth';
import { isCredentialProvider, staticCredentials, type CredentialSource } from './credentials';
import { registryRetryDecision, type OperationContext } from './errors';
import { discard, header, Http, readBody, type HttpAgents } from './http';
import { Redactor } from './redact';
import { defaultNetwork, type Network } from '../net/network';
import {
  isLoopbackRegistry,
  isValidRegistryHost,
  isValidTag,
  normalizeRegistry,
  parseRepository,
} from '../reference/reference';
import { RegistryTransport } from './transport';
import { shortDigest, uploadOnce, type BlobSource, type UploadOptions, type UploadResult } from './upload';

export interface RegistryClientOptions {
  /** `host[:port]`; docker.io aliases go to `registry-1.docker.io`. */
  registry: string;
  /**
   * Plain HTTP. @default true for localhost, 127.0.0.0/8 and [::1] (unless certificates are
   * configured for the host: --cert-dir or a certs.d directory), false otherwise
   */
  plainHttp?: boolean;
  /** HTTPS without certificate verification (`--insecure`). @default false */
  insecure?: boolean;
  /** Where credentials come from. @default anonymous */
  credentials?: CredentialSource;
  /** Upload blobs in PATCH chunks of this size instead of one stream. @default undefined (no chunking) */
  chunkSize?: number;
  /** @default 'lading' */
  userAgent?: string;
  /** Receives one sanitized line per request, token fetch and retry (never a secret). */
  logger?: (line: string) => void;
  /** Attempts per operation, the first included. @default 5 */
  attempts?: number;
  /** Base delay of the exponential backoff between attempts. @default 250 */
  retryBaseDelayMs?: number;
  /** A shared connection pool (see `createAgents`); the client then does not close it. */
  agents?: HttpAgents;
  /** Longest wait for response headers, e.g. while the registry hashes a large blob. @default 300_000 */
  headersTimeoutMs?: number;
  /** Proxies and certificates (certs.d, --cert-dir). @default from the process environment */
  network?: Network;
}

/** A manifest as fetched: exact bytes, their media type, and the digest checked against them. */
export interface FetchedManifest {
  bytes: Buffer;
  mediaType: string;
  digest: Digest;
}

export interface ManifestInfo {
  digest: Digest;
  mediaType: string;
  size: number;
}

export interface BlobInfo {
  /** Undefined when the registry redirects HEAD to storage that does not answer it. */
  size: number | undefined;
}

export interface BlobDownload {
  size: number | undefined;
  /** The blob; it errors with DIGEST_MISMATCH at its end if the bytes do not match. */
  stream: Readable;
}

/** Every manifest type lading handles; schema 1 is left out on purpose (unsupported). */
export const MANIFEST_ACCEPT = [
  MediaType.OciManifest,
  MediaType.OciIndex,
  MediaType.DockerManifest,
  MediaType.DockerManifestList,
].join(', ');

/**
 * A client of the OCI distribution API for one registry: ping, blob existence, mount,
 * upload and download, manifest put/get/head. Transient failures (resets, timeouts, 5xx,
 * 429) are retried with backoff; everything else fails at once with a LadingError.
 * Safe for concurrent use: uploads of different blobs may run in parallel.
 */
export class RegistryClient {
  /** `host[:port]` as contacted. */
  readonly registry: string;
  /** e.g. `http://127.0.0.1:5000`. */
  readonly baseUrl: URL;
  private readonly http: Http;
  private readonly transport: RegistryTransport;
  private readonly chunkSize: number | undefined;
  private readonly attempts: number;
  private readonly baseDelayMs: number;
  private readonly log: (line: string) => void;

  constructor(options: RegistryClientOptions) {
    if (!isValidRegistryHost(options.registry)) {
      throw new LadingError(
        'BAD_REFERENCE',
        `invalid registry ${JSON.stringify(options.registry.slice(0, 200))}: expected host[:port]`,
      );
    }
    this.registry = normalizeRegistry(options.registry);
    const network = options.network ?? defaultNetwork();
    // A loopback registry someone configured certificates for speaks TLS (docker, too, tries
    // TLS first for 127.0.0.0/8).
    const plain =
      options.plainHttp ??
      (isLoopbackRegistry(this.registry) && network.trust.directoryFor(this.registry) === undefined);
    this.baseUrl = new URL(`${plain ? 'http' : 'https'}://${this.registry}`);
    this.http = new Http({
      insecure: options.insecure === true,
      agents: options.agents,
      network,
      headersTimeoutMs: options.headersTimeoutMs,
    });
    this.chunkSize = options.chunkSize;
    this.attempts = options.attempts ?? 5;
    this.baseDelayMs = options.retryBaseDelayMs ?? 250;
    const redactor = new Redactor();
    const logger = options.logger;
    this.log = logger ? (line) => logger(redactor.redact(line)) : () => undefined;
    const c = options.credentials;
    this.transport = new RegistryTransport({
      registry: this.registry,
      baseUrl: this.baseUrl,
      http: this.http,
      credentials: c === undefined ? undefined : isCredentialProvider(c) ? c : staticCredentials(c),
      redactor,
      userAgent: options.userAgent ?? 'lading',
      log: this.log,
    });
  }

  /** Closes the connection pool (unless it was given). The client is unusable afterwards. */
  async close(): Promise<void> {
    await this.http.close();
  }

  private run<T>(ctx: OperationContext, fn: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    return retry(fn, {
      attempts: this.attempts,
      baseDelayMs: this.baseDelayMs,
      classify: registryRetryDecision,
      onRetry: ({ error, attempt, delayMs }) =>
        this.log(
          `retry ${attempt + 1}/${this.attempts} of ${ctx.operation} in ${delayMs} ms after: ${error instanceof Error ? error.message : String(error)}`,
        ),
      signal,
    });
  }

  /**
   * Checks the registry answers `/v2/` and, when it wants credentials, that they are
   * accepted (as `docker login` does). Returns the auth scheme in use.
   */
  async ping(signal?: AbortSignal): Promise<{ auth: AuthScheme['kind'] }> {
    const ctx: OperationContext = { operation: 'ping', registry: this.registry };
    return this.run(
      ctx,
      async () => {
        const scheme = await this.transport.discover(ctx, signal, true);
        if (scheme.kind !== 'anonymous') {
          const res = await this.transport.request(
            ctx,
            { method: 'GET', url: '/v2/', scopes: [], expect: [200] },
            signal,
          );
          await discard(res);
        }
        return { auth: scheme.kind };
      },
      signal,
    );
  }

  /** HEAD of a blob: its size when the repository has it, undefined when not. */
  async blobExists(repository: string, digest: Digest, signal?: AbortSignal): Promise<BlobInfo | undefined> {
    parseRepository(repository);
    const ctx: OperationContext = {
      operation: `check blob ${shortDigest(digest)}`,
      registry: this.registry,
      repository,
    };
    return this.run(
      ctx,
      async () => {
        const res = await this.transport.request(
          ctx,
          {
            method: 'HEAD',
            url: `/v2/${repository}/blobs/${digest}`,
            scopes: pull(repository),
            expect: [200, 404, 307, 302, 301, 303, 308],
          },
          signal,
        );
        await discard(res);
        if (res.status === 404) return undefined;
        const length = Number(header(res.headers, 'content-length'));
        // A redirect means the blob exists; its size is on storage we need not ask.
        return { size: res.status === 200 && Number.isSafeInteger(length) ? length : undefined };
      },
      signal,
    );
  }

  /**
   * Cross-repository mount: true when the registry linked the blob from `fromRepository`
   * (no bytes sent); false when it declined (then upload it).
   */
  async mountBlob(repository: string, digest: Digest, fromRepository: string, signal?: AbortSignal): Promise<boolean> {
    parseRepository(repository);
    parseRepository(fromRepository);
    const ctx: OperationContext = {
      operation: `mount blob ${shortDigest(digest)} from ${fromRepository}`,
      registry: this.registry,
      repository,
    };
    return this.run(
      ctx,
      async () => {
        const url = `/v2/${repository}/blobs/uploads/?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(fromRepository)}`;
        const scopes: Scope[] = [
          { repository, actions: ['pull', 'push'] },
          { repository: fromRepository, actions: ['pull'] },
        ];
        const res = await this.transport.request(
          ctx,
          {
            method: 'POST',
            url,
            headers: { 'content-length': '0' },
            body: Buffer.alloc(0),
            scopes,
            expect: [201, 202],
          },
          signal,
        );
        await discard(res);
        if (res.status === 201) return true;
        // Declined: the registry opened an upload session instead, left to expire (see upload.ts).
        return false;
      },
      signal,
    );
  }

  /**
   * Uploads a blob. With `digest` and `size` known it is one streamed PUT; without a digest
   * it is streamed in a PATCH while hashed, then closed with the computed digest; with a
   * `chunkSize` (option or client) it is sent in PATCH chunks. `mountFrom` tries a
   * cross-repository mount first. A failed attempt restarts from a fresh upload session
   * with a re-opened source. The registry's `Docker-Content-Digest` is checked.
   */
  async uploadBlob(repository: string, source: BlobSource, options: UploadOptions = {}): Promise<UploadResult> {
    parseRepository(repository);
    if (options.mountFrom !== undefined) parseRepository(options.mountFrom);
    if (source.size !== undefined && (!Number.isSafeInteger(source.size) || source.size < 0)) {
      throw new LadingError('USAGE', `uploadBlob: size must be a non-negative integer, got ${source.size}`);
    }
    const chunkSize = options.chunkSize ?? this.chunkSize;
    const ctx: OperationContext = {
      operation: `push blob ${source.digest ? shortDigest(source.digest) : '(streamed)'}`,
      registry: this.registry,
      repository,
    };
    const result = await this.run(
      ctx,
      () =>
        uploadOnce(this.transport, repository, source, {
          ...options,
          ...(chunkSize !== undefined ? { chunkSize } : {}),
        }),
      options.signal,
    );
    if (result.size === undefined) {
      const info = await this.blobExists(repository, result.digest, options.signal);
      return { ...result, size: info?.size };
    }
    return result;
  }

  /**
   * Downloads a blob as a stream that is verified against `digest` (and the announced
   * size) as it is read; redirects to storage are followed without our credentials.
   */
  async getBlob(repository: string, digest: Digest, signal?: AbortSignal): Promise<BlobDownload> {
    parseRepository(repository);
    const ctx: OperationContext = { operation: `get blob ${shortDigest(digest)}`, registry: this.registry, repository };
    const res = await this.run(
      ctx,
      () =>
        this.transport.request(
          ctx,
          {
            method: 'GET',
            url: `/v2/${repository}/blobs/${digest}`,
            scopes: pull(repository),
            expect: [200],
            followRedirects: true,
          },
          signal,
        ),
      signal,
    );
    const length = Number(header(res.headers, 'content-length'));
    const size = Number.isSafeInteger(length) ? length : undefined;
    const verifier = new VerifyingStream(digest, size, `${ctx.operation} from ${this.registry}/${repository}`);
    res.body.on('error', (e) => verifier.destroy(e));
    return { size, stream: res.body.pipe(verifier) };
  }

  /**
   * Puts a manifest by tag or digest with `mediaType` as Content-Type; returns its digest,
   * checked against the registry's `Docker-Content-Digest`. Push the blobs (and, for an
   * index, the child manifests) first.
   */
  async putManifest(
    repository: string,
    reference: string,
    bytes: Buffer,
    mediaType: string,
    signal?: AbortSignal,
  ): Promise<Digest> {
    parseRepository(repository);
    checkManifestReference(reference);
    const alg = isDigest(reference) ? digestAlgorithm(reference) : 'sha256';
    const digest = digestOf(bytes, alg);
    if (isDigest(reference) && reference !== digest) {
      throw new LadingError(
        'DIGEST_MISMATCH',
        `push manifest ${this.registry}/${repository}@${reference}: the bytes hash to ${digest}`,
      );
    }
    const ctx: OperationContext = {
      operation: `push manifest ${isDigest(reference) ? shortDigest(reference) : reference}`,
      registry: this.registry,
      repository,
    };
    return this.run(
      ctx,
      async () => {
        const res = await this.transport.request(
          ctx,
          {
            method: 'PUT',
            url: `/v2/${repository}/manifests/${reference}`,
            headers: { 'content-type': mediaType },
            body: bytes,
            scopes: push(repository),
            expect: [200, 201, 202, 204],
          },
          signal,
        );
        await discard(res);
        const got = header(res.headers, 'docker-content-digest');
        if (
          got !== undefined &&
          got !== digest &&
          got !== digestOf(bytes, isDigest(got) ? digestAlgorithm(got) : 'sha256')
        ) {
          throw new LadingError(
            'DIGEST_MISMATCH',
            `${ctx.operation} to ${this.registry}/${repository}: the registry stored ${got}, the manifest is ${digest} (did it rewrite the document?)`,
          );
        }
        return digest;
      },
      signal,
    );
  }

  /** Gets a manifest's bytes; the digest is computed from them and checked against the reference and the header. */
  async getManifest(repository: string, reference: string, signal?: AbortSignal): Promise<FetchedManifest> {
    parseRepository(repository);
    checkManifestReference(reference);
    const ctx: OperationContext = {
      operation: `get manifest ${isDigest(reference) ? shortDigest(reference) : reference}`,
      registry: this.registry,
      repository,
    };
    return this.run(
      ctx,
      async () => {
        const res = await this.transport.request(
          ctx,
          {
            method: 'GET',
            url: `/v2/${repository}/manifests/${reference}`,
            headers: { accept: MANIFEST_ACCEPT },
            scopes: pull(repository),
            expect: [200],
          },
          signal,
        );
        const bytes = await readBody(res, MAX_JSON_BYTES, `${ctx.operation} from ${this.registry}/${repository}`);
        const headerDigest = header(res.headers, 'docker-content-digest');
        const expected = isDigest(reference) ? reference : isDigest(headerDigest) ? headerDigest : undefined;
        const digest = expected !== undefined ? digestOf(bytes, digestAlgorithm(expected)) : digestOf(bytes);
        if (expected !== undefined && digest !== expected) {
          throw new LadingError(
            'DIGEST_MISMATCH',
            `${ctx.operation} from ${this.registry}/${repository}: the bytes hash to ${digest}, expected ${expected}`,
          );
        }
        return { bytes, mediaType: manifestMediaType(header(res.headers, 'content-type'), bytes), digest };
      },
      signal,
    );
  }

  /** HEAD of a manifest: digest, media type and size, or undefined when there is none. */
  async headManifest(repository: string, reference: string, signal?: AbortSignal): Promise<ManifestInfo | undefined> {
    parseRepository(repository);
    checkManifestReference(reference);
    const ctx: OperationContext = {
      operation: `check manifest ${isDigest(reference) ? shortDigest(reference) : reference}`,
      registry: this.registry,
      repository,
    };
    const info = await this.run(
      ctx,
      async () => {
        const res = await this.transport.request(
          ctx,
          {
            method: 'HEAD',
            url: `/v2/${repository}/manifests/${reference}`,
            headers: { accept: MANIFEST_ACCEPT },
            scopes: pull(repository),
            expect: [200, 404],
          },
          signal,
        );
        await discard(res);
        if (res.status === 404) return null;
        const d = header(res.headers, 'docker-content-digest');
        const size = Number(header(res.headers, 'content-length'));
        const mediaType = header(res.headers, 'content-type')?.split(';')[0]?.trim();
        if (!isDigest(d) || !Number.isSafeInteger(size) || mediaType === undefined) return undefined;
        return { digest: d, size, mediaType };
      },
      signal,
    );
    if (info === null) return undefined;
    if (info !== undefined) return info;
    // Some registries omit Docker-Content-Digest on HEAD: fetch and compute.
    const m = await this.getManifest(repository, reference, signal);
    return { digest: m.digest, mediaType: m.mediaType, size: m.bytes.length };
  }
}

function pull(repository: string): Scope[] {
  return [{ repository, actions: ['pull'] }];
}

function push(repository: string): Scope[] {
  return [{ repository, actions: ['pull', 'push'] }];
}

function checkManifestReference(reference: string): void {
  if (!isDigest(reference) && !isValidTag(reference)) {
    throw new LadingError(
      'BAD_REFERENCE',
      `invalid manifest reference ${JSON.stringify(reference.slice(0, 200))}: expected a tag or a digest`,
    );
  }
}

/** The Content-Type, or the document's own `mediaType` when the registry sends a generic one. */
function manifestMediaType(contentType: string | undefined, bytes: Buffer): string {
  const ct = contentType?.split(';')[0]?.trim();
  if (
    ct !== undefined &&
    ct !== '' &&
    ct !== 'application/json' &&
    ct !== 'application/octet-stream' &&
    ct !== 'text/plain'
  )
    return ct;
  try {
    const o = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown; manifests?: unknown };
    if (typeof o.mediaType === 'string') return o.mediaType;
    return Array.isArray(o.manifests) ? MediaType.OciIndex : MediaType.OciManifest;
  } catch {
    return ct ?? 'application/octet-stream';
  }
}

/** Passes bytes through and fails at the end when they do not match the digest or size. */
class VerifyingStream extends Transform {
  private readonly hash;
  private bytes = 0;
  constructor(
    private readonly digest: Digest,
    private readonly size: number | undefined,
    private readonly what: string,
  ) {
    super();
    this.hash = createDigester(digestAlgorithm(digest));
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    const got = finishDigest(this.hash, digestAlgorithm(this.digest));
    if (this.size !== undefined && this.bytes !== this.size) {
      cb(new LadingError('SIZE_MISMATCH', `${this.what}: received ${this.bytes} bytes, ${this.size} announced`));
    } else if (got !== this.digest) {
      cb(new LadingError('DIGEST_MISMATCH', `${this.what}: the content hashes to ${got}`));
    } else {
      cb();
    }
  }
}
