/**
 * The TarballImage custom-resource handler (bundled by scripts/bundle-cdk-handler.js into
 * dist/cdk-handler/index.js, run on Lambda Node.js, arm64 by default).
 *
 * Why a direct cfn-response handler and not the custom-resources Provider framework: the
 * work is one bounded call (push, answer), so the framework's extra function, its
 * isComplete polling and state machine would add resources, IAM and cold starts without
 * buying anything; what the framework does add, an answer to CloudFormation even when the
 * handler fails, is done here: every path (errors, a push running out of time) sends
 * FAILED with a message before the Lambda timeout, so a stack never waits an hour.
 */
import { BatchDeleteImageCommand, ECRClient } from '@aws-sdk/client-ecr';
import { HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { request as httpRequest, type Agent as HttpAgent } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { DigestCache } from '../compress/cache';
import { CopyEngine } from '../copy/engine';
import type { CopyEvent } from '../copy/events';
import { EcrDestination } from '../ecr/destination';
import { LadingError, type Remedy } from '../errors';
import { defaultNetwork, type Network } from '../net/network';
import { parsePlatform } from '../image/platform';
import { S3Source } from './s3-source';
import { digestCacheKey, failureMarkerKey } from './digest-cache-key';
import { S3DigestCache } from './s3-digest-cache';

export interface TarballImageResourceProperties {
  ServiceToken?: string;
  Bucket: string;
  Key: string;
  AssetHash?: string;
  RepositoryName: string;
  /** ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME: gives the host and the account. */
  RepositoryUri: string;
  Tag: string;
  Compress?: 'gzip' | 'zstd' | 'none';
  Platform?: string;
  ImageName?: string;
  RemoveOnDelete?: 'true' | 'false';
}

export interface CustomResourceEvent {
  RequestType: 'Create' | 'Update' | 'Delete';
  ResponseURL: string;
  StackId: string;
  RequestId: string;
  LogicalResourceId: string;
  ResourceType?: string;
  PhysicalResourceId?: string;
  ResourceProperties: TarballImageResourceProperties;
  OldResourceProperties?: TarballImageResourceProperties;
}

export interface HandlerContext {
  getRemainingTimeInMillis(): number;
}

export interface CustomResourceResponse {
  Status: 'SUCCESS' | 'FAILED';
  Reason?: string;
  PhysicalResourceId: string;
  StackId: string;
  RequestId: string;
  LogicalResourceId: string;
  NoEcho?: boolean;
  Data?: { ImageDigest: string; ImageUri: string; ImageTag: string };
}

export interface HandlerDeps {
  s3: S3Client;
  ecr: ECRClient;
  /** Proxies and CAs for the registry endpoint and the answer to CloudFormation. @default from the process environment */
  network?: Network;
  /** Registry-API endpoint scheme for empty blobs (tests: lading serve speaks plain http). */
  insecureRegistry?: boolean;
  /** Time kept back before the Lambda timeout to answer CloudFormation. @default 30 s */
  marginMs?: number;
  /** Continuation mode: time before that deadline at which no new blob is started. @default 120 s */
  drainMs?: number;
  log?: (line: string) => void;
  /** Tests read what was done. */
  onSource?: (s: S3Source) => void;
}

/**
 * Prefix of the physical id of a resource whose Create failed: its Delete does nothing. Each
 * failed Create gets its own id (the prefix plus the request id), so two failed resources never
 * share one: CloudFormation treats a physical id as the identity of what it must later delete.
 */
const FAILED_CREATE = 'lading-create-failed';

/** CloudFormation refuses a response body of 4,096 bytes or more. */
const MAX_RESPONSE_BYTES = 4096;

/** Lambda entry point. */
export async function handler(event: CustomResourceEvent, context: HandlerContext): Promise<void> {
  // HTTPS_PROXY / NO_PROXY / AWS_CA_BUNDLE in the function's environment apply to S3 and ECR.
  const deps = defaultDeps();
  try {
    await handle(event, context, deps);
  } finally {
    deps.destroy();
  }
}

/** What the Provider framework's onEvent expects back. */
export interface OnEventResult {
  PhysicalResourceId: string;
  Data?: ResourceData;
}

/** What the Provider framework's isComplete gets: the request merged with onEvent's result. */
export type IsCompleteEvent = CustomResourceEvent & { PhysicalResourceId: string; Data?: Partial<ResourceData> };

export interface IsCompleteResult {
  IsComplete: boolean;
  PhysicalResourceId?: string;
  Data?: ResourceData;
}

function defaultDeps(): HandlerDeps & { destroy(): void } {
  const network = defaultNetwork();
  const s3 = new S3Client({ maxAttempts: 6, requestHandler: network.awsRequestHandler() });
  const ecr = new ECRClient({ maxAttempts: 6, requestHandler: network.awsRequestHandler() });
  return { s3, ecr, network, destroy: () => (s3.destroy(), ecr.destroy()) };
}

/** Lambda entry point as the Provider framework's onEvent handler (images larger than one invocation). */
export async function onEvent(event: CustomResourceEvent, context: HandlerContext): Promise<OnEventResult> {
  const deps = defaultDeps();
  try {
    return await providerOnEvent(event, context, deps);
  } finally {
    deps.destroy();
  }
}

/** Lambda entry point as the Provider framework's isComplete handler. */
export async function isComplete(event: IsCompleteEvent, context: HandlerContext): Promise<IsCompleteResult> {
  const deps = defaultDeps();
  try {
    return await providerIsComplete(event, context, deps);
  } finally {
    deps.destroy();
  }
}

/** A failure the framework reports to CloudFormation: one line, bounded (its answer has the same 4 KiB limit). */
function providerError(e: unknown, log: (line: string) => void): Error {
  const msg = failureMessage(e);
  log(`FAILED: ${msg}`);
  const code = e instanceof LadingError ? e.code : 'error';
  return new Error(`${Array.from(msg).slice(0, 1500).join('')} (lading ${code})`);
}

/**
 * onEvent: Delete as in single-invocation mode; Create/Update push for as long as this
 * invocation allows. Done: the final physical id and data (isComplete then only confirms).
 * Not done: the old physical id (an Update) or a pending one (a Create), and isComplete goes on.
 */
export async function providerOnEvent(
  event: CustomResourceEvent,
  context: HandlerContext,
  deps: HandlerDeps,
): Promise<OnEventResult> {
  const log = deps.log ?? ((line: string) => console.log(line));
  log(`${event.RequestType} ${event.LogicalResourceId} (${event.PhysicalResourceId ?? 'new'}), onEvent`);
  try {
    if (event.RequestType === 'Delete') {
      await remove(event, deps, log);
      return { PhysicalResourceId: event.PhysicalResourceId ?? failedCreateId(event) };
    }
    const data = await push(event, context, deps, log, true);
    if (data) return { PhysicalResourceId: physicalId(event.ResourceProperties, data), Data: data };
    return { PhysicalResourceId: event.PhysicalResourceId ?? `${PENDING_CREATE}-${event.RequestId}`.slice(0, 1024) };
  } catch (e) {
    throw providerError(e, log);
  }
}

/**
 * isComplete, called by the framework's state machine until it says so or the total timeout
 * passes: goes on with the push (blobs already in ECR are skipped, the digest cache in S3 saves
 * recompressing). A fatal error cannot be thrown here (the state machine retries every error
 * until the total timeout, then reports "Operation timed out"): the handler answers FAILED to
 * CloudFormation itself, leaves a marker beside the asset, and says "not complete" to every
 * later call until the framework gives up, its late answer then being ignored.
 */
export async function providerIsComplete(
  event: IsCompleteEvent,
  context: HandlerContext,
  deps: HandlerDeps,
): Promise<IsCompleteResult> {
  const log = deps.log ?? ((line: string) => console.log(line));
  if (event.RequestType === 'Delete' || event.Data?.ImageDigest) return { IsComplete: true };
  const p = event.ResourceProperties;
  const marker = failureMarkerKey(p.Key, event.RequestId);
  if (await objectExists(deps.s3, p.Bucket, marker)) {
    log(`this request already failed (s3://${p.Bucket}/${marker}); waiting for the framework to stop`);
    return { IsComplete: false };
  }
  log(`${event.RequestType} ${event.LogicalResourceId} (${event.PhysicalResourceId}), isComplete: going on`);
  try {
    const data = await push(event, context, deps, log, true);
    return data ? { IsComplete: true, PhysicalResourceId: physicalId(p, data), Data: data } : { IsComplete: false };
  } catch (e) {
    const physical = event.PhysicalResourceId.startsWith(`${PENDING_CREATE}-`)
      ? failedCreateId(event)
      : event.PhysicalResourceId;
    const response = failedResponse(event, physical, e, log);
    await deps.s3
      .send(new PutObjectCommand({ Bucket: p.Bucket, Key: marker, Body: `${response.Reason}\n` }))
      .catch((err: unknown) => log(`failure marker not written: ${String(err)}`));
    await answer(event.ResponseURL, response, deps.network ?? defaultNetwork());
    return { IsComplete: false };
  }
}

async function objectExists(s3: S3Client, bucket: string, key: string): Promise<boolean> {
  try {
    await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch {
    // 404, or 403 without s3:ListBucket: no marker.
    return false;
  }
}

/** Does the work and answers CloudFormation; returns the answer it sent. */
export async function handle(
  event: CustomResourceEvent,
  context: HandlerContext,
  deps: HandlerDeps,
): Promise<CustomResourceResponse> {
  const log = deps.log ?? ((line: string) => console.log(line));
  const base = { StackId: event.StackId, RequestId: event.RequestId, LogicalResourceId: event.LogicalResourceId };
  let response: CustomResourceResponse;
  try {
    log(`${event.RequestType} ${event.LogicalResourceId} (${event.PhysicalResourceId ?? 'new'})`);
    if (event.RequestType === 'Delete') {
      await remove(event, deps, log);
      response = { Status: 'SUCCESS', PhysicalResourceId: event.PhysicalResourceId ?? failedCreateId(event), ...base };
    } else {
      const data = (await push(event, context, deps, log))!;
      response = {
        Status: 'SUCCESS',
        PhysicalResourceId: physicalId(event.ResourceProperties, data),
        Data: data,
        ...base,
      };
    }
  } catch (e) {
    response = failedResponse(event, event.PhysicalResourceId ?? failedCreateId(event), e, log);
  }
  await answer(event.ResponseURL, response, deps.network ?? defaultNetwork());
  return response;
}

function physicalId(p: TarballImageResourceProperties, data: ResourceData): string {
  return `${p.RepositoryName}:${data.ImageTag}@${data.ImageDigest}`;
}

/** The remedies the library names, in the construct's terms (the CLI's name its flags). */
const REMEDIES: Partial<Record<Remedy, string>> = {
  'choose-image': "set the TarballImage's imageName to choose one",
  'choose-platforms': "set the TarballImage's platform to push one platform",
  'run-again': 'deploy again: what is in place is kept',
};

/** What a failure says to CloudFormation: the library's message and, when it names one, the remedy. */
function failureMessage(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  const remedy = e instanceof LadingError && e.remedy ? REMEDIES[e.remedy] : undefined;
  return remedy ? `${msg}; ${remedy}` : msg;
}

/** The physical id of a Create still running across invocations (nothing to delete yet). */
const PENDING_CREATE = 'lading-create-pending';

/** The FAILED answer for `e`, logged, its reason fitted to CloudFormation's 4 KiB, the error code kept. */
function failedResponse(
  event: CustomResourceEvent,
  physicalId: string,
  e: unknown,
  log: (line: string) => void,
): CustomResourceResponse {
  const msg = failureMessage(e);
  log(`FAILED: ${msg}`);
  const base = { StackId: event.StackId, RequestId: event.RequestId, LogicalResourceId: event.LogicalResourceId };
  return fitReason(
    { Status: 'FAILED', PhysicalResourceId: physicalId, ...base },
    msg,
    ` (lading ${e instanceof LadingError ? e.code : 'error'}; see CloudWatch log stream)`,
  );
}

function failedCreateId(event: CustomResourceEvent): string {
  return `${FAILED_CREATE}-${event.RequestId}`.slice(0, 1024);
}

function isFailedCreateId(id: string): boolean {
  return id === FAILED_CREATE || id.startsWith(`${FAILED_CREATE}-`) || id.startsWith(`${PENDING_CREATE}-`);
}

/**
 * Sets `Reason` to `message` + `suffix`, cutting the message (at a character boundary, with an
 * ellipsis) so that the whole JSON body, escapes included, stays under CloudFormation's limit in
 * UTF-8 bytes; the suffix (the error code) is always kept.
 */
export function fitReason(response: CustomResourceResponse, message: string, suffix: string): CustomResourceResponse {
  const fits = (reason: string): boolean =>
    Buffer.byteLength(JSON.stringify({ ...response, Reason: reason })) < MAX_RESPONSE_BYTES;
  const whole = `${message}${suffix}`;
  if (fits(whole)) return { ...response, Reason: whole };
  const chars = Array.from(message);
  let lo = 0;
  let hi = chars.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fits(`${chars.slice(0, mid).join('')}...${suffix}`)) lo = mid;
    else hi = mid - 1;
  }
  return { ...response, Reason: `${chars.slice(0, lo).join('')}...${suffix}` };
}

