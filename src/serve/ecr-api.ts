/**
 * The ECR API (AWS JSON 1.1): `POST /` with `X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.<Op>`.
 * Shapes follow the service model shipped in @aws-sdk/client-ecr (timestamps as epoch
 * seconds, errors as `{"__type", "message"}` plus the `X-Amzn-Errortype` header).
 * Every request's AWS Signature Version 4 is verified (sigv4.ts) unless the server was told not to.
 */
import { randomUUID } from 'node:crypto';
import { isDigest, type Digest } from '../image/digest';
import type { TokenStore } from './auth';
import { ApiError } from './errors';
import { BodyTooLarge, readBody, reply, type Exchange } from './http';
import { checkManifestSize, notFoundRepository, putImage, resolveImage } from './images';
import {
  decodeToken,
  encodeToken,
  isSha256Digest,
  isTag,
  REPOSITORY_NAME,
  repositoryNameProblem,
  WILDCARD_FILTER,
} from './names';
import { verifySignature, type SecretLookup } from './sigv4';
import {
  Mutex,
  type ExclusionFilter,
  type ImageRecord,
  type Repository,
  type Storage,
  type TagMutability,
} from './storage';
import type { Uploads } from './uploads';

export const TARGET_PREFIX = 'AmazonEC2ContainerRegistry_V20150921.';
const JSON_TYPE = 'application/x-amz-json-1.1';
const MiB = 1024 * 1024;
/** InitiateLayerUpload's partSize, and the largest part UploadLayerPart takes (ECR quota, not adjustable). */
export const PART_SIZE = 10 * MiB;
/** Parts other than the last must be at least this big (ECR quota): checked by CompleteLayerUpload. */
export const MIN_PART_SIZE = 5 * MiB;
/** A 20 MiB part (the model's limit) in base64 plus the JSON around it. */
const MAX_BODY = 32 * MiB;

/** What the API handlers share with the server. */
export interface ServeState {
  storage: Storage;
  uploads: Uploads;
  tokens: TokenStore;
  registryId: string;
  /** Fixed region for ARNs; otherwise the one in the request's SigV4 credential scope. */
  region: string | undefined;
  /** The secrets of the access keys whose signatures are accepted; undefined: signatures are not verified. */
  secretOf: SecretLookup | undefined;
  /** `127.0.0.1:PORT`. */
  host(): string;
  /** Creations and deletions of repositories, one at a time. */
  reposLock: Mutex;
  log(line: string): void;
}

type Body = Record<string, unknown>;
type Handler = (s: ServeState, b: Body, region: string) => Promise<Record<string, unknown>>;

const MUTABILITIES: readonly TagMutability[] = [
  'MUTABLE',
  'IMMUTABLE',
  'MUTABLE_WITH_EXCLUSION',
  'IMMUTABLE_WITH_EXCLUSION',
];

function invalid(param: string, what: string): ApiError {
  return new ApiError(
    'InvalidParameterException',
    `Invalid parameter at '${param}' failed to satisfy constraint: '${what}'`,
  );
}

function str(b: Body, k: string, required: true): string;
function str(b: Body, k: string, required?: false): string | undefined;
function str(b: Body, k: string, required = false): string | undefined {
  const v = b[k];
  if (v === undefined || v === null) {
    if (required) throw invalid(k, 'Member must not be null');
    return undefined;
  }
  if (typeof v !== 'string') throw invalid(k, 'Member must be a string');
  return v;
}

function int(b: Body, k: string, min: number, max: number): number | undefined {
  const v = b[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)
    throw invalid(k, `Member must be an integer between ${min} and ${max}`);
  return v;
}

function list(b: Body, k: string, min: number, max: number, required: boolean): unknown[] | undefined {
  const v = b[k];
  if (v === undefined || v === null) {
    if (required) throw invalid(k, 'Member must not be null');
    return undefined;
  }
  if (!Array.isArray(v) || v.length < min || v.length > max)
    throw invalid(k, `Member must have length between ${min} and ${max}`);
  return v;
}

