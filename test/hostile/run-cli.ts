/**
 * Runs the compiled CLI (`src/cli/main.js` next to this compiled test tree) as a child process
 * in a private sandbox: its own TMPDIR, XDG_CACHE_HOME, HOME and working directory, so a test
 * can check afterwards that lading wrote nothing outside them. Peak RSS comes from
 * `/usr/bin/time -f %M` when installed (written to a file, so lading's stderr stays clean).
 * No side effects at import.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CLI = join(__dirname, '../../src/cli/main.js');
const TIME = '/usr/bin/time';
export const timeAvailable = existsSync(TIME);

export interface Sandbox {
  root: string;
  tmp: string;
  cache: string;
  home: string;
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Every path under root (relative), sorted: what the test compares before and after. */
  tree(): string[];
  remove(): void;
}

export function sandbox(prefix = 'lading-hostile-'): Sandbox {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const tmp = join(root, 'tmp');
  const cache = join(root, 'cache');
  const home = join(root, 'home');
  const cwd = join(root, 'cwd');
  for (const d of [tmp, cache, home, cwd]) mkdirSync(d);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    TMPDIR: tmp,
    XDG_CACHE_HOME: cache,
    HOME: home,
    // no ambient AWS or docker credentials
    AWS_EC2_METADATA_DISABLED: 'true',
    DOCKER_CONFIG: join(home, '.docker'),
  };
  const tree = (): string[] => {
    const out: string[] = [];
    const walk = (d: string, rel: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const r = rel === '' ? e.name : `${rel}/${e.name}`;
        out.push(e.isDirectory() ? `${r}/` : r);
        if (e.isDirectory()) walk(join(d, e.name), r);
      }
    };
    walk(root, '');
    return out.sort();
  };
  return { root, tmp, cache, home, cwd, env, tree, remove: () => rmSync(root, { recursive: true, force: true }) };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  /** Peak RSS in KiB (undefined without /usr/bin/time). */
  maxRssKiB: number | undefined;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Killed (SIGKILL) after this long; the result then has signal SIGKILL. @default 120000 */
  timeoutMs?: number;
  stdin?: string | Buffer;
  /** Piped to the child's standard input instead of `stdin` (destroyed when the child exits). */
  stdinStream?: NodeJS.ReadableStream & { destroy(): void };
  /** Called once the child is spawned (e.g. to signal it later). */
  onSpawn?: (pid: number, output: { stdout: () => string; stderr: () => string }) => void;
  /** Measure peak RSS with /usr/bin/time. @default true */
  measure?: boolean;
}

/** Runs `node main.js ...args`; resolves when it exits. */
export function runCli(args: string[], opts: RunOptions = {}): Promise<CliResult> {
  const measure = (opts.measure ?? true) && timeAvailable;
  const rssFile = measure ? join(mkdtempSync(join(tmpdir(), 'lading-rss-')), 'rss') : undefined;
  const cmd = measure ? TIME : process.execPath;
  const argv = measure ? ['-o', rssFile!, '-f', '%M', process.execPath, CLI, ...args] : [CLI, ...args];
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.stdin.on('error', () => undefined);
    if (opts.stdinStream) {
      opts.stdinStream.on('error', () => undefined);
      opts.stdinStream.pipe(child.stdin);
      child.on('close', () => opts.stdinStream!.destroy());
    } else child.stdin.end(opts.stdin);
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    if (child.pid !== undefined) opts.onSpawn?.(child.pid, { stdout: () => stdout, stderr: () => stderr });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let maxRssKiB: number | undefined;
      if (rssFile !== undefined) {
        try {
          // time(1) prints "Command exited with non-zero status N" first, the number last.
          const lines = readFileSync(rssFile, 'utf8').trim().split('\n');
          const n = Number(lines[lines.length - 1]);
          if (Number.isFinite(n)) maxRssKiB = n;
        } catch {
          // killed before time(1) wrote it
        }
        rmSync(join(rssFile, '..'), { recursive: true, force: true });
      }
      // Under time(1) a child killed by a signal shows as 128+N: map back the usual ones.
      let sig = signal;
      let c = code;
      if (measure && code !== null && code > 128 && signal === null) {
        const bySignal: Record<number, NodeJS.Signals> = { 137: 'SIGKILL' };
        if (bySignal[code]) {
          sig = bySignal[code]!;
          c = null;
        }
      }
      resolve({ code: c, signal: sig, stdout, stderr, ms: Date.now() - t0, maxRssKiB });
    });
  });
}

/** Asserts the shape of a failure's stderr: one line, `lading: ...`, no stack trace. */
export function oneLineError(stderr: string): string | undefined {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  const errs = lines.filter((l) => l.startsWith('lading: '));
  if (errs.length !== 1) return `expected one "lading: " line on stderr, got: ${JSON.stringify(stderr)}`;
  if (/\n\s+at /.test(stderr) || /\bat .*\.js:\d+:\d+/.test(stderr)) return `stack trace on stderr: ${stderr}`;
  return undefined;
}
