import { existsSync } from 'node:fs';
import { relative } from 'node:path';
import { DescribeImagesCommand, type ECRClient } from '@aws-sdk/client-ecr';
import { openArchive } from '../archive/archive';
import { DigestCache } from '../compress/cache';
import { copyImage, type CopyOptions, type CopyResult } from '../copy/engine';
import { EcrDestination } from '../ecr/destination';
import { ecrError } from '../ecr/errors';
import { LadingError, type ErrorCode } from '../errors';
import { ProgressRenderer } from '../terminal/progress';
import { readAssembly, stackSelected, type ImageAssetEntry } from './assembly';
import { AwsEnvironment, ecrHost, type AwsOptions, type ResolvedDestination, type Session } from './aws';

export interface PublishOptions {
  /** The cloud assembly directory (cdk.out). */
  assembly: string;
  /** Stack patterns (`cdk deploy` globs over hierarchical ids, stack names, artifact ids); empty: every stack. */
  stacks?: string[];
  /** Images published at once (default 2). */
  concurrency?: number;
  /** Blobs in flight per image (default 3). */
  blobConcurrency?: number;
  /** Resolve, check what is there, publish nothing. */
  dryRun?: boolean;
  aws: Omit<AwsOptions, 'logger' | 'warn'>;
  /** Compressed-digest cache (a re-publish skips compressing); null disables it. Default: the user's cache file. */
  cache?: DigestCache | null;
  signal?: AbortSignal;
  /** Progress lines (what starts, what ends). */
  progress?: (line: string) => void;
  /** Warnings (a role that could not be assumed...). */
  warn?: (line: string) => void;
  logger?: (line: string) => void;
}

export type AssetStatus = 'published' | 'exists' | 'would-publish' | 'skipped' | 'failed';

export interface AssetResult {
  status: AssetStatus;
  /** The asset id (hash of its source). */
  asset: string;
  displayName: string | null;
  /** Stacks that need it (hierarchical ids). */
  stacks: string[];
  /** Destination ids of the asset manifests merged into this result. */
  destinations: string[];
  /** Asset manifest(s), relative to the assembly directory. */
  manifests: string[];
  archive: string | null;
  repositoryName: string;
  imageTag: string;
  account: string | null;
  region: string | null;
  /** ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG once resolved. */
  imageUri: string | null;
  /** Manifest digest now under the tag (published or found). */
  digest: string | null;
  /** Why skipped / why nothing was pushed. */
  reason?: string;
  error?: { code: ErrorCode; message: string };
  blobs?: CopyResult['blobs'];
}

export interface PublishReport {
  assembly: string;
  dryRun: boolean;
  assets: AssetResult[];
  summary: Record<AssetStatus, number>;
}

/** One group of entries that end at the same place (deduplicated destinations). */
interface Group {
  entries: ImageAssetEntry[];
  resolved?: ResolvedDestination;
  result: AssetResult;
}

function describeAsset(r: Pick<AssetResult, 'displayName' | 'asset' | 'stacks'>): string {
  const name = r.displayName ? `"${r.displayName}" (${r.asset.slice(0, 12)})` : r.asset.slice(0, 12);
  const stacks = r.stacks.length === 0 ? 'no stack' : `stack${r.stacks.length > 1 ? 's' : ''} ${r.stacks.join(', ')}`;
  return `asset ${name} of ${stacks}`;
}

function union(a: string[], b: string[]): string[] {
  return [...new Set([...a, ...b])];
}

function baseResult(e: ImageAssetEntry, root: string): AssetResult {
  return {
    status: 'skipped',
    asset: e.assetId,
    displayName: e.displayName ?? null,
    stacks: [...e.stacks],
    destinations: [e.destinationId],
    manifests: [relative(root, e.manifestFile) || e.manifestFile],
    archive: e.source.kind === 'archive' ? e.source.path : null,
    repositoryName: e.destination.repositoryName,
    imageTag: e.destination.imageTag,
    account: null,
    region: null,
    imageUri: null,
    digest: null,
  };
}

function merge(into: AssetResult, e: ImageAssetEntry, root: string): void {
  into.stacks = union(into.stacks, e.stacks);
  into.destinations = union(into.destinations, [e.destinationId]);
  into.manifests = union(into.manifests, [relative(root, e.manifestFile) || e.manifestFile]);
}

