/**
 * lading serve's ECR API, driven by the real @aws-sdk/client-ecr over HTTP: the layer
 * upload dance, every documented error of the layer and image calls, tag mutability,
 * indexes, reads (BatchGetImage, DescribeImages, ListImages) and repositories.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  BatchCheckLayerAvailabilityCommand,
  BatchDeleteImageCommand,
  BatchGetImageCommand,
  CompleteLayerUploadCommand,
  CreateRepositoryCommand,
  DeleteRepositoryCommand,
  DescribeImagesCommand,
  DescribeRepositoriesCommand,
  GetAuthorizationTokenCommand,
  InitiateLayerUploadCommand,
  ListImagesCommand,
  PutImageCommand,
  PutImageTagMutabilityCommand,
  UploadLayerPartCommand,
  type ECRClient,
} from '@aws-sdk/client-ecr';
import { digestOf } from '../../src/image/digest';
import {
  blob,
  configFor,
  createRepo,
  gzipLayer,
  http,
  indexOf,
  manifestOf,
  MiB,
  OCI_MANIFEST,
  pushImage,
  randomBytesSeeded,
  rejectsWith,
  sdkSignedRequest,
  smallImage,
  startTestServer,
  uploadBlob,
  type TestServer,
} from './helpers';

describe('lading serve: ECR API through @aws-sdk/client-ecr', () => {
  let srv: TestServer;
  let ecr: ECRClient;
  before(async () => {
    srv = await startTestServer();
    ecr = srv.ecr;
  });
  after(() => srv.stop());

  test('23 MiB blob in three 10 MiB parts: stored whole, hashed, listed as available', async () => {
    await createRepo(ecr, 'big/blob');
    const b = blob(randomBytesSeeded(23 * MiB, 7));
    const init = await ecr.send(new InitiateLayerUploadCommand({ repositoryName: 'big/blob' }));
    assert.equal(init.partSize, 10485760);
    assert.match(init.uploadId!, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const ends: number[] = [];
    for (let off = 0; off < b.size; off += init.partSize!) {
      const part = b.bytes.subarray(off, Math.min(b.size, off + init.partSize!));
      const out = await ecr.send(
        new UploadLayerPartCommand({
          repositoryName: 'big/blob',
          uploadId: init.uploadId!,
          partFirstByte: off,
          partLastByte: off + part.length - 1,
          layerPartBlob: part,
        }),
      );
      assert.equal(out.uploadId, init.uploadId);
      assert.equal(out.repositoryName, 'big/blob');
      assert.equal(out.registryId, srv.registryId);
      ends.push(out.lastByteReceived!);
    }
    assert.deepEqual(ends, [10 * MiB - 1, 20 * MiB - 1, 23 * MiB - 1]);
    const done = await ecr.send(
      new CompleteLayerUploadCommand({
        repositoryName: 'big/blob',
        uploadId: init.uploadId!,
        layerDigests: [b.digest],
      }),
    );
    assert.equal(done.layerDigest, b.digest);
    const stored = await readFile(join(srv.dataDir, 'big', 'blob', 'blobs', 'sha256', b.digest.slice(7)));
    assert.equal(stored.length, b.size);
    assert.equal(digestOf(stored), b.digest);
    const check = await ecr.send(
      new BatchCheckLayerAvailabilityCommand({ repositoryName: 'big/blob', layerDigests: [b.digest] }),
    );
    assert.deepEqual(
      check.layers?.map((l) => [l.layerDigest, l.layerAvailability, l.layerSize]),
      [[b.digest, 'AVAILABLE', b.size]],
    );
    assert.deepEqual(check.failures, []);
    assert.equal(srv.openUploads, 0);
    // The same content again: the upload goes through, completion says it is already there.
    const again = await ecr.send(new InitiateLayerUploadCommand({ repositoryName: 'big/blob' }));
    for (let off = 0; off < b.size; off += 10 * MiB) {
      const part = b.bytes.subarray(off, Math.min(b.size, off + 10 * MiB));
      await ecr.send(
        new UploadLayerPartCommand({
          repositoryName: 'big/blob',
          uploadId: again.uploadId!,
          partFirstByte: off,
          partLastByte: off + part.length - 1,
          layerPartBlob: part,
        }),
      );
    }
    await rejectsWith(
      ecr.send(
        new CompleteLayerUploadCommand({
          repositoryName: 'big/blob',
          uploadId: again.uploadId!,
          layerDigests: [b.digest],
        }),
      ),
      'LayerAlreadyExistsException',
    );
    assert.equal(srv.openUploads, 0);
  });

  test('BatchCheckLayerAvailability: available, missing and malformed digests; 1..100 digests', async () => {
    await createRepo(ecr, 'check');
    const present = blob('present layer');
    await uploadBlob(ecr, 'check', present);
    const missing = digestOf('missing');
    const out = await ecr.send(
      new BatchCheckLayerAvailabilityCommand({
        repositoryName: 'check',
        layerDigests: [present.digest, missing, 'sha256:nothex', 'md5:abc'],
      }),
    );
    assert.deepEqual(
      out.layers?.map((l) => l.layerDigest),
      [present.digest],
    );
    assert.deepEqual(
      out.failures?.map((f) => [f.layerDigest, f.failureCode]),
      [
        [missing, 'MissingLayerDigest'],
        ['sha256:nothex', 'InvalidLayerDigest'],
        ['md5:abc', 'InvalidLayerDigest'],
      ],
    );
    await rejectsWith(
      ecr.send(new BatchCheckLayerAvailabilityCommand({ repositoryName: 'check', layerDigests: [] })),
      'InvalidParameterException',
    );
    const many = Array.from({ length: 101 }, (_, i) => digestOf(String(i)));
    await rejectsWith(
      ecr.send(new BatchCheckLayerAvailabilityCommand({ repositoryName: 'check', layerDigests: many })),
      'InvalidParameterException',
    );
    // Blobs are per repository, as in ECR.
    await createRepo(ecr, 'check-other');
    const other = await ecr.send(
      new BatchCheckLayerAvailabilityCommand({ repositoryName: 'check-other', layerDigests: [present.digest] }),
    );
    assert.equal(other.failures?.[0]?.failureCode, 'MissingLayerDigest');
  });

  test('UploadLayerPart: non-consecutive parts and wrong lengths give InvalidLayerPartException with lastValidByteReceived', async () => {
    await createRepo(ecr, 'parts');
    const { uploadId } = await ecr.send(new InitiateLayerUploadCommand({ repositoryName: 'parts' }));
    const send = (first: number, last: number, bytes: Buffer) =>
      ecr.send(
        new UploadLayerPartCommand({
          repositoryName: 'parts',
          uploadId: uploadId!,
          partFirstByte: first,
          partLastByte: last,
          layerPartBlob: bytes,
        }),
      );
    let e = await rejectsWith(send(5, 9, Buffer.alloc(5)), 'InvalidLayerPartException');
    assert.equal(e.lastValidByteReceived, -1);
    assert.equal(e.$metadata?.httpStatusCode, 400);
    const part1 = randomBytesSeeded(5 * MiB, 3);
    await send(0, part1.length - 1, part1);
    // A gap, an overlap (a replayed part), and a length that does not match the range.
    e = await rejectsWith(send(part1.length + 1, part1.length + 10, Buffer.alloc(10)), 'InvalidLayerPartException');
    assert.equal(e.lastValidByteReceived, part1.length - 1);
    assert.equal(e.uploadId, uploadId);
    e = await rejectsWith(send(0, part1.length - 1, part1), 'InvalidLayerPartException');
    assert.equal(e.lastValidByteReceived, part1.length - 1);
    await rejectsWith(send(part1.length, part1.length + 99, Buffer.alloc(50)), 'InvalidLayerPartException');
    // Parts over 10 MiB are refused (ECR quota).
    await rejectsWith(
      send(part1.length, part1.length + 10 * MiB, Buffer.alloc(10 * MiB + 1)),
      'InvalidLayerPartException',
    );
    // The upload is still usable after the refusals.
    const part2 = Buffer.from('the end');
    const ok = await send(part1.length, part1.length + part2.length - 1, part2);
    assert.equal(ok.lastByteReceived, part1.length + part2.length - 1);
    const whole = Buffer.concat([part1, part2]);
    const done = await ecr.send(
      new CompleteLayerUploadCommand({ repositoryName: 'parts', uploadId: uploadId!, layerDigests: [digestOf(whole)] }),
    );
    assert.equal(done.layerDigest, digestOf(whole));
  });

  test('CompleteLayerUpload: EmptyUpload, LayerPartTooSmall, InvalidLayer, UploadNotFound', async () => {
    await createRepo(ecr, 'complete');
    const repositoryName = 'complete';
    const init = () => ecr.send(new InitiateLayerUploadCommand({ repositoryName })).then((o) => o.uploadId!);
    const part = (uploadId: string, first: number, bytes: Buffer) =>
      ecr.send(
        new UploadLayerPartCommand({
          repositoryName,
          uploadId,
          partFirstByte: first,
          partLastByte: first + bytes.length - 1,
          layerPartBlob: bytes,
        }),
      );
    const complete = (uploadId: string, digest: string) =>
      ecr.send(new CompleteLayerUploadCommand({ repositoryName, uploadId, layerDigests: [digest] }));

    const empty = await init();
    await rejectsWith(complete(empty, digestOf('')), 'EmptyUploadException');

    const small = await init();
    await part(small, 0, Buffer.alloc(1000, 1));
    await part(small, 1000, Buffer.alloc(1000, 2));
    const tooSmall = await rejectsWith(
      complete(small, digestOf(Buffer.concat([Buffer.alloc(1000, 1), Buffer.alloc(1000, 2)]))),
      'LayerPartTooSmallException',
    );
    assert.match(tooSmall.message, /5242880/);

    // A single small part is fine: only parts other than the last have a minimum.
    const single = await init();
    await part(single, 0, Buffer.from('tiny'));
    assert.equal((await complete(single, digestOf('tiny'))).layerDigest, digestOf('tiny'));

    const wrong = await init();
    await part(wrong, 0, Buffer.from('content'));
    await rejectsWith(complete(wrong, digestOf('other content')), 'InvalidLayerException');
    await rejectsWith(complete(wrong, digestOf('content')), 'UploadNotFoundException');

    await rejectsWith(complete('00000000-0000-4000-8000-000000000000', digestOf('x')), 'UploadNotFoundException');
    await rejectsWith(part('00000000-0000-4000-8000-000000000000', 0, Buffer.from('x')), 'UploadNotFoundException');
    // An upload belongs to its repository.
    await createRepo(ecr, 'complete-elsewhere');
    const mine = await init();
    await rejectsWith(
      ecr.send(
        new UploadLayerPartCommand({
          repositoryName: 'complete-elsewhere',
          uploadId: mine,
          partFirstByte: 0,
          partLastByte: 0,
          layerPartBlob: Buffer.from('x'),
        }),
      ),
      'UploadNotFoundException',
    );
    await rejectsWith(
      ecr.send(
        new CompleteLayerUploadCommand({
          repositoryName,
          uploadId: mine,
          layerDigests: [digestOf('a'), digestOf('b')],
        }),
      ),
      'InvalidParameterException',
    );
  });

  test('RepositoryNotFoundException from every call that names a repository', async () => {
    const repositoryName = 'does-not-exist';
    const calls: Promise<unknown>[] = [
      ecr.send(new BatchCheckLayerAvailabilityCommand({ repositoryName, layerDigests: [digestOf('x')] })),
      ecr.send(new InitiateLayerUploadCommand({ repositoryName })),
      ecr.send(
        new UploadLayerPartCommand({
          repositoryName,
          uploadId: 'u',
          partFirstByte: 0,
          partLastByte: 0,
          layerPartBlob: Buffer.from('x'),
        }),
      ),
      ecr.send(new CompleteLayerUploadCommand({ repositoryName, uploadId: 'u', layerDigests: [digestOf('x')] })),
      ecr.send(new PutImageCommand({ repositoryName, imageManifest: '{}' })),
      ecr.send(new BatchGetImageCommand({ repositoryName, imageIds: [{ imageTag: 'x' }] })),
      ecr.send(new DescribeImagesCommand({ repositoryName })),
      ecr.send(new ListImagesCommand({ repositoryName })),
      ecr.send(new DescribeRepositoriesCommand({ repositoryNames: [repositoryName] })),
      ecr.send(new BatchDeleteImageCommand({ repositoryName, imageIds: [{ imageTag: 'x' }] })),
      ecr.send(new DeleteRepositoryCommand({ repositoryName })),
    ];
    for (const c of calls) {
      const e = await rejectsWith(c, 'RepositoryNotFoundException');
      assert.match(e.message, /does-not-exist/);
    }
    // Another account's registry has none of ours.
    await createRepo(ecr, 'mine');
    await rejectsWith(
      ecr.send(new DescribeImagesCommand({ repositoryName: 'mine', registryId: '111122223333' })),
      'RepositoryNotFoundException',
    );
  });

  test('PutImage: the full image flow, then BatchGetImage returns exactly what was put', async () => {
    await createRepo(ecr, 'app');
    const img = smallImage('app');
    await pushImage(ecr, 'app', img);
    const put = await ecr.send(
      new PutImageCommand({
        repositoryName: 'app',
        imageManifest: img.manifest.bytes.toString('utf8'),
        imageTag: 'v1',
        imageDigest: img.manifest.digest,
      }),
    );
    assert.equal(put.image?.imageId?.imageDigest, img.manifest.digest);
    assert.equal(put.image?.imageId?.imageTag, 'v1');
    assert.equal(put.image?.imageManifestMediaType, OCI_MANIFEST);
    const got = await ecr.send(
      new BatchGetImageCommand({
        repositoryName: 'app',
        imageIds: [{ imageTag: 'v1' }, { imageDigest: img.manifest.digest }, { imageTag: 'nope' }, {}],
        acceptedMediaTypes: [OCI_MANIFEST],
      }),
    );
    assert.equal(got.images?.length, 2);
    for (const i of got.images ?? []) {
      assert.equal(i.imageManifest, img.manifest.bytes.toString('utf8'));
      assert.equal(i.imageId?.imageDigest, img.manifest.digest);
      assert.equal(i.imageManifestMediaType, OCI_MANIFEST);
    }
    assert.equal(got.images?.[0]?.imageId?.imageTag, 'v1');
    assert.deepEqual(
      got.failures?.map((f) => f.failureCode),
      ['ImageNotFound', 'MissingDigestAndTag'],
    );
    const mismatch = await ecr.send(
      new BatchGetImageCommand({
        repositoryName: 'app',
        imageIds: [{ imageTag: 'v1', imageDigest: digestOf('other') }],
      }),
    );
    assert.equal(mismatch.failures?.[0]?.failureCode, 'ImageTagDoesNotMatchDigest');
    // Stored as an OCI layout: the manifest blob and the index.json entry with the tag.
    const index = JSON.parse(await readFile(join(srv.dataDir, 'app', 'index.json'), 'utf8')) as {
      manifests: { digest: string; annotations?: Record<string, string> }[];
    };
    assert.deepEqual(
      index.manifests.map((m) => [m.digest, m.annotations?.['org.opencontainers.image.ref.name']]),
      [[img.manifest.digest, 'v1']],
    );
    assert.deepEqual(
      await readFile(join(srv.dataDir, 'app', 'blobs', 'sha256', img.manifest.digest.slice(7))),
      img.manifest.bytes,
    );
  });

  test('PutImage errors: digest mismatch, missing layers or config, missing media type, size limit, already exists', async () => {
    await createRepo(ecr, 'rules');
    const img = smallImage('rules');
    const put = (manifest: string, extra: Record<string, string> = {}) =>
      ecr.send(new PutImageCommand({ repositoryName: 'rules', imageManifest: manifest, ...extra }));
    // Nothing uploaded yet: config and layers are missing.
    const missing = await rejectsWith(put(img.manifest.bytes.toString()), 'LayersNotFoundException');
    assert.match(missing.message, new RegExp(img.config.digest));
    await uploadBlob(ecr, 'rules', img.layers[0]!);
    await uploadBlob(ecr, 'rules', img.layers[1]!);
    const noConfig = await rejectsWith(put(img.manifest.bytes.toString()), 'LayersNotFoundException');
    assert.match(noConfig.message, new RegExp(img.config.digest));
    assert.doesNotMatch(noConfig.message, new RegExp(img.layers[0]!.digest));
    await uploadBlob(ecr, 'rules', img.config);
    await rejectsWith(
      put(img.manifest.bytes.toString(), { imageDigest: digestOf('something else') }),
      'ImageDigestDoesNotMatchException',
    );
    // No mediaType in the manifest: imageManifestMediaType is required, and then accepted.
    const bare = manifestOf(img.config, img.layers, {}, false);
    await rejectsWith(put(bare.bytes.toString()), 'InvalidParameterException');
    const okBare = await put(bare.bytes.toString(), { imageManifestMediaType: OCI_MANIFEST, imageTag: 'bare' });
    assert.equal(okBare.image?.imageId?.imageDigest, bare.digest);
    await rejectsWith(
      put(img.manifest.bytes.toString(), {
        imageManifestMediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      }),
      'InvalidParameterException',
    );
    await rejectsWith(put('{not json'), 'InvalidParameterException');
    await rejectsWith(
      put(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [] })),
      'InvalidParameterException',
    );
    // Foreign layers need not be in the repository.
    const foreign = manifestOf(img.config, [], {
      layers: [
        {
          mediaType: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
          digest: digestOf('windows base'),
          size: 12,
          urls: ['https://example.com/base'],
        },
      ],
    });
    await put(foreign.bytes.toString(), { imageTag: 'foreign' });
    // 4194304 characters at most.
    const huge = JSON.stringify({
      ...(JSON.parse(img.manifest.bytes.toString()) as object),
      annotations: { pad: 'x'.repeat(4194304) },
    });
    await rejectsWith(put(huge), 'InvalidParameterException');
    // Same manifest + same tag, and an untagged re-put: ImageAlreadyExistsException; a new tag is fine.
    await put(img.manifest.bytes.toString(), { imageTag: 'v1' });
    await rejectsWith(put(img.manifest.bytes.toString(), { imageTag: 'v1' }), 'ImageAlreadyExistsException');
    await rejectsWith(put(img.manifest.bytes.toString()), 'ImageAlreadyExistsException');
    await put(img.manifest.bytes.toString(), { imageTag: 'v1-alias' });
    const d = await ecr.send(
      new DescribeImagesCommand({ repositoryName: 'rules', imageIds: [{ imageDigest: img.manifest.digest }] }),
    );
    assert.deepEqual(d.imageDetails?.[0]?.imageTags, ['v1', 'v1-alias']);
  });

  test('Docker schema 2 manifests and manifest lists keep their media types', async () => {
    await createRepo(ecr, 'docker-types');
    const layer = gzipLayer({ d: 'docker' });
    const config = configFor([layer]);
    for (const b of [layer, config]) await uploadBlob(ecr, 'docker-types', b);
    const DOCKER = 'application/vnd.docker.distribution.manifest.v2+json';
    const LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
    const m = blob(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: DOCKER,
        config: {
          mediaType: 'application/vnd.docker.container.image.v1+json',
          size: config.size,
          digest: config.digest,
        },
        layers: [
          { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.size, digest: layer.digest },
        ],
      }),
    );
    await ecr.send(
      new PutImageCommand({
        repositoryName: 'docker-types',
        imageManifest: m.bytes.toString(),
        imageManifestMediaType: DOCKER,
      }),
    );
    const list = blob(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: LIST,
        manifests: [
          { mediaType: DOCKER, size: m.size, digest: m.digest, platform: { os: 'linux', architecture: 'amd64' } },
        ],
      }),
    );
    await ecr.send(
      new PutImageCommand({ repositoryName: 'docker-types', imageManifest: list.bytes.toString(), imageTag: 'list' }),
    );
    const got = await ecr.send(
      new BatchGetImageCommand({
        repositoryName: 'docker-types',
        imageIds: [{ imageDigest: m.digest }, { imageTag: 'list' }],
      }),
    );
    assert.deepEqual(
      got.images?.map((i) => i.imageManifestMediaType),
      [DOCKER, LIST],
    );
    const details = await ecr.send(
      new DescribeImagesCommand({ repositoryName: 'docker-types', imageIds: [{ imageDigest: m.digest }] }),
    );
    assert.equal(details.imageDetails?.[0]?.artifactMediaType, 'application/vnd.docker.container.image.v1+json');
    // Schema 1 is refused (lading serve does not store it; ECR does).
    await rejectsWith(
      ecr.send(
        new PutImageCommand({
          repositoryName: 'docker-types',
          imageManifest: JSON.stringify({ schemaVersion: 1, name: 'x', tag: 'y', fsLayers: [] }),
          imageManifestMediaType: 'application/vnd.docker.distribution.manifest.v1+json',
        }),
      ),
      'InvalidParameterException',
    );
  });

  test('tag mutability: MUTABLE moves a tag (the old image stays, untagged); IMMUTABLE refuses', async () => {
    const a = smallImage('a');
    const b = smallImage('b');
    await createRepo(ecr, 'mutable', 'MUTABLE');
    await createRepo(ecr, 'immutable', 'IMMUTABLE');
    for (const repo of ['mutable', 'immutable']) {
      await pushImage(ecr, repo, a, 'latest');
      for (const l of [...b.layers, b.config]) await uploadBlob(ecr, repo, l);
    }
    await ecr.send(
      new PutImageCommand({
        repositoryName: 'mutable',
        imageManifest: b.manifest.bytes.toString(),
        imageTag: 'latest',
      }),
    );
    const listed = await ecr.send(new ListImagesCommand({ repositoryName: 'mutable' }));
    assert.deepEqual(
      new Set(listed.imageIds?.map((i) => `${i.imageDigest}|${i.imageTag ?? ''}`)),
      new Set([`${a.manifest.digest}|`, `${b.manifest.digest}|latest`]),
    );
    const untagged = await ecr.send(
      new ListImagesCommand({ repositoryName: 'mutable', filter: { tagStatus: 'UNTAGGED' } }),
    );
    assert.deepEqual(untagged.imageIds, [{ imageDigest: a.manifest.digest }]);

    const e = await rejectsWith(
      ecr.send(
        new PutImageCommand({
          repositoryName: 'immutable',
          imageManifest: b.manifest.bytes.toString(),
          imageTag: 'latest',
        }),
      ),
      'ImageTagAlreadyExistsException',
    );
    assert.match(e.message, /latest/);
    // The same image under the same tag is not a move: ImageAlreadyExists, not ImageTagAlreadyExists.
    await rejectsWith(
      ecr.send(
        new PutImageCommand({
          repositoryName: 'immutable',
          imageManifest: a.manifest.bytes.toString(),
          imageTag: 'latest',
        }),
      ),
      'ImageAlreadyExistsException',
    );
    // New tags are fine in an immutable repository.
    await ecr.send(
      new PutImageCommand({ repositoryName: 'immutable', imageManifest: b.manifest.bytes.toString(), imageTag: 'v2' }),
    );
    // IMMUTABLE_WITH_EXCLUSION: tags matching a filter stay mutable.
    await ecr.send(
      new PutImageTagMutabilityCommand({
        repositoryName: 'immutable',
        imageTagMutability: 'IMMUTABLE_WITH_EXCLUSION',
        imageTagMutabilityExclusionFilters: [{ filterType: 'WILDCARD', filter: 'lat*' }],
      }),
    );
    await ecr.send(
      new PutImageCommand({
        repositoryName: 'immutable',
        imageManifest: b.manifest.bytes.toString(),
        imageTag: 'latest',
      }),
    );
    await rejectsWith(
      ecr.send(
        new PutImageCommand({
          repositoryName: 'immutable',
          imageManifest: a.manifest.bytes.toString(),
          imageTag: 'v2',
        }),
      ),
      'ImageTagAlreadyExistsException',
    );
    const repo = await ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ['immutable'] }));
    assert.equal(repo.repositories?.[0]?.imageTagMutability, 'IMMUTABLE_WITH_EXCLUSION');
  });

  test('an index whose child is missing: ReferencedImagesNotFoundException; children first, then the index', async () => {
    await createRepo(ecr, 'multi');
    const amd = smallImage('multi', 'amd64');
    const arm = smallImage('multi', 'arm64');
    const index = indexOf([
      { manifest: amd.manifest, architecture: 'amd64' },
      { manifest: arm.manifest, architecture: 'arm64' },
    ]);
    await pushImage(ecr, 'multi', amd);
    const e = await rejectsWith(
      ecr.send(new PutImageCommand({ repositoryName: 'multi', imageManifest: index.bytes.toString(), imageTag: 'v1' })),
      'ReferencedImagesNotFoundException',
    );
    assert.match(e.message, new RegExp(arm.manifest.digest));
    assert.doesNotMatch(e.message, new RegExp(amd.manifest.digest));
    // A blob with the child's bytes is not an image: the child must be put.
    await uploadBlob(ecr, 'multi', arm.manifest);
    await rejectsWith(
      ecr.send(new PutImageCommand({ repositoryName: 'multi', imageManifest: index.bytes.toString(), imageTag: 'v1' })),
      'ReferencedImagesNotFoundException',
    );
    await pushImage(ecr, 'multi', arm);
    const put = await ecr.send(
      new PutImageCommand({ repositoryName: 'multi', imageManifest: index.bytes.toString(), imageTag: 'v1' }),
    );
    assert.equal(put.image?.imageManifestMediaType, 'application/vnd.oci.image.index.v1+json');
    const details = await ecr.send(
      new DescribeImagesCommand({ repositoryName: 'multi', imageIds: [{ imageTag: 'v1' }] }),
    );
    const sizeOf = (i: { layers: { size: number }[] }) => i.layers.reduce((n, l) => n + l.size, 0);
    // An index's imageSizeInBytes is the largest of its manifests'.
    assert.equal(details.imageDetails?.[0]?.imageSizeInBytes, Math.max(sizeOf(amd), sizeOf(arm)));
    // A child of an index cannot be deleted while the index references it.
    const del = await ecr.send(
      new BatchDeleteImageCommand({ repositoryName: 'multi', imageIds: [{ imageDigest: amd.manifest.digest }] }),
    );
    assert.equal(del.failures?.[0]?.failureCode, 'ImageReferencedByManifestList');
  });

  test('DescribeImages and ListImages: details, filters, pagination, ImageNotFoundException', async () => {
    await createRepo(ecr, 'many');
    const layer = gzipLayer({ f: 'shared layer' });
    await uploadBlob(ecr, 'many', layer);
    const digests: string[] = [];
    for (let i = 0; i < 5; i++) {
      const config = configFor([layer], `arch${i}`);
      await uploadBlob(ecr, 'many', config);
      const m = manifestOf(config, [layer]);
      await ecr.send(
        new PutImageCommand({
          repositoryName: 'many',
          imageManifest: m.bytes.toString(),
          imageTag: i < 3 ? `t${i}` : undefined,
        }),
      );
      digests.push(m.digest);
    }
    const all = await ecr.send(new DescribeImagesCommand({ repositoryName: 'many' }));
    assert.equal(all.imageDetails?.length, 5);
    const first = all.imageDetails![0]!;
    assert.equal(first.imageDigest, digests[0]);
    assert.deepEqual(first.imageTags, ['t0']);
    assert.equal(first.imageSizeInBytes, layer.size);
    assert.equal(first.imageManifestMediaType, OCI_MANIFEST);
    assert.equal(first.artifactMediaType, 'application/vnd.oci.image.config.v1+json');
    assert.equal(first.registryId, srv.registryId);
    assert.ok(
      first.imagePushedAt instanceof Date && Math.abs(first.imagePushedAt.getTime() - Date.now()) < 60_000,
      'imagePushedAt is a recent Date',
    );
    const tagged = await ecr.send(
      new DescribeImagesCommand({ repositoryName: 'many', filter: { tagStatus: 'TAGGED' } }),
    );
    assert.equal(tagged.imageDetails?.length, 3);
    const untagged = await ecr.send(
      new DescribeImagesCommand({ repositoryName: 'many', filter: { tagStatus: 'UNTAGGED' } }),
    );
    assert.deepEqual(
      untagged.imageDetails?.map((d) => d.imageDigest),
      digests.slice(3),
    );
    // Pages of two: 2 + 2 + 1.
    const seen: string[] = [];
    let nextToken: string | undefined;
    let pages = 0;
    do {
      const page = await ecr.send(new DescribeImagesCommand({ repositoryName: 'many', maxResults: 2, nextToken }));
      seen.push(...page.imageDetails!.map((d) => d.imageDigest!));
      nextToken = page.nextToken;
      pages++;
    } while (nextToken);
    assert.equal(pages, 3);
    assert.deepEqual(seen, digests);
    const listPage = await ecr.send(new ListImagesCommand({ repositoryName: 'many', maxResults: 4 }));
    assert.equal(listPage.imageIds?.length, 4);
    assert.ok(listPage.nextToken);
    const e = await rejectsWith(
      ecr.send(new DescribeImagesCommand({ repositoryName: 'many', imageIds: [{ imageTag: 'absent' }] })),
      'ImageNotFoundException',
    );
    assert.match(e.message, /absent/);
    // A tag and a digest together name one image: a pair that disagrees is refused and the tag kept.
    const mismatch = await ecr.send(
      new BatchDeleteImageCommand({ repositoryName: 'many', imageIds: [{ imageTag: 't1', imageDigest: digests[2]! }] }),
    );
    assert.equal(mismatch.failures?.[0]?.failureCode, 'ImageTagDoesNotMatchDigest');
    assert.equal(mismatch.imageIds?.length ?? 0, 0);
    const kept = await ecr.send(new BatchGetImageCommand({ repositoryName: 'many', imageIds: [{ imageTag: 't1' }] }));
    assert.equal(kept.images?.[0]?.imageId?.imageDigest, digests[1]);
    const matched = await ecr.send(
      new BatchDeleteImageCommand({ repositoryName: 'many', imageIds: [{ imageTag: 't1', imageDigest: digests[1]! }] }),
    );
    assert.deepEqual(matched.failures ?? [], []);
    const gone = await ecr.send(new BatchGetImageCommand({ repositoryName: 'many', imageIds: [{ imageTag: 't1' }] }));
    assert.equal(gone.failures?.[0]?.failureCode, 'ImageNotFound');
    // Removing the last tag of an image deletes it (ECR's rule).
    await ecr.send(new BatchDeleteImageCommand({ repositoryName: 'many', imageIds: [{ imageTag: 't0' }] }));
    await rejectsWith(
      ecr.send(new DescribeImagesCommand({ repositoryName: 'many', imageIds: [{ imageDigest: digests[0]! }] })),
      'ImageNotFoundException',
    );
  });

  test('repositories: create (names, mutability, duplicates), describe (ARN, URI, pagination), delete', async () => {
    const out = await ecr.send(
      new CreateRepositoryCommand({ repositoryName: 'team/service-a', imageTagMutability: 'IMMUTABLE' }),
    );
    const r = out.repository!;
    assert.equal(r.repositoryName, 'team/service-a');
    assert.equal(r.registryId, srv.registryId);
    assert.equal(r.repositoryArn, `arn:aws:ecr:us-east-1:${srv.registryId}:repository/team/service-a`);
    assert.equal(r.repositoryUri, `${srv.host}/team/service-a`);
    assert.equal(r.imageTagMutability, 'IMMUTABLE');
    assert.ok(r.createdAt instanceof Date);
    await rejectsWith(
      ecr.send(new CreateRepositoryCommand({ repositoryName: 'team/service-a' })),
      'RepositoryAlreadyExistsException',
    );
    for (const bad of ['A', 'Upper', 'x', 'a//b', '-a', 'a/blobs']) {
      await rejectsWith(ecr.send(new CreateRepositoryCommand({ repositoryName: bad })), 'InvalidParameterException');
    }
    await rejectsWith(
      ecr.send(
        new CreateRepositoryCommand({ repositoryName: 'bad-mutability', imageTagMutability: 'SOMETIMES' as 'MUTABLE' }),
      ),
      'InvalidParameterException',
    );
    const names: string[] = [];
    let nextToken: string | undefined;
    do {
      const page = await ecr.send(new DescribeRepositoriesCommand({ maxResults: 3, nextToken }));
      names.push(...page.repositories!.map((x) => x.repositoryName!));
      nextToken = page.nextToken;
    } while (nextToken);
    assert.ok(names.includes('team/service-a'));
    assert.deepEqual(names, [...names].sort());
    await createRepo(ecr, 'to-delete');
    await pushImage(ecr, 'to-delete', smallImage('del'), 'v1');
    await rejectsWith(
      ecr.send(new DeleteRepositoryCommand({ repositoryName: 'to-delete' })),
      'RepositoryNotEmptyException',
    );
    await ecr.send(new DeleteRepositoryCommand({ repositoryName: 'to-delete', force: true }));
    await rejectsWith(
      ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ['to-delete'] })),
      'RepositoryNotFoundException',
    );
  });

  test('GetAuthorizationToken: AWS:<password> valid 12 hours, proxyEndpoint is this server', async () => {
    const out = await ecr.send(new GetAuthorizationTokenCommand({}));
    const data = out.authorizationData![0]!;
    const decoded = Buffer.from(data.authorizationToken!, 'base64').toString('utf8');
    assert.match(decoded, /^AWS:.{32,}$/);
    assert.equal(data.proxyEndpoint, srv.url);
    const hours = (data.expiresAt!.getTime() - Date.now()) / 3600_000;
    assert.ok(hours > 11.9 && hours <= 12, `expires in ${hours} h`);
  });

  test('raw protocol: errors carry __type and X-Amzn-Errortype; unsigned and unknown calls are refused', async () => {
    const target = (op: string) => ({
      'x-amz-target': `AmazonEC2ContainerRegistry_V20150921.${op}`,
      'content-type': 'application/x-amz-json-1.1',
    });
    const unsigned = await http(`${srv.url}/`, { method: 'POST', headers: target('DescribeRepositories'), body: '{}' });
    assert.equal(unsigned.status, 403);
    assert.equal(JSON.parse(unsigned.body.toString()).__type, 'MissingAuthenticationTokenException');
    // Raw bodies, signed by the SDK (sigv4.test.ts covers the refusals of bad signatures).
    const signed = async (op: string, body: string, region = 'us-east-1') => {
      const r = await sdkSignedRequest(srv.url, op, body, { region });
      return http(`${srv.url}/`, { method: 'POST', headers: r.headers, body: r.body });
    };
    const notFound = await signed('DescribeImages', JSON.stringify({ repositoryName: 'nope' }));
    assert.equal(notFound.status, 400);
    assert.equal(notFound.headers['x-amzn-errortype'], 'RepositoryNotFoundException');
    assert.equal(notFound.headers['content-type'], 'application/x-amz-json-1.1');
    const body = JSON.parse(notFound.body.toString()) as { __type: string; message: string };
    assert.equal(body.__type, 'RepositoryNotFoundException');
    assert.match(body.message, /nope/);
    const unknown = await signed('Frobnicate', '{}');
    assert.equal(JSON.parse(unknown.body.toString()).__type, 'UnknownOperationException');
    const badJson = await signed('DescribeImages', '{');
    assert.equal(JSON.parse(badJson.body.toString()).__type, 'SerializationException');
    // The region of the credential scope shows in ARNs.
    const created = await signed('CreateRepository', JSON.stringify({ repositoryName: 'paris' }), 'eu-west-3');
    assert.match(
      (JSON.parse(created.body.toString()) as { repository: { repositoryArn: string } }).repository.repositoryArn,
      /^arn:aws:ecr:eu-west-3:/,
    );
    const other = await http(`${srv.url}/elsewhere`);
    assert.equal(other.status, 404);
  });

  test('concurrent uploads to one repository, and racing parts of one upload, stay consistent', async () => {
    await createRepo(ecr, 'parallel');
    const blobs = Array.from({ length: 6 }, (_, i) => blob(randomBytesSeeded(MiB + i, 100 + i)));
    await Promise.all(blobs.map((b) => uploadBlob(ecr, 'parallel', b)));
    const check = await ecr.send(
      new BatchCheckLayerAvailabilityCommand({ repositoryName: 'parallel', layerDigests: blobs.map((b) => b.digest) }),
    );
    assert.equal(check.layers?.length, 6);
    // Two clients send the same first part at once: one wins, the other is told where the upload is.
    const { uploadId } = await ecr.send(new InitiateLayerUploadCommand({ repositoryName: 'parallel' }));
    const part = randomBytesSeeded(5 * MiB, 9);
    const results = await Promise.allSettled(
      [0, 1].map(() =>
        ecr.send(
          new UploadLayerPartCommand({
            repositoryName: 'parallel',
            uploadId: uploadId!,
            partFirstByte: 0,
            partLastByte: part.length - 1,
            layerPartBlob: part,
          }),
        ),
      ),
    );
    assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
    const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.equal((rejected.reason as Error).name, 'InvalidLayerPartException');
  });
});
