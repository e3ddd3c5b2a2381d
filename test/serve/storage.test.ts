/**
 * lading serve's storage: what survives a restart, OCI layouts already in the data
 * directory, one server per directory, no temp files left behind, idle uploads expiring.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  BatchGetImageCommand,
  CompleteLayerUploadCommand,
  DescribeImagesCommand,
  DescribeRepositoriesCommand,
  InitiateLayerUploadCommand,
  PutImageCommand,
  UploadLayerPartCommand,
} from '@aws-sdk/client-ecr';
import { startServer } from '../../src/serve';
import {
  createRepo,
  http,
  OCI_MANIFEST,
  pushImage,
  registryCreds,
  rejectsWith,
  smallImage,
  startTestServer,
  tempDir,
} from './helpers';

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else out.push(p);
  }
  return out;
}

describe('lading serve: storage', () => {
  test('a restart on the same data dir keeps repositories, settings, images, tags and push times', async () => {
    const dataDir = await tempDir();
    try {
      const a = await startTestServer({ dataDir });
      const img = smallImage('persist');
      const other = smallImage('persist2');
      await createRepo(a.ecr, 'keep/me', 'IMMUTABLE');
      await pushImage(a.ecr, 'keep/me', img, 'v1');
      await pushImage(a.ecr, 'keep/me', other);
      // Nested repositories: one's layout directory inside the other's.
      await createRepo(a.ecr, 'keep');
      await pushImage(a.ecr, 'keep', other, 'outer');
      const before = await a.ecr.send(new DescribeImagesCommand({ repositoryName: 'keep/me' }));
      await a.stop();
      // Nothing temporary is left: only the layout, the settings, and an empty scratch dir.
      const files = (await walk(dataDir)).map((f) => f.slice(dataDir.length + 1));
      assert.ok(
        files.every((f) => !/\.tmp-/.test(f)),
        files.join('\n'),
      );
      assert.deepEqual(files.filter((f) => !f.includes('blobs/')).sort(), [
        'keep/.repository.json',
        'keep/index.json',
        'keep/me/.repository.json',
        'keep/me/index.json',
        'keep/me/oci-layout',
        'keep/oci-layout',
      ]);

      const b = await startTestServer({ dataDir });
      try {
        const repo = await b.ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ['keep/me', 'keep'] }));
        assert.deepEqual(
          repo.repositories?.map((r) => r.imageTagMutability),
          ['IMMUTABLE', 'MUTABLE'],
        );
        const outer = await b.ecr.send(
          new BatchGetImageCommand({ repositoryName: 'keep', imageIds: [{ imageTag: 'outer' }] }),
        );
        assert.equal(outer.images?.[0]?.imageId?.imageDigest, other.manifest.digest);
        const after = await b.ecr.send(new DescribeImagesCommand({ repositoryName: 'keep/me' }));
        assert.deepEqual(
          after.imageDetails?.map((d) => [
            d.imageDigest,
            d.imageTags,
            d.imageSizeInBytes,
            Math.round(d.imagePushedAt!.getTime() / 1000),
          ]),
          before.imageDetails?.map((d) => [
            d.imageDigest,
            d.imageTags,
            d.imageSizeInBytes,
            Math.round(d.imagePushedAt!.getTime() / 1000),
          ]),
        );
        const got = await b.ecr.send(
          new BatchGetImageCommand({ repositoryName: 'keep/me', imageIds: [{ imageTag: 'v1' }] }),
        );
        assert.equal(got.images?.[0]?.imageManifest, img.manifest.bytes.toString());
        await rejectsWith(
          b.ecr.send(
            new PutImageCommand({
              repositoryName: 'keep/me',
              imageManifest: other.manifest.bytes.toString(),
              imageTag: 'v1',
            }),
          ),
          'ImageTagAlreadyExistsException',
        );
      } finally {
        await b.stop();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  test('an OCI layout already in the data dir is served as a mutable repository', async () => {
    const dataDir = await tempDir();
    try {
      const img = smallImage('imported');
      const dir = join(dataDir, 'imported', 'app');
      await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
      for (const b of [...img.layers, img.config, img.manifest])
        await writeFile(join(dir, 'blobs', 'sha256', b.digest.slice(7)), b.bytes);
      await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
      await writeFile(
        join(dir, 'index.json'),
        JSON.stringify({
          schemaVersion: 2,
          manifests: [
            {
              mediaType: OCI_MANIFEST,
              digest: img.manifest.digest,
              size: img.manifest.size,
              annotations: { 'org.opencontainers.image.ref.name': 'old', 'org.example.note': 'kept' },
            },
          ],
        }),
      );
      const srv = await startTestServer({ dataDir });
      try {
        const c = await registryCreds(srv.ecr);
        const m = await http(`${srv.url}/v2/imported/app/manifests/old`, { headers: { authorization: c.header } });
        assert.equal(m.status, 200);
        assert.equal(m.headers['docker-content-digest'], img.manifest.digest);
        await srv.ecr.send(
          new PutImageCommand({
            repositoryName: 'imported/app',
            imageManifest: img.manifest.bytes.toString(),
            imageTag: 'new',
          }),
        );
        const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as {
          manifests: { annotations: Record<string, string> }[];
        };
        assert.deepEqual(
          index.manifests.map((e) => e.annotations),
          [
            { 'org.example.note': 'kept', 'org.opencontainers.image.ref.name': 'old' },
            { 'org.example.note': 'kept', 'org.opencontainers.image.ref.name': 'new' },
          ],
        );
      } finally {
        await srv.stop();
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  test('one server per data dir; a stale lock is taken over', async () => {
    const dataDir = await tempDir();
    try {
      const a = await startServer({ dataDir });
      await assert.rejects(startServer({ dataDir }), { code: 'CONFLICT' });
      await a.close();
      // A lock left by a process that is gone.
      await writeFile(join(dataDir, '.lock'), '999999999\n');
      const b = await startServer({ dataDir });
      await b.close();
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  test('idle upload sessions expire with their temp files; close() drops the open ones', async () => {
    const srv = await startTestServer({ uploadTtlMs: 100 });
    try {
      await createRepo(srv.ecr, 'idle');
      const { uploadId } = await srv.ecr.send(new InitiateLayerUploadCommand({ repositoryName: 'idle' }));
      await srv.ecr.send(
        new UploadLayerPartCommand({
          repositoryName: 'idle',
          uploadId: uploadId!,
          partFirstByte: 0,
          partLastByte: 2,
          layerPartBlob: Buffer.from('abc'),
        }),
      );
      assert.equal((await readdir(join(srv.dataDir, '.uploads'))).length, 1);
      await new Promise((r) => setTimeout(r, 1300));
      assert.equal(srv.openUploads, 0);
      assert.deepEqual(await readdir(join(srv.dataDir, '.uploads')), []);
      await rejectsWith(
        srv.ecr.send(
          new CompleteLayerUploadCommand({
            repositoryName: 'idle',
            uploadId: uploadId!,
            layerDigests: ['sha256:' + '0'.repeat(64)],
          }),
        ),
        'UploadNotFoundException',
      );
      await srv.ecr.send(new InitiateLayerUploadCommand({ repositoryName: 'idle' }));
      assert.equal(srv.openUploads, 1);
    } finally {
      await srv.stop();
    }
  });
});
