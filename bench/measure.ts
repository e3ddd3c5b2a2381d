/**
 * Measuring children: wall time, CPU time (user + sys) and peak resident set of one child
 * process, read by GNU time (`/usr/bin/time`, Debian package `time`) from the kernel's
 * rusage of that child (ru_maxrss is the child's own maximum RSS, not a sample).
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, type Dirent } from 'node:fs';
import { join } from 'node:path';

export const TIME_BIN = '/usr/bin/time';

/** One measurement of one child. */
export interface Sample {
  wallS: number;
  userS: number;
  sysS: number;
  cpuS: number;
  rssMiB: number;
}

export interface ChildResult extends Sample {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export class BenchError extends Error {}

/**
 * Makes sure GNU time is there: installs it with apt-get when running as root, otherwise
 * fails with the command to run.
 */
export function ensureTimeBinary(log: (s: string) => void): void {
  if (existsSync(TIME_BIN)) return;
  if (process.getuid?.() === 0) {
    log(`${TIME_BIN} is missing: installing the Debian package "time" (apt-get install -y time)`);
    try {
      execFileSync('apt-get', ['install', '-y', '--no-install-recommends', 'time'], { stdio: 'inherit' });
    } catch {
      // reported below
    }
    if (existsSync(TIME_BIN)) return;
  }
  throw new BenchError(
    `${TIME_BIN} (GNU time) is missing; it measures each child's CPU time and peak RSS. Install it: apt-get install -y time`,
  );
}

let counter = 0;

function cap(s: string, n = 200_000): string {
  return s.length > n ? s.slice(-n) : s;
}

/**
 * Runs `cmd args` under GNU time and resolves when it exits (whatever its exit code: the
 * caller checks `code`). Wall time is measured here with a monotonic clock (ms precision);
 * user, sys and max RSS come from GNU time (`%U %S %M`).
 */
export async function timed(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; scratchDir: string; timeoutMs?: number; onSpawn?: () => void },
): Promise<ChildResult> {
  mkdirSync(opts.scratchDir, { recursive: true });
  const out = join(opts.scratchDir, `time-${process.pid}-${++counter}.txt`);
  const child = spawn(TIME_BIN, ['-o', out, '-f', '%e %U %S %M', cmd, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: opts.env ?? process.env,
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => {
    stdout = cap(stdout + b.toString());
  });
  child.stderr.on('data', (b: Buffer) => {
    stderr = cap(stderr + b.toString());
  });
  const start = process.hrtime.bigint();
  opts.onSpawn?.();
  const timer = opts.timeoutMs
    ? setTimeout(() => {
        stderr += `\n[bench] killed after ${opts.timeoutMs} ms`;
        child.kill('SIGKILL');
      }, opts.timeoutMs)
    : undefined;
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
    (resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c, s) => resolve({ code: c, signal: s }));
    },
  );
  const wallS = Number(process.hrtime.bigint() - start) / 1e9;
  if (timer) clearTimeout(timer);
  let text = '';
  try {
    text = readFileSync(out, 'utf8');
  } finally {
    rmSync(out, { force: true });
  }
  // On failure GNU time writes "Command exited with non-zero status N" first; the numbers are last.
  const last = text.trim().split('\n').pop() ?? '';
  const m = /^([\d.]+) ([\d.]+) ([\d.]+) (\d+)$/.exec(last.trim());
  if (!m) {
    throw new BenchError(
      `could not read GNU time's output for ${cmd} (exit ${code ?? signal}): ${JSON.stringify(text)}\n${stderr.slice(-2000)}`,
    );
  }
  const userS = Number(m[2]);
  const sysS = Number(m[3]);
  return { wallS, userS, sysS, cpuS: userS + sysS, rssMiB: Number(m[4]) / 1024, code, signal, stdout, stderr };
}

/** Throws a BenchError naming the command and its stderr when a child failed. */
export function mustSucceed(r: ChildResult, what: string): void {
  if (r.code !== 0) {
    throw new BenchError(
      `${what} failed (exit ${r.code ?? r.signal}):\n${r.stderr.slice(-4000)}${r.stdout ? `\nstdout: ${r.stdout.slice(-2000)}` : ''}`,
    );
  }
}

let clockTicks: number | undefined;

/** CPU seconds (user + sys) a running process has used so far, from /proc/PID/stat. */
export function processCpuSeconds(pid: number): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of proc(5) (utime, stime); fields[0] is field 3.
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return NaN;
  }
}

/**
 * Bytes a running process has read with read(2) and friends so far (`rchar` of
 * /proc/PID/io, all its threads), sockets included: for a proxy, the bytes it relayed
 * (both directions). NaN where the kernel does not keep the count.
 */
export function processReadBytes(pid: number): number {
  try {
    const m = /^rchar:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Peak RSS (VmHWM) of a running process in MiB, from /proc/PID/status. */
export function processPeakRssMiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Total bytes and files under a directory right now (missing: 0). */
export function dirUsage(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  const walk = (d: string): void => {
    let entries: Dirent[];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        files++;
        try {
          bytes += statSync(p).size;
        } catch {
          // removed meanwhile
        }
      }
    }
  };
  walk(dir);
  return { bytes, files };
}

/** Polls a directory's usage every `everyMs` until stopped; reports the maxima seen. */
export function watchDir(
  dir: string,
  everyMs = 20,
): { stop(): { maxBytes: number; maxFiles: number; endBytes: number; endFiles: number } } {
  let maxBytes = 0;
  let maxFiles = 0;
  const tick = (): void => {
    const u = dirUsage(dir);
    maxBytes = Math.max(maxBytes, u.bytes);
    maxFiles = Math.max(maxFiles, u.files);
  };
  const timer = setInterval(tick, everyMs);
  return {
    stop() {
      clearInterval(timer);
      tick();
      const end = dirUsage(dir);
      return { maxBytes, maxFiles, endBytes: end.bytes, endFiles: end.files };
    },
  };
}

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Median of each metric separately. */
export function medianSample(samples: Sample[]): Sample {
  return {
    wallS: median(samples.map((s) => s.wallS)),
    userS: median(samples.map((s) => s.userS)),
    sysS: median(samples.map((s) => s.sysS)),
    cpuS: median(samples.map((s) => s.cpuS)),
    rssMiB: median(samples.map((s) => s.rssMiB)),
  };
}

/** Flushes dirty pages so one run's writes are not paid for by the next (not measured). */
export function syncDisks(): void {
  try {
    execFileSync('sync', { stdio: 'ignore' });
  } catch {
    // best effort
  }
}
