/**
 * Hostile archives crafted byte by byte, beyond those of test/fixtures/bad.ts: tar headers that
 * lie, names that are not names, JSON that declares gigabytes or nests a million deep, gzip bombs,
 * zstd frames asking for a 2 GiB window. Each builder writes a small file (never the big data a
 * bomb expands to) and says which error codes are a correct answer. No side effects at import.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { constants, createGzip, gzipSync } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
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
import { digestOf, file, freshPath, hexOf, json, symlink, tarBuffer, writeTree, type TarEntry } from '../fixtures/util';

const AMD64: PlatformSpec = { os: 'linux', architecture: 'amd64' };
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

export interface Hostile {
  name: string;
  path: string;
  /** Error codes that are a correct (safe) answer; the first is the expected one. */
  codes: string[];
  notes: string;
  /** Wall-clock bound for each of inspect and push. @default 20000 */
  timeMs?: number;
  /** Peak RSS bound. @default 300 */
  rssMiB?: number;
  /**
   * Options under which push must refuse it. A layer whose bytes match the digest its manifest
   * declares is pushed as it is unless its diff_id is checked too (`--verify-diff-ids`).
   */
  pushArgs?: string[];
}

// ---------------------------------------------------------------------------------------------
// raw tar

/** One 512-byte header with a correct checksum; `name`/`linkname` are raw bytes when Buffers. */
export function rawHeader(o: {
  name: string | Buffer;
  size?: number | Buffer;
  typeflag?: string;
  linkname?: string | Buffer;
  magic?: string;
}): Buffer {
  const h = Buffer.alloc(512);
  const put = (v: string | Buffer, at: number, len: number): void => {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    b.copy(h, at, 0, Math.min(len, b.length));
  };
  put(o.name, 0, 100);
  put('0000644\0', 100, 8);
  put('0000000\0', 108, 8);
  put('0000000\0', 116, 8);
  if (Buffer.isBuffer(o.size)) o.size.copy(h, 124, 0, 12);
  else put(`${(o.size ?? 0).toString(8).padStart(11, '0')}\0`, 124, 12);
  put('00000000000\0', 136, 12);
  put(o.typeflag ?? '0', 156, 1);
  if (o.linkname !== undefined) put(o.linkname, 157, 100);
  put(o.magic ?? 'ustar\0', 257, 6);
  put('00', 263, 2);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of h) sum += c;
  put(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8);
  return h;
}

export function pad(data: Buffer): Buffer {
  const r = data.length % 512;
  return r === 0 ? data : Buffer.concat([data, Buffer.alloc(512 - r)]);
}

/** A raw entry: header + data padded to a block. */
export function rawEntry(o: Parameters<typeof rawHeader>[0], data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([rawHeader({ size: data.length, ...o }), pad(data)]);
}

