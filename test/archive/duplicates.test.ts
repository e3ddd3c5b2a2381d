/**
 * Entries stored twice (issue 19). skopeo reads the first copy of a path, docker load keeps the
 * last, Python's tarfile lists both (getmember answers the last): an archive whose copies differ
 * means a different image to each. lading compares every duplicate (documents and blobs, same
 * size; a different size or type is refused as it is added) and refuses a difference with
 * DUPLICATE_ENTRY on every path: a plain tar file (indexed), a gzip file (one pass), and the
 * plain tar as a non-seekable stream. Identical copies are accepted everywhere.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { inspectArchive, type InspectResult } from '../../src/archive';
import { LadingError } from '../../src/errors';
import { dockerArchiveParts, type DockerArchiveImage } from '../fixtures/docker';
import {
  BlobStore,
  OCI_LAYOUT,
  indexJson,
  makeLayer,
  putImageManifest,
  sampleLayers,
  withAnnotations,
  type PlatformSpec,
} from '../fixtures/image';
import { streamOf } from '../fixtures/compress';
import { file, freshPath, hexOf, json, pseudoRandom, tarBuffer, type TarEntry } from '../fixtures/util';

const AMD64: PlatformSpec = { os: 'linux', architecture: 'amd64' };
const ARM64: PlatformSpec = { os: 'linux', architecture: 'arm64' };

async function write(name: string, entries: readonly TarEntry[]): Promise<{ plain: string; gz: string }> {
  const tar = await tarBuffer(entries);
  const plain = freshPath(`${name}.tar`);
  const gz = freshPath(`${name}.tar.gz`);
  fs.writeFileSync(plain, tar);
  fs.writeFileSync(gz, gzipSync(tar, { level: 1 }));
  return { plain, gz };
}

/** Every path lading reads an archive by: the plain file, the gzip file, the plain tar as a stream. */
async function everyPath(a: { plain: string; gz: string }): Promise<Array<[string, InspectResult | LadingError]>> {
  const out: Array<[string, InspectResult | LadingError]> = [];
  for (const [how, input] of [
    ['plain tar file', a.plain],
    ['gzip file', a.gz],
    ['plain tar stream', streamOf(a.plain)],
    ['gzip stream', streamOf(a.gz)],
  ] as const) {
    try {
      out.push([how, await inspectArchive(input)]);
    } catch (e) {
      assert.ok(e instanceof LadingError, `${how}: ${(e as Error)?.stack ?? String(e)}`);
      out.push([how, e]);
    }
  }
  return out;
}

async function refusedEverywhere(a: { plain: string; gz: string }): Promise<void> {
  for (const [how, r] of await everyPath(a)) {
    assert.ok(r instanceof LadingError, `${how}: read as ${JSON.stringify(r).slice(0, 300)}`);
    assert.equal(r.code, 'DUPLICATE_ENTRY', `${how}: ${r.message}`);
  }
}

/** A legacy docker archive of two images (same tag length), with manifest.json naming one, then the other. */
async function twoManifestJsons(firstName: string): Promise<{ entries: TarEntry[]; a: Buffer; b: Buffer }> {
  const imgA: DockerArchiveImage = {
    repoTags: ['lading/dup:a'],
    platform: AMD64,
    layers: await sampleLayers('dup-a', ['none']),
  };
  const imgB: DockerArchiveImage = {
    repoTags: ['lading/dup:b'],
    platform: ARM64,
    layers: await sampleLayers('dup-b', ['none']),
  };
  const parts = dockerArchiveParts([imgA, imgB], { order: 'sorted' });
  const a = json([parts.manifest[0]]);
  const b = json([parts.manifest[1]]);
  assert.equal(a.length, b.length, 'fixture: both manifest.json copies have the same size');
  const rest = parts.entries.filter((e) => e.name !== 'manifest.json');
  return { entries: [file(firstName, a), ...rest, file('manifest.json', b)], a, b };
}

const hasPython = spawnSync('python3', ['-c', 'import tarfile'], { stdio: 'ignore' }).status === 0;
const hasSkopeo = spawnSync('skopeo', ['--version'], { stdio: 'ignore' }).status === 0;

