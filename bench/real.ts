/**
 * Issue 14: a realistic layer. Random bytes (which lading stores almost for free) and repeated
 * text (which deflate eats at ~800 MiB/s) flatter a compressor; real layers are binaries,
 * shared libraries, scripts and text, about 2.4x smaller at gzip level 1 and compressed at
 * well under 100 MiB/s per core. This scenario builds a docker-save archive with ONE
 * uncompressed layer of real files from this machine and pushes it with lading and with
 * skopeo to a fresh local docker-registry each, plus lading pinned to one core (the scaling
 * of its parallel gzip).
 *
 * The layer, reproducible on a given machine: the regular files and symlinks of
 * /usr/lib/<arch>-linux-gnu, /usr/bin and /usr/share, walked in byte order of their names,
 * each root's files taken in that order while they fit in its share of the size (a file
 * that would overflow it is skipped), a hard-linked file once, plus the directories above
 * them; written by GNU tar in that order with mtime 0, owner and group 0 (`--format=gnu`,
 * `--no-recursion`). Cached in `$LADING_BENCH_DIR/real-<MiB>m/`.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { get } from 'node:http';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { lading, pushResult, warm, type BenchContext } from './context';
import { sha256File, writeDockerArchive } from './inputs';
import {
  BenchError,
  medianSample,
  mustSucceed,
  processCpuSeconds,
  syncDisks,
  timed,
  type ChildResult,
  type Sample,
} from './measure';
import { checkManifest, dropSkopeoCache } from './push';
import { judge, ratioText, type Row, type Table } from './report';
import { startRegistry } from './servers';

const MiB = 1024 * 1024;
const REAL_VERSION = 1;

export interface RealInput {
  /** docker-save archive: one uncompressed layer. */
  archive: string;
  /** sha256 of the layer tar (its diff_id). */
  diffId: string;
  layerBytes: number;
  files: number;
  symlinks: number;
  dirs: number;
  roots: string[];
  perRootMiB: number;
}

function roots(): string[] {
  const arch = process.arch === 'arm64' ? 'aarch64' : process.arch === 'x64' ? 'x86_64' : process.arch;
  return [`/usr/lib/${arch}-linux-gnu`, '/usr/bin', '/usr/share'].filter((r) => existsSync(r));
}

/** Names in byte order (as `LC_ALL=C sort`), whatever the locale. */
function sortedNames(dir: string): string[] {
  try {
    return readdirSync(dir).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  } catch {
    return [];
  }
}

/** The entries of the layer, relative to /, in tar order; see the file comment. */
function selectEntries(
  rootDirs: string[],
  perRoot: number,
): { list: string[]; files: number; symlinks: number; dirs: number; bytes: number } {
  const list: string[] = [];
  const seenInodes = new Set<string>();
  let files = 0;
  let symlinks = 0;
  let dirs = 0;
  let bytes = 0;
  for (const root of rootDirs) {
    let budget = perRoot;
    // Directories above the root, once.
    const parts = root.split('/').filter(Boolean);
    for (let i = 1; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!list.includes(d)) {
        list.push(d);
        dirs++;
      }
    }
    const walk = (abs: string): string[] => {
      const out: string[] = [];
      for (const name of sortedNames(abs)) {
        const p = join(abs, name);
        let st;
        try {
          st = lstatSync(p);
        } catch {
          continue;
        }
        const rel = p.slice(1);
        if (st.isDirectory()) {
          const inner = walk(p);
          if (inner.length > 0) {
            out.push(rel, ...inner);
            dirs++;
          }
        } else if (st.isSymbolicLink()) {
          out.push(rel);
          symlinks++;
        } else if (st.isFile()) {
          const key = `${st.dev}:${st.ino}`;
          if (seenInodes.has(key) || st.size > budget) continue;
          seenInodes.add(key);
          budget -= st.size;
          bytes += st.size;
          files++;
          out.push(rel);
        }
      }
      return out;
    };
    const inner = walk(root);
    list.push(root.slice(1), ...inner);
    dirs++;
  }
  return { list, files, symlinks, dirs, bytes };
}

