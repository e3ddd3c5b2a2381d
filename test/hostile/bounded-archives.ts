/**
 * Small archives that asked for unbounded work (issue 19): link chains that every lookup walked
 * again, names thousands of levels deep, indexes that fan out, a manifest.json listing more
 * images or layers than any save writes. Each must be refused (or read) within the hostile
 * suite's bounds. No side effects at import.
 */
import * as fs from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
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
import { digestOf, dir, file, freshPath, json, symlink, tarBuffer, type TarEntry } from '../fixtures/util';
import { END, paxRecord, rawEntry, writeTar, type Hostile } from './fixtures';

const AMD64: PlatformSpec = { os: 'linux', architecture: 'amd64' };
const MiB = 1024 * 1024;

/** Writes raw tar blocks through gzip without holding the whole tar. */
async function gzipBlocks(name: string, blocks: () => Generator<Buffer>): Promise<string> {
  const p = freshPath(name);
  await pipeline(Readable.from(blocks()), createGzip({ level: 6 }), fs.createWriteStream(p));
  return p;
}

/** An entry named by a pax path record (any length), with `data`. */
function paxNamed(name: string, data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([
    rawEntry({ name: 'PaxHeaders/p', typeflag: 'x' }, paxRecord('path', name)),
    rawEntry({ name: 'placeholder' }, data),
  ]);
}

/**
 * A legacy docker archive whose `layers` layers (tiny files under real/) are named through a
 * chain of `links` directory links, each a detour `levels` directories down and back up to the
 * next. Their diff_ids do not match the config.
 */
export function linkChainEntries(links: number, levels: number, layers: number): TarEntry[] {
  const detour = `${'d/'.repeat(levels)}${'../'.repeat(levels)}`;
  const chain: TarEntry[] = [];
  for (let i = 0; i < links; i++) chain.push(symlink(`c${i}`, `${detour}${i === 0 ? 'real' : `c${i - 1}`}`));
  const files: TarEntry[] = [dir('real/')];
  for (let i = 0; i < layers; i++) files.push(file(`real/x${i}`, String(i % 10)));
  const config = json({
    architecture: 'amd64',
    os: 'linux',
    rootfs: { type: 'layers', diff_ids: Array.from({ length: layers }, (_, i) => digestOf(`not ${i}`)) },
  });
  const configName = `${digestOf(config).slice(7)}.json`;
  const manifest = json([
    {
      Config: configName,
      RepoTags: ['lading/links:1'],
      Layers: Array.from({ length: layers }, (_, i) => `c${links - 1}/x${i}`),
    },
  ]);
  return [...chain, ...files, file(configName, config), file('manifest.json', manifest)];
}

/** An OCI archive whose index.json names index `levels`, each index listing the one below `width` times. */
export async function fanOutEntries(levels: number, width: number): Promise<TarEntry[]> {
  const store = new BlobStore();
  const m = putImageManifest(store, AMD64, await sampleLayers(`fan-out-${levels}-${width}`, ['gzip']));
  let top: Descriptor = m.desc;
  for (let level = 0; level < levels; level++) {
    const d = store.put(
      json({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: Array.from({ length: width }, () => top) }),
    );
    top = { mediaType: MT.ociIndex, ...d };
  }
  return [
    ...store.entries(),
    file('index.json', indexJson([withAnnotations(top, { 'org.opencontainers.image.ref.name': 'x' })])),
    file('oci-layout', OCI_LAYOUT),
  ];
}

/** `count` tar entries named `depth` levels deep (pax paths), then the end blocks. */
export function deepNames(count: number, depth: number): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) out.push(paxNamed(`${'a/'.repeat(depth)}f${i}`, Buffer.from('x')));
  out.push(END);
  return Buffer.concat(out);
}