describe('duplicate entries: refused on every path when the copies differ', () => {
  it('manifest.json twice (same size): skopeo reads the first image, tarfile and docker the last; lading refuses', async () => {
    const { entries, b } = await twoManifestJsons('manifest.json');
    const paths = await write('dup-manifest-json', entries);
    if (hasPython) {
      // Python lists both copies; getmember (and extraction, as docker load) answers the last.
      const py = execFileSync(
        'python3',
        [
          '-c',
          "import tarfile,sys\nt=tarfile.open(sys.argv[1])\nm=[x for x in t.getmembers() if x.name=='manifest.json']\nprint(len(m)); sys.stdout.write(t.extractfile(t.getmember('manifest.json')).read().decode())",
          paths.plain,
        ],
        { encoding: 'utf8' },
      );
      const [count, ...last] = py.split('\n');
      assert.equal(count, '2');
      assert.equal(last.join('\n'), b.toString());
    }
    if (hasSkopeo) {
      const cfg = JSON.parse(
        execFileSync('skopeo', ['inspect', '--config', `docker-archive:${paths.plain}`], { encoding: 'utf8' }),
      ) as { architecture: string };
      assert.equal(cfg.architecture, 'amd64', 'skopeo reads the first manifest.json (image a, amd64)');
    }
    await refusedEverywhere(paths);
  });

  it('./manifest.json, then manifest.json (one path to every reader that cleans names)', async () => {
    const { entries } = await twoManifestJsons('./manifest.json');
    await refusedEverywhere(await write('dup-dot-manifest-json', entries));
  });

  it('index.json twice, naming two images of the same size', async () => {
    const store = new BlobStore();
    const m1 = putImageManifest(store, AMD64, await sampleLayers('dup-index-1', ['gzip']));
    const m2 = putImageManifest(store, AMD64, await sampleLayers('dup-index-2', ['gzip']));
    const i1 = indexJson([withAnnotations(m1.desc, { 'org.opencontainers.image.ref.name': 'x' })]);
    const i2 = indexJson([
      withAnnotations({ ...m2.desc, size: m1.desc.size }, { 'org.opencontainers.image.ref.name': 'x' }),
    ]);
    assert.equal(i1.length, i2.length);
    await refusedEverywhere(
      await write('dup-index-json', [
        file('index.json', i1),
        ...store.entries(),
        file('oci-layout', OCI_LAYOUT),
        file('index.json', i2),
      ]),
    );
  });

  it('oci-layout twice', async () => {
    const store = new BlobStore();
    const m = putImageManifest(store, AMD64, await sampleLayers('dup-layout', ['gzip']));
    const other = json({ imageLayoutVersion: '9.0.0' });
    assert.equal(other.length, OCI_LAYOUT.length);
    await refusedEverywhere(
      await write('dup-oci-layout', [
        file('oci-layout', other),
        ...store.entries(),
        file('index.json', indexJson([withAnnotations(m.desc, { 'org.opencontainers.image.ref.name': 'x' })])),
        file('oci-layout', OCI_LAYOUT),
      ]),
    );
  });

  it('a config blob twice, the first copy wrong (the last one verifies; skopeo would read the first)', async () => {
    const store = new BlobStore();
    const m = putImageManifest(store, AMD64, await sampleLayers('dup-config', ['gzip']));
    const name = `blobs/sha256/${hexOf(m.config.digest)}`;
    const real = store.blobs.get(m.config.digest)!;
    const forged = Buffer.from(real.toString().replace('amd64', 'arm64'));
    assert.equal(forged.length, real.length);
    await refusedEverywhere(
      await write('dup-config', [
        file(name, forged),
        ...store.entries(),
        file('index.json', indexJson([withAnnotations(m.desc, { 'org.opencontainers.image.ref.name': 'x' })])),
        file('oci-layout', OCI_LAYOUT),
      ]),
    );
  });

  it('a 5 MiB layer twice (larger than what is held in memory), the first copy different', async () => {
    const layer = await makeLayer([file('big.bin', pseudoRandom('dup-big', 5 * 1024 * 1024))]);
    const image: DockerArchiveImage = { repoTags: ['lading/dup:big'], platform: AMD64, layers: [layer] };
    const parts = dockerArchiveParts([image], { order: 'sorted' });
    const layerEntry = parts.entries.find((e) => e.name.endsWith('/layer.tar'))!;
    const other = Buffer.from(layer.data);
    other[other.length - 1000] ^= 0xff;
    await refusedEverywhere(await write('dup-big-layer', [file(layerEntry.name, other), ...parts.entries]));
  });

  it('identical copies are accepted, with the same result on every path', async () => {
    const layer = await makeLayer([file('big.bin', pseudoRandom('dup-same', 5 * 1024 * 1024))]);
    const image: DockerArchiveImage = {
      repoTags: ['lading/dup:same'],
      platform: AMD64,
      layers: [layer, ...(await sampleLayers('dup-same', ['none']))],
    };
    const parts = dockerArchiveParts([image], { order: 'sorted' });
    const copies = parts.entries.filter((e) => e.name === 'manifest.json' || e.name.endsWith('/layer.tar'));
    const results = await everyPath(
      await write('dup-identical', [
        ...copies.map((e) => (e.type === 'file' ? file(`./${e.name}`, e.data) : e)),
        ...parts.entries,
      ]),
    );
    const first = results[0]![1];
    assert.ok(!(first instanceof LadingError), `refused: ${String(first)}`);
    assert.equal(first.images.length, 1);
    for (const [how, r] of results) {
      assert.ok(!(r instanceof LadingError), `${how}: ${String(r)}`);
      assert.deepEqual(r.images, first.images, how);
    }
  });
});
