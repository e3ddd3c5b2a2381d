import type { Platform } from '../image/platform';
import { openArchive, type ArchiveInput, type ImageArchive, type OpenArchiveOptions } from './archive';
import type { ArchiveFormat } from './model';
import type { Compression } from '../image/media-types';

/** The document `lading inspect --json` prints (documented in the README). */
export interface InspectResult {
  format: ArchiveFormat;
  compression: Compression;
  images: InspectImage[];
}

export interface InspectImage {
  names: string[];
  digest: string | null;
  mediaType: string;
  manifests: InspectManifest[];
  /** Present when the archive says something lading accepted with a warning. */
  warnings?: string[];
}

export interface InspectManifest {
  digest: string;
  mediaType: string;
  available: boolean;
  attestation?: true;
  platform: { os: string; architecture: string; variant?: string } | null;
  config: { digest: string; size: number } | null;
  layers: { digest: string; size: number; mediaType: string; diffId: string }[];
}

function platformJson(p: Platform | undefined): InspectManifest['platform'] {
  if (!p) return null;
  const out: { os: string; architecture: string; variant?: string } = { os: p.os, architecture: p.architecture };
  if (p.variant) out.variant = p.variant;
  return out;
}

/** The inspect document of an opened archive (after `verify()` or `resolveSynthesized()`). */
export function describeArchive(a: ImageArchive): InspectResult {
  return {
    format: a.format,
    compression: a.compression,
    images: a.images.map((img) => ({
      names: img.names,
      digest: img.digest ?? null,
      mediaType: img.mediaType,
      manifests: img.manifests.map((m) => {
        const out: InspectManifest = {
          digest: m.descriptor.digest,
          mediaType: m.descriptor.mediaType,
          available: m.available,
          platform: platformJson(m.platform),
          config: m.config ? { digest: m.config.descriptor.digest, size: m.config.descriptor.size } : null,
          layers: m.layers.map((l) => ({
            digest: l.descriptor!.digest,
            size: l.descriptor!.size,
            mediaType: l.descriptor!.mediaType,
            diffId: l.diffId ?? '',
          })),
        };
        if (m.attestation) out.attestation = true;
        return out;
      }),
      ...(img.warnings ? { warnings: img.warnings } : {}),
    })),
  };
}

export interface InspectOptions extends OpenArchiveOptions {
  /** Read and verify every blob (default true). Without it, only what the model needs is read. */
  verify?: boolean;
}

/** Opens, reads and (by default) fully verifies an archive, and describes it. */
export async function inspectArchive(input: ArchiveInput, opts: InspectOptions = {}): Promise<InspectResult> {
  const a = await openArchive(input, opts);
  try {
    if (opts.verify ?? true) await a.verify({ signal: opts.signal });
    else for (const img of a.images) await a.resolveSynthesized(img, opts.signal);
    return describeArchive(a);
  } finally {
    await a.close();
  }
}
