/**
 * The benchmark's input archives, generated once and cached under the bench work dir
 * (`$LADING_BENCH_DIR`, default /tmp/lading-bench), one folder per layer size:
 *
 * - `push-docker.tar`: a legacy `docker save` archive (manifest.json, <id>/layer.tar,
 *   <config>.json, repositories) with uncompressed layers: four layers of random data
 *   and one layer of text files (5 x 256 MiB = 1.25 GiB at full size).
 * - `push-oci.tar`: the same image as an OCI archive (oci-layout, index.json, blobs/)
 *   with gzip layers (pigz -6 when installed, else Node zlib level 6).
 * - `inspect.tar`: a ~1 GiB legacy docker archive, uncompressed (three random layers
 *   and the text layer).
 * - `inspect.tar.gz`: that archive gzip-compressed as a whole.
 *
 * Random data comes from `crypto.randomBytes`; the text is words drawn by a seeded PRNG
 * from a generated vocabulary with a Zipf distribution, as in natural text and code
 * (gzip -1 makes it ~2.6x smaller).
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { tarHeader } from '../src/archive/tar-writer';

const MiB = 1024 * 1024;
const CHUNK = 4 * MiB;
const INPUTS_VERSION = 2;

export interface LayerFile {
  path: string;
  /** sha256 of the uncompressed layer tar (= its diff_id). */
  digest: string;
  size: number;
  kind: 'random' | 'text' | 'real';
  /** gzip copy, for the OCI archive. */
  gz: { path: string; digest: string; size: number };
}

export interface BenchInputs {
  dir: string;
  layerMiB: number;
  layers: LayerFile[];
  /** Legacy docker-archive, uncompressed layers: random x4 + text. */
  dockerArchive: string;
  /** OCI archive, gzip layers, same image. */
  ociArchive: string;
  /** ~1 GiB docker-archive (random x3 + text), uncompressed. */
  inspectArchive: string;
  /** inspectArchive gzip-compressed as a whole. */
  inspectGzip: string;
  /** Sum of the layer sizes in each image (uncompressed). */
  pushImageBytes: number;
  inspectImageBytes: number;
}

export function sha256File(path: string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  const buf = Buffer.allocUnsafe(CHUNK);
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, CHUNK, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return `sha256:${h.digest('hex')}`;
}

