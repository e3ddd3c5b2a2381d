/**
 * The shipped handler, run as Lambda runs it (issue 13): the bundle `npm run build` leaves in
 * OUT/cdk-handler (the directory the construct ships as its code asset) is copied alone into a
 * task directory, as Lambda unpacks it into /var/task (no node_modules around it: zstd-napi,
 * left out of the bundle, cannot be found), and its exported `handler(event, context)` is
 * called in a child process of the Node.js major version of the Lambda runtime the construct
 * declares (read from the synthesized template), then again on Node 24. The clients are the
 * handler's own defaults, configured from the environment only: AWS_ENDPOINT_URL_S3 at s3rver
 * (an IP-address endpoint: the SDK's S3 endpoint rules then address the bucket path-style),
 * AWS_ENDPOINT_URL_ECR at `lading serve`, AWS_REGION, keys in AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY, XDG_CACHE_HOME. Node binaries come from the npm registry's `node`
 * package through npx: the first download takes ~12 s per version; under CI a failure to get
 * one fails the test.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it, type TestContext } from 'node:test';
import { App, Stack } from 'aws-cdk-lib';
import type { CfnFunction } from 'aws-cdk-lib/aws-lambda';
import { BatchGetImageCommand, CreateRepositoryCommand } from '@aws-sdk/client-ecr';
import type {
  CustomResourceEvent,
  CustomResourceResponse,
  TarballImageResourceProperties,
} from '../../src/cdk/handler';
import { TarballImage } from '../../src/cdk';
import { dockerArchiveParts, file, freshPath, makeLayer, pseudoRandom, tarBuffer } from '../fixtures';
import { registryCreds, SERVE_CREDENTIALS, skopeoAvailable, startTestServer, type TestServer } from '../serve/helpers';
import {
  nodeBinary,
  responseReceiver,
  runtimeMajor,
  startS3,
  type NodeBinary,
  type ResponseReceiver,
  type S3Rig,
} from './bundled-rig';

const BUCKET = 'cdk-hnb659fds-assets-000000000000-us-east-1';
/** What `npm run build` leaves next to dist/test: dist/cdk-handler/index.js. */
const BUNDLE_DIR = join(__dirname, '..', '..', 'cdk-handler');
const ci = process.env.CI !== undefined;

const ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
];

/** The Lambda runtime's bootstrap, reduced: require the handler module, call `handler(event, context)`, report, exit. */
const RUNNER = `'use strict';
const { readFileSync } = require('node:fs');
const { join } = require('node:path');
const [taskRoot, eventFile, timeoutMs] = process.argv.slice(2);
const mod = require(join(taskRoot, 'index.js'));
if (typeof mod.handler !== 'function') { process.stderr.write('RUNNER: index.handler is not a function\\n'); process.exit(3); }
const event = JSON.parse(readFileSync(eventFile, 'utf8'));
const deadline = Date.now() + Number(timeoutMs);
const context = { getRemainingTimeInMillis: () => deadline - Date.now(), functionName: 'lading-bundled-test', awsRequestId: event.RequestId, callbackWaitsForEmptyEventLoop: true };
Promise.resolve()
  .then(() => mod.handler(event, context))
  .then(
    (result) => {
      const z = require('node:zlib');
      process.stdout.write('\\nRUNNER-DONE ' + JSON.stringify({ result: result === undefined ? null : result, node: process.version, zlibZstd: typeof z.createZstdCompress === 'function' }) + '\\n');
      process.exit(0);
    },
    (e) => {
      process.stderr.write('RUNNER-THREW ' + String((e && e.stack) || e) + '\\n');
      process.exit(2);
    },
  );
`;

/** A docker-save archive with uncompressed layers: a small text layer and `size` bytes of compressible data. */
async function uncompressedArchive(seed: string, size: number): Promise<string> {
  const text = Buffer.from(
    Array.from(
      { length: Math.ceil(size / 32) },
      (_, i) => `${seed} ${i} ${(Math.imul(i, 2654435761) >>> 0).toString(16)}\n`,
    ).join(''),
  ).subarray(0, size);
  const small = await makeLayer([file('etc/motd', `hello ${seed}\n`)], 'none');
  const big = await makeLayer(
    [file('data/text.txt', text), file('data/random.bin', pseudoRandom(seed, 64 * 1024))],
    'none',
  );
  const parts = dockerArchiveParts(
    [{ repoTags: [`bundled/${seed}:1`], platform: { os: 'linux', architecture: 'arm64' }, layers: [small, big] }],
    { order: 'sorted' },
  );
  const p = freshPath(`${seed}.tar`);
  writeFileSync(p, await tarBuffer(parts.entries));
  return p;
}

