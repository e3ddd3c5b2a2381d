import { closeSync, openSync, readSync } from 'node:fs';
import type { BenchInputs } from './inputs';
import { BenchError, mustSucceed, timed, type ChildResult } from './measure';

/** What every scenario gets from run.ts. */
export interface BenchContext {
  /** The built CLI (dist/src/cli/main.js next to this bench). */
  cli: string;
  /** The built baseline readers (bench/baseline.js). */
  baseline: string;
  /** Work dir: cached inputs, scratch files. */
  workDir: string;
  /** Scratch dir for GNU time outputs, watched TMPDIRs, caches. */
  scratchDir: string;
  /** Where registries and lading serve store what is pushed (tmpfs when it has room). */
  serverRoot: string;
  runs: number;
  inputs: BenchInputs;
  log(line: string): void;
}

/** Environment for lading children: no colours, no progress, no proxies, no real AWS. */
export function childEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of Object.keys(env)) {
    if (/^(AWS_|HTTPS?_PROXY$|https?_proxy$|NO_PROXY$|no_proxy$|NODE_OPTIONS$)/.test(k)) delete env[k];
  }
  return { ...env, ...extra };
}

export interface PushJson {
  digest: string;
  reference: string;
  blobs: { uploaded: number; skipped: number; bytesUploaded: number };
}

/** Parses `lading push --json` output, failing loudly on anything but success. */
export function pushResult(r: ChildResult, what: string): PushJson {
  mustSucceed(r, what);
  let doc: unknown;
  try {
    doc = JSON.parse(r.stdout);
  } catch {
    throw new BenchError(`${what}: stdout is not the JSON document --json promises: ${r.stdout.slice(0, 2000)}`);
  }
  const d = doc as Partial<PushJson> & { error?: unknown };
  if (d.error !== undefined || typeof d.digest !== 'string' || d.blobs === undefined) {
    throw new BenchError(`${what}: unexpected result ${JSON.stringify(doc).slice(0, 2000)}`);
  }
  return d as PushJson;
}

/** Runs the lading CLI under GNU time. */
export function lading(
  ctx: BenchContext,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  onSpawn?: () => void,
): Promise<ChildResult> {
  return timed(process.execPath, [ctx.cli, ...args], {
    env: childEnv(env),
    scratchDir: ctx.scratchDir,
    timeoutMs: 10 * 60_000,
    onSpawn,
  });
}

/** Reads a file once so later reads come from the page cache. */
export function warm(path: string): void {
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(4 << 20);
  try {
    while (readSync(fd, buf, 0, buf.length, null) > 0);
  } finally {
    closeSync(fd);
  }
}
