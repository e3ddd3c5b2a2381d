/**
 * Image archives that tar readers read differently (issue 19): each holds image A as lading used
 * to read it, and a second manifest.json (naming image B, also in the archive) that Go's
 * archive/tar (docker load, skopeo, crane) or Python's tarfile would see. lading must refuse
 * them all. The raw cases, with what Go, Python and GNU tar see in each, are in
 * test/archive/differential-cases.ts. No side effects at import.
 */
import { gzipSync } from 'node:zlib';
import { dockerArchiveParts, type DockerArchiveImage } from '../fixtures/docker';
import {
  BlobStore,
  OCI_LAYOUT,
  indexJson,
  putImageManifest,
  sampleLayers,
  withAnnotations,
  type PlatformSpec,
} from '../fixtures/image';
import { file, hexOf, json, tarBuffer, type TarEntry } from '../fixtures/util';
import { END, pad, paxRecord, rawEntry, rawHeader, writeFile, writeTar, type Hostile } from './fixtures';

const AMD64: PlatformSpec = { os: 'linux', architecture: 'amd64' };
const ARM64: PlatformSpec = { os: 'linux', architecture: 'arm64' };

/** Two images in one legacy docker archive, and a manifest.json for each (same size). */
async function twoImages(tag: string): Promise<{ rest: TarEntry[]; a: Buffer; b: Buffer }> {
  const imgA: DockerArchiveImage = {
    repoTags: [`lading/${tag}:a`],
    platform: AMD64,
    layers: await sampleLayers(`${tag}-a`, ['none']),
  };
  const imgB: DockerArchiveImage = {
    repoTags: [`lading/${tag}:b`],
    platform: ARM64,
    layers: await sampleLayers(`${tag}-b`, ['none']),
  };
  const parts = dockerArchiveParts([imgA, imgB], { order: 'sorted' });
  const a = json([parts.manifest[0]]);
  const b = json([parts.manifest[1]]);
  if (a.length !== b.length) throw new Error('fixture bug: the two manifest.json differ in size');
  return { rest: parts.entries.filter((e) => e.name !== 'manifest.json'), a, b };
}

/** The entries as a tar (tar-stream), without its end-of-archive blocks, then `tail` and the end blocks. */
async function withTail(entries: TarEntry[], tail: Buffer): Promise<Buffer> {
  const tar = await tarBuffer(entries);
  return Buffer.concat([tar.subarray(0, tar.length - 1024), tail, END]);
}

const manifestEntry = (data: Buffer, name = 'manifest.json'): Buffer => rawEntry({ name }, data);

function pax(records: Buffer[], typeflag = 'x'): Buffer {
  return rawEntry({ name: 'PaxHeaders/x', typeflag }, Buffer.concat(records));
}