export function paxRecord(key: string, value: Buffer | string): Buffer {
  const body = Buffer.concat([
    Buffer.from(` ${key}=`),
    Buffer.isBuffer(value) ? value : Buffer.from(value),
    Buffer.from('\n'),
  ]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

export const END = Buffer.alloc(1024);

export function writeFile(name: string, data: Buffer): string {
  const p = freshPath(name);
  fs.writeFileSync(p, data);
  return p;
}

export async function writeTar(name: string, entries: readonly TarEntry[]): Promise<string> {
  return writeFile(`${name}.tar`, await tarBuffer(entries));
}

export async function legacy(tag: string, overrides: Partial<DockerArchiveImage> = {}): Promise<TarEntry[]> {
  const layers = overrides.layers ?? (await sampleLayers(tag, ['none', 'none']));
  const image: DockerArchiveImage = { repoTags: [`lading/${tag}:1`], platform: AMD64, layers, ...overrides };
  return dockerArchiveParts([image], { order: 'sorted', repositories: true, dirEntries: true }).entries;
}

/** Replaces manifest.json's content. */
export function withManifestJson(
  entries: TarEntry[],
  edit: (m: Array<Record<string, unknown>>) => unknown,
): TarEntry[] {
  return entries.map((e) => {
    if (e.name !== 'manifest.json' || e.type !== 'file') return e;
    const m = JSON.parse(e.data.toString()) as Array<Record<string, unknown>>;
    const out = edit(m);
    return file('manifest.json', Buffer.isBuffer(out) ? out : json(out));
  });
}

/** An OCI archive with one image; `edit` rewrites the manifest object before it is stored. */
async function ociWith(
  tag: string,
  edit: (manifest: Record<string, unknown>, store: BlobStore) => void,
  name = tag,
): Promise<string> {
  const store = new BlobStore();
  const m = putImageManifest(store, AMD64, await sampleLayers(tag, ['gzip']));
  const manifest = JSON.parse(store.blobs.get(m.desc.digest)!.toString()) as Record<string, unknown>;
  store.blobs.delete(m.desc.digest);
  edit(manifest, store);
  const d = store.put(json(manifest));
  const entries = [
    ...store.entries(),
    file(
      'index.json',
      indexJson([withAnnotations({ mediaType: MT.ociManifest, ...d }, { 'org.opencontainers.image.ref.name': tag })]),
    ),
    file('oci-layout', OCI_LAYOUT),
  ];
  return writeTar(name, entries);
}

/** An OCI archive whose index.json lists `top`. */
export async function ociIndexOnly(name: string, store: BlobStore, top: Descriptor[]): Promise<string> {
  return writeTar(name, [...store.entries(), file('index.json', indexJson(top)), file('oci-layout', OCI_LAYOUT)]);
}

// ---------------------------------------------------------------------------------------------
// builders

export const HOSTILE_BUILDERS: ReadonlyArray<() => Promise<Hostile>> = [
  // --- sizes that lie
  async () => {
    const data = Buffer.concat([
      rawEntry({ name: 'manifest.json' }, Buffer.from('[]')),
      rawHeader({ name: 'big/layer.tar', size: GiB }),
      Buffer.alloc(1024, 0x41),
    ]);
    return {
      name: 'tar size beyond the file (1 GiB declared, 1 KiB present)',
      path: writeFile('size-beyond.tar', data),
      codes: ['TRUNCATED'],
      notes: 'ustar header declaring 1 GiB, the file ends 1 KiB later',
    };
  },
  async () => {
    const size = Buffer.alloc(12, 0xff);
    size[0] = 0x80 | 0x3f;
    const data = Buffer.concat([rawHeader({ name: 'big/layer.tar', size }), Buffer.alloc(2048, 0x41)]);
    return {
      name: 'tar base-256 size of 2^93 bytes',
      path: writeFile('size-base256.tar', data),
      codes: ['LIMIT_EXCEEDED', 'TRUNCATED'],
      notes: 'GNU base-256 size field, every bit set but the sign',
    };
  },
  async () => {
    const pax = paxRecord('size', '18446744073709551615000');
    const data = Buffer.concat([
      rawEntry({ name: 'PaxHeaders/x', typeflag: 'x' }, pax),
      rawEntry({ name: 'x/layer.tar' }, Buffer.alloc(10)),
      END,
    ]);
    return {
      name: 'pax size record of 1.8e22 bytes',
      path: writeFile('pax-size.tar', data),
      codes: ['LIMIT_EXCEEDED', 'NOT_A_TAR', 'TRUNCATED'],
      notes: 'a pax "size" record larger than any file',
    };
  },
  async () => {
    const data = Buffer.concat([
      rawHeader({ name: 'PaxHeaders/x', typeflag: 'x', size: GiB }),
      Buffer.alloc(4096, 0x41),
    ]);
    return {
      name: 'pax header declaring 1 GiB of records',
      path: writeFile('pax-1gib.tar', data),
      codes: ['LIMIT_EXCEEDED', 'TRUNCATED'],
      notes: 'a pax extended header (typeflag x) of 1 GiB: must not be buffered',
    };
  },
  async () => {
    const data = Buffer.concat([
      rawHeader({ name: 'LongLink', typeflag: 'L', size: 512 * MiB }),
      Buffer.alloc(4096, 0x41),
    ]);
    return {
      name: 'GNU long name of 512 MiB',
      path: writeFile('gnu-longname.tar', data),
      codes: ['LIMIT_EXCEEDED', 'TRUNCATED'],
      notes: 'GNU ././@LongLink (typeflag L) of 512 MiB: must not be buffered',
    };
  },
  async () => {
    const p = await ociWith('size-small', (m) => {
      const l = (m.layers as Array<{ size: number }>)[0]!;
      l.size = Math.max(1, l.size - 100);
    });
    return {
      name: 'descriptor size smaller than the blob',
      path: p,
      codes: ['SIZE_MISMATCH'],
      notes: 'OCI archive: the layer descriptor says 100 bytes fewer than blobs/sha256/<d> holds',
    };
  },
  async () => {
    const p = await ociWith('size-huge', (m) => {
      (m.layers as Array<{ size: number }>)[0]!.size = 5 * GiB;
    });
    return {
      name: 'descriptor declares a 5 GiB layer',
      path: p,
      codes: ['SIZE_MISMATCH'],
      notes: 'OCI archive: a layer descriptor with size 5 GiB for a blob of a few KiB',
    };
  },
  async () => {
    const p = await ociWith('config-huge', (m) => {
      (m.config as { size: number }).size = 3 * GiB;
    });
    return {
      name: 'config descriptor declares 3 GiB',
      path: p,
      codes: ['JSON_TOO_LARGE', 'SIZE_MISMATCH'],
      notes: 'OCI archive: the config (JSON) descriptor has size 3 GiB',
    };
  },
  async () => {
    const store = new BlobStore();
    const m = putImageManifest(store, AMD64, await sampleLayers('manifest-huge', ['gzip']));
    const p = await ociIndexOnly('manifest-huge', store, [
      { ...m.desc, size: 4 * GiB, annotations: { 'org.opencontainers.image.ref.name': 'x' } },
    ]);
    return {
      name: 'index.json declares a 4 GiB manifest',
      path: p,
      codes: ['JSON_TOO_LARGE', 'SIZE_MISMATCH'],
      notes: 'the manifest descriptor in index.json has size 4 GiB',
    };
  },
  async () => {
    const p = await ociWith('size-negative', (m) => {
      (m.layers as Array<{ size: number }>)[0]!.size = -1;
    });
    return {
      name: 'negative descriptor size',
      path: p,
      codes: ['BAD_DESCRIPTOR', 'BAD_MANIFEST'],
      notes: 'a layer descriptor with size -1',
    };
  },
  // --- digests that lie or are not digests
  async () => {
    const p = await ociWith('digest-traversal', (m) => {
      (m.layers as Array<{ digest: string }>)[0]!.digest = 'sha256:../../../../etc/passwd';
    });
    return {
      name: 'descriptor digest sha256:../../etc/passwd',
      path: p,
      codes: ['BAD_DIGEST', 'BAD_DESCRIPTOR', 'BAD_MANIFEST'],
      notes: 'a digest that would be a path traversal if used as a file name',
    };
  },
  async () => {
    const p = await ociWith('digest-md5', (m) => {
      (m.layers as Array<{ digest: string }>)[0]!.digest = `md5:${'0'.repeat(32)}`;
    });
    return {
      name: 'descriptor digest with an unknown algorithm (md5)',
      path: p,
      codes: ['BAD_DIGEST', 'BAD_DESCRIPTOR', 'BAD_MANIFEST'],
      notes: 'md5:<32 hex>',
    };
  },
  async () => {
    const p = await ociWith('digest-upper', (m) => {
      const l = (m.layers as Array<{ digest: string }>)[0]!;
      l.digest = l.digest.toUpperCase().replace('SHA256', 'sha256');
    });
    return {
      name: 'descriptor digest in upper-case hex',
      path: p,
      codes: ['BAD_DIGEST', 'BAD_DESCRIPTOR', 'BAD_MANIFEST'],
      notes: 'sha256:ABCD... (the spec allows lower-case hex only)',
    };
  },
  // --- self reference, cycles, nesting, counts
  async () => {
    const entries = withManifestJson(await legacy('selfref'), (m) => [
      { ...m[0], Config: 'manifest.json', Layers: ['manifest.json'] },
    ]);
    return {
      name: 'manifest.json naming itself as config and layer',
      path: await writeTar('manifest-self', entries),
      codes: ['BAD_MANIFEST', 'BAD_JSON', 'DIFF_ID_MISMATCH'],
      notes: 'legacy manifest.json whose Config and only layer are manifest.json',
    };
  },
  async () => {
    const store = new BlobStore();
    const m = putImageManifest(store, AMD64, await sampleLayers('self-index', ['gzip']));
    const x = digestOf('self-index-node');
    let size = 0;
    let body: Buffer = Buffer.alloc(0);
    for (let i = 0; i < 10; i++) {
      body = json({
        schemaVersion: 2,
        mediaType: MT.ociIndex,
        manifests: [m.desc, { mediaType: MT.ociIndex, digest: x, size }],
      });
      if (body.length === size) break;
      size = body.length;
    }
    store.putAs(x, body);
    const p = await ociIndexOnly('self-index', store, [
      { mediaType: MT.ociIndex, digest: x, size, annotations: { 'org.opencontainers.image.ref.name': 'x' } },
    ]);
    return {
      name: 'index listing itself',
      path: p,
      codes: ['INDEX_CYCLE', 'DIGEST_MISMATCH'],
      notes: 'index X lists X (stored under a digest it cannot hash to)',
    };
  },
  async () => {
    const store = new BlobStore();
    const m = putImageManifest(store, AMD64, await sampleLayers('deep-index', ['gzip']));
    let top: Descriptor = m.desc;
    for (let i = 0; i < 20; i++) {
      const d = store.put(json({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: [top] }));
      top = { mediaType: MT.ociIndex, ...d };
    }
    const p = await ociIndexOnly('deep-index', store, [
      withAnnotations(top, { 'org.opencontainers.image.ref.name': 'x' }),
    ]);
    return {
      name: '20 levels of nested indexes (valid digests)',
      path: p,
      codes: ['LIMIT_EXCEEDED'],
      notes: 'a chain of 20 indexes, each with correct digests, over one image',
    };
  },
  async () => {
    const store = new BlobStore();
    const m = putImageManifest(store, AMD64, await sampleLayers('wide-index', ['gzip']));
    const manifests = Array.from({ length: 10_001 }, () => m.desc);
    const d = store.put(json({ schemaVersion: 2, mediaType: MT.ociIndex, manifests }));
    const p = await ociIndexOnly('wide-index', store, [
      { mediaType: MT.ociIndex, ...d, annotations: { 'org.opencontainers.image.ref.name': 'x' } },
    ]);
    return {
      name: 'index listing 10,001 manifests',
      path: p,
      codes: ['LIMIT_EXCEEDED'],
      notes: 'over the 10,000 manifests per document limit (valid digests)',
    };
  },
  async () => {
    const p = await ociWith('many-layers', (m) => {
      const l = (m.layers as unknown[])[0];
      m.layers = Array.from({ length: 10_001 }, () => l);
    });
    return {
      name: 'manifest listing 10,001 layers',
      path: p,
      codes: ['LIMIT_EXCEEDED'],
      notes: 'over the 10,000 layers per document limit',
    };
  },
  async () => {
    const entries = withManifestJson(await legacy('many-layers-legacy'), (m) => [
      { ...m[0], Layers: Array.from({ length: 10_001 }, () => (m[0]!.Layers as string[])[0]) },
    ]);
    return {
      name: 'manifest.json listing 10,001 layers',
      path: await writeTar('many-layers-legacy', entries),
      codes: ['LIMIT_EXCEEDED', 'DIFF_ID_MISMATCH', 'BAD_MANIFEST'],
      notes: 'legacy manifest.json repeating one layer 10,001 times',
    };
  },
  async () => {
    const depth = 1_000_000;
    const entries = withManifestJson(await legacy('deep-json'), () =>
      Buffer.from(`${'['.repeat(depth)}${']'.repeat(depth)}`),
    );
    return {
      name: 'manifest.json nested a million arrays deep',
      path: await writeTar('deep-json', entries),
      codes: ['BAD_MANIFEST', 'BAD_JSON', 'LIMIT_EXCEEDED'],
      notes: '[[[[...]]]] one million levels (2 MB, under the JSON size limit)',
    };
  },
  async () => {
    const depth = 500_000;
    const deep = Buffer.from(`${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`);
    const store = new BlobStore();
    const [layer] = await sampleLayers('deep-config', ['gzip']);
    store.put(layer!.data);
    const config = Buffer.concat([
      Buffer.from(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["${layer!.diffId}",`),
      deep,
      Buffer.from(']}}'),
    ]);
    const c = store.put(config);
    const m = store.put(
      json({
        schemaVersion: 2,
        mediaType: MT.ociManifest,
        config: { mediaType: MT.ociConfig, ...c },
        layers: [{ mediaType: MT.ociLayerGzip, digest: layer!.digest, size: layer!.size }],
      }),
    );
    const p = await ociIndexOnly('deep-config', store, [
      { mediaType: MT.ociManifest, ...m, annotations: { 'org.opencontainers.image.ref.name': 'x' } },
    ]);
    return {
      name: 'config nested 500,000 objects deep',
      path: p,
      codes: ['BAD_JSON', 'BAD_MANIFEST', 'BAD_DIGEST', 'LIMIT_EXCEEDED'],
      notes:
        'a config whose rootfs.diff_ids[1] nests {"a":{"a":...}} 500,000 levels (3 MB). (Deep nesting in a member lading never reads, such as "config", is valid JSON and accepted: the config is pushed byte for byte.)',
    };
  },
  // --- names
  async () => {
    const pax = paxRecord('path', Buffer.from('manifest.json\0/../../evil'));
    const data = Buffer.concat([
      rawEntry({ name: 'PaxHeaders/m', typeflag: 'x' }, pax),
      rawEntry({ name: 'manifest.json' }, Buffer.from('[]')),
      END,
    ]);
    return {
      name: 'NUL byte inside a pax path',
      path: writeFile('nul-pax.tar', data),
      codes: ['UNSAFE_PATH', 'NOT_A_TAR'],
      notes: 'pax path "manifest.json\\0/../../evil"',
    };
  },
  async () => {
    const entries = withManifestJson(await legacy('nul-ref'), (m) => [
      { ...m[0], Layers: (m[0]!.Layers as string[]).map((l, i) => (i === 0 ? `${l}\u0000.evil` : l)) },
    ]);
    return {
      name: 'NUL byte in a layer name of manifest.json',
      path: await writeTar('nul-ref', entries),
      codes: ['UNSAFE_PATH', 'BLOB_MISSING', 'BAD_MANIFEST'],
      notes: 'manifest.json Layers[0] = "<id>/layer.tar\\u0000.evil"',
    };
  },
  async () => {
    const data = Buffer.concat([
      rawEntry({ name: Buffer.from([0x62, 0xff, 0xfe, 0x2f, 0x6c]) }, Buffer.from('x')),
      END,
    ]);
    return {
      name: 'invalid UTF-8 in a ustar name',
      path: writeFile('bad-utf8.tar', data),
      codes: ['UNSAFE_PATH'],
      notes: 'name bytes 62 ff fe 2f 6c',
    };
  },
  async () => {
    const pax = paxRecord('path', Buffer.from([0x61, 0xc3, 0x28, 0x2f, 0x62]));
    const data = Buffer.concat([
      rawEntry({ name: 'PaxHeaders/u', typeflag: 'x' }, pax),
      rawEntry({ name: 'placeholder' }, Buffer.from('x')),
      END,
    ]);
    return {
      name: 'invalid UTF-8 in a pax path',
      path: writeFile('bad-utf8-pax.tar', data),
      codes: ['UNSAFE_PATH'],
      notes: 'pax path bytes 61 c3 28 2f 62 (a broken 2-byte sequence)',
    };
  },
  async () => {
    const data = Buffer.concat([rawEntry({ name: 'x', typeflag: '2', linkname: Buffer.from([0xc0, 0xaf]) }), END]);
    return {
      name: 'invalid UTF-8 (overlong "/") in a link target',
      path: writeFile('bad-utf8-link.tar', data),
      codes: ['UNSAFE_PATH'],
      notes: 'linkname c0 af, the overlong encoding of "/"',
    };
  },
  async () => {
    const entries = await legacy('ustar-prefix');
    const tar = await tarBuffer(entries);
    const evil = Buffer.concat([rawEntry({ name: 'evil' }, Buffer.from('x')).subarray(0, 512), Buffer.alloc(512)]);
    // prefix field (345..500) = "../.." : the joined name is ../../evil
    evil.write('../..', 345, 'latin1');
    evil.fill(0x20, 148, 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += evil[i]!;
    evil.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    evil.write('x', 512);
    return {
      name: 'ustar prefix field "../.."',
      path: writeFile('ustar-prefix.tar', Buffer.concat([evil, tar])),
      codes: ['UNSAFE_PATH'],
      notes: 'a name split over the ustar prefix field, joining to ../../evil',
    };
  },
  // --- links
  async () => {
    const entries = await legacy('hardlink-escape');
    const victim = entries.find((e) => e.name.endsWith('/layer.tar'))!.name;
    const out = entries.map((e): TarEntry =>
      e.name === victim ? { type: 'hardlink', name: victim, target: '../../etc/passwd' } : e,
    );
    return {
      name: 'hard link to ../../etc/passwd',
      path: await writeTar('hardlink-escape', out),
      codes: ['UNSAFE_PATH', 'SYMLINK_ESCAPE', 'BLOB_MISSING'],
      notes: `${victim} is a hard link to ../../etc/passwd`,
    };
  },
  async () => {
    const entries = await legacy('hardlink-abs');
    const victim = entries.find((e) => e.name.endsWith('/layer.tar'))!.name;
    const out = entries.map((e): TarEntry =>
      e.name === victim ? { type: 'hardlink', name: victim, target: '/etc/passwd' } : e,
    );
    return {
      name: 'hard link to /etc/passwd',
      path: await writeTar('hardlink-abs', out),
      codes: ['UNSAFE_PATH', 'SYMLINK_ESCAPE', 'BLOB_MISSING'],
      notes: `${victim} is a hard link to the absolute /etc/passwd`,
    };
  },
  async () => {
    const entries = await legacy('hardlink-self');
    const victim = entries.find((e) => e.name.endsWith('/layer.tar'))!.name;
    const out = entries.map((e): TarEntry =>
      e.name === victim ? { type: 'hardlink', name: victim, target: victim } : e,
    );
    return {
      name: 'hard link to itself',
      path: await writeTar('hardlink-self', out),
      codes: ['SYMLINK_LOOP', 'BLOB_MISSING', 'UNSAFE_PATH'],
      notes: `${victim} is a hard link to ${victim}`,
    };
  },
  async () => {
    const entries = await legacy('symlink-abs');
    const victim = entries.find((e) => e.name.endsWith('/layer.tar'))!.name;
    const out = entries.map((e) => (e.name === victim ? symlink(victim, '/etc/passwd') : e));
    return {
      name: 'symlink to the absolute /etc/passwd',
      path: await writeTar('symlink-abs', out),
      codes: ['SYMLINK_ESCAPE', 'UNSAFE_PATH'],
      notes: `${victim} -> /etc/passwd`,
    };
  },
  async () => {
    const entries = await legacy('symlink-dir');
    const victim = entries.find((e) => e.name.endsWith('/layer.tar'))!.name;
    const out = withManifestJson([symlink('up', '..'), ...entries.filter((e) => e.name !== victim)], (m) => [
      { ...m[0], Layers: (m[0]!.Layers as string[]).map((l) => (l === victim ? 'up/up/up/etc/passwd' : l)) },
    ]);
    return {
      name: 'symlinked directory climbing out (up -> ..)',
      path: await writeTar('symlink-dir', out),
      codes: ['SYMLINK_ESCAPE', 'UNSAFE_PATH'],
      notes: 'entry up -> .., manifest.json names up/up/up/etc/passwd as a layer',
    };
  },
  async () => {
    const chain: TarEntry[] = Array.from({ length: 60 }, (_, i) => symlink(`l${i}`, `l${i + 1}`));
    const entries = await legacy('symlink-chain');
    const victim = entries.find((e) => e.name.endsWith('/layer.tar'))!;
    const out = [
      ...chain,
      file('l60', victim.type === 'file' ? victim.data : ''),
      ...withManifestJson(entries, (m) => [
        { ...m[0], Layers: (m[0]!.Layers as string[]).map((l) => (l === victim.name ? 'l0' : l)) },
      ]),
    ];
    return {
      name: 'chain of 60 symlinks',
      path: await writeTar('symlink-chain', out),
      codes: ['SYMLINK_LOOP', 'LIMIT_EXCEEDED'],
      notes: 'l0 -> l1 -> ... -> l60 (a real file): more hops than any sane archive',
    };
  },
  async () => {
    const entries = await legacy('dup-layer');
    const victim = entries.find((e) => e.name.endsWith('/layer.tar'))!.name;
    const out = [...entries, file(victim, 'other bytes entirely')];
    return {
      name: 'layer entry twice with different content',
      path: await writeTar('dup-layer', out),
      codes: ['DUPLICATE_ENTRY'],
      notes: `${victim} appears again at the end with other bytes`,
    };
  },
  // --- wrong magic
  async () => {
    const data = Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0xff]), Buffer.alloc(4096, 0x07)]);
    return {
      name: 'gzip magic, then garbage',
      path: writeFile('gzip-garbage.tar.gz', data),
      codes: ['DECOMPRESSION_FAILED'],
      notes: 'a gzip header followed by 4 KiB of 0x07: a deflate block of the reserved type 3',
    };
  },
  async () => {
    const data = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(4096, 0xee)]);
    return {
      name: 'zstd magic, then garbage',
      path: writeFile('zstd-garbage.tar.zst', data),
      codes: ['DECOMPRESSION_FAILED', 'LIMIT_EXCEEDED'],
      notes: 'zstd magic followed by 4 KiB of 0xee',
    };
  },
  async () => {
    const data = Buffer.concat([Buffer.from([0x04, 0x22, 0x4d, 0x18]), Buffer.alloc(1024, 1)]);
    return {
      name: 'lz4 magic',
      path: writeFile('x.tar.lz4', data),
      codes: ['UNSUPPORTED_COMPRESSION'],
      notes: 'an lz4 frame magic',
    };
  },
  async () => {
    const tar = await tarBuffer(await legacy('bad-magic'));
    tar.write('XXXXX\0', 257, 'latin1'); // first header's magic; checksum now wrong too
    return {
      name: 'tar magic and checksum overwritten',
      path: writeFile('bad-magic.tar', tar),
      codes: ['NOT_A_TAR'],
      notes: 'a valid docker save whose first header has magic XXXXX',
    };
  },
  async () => {
    return {
      name: 'empty file',
      path: writeFile('empty.tar', Buffer.alloc(0)),
      codes: ['NOT_A_TAR', 'TRUNCATED', 'NO_MANIFEST'],
      notes: 'zero bytes',
    };
  },
  // --- bombs and huge windows
  async () => {
    // 64 MiB of zeros deflate to ~64 KiB; 32 members of it inflate to 2 GiB. Zeros are also two
    // end-of-archive blocks: a reader should stop there, long before the end.
    const member = gzipSync(Buffer.alloc(64 * MiB), { level: 9 });
    const data = Buffer.concat(Array.from({ length: 32 }, () => member));
    return {
      name: 'gzip bomb: 2 GiB of zeros in 2 MiB',
      path: writeFile('bomb-zeros.tar.gz', data),
      codes: ['NO_MANIFEST', 'NOT_A_TAR', 'LIMIT_EXCEEDED'],
      notes: `32 concatenated gzip members, ${(data.length / MiB).toFixed(1)} MiB inflating to 2 GiB of zeros`,
      timeMs: 15_000,
    };
  },
  async () => {
    // A tar entry of 8 GiB - 1 (the largest octal size), its data zeros, in gzip: the stream
    // reader must skip it with bounded memory; then the archive ends with no manifest.
    const hdr = rawHeader({ name: 'blobs/sha256/' + 'a'.repeat(64), size: 0o77777777777 });
    const zeros = gzipSync(Buffer.alloc(64 * MiB), { level: 9 });
    const head = gzipSync(hdr);
    const data = Buffer.concat([head, ...Array.from({ length: 16 }, () => zeros)]);
    return {
      name: 'gzip bomb: one 8 GiB entry, 1 GiB of it present',
      path: writeFile('bomb-entry.tar.gz', data),
      codes: ['TRUNCATED', 'NO_MANIFEST', 'LIMIT_EXCEEDED'],
      notes: 'a header declaring 8 GiB, then 1 GiB of zeros (1 MiB compressed); no manifest',
      timeMs: 30_000,
    };
  },
  async () => {
    // A layer that inflates to 2 GiB: its diff_id cannot match (the config names the real small
    // layer's diff_id), and verifying it must stream, not buffer.
    const [layer] = await sampleLayers('bomb-layer', ['none']);
    const member = gzipSync(Buffer.alloc(64 * MiB), { level: 9 });
    const bomb = Buffer.concat([gzipSync(layer!.tar), ...Array.from({ length: 32 }, () => member)]);
    const bombLayer = {
      ...layer!,
      compression: 'gzip' as const,
      data: bomb,
      digest: digestOf(bomb),
      size: bomb.length,
    };
    const store = new BlobStore();
    const m = putImageManifest(store, AMD64, [bombLayer]);
    const p = await ociIndexOnly('bomb-layer', store, [
      withAnnotations(m.desc, { 'org.opencontainers.image.ref.name': 'x' }),
    ]);
    return {
      name: 'gzip bomb layer: 2 GiB in 2 MiB',
      path: p,
      codes: ['DIFF_ID_MISMATCH', 'LIMIT_EXCEEDED', 'DECOMPRESSION_FAILED'],
      notes: 'an OCI archive whose gzip layer is a real tar followed by 32 gzip members of 64 MiB zeros',
      timeMs: 30_000,
      pushArgs: ['--verify-diff-ids'],
    };
  },
  async () => {
    // Frame header: magic, descriptor 0x00 (no single segment, no checksum, no dict, no size),
    // window descriptor exponent 21 -> window log 31 (2 GiB), then a raw block.
    const frame = Buffer.concat([
      Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3]),
      Buffer.from([0x01 | (0 << 1) | ((512 << 3) & 0xff), (512 << 3) >> 8, 0]),
      Buffer.alloc(512),
    ]);
    return {
      name: 'zstd frame asking for a 2 GiB window',
      path: writeFile('zstd-window.tar.zst', frame),
      codes: ['DECOMPRESSION_FAILED', 'LIMIT_EXCEEDED'],
      notes: 'whole archive: a zstd frame header with window log 31',
    };
  },
  async () => {
    const frame = Buffer.concat([
      Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3]),
      Buffer.from([0x01 | ((512 << 3) & 0xff), (512 << 3) >> 8, 0]),
      Buffer.alloc(512),
    ]);
    const [layer] = await sampleLayers('zstd-window-layer', ['none']);
    const zl = { ...layer!, compression: 'zstd' as const, data: frame, digest: digestOf(frame), size: frame.length };
    const store = new BlobStore();
    const m = putImageManifest(store, AMD64, [zl]);
    const p = await ociIndexOnly('zstd-window-layer', store, [
      withAnnotations(m.desc, { 'org.opencontainers.image.ref.name': 'x' }),
    ]);
    return {
      name: 'zstd layer asking for a 2 GiB window',
      path: p,
      codes: ['DECOMPRESSION_FAILED', 'LIMIT_EXCEEDED', 'DIFF_ID_MISMATCH'],
      notes: 'an OCI archive whose zstd layer frame has window log 31',
      pushArgs: ['--verify-diff-ids'],
    };
  },
  // --- counts
  async () => {
    // A million empty files, gzip-compressed on the fly (the 512 MiB tar never exists whole).
    const p = freshPath('million.tar.gz');
    const count = 1_000_000;
    async function* blocks(): AsyncGenerator<Buffer> {
      const batch: Buffer[] = [];
      for (let i = 0; i < count; i++) {
        batch.push(rawHeader({ name: `f/${i.toString(36)}` }));
        if (batch.length === 2048) yield Buffer.concat(batch.splice(0));
      }
      batch.push(END);
      yield Buffer.concat(batch);
    }
    await pipeline(
      Readable.from(blocks()),
      createGzip({ level: 1, strategy: constants.Z_DEFAULT_STRATEGY }),
      fs.createWriteStream(p),
    );
    return {
      name: 'a million tiny entries (gzip)',
      path: p,
      codes: ['LIMIT_EXCEEDED'],
      notes: `one million empty files, ${(fs.statSync(p).size / MiB).toFixed(1)} MiB compressed`,
      timeMs: 20_000,
    };
  },
  async () => {
    // The same, uncompressed, but only 100,001 entries are written (the reader stops at the limit).
    const blocks: Buffer[] = [];
    for (let i = 0; i <= 100_000; i++) blocks.push(rawHeader({ name: `f/${i.toString(36)}` }));
    blocks.push(END);
    return {
      name: '100,001 tiny entries (plain tar, seekable reader)',
      path: writeFile('many.tar', Buffer.concat(blocks)),
      codes: ['LIMIT_EXCEEDED'],
      notes: '100,001 empty files, 49 MiB',
    };
  },
  // --- an OCI layout directory with hostile names
  async () => {
    const store = new BlobStore();
    const m = putImageManifest(store, AMD64, await sampleLayers('dir-traversal', ['gzip']));
    const root = freshPath('dir-traversal');
    writeTree(root, [
      ...store.entries(),
      file(
        'index.json',
        indexJson([
          {
            ...m.desc,
            digest: 'sha256:../../../../../../etc/passwd',
            annotations: { 'org.opencontainers.image.ref.name': 'x' },
          },
        ]),
      ),
      file('oci-layout', OCI_LAYOUT),
    ]);
    return {
      name: 'OCI layout directory: index.json digest sha256:../../etc/passwd',
      path: root,
      codes: ['BAD_DIGEST', 'BAD_DESCRIPTOR', 'BAD_MANIFEST'],
      notes: 'a directory reader must never turn a digest into a path before validating it',
    };
  },
  async () => {
    const store = new BlobStore();
    const m = putImageManifest(store, AMD64, await sampleLayers('dir-hexname', ['gzip']));
    const root = freshPath('dir-hexname');
    writeTree(root, [
      ...store.entries(),
      file('index.json', indexJson([withAnnotations(m.desc, { 'org.opencontainers.image.ref.name': 'x' })])),
      file('oci-layout', OCI_LAYOUT),
    ]);
    // the layer blob replaced by a FIFO: opening it would block forever
    const layerPath = `${root}/blobs/sha256/${hexOf(m.layers[0]!.layer.digest)}`;
    fs.rmSync(layerPath);
    try {
      execFileSync('mkfifo', [layerPath]);
    } catch {
      fs.writeFileSync(layerPath, 'x');
    }
    return {
      name: 'OCI layout directory: a layer blob that is a FIFO',
      path: root,
      codes: ['BLOB_MISSING', 'IO', 'SIZE_MISMATCH', 'UNSAFE_PATH'],
      notes: 'blobs/sha256/<layer> is a named pipe: opening it must not hang',
    };
  },
];
