/**
 * The TarballImage custom-resource handler, the real code, run locally: the staged archive
 * sits in a real S3-compatible server (s3rver on 127.0.0.1) behind a counting proxy that
 * records every GET and its Range header; `lading serve` is ECR; CloudFormation's
 * pre-signed response URL is a local HTTP server. Pushed images are read back with skopeo.
 * No SDK mocks.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { BatchGetImageCommand, CreateRepositoryCommand, ECRClient } from '@aws-sdk/client-ecr';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import {
  fitReason,
  handle,
  providerIsComplete,
  providerOnEvent,
  type HandlerDeps,
  type CustomResourceEvent,
  type CustomResourceResponse,
  type TarballImageResourceProperties,
} from '../../src/cdk/handler';
import { dockerArchiveParts, file, freshPath, makeLayer, pseudoRandom, tarBuffer } from '../fixtures';
import { registryCreds, SERVE_CREDENTIALS, skopeoAvailable, startTestServer, type TestServer } from '../serve/helpers';
import { multiPlatformArchive, sampleArchive } from './helpers';
import { Network } from '../../src/net/network';
import { makeTestCA, startTestProxy } from '../net/proxies';

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require('s3rver') as new (opts: Record<string, unknown>) => S3rverInstance;

const BUCKET = 'cdk-hnb659fds-assets-000000000000-us-east-1';
const MiB = 1024 * 1024;
const gate = skopeoAvailable ? {} : { skip: 'skopeo is not installed (apt-get install skopeo)' };

interface Get {
  method: string;
  url: string;
  range: string | undefined;
  status: number;
  bytes: number;
}

/** An HTTP proxy in front of s3rver that records each request and the body bytes it returned. */
async function countingProxy(target: number): Promise<{ server: Server; url: string; log: Get[] }> {
  const log: Get[] = [];
  const server = createServer((req, res) => {
    const up = request(
      { host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers },
      (ur) => {
        const entry: Get = {
          method: req.method!,
          url: req.url!,
          range: req.headers.range,
          status: ur.statusCode!,
          bytes: 0,
        };
        log.push(entry);
        res.writeHead(ur.statusCode!, ur.headers);
        ur.on('data', (c: Buffer) => (entry.bytes += c.length));
        ur.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, log };
}

/** CloudFormation's side: records the responses PUT to the pre-signed URL. */
async function responseReceiver(): Promise<{ server: Server; url: string; received: CustomResourceResponse[] }> {
  const received: CustomResourceResponse[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      assert.equal(req.method, 'PUT');
      received.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as CustomResourceResponse);
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    server,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/cfn-response?X-Amz-Signature=x`,
    received,
  };
}

/** A legacy docker archive: the sample's two layers plus one uncompressed layer of `size` random bytes. */
async function bigArchive(size: number, seed: string): Promise<string> {
  const big = await makeLayer([file('data/random.bin', pseudoRandom(seed, size))], 'none');
  const small = await makeLayer([file('etc/motd', `hello ${seed}\n`)], 'none');
  const parts = dockerArchiveParts(
    [{ repoTags: [`big/${seed}:1`], platform: { os: 'linux', architecture: 'amd64' }, layers: [small, big] }],
    { order: 'sorted' },
  );
  const p = freshPath(`${seed}.tar`);
  writeFileSync(p, await tarBuffer(parts.entries));
  return p;
}

/** A docker archive of `count` uncompressed layers of `size` pseudo-random bytes each. */
async function layeredArchive(count: number, size: number, seed: string): Promise<string> {
  const layers = [];
  for (let i = 0; i < count; i++)
    layers.push(await makeLayer([file(`data/${i}.bin`, pseudoRandom(`${seed}-${i}`, size))], 'none'));
  const parts = dockerArchiveParts(
    [{ repoTags: [`layered/${seed}:1`], platform: { os: 'linux', architecture: 'amd64' }, layers }],
    { order: 'sorted' },
  );
  const p = freshPath(`${seed}.tar`);
  writeFileSync(p, await tarBuffer(parts.entries));
  return p;
}

describe('TarballImage handler against s3rver and lading serve', gate, () => {
  let s3dir: string;
  let s3rver: S3rverInstance;
  let proxy: Awaited<ReturnType<typeof countingProxy>>;
  let cfn: Awaited<ReturnType<typeof responseReceiver>>;
  let srv: TestServer;
  let s3: S3Client;
  let ecr: ECRClient;
  let creds: string;
  let cacheDir: string;
  let s3port: number;
  let n = 0;
  const lines: string[] = [];
  const log = (l: string): void => {
    lines.push(l);
    if (process.env.LADING_TEST_LOG) console.error(l);
  };

  before(async () => {
    s3dir = mkdtempSync(join(tmpdir(), 'lading-s3rver-'));
    cacheDir = mkdtempSync(join(tmpdir(), 'lading-cdk-cache-'));
    s3rver = new S3rver({
      address: '127.0.0.1',
      port: 0,
      silent: true,
      directory: s3dir,
      configureBuckets: [{ name: BUCKET, configs: [] }],
    });
    const addr = await s3rver.run();
    s3port = addr.port;
    proxy = await countingProxy(addr.port);
    cfn = await responseReceiver();
    srv = await startTestServer();
    s3 = new S3Client({
      endpoint: proxy.url,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      maxAttempts: 2,
    });
    ecr = new ECRClient({
      endpoint: srv.url,
      region: 'us-east-1',
      credentials: { ...SERVE_CREDENTIALS },
      maxAttempts: 1,
    });
    const c = await registryCreds(srv.ecr);
    creds = `${c.username}:${c.password}`;
  });
  after(async () => {
    s3.destroy();
    ecr.destroy();
    await srv.stop();
    await new Promise((r) => cfn.server.close(r));
    await new Promise((r) => proxy.server.close(r));
    await s3rver.close();
    rmSync(s3dir, { recursive: true, force: true });
    rmSync(cacheDir, { recursive: true, force: true });
  });

  /** Stages a file as the asset object (as cdk-assets would) and creates a fresh repository. */
  async function stage(path: string, into?: string): Promise<{ key: string; repo: string; size: number }> {
    const body = readFileSync(path);
    const key = `${createHash('sha256').update(body).digest('hex')}.tar`;
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
    const repo = into ?? `cdk/app${++n}`;
    if (!into) await srv.ecr.send(new CreateRepositoryCommand({ repositoryName: repo }));
    return { key, repo, size: body.length };
  }

  function event(
    type: CustomResourceEvent['RequestType'],
    props: Partial<TarballImageResourceProperties> & { Key: string; RepositoryName: string },
    physicalId?: string,
  ): CustomResourceEvent {
    return {
      RequestType: type,
      ResponseURL: cfn.url,
      StackId: 'arn:aws:cloudformation:us-east-1:000000000000:stack/S/1',
      RequestId: `req-${Math.random()}`,
      LogicalResourceId: 'ImgResource',
      ResourceType: 'Custom::LadingTarballImage',
      ...(physicalId ? { PhysicalResourceId: physicalId } : {}),
      ResourceProperties: {
        Bucket: BUCKET,
        RepositoryUri: `${srv.host}/${props.RepositoryName}`,
        Tag: 'lading-test',
        Compress: 'gzip',
        RemoveOnDelete: 'false',
        ...props,
      },
    };
  }

  const ctx = (ms = 900_000) => ({ getRemainingTimeInMillis: () => ms });

  async function run(
    e: CustomResourceEvent,
    opts: { ms?: number; marginMs?: number; deps?: Partial<HandlerDeps> } = {},
  ): Promise<CustomResourceResponse> {
    const before = cfn.received.length;
    const r = await handle(e, ctx(opts.ms), {
      s3,
      ecr,
      insecureRegistry: true,
      log,
      marginMs: opts.marginMs,
      ...opts.deps,
    });
    assert.equal(cfn.received.length, before + 1, 'exactly one answer PUT to the response URL');
    assert.deepEqual(cfn.received.at(-1), JSON.parse(JSON.stringify(r)));
    return r;
  }

  /** Asynchronous: lading serve and s3rver run in this process and must keep answering. */
  async function skopeo(args: string[]): Promise<Buffer> {
    const { stdout } = await promisify(execFile)('skopeo', args, {
      encoding: 'buffer',
      maxBuffer: 1 << 28,
      timeout: 60_000,
    });
    return stdout;
  }

  /** skopeo reads the image by digest (bytes hash to it) and by tag, and copies it whole (every blob verified). */
  async function verify(repo: string, digest: string, tag: string): Promise<{ architecture?: string }> {
    const raw = await skopeo([
      'inspect',
      '--tls-verify=false',
      '--creds',
      creds,
      '--raw',
      `docker://${srv.host}/${repo}@${digest}`,
    ]);
    assert.equal(`sha256:${createHash('sha256').update(raw).digest('hex')}`, digest);
    const byTag = JSON.parse(
      (
        await skopeo(['inspect', '--tls-verify=false', '--creds', creds, `docker://${srv.host}/${repo}:${tag}`])
      ).toString(),
    ) as { Digest: string; Architecture?: string };
    assert.equal(byTag.Digest, digest);
    const out = mkdtempSync(join(tmpdir(), 'lading-cdk-oci-'));
    try {
      await skopeo([
        'copy',
        '--all',
        '--src-tls-verify=false',
        '--src-creds',
        creds,
        `docker://${srv.host}/${repo}@${digest}`,
        `oci:${out}:x`,
      ]);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
    return byTag.Architecture ? { architecture: byTag.Architecture } : {};
  }

  function getsFor(key: string): Get[] {
    // The asset object only, not its digest cache beside it.
    return proxy.log.filter(
      (g) => g.method === 'GET' && g.url.includes(key) && !g.url.includes('.lading-digests.jsonl'),
    );
  }

  it('Create: an uncompressed archive is read with ranged GETs (never whole), pushed, and answered with digest, URI and tag', async () => {
    const path = await bigArchive(24 * MiB, 'ranged');
    const { key, repo, size } = await stage(path);
    const r = await run(event('Create', { Key: key, RepositoryName: repo }));
    assert.equal(r.Status, 'SUCCESS', r.Reason);
    const data = r.Data!;
    assert.match(data.ImageDigest, /^sha256:[0-9a-f]{64}$/);
    assert.equal(data.ImageUri, `${srv.host}/${repo}@${data.ImageDigest}`);
    assert.equal(data.ImageTag, 'lading-test');
    assert.equal(r.PhysicalResourceId, `${repo}:lading-test@${data.ImageDigest}`);
    await verify(repo, data.ImageDigest, 'lading-test');

    const gets = getsFor(key);
    assert.ok(gets.length >= 2, 'several GETs');
    for (const g of gets) {
      assert.ok(g.range?.startsWith('bytes='), `every GET is ranged: ${g.url} ${g.range}`);
      assert.equal(g.status, 206);
      const [a, b] = g.range!.slice(6).split('-').map(Number);
      assert.ok(!(a === 0 && b! >= size - 1), `no GET asks for the whole object: ${g.range}`);
    }
    const bytes = gets.reduce((t, g) => t + g.bytes, 0);
    // Each byte is read once: the index's blocks are reused by the blob streams.
    assert.ok(bytes <= size + 64 * 1024, `${bytes} bytes read for a ${size}-byte object`);
    assert.ok(gets.length <= 4, `${gets.length} GETs: header reads are coalesced into blocks`);
  });

  it('Create: a gzip-compressed archive is read in one sequential GET', async () => {
    const tar = await bigArchive(4 * MiB, 'gz');
    const gz = freshPath('gz.tar.gz');
    writeFileSync(gz, gzipSync(readFileSync(tar)));
    const { key, repo, size } = await stage(gz);
    const r = await run(event('Create', { Key: key, RepositoryName: repo }));
    assert.equal(r.Status, 'SUCCESS', r.Reason);
    await verify(repo, r.Data!.ImageDigest, 'lading-test');
    const gets = getsFor(key);
    const whole = gets.filter((g) => g.range === `bytes=0-${size - 1}`);
    assert.equal(whole.length, 1, 'one GET streams the whole object');
    assert.ok(
      gets.length <= 2,
      `the first block (size and magic bytes) and the stream: ${gets.map((g) => g.range).join(', ')}`,
    );
  });

  it('Create with a platform: the one manifest of a multi-platform archive; without: the index whole', async () => {
    const path = await multiPlatformArchive();
    const { key, repo } = await stage(path);
    const one = await run(event('Create', { Key: key, RepositoryName: repo, Platform: 'linux/arm64', Tag: 'arm' }));
    assert.equal(one.Status, 'SUCCESS', one.Reason);
    assert.equal((await verify(repo, one.Data!.ImageDigest, 'arm')).architecture, 'arm64');
    const all = await run(event('Create', { Key: key, RepositoryName: repo, Tag: 'all' }));
    assert.equal(all.Status, 'SUCCESS', all.Reason);
    const raw = JSON.parse(
      (
        await skopeo(['inspect', '--tls-verify=false', '--creds', creds, '--raw', `docker://${srv.host}/${repo}:all`])
      ).toString(),
    ) as { manifests?: unknown[] };
    assert.equal(raw.manifests?.length, 3, 'the stored index, attestation included');
  });

  it('a failed push answers FAILED with the reason; the retry skips the blobs already uploaded', async () => {
    process.env.XDG_CACHE_HOME = cacheDir; // a warm Lambda container keeps /tmp
    try {
      const path = await bigArchive(6 * MiB, 'retry');
      const { key, repo } = await stage(path);
      srv.faults.add({
        op: 'PutImage',
        kind: 'error',
        error: 'LimitExceededException',
        status: 400,
        message: 'injected',
        times: 1,
      });
      const first = await run(event('Create', { Key: key, RepositoryName: repo }));
      assert.equal(first.Status, 'FAILED');
      assert.match(first.Reason!, /PutImage|LimitExceeded|injected/);
      assert.ok(first.PhysicalResourceId.startsWith('lading-create-failed-'), first.PhysicalResourceId);
      assert.ok(first.PhysicalResourceId.endsWith(first.RequestId), 'each failed Create has its own physical id');
      srv.resetCalls();
      lines.length = 0;
      const second = await run(event('Create', { Key: key, RepositoryName: repo }));
      assert.equal(second.Status, 'SUCCESS', second.Reason);
      assert.equal(srv.calls.InitiateLayerUpload ?? 0, 0, 'nothing uploaded again');
      assert.equal(srv.calls.UploadLayerPart ?? 0, 0);
      assert.ok(lines.filter((l) => l.startsWith('skip ')).length >= 3, lines.join('\n'));
      await verify(repo, second.Data!.ImageDigest, 'lading-test');
    } finally {
      delete process.env.XDG_CACHE_HOME;
    }
  });

  it('a retry in a fresh container (empty /tmp) uploads nothing already in ECR: the digest cache lives beside the asset in S3', async () => {
    const first = mkdtempSync(join(tmpdir(), 'lading-container-1-'));
    const fresh = mkdtempSync(join(tmpdir(), 'lading-container-2-'));
    try {
      const { key, repo } = await stage(await bigArchive(6 * MiB, 'cold-retry'));
      process.env.XDG_CACHE_HOME = first;
      srv.faults.add({
        op: 'PutImage',
        kind: 'error',
        error: 'LimitExceededException',
        status: 400,
        message: 'injected',
        times: 1,
      });
      const failed = await run(event('Create', { Key: key, RepositoryName: repo }));
      assert.equal(failed.Status, 'FAILED');
      assert.match(failed.Reason!, /injected/, 'the fault fired');
      const cached = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${key}.lading-digests.jsonl` }));
      const entries = (await cached.Body!.transformToString()).trim().split('\n');
      assert.ok(
        entries.length >= 2,
        `one line per layer lading compressed, the 6 MiB one included: ${entries.join('\n')}`,
      );
      assert.ok(
        entries.some((e) => (JSON.parse(e) as { s: number }).s > 6 * MiB),
        'the big layer is in the cache',
      );

      // A new container: nothing in its /tmp.
      process.env.XDG_CACHE_HOME = fresh;
      srv.resetCalls();
      proxy.log.length = 0;
      lines.length = 0;
      const retry = await run(event('Create', { Key: key, RepositoryName: repo }));
      assert.equal(retry.Status, 'SUCCESS', retry.Reason);
      assert.equal(srv.calls.InitiateLayerUpload ?? 0, 0, 'no layer uploaded again');
      assert.equal(srv.calls.UploadLayerPart ?? 0, 0);
      assert.ok(
        lines.some((l) => l.startsWith(`digest cache: ${entries.length} compressed layer(s) known from s3:`)),
        lines.join('\n'),
      );
      await verify(repo, retry.Data!.ImageDigest, 'lading-test');
    } finally {
      delete process.env.XDG_CACHE_HOME;
      rmSync(first, { recursive: true, force: true });
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  it('Provider framework: a push larger than one invocation goes on across isComplete calls, each blob uploaded once', async () => {
    const layers = 6;
    const { key, repo } = await stage(await layeredArchive(layers, 2 * MiB, 'continued'));
    // Slow parts, so that uploads would overlap if the drain let more than one start.
    srv.faults.add({ op: 'UploadLayerPart', kind: 'slow', delayMs: 300, times: Infinity });
    srv.resetCalls();
    // Each invocation drains at once: it may start one upload only (a run always makes progress),
    // and the hard deadline (20 s) is far enough that it finishes, even on a busy machine.
    const opts = { s3, ecr, insecureRegistry: true, log, marginMs: 0, drainMs: 20_000 };
    const invocation = ctx(20_000);
    try {
      const e = event('Create', { Key: key, RepositoryName: repo });
      const first = await providerOnEvent(e, invocation, opts);
      assert.ok(
        first.PhysicalResourceId.startsWith('lading-create-pending-'),
        `not done in the first invocation: ${first.PhysicalResourceId}`,
      );
      assert.equal(first.Data, undefined);
      // What the framework's state machine does: isComplete with the request and onEvent's result.
      const pending = { ...e, PhysicalResourceId: first.PhysicalResourceId };
      let done: Awaited<ReturnType<typeof providerIsComplete>> | undefined;
      let calls = 0;
      while (!done?.IsComplete) {
        assert.ok(++calls <= 20, 'finishes within 20 isComplete calls');
        done = await providerIsComplete(pending, invocation, opts);
      }
      assert.equal(
        calls,
        layers,
        `one blob per invocation: onEvent and ${layers} isComplete calls for ${layers + 1} blobs`,
      );
      const data = done.Data!;
      assert.equal(done.PhysicalResourceId, `${repo}:lading-test@${data.ImageDigest}`);
      await verify(repo, data.ImageDigest, 'lading-test');
      // Each blob (the layers and the config) was uploaded exactly once: nothing in flight was thrown away.
      assert.equal(srv.calls.InitiateLayerUpload, layers + 1, JSON.stringify(srv.calls));
      assert.equal(srv.calls.CompleteLayerUpload, layers + 1);
      assert.equal(srv.calls.PutImage, 1);
      // Once complete, a further isComplete (the framework's retry after a lost answer) only confirms.
      srv.resetCalls();
      assert.deepEqual(await providerIsComplete({ ...pending, Data: data }, invocation, opts), { IsComplete: true });
      assert.equal(srv.calls.PutImage ?? 0, 0);
    } finally {
      srv.faults.clear();
    }
  });

  it('Provider framework: a small image is done in onEvent; a fatal error in isComplete answers FAILED once and then waits', async () => {
    const small = await stage(sampleArchive('provider:small'));
    const opts = { s3, ecr, insecureRegistry: true, log };
    const e = event('Create', { Key: small.key, RepositoryName: small.repo });
    const r = await providerOnEvent(e, ctx(), opts);
    assert.ok(r.Data?.ImageDigest, 'pushed within onEvent');
    assert.equal(r.PhysicalResourceId, `${small.repo}:lading-test@${r.Data.ImageDigest}`);
    assert.deepEqual(
      await providerIsComplete({ ...e, PhysicalResourceId: r.PhysicalResourceId, Data: r.Data }, ctx(), opts),
      { IsComplete: true },
    );

    // The archive disappears between invocations: isComplete cannot throw (the framework would
    // retry for an hour), so it answers FAILED itself and marks the request.
    const before = cfn.received.length;
    const gone = event('Create', { Key: 'vanished.tar', RepositoryName: small.repo });
    const pending = { ...gone, PhysicalResourceId: `lading-create-pending-${gone.RequestId}` };
    assert.deepEqual(await providerIsComplete(pending, ctx(), opts), { IsComplete: false });
    assert.equal(cfn.received.length, before + 1, 'one FAILED answer');
    const answer = cfn.received.at(-1)!;
    assert.equal(answer.Status, 'FAILED');
    assert.match(answer.Reason!, /vanished\.tar.*missing/);
    assert.equal(answer.PhysicalResourceId, `lading-create-failed-${gone.RequestId}`);
    lines.length = 0;
    assert.deepEqual(await providerIsComplete(pending, ctx(), opts), { IsComplete: false });
    assert.equal(cfn.received.length, before + 1, 'no second answer');
    assert.ok(
      lines.some((l) => l.includes('already failed')),
      lines.join('\n'),
    );
    // CloudFormation then deletes the failed resource: nothing to delete.
    srv.resetCalls();
    const del = await providerOnEvent(
      event(
        'Delete',
        { Key: 'vanished.tar', RepositoryName: small.repo, RemoveOnDelete: 'true' },
        answer.PhysicalResourceId,
      ),
      ctx(),
      opts,
    );
    assert.equal(del.PhysicalResourceId, answer.PhysicalResourceId);
    assert.equal(srv.calls.BatchDeleteImage ?? 0, 0);
  });

  it('a push that cannot finish in the invocation stops before the timeout with a clear message', async () => {
    const path = await bigArchive(2 * MiB, 'slow');
    const { key, repo } = await stage(path);
    // The slow call outlasts the budget by far: an answer before it returns is an answer at the deadline.
    srv.faults.add({ op: 'InitiateLayerUpload', kind: 'slow', delayMs: 20_000, times: 1 });
    srv.resetCalls();
    const t0 = Date.now();
    // 30 s margin, 1.5 s of budget left.
    const r = await run(event('Create', { Key: key, RepositoryName: repo }), { ms: 31_500, marginMs: 30_000 });
    assert.equal(r.Status, 'FAILED');
    assert.match(r.Reason!, /did not finish within this invocation.*deploying again skips them/);
    assert.ok((srv.calls.InitiateLayerUpload ?? 0) >= 1, 'the fault fired: the push was inside the slow call');
    assert.ok(Date.now() - t0 < 15_000, 'answered at the deadline, not when the slow call returned');
  });

  it('Delete leaves the image (RETAIN) or removes its tag (DESTROY); a failed create deletes nothing', async () => {
    const path = sampleArchive();
    const { key, repo } = await stage(path);
    const created = await run(event('Create', { Key: key, RepositoryName: repo }));
    assert.equal(created.Status, 'SUCCESS', created.Reason);
    const id = created.PhysicalResourceId;
    const kept = await run(event('Delete', { Key: key, RepositoryName: repo }, id));
    assert.equal(kept.Status, 'SUCCESS');
    assert.equal(kept.PhysicalResourceId, id);
    const still = await ecr.send(
      new BatchGetImageCommand({ repositoryName: repo, imageIds: [{ imageTag: 'lading-test' }] }),
    );
    assert.equal(still.images?.length, 1, 'RETAIN: the image stays');
    const removed = await run(event('Delete', { Key: key, RepositoryName: repo, RemoveOnDelete: 'true' }, id));
    assert.equal(removed.Status, 'SUCCESS', removed.Reason);
    const gone = await ecr.send(
      new BatchGetImageCommand({ repositoryName: repo, imageIds: [{ imageTag: 'lading-test' }] }),
    );
    assert.equal(gone.images?.length ?? 0, 0, 'DESTROY: the tag is gone');
    srv.resetCalls();
    for (const failed of ['lading-create-failed', 'lading-create-failed-req-1']) {
      const nothing = await run(event('Delete', { Key: key, RepositoryName: repo, RemoveOnDelete: 'true' }, failed));
      assert.equal(nothing.Status, 'SUCCESS');
      assert.equal(nothing.PhysicalResourceId, failed);
    }
    assert.equal(srv.calls.BatchDeleteImage ?? 0, 0);
  });

  /** The digest the tag names now, or undefined when the tag is gone. */
  async function tagged(repo: string, tag: string): Promise<string | undefined> {
    const r = await ecr.send(new BatchGetImageCommand({ repositoryName: repo, imageIds: [{ imageTag: tag }] }));
    return r.images?.[0]?.imageId?.imageDigest;
  }

  it('Create -> Update (fixed tag, new archive) -> cleanup Delete of the old id keeps the tag on the new image', async () => {
    const a = await stage(sampleArchive('fixed:a'));
    const b = await stage(await bigArchive(1 * MiB, 'fixed-b'), a.repo);
    const props = { RepositoryName: a.repo, Tag: 'prod', RemoveOnDelete: 'true' as const };
    const created = await run(event('Create', { ...props, Key: a.key }));
    assert.equal(created.Status, 'SUCCESS', created.Reason);
    const updated = await run(event('Update', { ...props, Key: b.key }, created.PhysicalResourceId));
    assert.equal(updated.Status, 'SUCCESS', updated.Reason);
    assert.notEqual(
      updated.PhysicalResourceId,
      created.PhysicalResourceId,
      'a new image is a new physical id: CloudFormation will delete the old one',
    );
    lines.length = 0;
    const cleanup = await run(event('Delete', { ...props, Key: a.key }, created.PhysicalResourceId));
    assert.equal(cleanup.Status, 'SUCCESS', cleanup.Reason);
    assert.ok(
      lines.some((l) => l.includes('ImageTagDoesNotMatchDigest')),
      `the Delete asked for tag AND digest and ECR refused the pair:\n${lines.join('\n')}`,
    );
    assert.equal(await tagged(a.repo, 'prod'), updated.Data!.ImageDigest, 'prod still names the new image');
    await verify(a.repo, updated.Data!.ImageDigest, 'prod');
    // The stack's own Delete later removes the tag it names.
    const last = await run(event('Delete', { ...props, Key: b.key }, updated.PhysicalResourceId));
    assert.equal(last.Status, 'SUCCESS', last.Reason);
    assert.equal(await tagged(a.repo, 'prod'), undefined);
  });

  it('Update -> rollback: the old image is pushed back and the cleanup Delete of the new id leaves it tagged', async () => {
    const a = await stage(sampleArchive('rollback:a'));
    const b = await stage(await bigArchive(1 * MiB, 'rollback-b'), a.repo);
    const props = { RepositoryName: a.repo, Tag: 'prod', RemoveOnDelete: 'true' as const };
    const created = await run(event('Create', { ...props, Key: a.key }));
    assert.equal(created.Status, 'SUCCESS', created.Reason);
    const updated = await run(event('Update', { ...props, Key: b.key }, created.PhysicalResourceId));
    assert.equal(updated.Status, 'SUCCESS', updated.Reason);
    assert.equal(await tagged(a.repo, 'prod'), updated.Data!.ImageDigest);
    // Another resource of the stack fails: CloudFormation sends an Update back to the old
    // properties, with the NEW physical id, then deletes the id that Update replaced.
    const rolledBack = await run(event('Update', { ...props, Key: a.key }, updated.PhysicalResourceId));
    assert.equal(rolledBack.Status, 'SUCCESS', rolledBack.Reason);
    assert.equal(rolledBack.PhysicalResourceId, created.PhysicalResourceId, 'the old image, the old physical id');
    assert.equal(await tagged(a.repo, 'prod'), created.Data!.ImageDigest);
    const cleanup = await run(event('Delete', { ...props, Key: b.key }, updated.PhysicalResourceId));
    assert.equal(cleanup.Status, 'SUCCESS', cleanup.Reason);
    assert.equal(await tagged(a.repo, 'prod'), created.Data!.ImageDigest, 'prod still names the image rolled back to');
    await verify(a.repo, created.Data!.ImageDigest, 'prod');
  });

  it('Update with a new archive pushes it and changes the physical id', async () => {
    const a = await stage(sampleArchive('one:1'));
    const r1 = await run(event('Create', { Key: a.key, RepositoryName: a.repo, Tag: 't1' }));
    const b = freshPath('two.tar');
    writeFileSync(b, readFileSync(await bigArchive(1 * MiB, 'update')));
    const body = readFileSync(b);
    const key2 = `${createHash('sha256').update(body).digest('hex')}.tar`;
    await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key2, Body: body }));
    const r2 = await run(event('Update', { Key: key2, RepositoryName: a.repo, Tag: 't2' }, r1.PhysicalResourceId));
    assert.equal(r2.Status, 'SUCCESS', r2.Reason);
    assert.notEqual(r2.PhysicalResourceId, r1.PhysicalResourceId);
    await verify(a.repo, r2.Data!.ImageDigest, 't2');
  });

  it('behind a TLS-inspecting proxy: S3 reads, ECR calls and the answer to CloudFormation all go through it', async () => {
    const ca = await makeTestCA();
    const mitm = await startTestProxy({ mitm: { ca } });
    // The function's environment in a VPC without direct egress; the corporate CA in AWS_CA_BUNDLE.
    // S3 by its real name (path style, as s3rver reads it): reachable only through the proxy here.
    const network = new Network({
      env: { HTTPS_PROXY: mitm.url, HTTP_PROXY: mitm.url, AWS_CA_BUNDLE: ca.certPath },
      certsDirectories: [],
    });
    const creds = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
    const s3p = new S3Client({
      endpoint: `https://s3.us-east-1.amazonaws.com:${s3port}`,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: creds,
      maxAttempts: 1,
      requestHandler: network.awsRequestHandler(),
    });
    const ecrp = new ECRClient({
      endpoint: `https://ecr.corp.example:${srv.port}`,
      region: 'us-east-1',
      credentials: { ...SERVE_CREDENTIALS },
      maxAttempts: 1,
      requestHandler: network.awsRequestHandler(),
    });
    try {
      const { key, repo } = await stage(await bigArchive(2 * MiB, 'proxied'));
      const e = event('Create', { Key: key, RepositoryName: repo });
      e.ResponseURL = e.ResponseURL.replace('127.0.0.1', 'cfn.corp.example');
      const r = await run(e, { deps: { s3: s3p, ecr: ecrp, network } });
      assert.equal(r.Status, 'SUCCESS', r.Reason);
      await verify(repo, r.Data!.ImageDigest, 'lading-test');
      const seen = mitm.requests.map(
        (q) =>
          `${q.method} ${q.url.replace(/\?.*$/, '')} ${String(q.headers['x-amz-target'] ?? '').replace(/^.*\./, '')}`,
      );
      assert.ok(
        seen.some((l) => l.startsWith(`GET https://s3.us-east-1.amazonaws.com:${s3port}/${BUCKET}/${key}`)),
        `S3 through the proxy:\n${seen.join('\n')}`,
      );
      assert.ok(
        seen.some((l) => l.endsWith(' PutImage')),
        'ECR through the proxy',
      );
      assert.ok(
        seen.some((l) => l.startsWith('PUT http://cfn.corp.example:')),
        'the answer through the proxy',
      );
    } finally {
      s3p.destroy();
      ecrp.destroy();
      await mitm.stop();
      await ca.cleanup();
    }
  });

  it('a missing asset object fails with what to check', async () => {
    const repo = `cdk/missing${++n}`;
    await srv.ecr.send(new CreateRepositoryCommand({ repositoryName: repo }));
    const r = await run(event('Create', { Key: 'no-such-object.tar', RepositoryName: repo }));
    assert.equal(r.Status, 'FAILED');
    assert.match(r.Reason!, /s3:\/\/.*no-such-object\.tar.*missing/);
  });
});