interface Invocation {
  answer: CustomResourceResponse;
  /** Raw answer bytes, for the size limit. */
  bytes: number;
  stdout: string;
  stderr: string;
  ms: number;
  done: { node: string; zlibZstd: boolean };
}

describe('the bundled handler (OUT/cdk-handler/index.js) run as Lambda runs it, on the declared runtime and on Node 24', () => {
  let s3: S3Rig;
  let srv: TestServer;
  let cfn: ResponseReceiver;
  let creds: string;
  let taskRoot: string;
  let work: string;
  let declared: string;
  let n = 0;
  /** The asset object: an uncompressed docker archive of ~3 MiB. */
  let assetKey: string;

  before(async () => {
    assert.ok(
      existsSync(join(BUNDLE_DIR, 'index.js')),
      `the handler bundle is missing at ${BUNDLE_DIR}: npm run build makes it (or: node scripts/bundle-cdk-handler.js OUTDIR)`,
    );
    // The runtime the construct declares for its handler function (the construct, not a copy of its source).
    const stack = new Stack(new App(), 'Bundled', { env: { account: '000000000000', region: 'us-east-1' } });
    const image = new TarballImage(stack, 'Img', {
      tarball: await uncompressedArchive('synth', 4096),
      verifyAtSynth: false,
    });
    const fn = image.handler.node.defaultChild as CfnFunction;
    assert.equal(fn.handler, 'index.handler', "the runner calls index.js's handler export, as the function does");
    declared = image.handler.runtime.name;
    // Fetched (or found in npx's cache) while the servers start.
    void nodeBinary(runtimeMajor(declared));
    void nodeBinary(24);

    // Lambda's /var/task: the code asset alone.
    work = mkdtempSync(join(tmpdir(), 'lading-bundled-'));
    taskRoot = join(work, 'task');
    cpSync(BUNDLE_DIR, taskRoot, { recursive: true });
    writeFileSync(join(work, 'runner.js'), RUNNER);

    s3 = await startS3(BUCKET);
    cfn = await responseReceiver();
    // The function's one key pair (its environment) signs its S3 and its ECR calls alike: s3rver's
    // fixed key, which lading serve is told to accept too.
    srv = await startTestServer({
      credentials: [SERVE_CREDENTIALS, { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }],
    });
    const c = await registryCreds(srv.ecr);
    creds = `${c.username}:${c.password}`;
    const body = readFileSync(await uncompressedArchive('bundled-a', 3 * 1024 * 1024));
    assetKey = `${createHash('sha256').update(body).digest('hex')}.tar`;
    await s3.put(assetKey, body);
  });
  after(async () => {
    await srv?.stop();
    await cfn?.stop();
    await s3?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  async function repo(): Promise<string> {
    const name = `bundled/app${++n}`;
    await srv.ecr.send(new CreateRepositoryCommand({ repositoryName: name }));
    return name;
  }

  function event(
    type: CustomResourceEvent['RequestType'],
    props: Partial<TarballImageResourceProperties> & { Key: string; RepositoryName: string },
    physicalId?: string,
  ): CustomResourceEvent {
    return {
      RequestType: type,
      ResponseURL: cfn.url,
      StackId: 'arn:aws:cloudformation:us-east-1:000000000000:stack/Bundled/1',
      RequestId: `req-${type}-${++n}`,
      LogicalResourceId: 'ImgResource',
      ResourceType: 'Custom::LadingTarballImage',
      ...(physicalId ? { PhysicalResourceId: physicalId } : {}),
      ResourceProperties: {
        Bucket: BUCKET,
        RepositoryUri: `${srv.host}/${props.RepositoryName}`,
        Tag: 'lading-bundled',
        Compress: 'gzip',
        RemoveOnDelete: 'false',
        ...props,
      },
    };
  }

  /** The function's environment: Lambda's variables, the construct's XDG_CACHE_HOME, endpoints and keys; nothing inherited but PATH. */
  function lambdaEnv(): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH,
      HOME: work,
      LANG: 'en_US.UTF-8',
      TZ: ':UTC',
      LAMBDA_TASK_ROOT: taskRoot,
      AWS_EXECUTION_ENV: `AWS_Lambda_${declared}`,
      AWS_LAMBDA_FUNCTION_NAME: 'lading-bundled-test',
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '2048',
      AWS_REGION: 'us-east-1',
      AWS_DEFAULT_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_SESSION_TOKEN: 'bundled-test-session',
      // No shared config or credentials files: the environment alone configures the clients.
      AWS_CONFIG_FILE: join(work, 'no-aws-config'),
      AWS_SHARED_CREDENTIALS_FILE: join(work, 'no-aws-credentials'),
      // An IP address: the S3 endpoint rules address the bucket in the path (no forcePathStyle needed).
      AWS_ENDPOINT_URL_S3: s3.proxy.url,
      AWS_ENDPOINT_URL_ECR: srv.url,
      XDG_CACHE_HOME: join(work, 'cache'),
    };
  }

  /** One invocation in a child process; exactly one answer PUT, which is returned. */
  async function invoke(node: string, e: CustomResourceEvent): Promise<Invocation> {
    const eventFile = join(work, `${e.RequestId}.json`);
    writeFileSync(eventFile, JSON.stringify(e));
    const before = cfn.received.length;
    const t0 = Date.now();
    let stdout: string;
    let stderr: string;
    try {
      ({ stdout, stderr } = await promisify(execFile)(node, [join(work, 'runner.js'), taskRoot, eventFile, '900000'], {
        cwd: taskRoot,
        env: lambdaEnv(),
        timeout: 60_000,
        maxBuffer: 16 << 20,
        encoding: 'utf8',
      }));
    } catch (err) {
      const x = err as Error & { stdout?: string; stderr?: string };
      throw new Error(
        `the handler process failed: ${x.message}\n--- stdout\n${x.stdout ?? ''}\n--- stderr\n${x.stderr ?? ''}`,
        { cause: err },
      );
    }
    const ms = Date.now() - t0;
    const doneLine = stdout.split('\n').find((l) => l.startsWith('RUNNER-DONE '));
    assert.ok(doneLine, `the runner reports the handler's return:\n${stdout}\n${stderr}`);
    const done = JSON.parse(doneLine.slice('RUNNER-DONE '.length)) as {
      result: unknown;
      node: string;
      zlibZstd: boolean;
    };
    assert.equal(done.result, null, 'handler() resolves to undefined (the answer goes to the response URL)');
    const answers = cfn.received.slice(before);
    assert.equal(answers.length, 1, `exactly one request to the response URL, got ${answers.length}`);
    const a = answers[0]!;
    assert.equal(a.method, 'PUT');
    const ct = a.headers['content-type'];
    assert.ok(
      ct === undefined || ct === '',
      `no Content-Type (or an empty one): the pre-signed URL is signed without one; got ${JSON.stringify(ct)}`,
    );
    assert.equal(Number(a.headers['content-length']), a.body.length);
    assert.ok(a.body.length < 4096, `answer body ${a.body.length} bytes: CloudFormation refuses 4,096 or more`);
    const answer = JSON.parse(a.body.toString('utf8')) as CustomResourceResponse;
    assert.equal(answer.RequestId, e.RequestId);
    assert.equal(answer.StackId, e.StackId);
    assert.equal(answer.LogicalResourceId, e.LogicalResourceId);
    return { answer, bytes: a.body.length, stdout, stderr, ms, done };
  }

  async function skopeo(args: string[]): Promise<Buffer> {
    const { stdout } = await promisify(execFile)('skopeo', args, {
      encoding: 'buffer',
      maxBuffer: 1 << 28,
      timeout: 60_000,
    });
    return stdout;
  }

  /** The pushed image read back: the tag names the digest, the manifest's layer media types; skopeo reads and copies it whole. */
  async function verify(repository: string, digest: string, tag: string): Promise<string[]> {
    const out = await srv.ecr.send(
      new BatchGetImageCommand({
        repositoryName: repository,
        imageIds: [{ imageTag: tag }],
        acceptedMediaTypes: ACCEPT,
      }),
    );
    assert.equal(out.images?.length, 1, `tag ${tag} of ${repository}: ${JSON.stringify(out.failures)}`);
    const img = out.images![0]!;
    assert.equal(img.imageId?.imageDigest, digest, 'the tag names the digest the answer gave');
    assert.equal(`sha256:${createHash('sha256').update(img.imageManifest!).digest('hex')}`, digest);
    const manifest = JSON.parse(img.imageManifest!) as { layers: { mediaType: string }[] };
    if (skopeoAvailable) {
      const raw = await skopeo([
        'inspect',
        '--tls-verify=false',
        '--creds',
        creds,
        '--raw',
        `docker://${srv.host}/${repository}@${digest}`,
      ]);
      assert.equal(`sha256:${createHash('sha256').update(raw).digest('hex')}`, digest);
      const dir = mkdtempSync(join(tmpdir(), 'lading-bundled-oci-'));
      try {
        await skopeo([
          'copy',
          '--all',
          '--src-tls-verify=false',
          '--src-creds',
          creds,
          `docker://${srv.host}/${repository}:${tag}`,
          `oci:${dir}:x`,
        ]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    return manifest.layers.map((l) => l.mediaType);
  }

  /** Node of that major version, or a skip (a failure under CI). */
  async function nodeOf(t: TestContext, major: number): Promise<Extract<NodeBinary, { ok: true }> | undefined> {
    const bin = await nodeBinary(major);
    if (!bin.ok) {
      if (ci) assert.fail(`CI must run the bundled handler on Node ${major}: ${bin.error}`);
      t.skip(`Node ${major} unavailable: ${bin.error}`);
      return undefined;
    }
    t.diagnostic(`Node ${bin.version} at ${bin.path} (resolved in ${bin.resolveMs} ms)`);
    return bin;
  }

  /** A Create of the uncompressed archive with `compress`, checked end to end; returns the answer. */
  async function create(
    t: TestContext,
    node: string,
    compress: 'zstd' | 'gzip',
  ): Promise<{ r: CustomResourceResponse; repository: string; inv: Invocation }> {
    const repository = await repo();
    const key = assetKey;
    const gets = s3.proxy.log.length;
    const inv = await invoke(node, event('Create', { Key: key, RepositoryName: repository, Compress: compress }));
    const r = inv.answer;
    assert.equal(r.Status, 'SUCCESS', `${r.Reason}\n${inv.stdout}\n${inv.stderr}`);
    assert.match(r.Data!.ImageDigest, /^sha256:[0-9a-f]{64}$/);
    assert.equal(r.Data!.ImageUri, `${srv.host}/${repository}@${r.Data!.ImageDigest}`);
    assert.equal(r.Data!.ImageTag, 'lading-bundled');
    assert.equal(r.PhysicalResourceId, `${repository}:lading-bundled@${r.Data!.ImageDigest}`);
    // The default S3 client reached s3rver path-style, from AWS_ENDPOINT_URL_S3 alone (the asset
    // object, and the digest cache beside it), signed with the environment's keys and session token.
    const calls = s3.proxy.log.slice(gets);
    const listing = calls.map((g) => `${g.method} ${g.headers.host} ${g.url} ${g.status}`).join('\n');
    assert.ok(
      calls.some(
        (g) =>
          g.method === 'GET' &&
          g.url.startsWith(`/${BUCKET}/${key}?`) &&
          g.headers.range?.startsWith('bytes=') &&
          g.status === 206,
      ),
      `ranged GETs of the asset object:\n${listing}`,
    );
    for (const g of calls) {
      assert.ok(
        g.url.startsWith(`/${BUCKET}/${key}`) && g.headers.host === new URL(s3.proxy.url).host,
        `path-style, to the endpoint of the environment:\n${listing}`,
      );
      assert.match(String(g.headers.authorization), /Credential=S3RVER\/\d{8}\/us-east-1\/s3\/aws4_request/);
      assert.equal(g.headers['x-amz-security-token'], 'bundled-test-session');
    }
    const types = await verify(repository, r.Data!.ImageDigest, 'lading-bundled');
    assert.equal(types.length, 2);
    for (const mt of types)
      assert.match(
        mt,
        compress === 'zstd' ? /^application\/vnd\.oci\.image\.layer\.v1\.tar\+zstd$/ : /\.tar(\.|\+)gzip$/,
        `layer media types ${types.join(', ')}`,
      );
    // Compressed and uploaded here (a fresh repository): the config and both layers.
    const uploaded = /^.*pushed .* (\d+) blobs uploaded/m.exec(inv.stdout);
    assert.ok(uploaded, `the handler logs its summary to stdout (CloudWatch):\n${inv.stdout}`);
    assert.equal(Number(uploaded[1]), 3, uploaded[0]);
    t.diagnostic(
      `${compress} Create on ${inv.done.node}: ${inv.ms} ms (process start to exit), answer ${inv.bytes} bytes`,
    );
    if (inv.stderr.trim()) t.diagnostic(`stderr on ${inv.done.node}: ${inv.stderr.trim().split('\n').join(' / ')}`);
    return { r, repository, inv };
  }

  it('on the runtime the construct declares: Create (zstd through node:zlib, and gzip), Delete, and a FAILED answer', async (t) => {
    const major = runtimeMajor(declared);
    assert.ok(
      major >= 22,
      `the declared runtime ${declared} has zstd in node:zlib (Node >= 22.15), which the handler relies on`,
    );
    const bin = await nodeOf(t, major);
    if (!bin) return;

    const zstd = await create(t, bin.path, 'zstd');
    assert.equal(zstd.inv.done.node, bin.version);
    assert.equal(zstd.inv.done.zlibZstd, true, 'node:zlib has zstd on this runtime');

    const gz = await create(t, bin.path, 'gzip');

    // Delete (DESTROY): the tag this resource wrote goes, the zstd image stays.
    const del = await invoke(
      bin.path,
      event(
        'Delete',
        { Key: assetKey, RepositoryName: gz.repository, RemoveOnDelete: 'true' },
        gz.r.PhysicalResourceId,
      ),
    );
    assert.equal(del.answer.Status, 'SUCCESS', del.answer.Reason);
    assert.equal(
      del.answer.PhysicalResourceId,
      gz.r.PhysicalResourceId,
      'a Delete answers with the physical id it was given',
    );
    assert.equal(del.answer.Data, undefined);
    const gone = await srv.ecr.send(
      new BatchGetImageCommand({ repositoryName: gz.repository, imageIds: [{ imageTag: 'lading-bundled' }] }),
    );
    assert.equal(gone.images?.length ?? 0, 0, 'the tag is gone');
    const kept = await srv.ecr.send(
      new BatchGetImageCommand({ repositoryName: zstd.repository, imageIds: [{ imageTag: 'lading-bundled' }] }),
    );
    assert.equal(kept.images?.length, 1);
    t.diagnostic(`Delete: ${del.ms} ms`);

    // A missing asset object: FAILED, with the reason, a physical id of its own, within the size limit.
    const missingRepo = await repo();
    const failed = await invoke(bin.path, event('Create', { Key: 'no-such-object.tar', RepositoryName: missingRepo }));
    assert.equal(failed.answer.Status, 'FAILED');
    assert.match(
      failed.answer.Reason!,
      /s3:\/\/.*no-such-object\.tar.*missing.*\(lading NOT_FOUND; see CloudWatch log stream\)$/,
    );
    assert.equal(failed.answer.PhysicalResourceId, `lading-create-failed-${failed.answer.RequestId}`);
    assert.equal(failed.answer.Data, undefined);
    assert.match(failed.stdout, /FAILED: /, 'the failure is logged too');
    t.diagnostic(`FAILED Create: ${failed.ms} ms`);
  });

  it('on Node 24: the same zstd Create', async (t) => {
    const bin = await nodeOf(t, 24);
    if (!bin) return;
    const zstd = await create(t, bin.path, 'zstd');
    assert.equal(zstd.inv.done.node, bin.version);
    assert.equal(zstd.inv.done.zlibZstd, true);
  });
});
