import { existsSync } from 'node:fs';
import { LadingError } from '../errors';

/**
 * skopeo's transport syntax, which people paste: `docker-archive:PATH[:REF]`,
 * `oci-archive:PATH[:REF]` and `oci:DIR[:REF]` name an archive (REF picks the image, as
 * `--image` does; `@N` the Nth); `docker://` prefixes a registry destination. A path that
 * exists as given is a path, whatever colons it holds. Split at the first colon after the
 * transport, as containers/image does.
 */
export interface ArchiveArg {
  path: string;
  image?: string;
}

const SOURCES = ['docker-archive:', 'oci-archive:', 'oci:'];

/** Transports lading cannot read, and what to do instead. */
const UNREADABLE: Record<string, string> = {
  'containers-storage:':
    'podman or buildah storage: export it first (podman save -o app.tar IMAGE, or --format oci-archive)',
  'docker-daemon:': 'a docker daemon: export it first (docker save -o app.tar IMAGE)',
  'docker://':
    'a registry: lading pushes archives; copy between registries with skopeo or crane, or pull into an archive first',
  'dir:': "skopeo's dir: layout: copy it into an OCI archive first (skopeo copy dir:DIR oci-archive:app.tar)",
  'tarball:': 'a single layer tarball: build an image archive from it first',
  'sif:': 'a Singularity image: convert it to an OCI archive first',
};

export function parseArchiveArg(arg: string): ArchiveArg {
  if (arg === '-' || existsSync(arg)) return { path: arg };
  for (const [prefix, what] of Object.entries(UNREADABLE)) {
    if (arg.startsWith(prefix)) throw new LadingError('USAGE', `${arg.slice(0, 200)} names ${what}`);
  }
  for (const prefix of SOURCES) {
    if (!arg.startsWith(prefix)) continue;
    const rest = arg.slice(prefix.length);
    const colon = rest.indexOf(':');
    const path = colon < 0 ? rest : rest.slice(0, colon);
    const image = colon < 0 ? undefined : rest.slice(colon + 1);
    if (path === '') throw new LadingError('USAGE', `${prefix} needs a path, e.g. ${prefix}./app.tar`);
    if (image === '')
      throw new LadingError('USAGE', `${arg.slice(0, 200)}: the image reference after the path is empty`);
    return image === undefined ? { path } : { path, image };
  }
  return { path: arg };
}

/** A DESTINATION as pasted from skopeo: `docker://` stripped; archive transports refused. */
export function parseDestinationArg(arg: string): string {
  if (arg.startsWith('docker://')) return arg.slice('docker://'.length);
  for (const prefix of ['docker-archive:', 'oci-archive:', 'containers-storage:', 'docker-daemon:', 'dir:']) {
    if (arg.startsWith(prefix)) {
      throw new LadingError(
        'USAGE',
        `lading pushes to a registry (host/repo[:tag], docker://host/repo) or an OCI layout directory (oci:DIR), not to ${prefix.slice(0, -1)}`,
      );
    }
  }
  return arg;
}