/** Writes a tar file; sources are Buffers or paths of files copied in 4 MiB chunks. Returns its sha256. */
function writeTar(
  path: string,
  entries: { name: string; type?: 'file' | 'directory'; data?: Buffer; file?: string; size?: number }[],
): string {
  const h = createHash('sha256');
  const tmp = `${path}.partial`;
  const fd = openSync(tmp, 'w');
  const write = (b: Buffer): void => {
    h.update(b);
    let off = 0;
    while (off < b.length) off += writeSync(fd, b, off, b.length - off);
  };
  const buf = Buffer.allocUnsafe(CHUNK);
  try {
    for (const e of entries) {
      if (e.type === 'directory') {
        write(tarHeader(e.name, 0, 'directory'));
        continue;
      }
      const size = e.data ? e.data.length : statSync(e.file!).size;
      write(tarHeader(e.name, size));
      if (e.data) write(e.data);
      else {
        const src = openSync(e.file!, 'r');
        try {
          for (;;) {
            const n = readSync(src, buf, 0, CHUNK, null);
            if (n === 0) break;
            write(buf.subarray(0, n));
          }
        } finally {
          closeSync(src);
        }
      }
      const pad = (512 - (size % 512)) % 512;
      if (pad > 0) write(Buffer.alloc(pad));
    }
    write(Buffer.alloc(1024));
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  return `sha256:${h.digest('hex')}`;
}

/** xorshift32: fast, seeded, good enough to pick words. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/**
 * Words as natural text and code use them: Zipf-distributed (the n-th most frequent word
 * about 1/n as often as the first), frequent words short. `pick` maps a 16-bit random
 * number to a word index with that distribution.
 */
interface Vocabulary {
  words: Buffer[];
  pick: Uint16Array;
}

function textBlock(next: () => number, vocab: Vocabulary, size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let off = 0;
  let inLine = 0;
  const lineWords = (): number => 4 + (next() % 12);
  let target = lineWords();
  while (off < size) {
    const w = vocab.words[vocab.pick[next() & 0xffff]!]!;
    const n = Math.min(w.length, size - off);
    w.copy(out, off, 0, n);
    off += n;
    if (off >= size) break;
    if (++inLine >= target) {
      out[off++] = 0x0a;
      inLine = 0;
      target = lineWords();
    } else out[off++] = next() % 11 === 0 ? 0x2c : 0x20;
  }
  return out;
}

function vocabulary(next: () => number): Vocabulary {
  const letters = 'etaoinshrdlcumwfgypbvkjxqz';
  const words: Buffer[] = [];
  for (const kw of [
    'the',
    'of',
    'and',
    'to',
    'in',
    'is',
    'const',
    'return',
    'function',
    'if',
    'import',
    'export',
    'INFO',
    'DEBUG',
    'request',
    'status=200',
    '{',
    '}',
    '();',
    '0x7f',
  ]) {
    words.push(Buffer.from(kw));
  }
  while (words.length < 4096) {
    const rank = words.length;
    const len = 2 + Math.floor(Math.log2(rank + 1) / 2) + (next() % 4);
    let w = '';
    // Skewed toward frequent letters, as in English.
    for (let j = 0; j < len; j++) w += letters[Math.min(next() % 26, next() % 26)];
    words.push(Buffer.from(w));
  }
  const weights = words.map((_, i) => 1 / (i + 1));
  const total = weights.reduce((a, b) => a + b, 0);
  const pick = new Uint16Array(65536);
  let acc = 0;
  let word = 0;
  for (let i = 0; i < 65536; i++) {
    while (word < words.length - 1 && ((acc + weights[word]!) / total) * 65536 <= i) acc += weights[word++]!;
    pick[i] = word;
  }
  return { words, pick };
}

/** A layer tar holding one file of random data (`bytes` long). */
function randomLayer(path: string, index: number, bytes: number): string {
  const h = createHash('sha256');
  const tmp = `${path}.partial`;
  const fd = openSync(tmp, 'w');
  const write = (b: Buffer): void => {
    h.update(b);
    let off = 0;
    while (off < b.length) off += writeSync(fd, b, off, b.length - off);
  };
  try {
    write(tarHeader('data/', 0, 'directory'));
    write(tarHeader(`data/random-${index}.bin`, bytes));
    for (let left = bytes; left > 0; left -= CHUNK) write(randomBytes(Math.min(CHUNK, left)));
    const pad = (512 - (bytes % 512)) % 512;
    if (pad > 0) write(Buffer.alloc(pad));
    write(Buffer.alloc(1024));
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  return `sha256:${h.digest('hex')}`;
}

/** A layer tar of text files, 4 MiB each, `bytes` of text in all. */
function textLayer(path: string, bytes: number): string {
  const next = prng(0x1ad16);
  const vocab = vocabulary(next);
  const h = createHash('sha256');
  const tmp = `${path}.partial`;
  const fd = openSync(tmp, 'w');
  const write = (b: Buffer): void => {
    h.update(b);
    let off = 0;
    while (off < b.length) off += writeSync(fd, b, off, b.length - off);
  };
  try {
    write(tarHeader('text/', 0, 'directory'));
    let i = 0;
    for (let left = bytes; left > 0; left -= CHUNK, i++) {
      const n = Math.min(CHUNK, left);
      write(tarHeader(`text/file-${String(i).padStart(4, '0')}.txt`, n));
      write(textBlock(next, vocab, n));
      const pad = (512 - (n % 512)) % 512;
      if (pad > 0) write(Buffer.alloc(pad));
    }
    write(Buffer.alloc(1024));
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  return `sha256:${h.digest('hex')}`;
}

function hasPigz(): boolean {
  return spawnSync('pigz', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** gzip level 6 (the default of gzip, Go and docker): pigz when installed (2 threads), else Node zlib. */
async function gzipFile(src: string, dest: string): Promise<void> {
  const tmp = `${dest}.partial`;
  if (hasPigz()) {
    const out = openSync(tmp, 'w');
    try {
      await new Promise<void>((resolve, reject) => {
        const p = spawn('pigz', ['-6', '-n', '-c', src], { stdio: ['ignore', out, 'inherit'] });
        p.once('error', reject);
        p.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`pigz exited ${code}`))));
      });
    } finally {
      closeSync(out);
    }
  } else {
    await pipeline(createReadStream(src), zlib.createGzip({ level: 6 }), createWriteStream(tmp));
  }
  renameSync(tmp, dest);
}

function configFor(layers: LayerFile[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: '2026-01-01T00:00:00Z',
      config: { Env: ['PATH=/usr/bin:/bin'], Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      history: layers.map((l, i) => ({
        created: '2026-01-01T00:00:00Z',
        created_by: `lading bench: ${l.kind} layer ${i}`,
      })),
    }),
  );
}

const hex = (d: string): string => d.slice('sha256:'.length);

export function writeDockerArchive(path: string, layers: LayerFile[], name: string): void {
  const config = configFor(layers);
  const configName = `${hex(`sha256:${createHash('sha256').update(config).digest('hex')}`)}.json`;
  // v1 ids: the chain of layer digests, as docker save names its directories.
  const ids: string[] = [];
  let parent = '';
  for (const l of layers) {
    parent = createHash('sha256').update(`${parent}\n${l.digest}`).digest('hex');
    ids.push(parent);
  }
  const [repo, tag] = name.split(':') as [string, string];
  const manifest = Buffer.from(
    JSON.stringify([{ Config: configName, RepoTags: [name], Layers: ids.map((id) => `${id}/layer.tar`) }]),
  );
  const repositories = Buffer.from(JSON.stringify({ [repo]: { [tag]: ids[ids.length - 1] } }));
  const entries: Parameters<typeof writeTar>[1] = [];
  layers.forEach((l, i) => {
    const id = ids[i]!;
    entries.push({ name: `${id}/`, type: 'directory' });
    entries.push({ name: `${id}/VERSION`, data: Buffer.from('1.0') });
    entries.push({
      name: `${id}/json`,
      data: Buffer.from(
        JSON.stringify({ id, parent: i > 0 ? ids[i - 1] : undefined, created: '2026-01-01T00:00:00Z' }),
      ),
    });
    entries.push({ name: `${id}/layer.tar`, file: l.path });
  });
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  entries.push({ name: configName, data: config });
  entries.push({ name: 'manifest.json', data: manifest });
  entries.push({ name: 'repositories', data: repositories });
  writeTar(path, entries);
}

