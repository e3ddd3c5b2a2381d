/**
 * Shared by the fault, concurrency, signal and secret tests: archives big enough for a push
 * to be mid-flight, the CLI in-process with --json, and the checks that matter after a fault:
 * a tag, when it exists, points at an image whose every child and blob exists (through the
 * registry API, for docker-registry and lading serve alike), and skopeo reads it whole.
 * No side effects at import.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { main } from '../../src/cli/main';
import { dockerArchiveParts } from '../fixtures/docker';
import {
  BlobStore,
  OCI_LAYOUT,
  indexJson,
  makeLayer,
  putImageManifest,
  putIndex,
  withAnnotations,
} from '../fixtures/image';
import { dir, file, pseudoRandom, tarBuffer } from '../fixtures/util';

export const MiB = 1024 * 1024;

export function workDir(prefix = 'lading-faults-'): { dir: string; remove(): void } {
  const d = mkdtempSync(join(tmpdir(), prefix));
  return { dir: d, remove: () => rmSync(d, { recursive: true, force: true }) };
}

/**
 * A docker save (legacy) archive: `layers` uncompressed layers of `layerBytes` incompressible
 * bytes each (so lading gzips them on the way), unique to `tag`.
 */
export async function legacyArchive(path: string, tag: string, layers = 2, layerBytes = 2 * MiB): Promise<string> {
  const ls = await Promise.all(
    Array.from({ length: layers }, (_, i) =>
      makeLayer([dir(`d${i}/`), file(`d${i}/data.bin`, pseudoRandom(`${tag}-${i}`, layerBytes))]),
    ),
  );
  const { entries } = dockerArchiveParts(
    [{ repoTags: [`lading/${tag}:1`], platform: { os: 'linux', architecture: 'amd64' }, layers: ls }],
    { order: 'sorted', repositories: true, dirEntries: true },
  );
  writeFileSync(path, await tarBuffer(entries));
  return path;
}

/** An OCI archive holding a two-platform index (gzip layers), so a push writes children, then the index. */
export async function multiPlatformArchive(path: string, tag: string, layerBytes = 1 * MiB): Promise<string> {
  const store = new BlobStore();
  const children = [];
  for (const arch of ['amd64', 'arm64']) {
    const layers = await Promise.all(
      [0, 1].map((i) => makeLayer([file(`${arch}-${i}.bin`, pseudoRandom(`${tag}-${arch}-${i}`, layerBytes))], 'gzip')),
    );
    const m = putImageManifest(store, { os: 'linux', architecture: arch }, layers);
    children.push({ ...m.desc, platform: { os: 'linux', architecture: arch } });
  }
  const idx = putIndex(store, children);
  writeFileSync(
    path,
    await tarBuffer([
      ...store.entries(),
      file('index.json', indexJson([withAnnotations(idx, { 'org.opencontainers.image.ref.name': tag })])),
      file('oci-layout', OCI_LAYOUT),
    ]),
  );
  return path;
}

export interface PushResult {
  code: number;
  json: {
    digest?: string;
    blobs?: { uploaded: number; skipped: number; bytesUploaded: number };
    error?: { code: string; message: string };
  };
  stdout: string;
  stderr: string;
}

/** `lading push ARCHIVE DEST --json ...extra`, in-process. */
export async function push(
  archive: string,
  dest: string,
  extra: string[],
  env: NodeJS.ProcessEnv,
): Promise<PushResult> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['push', archive, dest, '--json', ...extra], {
    stdout: (s) => out.push(s),
    stderr: (s) => err.push(s),
    env,
  });
  const stdout = out.join('\n');
  let json: PushResult['json'] = {};
  try {
    json = JSON.parse(stdout) as PushResult['json'];
  } catch {
    // left empty: the assertion that follows shows stdout
  }
  return { code, json, stdout, stderr: err.join('\n') };
}

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

interface Doc {
  manifests?: Array<{ digest: string }>;
  config?: { digest: string };
  layers?: Array<{ digest: string }>;
}

/**
 * Reads a tag through the registry API (`base` is `http://host/v2/repo`). Undefined when the tag
 * does not exist; otherwise the list of problems (missing children or blobs, digest mismatches),
 * empty when the image is whole.
 */
export async function tagProblems(
  base: string,
  tag: string,
  headers: Record<string, string> = {},
): Promise<{ digest: string; problems: string[] } | undefined> {
  const get = async (ref: string): Promise<{ status: number; body: Buffer; digest: string | null }> => {
    const r = await fetch(`${base}/manifests/${ref}`, { headers: { accept: MANIFEST_ACCEPT, ...headers } });
    return {
      status: r.status,
      body: Buffer.from(await r.arrayBuffer()),
      digest: r.headers.get('docker-content-digest'),
    };
  };
  const top = await get(tag);
  if (top.status === 404) return undefined;
  if (top.status !== 200) throw new Error(`GET ${base}/manifests/${tag}: ${top.status} ${top.body.toString()}`);
  const problems: string[] = [];
  const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  const walk = async (body: Buffer, where: string): Promise<void> => {
    const doc = JSON.parse(body.toString()) as Doc;
    for (const m of doc.manifests ?? []) {
      const child = await get(m.digest);
      if (child.status !== 200) problems.push(`${where}: child ${m.digest} is ${child.status}`);
      else if (sha(child.body) !== m.digest) problems.push(`${where}: child ${m.digest} has other bytes`);
      else await walk(child.body, m.digest);
    }
    for (const b of [...(doc.config ? [doc.config] : []), ...(doc.layers ?? [])]) {
      const r = await fetch(`${base}/blobs/${b.digest}`, { method: 'HEAD', headers, redirect: 'manual' });
      if (r.status !== 200 && r.status !== 307) problems.push(`${where}: blob ${b.digest} is ${r.status}`);
    }
  };
  await walk(top.body, tag);
  return { digest: sha(top.body), problems };
}

export function run(cmd: string, args: string[], timeoutMs = 120_000): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * MiB, encoding: 'buffer' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr.toString()}`));
      else resolve({ stdout: stdout.toString('latin1'), stderr: stderr.toString() });
    });
  });
}

/**
 * The independent check: skopeo reads the manifest (its sha256 must be `digest`) and copies
 * the whole image, every platform, to an OCI layout (verifying every blob).
 */
export async function skopeoVerify(ref: string, digest: string, creds?: string): Promise<void> {
  const auth = creds ? ['--creds', creds] : [];
  const raw = await run('skopeo', ['inspect', '--tls-verify=false', ...auth, '--raw', `docker://${ref}`]);
  const got = `sha256:${createHash('sha256').update(Buffer.from(raw.stdout, 'latin1')).digest('hex')}`;
  if (got !== digest) throw new Error(`skopeo inspect --raw ${ref}: digest ${got}, expected ${digest}`);
  const w = workDir('lading-skopeo-');
  try {
    await run('skopeo', [
      'copy',
      '--all',
      '--preserve-digests',
      '--src-tls-verify=false',
      ...(creds ? ['--src-creds', creds] : []),
      `docker://${ref}`,
      `oci:${join(w.dir, 'oci')}:x`,
    ]);
  } finally {
    w.remove();
  }
}
