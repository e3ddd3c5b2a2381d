/**
 * Issue 4: the same images pushed to `lading serve` (the local ECR-compatible endpoint)
 * through each ECR transport: the native API (InitiateLayerUpload / UploadLayerPart /
 * CompleteLayerUpload / PutImage) and the registry protocol with a GetAuthorizationToken
 * credential. A fresh server and repository per push, so every blob is uploaded.
 */
import { CreateRepositoryCommand, ECRClient } from '@aws-sdk/client-ecr';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_CREDENTIALS } from '../src/serve';
import { lading, pushResult, warm, type BenchContext } from './context';
import { BenchError, medianSample, processCpuSeconds, processPeakRssMiB, syncDisks, type Sample } from './measure';
import { judge, mibPerS, ratioText, type Row, type Table } from './report';
import { startServe } from './servers';

const ECR_HOST = '000000000000.dkr.ecr.us-east-1.amazonaws.com';
// lading serve verifies signatures: the pushes sign with the key pair it accepts by default.
const AWS_ENV = {
  AWS_ACCESS_KEY_ID: DEFAULT_CREDENTIALS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: DEFAULT_CREDENTIALS.secretAccessKey,
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_REGION: 'us-east-1',
};

type Transport = 'ecr-api' | 'registry';

interface Measured {
  sample: Sample;
  serverCpuS: number;
  serverRssMiB: number;
}

async function createRepository(url: string, repositoryName: string): Promise<void> {
  // The bench's own SDK client: its Node 20 support notice would only clutter the log.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const client = new ECRClient({
    region: 'us-east-1',
    endpoint: url,
    credentials: { accessKeyId: AWS_ENV.AWS_ACCESS_KEY_ID, secretAccessKey: AWS_ENV.AWS_SECRET_ACCESS_KEY },
    maxAttempts: 3,
  });
  try {
    await client.send(new CreateRepositoryCommand({ repositoryName }));
  } catch (e) {
    throw new BenchError(`CreateRepository ${repositoryName} at ${url} failed: ${String(e)}`);
  } finally {
    client.destroy();
  }
}

export async function benchEcr(ctx: BenchContext): Promise<Table[]> {
  const images = [
    { id: 'docker', label: 'docker-archive, uncompressed layers -> gzip', path: ctx.inputs.dockerArchive },
    { id: 'oci', label: 'OCI archive, gzip layers', path: ctx.inputs.ociArchive },
  ];
  ctx.log('ecr: warming the page cache');
  for (const img of images) warm(img.path);
  const results: Record<string, Record<Transport, Measured[]>> = {};
  for (const img of images) results[img.id] = { 'ecr-api': [], registry: [] };

  for (let i = 0; i < ctx.runs; i++) {
    for (const img of images) {
      const order: Transport[] = i % 2 === 0 ? ['ecr-api', 'registry'] : ['registry', 'ecr-api'];
      for (const transport of order) {
        const srv = await startServe(ctx.cli, join(ctx.serverRoot, `serve-${img.id}-${transport}-${i}`));
        try {
          const repo = `bench/${img.id}-${transport}-${i}`;
          await createRepository(srv.url, repo);
          syncDisks();
          const cpu0 = processCpuSeconds(srv.pid);
          const args = [
            'push',
            img.path,
            `${ECR_HOST}/${repo}:latest`,
            '--endpoint-url',
            srv.url,
            '--create-repository',
            '--no-cache',
            '--json',
            '--quiet',
          ];
          if (transport === 'registry') args.push('--transport', 'registry');
          const r = await lading(ctx, args, AWS_ENV);
          const serverCpuS = processCpuSeconds(srv.pid) - cpu0;
          const serverRssMiB = processPeakRssMiB(srv.pid);
          const res = pushResult(r, `lading push --transport ${transport} (${img.id}) to lading serve`);
          if (res.blobs.uploaded < 6 || res.blobs.skipped !== 0)
            throw new BenchError(
              `lading push --transport ${transport} (${img.id}) was not cold: ${JSON.stringify(res.blobs)}`,
            );
          results[img.id]![transport].push({ sample: r, serverCpuS, serverRssMiB });
          ctx.log(
            `ecr run ${i + 1}/${ctx.runs}: ${img.id} --transport ${transport} ${r.wallS.toFixed(2)} s wall, ${r.cpuS.toFixed(2)} CPU-s, ${r.rssMiB.toFixed(0)} MiB; serve ${serverCpuS.toFixed(2)} CPU-s`,
          );
        } finally {
          await srv.stop();
        }
      }
    }
  }

  const rows: Row[] = [];
  const notes: string[] = [
    'Throughput (MiB/s) is archive bytes / wall time of the lading push process. Ratio: registry transport / ecr-api transport.',
  ];
  for (const img of images) {
    const size = statSync(img.path).size;
    const scenario = `${img.label}, ${(size / 2 ** 20).toFixed(0)} MiB`;
    const med = (t: Transport): Sample => medianSample(results[img.id]![t].map((x) => x.sample));
    const server = (t: Transport): Sample =>
      medianSample(
        results[img.id]![t].map((x) => ({ wallS: 0, userS: 0, sysS: 0, cpuS: x.serverCpuS, rssMiB: x.serverRssMiB })),
      );
    const api = med('ecr-api');
    const reg = med('registry');
    for (const t of ['ecr-api', 'registry'] as const) {
      const m = t === 'ecr-api' ? api : reg;
      const row: Row = {
        scenario,
        tool: `lading push --transport ${t}`,
        median: m,
        samples: results[img.id]![t].map((x) => x.sample),
        bytes: size,
        ratio: t === 'registry' ? ratioText(reg, api) : undefined,
        extra: { mibPerS: mibPerS(size, m.wallS), serverCpuS: server(t).cpuS, serverPeakRssMiB: server(t).rssMiB },
      };
      judge(row, 'RSS <= 160 MiB', [['RSS', m.rssMiB <= 160]]);
      rows.push(row);
    }
    notes.push(
      `${img.id}: lading serve spent ${server('ecr-api').cpuS.toFixed(2)} CPU-s (ecr-api) and ${server('registry').cpuS.toFixed(2)} CPU-s (registry) per push, peak RSS ${server('ecr-api').rssMiB.toFixed(0)} / ${server('registry').rssMiB.toFixed(0)} MiB.`,
    );
  }
  return [
    {
      id: 'ecr',
      title: 'Push to lading serve (local ECR endpoint), native ECR API vs registry transport',
      rows,
      notes,
    },
  ];
}