function writeOciArchive(path: string, layers: LayerFile[], tag: string): void {
  const config = configFor(layers);
  const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
      layers: layers.map((l) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: l.gz.digest,
        size: l.gz.size,
      })),
    }),
  );
  const manifestDigest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: manifestDigest,
          size: manifest.length,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  writeTar(path, [
    { name: 'oci-layout', data: Buffer.from(JSON.stringify({ imageLayoutVersion: '1.0.0' })) },
    { name: 'blobs/', type: 'directory' },
    { name: 'blobs/sha256/', type: 'directory' },
    ...layers.map((l) => ({ name: `blobs/sha256/${hex(l.gz.digest)}`, file: l.gz.path })),
    { name: `blobs/sha256/${hex(configDigest)}`, data: config },
    { name: `blobs/sha256/${hex(manifestDigest)}`, data: manifest },
    { name: 'index.json', data: index },
  ]);
}

/** Generates (or reuses) every input for layers of `layerMiB` MiB. */
export async function prepareInputs(
  benchDir: string,
  layerMiB: number,
  log: (s: string) => void,
): Promise<BenchInputs> {
  const dir = join(benchDir, `inputs-${layerMiB}m`);
  const marker = join(dir, 'inputs.json');
  if (existsSync(marker)) {
    try {
      const cached = JSON.parse(readFileSync(marker, 'utf8')) as BenchInputs & { version: number };
      const files = [cached.dockerArchive, cached.ociArchive, cached.inspectArchive, cached.inspectGzip];
      if (cached.version === INPUTS_VERSION && files.every((f) => existsSync(f))) {
        log(`inputs: reusing ${dir}`);
        return cached;
      }
    } catch {
      // regenerate
    }
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const bytes = layerMiB * MiB;
  const layers: LayerFile[] = [];
  const t0 = Date.now();
  for (let i = 0; i < 4; i++) {
    const path = join(dir, `layer-random-${i}.tar`);
    log(`inputs: random layer ${i + 1}/4 (${layerMiB} MiB)`);
    const digest = randomLayer(path, i, bytes);
    layers.push({ path, digest, size: statSync(path).size, kind: 'random', gz: { path: '', digest: '', size: 0 } });
  }
  {
    const path = join(dir, 'layer-text.tar');
    log(`inputs: text layer (${layerMiB} MiB)`);
    const digest = textLayer(path, bytes);
    layers.push({ path, digest, size: statSync(path).size, kind: 'text', gz: { path: '', digest: '', size: 0 } });
  }
  for (const l of layers) {
    const gz = `${l.path}.gz`;
    log(`inputs: gzip -6 ${l.path}`);
    await gzipFile(l.path, gz);
    l.gz = { path: gz, digest: sha256File(gz), size: statSync(gz).size };
  }
  const dockerArchive = join(dir, 'push-docker.tar');
  const ociArchive = join(dir, 'push-oci.tar');
  const inspectArchive = join(dir, 'inspect.tar');
  const inspectGzip = join(dir, 'inspect.tar.gz');
  log('inputs: docker-archive (uncompressed layers)');
  writeDockerArchive(dockerArchive, layers, 'lading-bench:latest');
  log('inputs: OCI archive (gzip layers)');
  writeOciArchive(ociArchive, layers, 'latest');
  const inspectLayers = [layers[0]!, layers[1]!, layers[2]!, layers[4]!];
  log('inputs: inspect archive');
  writeDockerArchive(inspectArchive, inspectLayers, 'lading-bench-inspect:latest');
  log('inputs: inspect archive, gzip as a whole');
  await gzipFile(inspectArchive, inspectGzip);
  // The layer tars and their gzip copies are inside the archives now: keep only the archives.
  for (const l of layers) {
    rmSync(l.path, { force: true });
    rmSync(l.gz.path, { force: true });
  }
  const result: BenchInputs = {
    dir,
    layerMiB,
    layers,
    dockerArchive,
    ociArchive,
    inspectArchive,
    inspectGzip,
    pushImageBytes: layers.reduce((s, l) => s + l.size, 0),
    inspectImageBytes: inspectLayers.reduce((s, l) => s + l.size, 0),
  };
  writeFileSync(marker, JSON.stringify({ version: INPUTS_VERSION, ...result }, null, 2));
  log(`inputs: ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return result;
}
