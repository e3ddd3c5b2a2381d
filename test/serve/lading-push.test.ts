/**
 * lading itself against lading serve: `lading push` with --endpoint-url through the native
 * ECR API (and a re-push that uploads nothing), and through the registry transport
 * (GetAuthorizationToken -> /v2/). The emulator's first user.
 */
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BatchGetImageCommand, CreateRepositoryCommand, DescribeImagesCommand } from '@aws-sdk/client-ecr';
import { main } from '../../src/cli/main';
import { sampleDockerArchive } from '../../src/sample';
import { SERVE_AWS_ENV, startTestServer, tempDir, type TestServer } from './helpers';

// The SDK's default credential chain reads the environment of this test process only.
Object.assign(process.env, SERVE_AWS_ENV);
process.env.AWS_EC2_METADATA_DISABLED = 'true';
delete process.env.AWS_PROFILE;

const HOST = '000000000000.dkr.ecr.us-east-1.amazonaws.com';

describe('lading push to lading serve', () => {
  let srv: TestServer;
  let work: string;
  let archive: string;
  before(async () => {
    srv = await startTestServer();
    work = await tempDir('lading-serve-push-');
    archive = join(work, 'sample.tar');
    await writeFile(archive, sampleDockerArchive('sample:1'));
  });
  after(async () => {
    await srv.stop();
    await rm(work, { recursive: true, force: true });
  });

  async function push(dest: string, extra: string[] = []): Promise<{ code: number; out: string; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(['push', archive, dest, '--endpoint-url', srv.url, '--quiet', ...extra], {
      stdout: (s) => out.push(s),
      stderr: (s) => err.push(s),
      // The compressed-digest cache (what lets a re-push skip compressing) stays in the temp dir.
      env: { ...process.env, XDG_CACHE_HOME: join(work, 'cache') },
    });
    return { code, out: out.join('\n'), err: err.join('\n') };
  }

  test('native API: push with --create-repository, then a re-push makes no upload calls', async () => {
    srv.resetCalls();
    const first = await push(`${HOST}/demo/app:v1`, ['--create-repository', '--image-tag-mutability', 'IMMUTABLE']);
    assert.equal(first.code, 0, first.err);
    assert.equal(srv.calls.CreateRepository, 1);
    assert.ok((srv.calls.UploadLayerPart ?? 0) >= 3, JSON.stringify(srv.calls));
    const pinned = /@(sha256:[0-9a-f]{64})/.exec(first.out)?.[1];
    assert.ok(pinned, first.out);
    const got = await srv.ecr.send(
      new BatchGetImageCommand({ repositoryName: 'demo/app', imageIds: [{ imageTag: 'v1' }] }),
    );
    assert.equal(got.images?.[0]?.imageId?.imageDigest, pinned);

    srv.resetCalls();
    const again = await push(`${HOST}/demo/app:v1`, ['--create-repository']);
    assert.equal(again.code, 0, again.err);
    assert.equal(srv.calls.InitiateLayerUpload ?? 0, 0, JSON.stringify(srv.calls));
    assert.equal(srv.calls.UploadLayerPart ?? 0, 0);
  });

  test('native API with faults: throttled and dropped calls are retried', async () => {
    srv.faults.clear();
    srv.faults.add({ op: 'UploadLayerPart', kind: 'throttle', times: 1 });
    srv.faults.add({ op: 'CompleteLayerUpload', kind: 'drop-connection', times: 1 });
    srv.faults.add({ op: 'PutImage', kind: 'server-error', times: 1 });
    const r = await push(`${HOST}/demo/faulty:v1`, ['--create-repository']);
    srv.faults.clear();
    assert.equal(r.code, 0, r.err);
    const d = await srv.ecr.send(new DescribeImagesCommand({ repositoryName: 'demo/faulty' }));
    assert.deepEqual(d.imageDetails?.[0]?.imageTags, ['v1']);
  });

  test('registry transport: GetAuthorizationToken, then /v2/ with Basic auth', async () => {
    // Created here: lading's registry transport does not act on --create-repository
    // (at the time of writing), and ECR's registry API cannot create repositories.
    await srv.ecr.send(new CreateRepositoryCommand({ repositoryName: 'demo/via-registry' }));
    srv.resetCalls();
    const r = await push(`${HOST}/demo/via-registry:v1`, ['--transport', 'registry']);
    assert.equal(r.code, 0, r.err);
    assert.equal(srv.calls.GetAuthorizationToken, 1);
    assert.ok((srv.calls['PUT manifest'] ?? 0) >= 1, JSON.stringify(srv.calls));
    assert.equal(srv.calls.InitiateLayerUpload ?? 0, 0);
    const d = await srv.ecr.send(new DescribeImagesCommand({ repositoryName: 'demo/via-registry' }));
    assert.deepEqual(d.imageDetails?.[0]?.imageTags, ['v1']);
  });
});