export const BOUNDED_BUILDERS: ReadonlyArray<() => Promise<Hostile>> = [
  async () => {
    // 39 directory links, each a 4 KB detour (800 levels down and back up) to the next; the
    // 2,000 layers manifest.json lists are reached through the last of them. Every lookup
    // used to walk the whole chain again (and rebuild the path walked at each step).
    const p = await writeTar('links-amplified', linkChainEntries(39, 800, 2000));
    return {
      name: 'symlink chains: 2,000 layers reached through 39 links of 4 KB each',
      path: p,
      codes: ['DIFF_ID_MISMATCH', 'DIGEST_MISMATCH'],
      notes: `${(fs.statSync(p).size / MiB).toFixed(1)} MiB; resolving one layer walked 62,000 path components; the layers' diff_ids do not match`,
      timeMs: 60_000,
    };
  },
  async () => {
    // 2,000 entries named 6,000 levels deep (12 KB each, pax path), gzip.
    const p = await gzipBlocks('deep-6000.tar.gz', function* () {
      for (let i = 0; i < 2000; i++) yield paxNamed(`${'a/'.repeat(6000)}f${i}`, Buffer.from('x'));
      yield END;
    });
    return {
      name: 'names 6,000 levels deep (gzip)',
      path: p,
      codes: ['LIMIT_EXCEEDED'],
      notes: `2,000 entries with 12 KB pax paths, ${(fs.statSync(p).size / 1024).toFixed(0)} KiB compressed: over Linux's PATH_MAX`,
      timeMs: 60_000,
    };
  },
  async () => {
    // 3,500 entries named 2,000 levels deep (4 KB each, under PATH_MAX), no manifest: each
    // streamed entry used to be resolved as it came, in time quadratic in its depth.
    const p = await gzipBlocks('deep-2000.tar.gz', function* () {
      for (let i = 0; i < 3500; i++) yield paxNamed(`${'a/'.repeat(1990)}f${i}`, Buffer.from('x'));
      yield END;
    });
    return {
      name: 'names 2,000 levels deep (gzip), no manifest',
      path: p,
      codes: ['NO_MANIFEST'],
      notes: `3,500 entries with 4 KB pax paths (14 MB of names), ${(fs.statSync(p).size / 1024).toFixed(0)} KiB compressed`,
      timeMs: 60_000,
    };
  },
  async () => {
    // 100,000 entries with 4,000-character names: 400 MB of names to hold.
    const p = await gzipBlocks('many-long-names.tar.gz', function* () {
      const batch: Buffer[] = [];
      for (let i = 0; i < 100_000; i++) {
        batch.push(paxNamed(`${'n'.repeat(3990)}/${i}`));
        if (batch.length === 1000) yield Buffer.concat(batch.splice(0));
      }
      batch.push(END);
      yield Buffer.concat(batch);
    });
    return {
      name: '100,000 entries with 4,000-character names (gzip)',
      path: p,
      codes: ['LIMIT_EXCEEDED'],
      notes: `${(fs.statSync(p).size / MiB).toFixed(1)} MiB compressed: over 16 MiB of names`,
      timeMs: 60_000,
    };
  },
  async () => {
    // Index k lists index k-1 7,500 times, 14 levels: 7,500^14 paths through one image. Each
    // digest is walked once per image; the 105,000 listings are over the limit.
    const tar = await tarBuffer(await fanOutEntries(14, 7500));
    const p = freshPath('fan-out.tar.gz');
    await pipeline(Readable.from([tar]), createGzip({ level: 9 }), fs.createWriteStream(p));
    return {
      name: 'indexes fanning out: 14 levels, each listing the next 7,500 times (gzip)',
      path: p,
      codes: ['LIMIT_EXCEEDED'],
      notes: `${(fs.statSync(p).size / 1024).toFixed(0)} KiB; 105,000 listings, 7,500^14 paths`,
      timeMs: 60_000,
    };
  },
  async () => {
    // Every entry the same image, through short names ("c" and "l" are symlinks to the config
    // and the layer) so that 120,000 of them fit in 3.5 MB.
    const image: DockerArchiveImage = {
      repoTags: null,
      platform: AMD64,
      layers: await sampleLayers('many-images', ['none']),
    };
    const parts = dockerArchiveParts([image], { order: 'sorted' });
    const m = parts.manifest[0] as { Config: string; Layers: string[] };
    const list = Buffer.from(`[${Array.from({ length: 120_000 }, () => '{"Config":"c","Layers":["l"]}').join(',')}]`);
    const p = await writeTar('many-images', [
      ...parts.entries.filter((e) => e.name !== 'manifest.json'),
      symlink('c', m.Config),
      symlink('l', m.Layers[0]!),
      file('manifest.json', list),
    ]);
    return {
      name: 'manifest.json listing 120,000 images',
      path: p,
      codes: ['LIMIT_EXCEEDED'],
      notes: `manifest.json of ${(list.length / MiB).toFixed(1)} MB, every entry the same image`,
      timeMs: 60_000,
    };
  },
  async () => {
    // 104 images of 10,000 layers each ("c" a config listing one diff_id 10,000 times, "l" a
    // symlink to the one layer): a million layer references in 4 MiB of JSON.
    const [layer] = await sampleLayers('many-layer-refs', ['none']);
    const config = json({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: Array.from({ length: 10_000 }, () => layer!.diffId) },
    });
    const one = JSON.stringify({ Config: 'c', Layers: Array.from({ length: 10_000 }, () => 'l') });
    const count = Math.floor((4 * MiB) / (one.length + 1));
    const list = Buffer.from(`[${Array.from({ length: count }, () => one).join(',')}]`);
    const p = await writeTar('many-layer-refs', [
      file('c', config),
      file('l', layer!.data),
      file('manifest.json', list),
    ]);
    return {
      name: `manifest.json listing ${count} images of 10,000 layers each`,
      path: p,
      codes: ['LIMIT_EXCEEDED'],
      notes: `${count * 10_000} layer references in ${(list.length / MiB).toFixed(1)} MB`,
      timeMs: 60_000,
    };
  },
  async () => {
    // 60 images, each with its own config of 3.5 MiB (a long label): 210 MiB of JSON to parse and keep.
    const images: DockerArchiveImage[] = [];
    const layers = await sampleLayers('json-budget', ['none']);
    for (let i = 0; i < 60; i++)
      images.push({
        repoTags: [`lading/json:${i}`],
        platform: AMD64,
        layers,
        configExtra: { config: { Labels: { filler: `${i}${'x'.repeat(3.5 * MiB)}` } } },
      });
    const tar = await tarBuffer(dockerArchiveParts(images, { order: 'sorted' }).entries);
    const p = freshPath('json-budget.tar.gz');
    await pipeline(Readable.from([tar]), createGzip({ level: 6 }), fs.createWriteStream(p));
    return {
      name: '60 configs of 3.5 MiB each (gzip)',
      path: p,
      codes: ['LIMIT_EXCEEDED'],
      notes: `${(fs.statSync(p).size / 1024).toFixed(0)} KiB: 210 MiB of JSON documents, over the 64 MiB the model may hold`,
      timeMs: 60_000,
    };
  },
];
