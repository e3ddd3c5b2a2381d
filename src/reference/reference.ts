import { LadingError } from '../errors';
import { isDigest, type Digest } from '../image/digest';

/**
 * An image reference, normalised the way docker resolves it: `registry` is the host to
 * contact, `repository` the full path in it.
 */
export interface Reference {
  /** `host[:port]`, e.g. `registry-1.docker.io`, `localhost:5000`, `[::1]:5000`. */
  registry: string;
  /** e.g. `library/alpine`, `team/app`. */
  repository: string;
  tag?: string;
  digest?: Digest;
}

/** Where docker sends names without a registry part, and what `docker.io` really is. */
export const DOCKER_HUB_REGISTRY = 'registry-1.docker.io';
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

// docker/distribution reference grammar (reference/regexp.go).
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*';
const REPOSITORY = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const TAG = /^[\w][\w.-]{0,127}$/;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const HOST = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9A-Fa-f:.]+\\])(?::[0-9]+)?$`);
const MAX_NAME = 255;

function bad(input: string, why: string): LadingError {
  const shown = input.length > 300 ? `${input.slice(0, 300)}...` : input;
  return new LadingError('BAD_REFERENCE', `invalid image reference ${JSON.stringify(shown)}: ${why}`);
}

/** True for `host[:port]` forms docker accepts as a registry. */
export function isValidRegistryHost(host: string): boolean {
  if (!HOST.test(host)) return false;
  const port = /:([0-9]+)$/.exec(host.startsWith('[') ? host.slice(host.indexOf(']')) : host)?.[1];
  return port === undefined || (Number(port) > 0 && Number(port) < 65536);
}

/** True when `name` is a repository path docker accepts (lower case components joined by `/`). */
export function isValidRepository(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME && REPOSITORY.test(name);
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

/** Validates a repository name given on its own (not as part of a reference). */
export function parseRepository(name: string): string {
  if (!isValidRepository(name)) {
    throw new LadingError(
      'BAD_REFERENCE',
      `invalid repository name ${JSON.stringify(name.slice(0, 300))}: use lower-case letters, digits and separators (. _ __ -) in components joined by "/"`,
    );
  }
  return name;
}

/** Maps docker's aliases of Docker Hub to the host that actually serves the API. */
export function normalizeRegistry(host: string): string {
  // Case is kept otherwise: `Registry/app` names a registry only because of its upper case.
  return DOCKER_HUB_ALIASES.has(host.toLowerCase()) ? DOCKER_HUB_REGISTRY : host;
}

/**
 * Loopback registries speak plain HTTP by default, as docker and skopeo assume: a local
 * test registry with TLS is the exception, and `plainHttp: false` covers it.
 */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.startsWith('[')
    ? registry.slice(0, registry.indexOf(']') + 1)
    : registry.replace(/:[0-9]+$/, '');
  return host === 'localhost' || host === '[::1]' || /^127(?:\.[0-9]{1,3}){3}$/.test(host);
}

/**
 * Parses `[host[:port]/]repository[:tag][@digest]` with docker's grammar and defaults:
 * the first component is a registry when it contains `.` or `:`, is `localhost` or has
 * upper case; otherwise the registry is Docker Hub, where single names live under `library/`.
 */
export function parseReference(input: string): Reference {
  if (input.length === 0) throw bad(input, 'it is empty');
  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    if (!isDigest(d))
      throw bad(input, `"${d.slice(0, 100)}" is not a valid digest (expected sha256:<64 hex> or sha512:<128 hex>)`);
    digest = d;
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    if (!isValidTag(tag)) throw bad(input, `tag "${tag.slice(0, 200)}" must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
    rest = rest.slice(0, colon);
  }
  const first = rest.indexOf('/');
  let registry: string;
  let repository: string;
  const head = first < 0 ? '' : rest.slice(0, first);
  if (first >= 0 && (head.includes('.') || head.includes(':') || head === 'localhost' || head !== head.toLowerCase())) {
    if (!isValidRegistryHost(head)) throw bad(input, `"${head}" is not a valid registry host[:port]`);
    registry = normalizeRegistry(head);
    repository = rest.slice(first + 1);
  } else {
    registry = DOCKER_HUB_REGISTRY;
    repository = rest;
  }
  if (repository.length === 0) throw bad(input, 'the repository name is missing');
  if (!REPOSITORY.test(repository)) {
    const hint = repository !== repository.toLowerCase() ? ' (repository names must be lower case)' : '';
    throw bad(input, `"${repository.slice(0, 200)}" is not a valid repository name${hint}`);
  }
  if (registry === DOCKER_HUB_REGISTRY && !repository.includes('/')) repository = `library/${repository}`;
  if (registry.length + 1 + repository.length > MAX_NAME)
    throw bad(input, `the name is longer than ${MAX_NAME} characters`);
  const ref: Reference = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** The canonical string of a reference: `registry/repository[:tag][@digest]`. */
export function formatReference(ref: Reference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}