function checkRegistry(s: ServeState, b: Body, name: string): void {
  const id = str(b, 'registryId');
  if (id === undefined) return;
  if (!/^[0-9]{12}$/.test(id))
    throw invalid('registryId', "Member must satisfy regular expression pattern: '[0-9]{12}'");
  if (id !== s.registryId) throw notFoundRepository(name, id);
}

function repoOf(s: ServeState, b: Body): Repository {
  const name = str(b, 'repositoryName', true);
  if (!REPOSITORY_NAME.test(name))
    throw invalid(
      'repositoryName',
      "must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*'",
    );
  checkRegistry(s, b, name);
  const repo = s.storage.get(name);
  if (!repo) throw notFoundRepository(name, s.registryId);
  return repo;
}

const secs = (d: Date): number => d.getTime() / 1000;

function repositoryJson(s: ServeState, r: Repository, region: string): Record<string, unknown> {
  return {
    repositoryArn: `arn:aws:ecr:${region}:${s.registryId}:repository/${r.name}`,
    registryId: s.registryId,
    repositoryName: r.name,
    repositoryUri: `${s.host()}/${r.name}`,
    createdAt: secs(new Date(r.settings.createdAt)),
    imageTagMutability: r.settings.imageTagMutability,
    ...(r.settings.imageTagMutabilityExclusionFilters?.length
      ? { imageTagMutabilityExclusionFilters: r.settings.imageTagMutabilityExclusionFilters }
      : {}),
    imageScanningConfiguration: { scanOnPush: false },
    encryptionConfiguration: { encryptionType: 'AES256' },
  };
}

function mutabilityOf(b: Body): {
  imageTagMutability: TagMutability;
  imageTagMutabilityExclusionFilters?: ExclusionFilter[];
} {
  const m = (str(b, 'imageTagMutability') ?? 'MUTABLE') as TagMutability;
  if (!MUTABILITIES.includes(m))
    throw invalid('imageTagMutability', `Member must satisfy enum value set: [${MUTABILITIES.join(', ')}]`);
  const raw = list(b, 'imageTagMutabilityExclusionFilters', 1, 5, false);
  if (m.endsWith('_WITH_EXCLUSION')) {
    if (!raw) throw invalid('imageTagMutabilityExclusionFilters', `Member is required when imageTagMutability is ${m}`);
    const filters = raw.map((f, i) => {
      const o = (typeof f === 'object' && f !== null ? f : {}) as Body;
      if (o.filterType !== 'WILDCARD')
        throw invalid(
          `imageTagMutabilityExclusionFilters.${i + 1}.member.filterType`,
          'Member must satisfy enum value set: [WILDCARD]',
        );
      if (typeof o.filter !== 'string' || !WILDCARD_FILTER.test(o.filter)) {
        throw invalid(
          `imageTagMutabilityExclusionFilters.${i + 1}.member.filter`,
          "Member must satisfy regular expression pattern: '^[0-9a-zA-Z._*-]{1,128}'",
        );
      }
      return { filterType: 'WILDCARD' as const, filter: o.filter };
    });
    return { imageTagMutability: m, imageTagMutabilityExclusionFilters: filters };
  }
  if (raw) throw invalid('imageTagMutabilityExclusionFilters', `Member must be absent when imageTagMutability is ${m}`);
  return { imageTagMutability: m };
}

function paginate<T>(items: T[], b: Body, defaultMax: number): { page: T[]; nextToken?: string } {
  const max = int(b, 'maxResults', 1, 1000) ?? defaultMax;
  const token = b.nextToken;
  let start = 0;
  if (token !== undefined && token !== null) {
    const o = decodeToken(token);
    if (o === undefined) throw invalid('nextToken', 'Member must be a token from a previous response');
    start = o;
  }
  const page = items.slice(start, start + max);
  return start + max < items.length ? { page, nextToken: encodeToken(start + max) } : { page };
}

function imageIdOf(raw: unknown): { imageDigest?: string; imageTag?: string } {
  const o = (typeof raw === 'object' && raw !== null ? raw : {}) as Body;
  const out: { imageDigest?: string; imageTag?: string } = {};
  if (typeof o.imageDigest === 'string') out.imageDigest = o.imageDigest;
  if (typeof o.imageTag === 'string') out.imageTag = o.imageTag;
  return out;
}

