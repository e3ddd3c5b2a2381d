/**
 * Helpers for the `lading serve` tests: a server on a temp data dir, the real ECR SDK
 * client pointed at it, small images (gzip tar layers), the full layer-upload dance, and
 * skopeo as an independent reader. No side effects at import.
 *
 * The server verifies SigV4 signatures: clients sign with its default credentials
 * (SERVE_CREDENTIALS; SERVE_AWS_ENV for the SDK's default chain, in this process or a child).
 */
import {
  CompleteLayerUploadCommand,
  CreateRepositoryCommand,
  DescribeRepositoriesCommand,
  ECRClient,
  GetAuthorizationTokenCommand,
  InitiateLayerUploadCommand,
  PutImageCommand,
  UploadLayerPartCommand,
} from '@aws-sdk/client-ecr';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { tarOf } from '../../src/archive/tar-writer';
import { digestOf, type Digest } from '../../src/image/digest';
import { DEFAULT_CREDENTIALS, startServer, type LadingServer, type ServeOptions } from '../../src/serve';

export const MiB = 1024 * 1024;

/** The key pair lading serve accepts by default: what every test client signs with. */
export const SERVE_CREDENTIALS = { ...DEFAULT_CREDENTIALS };
/** The same, for the SDK's default credential chain (process.env, a child's env). */
export const SERVE_AWS_ENV = {
  AWS_ACCESS_KEY_ID: DEFAULT_CREDENTIALS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: DEFAULT_CREDENTIALS.secretAccessKey,
};
export const skopeoAvailable = existsSync('/usr/bin/skopeo');

export interface TestServer extends LadingServer {
  ecr: ECRClient;
  /** Closes the server and the client, removes the data dir. */
  stop(): Promise<void>;
}

export async function tempDir(prefix = 'lading-serve-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export function ecrClient(
  url: string,
  maxAttempts = 3,
  credentials: { accessKeyId: string; secretAccessKey: string } = SERVE_CREDENTIALS,
): ECRClient {
  return new ECRClient({ endpoint: url, region: 'us-east-1', credentials: { ...credentials }, maxAttempts });
}

export const ECR_TARGET = 'AmazonEC2ContainerRegistry_V20150921.';

/**
 * An ECR API request for `op` with exactly `body`, signed by the real SDK (its own SigV4
 * signer) but not sent: headers and body, to send raw with http() — bodies the SDK would not
 * write (invalid base64), or bytes changed after signing.
 */
export async function sdkSignedRequest(
  url: string,
  op: string,
  body: Buffer | string,
  opts: { credentials?: { accessKeyId: string; secretAccessKey: string }; region?: string } = {},
): Promise<{ headers: Record<string, string>; body: Buffer }> {
  const raw = typeof body === 'string' ? Buffer.from(body) : body;
  let captured: { headers: Record<string, string> } | undefined;
  const handle = (request: { headers: Record<string, string> }): Promise<never> => {
    captured = request;
    return Promise.reject(new Error('captured, not sent'));
  };
  const client = new ECRClient({
    endpoint: url,
    region: opts.region ?? 'us-east-1',
    credentials: { ...(opts.credentials ?? SERVE_CREDENTIALS) },
    maxAttempts: 1,
    requestHandler: { handle } as unknown as ECRClient['config']['requestHandler'],
  });
  // The body is swapped in before signing, as src/ecr/destination.ts does for UploadLayerPart.
  client.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { body?: unknown; headers: Record<string, string> };
      request.body = raw;
      request.headers['content-length'] = String(raw.length);
      request.headers['x-amz-target'] = `${ECR_TARGET}${op}`;
      return next(args);
    },
    { step: 'build', name: 'ladingTestRawBody', priority: 'high' },
  );
  try {
    await client.send(new DescribeRepositoriesCommand({})).catch((e: Error) => {
      if (!captured) throw e;
    });
  } finally {
    client.destroy();
  }
  return { headers: { ...captured!.headers }, body: raw };
}