/** DescribeImages by tag: the digest under the tag, or undefined. Exactly the CDK CLI's "is it published" check. */
async function describeTag(
  ecr: ECRClient,
  d: ResolvedDestination,
  account: string,
  signal?: AbortSignal,
): Promise<string | undefined> {
  try {
    const out = await ecr.send(
      new DescribeImagesCommand({ repositoryName: d.repositoryName, imageIds: [{ imageTag: d.imageTag }] }),
      { abortSignal: signal },
    );
    return out.imageDetails?.[0]?.imageDigest ?? 'unknown';
  } catch (e) {
    const name = (e as { name?: string }).name;
    if (name === 'ImageNotFoundException') return undefined;
    if (name === 'RepositoryNotFoundException') {
      throw new LadingError(
        'NOT_FOUND',
        `no ECR repository named ${d.repositoryName} in account ${account}, region ${d.region}: is the environment bootstrapped? (cdk bootstrap aws://${account}/${d.region})`,
        { cause: e, details: { awsCode: name } },
      );
    }
    throw ecrError(e, 'DescribeImages', `${d.repositoryName}:${d.imageTag}`, 'checking whether the image is published');
  }
}

/** Runs every task with at most `limit` at once; a task's failure never stops the others. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

/**
 * Publishes the tarball image assets of a cloud assembly to their ECR destinations, so
 * that `cdk deploy` finds them there and never runs docker. Never throws for one asset's
 * failure: every asset is tried, the report says what happened to each.
 */
export async function publishAssembly(opts: PublishOptions): Promise<PublishReport> {
  const logger = opts.logger;
  const plan = readAssembly(opts.assembly, { env: opts.aws.env, logger });
  const root = plan.directory;
  const patterns = opts.stacks ?? [];
  let entries = plan.assets;
  if (patterns.length > 0) {
    const selected = new Set(plan.stacks.filter((s) => stackSelected(s, patterns)).map((s) => s.displayName));
    if (selected.size === 0) {
      const known = plan.stacks.map((s) => s.displayName).join(', ') || 'none';
      throw new LadingError(
        'NOT_FOUND',
        `no stack matches ${patterns.map((p) => `"${p}"`).join(', ')} (stacks in ${opts.assembly}: ${known})`,
      );
    }
    entries = entries.filter((e) => e.stacks.some((s) => selected.has(s)));
    for (const e of entries) e.stacks = e.stacks.filter((s) => selected.has(s));
  }

  const aws = new AwsEnvironment({
    ...opts.aws,
    ...(logger ? { logger } : {}),
    ...(opts.warn ? { warn: opts.warn } : {}),
  });
  const results: AssetResult[] = [];
  try {
    // Assets lading leaves to the CDK CLI: one line per asset.
    const skipped = new Map<string, AssetResult>();
    for (const e of entries) {
      if (e.source.kind !== 'skip') continue;
      const have = skipped.get(e.assetId);
      if (have) merge(have, e, root);
      else skipped.set(e.assetId, { ...baseResult(e, root), status: 'skipped', reason: e.source.reason });
    }

    // Archives: resolve destinations, then merge those that end at the same repository:tag.
    const groups = new Map<string, Group>();
    const failedEarly: AssetResult[] = [];
    for (const e of entries) {
      if (e.source.kind !== 'archive') continue;
      let resolved: ResolvedDestination;
      try {
        resolved = await aws.resolve(e.destination);
      } catch (err) {
        const r = baseResult(e, root);
        const le = err instanceof LadingError ? err : new LadingError('INTERNAL', String(err), { cause: err });
        failedEarly.push({
          ...r,
          status: 'failed',
          error: { code: le.code, message: `${describeAsset(r)}: ${le.message}` },
        });
        continue;
      }
      const key = JSON.stringify([
        resolved.region,
        resolved.assumeRoleArn ?? '',
        resolved.repositoryName,
        resolved.imageTag,
      ]);
      const g = groups.get(key);
      if (g) {
        merge(g.result, e, root);
        g.entries.push(e);
      } else {
        const r = baseResult(e, root);
        r.repositoryName = resolved.repositoryName;
        r.imageTag = resolved.imageTag;
        r.region = resolved.region;
        groups.set(key, { entries: [e], resolved, result: r });
      }
    }

    const cache = opts.cache === undefined ? new DigestCache(DigestCache.defaultFile(opts.aws.env)) : opts.cache;
    await pool([...groups.values()], opts.concurrency ?? 2, async (g) => {
      try {
        await publishGroup(g, aws, { ...opts, cache });
      } catch (err) {
        const le =
          err instanceof LadingError
            ? err
            : new LadingError('INTERNAL', `unexpected error: ${(err as Error)?.message ?? String(err)}`, {
                cause: err,
              });
        g.result.status = 'failed';
        g.result.error = { code: le.code, message: `${describeAsset(g.result)}: ${le.message}` };
        if (le.cause && logger) logger(`${describeAsset(g.result)}: ${(le.cause as Error).stack ?? String(le.cause)}`);
        opts.progress?.(`failed     ${describeAsset(g.result)}: ${le.message}`);
      }
    });
    results.push(...[...groups.values()].map((g) => g.result), ...failedEarly, ...skipped.values());
  } finally {
    aws.close();
  }
  const summary: Record<AssetStatus, number> = { published: 0, exists: 0, 'would-publish': 0, skipped: 0, failed: 0 };
  for (const r of results) summary[r.status]++;
  return { assembly: root, dryRun: opts.dryRun === true, assets: results, summary };
}