function imageNotFound(s: ServeState, repo: Repository, id: { imageDigest?: string; imageTag?: string }): ApiError {
  return new ApiError(
    'ImageNotFoundException',
    `The image with imageId {imageDigest:'${id.imageDigest ?? 'null'}', imageTag:'${id.imageTag ?? 'null'}'} does not exist within the repository with name '${repo.name}' in the registry with id '${s.registryId}'`,
  );
}

function tagStatusOf(b: Body): 'TAGGED' | 'UNTAGGED' | 'ANY' {
  const f = b.filter;
  if (f === undefined || f === null) return 'ANY';
  if (typeof f !== 'object') throw invalid('filter', 'Member must be a structure');
  const t = (f as Body).tagStatus ?? 'ANY';
  if (t !== 'TAGGED' && t !== 'UNTAGGED' && t !== 'ANY')
    throw invalid('filter.tagStatus', 'Member must satisfy enum value set: [TAGGED, UNTAGGED, ANY]');
  return t;
}

/** Images in an imageStatus filter: everything stored here is ACTIVE. */
function statusAllows(b: Body): boolean {
  const f = b.filter as Body | undefined;
  const st = f && typeof f === 'object' ? f.imageStatus : undefined;
  return st === undefined || st === 'ACTIVE' || st === 'ANY';
}

async function imageDetail(s: ServeState, repo: Repository, img: ImageRecord): Promise<Record<string, unknown>> {
  const tags = repo.tagsOf(img.digest);
  let artifactMediaType: string | undefined;
  let subject: string | undefined;
  try {
    const info = await s.storage.manifestInfo(repo, img);
    artifactMediaType = info.config?.mediaType;
    subject = info.subject?.digest;
  } catch {
    // unreadable manifest: describe what index.json says
  }
  return {
    registryId: s.registryId,
    repositoryName: repo.name,
    imageDigest: img.digest,
    ...(tags.length > 0 ? { imageTags: tags } : {}),
    imageSizeInBytes: await s.storage.imageSize(repo, img),
    imagePushedAt: secs(img.pushedAt),
    imageManifestMediaType: img.mediaType,
    ...(artifactMediaType ? { artifactMediaType } : {}),
    ...(subject ? { subjectManifestDigest: subject } : {}),
    imageStatus: 'ACTIVE',
  };
}

