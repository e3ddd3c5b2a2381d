/**
 * Issue 3: `lading push` against `skopeo copy`, to the same local CNCF registry, in one run:
 *  (a) legacy docker-archive with uncompressed layers, pushed with gzip (both compress);
 *  (b) the same image as an OCI archive with gzip layers (pushed as they are);
 *  (c) a re-push of (a) to the same repository (lading: its compressed-digest cache;
 *      skopeo: its blob-info cache).
 * Cold runs start from nothing: a fresh registry per tool and scenario, a fresh
 * XDG_CACHE_HOME (lading) or a deleted blob-info cache (skopeo).
 */
import { rmSync, statSync } from 'node:fs';
import { get } from 'node:http';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { lading, pushResult, warm, type BenchContext, type PushJson } from './context';
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
import { judge, ratioText, type Row, type Table } from './report';
import { startRegistry, type Server } from './servers';

export const SKOPEO_CACHES = [
  '/var/lib/containers/cache/blob-info-cache-v1.boltdb',
  join(homedir(), '.local/share/containers/cache/blob-info-cache-v1.boltdb'),
];

/** Deletes skopeo's blob-info cache, so its next copy finds no blob to reuse. */
export function dropSkopeoCache(): void {
  for (const f of SKOPEO_CACHES) rmSync(f, { force: true });
}

const MANIFEST_TYPES = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