function parseRepositoryUri(uri: string): { host: string; registryId?: string } {
  const slash = uri.indexOf('/');
  if (slash <= 0) throw new LadingError('BAD_REFERENCE', `RepositoryUri ${uri} has no host`);
  const host = uri.slice(0, slash);
  const account = /^(\d{12})\.dkr\.ecr\./.exec(host);
  return { host, registryId: account?.[1] };
}

type ResourceData = NonNullable<CustomResourceResponse['Data']>;

/**
 * Pushes the archive. Single-invocation mode fails at the deadline; continuation mode (the
 * Provider framework drives more invocations) stops starting new blobs `drainMs` before it,
 * lets those in flight finish, and resolves undefined: the next invocation goes on from there.
 */
async function push(
  event: CustomResourceEvent,
  context: HandlerContext,
  deps: HandlerDeps,
  log: (line: string) => void,
  continuation = false,
): Promise<ResourceData | undefined> {
  const p = event.ResourceProperties;
  const { host, registryId } = parseRepositoryUri(p.RepositoryUri);
  const margin = deps.marginMs ?? 30_000;
  const budget = context.getRemainingTimeInMillis() - margin;
  const ac = new AbortController();
  const drain = new AbortController();
  const continues = new LadingError('ABORTED', 'the push continues in the next invocation');
  const drainTimer = continuation
    ? setTimeout(
        () => {
          log('time is running out: no new blob is started; the next invocation goes on');
          drain.abort(continues);
        },
        Math.max(0, budget - (deps.drainMs ?? 120_000)),
      )
    : undefined;
  drainTimer?.unref();
  const outOfTime = new LadingError(
    'ABORTED',
    `the push of s3://${p.Bucket}/${p.Key} to ${p.RepositoryUri} did not finish within this invocation (the function's timeout less ${Math.round(margin / 1000)} s); ` +
      'the blobs uploaded so far stay in the repository and deploying again skips them; or raise the TarballImage timeout/memorySize',
  );
  const timer = setTimeout(() => ac.abort(outOfTime), Math.max(0, budget));
  timer.unref();

  const started = Date.now();
  const dest = new EcrDestination({
    client: deps.ecr,
    host,
    repository: p.RepositoryName,
    registryId,
    insecure: deps.insecureRegistry,
    network: deps.network,
    logger: log,
  });
  const source = await S3Source.open({
    client: deps.s3,
    bucket: p.Bucket,
    key: p.Key,
    signal: ac.signal,
    logger: log,
  }).catch(async (e: unknown) => {
    clearTimeout(timer);
    clearTimeout(drainTimer);
    await dest.close().catch(() => undefined);
    if (ac.signal.aborted && continuation) return undefined;
    throw ac.signal.aborted ? outOfTime : e;
  });
  if (source === undefined) return undefined;
  deps.onSource?.(source);
  const cacheFile = process.env.XDG_CACHE_HOME ? DigestCache.defaultFile() : undefined;
  const cache = new S3DigestCache(cacheFile, deps.s3, p.Bucket, digestCacheKey(p.Key), log);
  try {
    const engine = new CopyEngine(dest, {
      tags: [p.Tag],
      compress: p.Compress ?? 'gzip',
      ...(p.ImageName ? { image: p.ImageName } : {}),
      ...(p.Platform ? { platforms: [parsePlatform(p.Platform)] } : {}),
      signal: ac.signal,
      drain: continuation ? drain.signal : undefined,
      onEvent: progressLogger(log),
      logger: log,
      // A retry, in this container or a fresh one, skips recompressing what it already pushed.
      cache,
    });
    const result = await engine.copy(source).catch((e: unknown) => {
      if (continuation && (ac.signal.aborted || drain.signal.aborted)) return undefined;
      throw ac.signal.aborted ? outOfTime : e;
    });
    if (result === undefined) {
      log(
        `stopped after ${((Date.now() - started) / 1000).toFixed(1)} s; S3: ${source.stats.requests} GETs, ${source.stats.bytes} of ${source.size} bytes`,
      );
      return undefined;
    }
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    log(
      `pushed ${result.reference} tag ${p.Tag} in ${secs} s: ${result.blobs.uploaded} blobs uploaded (${result.blobs.bytesUploaded} bytes), ${result.blobs.skipped} already there; ` +
        `S3: ${source.stats.requests} GETs, ${source.stats.bytes} of ${source.size} bytes`,
    );
    return { ImageDigest: result.digest!, ImageUri: `${p.RepositoryUri}@${result.digest}`, ImageTag: p.Tag };
  } finally {
    clearTimeout(timer);
    clearTimeout(drainTimer);
    await source.close();
    await dest.close().catch(() => undefined);
  }
}

