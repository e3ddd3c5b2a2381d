/** Small pure rules of the emulator: names, tags, digests, wildcards. No I/O. */
import { isDigest, type Digest } from '../image/digest';

/** ECR's repository name rule (the CreateRepository API reference, `repositoryName`): 2-256 chars of lowercase path components. */
export const REPOSITORY_NAME =
  /^(?=.{2,256}$)[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;

/**
 * Path components that would collide with an OCI layout's own entries when a repository
 * is nested in another one's directory (`a/blobs` inside `a/`): refused after the first
 * component. ECR itself accepts them; this is the emulator's one naming restriction.
 */
export const RESERVED_COMPONENTS = new Set(['blobs', 'index.json', 'oci-layout']);

export function repositoryNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string' || !REPOSITORY_NAME.test(name)) {
    return `failed to satisfy constraint: 'must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*' and be 2-256 characters'`;
  }
  const parts = name.split('/');
  const bad = parts.slice(1).find((p) => RESERVED_COMPONENTS.has(p));
  if (bad !== undefined)
    return `the path component '${bad}' is reserved by lading serve (it would collide with the OCI layout of the parent repository)`;
  return undefined;
}

/** Tags: the OCI distribution grammar with ECR's 300-character limit. */
export const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,299}$/;

export function isTag(v: unknown): v is string {
  return typeof v === 'string' && TAG.test(v);
}

/** The digests ECR takes: sha256 only. */
export function isSha256Digest(v: unknown): v is Digest {
  return typeof v === 'string' && v.startsWith('sha256:') && isDigest(v);
}

/** ECR wildcard filters (imageTagMutabilityExclusionFilters): `*` matches any run of characters. */
export function wildcardMatch(pattern: string, value: string): boolean {
  const re = new RegExp(
    `^${pattern
      .split('*')
      .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
  return re.test(value);
}

export const WILDCARD_FILTER = /^[0-9a-zA-Z._*-]{1,128}$/;

/** Opaque pagination tokens: an offset, base64url-encoded JSON. */
export function encodeToken(offset: number): string {
  return Buffer.from(JSON.stringify({ o: offset }), 'utf8').toString('base64url');
}

export function decodeToken(token: unknown): number | undefined {
  if (typeof token !== 'string') return undefined;
  try {
    const o = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { o?: unknown };
    return typeof o.o === 'number' && Number.isSafeInteger(o.o) && o.o >= 0 ? o.o : undefined;
  } catch {
    return undefined;
  }
}