/** Fails unless the registry serves repo:tag (the push really landed). */
export function checkManifest(
  url: string,
  repo: string,
  tag: string,
  headers: Record<string, string> = {},
): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = get(
      `${url}/v2/${repo}/manifests/${tag}`,
      { headers: { Accept: MANIFEST_TYPES, ...headers }, timeout: 10_000 },
      (res) => {
        res.resume();
        if (res.statusCode === 200) resolve();
        else
          reject(new BenchError(`after the push, GET ${url}/v2/${repo}/manifests/${tag} answered ${res.statusCode}`));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

type Tool = 'lading' | 'skopeo';

interface Measured {
  sample: Sample;
  registryCpuS: number;
  push?: PushJson;
}

async function measurePush(
  reg: Server,
  run: () => Promise<ChildResult>,
  what: string,
): Promise<{ r: ChildResult; registryCpuS: number }> {
  syncDisks();
  const cpu0 = processCpuSeconds(reg.pid);
  const r = await run();
  const registryCpuS = processCpuSeconds(reg.pid) - cpu0;
  mustSucceed(r, what);
  return { r, registryCpuS };
}

export async function benchPush(ctx: BenchContext): Promise<Table[]> {
  const { dockerArchive, ociArchive } = ctx.inputs;
  const dockerSize = statSync(dockerArchive).size;
  const ociSize = statSync(ociArchive).size;
  ctx.log('push: warming the page cache');
  warm(dockerArchive);
  warm(ociArchive);

  const results: Record<'a' | 'b' | 'c', Record<Tool, Measured[]>> = {
    a: { lading: [], skopeo: [] },
    b: { lading: [], skopeo: [] },
    c: { lading: [], skopeo: [] },
  };
  const skopeo = (args: string[]): Promise<ChildResult> =>
    timed('skopeo', ['copy', '--quiet', ...args, '--dest-tls-verify=false'], {
      scratchDir: ctx.scratchDir,
      timeoutMs: 10 * 60_000,
    });

  const aAndC = async (tool: Tool, i: number): Promise<void> => {
    const reg = await startRegistry(join(ctx.serverRoot, `registry-${tool}-a-${i}`));
    const xdg = join(ctx.scratchDir, `xdg-cache-${i}`);
    rmSync(xdg, { recursive: true, force: true });
    try {
      const repo = `bench/${tool}-a-${i}`;
      const dest = `${reg.host}/${repo}:latest`;
      const push =
        tool === 'lading'
          ? () => lading(ctx, ['push', dockerArchive, dest, '--json', '--quiet'], { XDG_CACHE_HOME: xdg })
          : () => skopeo([`docker-archive:${dockerArchive}`, `docker://${dest}`]);
      if (tool === 'skopeo') dropSkopeoCache();
      const cold = await measurePush(reg, push, `${tool} push (a)`);
      await checkManifest(reg.url, repo, 'latest');
      const a: Measured = { sample: cold.r, registryCpuS: cold.registryCpuS };
      if (tool === 'lading') {
        a.push = pushResult(cold.r, 'lading push (a)');
        if (a.push.blobs.skipped !== 0 || a.push.blobs.uploaded < 6)
          throw new BenchError(`lading push (a) was not cold: ${JSON.stringify(a.push.blobs)}`);
      }
      results.a[tool].push(a);
      ctx.log(
        `push run ${i + 1}/${ctx.runs}: (a) ${tool} ${cold.r.wallS.toFixed(2)} s wall, ${cold.r.cpuS.toFixed(2)} CPU-s, ${cold.r.rssMiB.toFixed(0)} MiB; registry ${cold.registryCpuS.toFixed(2)} CPU-s`,
      );

      const again = await measurePush(reg, push, `${tool} re-push (c)`);
      const c: Measured = { sample: again.r, registryCpuS: again.registryCpuS };
      if (tool === 'lading') {
        c.push = pushResult(again.r, 'lading re-push (c)');
        if (c.push.blobs.uploaded !== 0)
          throw new BenchError(`lading re-push (c) uploaded blobs: ${JSON.stringify(c.push.blobs)}`);
      }
      results.c[tool].push(c);
      ctx.log(
        `push run ${i + 1}/${ctx.runs}: (c) ${tool} ${again.r.wallS.toFixed(2)} s wall, ${again.r.cpuS.toFixed(2)} CPU-s, ${again.r.rssMiB.toFixed(0)} MiB`,
      );
    } finally {
      await reg.stop();
      rmSync(xdg, { recursive: true, force: true });
    }
  };

  const b = async (tool: Tool, i: number): Promise<void> => {
    const reg = await startRegistry(join(ctx.serverRoot, `registry-${tool}-b-${i}`));
    try {
      const repo = `bench/${tool}-b-${i}`;
      const dest = `${reg.host}/${repo}:latest`;
      const push =
        tool === 'lading'
          ? () => lading(ctx, ['push', ociArchive, dest, '--json', '--quiet', '--no-cache'])
          : () => skopeo(['--preserve-digests', `oci-archive:${ociArchive}`, `docker://${dest}`]);
      if (tool === 'skopeo') dropSkopeoCache();
      const m = await measurePush(reg, push, `${tool} push (b)`);
      await checkManifest(reg.url, repo, 'latest');
      const rec: Measured = { sample: m.r, registryCpuS: m.registryCpuS };
      if (tool === 'lading') rec.push = pushResult(m.r, 'lading push (b)');
      results.b[tool].push(rec);
      ctx.log(
        `push run ${i + 1}/${ctx.runs}: (b) ${tool} ${m.r.wallS.toFixed(2)} s wall, ${m.r.cpuS.toFixed(2)} CPU-s, ${m.r.rssMiB.toFixed(0)} MiB; registry ${m.registryCpuS.toFixed(2)} CPU-s`,
      );
    } finally {
      await reg.stop();
    }
  };

  for (let i = 0; i < ctx.runs; i++) {
    const order: Tool[] = i % 2 === 0 ? ['skopeo', 'lading'] : ['lading', 'skopeo'];
    for (const t of order) await aAndC(t, i);
    for (const t of order) await b(t, i);
  }

  const med = (xs: Measured[]): Sample => medianSample(xs.map((x) => x.sample));
  const regCpu = (xs: Measured[]): number =>
    medianSample(xs.map((x) => ({ wallS: 0, userS: 0, sysS: 0, cpuS: x.registryCpuS, rssMiB: 0 }))).cpuS;
  const rows: Row[] = [];
  const scen = {
    a: `(a) docker-archive, ${(dockerSize / 2 ** 20).toFixed(0)} MiB, uncompressed layers -> gzip`,
    b: `(b) OCI archive, ${(ociSize / 2 ** 20).toFixed(0)} MiB, gzip layers`,
    c: '(c) re-push of (a), same repository',
  };
  const targets = { a: 1.0, b: 0.8 };
  for (const k of ['a', 'b'] as const) {
    const sk = med(results[k].skopeo);
    const ld = med(results[k].lading);
    const bytes = k === 'a' ? dockerSize : ociSize;
    rows.push({
      scenario: scen[k],
      tool: k === 'a' ? 'skopeo copy' : 'skopeo copy --preserve-digests',
      median: sk,
      samples: results[k].skopeo.map((x) => x.sample),
      bytes,
      extra: { registryCpuS: regCpu(results[k].skopeo) },
    });
    const row: Row = {
      scenario: scen[k],
      tool: 'lading push',
      median: ld,
      samples: results[k].lading.map((x) => x.sample),
      bytes,
      ratio: ratioText(ld, sk),
      extra: { registryCpuS: regCpu(results[k].lading), blobs: results[k].lading.map((x) => x.push?.blobs) },
    };
    judge(row, `wall <= ${targets[k].toFixed(1)}x skopeo; RSS <= 128 MiB`, [
      ['wall', ld.wallS <= targets[k] * sk.wallS],
      ['RSS', ld.rssMiB <= 128],
    ]);
    rows.push(row);
  }
  {
    const sk = med(results.c.skopeo);
    const ld = med(results.c.lading);
    rows.push({
      scenario: scen.c,
      tool: 'skopeo copy (its blob-info cache)',
      median: sk,
      samples: results.c.skopeo.map((x) => x.sample),
      bytes: 0,
      extra: { registryCpuS: regCpu(results.c.skopeo) },
    });
    const row: Row = {
      scenario: scen.c,
      tool: 'lading push (digest cache)',
      median: ld,
      samples: results.c.lading.map((x) => x.sample),
      bytes: 0,
      ratio: ratioText(ld, sk),
      extra: { registryCpuS: regCpu(results.c.lading), blobs: results.c.lading.map((x) => x.push?.blobs) },
    };
    judge(row, 'wall < 0.5 s; RSS <= 128 MiB', [
      ['wall', ld.wallS < 0.5],
      ['RSS', ld.rssMiB <= 128],
    ]);
    rows.push(row);
  }
  const cpuNote = (['a', 'b', 'c'] as const)
    .map((k) => `${k}: lading ${regCpu(results[k].lading).toFixed(2)}, skopeo ${regCpu(results[k].skopeo).toFixed(2)}`)
    .join('; ');
  const up = results.a.lading[0]?.push?.blobs;
  return [
    {
      id: 'push',
      title: 'Push to a local CNCF distribution registry (docker-registry, filesystem storage), lading vs skopeo',
      rows,
      notes: [
        'Ratios are lading / skopeo (lower is better). MiB/s is archive bytes / wall time.',
        `Registry CPU-s spent while each push ran (median; ${cpuNote}).`,
        up
          ? `lading (a) uploaded ${up.uploaded} blobs, ${(up.bytesUploaded / 2 ** 20).toFixed(0)} MiB; (c) uploaded none.`
          : '',
        'Cold runs: a fresh registry per tool and scenario; lading with a fresh XDG_CACHE_HOME ((a), which (c) then reuses) or --no-cache ((b)); skopeo with its blob-info cache deleted before (a) and (b) and kept for (c).',
      ].filter(Boolean),
    },
  ];
}