const ops: Record<string, Handler> = {
  async CreateRepository(s, b, region) {
    const name = str(b, 'repositoryName', true);
    const problem = repositoryNameProblem(name);
    if (problem !== undefined)
      throw invalid('repositoryName', problem.replace(/^failed to satisfy constraint: '|'$/g, ''));
    const id = str(b, 'registryId');
    if (id !== undefined && id !== s.registryId)
      throw invalid('registryId', `Member must be the id of this registry (${s.registryId})`);
    const mutability = mutabilityOf(b);
    const repo = await s.reposLock.run(async () => {
      if (s.storage.get(name))
        throw new ApiError(
          'RepositoryAlreadyExistsException',
          `The repository with name '${name}' already exists in the registry with id '${s.registryId}'`,
        );
      return s.storage.create(name, { ...mutability, createdAt: new Date().toISOString() });
    });
    s.log(`created repository ${name} (${mutability.imageTagMutability})`);
    return { repository: repositoryJson(s, repo, region) };
  },

  async DescribeRepositories(s, b, region) {
    const names = list(b, 'repositoryNames', 1, 100, false);
    const id = str(b, 'registryId');
    if (names) {
      if (b.maxResults !== undefined || b.nextToken !== undefined)
        throw invalid('maxResults', 'maxResults and nextToken cannot be used with repositoryNames');
      const out = names.map((n) => {
        if (typeof n !== 'string') throw invalid('repositoryNames', 'Member must be a list of strings');
        if (id !== undefined && id !== s.registryId) throw notFoundRepository(n, id);
        const r = s.storage.get(n);
        if (!r) throw notFoundRepository(n, s.registryId);
        return repositoryJson(s, r, region);
      });
      return { repositories: out };
    }
    if (id !== undefined && id !== s.registryId) return { repositories: [] };
    const all = [...s.storage.repos.values()].sort((a, c) => (a.name < c.name ? -1 : a.name > c.name ? 1 : 0));
    const { page, nextToken } = paginate(all, b, 100);
    return { repositories: page.map((r) => repositoryJson(s, r, region)), nextToken };
  },

  async DeleteRepository(s, b, region) {
    const repo = repoOf(s, b);
    await s.reposLock.run(() =>
      repo.lock.run(async () => {
        if (repo.images.size > 0 && b.force !== true) {
          throw new ApiError(
            'RepositoryNotEmptyException',
            `The repository with name '${repo.name}' in registry with id '${s.registryId}' cannot be deleted because it still contains images`,
          );
        }
        await s.storage.remove(repo);
      }),
    );
    return { repository: repositoryJson(s, repo, region) };
  },

  async PutImageTagMutability(s, b) {
    const repo = repoOf(s, b);
    if (b.imageTagMutability === undefined) throw invalid('imageTagMutability', 'Member must not be null');
    const m = mutabilityOf(b);
    await repo.lock.run(async () => {
      repo.settings = { createdAt: repo.settings.createdAt, ...m };
      await s.storage.writeSettings(repo);
    });
    return { registryId: s.registryId, repositoryName: repo.name, ...m };
  },

  async BatchCheckLayerAvailability(s, b) {
    const repo = repoOf(s, b);
    const digests = list(b, 'layerDigests', 1, 100, true)!;
    const layers: Record<string, unknown>[] = [];
    const failures: Record<string, unknown>[] = [];
    for (const d of digests) {
      if (!isSha256Digest(d)) {
        failures.push({
          layerDigest: typeof d === 'string' ? d : String(d),
          failureCode: 'InvalidLayerDigest',
          failureReason: 'Invalid layer digest',
        });
        continue;
      }
      const size = await s.storage.blobSize(repo, d);
      if (size === undefined)
        failures.push({ layerDigest: d, failureCode: 'MissingLayerDigest', failureReason: 'Could not find layer' });
      // ECR answers this constant media type for every layer (its documented example does).
      else
        layers.push({
          layerDigest: d,
          layerAvailability: 'AVAILABLE',
          layerSize: size,
          mediaType: 'application/vnd.docker.container.image.rootfs.diff+x-gzip',
        });
    }
    return { layers, failures };
  },

  async InitiateLayerUpload(s, b) {
    const repo = repoOf(s, b);
    const u = await s.uploads.create(repo.name, 'ecr');
    return { uploadId: u.id, partSize: PART_SIZE };
  },

  async UploadLayerPart(s, b) {
    const repo = repoOf(s, b);
    const uploadId = str(b, 'uploadId', true);
    const first = int(b, 'partFirstByte', 0, Number.MAX_SAFE_INTEGER);
    const last = int(b, 'partLastByte', 0, Number.MAX_SAFE_INTEGER);
    if (first === undefined) throw invalid('partFirstByte', 'Member must not be null');
    if (last === undefined) throw invalid('partLastByte', 'Member must not be null');
    const blob =
      (b as { [PART_BLOB]?: Buffer })[PART_BLOB] ?? decodeBase64(Buffer.from(str(b, 'layerPartBlob', true), 'latin1'));
    const ids = { registryId: s.registryId, repositoryName: repo.name, uploadId };
    const notFound = (): ApiError =>
      new ApiError(
        'UploadNotFoundException',
        `The upload with id '${uploadId}' does not exist in the repository with name '${repo.name}' in the registry with id '${s.registryId}'`,
      );
    const u = s.uploads.get(uploadId, repo.name, 'ecr');
    if (!u) throw notFound();
    return u.exclusive(async () => {
      if (u.closed) throw notFound();
      const lastValidByteReceived = u.size - 1;
      const partError = (m: string): ApiError =>
        new ApiError('InvalidLayerPartException', m, 400, { ...ids, lastValidByteReceived });
      if (first !== u.size) {
        throw partError(
          `The layer part's first byte ${first} is not consecutive to the last byte received (${lastValidByteReceived}); the next part must start at byte ${u.size}`,
        );
      }
      if (last < first || blob.length !== last - first + 1) {
        throw partError(
          `The layer part has ${blob.length} bytes but partFirstByte ${first} and partLastByte ${last} describe ${Math.max(0, last - first + 1)}`,
        );
      }
      if (blob.length > PART_SIZE)
        throw partError(`The layer part size ${blob.length} exceeds the maximum of ${PART_SIZE} bytes`);
      await u.append(blob);
      return { ...ids, lastByteReceived: u.size - 1 };
    });
  },

  async CompleteLayerUpload(s, b) {
    const repo = repoOf(s, b);
    const uploadId = str(b, 'uploadId', true);
    const digests = list(b, 'layerDigests', 1, 100, true)!;
    if (digests.length !== 1) throw invalid('layerDigests', 'Member must contain exactly one digest');
    const given = digests[0];
    if (!isSha256Digest(given))
      throw invalid('layerDigests', "Member must satisfy regular expression pattern: 'sha256:[a-f0-9]{64}'");
    const notFound = (): ApiError =>
      new ApiError(
        'UploadNotFoundException',
        `The upload with id '${uploadId}' does not exist in the repository with name '${repo.name}' in the registry with id '${s.registryId}'`,
      );
    const u = s.uploads.get(uploadId, repo.name, 'ecr');
    if (!u) throw notFound();
    return u.exclusive(async () => {
      if (u.closed) throw notFound();
      if (u.chunks.length === 0)
        throw new ApiError('EmptyUploadException', `The upload with id '${uploadId}' contains no layer parts`);
      const small = u.chunks.slice(0, -1).findIndex((n) => n < MIN_PART_SIZE);
      if (small >= 0) {
        await s.uploads.drop(u);
        throw new ApiError(
          'LayerPartTooSmallException',
          `Layer part ${small + 1} of the upload has ${u.chunks[small]!} bytes; every part but the last must have at least ${MIN_PART_SIZE}`,
        );
      }
      const computed = u.digest();
      if (computed !== given) {
        await s.uploads.drop(u);
        throw new ApiError(
          'InvalidLayerException',
          `The layer digest calculation performed upon receipt of the layer (${computed}) does not match the digest specified (${given})`,
        );
      }
      if ((await s.storage.blobSize(repo, computed)) !== undefined) {
        await s.uploads.drop(u);
        throw new ApiError(
          'LayerAlreadyExistsException',
          `The layer with digest '${computed}' already exists in the repository with name '${repo.name}' in the registry with id '${s.registryId}'`,
        );
      }
      s.uploads.forget(u);
      try {
        await u.finish();
        await s.storage.commitBlob(repo, u.path, computed);
      } catch (e) {
        await u.discard();
        throw e;
      }
      return { registryId: s.registryId, repositoryName: repo.name, uploadId, layerDigest: computed };
    });
  },

  async PutImage(s, b) {
    const repo = repoOf(s, b);
    const manifest = str(b, 'imageManifest', true);
    checkManifestSize(manifest);
    const mediaType = str(b, 'imageManifestMediaType');
    const tag = str(b, 'imageTag');
    if (tag !== undefined && !isTag(tag))
      throw invalid('imageTag', 'Member must have length between 1 and 300 and be a valid tag');
    const digest = str(b, 'imageDigest');
    if (digest !== undefined && !isDigest(digest)) throw invalid('imageDigest', 'Member must be a digest');
    const r = await putImage(
      s.storage,
      repo,
      {
        bytes: Buffer.from(manifest, 'utf8'),
        ...(mediaType ? { mediaType } : {}),
        tag,
        digest,
      },
      s.registryId,
    );
    if (!r.changed) {
      throw new ApiError(
        'ImageAlreadyExistsException',
        tag !== undefined
          ? `Image with digest '${r.digest}' and tag '${tag}' already exists in the repository with name '${repo.name}' in registry with id '${s.registryId}'`
          : `Image with digest '${r.digest}' already exists in the repository with name '${repo.name}' in registry with id '${s.registryId}'`,
      );
    }
    return {
      image: {
        registryId: s.registryId,
        repositoryName: repo.name,
        imageId: { imageDigest: r.digest, imageTag: tag },
        imageManifest: manifest,
        imageManifestMediaType: r.mediaType,
      },
    };
  },

  async BatchGetImage(s, b) {
    const repo = repoOf(s, b);
    const ids = list(b, 'imageIds', 1, 100, true)!;
    list(b, 'acceptedMediaTypes', 1, 100, false);
    const images: Record<string, unknown>[] = [];
    const failures: Record<string, unknown>[] = [];
    for (const raw of ids) {
      const id = imageIdOf(raw);
      const fail = (failureCode: string, failureReason: string): void =>
        void failures.push({ imageId: id, failureCode, failureReason });
      if (id.imageDigest === undefined && id.imageTag === undefined)
        fail('MissingDigestAndTag', 'Invalid request parameters: both tag and digest cannot be null');
      else if (id.imageDigest !== undefined && !isDigest(id.imageDigest))
        fail('InvalidImageDigest', 'Invalid image digest');
      else if (id.imageTag !== undefined && !isTag(id.imageTag)) fail('InvalidImageTag', 'Invalid image tag');
      else {
        const d = resolveImage(repo, id);
        if (d === undefined) {
          if (id.imageTag !== undefined && id.imageDigest !== undefined && repo.tags.has(id.imageTag))
            fail('ImageTagDoesNotMatchDigest', 'Tag does not match digest');
          else fail('ImageNotFound', 'Requested image not found');
          continue;
        }
        const img = repo.images.get(d)!;
        const bytes = await s.storage.readBlob(repo, d);
        images.push({
          registryId: s.registryId,
          repositoryName: repo.name,
          imageId: { imageDigest: d, imageTag: id.imageTag },
          imageManifest: bytes.toString('utf8'),
          imageManifestMediaType: img.mediaType,
        });
      }
    }
    return { images, failures };
  },

  async DescribeImages(s, b) {
    const repo = repoOf(s, b);
    const ids = list(b, 'imageIds', 1, 100, false);
    const tagStatus = tagStatusOf(b);
    let selected: ImageRecord[];
    if (ids) {
      const seen = new Set<Digest>();
      selected = [];
      for (const raw of ids) {
        const id = imageIdOf(raw);
        if (id.imageDigest === undefined && id.imageTag === undefined)
          throw invalid('imageIds', 'Each image id needs an imageDigest or an imageTag');
        const d = resolveImage(repo, id);
        if (d === undefined) throw imageNotFound(s, repo, id);
        if (!seen.has(d)) {
          seen.add(d);
          selected.push(repo.images.get(d)!);
        }
      }
    } else {
      selected = [...repo.images.values()].filter((img) => {
        const tagged = repo.tagsOf(img.digest).length > 0;
        return statusAllows(b) && (tagStatus === 'ANY' || (tagStatus === 'TAGGED') === tagged);
      });
    }
    const { page, nextToken } = ids ? { page: selected, nextToken: undefined } : paginate(selected, b, 100);
    const imageDetails = [];
    for (const img of page) imageDetails.push(await imageDetail(s, repo, img));
    return { imageDetails, nextToken };
  },

  async ListImages(s, b) {
    const repo = repoOf(s, b);
    const tagStatus = tagStatusOf(b);
    const all: { imageDigest: string; imageTag?: string }[] = [];
    if (statusAllows(b)) {
      for (const img of repo.images.values()) {
        const tags = repo.tagsOf(img.digest);
        if (tags.length === 0 && tagStatus !== 'TAGGED') all.push({ imageDigest: img.digest });
        if (tagStatus !== 'UNTAGGED') for (const t of tags) all.push({ imageDigest: img.digest, imageTag: t });
      }
    }
    const { page, nextToken } = paginate(all, b, 100);
    return { imageIds: page, nextToken };
  },

  async BatchDeleteImage(s, b) {
    const repo = repoOf(s, b);
    const ids = list(b, 'imageIds', 1, 100, true)!;
    const deleted: Record<string, unknown>[] = [];
    const failures: Record<string, unknown>[] = [];
    await repo.lock.run(async () => {
      const referenced = new Set<string>();
      for (const img of repo.images.values()) {
        try {
          for (const c of (await s.storage.manifestInfo(repo, img)).children) referenced.add(c.digest);
        } catch {
          // unreadable: references nothing
        }
      }
      for (const raw of ids) {
        const id = imageIdOf(raw);
        if (id.imageDigest === undefined && id.imageTag === undefined) {
          failures.push({
            imageId: id,
            failureCode: 'MissingDigestAndTag',
            failureReason: 'Invalid request parameters: both tag and digest cannot be null',
          });
          continue;
        }
        const d = resolveImage(repo, id);
        if (d === undefined) {
          // A tag and a digest that name different images: ECR refuses the pair (the tag stays).
          if (id.imageTag !== undefined && id.imageDigest !== undefined && repo.tags.has(id.imageTag)) {
            failures.push({
              imageId: id,
              failureCode: 'ImageTagDoesNotMatchDigest',
              failureReason: 'Tag does not match digest',
            });
          } else {
            failures.push({ imageId: id, failureCode: 'ImageNotFound', failureReason: 'Requested image not found' });
          }
          continue;
        }
        const removeImage = id.imageTag === undefined || repo.tagsOf(d).length === 1;
        if (removeImage && referenced.has(d)) {
          failures.push({
            imageId: id,
            failureCode: 'ImageReferencedByManifestList',
            failureReason: 'Requested image referenced by manifest list',
          });
          continue;
        }
        if (id.imageTag !== undefined) {
          repo.tags.delete(id.imageTag);
          deleted.push({ imageDigest: d, imageTag: id.imageTag });
          if (removeImage) repo.images.delete(d);
          continue;
        }
        const tags = repo.tagsOf(d);
        for (const t of tags) {
          repo.tags.delete(t);
          deleted.push({ imageDigest: d, imageTag: t });
        }
        if (tags.length === 0) deleted.push({ imageDigest: d });
        repo.images.delete(d);
      }
      await s.storage.writeIndex(repo);
    });
    return { imageIds: deleted, failures };
  },

  async GetAuthorizationToken(s, b) {
    const ids = (list(b, 'registryIds', 1, 10, false) ?? [s.registryId]).map(String);
    return {
      authorizationData: ids.map(() => {
        const t = s.tokens.issue();
        return {
          authorizationToken: t.authorizationToken,
          expiresAt: secs(t.expiresAt),
          proxyEndpoint: `http://${s.host()}`,
        };
      }),
    };
  },
};

