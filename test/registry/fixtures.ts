/**
 * Small builders shared by the registry tests: blobs, sources that count re-opens,
 * manifests of each media type, and skopeo as an independent reader. No side effects at
 * import (node --test runs every file under test/).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { digestOf, MediaType, type Digest } from '../../src/image';
import type { BlobSource } from '../../src/registry';

export interface Blob {
  bytes: Buffer;
  digest: Digest;
  size: number;
}

export function blob(bytes: Buffer | string): Blob {
  const b = Buffer.from(bytes);
  return { bytes: b, digest: digestOf(b), size: b.length };
}

export function randomBlob(size: number): Blob {
  return blob(randomBytes(size));
}

/** Splits into pieces of `piece` bytes so streaming code sees several chunks. */
export function pieces(bytes: Buffer, piece = 64 * 1024): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += piece) out.push(bytes.subarray(i, i + piece));
  return out;
}

/** A BlobSource over a buffer that counts how often it was opened. */
export function source(
  b: Blob,
  known: { digest?: boolean; size?: boolean } = { digest: true, size: true },
): BlobSource & { opens: number } {
  const s: BlobSource & { opens: number } = {
    opens: 0,
    open: () => {
      s.opens++;
      return Readable.from(pieces(b.bytes));
    },
  };
  if (known.digest === true) s.digest = b.digest;
  if (known.size === true) s.size = b.size;
  return s;
}

export function descriptor(mediaType: string, b: Blob): { mediaType: string; digest: Digest; size: number } {
  return { mediaType, digest: b.digest, size: b.size };
}

export function ociManifest(config: Blob, layers: Blob[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: descriptor(MediaType.OciConfig, config),
      layers: layers.map((l) => descriptor(MediaType.OciLayerGzip, l)),
    }),
  );
}

export function dockerManifest(config: Blob, layers: Blob[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.DockerManifest,
      config: descriptor(MediaType.DockerConfig, config),
      layers: layers.map((l) => descriptor(MediaType.DockerLayerGzip, l)),
    }),
  );
}

export function ociIndex(manifests: { bytes: Buffer; architecture: string }[]): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: manifests.map((m) => ({
        mediaType: MediaType.OciManifest,
        digest: digestOf(m.bytes),
        size: m.bytes.length,
        platform: { os: 'linux', architecture: m.architecture },
      })),
    }),
  );
}

export function configBlob(architecture = 'amd64'): Blob {
  return blob(JSON.stringify({ architecture, os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: {} }));
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/** `skopeo inspect --raw` of a pushed manifest: the exact bytes as another client reads them. */
export function skopeoInspectRaw(
  host: string,
  repository: string,
  reference: string,
  creds?: { username: string; password: string },
): Promise<Buffer> {
  const sep = reference.includes(':') && reference.startsWith('sha') ? '@' : ':';
  return new Promise((resolve, reject) => {
    execFile(
      'skopeo',
      [
        'inspect',
        '--tls-verify=false',
        '--raw',
        ...(creds ? ['--creds', `${creds.username}:${creds.password}`] : ['--no-creds']),
        `docker://${host}/${repository}${sep}${reference}`,
      ],
      { encoding: 'buffer', timeout: 20_000 },
      (err, stdout, stderr) =>
        err ? reject(new Error(`skopeo failed: ${err.message} ${stderr.toString()}`)) : resolve(stdout),
    );
  });
}
