/**
 * Run by the TarballImage construct in a child process at synth time (construct code is
 * synchronous; lading's readers are not): opens the archive, verifies it (unless told not
 * to), selects the image and platform as the handler will, and prints one JSON line.
 * Reads only the local file: no network.
 */
import { openArchive } from '../archive/archive';
import { layerCompressionOf } from '../image/media-types';
import { formatPlatform, parsePlatform } from '../image/platform';
import { selectImage, selectPlatforms } from '../copy/select';
import type { SynthCheckRequest, SynthCheckResponse } from './synth-check-protocol';

export type { SynthCheckManifest, SynthCheckRequest, SynthCheckResponse } from './synth-check-protocol';

export async function synthCheck(req: SynthCheckRequest): Promise<SynthCheckResponse> {
  try {
    const archive = await openArchive(req.tarball);
    try {
      if (req.verify) await archive.verify();
      const image = selectImage(archive.images, req.imageName, archive.where);
      if (!req.verify) await archive.resolveSynthesized(image);
      const choice = selectPlatforms(image, req.platform ? [parsePlatform(req.platform)] : [], archive.where);
      return {
        ok: {
          format: archive.format,
          compression: archive.compression,
          names: image.names,
          mediaType: image.mediaType,
          all: choice.all,
          manifests: choice.manifests.map((m) => ({
            platform: m.platform ? formatPlatform(m.platform) : null,
            attestation: m.attestation === true,
            mediaType: m.descriptor.mediaType,
            layers: m.layers.map((l) =>
              l.descriptor ? (layerCompressionOf(l.descriptor.mediaType) ?? 'unknown') : 'none',
            ),
          })),
        },
      };
    } finally {
      await archive.close();
    }
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return { error: { code: err.code ?? 'ERROR', message: err.message ?? String(e) } };
  }
}

if (require.main === module) {
  const req = JSON.parse(process.argv[2] ?? '{}') as SynthCheckRequest;
  void synthCheck(req).then((r) => process.stdout.write(`${JSON.stringify(r)}\n`));
}
