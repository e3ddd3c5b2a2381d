/**
 * `lading push` to Amazon ECR, against `lading serve` as the ECR endpoint: the real
 * @aws-sdk/client-ecr over real HTTP, through both transports (the native layer API and
 * the registry API reached through GetAuthorizationToken). Every pushed image is read back
 * by skopeo through the served /v2/ API (the digest lading reports is that of the bytes
 * served; `copy --all` fetches and verifies every blob).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { BatchGetImageCommand, CreateRepositoryCommand, DescribeImagesCommand } from '@aws-sdk/client-ecr';
import { main } from '../../src/cli/main';
import { sampleDockerArchive } from '../../src/sample';
import { openDestination, type DestinationOptions } from '../../src/destinations/open';
import { copyImage, type CopyOptions } from '../../src/copy/engine';
import { isLadingError } from '../../src/errors';
import type { Digest } from '../../src/image/digest';
import {
  dockerArchiveParts,
  availablePlatforms,
  FORMAT_BUILDERS,
  pushablePlatforms,
  freshPath,
  file,
  makeLayer,
  pseudoRandom,
  tarBuffer,
} from '../fixtures';
import { realToolArchives, realToolsGate } from '../fixtures/real-tools';
import { registryCreds, SERVE_AWS_ENV, skopeoAvailable, startTestServer, type TestServer } from '../serve/helpers';

// The SDK's default credential chain reads this process's environment.
Object.assign(process.env, SERVE_AWS_ENV); // the key pair lading serve accepts
process.env.AWS_EC2_METADATA_DISABLED = 'true';
delete process.env.AWS_PROFILE;

const HOST = '000000000000.dkr.ecr.us-east-1.amazonaws.com';
const TRANSPORTS = ['ecr-api', 'registry'] as const;
type Transport = (typeof TRANSPORTS)[number];

const tmp = mkdtempSync(join(tmpdir(), 'lading-push-ecr-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const execFileAsync = promisify(execFile);
const gate = skopeoAvailable ? {} : { skip: 'skopeo is not installed (apt-get install skopeo)' };

/** A legacy docker archive with one uncompressed layer holding `size` bytes of random data. */
async function randomLayerArchive(size: number, seed: string): Promise<string> {
  const layer = await makeLayer([file('data/random.bin', pseudoRandom(seed, size))], 'none');
  const parts = dockerArchiveParts(
    [{ repoTags: [`big/${seed}:1`], platform: { os: 'linux', architecture: 'amd64' }, layers: [layer] }],
    { order: 'sorted' },
  );
  const p = freshPath(`${seed}.tar`);
  writeFileSync(p, await tarBuffer(parts.entries));
  return p;
}

