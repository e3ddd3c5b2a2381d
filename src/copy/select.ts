import type { ArchiveImage, ManifestInfo } from '../archive/model';
import { LadingError } from '../errors';
import { formatPlatform, platformMatches, type Platform } from '../image/platform';
import { isValidTag, parseReference } from '../reference/reference';

/**
 * The tags an image carries in its archive, in order: the tag of each `RepoTags` entry and
 * `io.containerd.image.name` (`app:1.2`, `registry/app:1.2`), and `org.opencontainers.image.ref.name`
 * when it is a bare tag (`1.2`, as skopeo and buildx write it) or a full reference. Names with
 * no tag, or only a digest, give none.
 */
export function archiveTags(image: ArchiveImage): string[] {
  const out: string[] = [];
  for (const name of image.names) {
    if (!name.includes('/') && !name.includes(':') && !name.includes('@')) {
      if (isValidTag(name)) out.push(name);
      continue;
    }
    try {
      const tag = parseReference(name).tag;
      if (tag !== undefined) out.push(tag);
    } catch {
      // not a reference: no tag from it
    }
  }
  return [...new Set(out)];
}

/** `docker.io/library/busybox:latest`, `busybox` and `busybox:latest` name the same image. */
export function normalizeImageName(name: string): string {
  let n = name.trim();
  if (n.startsWith('docker.io/')) n = n.slice('docker.io/'.length);
  if (n.startsWith('index.docker.io/')) n = n.slice('index.docker.io/'.length);
  if (n.startsWith('library/')) n = n.slice('library/'.length);
  const slash = n.lastIndexOf('/');
  if (!n.includes('@') && !n.slice(slash + 1).includes(':')) n = `${n}:latest`;
  return n;
}

function describe(img: ArchiveImage): string {
  return img.names.length > 0 ? img.names.join(' = ') : `(unnamed ${img.digest ?? 'image'})`;
}

/** Chooses the image to copy: by name (or digest) when given; the only one otherwise. */
export function selectImage(images: ArchiveImage[], name: string | undefined, where: string): ArchiveImage {
  if (name === undefined) {
    if (images.length === 1) return images[0]!;
    throw new LadingError(
      'AMBIGUOUS_IMAGE',
      `${where} holds ${images.length} images: ${images.map(describe).join(', ')}`,
      { remedy: 'choose-image' },
    );
  }
  // skopeo's docker-archive:PATH:@N, the Nth image of the archive (from 0).
  const index = /^@(\d{1,6})$/.exec(name);
  if (index) {
    const img = images[Number(index[1])];
    if (img) return img;
    throw new LadingError(
      'IMAGE_NOT_FOUND',
      `${where} has no image @${index[1]}: it holds ${images.length} (@0..@${images.length - 1})`,
    );
  }
  const want = normalizeImageName(name);
  const found = images.filter(
    (img) => img.digest === name || img.names.some((n) => n === name || normalizeImageName(n) === want),
  );
  if (found.length === 1) return found[0]!;
  if (found.length > 1) {
    throw new LadingError(
      'AMBIGUOUS_IMAGE',
      `--image ${name} matches ${found.length} images in ${where}: ${found.map((i) => i.digest ?? describe(i)).join(', ')}; use a digest`,
    );
  }
  throw new LadingError(
    'IMAGE_NOT_FOUND',
    `${where} has no image named ${name}; it holds: ${images.map(describe).join(', ')}`,
  );
}

function platformOf(m: ManifestInfo): string {
  return m.platform ? formatPlatform(m.platform) : 'unknown';
}

export interface PlatformChoice {
  manifests: ManifestInfo[];
  /** true when the original top-level document is pushed as is (all platforms). */
  all: boolean;
}

/**
 * Platform selection. None asked: every manifest (attestations included) must be in the
 * archive. Asked: each platform must match an available, non-attestation manifest.
 */
export function selectPlatforms(image: ArchiveImage, wanted: Platform[], where: string): PlatformChoice {
  const runnable = image.manifests.filter((m) => !m.attestation);
  if (wanted.length === 0) {
    const missing = image.manifests.filter((m) => !m.available);
    if (missing.length > 0) {
      const have = runnable.filter((m) => m.available).map(platformOf);
      throw new LadingError(
        'BLOB_MISSING',
        `${where}: the image lists ${image.manifests.length} manifests but the archive lacks the content of ${missing.length} (${[...new Set(missing.map(platformOf))].join(', ')}); it holds ${have.join(', ') || 'none'}`,
        { remedy: 'choose-platforms' },
      );
    }
    return { manifests: image.manifests, all: true };
  }
  const chosen: ManifestInfo[] = [];
  for (const p of wanted) {
    const match = runnable.find((m) => m.available && m.platform !== undefined && platformMatches(p, m.platform));
    if (!match) {
      const unavailable = runnable.find((m) => m.platform !== undefined && platformMatches(p, m.platform));
      throw new LadingError(
        'PLATFORM_NOT_FOUND',
        unavailable
          ? `${where}: platform ${formatPlatform(p)} is listed but its content is not in the archive`
          : `${where}: no ${formatPlatform(p)} image; the archive has ${runnable.map(platformOf).join(', ') || 'no platform information'}`,
      );
    }
    if (!chosen.includes(match)) chosen.push(match);
  }
  return { manifests: chosen, all: false };
}
