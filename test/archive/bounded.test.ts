/**
 * Bounded work on what the formats list (issue 19): indexes that list the same children many
 * times are walked once per digest, and the walk stops at a documented count; manifest.json
 * may list 10,000 images and 100,000 layers, and each config is read once however many
 * entries name it. (Through the CLI, with time and memory bounds: test/hostile.)
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { describe, it } from 'node:test';
import { inspectArchive } from '../../src/archive';
import { MAX_DOCKER_IMAGES } from '../../src/archive/formats/docker';
import { MAX_MANIFESTS_VISITED } from '../../src/archive/formats/oci';
import { LadingError } from '../../src/errors';
import { dockerArchiveParts, type DockerArchiveImage } from '../fixtures/docker';
import {
  BlobStore,
  MT,
  OCI_LAYOUT,
  indexJson,
  putImageManifest,
  sampleLayers,
  withAnnotations,
  type Descriptor,
  type PlatformSpec,
} from '../fixtures/image';
import { file, freshPath, json, symlink, tarBuffer, type TarEntry } from '../fixtures/util';

const AMD64: PlatformSpec = { os: 'linux', architecture: 'amd64' };

async function write(name: string, entries: readonly TarEntry[]): Promise<string> {
  const p = freshPath(name);
  fs.writeFileSync(p, await tarBuffer(entries));
  return p;
}

async function fanOut(levels: number, width: number): Promise<string> {
  const store = new BlobStore();
  const m = putImageManifest(store, AMD64, await sampleLayers(`fan-${levels}-${width}`, ['gzip']));
  let top: Descriptor = m.desc;
  for (let level = 0; level < levels; level++) {
    const d = store.put(
      json({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: Array.from({ length: width }, () => top) }),
    );
    top = { mediaType: MT.ociIndex, ...d };
  }
  return write(`fan-${levels}-${width}.tar`, [
    ...store.entries(),
    file('index.json', indexJson([withAnnotations(top, { 'org.opencontainers.image.ref.name': 'x' })])),
    file('oci-layout', OCI_LAYOUT),
  ]);
}

async function refusedWith(p: string, code: string, re: RegExp): Promise<void> {
  await assert.rejects(
    inspectArchive(p, { verify: false }),
    (e: unknown) => e instanceof LadingError && e.code === code && re.test(e.message),
  );
}

describe('indexes that list the same children again and again', () => {
  it('12 levels, each listing the next 2,000 times: each index and the manifest read once', async () => {
    const r = await inspectArchive(await fanOut(12, 2000), { verify: false });
    assert.equal(r.images.length, 1);
    assert.equal(r.images[0]!.manifests.length, 1, 'the one manifest, once');
  });

  it(`more than ${MAX_MANIFESTS_VISITED} listings in all (repeats counted) -> LIMIT_EXCEEDED`, async () => {
    await refusedWith(await fanOut(11, 9500), 'LIMIT_EXCEEDED', /more than 100000 manifests/);
  });
});

describe('manifest.json listing many images', () => {
  async function many(count: number): Promise<string> {
    const image: DockerArchiveImage = { repoTags: null, platform: AMD64, layers: await sampleLayers('many', ['none']) };
    const parts = dockerArchiveParts([image], { order: 'sorted' });
    const m = parts.manifest[0] as { Config: string; Layers: string[] };
    const list = Buffer.from(
      `[${Array.from({ length: count }, (_, i) => `{"Config":"c","RepoTags":["r:${i}"],"Layers":["l"]}`).join(',')}]`,
    );
    return write(`many-${count}.tar`, [
      ...parts.entries.filter((e) => e.name !== 'manifest.json'),
      symlink('c', m.Config),
      symlink('l', m.Layers[0]!),
      file('manifest.json', list),
    ]);
  }

  it(`${MAX_DOCKER_IMAGES} images naming one config and one layer are read (the config once)`, async () => {
    const r = await inspectArchive(await many(MAX_DOCKER_IMAGES));
    assert.equal(r.images.length, MAX_DOCKER_IMAGES);
    assert.deepEqual(r.images[9999]!.names, ['r:9999']);
    assert.equal(new Set(r.images.map((i) => i.digest)).size, 1, 'one image, ten thousand times');
  });

  it(`${MAX_DOCKER_IMAGES + 1} images -> LIMIT_EXCEEDED`, async () => {
    await refusedWith(await many(MAX_DOCKER_IMAGES + 1), 'LIMIT_EXCEEDED', /10001 images \(limit 10000\)/);
  });
});