describe('push to ECR (lading serve)', gate, () => {
  let srv: TestServer;
  let creds: string;
  let n = 0;
  const repo = (): string => `lading/ecr${++n}`;
  before(async () => {
    srv = await startTestServer();
    const c = await registryCreds(srv.ecr);
    creds = `${c.username}:${c.password}`;
  });
  after(async () => {
    await srv.stop();
  });

  const host = (): string => new URL(srv.url).host;

  // Asynchronous: the server skopeo talks to runs in this process.
  async function skopeo(args: string[]): Promise<Buffer> {
    const { stdout } = await execFileAsync('skopeo', args, { encoding: 'buffer', maxBuffer: 1 << 28, timeout: 60_000 });
    return stdout;
  }

  /** skopeo's view through /v2/: the bytes served hash to `digest`, and every blob is fetched and verified. */
  async function verify(repository: string, digest: string): Promise<void> {
    const raw = await skopeo([
      'inspect',
      '--tls-verify=false',
      '--creds',
      creds,
      '--raw',
      `docker://${host()}/${repository}@${digest}`,
    ]);
    assert.equal(
      `sha256:${createHash('sha256').update(raw).digest('hex')}`,
      digest,
      'digest of the manifest bytes served',
    );
    const out = mkdtempSync(join(tmp, 'skopeo-'));
    await skopeo([
      'copy',
      '--all',
      '--preserve-digests',
      '--src-tls-verify=false',
      '--src-creds',
      creds,
      `docker://${host()}/${repository}@${digest}`,
      `oci:${out}:x`,
    ]);
    rmSync(out, { recursive: true, force: true });
  }

  async function push(
    input: string | NodeJS.ReadableStream,
    repository: string,
    transport: Transport,
    opts: CopyOptions = {},
    dest: Partial<DestinationOptions> = {},
  ) {
    const { destination, tags } = await openDestination(`${HOST}/${repository}`, {
      endpointUrl: srv.url,
      transport,
      createRepository: true,
      env: process.env,
      ...dest,
    });
    try {
      return await copyImage(input, destination, { cache: null, ...opts, tags: [...tags, ...(opts.tags ?? [])] });
    } finally {
      await destination.close();
    }
  }

  async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(args, {
      stdout: (s) => out.push(s),
      stderr: (s) => err.push(s),
      env: { ...process.env, XDG_CACHE_HOME: join(tmp, 'xdg') },
    });
    return { code, out: out.join('\n'), err: err.join('\n') };
  }

  for (const transport of TRANSPORTS) {
    describe(`--transport ${transport}`, () => {
      for (const [name, build] of FORMAT_BUILDERS) {
        it(`${name}: pushed and verified by skopeo`, async () => {
          const f = await build();
          for (const [i, img] of f.expected.images.entries()) {
            if (f.expected.images.length > 1 && img.names.length === 0) continue;
            const r = repo();
            const opts: CopyOptions = {
              tags: [`t${i}`],
              platforms: pushablePlatforms(img),
              pushForeignLayers: true,
              image: f.expected.images.length > 1 ? img.names[0] : undefined,
            };
            let res;
            try {
              res = await push(f.path, r, transport, opts);
            } catch (e) {
              // ECR refuses an index that lists an artifact blob (not a manifest): lading
              // says so, names the remedy, and writes no tag.
              assert.ok(
                isLadingError(e) && /which .* refused$/.test(e.message) && e.remedy === 'choose-platforms',
                String(e),
              );
              // No catch: a repository without images answers an empty list, any error is a failure.
              const d = await srv.ecr.send(new DescribeImagesCommand({ repositoryName: r }));
              assert.ok(!(d.imageDetails ?? []).some((x) => x.imageTags?.length), 'no tag written');
              const plats = availablePlatforms(img);
              res = await push(f.path, r, transport, { ...opts, platforms: plats });
            }
            await verify(r, res.digest!);
            const got = await srv.ecr.send(
              new BatchGetImageCommand({ repositoryName: r, imageIds: [{ imageTag: `t${i}` }] }),
            );
            assert.equal(got.images?.[0]?.imageId?.imageDigest, res.digest, 'the tag points at the pushed digest');
          }
        });
      }

      it('a 23 MiB layer of random data goes in parts of at most 10 MiB, all consecutive', async () => {
        const archive = await randomLayerArchive(23 * 1024 * 1024, `parts-${transport}`);
        const r = repo();
        srv.resetCalls();
        const res = await push(archive, r, transport, { tags: ['big'], compress: 'gzip' });
        if (transport === 'ecr-api') {
          // 23 MiB of incompressible data: 3 parts for the layer, 1 for the config.
          assert.ok((srv.calls.UploadLayerPart ?? 0) >= 4, JSON.stringify(srv.calls));
          assert.equal(srv.calls.CompleteLayerUpload, 2);
        } else {
          assert.equal(srv.calls.InitiateLayerUpload ?? 0, 0, JSON.stringify(srv.calls));
        }
        assert.equal(res.blobs.uploaded, 2);
        assert.ok(res.blobs.bytesUploaded > 23 * 1024 * 1024);
        await verify(r, res.digest!);
      });

      if (transport === 'ecr-api') {
        it(
          'a part refused mid-blob, twice: the blob restarts, and the part bodies it held are not lost to later uploads',
          { timeout: 60_000 },
          async () => {
            // 33 MiB: 4 parts, the next one filling while the refused one is in flight. Two part
            // bodies are shared by all blobs: a body dropped on each failure would stall the third try.
            const archive = await randomLayerArchive(33 * 1024 * 1024, 'part-refused');
            const r = repo();
            srv.faults.clear();
            srv.faults.add({
              op: 'UploadLayerPart',
              kind: 'error',
              error: 'InvalidLayerPartException',
              status: 400,
              after: 2,
              times: 2,
            });
            let res;
            try {
              res = await push(archive, r, transport, { tags: ['big'], compress: 'none' });
            } finally {
              srv.faults.clear();
            }
            assert.equal(res.blobs.uploaded, 2);
            await verify(r, res.digest!);
          },
        );
      }

      it('re-push: nothing uploaded, checked in one batch', async () => {
        const f = await FORMAT_BUILDERS[0]![1]();
        const image = f.expected.images[0]!.names[0]!;
        const r = repo();
        const first = await push(f.path, r, transport, { image, tags: ['v1'], compress: 'none' });
        srv.resetCalls();
        const again = await push(f.path, r, transport, { image, tags: ['v1'], compress: 'none' });
        assert.equal(again.digest, first.digest);
        assert.equal(again.blobs.uploaded, 0);
        assert.equal(again.blobs.bytesUploaded, 0);
        const calls = srv.calls;
        for (const op of [
          'InitiateLayerUpload',
          'UploadLayerPart',
          'CompleteLayerUpload',
          'POST upload',
          'PATCH upload',
          'PUT upload',
        ]) {
          assert.equal(calls[op] ?? 0, 0, `${op}: ${JSON.stringify(calls)}`);
        }
        if (transport === 'ecr-api')
          assert.equal(
            calls.BatchCheckLayerAvailability,
            1,
            `one batched availability check: ${JSON.stringify(calls)}`,
          );
      });

      it('throttling, server errors and dropped connections are retried; the push completes', async () => {
        const f = await FORMAT_BUILDERS[0]![1]();
        const image = f.expected.images[0]!.names[0]!;
        const r = repo();
        srv.faults.clear();
        if (transport === 'ecr-api') {
          srv.faults.add({ op: 'BatchCheckLayerAvailability', kind: 'throttle', times: 1 });
          srv.faults.add({ op: 'UploadLayerPart', kind: 'drop-connection', after: 1, times: 1 });
          srv.faults.add({ op: 'CompleteLayerUpload', kind: 'server-error', times: 1 });
          srv.faults.add({ op: 'PutImage', kind: 'throttle', times: 1 });
        } else {
          srv.faults.add({ op: 'HEAD blob', kind: 'server-error', times: 1 });
          srv.faults.add({ op: 'PUT upload', kind: 'drop-connection', times: 1 });
          srv.faults.add({ op: 'PUT manifest', kind: 'throttle', times: 1 });
        }
        let res;
        try {
          res = await push(f.path, r, transport, { image, tags: ['v1'] });
        } finally {
          srv.faults.clear();
        }
        await verify(r, res.digest!);
      });

      it('an immutable tag on another image is a clear CONFLICT naming the tag; the same image again is fine', async () => {
        const r = repo();
        await srv.ecr.send(new CreateRepositoryCommand({ repositoryName: r, imageTagMutability: 'IMMUTABLE' }));
        const a = await FORMAT_BUILDERS[0]![1]();
        const b = await FORMAT_BUILDERS[8]![1]();
        const first = await push(a.path, r, transport, { image: a.expected.images[0]!.names[0]!, tags: ['v1'] });
        await push(a.path, r, transport, { image: a.expected.images[0]!.names[0]!, tags: ['v1'] });
        await assert.rejects(push(b.path, r, transport, { tags: ['v1'] }), (e) => {
          assert.ok(isLadingError(e), String(e));
          assert.equal(e.code, 'CONFLICT', e.message);
          assert.match(e.message, /v1/);
          assert.match(e.message, /immutable/i);
          return true;
        });
        const got = await srv.ecr.send(new BatchGetImageCommand({ repositoryName: r, imageIds: [{ imageTag: 'v1' }] }));
        assert.equal(got.images?.[0]?.imageId?.imageDigest, first.digest, 'the tag still points at the first image');
      });

      it('a missing repository without --create-repository: NOT_FOUND with the fix, nothing uploaded', async () => {
        const f = await FORMAT_BUILDERS[0]![1]();
        srv.resetCalls();
        await assert.rejects(
          push(
            f.path,
            'lading/absent',
            transport,
            { image: f.expected.images[0]!.names[0]!, tags: ['v1'] },
            { createRepository: false },
          ),
          (e) => {
            assert.ok(isLadingError(e), String(e));
            assert.equal(e.code, 'NOT_FOUND');
            assert.match(e.message, /--create-repository/);
            return true;
          },
        );
        assert.equal(
          (srv.calls.InitiateLayerUpload ?? 0) + (srv.calls['POST upload'] ?? 0),
          0,
          JSON.stringify(srv.calls),
        );
      });

      it('--compress none|gzip|zstd and several tags (one PutImage per tag)', async () => {
        const f = await FORMAT_BUILDERS[0]![1]();
        const image = f.expected.images[0]!.names[0]!;
        for (const compress of ['none', 'gzip', 'zstd'] as const) {
          const r = repo();
          srv.resetCalls();
          const res = await push(f.path, r, transport, { image, tags: ['a', 'b', 'c'], compress });
          if (transport === 'ecr-api') assert.equal(srv.calls.PutImage, 3, JSON.stringify(srv.calls));
          await verify(r, res.digest!);
          const d = await srv.ecr.send(new DescribeImagesCommand({ repositoryName: r }));
          assert.deepEqual(d.imageDetails?.[0]?.imageTags?.slice().sort(), ['a', 'b', 'c']);
          const raw = JSON.parse(
            (
              await skopeo(['inspect', '--tls-verify=false', '--creds', creds, '--raw', `docker://${host()}/${r}:a`])
            ).toString(),
          ) as { layers: { mediaType: string }[] };
          const want = compress === 'none' ? /\.tar$/ : compress === 'gzip' ? /gzip$/ : /zstd$/;
          for (const l of raw.layers) assert.match(l.mediaType, want);
        }
      });

      it('standard input (one pass) gives the same image as the file', async () => {
        const f = await FORMAT_BUILDERS[0]![1]();
        const image = f.expected.images[0]!.names[0]!;
        const a = await push(f.path, repo(), transport, { image, tags: ['x'] });
        const r = repo();
        const b = await push(createReadStream(f.path), r, transport, { image, tags: ['x'] });
        assert.equal(b.digest, a.digest);
        await verify(r, b.digest!);
      });
    });
  }

  it(
    'multi-platform: all (index digest preserved, children before the index), one, several',
    realToolsGate(),
    async () => {
      const a = await realToolArchives();
      const layout = a.buildahIndexLayout;
      const stored = `sha256:${createHash('sha256')
        .update(await skopeo(['inspect', '--raw', `oci:${layout}:list`]))
        .digest('hex')}`;
      for (const transport of TRANSPORTS) {
        const r = repo();
        const all = await push(layout, r, transport, { tags: ['all'], compress: 'none' });
        assert.equal(all.digest, stored, 'the stored index is pushed byte for byte');
        assert.equal(all.manifests.length, 2);
        await verify(r, all.digest!);
        const plats = all.manifests.map((m) => m.platform!);
        const one = await push(layout, r, transport, { tags: ['one'], platforms: [plats[1]!], compress: 'none' });
        assert.match(one.mediaType, /manifest/);
        assert.equal(one.blobs.uploaded, 0, 'blobs shared with the first push are skipped');
        await verify(r, one.digest!);
        const two = await push(layout, r, transport, { tags: ['two'], platforms: plats, compress: 'none' });
        assert.match(two.mediaType, /index/);
        await verify(r, two.digest!);
      }
    },
  );

  it('a zero-byte blob takes the registry endpoint (the layer API refuses empty uploads)', async () => {
    const emptyDigest = `sha256:${createHash('sha256').update(Buffer.alloc(0)).digest('hex')}` as Digest;
    // The destination-level path: an empty blob handed to the native destination.
    const { destination } = await openDestination(`${HOST}/lading/empty`, {
      endpointUrl: srv.url,
      createRepository: true,
      env: process.env,
    });
    try {
      srv.resetCalls();
      const got = await destination.putBlob(
        { digest: emptyDigest, size: 0, open: () => Promise.resolve(Readable.from([])) },
        {},
      );
      assert.equal(got.size, 0);
      assert.equal(srv.calls.InitiateLayerUpload ?? 0, 0, JSON.stringify(srv.calls));
      assert.equal(srv.calls.GetAuthorizationToken, 1);
      assert.equal(await destination.hasBlob(emptyDigest), true);
    } finally {
      await destination.close();
    }
  });

  it('CLI: --transport registry --create-repository creates the repository; --json; exit codes', async () => {
    const archive = join(tmp, 'cli.tar');
    writeFileSync(archive, sampleDockerArchive('cli:1'));
    const base = ['push', archive, '--endpoint-url', srv.url, '--quiet'];
    const missing = await cli([
      ...base.slice(0, 2),
      `${HOST}/lading/cli-absent:v1`,
      ...base.slice(2),
      '--transport',
      'registry',
      '--json',
    ]);
    assert.equal(missing.code, 1, missing.err);
    assert.equal((JSON.parse(missing.out) as { error: { code: string } }).error.code, 'NOT_FOUND');
    assert.match(missing.err, /^lading: .*--create-repository/m);
    assert.doesNotMatch(missing.err, /\n\s+at /, 'no stack trace');

    const made = await cli([
      ...base.slice(0, 2),
      `${HOST}/lading/cli-made:v1`,
      ...base.slice(2),
      '--transport',
      'registry',
      '--create-repository',
      '--image-tag-mutability',
      'IMMUTABLE',
      '--json',
    ]);
    assert.equal(made.code, 0, made.err);
    const doc = JSON.parse(made.out) as {
      digest: string;
      reference: string;
      tags: string[];
      blobs: { uploaded: number };
    };
    assert.equal(doc.reference, `${HOST}/lading/cli-made@${doc.digest}`);
    assert.deepEqual(doc.tags, ['v1']);
    assert.ok(doc.blobs.uploaded >= 2);
    await verify('lading/cli-made', doc.digest);

    const usage = await cli([
      ...base.slice(0, 2),
      `${HOST}/lading/x:v1`,
      ...base.slice(2),
      '--transport',
      'carrier-pigeon',
    ]);
    assert.equal(usage.code, 2, usage.err);
  });
});
