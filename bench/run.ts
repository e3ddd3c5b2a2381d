/**
 * `npm run bench`: lading measured beside a reference, in one run. See bench/README.md.
 *
 *   node dist/bench/run.js [--runs N] [--quick] [--only inspect|push|real|ecr|proxy|cdk20] [--layer-mib N]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg, release, totalmem } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { benchCdk20 } from './cdk20';
import type { BenchContext } from './context';
import { benchEcr } from './ecr';
import { prepareInputs } from './inputs';
import { benchInspect } from './inspect';
import { BenchError, ensureTimeBinary } from './measure';
import { benchProxy } from './proxy';
import { benchPush } from './push';
import { benchReal } from './real';
import { renderTable, type Table } from './report';
import { REGISTRY_BINARY, TINYPROXY_BINARY } from './servers';

const SCENARIOS = ['inspect', 'push', 'real', 'ecr', 'proxy', 'cdk20'] as const;
type Scenario = (typeof SCENARIOS)[number];

const help = `Usage: npm run bench -- [options]     (or: node dist/bench/run.js [options])

Benchmarks lading against a reference measured in the same run; prints Markdown tables
and writes bench/results/latest.json (and bench/RESULTS.md after a full run).

Options:
  --runs N          measurements per contender, medians reported (default 3; 1 with --quick)
  --quick           small inputs (64 MiB layers) for a smoke run
  --layer-mib N     layer size in MiB (default 256; the images have 5 layers; the real-files
                    layer of 'real' is about 1.9x this)
  --only S          inspect, push, real, ecr, proxy or cdk20 (repeatable, or comma-separated)
  -h, --help        this help

Environment:
  LADING_BENCH_DIR         work dir: cached inputs, scratch (default /tmp/lading-bench)
  LADING_BENCH_SERVER_DIR  where the registries and lading serve store pushed blobs
                           (default /dev/shm/lading-bench when it has room, else the work dir)
`;

function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

function toolVersion(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? `${r.stdout}${r.stderr}`.trim().split('\n')[0]! : 'unknown';
}

function requireFile(path: string, what: string): void {
  if (!existsSync(path)) throw new BenchError(`${what} is missing (${path})`);
}

function requireCommand(cmd: string, install: string, versionArgs = ['--version']): void {
  const r = spawnSync(cmd, versionArgs, { stdio: 'ignore' });
  if (r.error !== undefined || r.status !== 0)
    throw new BenchError(`${cmd} is missing or does not run; install it: ${install}`);
}

function chooseServerRoot(workDir: string, needBytes: number): string {
  const env = process.env.LADING_BENCH_SERVER_DIR;
  if (env) return resolve(env);
  try {
    const s = statfsSync('/dev/shm');
    // tmpfs keeps the registry's writes off the disk that other work shares: less noise.
    if (s.bavail * s.bsize > needBytes * 2) return '/dev/shm/lading-bench';
  } catch {
    // no /dev/shm
  }
  return join(workDir, 'servers');
}

function machine(): Record<string, string | number> {
  const c = cpus();
  return {
    host: hostname(),
    cpu: `${c.length} x ${c[0]?.model ?? 'unknown'}`,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    skopeo: toolVersion('skopeo', ['--version']),
    registry: toolVersion(REGISTRY_BINARY, ['--version']),
    tinyproxy: toolVersion(TINYPROXY_BINARY, ['-v']),
    gnuTime: existsSync('/usr/bin/time') ? 'yes' : 'no',
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string' },
      quick: { type: 'boolean' },
      'layer-mib': { type: 'string' },
      only: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(help);
    return 0;
  }
  const quick = values.quick === true;
  const runs = values.runs !== undefined ? Number(values.runs) : quick ? 1 : 3;
  if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new BenchError('--runs must be an integer from 1 to 50');
  const layerMiB = values['layer-mib'] !== undefined ? Number(values['layer-mib']) : quick ? 64 : 256;
  if (!Number.isInteger(layerMiB) || layerMiB < 1 || layerMiB > 4096)
    throw new BenchError('--layer-mib must be an integer from 1 to 4096');
  const only = new Set<Scenario>();
  for (const o of (values.only ?? []).flatMap((s) => s.split(','))) {
    if (!(SCENARIOS as readonly string[]).includes(o))
      throw new BenchError(`--only takes ${SCENARIOS.join(', ')}, not "${o}"`);
    only.add(o as Scenario);
  }
  const selected = only.size > 0 ? SCENARIOS.filter((s) => only.has(s)) : [...SCENARIOS];
  const full = !quick && only.size === 0 && layerMiB === 256;

  // The compiled bench sits in <outDir>/bench/, the CLI in <outDir>/src/cli/.
  const outDir = resolve(__dirname, '..');
  const root = resolve(outDir, '..');
  const cli = join(outDir, 'src', 'cli', 'main.js');
  const baseline = join(__dirname, 'baseline.js');
  requireFile(cli, 'the built lading CLI (npm run build)');
  requireFile(join(root, 'package.json'), 'package.json of the repository');
  ensureTimeBinary(log);
  if (selected.includes('real')) {
    requireCommand('tar', 'apt-get install -y tar');
    requireCommand('taskset', 'apt-get install -y util-linux');
  }
  if (selected.includes('push') || selected.includes('proxy') || selected.includes('real')) {
    requireCommand('skopeo', 'apt-get install -y skopeo');
    if (!existsSync(REGISTRY_BINARY))
      throw new BenchError(`${REGISTRY_BINARY} is missing; install it: apt-get install -y docker-registry`);
  }
  if (selected.includes('proxy')) {
    // tinyproxy has no --version: -v prints it and exits 0.
    requireCommand(TINYPROXY_BINARY, 'apt-get install -y tinyproxy', ['-v']);
    requireCommand('openssl', 'apt-get install -y openssl', ['version']);
  }

  const workDir = resolve(process.env.LADING_BENCH_DIR ?? '/tmp/lading-bench');
  const scratchDir = join(workDir, `scratch-${process.pid}`);
  mkdirSync(scratchDir, { recursive: true });
  const serverRoot = join(chooseServerRoot(workDir, 5 * layerMiB * 2 ** 20 * 2), `servers-${process.pid}`);
  const started = new Date();
  const loadStart = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  log(
    `work dir ${workDir}, servers store in ${serverRoot}, ${runs} run(s), ${layerMiB} MiB layers, scenarios: ${selected.join(', ')}`,
  );

  const cleanup = (): void => {
    rmSync(scratchDir, { recursive: true, force: true });
    rmSync(serverRoot, { recursive: true, force: true });
  };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(sig === 'SIGINT' ? 130 : 143));

  const inputs = await prepareInputs(workDir, layerMiB, log);
  const ctx: BenchContext = { cli, baseline, workDir, scratchDir, serverRoot, runs, inputs, log };

  const tables: Table[] = [];
  const print = (t: Table): void => {
    process.stdout.write(`\n${renderTable(t)}\n`);
  };
  for (const s of selected) {
    const made =
      s === 'inspect'
        ? await benchInspect(ctx)
        : s === 'push'
          ? await benchPush(ctx)
          : s === 'real'
            ? await benchReal(ctx)
            : s === 'ecr'
              ? await benchEcr(ctx)
              : s === 'proxy'
                ? await benchProxy(ctx)
                : await benchCdk20(ctx);
    for (const t of made) print(t);
    tables.push(...made);
  }

  const info = machine();
  const finished = new Date();
  const loadEnd = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  const doc = {
    date: started.toISOString(),
    durationS: Math.round((finished.getTime() - started.getTime()) / 1000),
    machine: info,
    loadAverage: { start: loadStart, end: loadEnd },
    options: { runs, layerMiB, quick, scenarios: selected },
    inputs: {
      dockerArchive: inputs.dockerArchive,
      ociArchive: inputs.ociArchive,
      inspectArchive: inputs.inspectArchive,
      inspectGzip: inputs.inspectGzip,
      layers: inputs.layers.map((l) => ({ kind: l.kind, size: l.size, digest: l.digest, gzipSize: l.gz.size })),
    },
    tables,
    failed: tables.flatMap((t) =>
      t.rows.filter((r) => r.pass === false).map((r) => `${r.scenario} / ${r.tool}: ${(r.missed ?? []).join(', ')}`),
    ),
  };
  const resultsDir = join(root, 'bench', 'results');
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(join(resultsDir, 'latest.json'), `${JSON.stringify(doc, null, 2)}\n`);
  log(`results: ${join(resultsDir, 'latest.json')}`);
  if (full) {
    const md = [
      '# lading benchmark results',
      '',
      `Full run (all scenarios, 256 MiB layers) of \`node ${relative(root, process.argv[1] ?? 'dist/bench/run.js')}\` (what \`npm run bench\` runs after building) on ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC, ${doc.durationS} s.`,
      `Machine: ${info.cpu}, ${info.memoryGiB} GiB RAM, Linux ${info.kernel}, Node ${info.node}, ${info.skopeo}, ${info.registry}, ${info.tinyproxy}.`,
      `Load average (1, 5, 15 min) at start: ${loadStart}; at end: ${loadEnd} (the machine is shared: other work runs beside the bench, slowing both contenders of each pair).`,
      `Median of ${runs} runs per contender (each metric's median taken separately); peak RSS is each child's own maximum resident set (GNU time, rusage).`,
      '',
      ...tables.flatMap((t) => [renderTable(t), '']),
    ].join('\n');
    writeFileSync(join(root, 'bench', 'RESULTS.md'), md);
    log(`results: ${join(root, 'bench', 'RESULTS.md')}`);
  }
  if (doc.failed.length > 0) log(`targets missed: ${doc.failed.join('; ')}`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(
      `bench: ${e instanceof BenchError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
    );
    process.exitCode = 1;
  },
);