function progressLogger(log: (line: string) => void): (e: CopyEvent) => void {
  const labels = new Map<string, { label: string; size: number | undefined; next: number }>();
  return (e) => {
    switch (e.type) {
      case 'plan':
        log(`plan: ${e.blobs} blobs (${e.bytes} bytes stored), ${e.manifests} manifest(s)`);
        break;
      case 'blob-start':
        labels.set(e.id, { label: e.label, size: e.size, next: 64 * 1024 * 1024 });
        log(`${e.action} ${e.label} (${e.size ?? '?'} bytes)`);
        break;
      case 'blob-progress': {
        const b = labels.get(e.id);
        if (b && e.bytes >= b.next) {
          b.next = e.bytes + 64 * 1024 * 1024;
          log(`  ${b.label}: ${e.bytes} bytes sent`);
        }
        break;
      }
      case 'blob-skip':
        log(
          `skip ${e.label} ${e.digest} (${e.reason === 'exists' ? 'already in the repository' : e.reason === 'mounted' ? 'mounted from another repository' : 'compressed form already in the repository'})`,
        );
        break;
      case 'blob-done':
        log(`done ${labels.get(e.id)?.label ?? e.id} ${e.digest} (${e.size} bytes)`);
        labels.delete(e.id);
        break;
      case 'manifest':
        log(`manifest ${e.digest} ${e.mediaType}${e.tag ? ` tag ${e.tag}` : ''}`);
        break;
    }
  };
}