export const ECR_OPERATIONS: readonly string[] = Object.keys(ops);

/** The operation a request names (the counter and fault key), or undefined. */
export function ecrOperation(target: string | string[] | undefined): string | undefined {
  if (typeof target !== 'string' || !target.startsWith(TARGET_PREFIX)) return undefined;
  return target.slice(TARGET_PREFIX.length);
}

export function sendEcrError(x: Exchange, e: ApiError): void {
  const body = JSON.stringify({ __type: e.type, message: e.message, ...e.fields });
  reply(x, e.status, { 'content-type': JSON_TYPE, 'x-amzn-requestid': randomUUID(), 'x-amzn-errortype': e.type }, body);
}

/** The SigV4 service name of ECR's API, in every credential scope the SDKs sign with. */
const SIGNING_NAME = 'ecr';

/** The region of an unverified request's credential scope, if any. */
function scopeRegion(authorization: string | undefined): string | undefined {
  return /Credential=[^/,\s]+\/\d{8}\/([a-z0-9-]+)\/ecr\/aws4_request/.exec(authorization ?? '')?.[1];
}

const PART_BLOB = Symbol('layerPartBlob');
const FIELD = Buffer.from('"layerPartBlob":"');

/**
 * Finds `"layerPartBlob":"<base64>"` in a raw UploadLayerPart body: the base64 bytes, and the
 * body with the value emptied. Undefined (the plain path then decides) when the value holds
 * anything but base64 characters up to its closing quote, e.g. a JSON escape.
 */
