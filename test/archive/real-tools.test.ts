/**
 * Archives written by skopeo, umoci and buildah (Debian packages, offline, no daemon) around a
 * real static busybox. Expectations come from GNU tar + the archives' own JSON (see
 * test/fixtures/real-tools.ts), and OCI manifest digests are cross-checked with skopeo.
 * Skipped locally when a tool is missing; failing under CI.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inspectArchive } from '../../src/archive';
import { ExpectedInspect, asJson, assertInspect, compressFile, streamOf } from '../fixtures';
import {
  RealToolArchives,
  assertToolsPresent,
  expectDockerArchive,
  expectOciLayout,
  realToolArchives,
  realToolsGate,
  skopeoRawDigest,
  untar,
} from '../fixtures/real-tools';

async function archives(): Promise<RealToolArchives> {
  assertToolsPresent();
  return realToolArchives();
}

async function readFileAndStream(file: string, expected: ExpectedInspect, what: string): Promise<void> {
  const fromPath = await inspectArchive(file);
  assertInspect(fromPath, expected, `${what} from its path`);
  const fromStream = await inspectArchive(streamOf(file, 65521));
  assertInspect(fromStream, expected, `${what} from a stream`);
  assert.deepStrictEqual(asJson(fromStream), asJson(fromPath), `${what}: stream and file differ`);
}

function crossCheckWithSkopeo(expected: ExpectedInspect, transport: string): void {
  for (const img of expected.images) {
    const name = img.names[0];
    assert.ok(name, 'every real-tool OCI image is named');
    assert.equal(
      skopeoRawDigest(`${transport}:${name}`),
      img.digest,
      `skopeo sees the same manifest digest for ${name}`,
    );
  }
}

void describe('archives written by real tools (skopeo, umoci, buildah)', realToolsGate(), () => {
  void it('umoci: an OCI layout with two images (linux/amd64 and linux/arm64 refs sharing a layer)', async () => {
    const a = await archives();
    const expected = expectOciLayout(a.umociLayout, 'oci-layout');
    assert.deepStrictEqual(
      expected.images.map((i) => [i.names, i.manifests.map((m) => m.platform?.architecture)]),
      [
        [['amd64'], ['amd64']],
        [['arm64'], ['arm64']],
      ],
    );
    crossCheckWithSkopeo(expected, `oci:${a.umociLayout}`);
    assertInspect(await inspectArchive(a.umociLayout), expected, 'umoci layout');
  });

  void it('skopeo: docker-archive (legacy layout, uncompressed busybox layer)', async () => {
    const a = await archives();
    const expected = expectDockerArchive(untar(a.skopeoDockerArchive));
    assert.deepStrictEqual(expected.images[0]?.names, ['docker.io/lading/busybox:umoci']);
    await readFileAndStream(a.skopeoDockerArchive, expected, 'skopeo docker-archive');
  });

  void it('skopeo: oci-archive (digests preserved from umoci)', async () => {
    const a = await archives();
    const expected = expectOciLayout(untar(a.skopeoOciArchive), 'oci-archive');
    crossCheckWithSkopeo(expected, `oci-archive:${a.skopeoOciArchive}`);
    await readFileAndStream(a.skopeoOciArchive, expected, 'skopeo oci-archive');
  });

  void it('skopeo: OCI layout directory', async () => {
    const a = await archives();
    const expected = expectOciLayout(a.skopeoOciLayout, 'oci-layout');
    crossCheckWithSkopeo(expected, `oci:${a.skopeoOciLayout}`);
    assertInspect(await inspectArchive(a.skopeoOciLayout), expected, 'skopeo OCI layout');
  });

  void it('buildah: oci-archive of a `buildah from scratch` image', async () => {
    const a = await archives();
    const expected = expectOciLayout(untar(a.buildahOciArchive), 'oci-archive');
    crossCheckWithSkopeo(expected, `oci-archive:${a.buildahOciArchive}`);
    await readFileAndStream(a.buildahOciArchive, expected, 'buildah oci-archive');
  });

  void it('buildah: docker-archive (layer.tar is a symlink to ../<digest>.tar)', async () => {
    const a = await archives();
    const expected = expectDockerArchive(untar(a.buildahDockerArchive));
    await readFileAndStream(a.buildahDockerArchive, expected, 'buildah docker-archive');
  });

  void it('buildah: manifest push --all of a 2-platform list -> OCI layout with an image index', async () => {
    const a = await archives();
    const expected = expectOciLayout(a.buildahIndexLayout, 'oci-layout');
    assert.equal(expected.images.length, 1);
    assert.deepStrictEqual(
      expected.images[0]!.manifests.map((m) => m.platform),
      [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ],
    );
    crossCheckWithSkopeo(expected, `oci:${a.buildahIndexLayout}`);
    assertInspect(await inspectArchive(a.buildahIndexLayout), expected, 'buildah index layout');
  });

  void it('real-tool archives compressed whole (gzip docker-archive, zstd oci-archive)', async () => {
    const a = await archives();
    const docker = expectDockerArchive(untar(a.buildahDockerArchive));
    await readFileAndStream(
      compressFile(a.buildahDockerArchive, 'gzip'),
      { ...docker, compression: 'gzip' },
      'buildah docker-archive .tar.gz',
    );
    const oci = expectOciLayout(untar(a.skopeoOciArchive), 'oci-archive');
    await readFileAndStream(
      compressFile(a.skopeoOciArchive, 'zstd'),
      { ...oci, compression: 'zstd' },
      'skopeo oci-archive .tar.zst',
    );
  });
});