/**
 * Delete: nothing unless RemoveOnDelete; then exactly what this physical id names, the tag AND
 * the digest together. An Update that keeps a fixed tag with a new image gets a new physical id,
 * and CloudFormation then deletes the OLD one: removing the tag by name alone would strip it from
 * the NEW image (and ECR deletes an image with its last tag), leaving the stack's ImageUri
 * pointing at nothing. ECR answers ImageTagDoesNotMatchDigest when the tag has moved to another
 * image, and ImageNotFound when it is gone: both mean "not ours any more", so success.
 */
async function remove(event: CustomResourceEvent, deps: HandlerDeps, log: (line: string) => void): Promise<void> {
  const p = event.ResourceProperties;
  const id = event.PhysicalResourceId ?? FAILED_CREATE;
  if (isFailedCreateId(id)) {
    log('the create failed: nothing to delete');
    return;
  }
  if (p.RemoveOnDelete !== 'true') {
    log(`leaving ${id} in the repository (removalPolicy RETAIN)`);
    return;
  }
  // The physical id names what this resource pushed: repository:tag@digest.
  const m = /^(.+):([^:@]+)@(sha256:[a-f0-9]{64})$/.exec(id);
  if (!m) {
    log(`physical id ${id} names no image: nothing to delete`);
    return;
  }
  const [, repositoryName, imageTag, imageDigest] = m as unknown as [string, string, string, string];
  const { registryId } = parseRepositoryUri(p.RepositoryUri);
  const out = await deps.ecr.send(
    new BatchDeleteImageCommand({
      repositoryName,
      imageIds: [{ imageTag, imageDigest }],
      registryId,
    }),
  );
  const failure = out.failures?.[0];
  if (failure?.failureCode === 'ImageTagDoesNotMatchDigest' || failure?.failureCode === 'ImageNotFound') {
    log(
      `tag ${imageTag} of ${repositoryName} no longer names ${imageDigest} (${failure.failureCode}): nothing of this resource's left to delete`,
    );
    return;
  }
  if (failure) {
    throw new LadingError(
      'REGISTRY',
      `deleting tag ${imageTag} (${imageDigest}) of ${repositoryName}: ${failure.failureCode}: ${failure.failureReason ?? ''}`,
    );
  }
  log(`removed tag ${imageTag} (${imageDigest}) from ${repositoryName}`);
}

/** PUT the answer to CloudFormation's pre-signed URL (retried: a lost answer stalls the stack for an hour). */
async function answer(url: string, response: CustomResourceResponse, network: Network): Promise<void> {
  const body = Buffer.from(JSON.stringify(response));
  // The response URL is S3's: through the proxy, as the SDK's calls.
  const { httpAgent, httpsAgent } = network.awsRequestHandler();
  const tls = url.startsWith('https:');
  try {
    await sendAnswer(url, body, tls ? httpsAgent : httpAgent, tls);
  } finally {
    httpAgent.destroy();
    httpsAgent.destroy();
  }
}

async function sendAnswer(url: string, body: Buffer, agent: HttpAgent, tls: boolean): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await new Promise<void>((resolve, reject) => {
        const req = (tls ? httpsRequest : httpRequest)(
          url,
          { method: 'PUT', agent, headers: { 'content-type': '', 'content-length': body.length }, timeout: 30_000 },
          (res) => {
            res.resume();
            res.on('end', () =>
              (res.statusCode ?? 0) < 300 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`)),
            );
          },
        );
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', reject);
        req.end(body);
      });
      return;
    } catch (e) {
      if (attempt >= 5) throw e;
      await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
    }
  }
}