function cutPartBlob(raw: Buffer): { blob: Buffer; rest: Buffer } | undefined {
  const at = raw.indexOf(FIELD);
  if (at < 0) return undefined;
  const start = at + FIELD.length;
  const end = raw.indexOf(0x22, start);
  if (end < 0) return undefined;
  const blob = raw.subarray(start, end);
  if (blob.includes(0x5c)) return undefined;
  return { blob, rest: Buffer.concat([raw.subarray(0, start), raw.subarray(end)]) };
}

/** Strict base64 (standard alphabet, padded): Node's decoder skips what it does not know, so a shorter result or a URL-safe character means invalid input. */
function decodeBase64(b64: Buffer): Buffer {
  const pad = b64.length > 0 && b64[b64.length - 1] === 0x3d ? (b64[b64.length - 2] === 0x3d ? 2 : 1) : 0;
  const out = Buffer.from(b64.toString('latin1'), 'base64');
  if (
    b64.length % 4 !== 0 ||
    out.length !== (b64.length / 4) * 3 - pad ||
    b64.includes(0x2d) ||
    b64.includes(0x5f) ||
    b64.subarray(0, b64.length - pad).includes(0x3d)
  ) {
    throw new ApiError('SerializationException', 'layerPartBlob is not valid base64');
  }
  return out;
}