describe("fitReason: the FAILED answer fits CloudFormation's 4,096-byte response limit", () => {
  const base: CustomResourceResponse = {
    Status: 'FAILED',
    PhysicalResourceId: 'lading-create-failed-req',
    StackId: 'arn:aws:cloudformation:us-east-1:000000000000:stack/S/1',
    RequestId: 'req',
    LogicalResourceId: 'Img',
  };
  const bytes = (r: CustomResourceResponse): number => Buffer.byteLength(JSON.stringify(r));
  const suffix = ' (lading REGISTRY; see CloudWatch log stream)';

  it('a short message is kept whole', () => {
    const r = fitReason(base, 'PutImage failed', suffix);
    assert.equal(r.Reason, `PutImage failed${suffix}`);
  });

  for (const [name, unit] of [
    ['ASCII', 'x'],
    ['multi-byte UTF-8', 'é€😀'],
    ['JSON escapes', '"\\\n\u0001'],
    ['lone surrogates', '\ud800'],
  ] as const) {
    it(`a long message of ${name} is cut to fit, at a character boundary, keeping the code`, () => {
      const r = fitReason(base, unit.repeat(5000), suffix);
      assert.ok(bytes(r) < 4096, `${bytes(r)} bytes`);
      assert.ok(bytes(r) > 3900, `not cut more than needed: ${bytes(r)} bytes`);
      assert.ok(r.Reason!.endsWith(`...${suffix}`));
      assert.ok(
        !/[\ud800-\udbff]$/.test(r.Reason!.slice(0, -(3 + suffix.length))) || unit === '\ud800',
        'no half of a surrogate pair',
      );
    });
  }
});
