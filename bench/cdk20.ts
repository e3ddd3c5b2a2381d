/**
 * Issue 13: a stack of 20 TarballImages. CloudFormation creates a stack's independent resources in
 * parallel, so such a stack runs 20 Creates of the custom resource at once, one Lambda function
 * each. The stand-in here: the bundled handler (OUT/cdk-handler/index.js, the function's code
 * asset) run as Lambda runs it (test/cdk/bundled-handler.test.ts: a task dir holding the bundle
 * alone, a reduced runtime bootstrap calling `handler(event, context)`, the clients configured
 * from the environment only) in a child process per invocation under GNU time, against s3rver
 * (S3) and `lading serve` (ECR), with a local server receiving the answer PUT to the pre-signed
 * response URL. One Create alone, then 20 Creates at once, 20 distinct small archives. Plus the
 * synthesized resource count of a 20-image stack.
 */
import { CreateRepositoryCommand, ECRClient } from '@aws-sdk/client-ecr';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { createCipheriv, createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { TarballImage } from '../src/cdk';
import type { CustomResourceEvent, CustomResourceResponse } from '../src/cdk/handler';
import { DEFAULT_CREDENTIALS } from '../src/serve';
import { nodeBinary, responseReceiver, runtimeMajor, startS3, type ResponseReceiver } from '../test/cdk/bundled-rig';
import { dockerArchiveParts } from '../test/fixtures/docker';
import { makeLayer } from '../test/fixtures/image';
import { file, tarBuffer } from '../test/fixtures/util';
import type { BenchContext } from './context';
import { BenchError, median, medianSample, processCpuSeconds, timed, type ChildResult, type Sample } from './measure';
import type { Row, Table } from './report';
import { startServe } from './servers';

const IMAGES = 20;
const LAYER_MIB = 8;
const BUCKET = 'cdk-hnb659fds-assets-000000000000-us-east-1';

/** The Lambda runtime's bootstrap, reduced (as in test/cdk/bundled-handler.test.ts). */
const RUNNER = `'use strict';
const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const [taskRoot, eventFile, timeoutMs] = process.argv.slice(2);
const mod = require(join(taskRoot, 'index.js'));
const event = JSON.parse(readFileSync(eventFile, 'utf8'));
const deadline = Date.now() + Number(timeoutMs);
const context = { getRemainingTimeInMillis: () => deadline - Date.now(), functionName: 'lading-bench-cdk20', awsRequestId: event.RequestId, callbackWaitsForEmptyEventLoop: true };
Promise.resolve()
  .then(() => mod.handler(event, context))
  .then(
    () => { process.stdout.write('\\nRUNNER-DONE\\n'); process.exit(0); },
    (e) => { process.stderr.write('RUNNER-THREW ' + String((e && e.stack) || e) + '\\n'); process.exit(2); },
  );
`;

/** `n` bytes of fast pseudo-random data from a seed (AES-128-CTR over zeros). */
function seeded(seed: string, n: number): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

/** A docker-save archive: two uncompressed layers of LAYER_MIB MiB of pseudo-random bytes each. */
async function archive(i: number): Promise<Buffer> {
  const layers = [
    await makeLayer([file(`data/a-${i}.bin`, seeded(`cdk20-${i}-a`, LAYER_MIB << 20))], 'none'),
    await makeLayer([file(`data/b-${i}.bin`, seeded(`cdk20-${i}-b`, LAYER_MIB << 20))], 'none'),
  ];
  const parts = dockerArchiveParts(
    [{ repoTags: [`bench/cdk20-${i}:1`], platform: { os: 'linux', architecture: 'amd64' }, layers }],
    { order: 'sorted' },
  );
  return tarBuffer(parts.entries);
}

interface Invocation {
  sample: ChildResult;
  answer: CustomResourceResponse;
}

/** Resources of a synthesized stack of 20 TarballImages, by type, and the synth time. */
function synthCount(tarball: string): { total: number; byType: Record<string, number>; seconds: number } {
  const t0 = process.hrtime.bigint();
  const stack = new Stack(new App(), 'Stack20', { env: { account: '000000000000', region: 'us-east-1' } });
  for (let i = 0; i < IMAGES; i++) new TarballImage(stack, `Img${i}`, { tarball, tag: `t${i}` });
  const resources = Object.values(Template.fromStack(stack).toJSON().Resources as Record<string, { Type: string }>);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const byType: Record<string, number> = {};
  for (const r of resources) byType[r.Type] = (byType[r.Type] ?? 0) + 1;
  return { total: resources.length, byType, seconds };
}

export async function benchCdk20(ctx: BenchContext): Promise<Table[]> {
  const bundle = join(ctx.cli, '..', '..', '..', 'cdk-handler');
  if (!existsSync(join(bundle, 'index.js')))
    throw new BenchError(
      `the handler bundle is missing at ${bundle}: npm run build makes it (or: node scripts/bundle-cdk-handler.js OUTDIR)`,
    );
  const work = join(ctx.scratchDir, 'cdk20');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const taskRoot = join(work, 'task');
  cpSync(bundle, taskRoot, { recursive: true });
  const runner = join(work, 'runner.js');
  writeFileSync(runner, RUNNER);

  // The Lambda runtime's Node major (what the construct declares), else this Node.
  const declared = 'nodejs22.x';
  const nb = await nodeBinary(runtimeMajor(declared));
  const node = nb.ok ? nb.path : process.execPath;
  const nodeNote = nb.ok
    ? `the handler processes ran ${nb.version} (the ${declared} runtime the construct declares, from npx node@22)`
    : `the handler processes ran this Node, ${process.version} (node@22 unavailable: ${nb.error})`;
  ctx.log(`cdk20: ${nodeNote}`);

  // s3rver accepts any key it knows (it does not check SigV4): teach it lading serve's default pair, so the
  // function's one key pair signs its S3 and ECR calls alike, as a Lambda role's would.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const account = require('s3rver/lib/models/account') as {
    DUMMY_ACCOUNT: { createKeyPair(id: string, secret: string): void };
  };
  account.DUMMY_ACCOUNT.createKeyPair(DEFAULT_CREDENTIALS.accessKeyId, DEFAULT_CREDENTIALS.secretAccessKey);
  // The bench's own SDK clients: their Node 20 support notice would only clutter the log.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const s3 = await startS3(BUCKET);
  let cfn: ResponseReceiver | undefined;
  try {
    cfn = await responseReceiver();
    const keys: string[] = [];
    let archiveBytes = 0;
    ctx.log(`cdk20: making ${IMAGES} archives (2 x ${LAYER_MIB} MiB random layers each) and uploading them to s3rver`);
    let firstArchive = '';
    for (let i = 0; i < IMAGES; i++) {
      const body = await archive(i);
      archiveBytes = body.length;
      const key = `${createHash('sha256').update(body).digest('hex')}.tar`;
      if (i === 0) {
        firstArchive = join(work, 'synth.tar');
        writeFileSync(firstArchive, body);
      }
      await s3.put(key, body);
      keys.push(key);
    }
    const synth = synthCount(firstArchive);
    ctx.log(`cdk20: a ${IMAGES}-image stack synthesizes ${synth.total} resources (${synth.seconds.toFixed(1)} s)`);

    let n = 0;
    const env = (id: string, serveUrl: string): NodeJS.ProcessEnv => {
      const home = join(work, `fn-${id}`);
      mkdirSync(home, { recursive: true });
      return {
        PATH: process.env.PATH,
        HOME: home,
        LANG: 'en_US.UTF-8',
        TZ: ':UTC',
        LAMBDA_TASK_ROOT: taskRoot,
        AWS_EXECUTION_ENV: `AWS_Lambda_${declared}`,
        AWS_LAMBDA_FUNCTION_NAME: `lading-bench-${id}`,
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '2048',
        AWS_REGION: 'us-east-1',
        AWS_DEFAULT_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: DEFAULT_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: DEFAULT_CREDENTIALS.secretAccessKey,
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
        AWS_CONFIG_FILE: join(home, 'no-aws-config'),
        AWS_SHARED_CREDENTIALS_FILE: join(home, 'no-aws-credentials'),
        AWS_ENDPOINT_URL_S3: s3.directUrl,
        AWS_ENDPOINT_URL_ECR: serveUrl,
        // Each function its own cold cache, as each Lambda its own /tmp.
        XDG_CACHE_HOME: join(home, 'cache'),
      };
    };

    const receiver = cfn;
    /** One Create of image `i` in its own child process, checked: exit 0 and one SUCCESS answer. */
    const create = async (
      i: number,
      srv: { url: string; host: string },
      ecr: ECRClient,
      run: number,
    ): Promise<Invocation> => {
      const id = `r${run}-i${i}-${++n}`;
      const repo = `bench/cdk20-${id}`;
      await ecr.send(new CreateRepositoryCommand({ repositoryName: repo }));
      const event: CustomResourceEvent = {
        RequestType: 'Create',
        ResponseURL: `${receiver.url}&req=${id}`,
        StackId: 'arn:aws:cloudformation:us-east-1:000000000000:stack/Stack20/1',
        RequestId: `req-${id}`,
        LogicalResourceId: `Img${i}Resource`,
        ResourceType: 'Custom::LadingTarballImage',
        ResourceProperties: {
          Bucket: BUCKET,
          Key: keys[i]!,
          RepositoryName: repo,
          RepositoryUri: `${srv.host}/${repo}`,
          Tag: `t${i}`,
          Compress: 'gzip',
          RemoveOnDelete: 'false',
        },
      };
      const eventFile = join(work, `${id}.json`);
      writeFileSync(eventFile, JSON.stringify(event));
      const r = await timed(node, [runner, taskRoot, eventFile, '900000'], {
        env: env(id, srv.url),
        scratchDir: ctx.scratchDir,
        timeoutMs: 10 * 60_000,
      });
      const got = receiver.received.filter((a) => {
        try {
          return (JSON.parse(a.body.toString('utf8')) as CustomResourceResponse).RequestId === event.RequestId;
        } catch {
          return false;
        }
      });
      const answer =
        got.length === 1 ? (JSON.parse(got[0]!.body.toString('utf8')) as CustomResourceResponse) : undefined;
      if (r.code !== 0 || !r.stdout.includes('RUNNER-DONE') || answer?.Status !== 'SUCCESS')
        throw new BenchError(
          `the handler's Create ${id} failed (exit ${r.code ?? r.signal}, ${got.length} answer(s): ${got.map((a) => a.body.toString('utf8')).join(' ')}):\n${r.stderr.slice(-3000)}`,
        );
      return { sample: r, answer };
    };

    const single: Sample[] = [];
    const batch: { wallS: number; each: Sample[]; serveCpuS: number; benchCpuS: number; load: number }[] = [];
    for (let run = 0; run < ctx.runs; run++) {
      // A fresh lading serve for each measurement: every blob is uploaded.
      for (const what of ['one', 'twenty'] as const) {
        const srv = await startServe(ctx.cli, join(ctx.serverRoot, `serve-cdk20-${what}-${run}`));
        const ecr = new ECRClient({
          region: 'us-east-1',
          endpoint: srv.url,
          credentials: { ...DEFAULT_CREDENTIALS },
          maxAttempts: 3,
        });
        try {
          if (what === 'one') {
            const inv = await create(0, srv, ecr, run);
            single.push(inv.sample);
            ctx.log(
              `cdk20 run ${run + 1}/${ctx.runs}: one Create ${inv.sample.wallS.toFixed(2)} s wall, ${inv.sample.cpuS.toFixed(2)} CPU-s, ${inv.sample.rssMiB.toFixed(0)} MiB`,
            );
          } else {
            const cpu0 = processCpuSeconds(srv.pid);
            const own0 = process.cpuUsage();
            const t0 = process.hrtime.bigint();
            const all = await Promise.all(Array.from({ length: IMAGES }, (_, i) => create(i, srv, ecr, run)));
            const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
            const serveCpuS = processCpuSeconds(srv.pid) - cpu0;
            const own = process.cpuUsage(own0);
            const benchCpuS = (own.user + own.system) / 1e6;
            const each = all.map((x) => x.sample);
            batch.push({ wallS, each, serveCpuS, benchCpuS, load: loadavg()[0]! });
            ctx.log(
              `cdk20 run ${run + 1}/${ctx.runs}: ${IMAGES} Creates at once ${wallS.toFixed(2)} s wall (slowest ${Math.max(...each.map((s) => s.wallS)).toFixed(2)} s, median ${median(each.map((s) => s.wallS)).toFixed(2)} s), max RSS ${Math.max(...each.map((s) => s.rssMiB)).toFixed(0)} MiB; serve ${serveCpuS.toFixed(2)} CPU-s, bench process (s3rver, response receiver) ${benchCpuS.toFixed(2)} CPU-s`,
            );
          }
        } finally {
          ecr.destroy();
          await srv.stop();
        }
      }
    }

    const one = medianSample(single);
    const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
    const pick = (f: (b: (typeof batch)[number]) => Sample): Sample[] => batch.map(f);
    const allSamples = pick((b) => ({
      wallS: b.wallS,
      userS: sum(b.each.map((s) => s.userS)),
      sysS: sum(b.each.map((s) => s.sysS)),
      cpuS: sum(b.each.map((s) => s.cpuS)),
      rssMiB: Math.max(...b.each.map((s) => s.rssMiB)),
    }));
    const bySlowest = (b: (typeof batch)[number]): Sample[] => [...b.each].sort((x, y) => x.wallS - y.wallS);
    const slowestSamples = pick((b) => bySlowest(b)[IMAGES - 1]!);
    const medianSamples = pick((b) => ({
      wallS: median(b.each.map((s) => s.wallS)),
      userS: median(b.each.map((s) => s.userS)),
      sysS: median(b.each.map((s) => s.sysS)),
      cpuS: median(b.each.map((s) => s.cpuS)),
      rssMiB: median(b.each.map((s) => s.rssMiB)),
    }));
    const all = medianSample(allSamples);
    const ratio = all.wallS / one.wallS;
    const scenario = `${IMAGES} images of 2 x ${LAYER_MIB} MiB random layers (${(archiveBytes / 2 ** 20).toFixed(0)} MiB archive each)`;
    const rows: Row[] = [
      {
        scenario,
        tool: 'one Create alone (1 handler process)',
        median: one,
        samples: single,
        bytes: archiveBytes,
      },
      {
        scenario,
        tool: `${IMAGES} Creates at once (${IMAGES} handler processes; CPU: their sum, RSS: the max)`,
        median: all,
        samples: allSamples,
        bytes: archiveBytes * IMAGES,
        ratio: `wall ${ratio.toFixed(2)}x one alone`,
        extra: {
          ratioWall20ToOne: ratio,
          serveCpuS: median(batch.map((b) => b.serveCpuS)),
          benchCpuS: median(batch.map((b) => b.benchCpuS)),
        },
      },
      {
        scenario,
        tool: `slowest single Create of the ${IMAGES}`,
        median: medianSample(slowestSamples),
        samples: slowestSamples,
        bytes: 0,
      },
      {
        scenario,
        tool: `median single Create of the ${IMAGES} (each metric's median)`,
        median: medianSample(medianSamples),
        samples: medianSamples,
        bytes: 0,
      },
    ];
    const notes = [
      `A stand-in for CloudFormation creating the ${IMAGES} custom resources of one stack in parallel, one Lambda function each: here the ${IMAGES} handler processes share this machine's cores (with s3rver in the bench process and lading serve), so the ratio wall(${IMAGES} at once) / wall(one) measures contention for the CPU, not Lambda's behaviour (there each function has its own share).`,
      `Each Create: the bundled handler (dist/cdk-handler/index.js, alone in a task dir) reads its archive from s3rver, pushes it with gzip to a fresh lading serve (its own repository, a cold XDG_CACHE_HOME), and PUTs a SUCCESS answer to the response URL; checked for every invocation. Node: ${nodeNote}.`,
      `During the ${IMAGES} Creates (medians of the runs) lading serve spent ${median(batch.map((b) => b.serveCpuS)).toFixed(2)} CPU-s and the bench process (s3rver serving the ${IMAGES} archives, the response receiver) ${median(batch.map((b) => b.benchCpuS)).toFixed(2)} CPU-s, beside the handlers' own CPU; ${cpus().length} cores, 1-minute load average at the end ${median(batch.map((b) => b.load)).toFixed(2)}.`,
      `Synthesized ${IMAGES}-image stack (aws-cdk-lib Template): ${synth.total} resources (${Object.entries(
        synth.byType,
      )
        .map(([t, c]) => `${t} ${c}`)
        .join(', ')}; CloudFormation allows 500), synthesized in ${synth.seconds.toFixed(1)} s.`,
    ];
    return [
      { id: 'cdk20', title: `A stack of ${IMAGES} TarballImages: ${IMAGES} Creates at once vs one`, rows, notes },
    ];
  } finally {
    await cfn?.stop();
    await s3.stop();
    rmSync(work, { recursive: true, force: true });
  }
}