export async function handleEcr(s: ServeState, x: Exchange): Promise<void> {
  const op = ecrOperation(x.req.headers['x-amz-target']);
  const handler = op !== undefined && Object.hasOwn(ops, op) ? ops[op] : undefined;
  try {
    let raw: Buffer;
    try {
      raw = await readBody(x.req, MAX_BODY);
    } catch (e) {
      if (e instanceof BodyTooLarge)
        throw new ApiError('ValidationException', `The request body exceeds ${MAX_BODY} bytes`);
      throw e;
    }
    // Authentication comes first, as on AWS: the signature covers the whole body.
    let region = scopeRegion(x.req.headers.authorization) ?? 'us-east-1';
    if (s.secretOf) {
      const v = verifySignature(
        { method: x.req.method ?? 'POST', target: x.req.url ?? '/', rawHeaders: x.req.rawHeaders, body: raw },
        SIGNING_NAME,
        s.secretOf,
      );
      if (!v.ok) {
        s.log(`${op ?? 'ECR'}: ${v.type}: ${v.message}`);
        throw new ApiError(v.type, v.message, 403);
      }
      region = v.region;
    }
    if (!handler)
      throw new ApiError(
        'UnknownOperationException',
        `Unknown operation ${String(x.req.headers['x-amz-target'] ?? '(no X-Amz-Target)')}`,
      );
    const ct = String(x.req.headers['content-type'] ?? '');
    if (!ct.startsWith(JSON_TYPE)) throw new ApiError('SerializationException', `Content-Type must be ${JSON_TYPE}`);
    let body: unknown;
    // A part's base64 (13 MiB for 10 MiB) is cut out of the raw body and decoded directly,
    // so the JSON parser and the validation never walk it as a string.
    const part = op === 'UploadLayerPart' ? cutPartBlob(raw) : undefined;
    try {
      body = raw.length === 0 ? {} : JSON.parse((part?.rest ?? raw).toString('utf8'));
    } catch {
      throw new ApiError('SerializationException', 'The request body is not valid JSON');
    }
    if (part && typeof body === 'object' && body !== null)
      (body as { [PART_BLOB]?: Buffer })[PART_BLOB] = decodeBase64(part.blob);
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw new ApiError('SerializationException', 'The request body must be a JSON object');
    const out = await handler(s, body as Body, s.region ?? region);
    reply(x, 200, { 'content-type': JSON_TYPE, 'x-amzn-requestid': randomUUID() }, JSON.stringify(out));
  } catch (e) {
    x.req.resume(); // a refused request's body is drained, so the connection can be reused
    if (e instanceof ApiError) {
      sendEcrError(x, e);
      return;
    }
    s.log(`${op ?? 'ECR'}: internal error: ${(e as Error).stack ?? String(e)}`);
    sendEcrError(x, new ApiError('ServerException', `internal error: ${(e as Error).message}`, 500));
  }
}