async function publishGroup(
  g: Group,
  aws: AwsEnvironment,
  opts: PublishOptions & { cache: DigestCache | null },
): Promise<void> {
  const r = g.result;
  const d = g.resolved!;
  // Entries of one group name the same asset (same hash): any copy of the archive will do.
  const found = g.entries.map((e) => e.source).find((s) => s.kind === 'archive' && existsSync(s.path));
  if (!found || found.kind !== 'archive') {
    const s = g.entries[0]!.source as Extract<ImageAssetEntry['source'], { kind: 'archive' }>;
    throw new LadingError(
      'NOT_FOUND',
      `the image archive ${s.path} does not exist (looked in ${s.lookedIn.join(', ')}); run "cdk synth" again`,
    );
  }
  r.archive = found.path;

  const session: Session = await aws.session(d);
  r.account = session.account;
  const host = ecrHost(session.account, d.region, session.partition);
  r.imageUri = `${host}/${d.repositoryName}:${d.imageTag}`;
  opts.logger?.(`${describeAsset(r)}: ${found.path} -> ${r.imageUri} with ${session.identity}`);

  const existing = await describeTag(session.ecr, d, session.account, opts.signal);
  if (existing !== undefined) {
    r.status = 'exists';
    r.digest = existing;
    r.reason = 'the tag is already in the repository';
    return;
  }
  if (opts.dryRun) {
    r.status = 'would-publish';
    r.reason = 'the tag is not in the repository';
    return;
  }

  opts.progress?.(`publishing ${describeAsset(r)} -> ${r.imageUri}`);
  const dest = new EcrDestination({
    client: session.ecr,
    host,
    repository: d.repositoryName,
    region: d.region,
    network: aws.network,
    logger: opts.logger,
  });
  // Blob by blob, as plain lines prefixed with the asset: several images may be in flight.
  const label = r.displayName ?? r.asset.slice(0, 12);
  const progress = opts.progress;
  const renderer = progress
    ? new ProgressRenderer((s) => progress(`  ${label}: ${s.replace(/\n$/, '')}`), 'plain')
    : undefined;
  const copyOpts: CopyOptions = {
    onEvent: renderer?.onEvent,
    tags: [d.imageTag],
    compress: 'gzip',
    cache: opts.cache,
    concurrency: opts.blobConcurrency ?? 3,
    signal: opts.signal,
    logger: opts.logger,
  };
  try {
    let out: CopyResult;
    try {
      out = await copyImage(found.path, dest, copyOpts);
    } catch (e) {
      if (!(e instanceof LadingError && e.code === 'AMBIGUOUS_IMAGE')) throw e;
      // docker load loads them all and the asset takes the last one it reports: so do we.
      const image = await lastImageOf(found.path);
      if (image === undefined) throw e;
      opts.logger?.(
        `${found.path} holds several images: publishing the last one, ${image}, as docker load | tail -n 1 would`,
      );
      out = await copyImage(found.path, dest, { ...copyOpts, image });
    }
    r.status = 'published';
    r.digest = out.digest;
    r.blobs = out.blobs;
    opts.progress?.(`published  ${describeAsset(r)} -> ${r.imageUri} (${out.digest})`);
  } catch (e) {
    // Immutable tags (the bootstrap repository): another publisher got there first.
    if (e instanceof LadingError && e.details?.awsCode === 'ImageTagAlreadyExistsException') {
      const now = await describeTag(session.ecr, d, session.account, opts.signal);
      if (now !== undefined) {
        r.status = 'exists';
        r.digest = now;
        r.reason = 'another publisher tagged it while lading was publishing';
        return;
      }
    }
    throw e;
  } finally {
    renderer?.stop();
    await dest.close();
  }
}

async function lastImageOf(path: string): Promise<string | undefined> {
  const archive = await openArchive(path);
  try {
    const last = archive.images[archive.images.length - 1];
    return last?.names[0] ?? last?.digest;
  } finally {
    await archive.close();
  }
}
