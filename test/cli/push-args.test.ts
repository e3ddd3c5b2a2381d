/**
 * What crane and skopeo users reach for (issue 18), through the CLI against a real registry:
 * the archive's own tags, skopeo's transport syntax, and digest output files.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ArchiveImage } from '../../src/archive/model';
import { archiveTags } from '../../src/copy/select';
import { registryAvailable, startRegistry, type RegistryServer } from '../helpers/registry-server';
import { dockerArchiveParts, freshPath, sampleLayers, tarBuffer } from '../fixtures';
import { legacyDockerSaveTwoImages } from '../fixtures/formats';
import { oneLineError, runCli, sandbox, type CliResult, type Sandbox } from '../hostile/run-cli';

const skip = registryAvailable ? false : 'docker-registry is not installed';

const image = (names: string[]): ArchiveImage => ({ names, mediaType: 'x', indexes: [], manifests: [], others: [] });

describe('archiveTags: the tags an image carries in its archive', () => {
  test('RepoTags and containerd names give their tag; a bare OCI ref.name is a tag; digests and untagged names give none', () => {
    assert.deepEqual(
      archiveTags(image(['myapp:1.2', 'registry.example.com:5000/team/app:stable', 'docker.io/library/app:1.2'])),
      ['1.2', 'stable'],
    );
    assert.deepEqual(
      archiveTags(image(['v3'])),
      ['v3'],
      'org.opencontainers.image.ref.name as skopeo and buildx write it',
    );
    assert.deepEqual(
      archiveTags(image(['app@sha256:' + 'a'.repeat(64), 'localhost:5000/app', '-bad', 'x'.repeat(200)])),
      [],
    );
    assert.deepEqual(archiveTags(image([])), []);
  });
});

describe('lading push: tags, transports, digest files', { skip }, () => {
  let reg: RegistryServer;
  let box: Sandbox;
  let archive: string;

  before(async () => {
    reg = await startRegistry();
    box = sandbox('lading-push-args-');
    archive = (await legacyDockerSaveTwoImages()).path;
  });
  after(async () => {
    await reg?.stop();
    box?.remove();
  });

  const push = (args: string[]): Promise<CliResult> =>
    runCli(['push', ...args], { env: box.env, cwd: box.cwd, measure: false });
  const tagsOf = async (repo: string): Promise<string[]> => {
    const r = await fetch(`${reg.url}/v2/${repo}/tags/list`);
    return r.status === 404 ? [] : (((await r.json()) as { tags: string[] | null }).tags ?? []).sort();
  };
  const ok = (r: CliResult): void => assert.equal(r.code, 0, r.stderr);

  test("no tag given: the image's own tags from the archive, said so; latest only when it names none", async () => {
    const first = await push([`docker-archive:${archive}:lading/first:1.0`, `${reg.host}/own/first`]);
    ok(first);
    assert.deepEqual(await tagsOf('own/first'), ['1.0']);
    assert.match(first.stderr, /tagged 1\.0 \(the image's own tags in the archive\)/);

    const second = await push([`docker-archive:${archive}:@1`, `${reg.host}/own/second`, '--json']);
    ok(second);
    const doc = JSON.parse(second.stdout) as { tags: string[]; tagSource: string };
    assert.deepEqual(doc.tags, ['2.0', 'latest']);
    assert.equal(doc.tagSource, 'archive');
    assert.deepEqual(await tagsOf('own/second'), ['2.0', 'latest']);

    const unnamed = await push([`docker-archive:${archive}:@2`, `${reg.host}/own/unnamed`]);
    ok(unnamed);
    assert.deepEqual(await tagsOf('own/unnamed'), ['latest']);
    assert.match(unnamed.stderr, /tagged latest \(the archive names no tag\)/);
  });

  test('a tag in DESTINATION or --tag overrides the archive', async () => {
    ok(await push([archive, `${reg.host}/given/a:mine`, '--image', 'lading/first:1.0']));
    assert.deepEqual(await tagsOf('given/a'), ['mine']);
    ok(await push([archive, `docker://${reg.host}/given/b`, '--image', '@1', '--tag', 'x', '--tag', 'y']));
    assert.deepEqual(await tagsOf('given/b'), ['x', 'y'], 'docker:// is accepted as a destination prefix');
  });

  test('--digest-file gets the digest, --image-refs a pinned reference per tag', async () => {
    const digestFile = join(box.root, 'digest');
    const refsFile = join(box.root, 'refs');
    const r = await push([
      `docker-archive:${archive}:@1`,
      `${reg.host}/refs/app`,
      '--digest-file',
      digestFile,
      '--image-refs',
      refsFile,
    ]);
    ok(r);
    const pinned = r.stdout.trim();
    const digest = pinned.slice(pinned.indexOf('@') + 1);
    assert.match(digest, /^sha256:[0-9a-f]{64}$/);
    assert.equal(readFileSync(digestFile, 'utf8'), `${digest}\n`);
    assert.equal(
      readFileSync(refsFile, 'utf8'),
      `${reg.host}/refs/app:2.0@${digest}\n${reg.host}/refs/app:latest@${digest}\n`,
    );
  });

  test('--all-images: every image with its own tags (untagged when it names none), shared blobs uploaded once, one JSON document', async () => {
    const r = await push([archive, `${reg.host}/all/app`, '--all-images', '--json']);
    ok(r);
    const doc = JSON.parse(r.stdout) as {
      images: { image: string[]; tags: string[]; digest: string; blobs: { uploaded: number; skipped: number } }[];
    };
    assert.deepEqual(
      doc.images.map((i) => i.tags),
      [['1.0'], ['2.0', 'latest'], []],
    );
    assert.deepEqual(await tagsOf('all/app'), ['1.0', '2.0', 'latest']);
    // The unnamed image reuses the first image's first layer: found there, not uploaded again.
    assert.ok(doc.images[2]!.blobs.skipped >= 1, JSON.stringify(doc.images[2]!.blobs));
    const m = await fetch(`${reg.url}/v2/all/app/manifests/${doc.images[2]!.digest}`, { method: 'HEAD' });
    assert.equal(m.status, 200, 'the untagged image is there by digest');
  });

  test('--all-images --repository-per-image: DESTINATION/NAME per image; an unnamed image is refused before anything is pushed', async () => {
    const refused = await push([archive, `${reg.host}/per`, '--all-images', '--repository-per-image']);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /image @2 .* has no name .*--image @2/);
    assert.deepEqual(await tagsOf('per/lading/first'), [], 'nothing pushed');
    const named = freshPath('named.tar');
    const a = await sampleLayers('named-a', ['none']);
    const b = await sampleLayers('named-b', ['none']);
    const parts = dockerArchiveParts(
      [
        { repoTags: ['lading/first:1.0'], platform: { os: 'linux', architecture: 'amd64' }, layers: a },
        {
          repoTags: ['registry.example.com:5000/team/second:2.0'],
          platform: { os: 'linux', architecture: 'amd64' },
          layers: b,
        },
      ],
      { order: 'sorted' },
    );
    writeFileSync(named, await tarBuffer(parts.entries));
    ok(await push([named, `${reg.host}/per`, '--all-images', '--repository-per-image']));
    assert.deepEqual(await tagsOf('per/lading/first'), ['1.0']);
    assert.deepEqual(await tagsOf('per/team/second'), ['2.0']);
  });

  test('--mount-from: blobs the registry mounts are reported as mounted (0 bytes sent), layers lading compressed included', async () => {
    const first = await push([archive, `${reg.host}/mount/source:1`, '--image', '@1', '--json']);
    ok(first);
    const a = JSON.parse(first.stdout) as { digest: string; blobs: { uploaded: number; mounted: number } };
    assert.ok(a.blobs.uploaded >= 2 && a.blobs.mounted === 0, JSON.stringify(a.blobs));
    // Another repository of the same registry: every blob is linked, none sent, the compressed
    // layers through the digest cache's record of what they compressed to.
    const second = await push([
      archive,
      `${reg.host}/mount/target:1`,
      '--image',
      '@1',
      '--mount-from',
      'mount/source',
      '--json',
    ]);
    ok(second);
    const b = JSON.parse(second.stdout) as {
      digest: string;
      blobs: { uploaded: number; skipped: number; mounted: number; bytesUploaded: number };
    };
    assert.deepEqual(b.blobs, { uploaded: 0, skipped: 0, mounted: a.blobs.uploaded, bytesUploaded: 0 });
    assert.equal(b.digest, a.digest, 'the same image');
    const m = await fetch(`${reg.url}/v2/mount/target/manifests/1`, {
      method: 'HEAD',
      headers: { accept: 'application/vnd.docker.distribution.manifest.v2+json' },
    });
    assert.equal(m.status, 200);
    const plain = await push([archive, `${reg.host}/mount/third:1`, '--image', '@1', '--mount-from', 'mount/source']);
    ok(plain);
    assert.match(plain.stderr, new RegExp(`0 uploaded \\(0\\.0 MiB\\), ${a.blobs.uploaded} mounted`));
  });

  test('transports lading does not read, and conflicting image choices, are usage errors that say what to do', async () => {
    const storage = await push(['containers-storage:localhost/app:1', `${reg.host}/x/y`]);
    assert.equal(storage.code, 2);
    assert.equal(oneLineError(storage.stderr), undefined);
    assert.match(storage.stderr, /podman or buildah storage: export it first \(podman save/);
    const daemon = await push(['docker-daemon:app:1', `${reg.host}/x/y`]);
    assert.equal(daemon.code, 2);
    assert.match(daemon.stderr, /docker save -o app\.tar/);
    const both = await push([`docker-archive:${archive}:@0`, `${reg.host}/x/y`, '--image', '@1']);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /names an image already; drop --image/);
    const toArchive = await push([archive, 'docker-archive:/tmp/out.tar']);
    assert.equal(toArchive.code, 2);
    assert.match(toArchive.stderr, /not to docker-archive/);
    const missing = await push([`docker-archive:${archive}:@9`, `${reg.host}/x/y`]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no image @9: it holds 3 \(@0\.\.@2\)/);
  });
});