/** Builds (or reuses) the archive with the real-files layer, about `3 * perRootMiB` MiB. */
export async function prepareRealInput(
  workDir: string,
  perRootMiB: number,
  log: (s: string) => void,
): Promise<RealInput> {
  const dir = join(workDir, `real-${perRootMiB * 3}m`);
  const marker = join(dir, 'real.json');
  if (existsSync(marker)) {
    try {
      const cached = JSON.parse(readFileSync(marker, 'utf8')) as RealInput & { version: number };
      if (cached.version === REAL_VERSION && existsSync(cached.archive)) {
        log(`real: reusing ${dir}`);
        return cached;
      }
    } catch {
      // rebuild
    }
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const rootDirs = roots();
  if (rootDirs.length === 0)
    throw new BenchError('real: none of /usr/lib/<arch>-linux-gnu, /usr/bin, /usr/share exists');
  const t0 = Date.now();
  const sel = selectEntries(rootDirs, perRootMiB * MiB);
  const listFile = join(dir, 'files.list');
  writeFileSync(listFile, `${sel.list.join('\0')}\0`);
  const layer = join(dir, 'layer.tar');
  log(
    `real: tar of ${sel.files} files, ${sel.symlinks} symlinks, ${sel.dirs} dirs, ${(sel.bytes / MiB).toFixed(0)} MiB of file data from ${rootDirs.join(', ')}`,
  );
  const tar = spawnSync(
    'tar',
    [
      '--create',
      '--file',
      layer,
      '--directory',
      '/',
      '--no-recursion',
      '--null',
      '--files-from',
      listFile,
      '--format=gnu',
      '--mtime=@0',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
    ],
    { encoding: 'utf8' },
  );
  // Exit 1: a file changed while being read (logs, caches): the layer is still a valid tar.
  if (tar.status !== 0 && tar.status !== 1)
    throw new BenchError(`real: tar failed (${tar.status ?? tar.signal}): ${tar.stderr}`);
  const diffId = sha256File(layer);
  const layerBytes = statSync(layer).size;
  const archive = join(dir, 'real-docker.tar');
  writeDockerArchive(
    archive,
    [{ path: layer, digest: diffId, size: layerBytes, kind: 'real', gz: { path: '', digest: '', size: 0 } }],
    'lading-bench-real:latest',
  );
  rmSync(layer, { force: true });
  const result: RealInput = {
    archive,
    diffId,
    layerBytes,
    files: sel.files,
    symlinks: sel.symlinks,
    dirs: sel.dirs,
    roots: rootDirs,
    perRootMiB,
  };
  writeFileSync(marker, JSON.stringify({ version: REAL_VERSION, ...result }, null, 2));
  log(
    `real: ${archive} (layer ${(layerBytes / MiB).toFixed(0)} MiB) ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  return result;
}

function getJson(url: string, accept: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = get(url, { headers: { Accept: accept }, timeout: 10_000 }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (b: Buffer) => parts.push(b));
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new BenchError(`GET ${url}: ${res.statusCode}`));
        else {
          try {
            resolve(JSON.parse(Buffer.concat(parts).toString('utf8')));
          } catch (e) {
            reject(e instanceof Error ? e : new Error(String(e)));
          }
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** The pushed image's single layer: digest and size, from the manifest the registry serves. */
async function pushedLayer(url: string, repo: string): Promise<{ digest: string; size: number; mediaType: string }> {
  const m = (await getJson(
    `${url}/v2/${repo}/manifests/latest`,
    'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json',
  )) as { layers?: { digest: string; size: number; mediaType: string }[] };
  const l = m.layers?.[0];
  if (!l || m.layers!.length !== 1)
    throw new BenchError(`${repo}: expected one layer in ${JSON.stringify(m).slice(0, 500)}`);
  return l;
}

/**
 * Downloads the layer lading pushed and checks it as others will read it: `gzip -t` and
 * `pigz -t` accept it, and Node's gunzip inflates it to the layer tar (sha256 = diff_id).
 */
async function verifyLayer(
  url: string,
  repo: string,
  digest: string,
  diffId: string,
  scratch: string,
): Promise<string> {
  const path = join(scratch, 'real-layer.gz');
  await new Promise<void>((resolve, reject) => {
    get(`${url}/v2/${repo}/blobs/${digest}`, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new BenchError(`GET blob ${digest}: ${res.statusCode}`));
        return;
      }
      pipeline(res, createWriteStream(path)).then(resolve, reject);
    }).on('error', reject);
  });
  try {
    const checked: string[] = [];
    for (const tool of ['gzip', 'pigz']) {
      const r = spawnSync(tool, ['-t', path], { encoding: 'utf8' });
      if (r.error) continue;
      if (r.status !== 0) throw new BenchError(`${tool} -t rejects the layer lading pushed: ${r.stderr}`);
      checked.push(`${tool} -t`);
    }
    const h = createHash('sha256');
    await pipeline(
      createReadStream(path),
      createGunzip(),
      new Writable({
        write(c: Buffer, _enc, cb) {
          h.update(c);
          cb();
        },
      }),
    );
    const got = `sha256:${h.digest('hex')}`;
    if (got !== diffId) throw new BenchError(`the layer lading pushed inflates to ${got}, not the layer tar ${diffId}`);
    checked.push('gunzip = diff_id');
    return checked.join(', ');
  } finally {
    rmSync(path, { force: true });
  }
}

type Who = 'skopeo' | 'lading' | 'lading-1cpu';
type Control = 'pigz' | 'pigz-1cpu';

interface Measured {
  sample: Sample;
  registryCpuS: number;
  layerSize: number;
  layerDigest: string;
}

export async function benchReal(ctx: BenchContext): Promise<Table[]> {
  // 160 MiB per root at full size (256 MiB synthetic layers), 40 with --quick.
  const perRootMiB = Math.max(8, Math.round(ctx.inputs.layerMiB * 0.625));
  const input = await prepareRealInput(ctx.workDir, perRootMiB, ctx.log);
  const archiveBytes = statSync(input.archive).size;
  ctx.log('real: warming the page cache');
  warm(input.archive);
  const results: Record<Who, Measured[]> = { skopeo: [], lading: [], 'lading-1cpu': [] };
  // The control for scaling: how much faster pigz (2 threads per core) compresses the same
  // bytes on all cores than on CPU 0, in the same run; a busy machine lowers both ratios.
  const control: Record<Control, Sample[]> = { pigz: [], 'pigz-1cpu': [] };
  const threads = String(2 * cpus().length);
  const pigz = async (c: Control): Promise<void> => {
    const args = ['-2', '-c', '-p', threads, input.archive];
    const r = await (c === 'pigz'
      ? timed('sh', ['-c', 'pigz "$@" > /dev/null', 'pigz', ...args], { scratchDir: ctx.scratchDir })
      : timed('taskset', ['-c', '0', 'sh', '-c', 'pigz "$@" > /dev/null', 'pigz', ...args], {
          scratchDir: ctx.scratchDir,
        }));
    mustSucceed(r, c);
    control[c].push(r);
    ctx.log(`real: ${c} ${r.wallS.toFixed(2)} s wall, ${r.cpuS.toFixed(2)} CPU-s`);
  };
  const hasPigz = spawnSync('pigz', ['--version'], { stdio: 'ignore' }).status === 0;
  let verified = '';

  const one = async (who: Who, i: number): Promise<void> => {
    const reg = await startRegistry(join(ctx.serverRoot, `registry-real-${who}-${i}`));
    try {
      const repo = `bench/real-${who}-${i}`;
      const dest = `${reg.host}/${repo}:latest`;
      let run: () => Promise<ChildResult>;
      if (who === 'skopeo') {
        dropSkopeoCache();
        run = () =>
          timed(
            'skopeo',
            ['copy', '--quiet', `docker-archive:${input.archive}`, `docker://${dest}`, '--dest-tls-verify=false'],
            { scratchDir: ctx.scratchDir, timeoutMs: 10 * 60_000 },
          );
      } else if (who === 'lading') {
        run = () => lading(ctx, ['push', input.archive, dest, '--json', '--quiet', '--no-cache']);
      } else {
        // taskset execs node in its place: GNU time measures node itself, on CPU 0 only.
        run = () =>
          timed(
            'taskset',
            ['-c', '0', process.execPath, ctx.cli, 'push', input.archive, dest, '--json', '--quiet', '--no-cache'],
            { scratchDir: ctx.scratchDir, timeoutMs: 10 * 60_000 },
          );
      }
      syncDisks();
      const cpu0 = processCpuSeconds(reg.pid);
      const r = await run();
      const registryCpuS = processCpuSeconds(reg.pid) - cpu0;
      mustSucceed(r, `${who} push (real)`);
      if (who !== 'skopeo') {
        const p = pushResult(r, `${who} push (real)`);
        if (p.blobs.skipped !== 0) throw new BenchError(`${who} push (real) was not cold: ${JSON.stringify(p.blobs)}`);
      }
      await checkManifest(reg.url, repo, 'latest');
      const layer = await pushedLayer(reg.url, repo);
      if (who === 'lading' && verified === '')
        verified = await verifyLayer(reg.url, repo, layer.digest, input.diffId, ctx.scratchDir);
      results[who].push({ sample: r, registryCpuS, layerSize: layer.size, layerDigest: layer.digest });
      ctx.log(
        `real run ${i + 1}/${ctx.runs}: ${who} ${r.wallS.toFixed(2)} s wall, ${r.cpuS.toFixed(2)} CPU-s, ${r.rssMiB.toFixed(0)} MiB; layer ${(layer.size / 1e6).toFixed(1)} MB; registry ${registryCpuS.toFixed(2)} CPU-s`,
      );
    } finally {
      await reg.stop();
    }
  };

  for (let i = 0; i < ctx.runs; i++) {
    const order: Who[] = i % 2 === 0 ? ['skopeo', 'lading', 'lading-1cpu'] : ['lading-1cpu', 'lading', 'skopeo'];
    for (const w of order) await one(w, i);
    if (hasPigz)
      for (const c of (i % 2 === 0 ? ['pigz', 'pigz-1cpu'] : ['pigz-1cpu', 'pigz']) as Control[]) await pigz(c);
  }

  const med = (xs: Measured[]): Sample => medianSample(xs.map((x) => x.sample));
  const size = (xs: Measured[]): number =>
    medianSample(xs.map((x) => ({ wallS: 0, userS: 0, sysS: 0, cpuS: x.layerSize, rssMiB: 0 }))).cpuS;
  const regCpu = (xs: Measured[]): number =>
    medianSample(xs.map((x) => ({ wallS: 0, userS: 0, sysS: 0, cpuS: x.registryCpuS, rssMiB: 0 }))).cpuS;
  const sk = med(results.skopeo);
  const ld = med(results.lading);
  const one1 = med(results['lading-1cpu']);
  const skSize = size(results.skopeo);
  const ldSize = size(results.lading);
  const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;
  const scenario = `one layer of real files, ${(input.layerBytes / MiB).toFixed(0)} MiB uncompressed -> gzip`;
  const rows: Row[] = [];
  rows.push({
    scenario,
    tool: `skopeo copy (layer ${mb(skSize)})`,
    median: sk,
    samples: results.skopeo.map((x) => x.sample),
    bytes: archiveBytes,
    extra: { layerSizes: results.skopeo.map((x) => x.layerSize), registryCpuS: regCpu(results.skopeo) },
  });
  const row: Row = {
    scenario,
    tool: `lading push (layer ${mb(ldSize)}, ${(ldSize / skSize).toFixed(3)}x)`,
    median: ld,
    samples: results.lading.map((x) => x.sample),
    bytes: archiveBytes,
    ratio: ratioText(ld, sk),
    extra: { layerSizes: results.lading.map((x) => x.layerSize), registryCpuS: regCpu(results.lading), verified },
  };
  judge(row, 'wall <= 0.8x skopeo; layer <= 1.05x skopeo; RSS <= 128 MiB', [
    ['wall', ld.wallS <= 0.8 * sk.wallS],
    ['size', ldSize <= 1.05 * skSize],
    ['RSS', ld.rssMiB <= 128],
  ]);
  rows.push(row);
  const pinned: Row = {
    scenario,
    tool: 'lading push, taskset -c 0 (one core)',
    median: one1,
    samples: results['lading-1cpu'].map((x) => x.sample),
    bytes: archiveBytes,
    ratio: `wall ${(one1.wallS / ld.wallS).toFixed(2)}x lading on all cores`,
    extra: { layerSizes: results['lading-1cpu'].map((x) => x.layerSize), registryCpuS: regCpu(results['lading-1cpu']) },
  };
  judge(pinned, 'wall >= 1.6x lading on 2 cores (scaling)', [['scaling', one1.wallS >= 1.6 * ld.wallS]]);
  rows.push(pinned);
  if (hasPigz) {
    const all = medianSample(control.pigz);
    const one0 = medianSample(control['pigz-1cpu']);
    rows.push({
      scenario,
      tool: `control: pigz -2 -p ${threads} of the archive`,
      median: all,
      samples: control.pigz,
      bytes: archiveBytes,
    });
    rows.push({
      scenario,
      tool: 'control: the same under taskset -c 0',
      median: one0,
      samples: control['pigz-1cpu'],
      bytes: archiveBytes,
      ratio: `wall ${(one0.wallS / all.wallS).toFixed(2)}x pigz on all cores`,
    });
  }
  const same = results.lading
    .concat(results['lading-1cpu'])
    .every((x) => x.layerDigest === results.lading[0]!.layerDigest);
  return [
    {
      id: 'real',
      title: `Push one layer of real files (${input.files} files from ${input.roots.join(', ')}), lading vs skopeo`,
      rows,
      notes: [
        `Archive: ${(archiveBytes / MiB).toFixed(0)} MiB docker-save, one uncompressed layer of ${(input.layerBytes / MiB).toFixed(0)} MiB (${input.files} files, ${input.symlinks} symlinks, ${input.dirs} dirs; up to ${input.perRootMiB} MiB of files per root; diff_id ${input.diffId}).`,
        `Compressed layer (median): skopeo ${mb(skSize)}, lading ${mb(ldSize)}; lading's layer ${same ? `has the same digest in every run, on one core or all (${results.lading[0]!.layerDigest})` : 'DIFFERS between runs'}.`,
        `Registry CPU-s during each push (median): skopeo ${regCpu(results.skopeo).toFixed(2)}, lading ${regCpu(results.lading).toFixed(2)}, lading on one core ${regCpu(results['lading-1cpu']).toFixed(2)}. The registry runs on both cores in every case.`,
        hasPigz
          ? 'The pigz rows are a control, not a contender: compression alone (no hashing, no upload), to show how much the machine let a parallel compressor scale during this run.'
          : '',
        verified ? `The layer lading pushed, fetched back from the registry: ${verified}.` : '',
      ].filter(Boolean),
    },
  ];
}