export async function startTestServer(
  opts: Partial<ServeOptions> & { maxAttempts?: number } = {},
): Promise<TestServer> {
  const dataDir = opts.dataDir ?? (await tempDir());
  const srv = await startServer({ ...opts, dataDir });
  const ecr = ecrClient(srv.url, opts.maxAttempts ?? 3);
  return Object.assign(srv, {
    ecr,
    stop: async () => {
      ecr.destroy();
      await srv.close();
      if (!opts.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  });
}

export interface Blob {
  bytes: Buffer;
  digest: Digest;
  size: number;
}

export function blob(bytes: Buffer | string): Blob {
  const b = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
  return { bytes: b, digest: digestOf(b), size: b.length };
}

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
export function randomBytesSeeded(size: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i + 4 <= size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  for (let i = size - (size % 4); i < size; i++) out[i] = i & 0xff;
  return out;
}

export function gzipLayer(files: Record<string, string>): Blob {
  return blob(gzipSync(tarOf(Object.entries(files).map(([name, data]) => ({ name, data: Buffer.from(data) })))));
}

export function configFor(layers: Blob[], architecture = 'amd64'): Blob {
  return blob(
    JSON.stringify({
      architecture,
      os: 'linux',
      created: '1970-01-01T00:00:00Z',
      config: { Env: ['PATH=/bin'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => digestOf(l.bytes)) },
    }),
  );
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';

export function manifestOf(
  config: Blob,
  layers: Blob[],
  extra: Record<string, unknown> = {},
  withMediaType = true,
): Blob {
  return blob(
    JSON.stringify({
      schemaVersion: 2,
      ...(withMediaType ? { mediaType: OCI_MANIFEST } : {}),
      config: { mediaType: OCI_CONFIG, digest: config.digest, size: config.size },
      layers: layers.map((l) => ({ mediaType: OCI_LAYER_GZIP, digest: l.digest, size: l.size })),
      ...extra,
    }),
  );
}

export function indexOf(children: { manifest: Blob; architecture: string }[]): Blob {
  return blob(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: children.map((c) => ({
        mediaType: OCI_MANIFEST,
        digest: c.manifest.digest,
        size: c.manifest.size,
        platform: { os: 'linux', architecture: c.architecture },
      })),
    }),
  );
}

/** A small single-platform image: two gzip layers, config, manifest. */
export function smallImage(tag = 'x', architecture = 'amd64'): { layers: Blob[]; config: Blob; manifest: Blob } {
  const layers = [
    gzipLayer({ [`etc/${tag}-${architecture}`]: `hello ${tag} ${architecture}\n` }),
    gzipLayer({ 'bin/app': `#!/bin/sh\necho ${tag}\n` }),
  ];
  const config = configFor(layers, architecture);
  return { layers, config, manifest: manifestOf(config, layers) };
}

export async function createRepo(
  ecr: ECRClient,
  name: string,
  imageTagMutability: 'MUTABLE' | 'IMMUTABLE' = 'MUTABLE',
): Promise<void> {
  await ecr.send(new CreateRepositoryCommand({ repositoryName: name, imageTagMutability }));
}

/** The native upload dance: InitiateLayerUpload, parts of `partSize` in order, CompleteLayerUpload. */
export async function uploadBlob(
  ecr: ECRClient,
  repositoryName: string,
  b: Blob,
  partSize?: number,
): Promise<{ uploadId: string; parts: number }> {
  const init = await ecr.send(new InitiateLayerUploadCommand({ repositoryName }));
  const size = partSize ?? init.partSize!;
  let parts = 0;
  for (let off = 0; off < b.size; off += size) {
    const part = b.bytes.subarray(off, Math.min(b.size, off + size));
    const out = await ecr.send(
      new UploadLayerPartCommand({
        repositoryName,
        uploadId: init.uploadId!,
        partFirstByte: off,
        partLastByte: off + part.length - 1,
        layerPartBlob: part,
      }),
    );
    if (out.lastByteReceived !== off + part.length - 1)
      throw new Error(`lastByteReceived ${out.lastByteReceived} after part ${off}`);
    parts++;
  }
  const done = await ecr.send(
    new CompleteLayerUploadCommand({ repositoryName, uploadId: init.uploadId!, layerDigests: [b.digest] }),
  );
  if (done.layerDigest !== b.digest) throw new Error(`CompleteLayerUpload returned ${done.layerDigest}`);
  return { uploadId: init.uploadId!, parts };
}

/** Uploads the blobs (LayerAlreadyExists = done) and puts the manifest of an image through the native API. */
export async function pushImage(
  ecr: ECRClient,
  repositoryName: string,
  img: { layers: Blob[]; config: Blob; manifest: Blob },
  tag?: string,
): Promise<void> {
  for (const b of [...img.layers, img.config]) {
    await uploadBlob(ecr, repositoryName, b).catch((e: Error) => {
      if (e.name !== 'LayerAlreadyExistsException') throw e;
    });
  }
  await ecr.send(
    new PutImageCommand({
      repositoryName,
      imageManifest: img.manifest.bytes.toString('utf8'),
      imageTag: tag,
    }),
  );
}

/** Expects `p` to reject with an SDK error of that name; returns it. */
export async function rejectsWith(
  p: Promise<unknown>,
  name: string,
): Promise<Error & { $metadata?: { httpStatusCode?: number }; [k: string]: unknown }> {
  try {
    await p;
  } catch (e) {
    const err = e as Error;
    if (err.name !== name) throw new Error(`expected ${name}, got ${err.name}: ${err.message}`, { cause: e });
    return err as Error & { [k: string]: unknown };
  }
  throw new Error(`expected ${name}, but the call succeeded`);
}

export async function registryCreds(
  ecr: ECRClient,
): Promise<{ username: string; password: string; header: string; proxyEndpoint: string }> {
  const out = await ecr.send(new GetAuthorizationTokenCommand({}));
  const data = out.authorizationData![0]!;
  const decoded = Buffer.from(data.authorizationToken!, 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  return {
    username: decoded.slice(0, i),
    password: decoded.slice(i + 1),
    header: `Basic ${data.authorizationToken!}`,
    proxyEndpoint: data.proxyEndpoint!,
  };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One plain HTTP request (node:http, no retries, no redirects). */
export function http(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers ?? {}, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

export function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * MiB }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}
