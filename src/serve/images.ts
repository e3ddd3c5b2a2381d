/**
 * PutImage's rules, shared by the ECR API and `PUT /v2/<name>/manifests/<ref>`:
 * the manifest must parse, its media type must be known, its digest must match the one
 * given, its config and (non-foreign) layers must be blobs of the repository, an index's
 * children must be images of the repository, and an immutable tag cannot move.
 */
import { isLadingError } from '../errors';
import { digestOf, type Digest } from '../image/digest';
import { parseManifestDocument, type ManifestDocument } from '../image/manifest';
import { isForeignLayerMediaType } from '../image/media-types';
import { ApiError } from './errors';
import { wildcardMatch } from './names';
import type { Repository, RepositorySettings, Storage } from './storage';

/** ECR's limit on imageManifest (characters; the registry API applies it to bytes). */
export const MAX_MANIFEST = 4194304;

export interface PutImageInput {
  /** The manifest's exact bytes. */
  bytes: Buffer;
  /** imageManifestMediaType, or the Content-Type of a registry PUT. */
  mediaType?: string;
  tag?: string;
  /** imageDigest, or the digest reference of a registry PUT. */
  digest?: Digest;
}

export interface PutImageResult {
  digest: Digest;
  mediaType: string;
  doc: ManifestDocument;
  /** False when the image and tag were already there (ECR: ImageAlreadyExistsException). */
  changed: boolean;
}

export function tagIsImmutable(settings: RepositorySettings, tag: string): boolean {
  const filters = settings.imageTagMutabilityExclusionFilters ?? [];
  const excluded = filters.some((f) => wildcardMatch(f.filter, tag));
  switch (settings.imageTagMutability) {
    case 'IMMUTABLE':
      return true;
    case 'IMMUTABLE_WITH_EXCLUSION':
      return !excluded;
    case 'MUTABLE_WITH_EXCLUSION':
      return excluded;
    default:
      return false;
  }
}

export function notFoundRepository(name: string, registryId: string): ApiError {
  return new ApiError(
    'RepositoryNotFoundException',
    `The repository with name '${name}' does not exist in the registry with id '${registryId}'`,
  );
}

/** Parses and checks a manifest without touching the repository (outside the lock). */
export function parseForPut(input: PutImageInput): { doc: ManifestDocument; digest: Digest; mediaType: string } {
  let own: unknown;
  try {
    own = (JSON.parse(input.bytes.toString('utf8')) as { mediaType?: unknown } | null)?.mediaType;
  } catch {
    throw new ApiError(
      'InvalidParameterException',
      "Invalid parameter at 'imageManifest' failed to satisfy constraint: 'Invalid JSON syntax'",
    );
  }
  if (own !== undefined && typeof own !== 'string')
    throw new ApiError('InvalidParameterException', "Invalid parameter at 'imageManifest': mediaType must be a string");
  if (own === undefined && input.mediaType === undefined) {
    throw new ApiError(
      'InvalidParameterException',
      "Invalid parameter at 'imageManifestMediaType': the manifest has no mediaType field, so imageManifestMediaType is required",
    );
  }
  if (own !== undefined && input.mediaType !== undefined && own !== input.mediaType) {
    throw new ApiError(
      'InvalidParameterException',
      `Invalid parameter at 'imageManifestMediaType': '${input.mediaType}' does not match the manifest's mediaType '${own}'`,
    );
  }
  let doc: ManifestDocument;
  try {
    doc = parseManifestDocument(input.bytes, 'imageManifest', own ?? input.mediaType);
  } catch (e) {
    if (isLadingError(e))
      throw new ApiError('InvalidParameterException', `Invalid parameter at 'imageManifest': ${e.message}`);
    throw e;
  }
  const digest = digestOf(input.bytes);
  if (input.digest !== undefined && input.digest !== digest) {
    throw new ApiError(
      'ImageDigestDoesNotMatchException',
      `The digest '${input.digest}' does not match the digest '${digest}' of the manifest`,
    );
  }
  return { doc, digest, mediaType: doc.mediaType };
}

/**
 * Applies a put. `api` decides what an unchanged put is: an error for ECR's PutImage
 * (ImageAlreadyExistsException), a success for the registry API.
 */
export async function putImage(
  storage: Storage,
  repo: Repository,
  input: PutImageInput,
  registryId: string,
): Promise<PutImageResult> {
  const { doc, digest, mediaType } = parseForPut(input);
  return repo.lock.run(async () => {
    if (storage.get(repo.name) !== repo) throw notFoundRepository(repo.name, registryId);
    if (doc.kind === 'manifest') {
      const needed = [doc.config, ...doc.layers.filter((l) => !isForeignLayerMediaType(l.mediaType))];
      const missing: Digest[] = [];
      for (const d of needed)
        if (!missing.includes(d.digest) && (await storage.blobSize(repo, d.digest)) === undefined)
          missing.push(d.digest);
      if (missing.length > 0) {
        throw new ApiError(
          'LayersNotFoundException',
          `Layers with digests '[${missing.join(', ')}]' required for pushing image into repository with name '${repo.name}' in the registry with id '${registryId}' do not exist`,
        );
      }
    } else {
      const missing = [...new Set(doc.manifests.map((m) => m.digest))].filter((d) => !repo.images.has(d));
      if (missing.length > 0) {
        throw new ApiError(
          'ReferencedImagesNotFoundException',
          `Manifests with digests '[${missing.join(', ')}]' referenced by the index do not exist in the repository with name '${repo.name}' in the registry with id '${registryId}': push them before the index`,
        );
      }
    }
    const existing = repo.images.get(digest);
    const tag = input.tag;
    if (tag !== undefined) {
      const owner = repo.tags.get(tag);
      if (owner === digest) {
        return { digest, mediaType, doc, changed: false };
      }
      if (owner !== undefined && tagIsImmutable(repo.settings, tag)) {
        throw new ApiError(
          'ImageTagAlreadyExistsException',
          `The image tag '${tag}' already exists in the '${repo.name}' repository and cannot be overwritten because the tag is immutable.`,
        );
      }
    } else if (existing) {
      return { digest, mediaType, doc, changed: false };
    }
    if (!existing) {
      await storage.writeBlob(repo, digest, input.bytes);
      repo.images.set(digest, { digest, mediaType, size: input.bytes.length, pushedAt: new Date() });
    }
    if (tag !== undefined) {
      repo.tags.delete(tag);
      repo.tags.set(tag, digest);
    }
    await storage.writeIndex(repo);
    return { digest, mediaType, doc, changed: true };
  });
}

/** An image by digest or tag; undefined when the repository has none. */
export function resolveImage(repo: Repository, id: { imageDigest?: string; imageTag?: string }): Digest | undefined {
  if (id.imageTag !== undefined) {
    const d = repo.tags.get(id.imageTag);
    if (d === undefined || (id.imageDigest !== undefined && id.imageDigest !== d)) return undefined;
    return d;
  }
  if (id.imageDigest !== undefined && repo.images.has(id.imageDigest as Digest)) return id.imageDigest as Digest;
  return undefined;
}

export function checkManifestSize(bytes: Buffer | string): void {
  if (bytes.length > MAX_MANIFEST) {
    throw new ApiError(
      'InvalidParameterException',
      `Invalid parameter at 'imageManifest' failed to satisfy constraint: 'Member must have length less than or equal to ${MAX_MANIFEST}'`,
    );
  }
}