export const DIFFERENTIAL_BUILDERS: ReadonlyArray<() => Promise<Hostile>> = [
  async () => {
    const { rest, a, b } = await twoImages('fifo');
    const smuggled = manifestEntry(b);
    const tail = Buffer.concat([
      manifestEntry(a),
      rawHeader({ name: 'pipe', typeflag: '6', size: smuggled.length }),
      smuggled,
    ]);
    return {
      name: 'a FIFO entry whose "data" is a second manifest.json',
      path: writeFile('diff-fifo.tar', await withTail(rest, tail)),
      codes: ['NOT_A_TAR'],
      notes:
        'manifest.json (image a), a FIFO declaring the size of the next entry, manifest.json (image b): Go, Python and docker read b, lading skipped it',
    };
  },
  async () => {
    const { rest, a, b } = await twoImages('symlink-size');
    const smuggled = manifestEntry(b);
    const tail = Buffer.concat([
      manifestEntry(a),
      pax([paxRecord('size', String(smuggled.length))]),
      rawHeader({ name: 'link', typeflag: '2', linkname: 'manifest.json' }),
      smuggled,
    ]);
    return {
      name: 'a symlink with a pax size over a second manifest.json',
      path: writeFile('diff-symlink-size.tar', await withTail(rest, tail)),
      codes: ['NOT_A_TAR'],
      notes: 'GNU tar skips the "data", Go and Python read it as the next entry',
    };
  },
  async () => {
    const { rest, a, b } = await twoImages('dup-plain');
    return {
      name: 'manifest.json twice in a plain tar (same size)',
      path: await writeTar('diff-dup-manifest', [file('manifest.json', a), ...rest, file('manifest.json', b)]),
      codes: ['DUPLICATE_ENTRY'],
      notes: 'skopeo reads the first (image a), docker load the last (image b); lading read the last silently',
    };
  },
  async () => {
    const { rest, a, b } = await twoImages('dup-dot');
    return {
      name: './manifest.json, then manifest.json',
      path: await writeTar('diff-dup-dot-manifest', [file('./manifest.json', a), ...rest, file('manifest.json', b)]),
      codes: ['DUPLICATE_ENTRY'],
      notes: 'one path to every reader that cleans names',
    };
  },
  async () => {
    const store = new BlobStore();
    const m1 = putImageManifest(store, AMD64, await sampleLayers('diff-dup-index-1', ['gzip']));
    const m2 = putImageManifest(store, ARM64, await sampleLayers('diff-dup-index-2', ['gzip']));
    const i1 = indexJson([withAnnotations(m1.desc, { 'org.opencontainers.image.ref.name': 'x' })]);
    const i2 = indexJson([
      withAnnotations({ ...m2.desc, size: m1.desc.size }, { 'org.opencontainers.image.ref.name': 'x' }),
    ]);
    return {
      name: 'index.json twice (OCI archive)',
      path: await writeTar('diff-dup-index', [
        file('index.json', i1),
        ...store.entries(),
        file('oci-layout', OCI_LAYOUT),
        file('index.json', i2),
      ]),
      codes: ['DUPLICATE_ENTRY', 'SIZE_MISMATCH'],
      notes: 'two index.json of the same size naming two images',
    };
  },
  async () => {
    const store = new BlobStore();
    const m = putImageManifest(store, AMD64, await sampleLayers('diff-dup-config', ['gzip']));
    const real = store.blobs.get(m.config.digest)!;
    const forged = Buffer.from(real.toString().replace('amd64', 'arm64'));
    return {
      name: 'a config blob twice, the first copy forged',
      path: await writeTar('diff-dup-config', [
        file(`blobs/sha256/${hexOf(m.config.digest)}`, forged),
        ...store.entries(),
        file('index.json', indexJson([withAnnotations(m.desc, { 'org.opencontainers.image.ref.name': 'x' })])),
        file('oci-layout', OCI_LAYOUT),
      ]),
      codes: ['DUPLICATE_ENTRY'],
      notes: 'the last copy verifies against its digest; skopeo would read the first (arm64)',
    };
  },
  async () => {
    const { rest, a, b } = await twoImages('global-path');
    const tail = Buffer.concat([
      manifestEntry(a),
      pax([paxRecord('path', 'manifest.json')], 'g'),
      manifestEntry(b, 'notes.txt'),
    ]);
    return {
      name: 'a global pax path renaming a later entry to manifest.json',
      path: writeFile('diff-global-path.tar', await withTail(rest, tail)),
      codes: ['NOT_A_TAR'],
      notes: 'Python and GNU tar apply global records to later entries, Go does not',
    };
  },
  async () => {
    const { rest, a, b } = await twoImages('two-pax');
    const tail = Buffer.concat([
      pax([paxRecord('path', 'notes.txt')]),
      pax([paxRecord('path', 'manifest.json')]),
      manifestEntry(b, 'x'),
      manifestEntry(a),
    ]);
    return {
      name: 'two pax headers for one entry (Go keeps the second path, Python the first)',
      path: writeFile('diff-two-pax.tar', await withTail(rest, tail)),
      codes: ['NOT_A_TAR', 'DUPLICATE_ENTRY'],
      notes: 'x(path=notes.txt), x(path=manifest.json), entry with image b, then manifest.json with image a',
    };
  },
  async () => {
    const { rest, a, b } = await twoImages('gnu-two-l');
    const long = (s: string): Buffer =>
      rawEntry({ name: '././@LongLink', typeflag: 'L', magic: 'ustar  \0' }, Buffer.from(`${s}\0`));
    const tail = Buffer.concat([
      manifestEntry(a),
      long('manifest.json'),
      long('notes.txt'),
      rawEntry({ name: 'x', magic: 'ustar  \0' }, b),
    ]);
    return {
      name: 'two GNU long names for one entry',
      path: writeFile('diff-two-l.tar', await withTail(rest, tail)),
      codes: ['NOT_A_TAR'],
      notes: 'Python names the entry manifest.json (the first), Go notes.txt (the last)',
    };
  },
  async () => {
    const { rest, a, b } = await twoImages('zero-block');
    const tail = Buffer.concat([manifestEntry(a), Buffer.alloc(512), manifestEntry(b)]);
    return {
      name: 'a lone zero block, then a second manifest.json',
      path: writeFile('diff-zero-block.tar', await withTail(rest, tail)),
      codes: ['NOT_A_TAR'],
      notes: 'Python and GNU tar stop at the zero block, Go fails',
    };
  },
  async () => {
    const { rest, a, b } = await twoImages('sparse');
    // The sparse map (format 1.0): one data region, from offset 0, of the whole size.
    const map = Buffer.from(`1\n0\n${b.length}\n`.padEnd(512, '\0'));
    const sparse = Buffer.concat([
      pax([
        paxRecord('GNU.sparse.major', '1'),
        paxRecord('GNU.sparse.minor', '0'),
        paxRecord('GNU.sparse.name', 'manifest.json'),
        paxRecord('GNU.sparse.realsize', String(b.length)),
      ]),
      rawHeader({ name: 'GNUSparseFile.0/x', size: 512 + b.length }),
      pad(Buffer.concat([map, b])),
    ]);
    return {
      name: 'a pax GNU sparse entry that Go and Python rename to manifest.json',
      path: writeFile('diff-sparse.tar', await withTail(rest, Buffer.concat([manifestEntry(a), sparse]))),
      codes: ['NOT_A_TAR'],
      notes: 'GNU.sparse.name=manifest.json: lading used to read it as GNUSparseFile.0/x',
    };
  },
  async () => {
    const { rest, a, b } = await twoImages('fifo-gz');
    const smuggled = manifestEntry(b);
    const tail = Buffer.concat([
      manifestEntry(a),
      rawHeader({ name: 'pipe', typeflag: '6', size: smuggled.length }),
      smuggled,
    ]);
    return {
      name: 'a FIFO entry whose "data" is a second manifest.json (gzip)',
      path: writeFile('diff-fifo.tar.gz', gzipSync(await withTail(rest, tail))),
      codes: ['NOT_A_TAR'],
      notes: 'the one-pass reader',
    };
  },
];
