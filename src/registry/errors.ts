import { LadingError, type ErrorCode } from '../errors';
import { abortError, parseRetryAfter, type RetryDecision } from '../util/retry';
import { systemCodeOf, tlsFailure } from '../net/tls-errors';
import { ProxyError } from '../net/tunnel';

/** What was being done, for messages that say which operation on which repository failed. */
export interface OperationContext {
  /** e.g. `push blob sha256:0123abcd…`, `get manifest latest`. */
  operation: string;
  registry: string;
  repository?: string;
}

/** One entry of a registry error body (distribution spec, "Error Codes"). */
export interface RegistryErrorEntry {
  code: string;
  message?: string;
  detail?: unknown;
}

/**
 * An HTTP-level failure from a registry: the protocol codes stay available to callers
 * (`registryCodes`) while `code` is lading's stable classification.
 */
export class RegistryError extends LadingError {
  readonly status: number;
  readonly registryCodes: string[];
  /** Transient (5xx, 429, connection trouble): worth another attempt. */
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  /**
   * A 401 on a request whose body could not be replayed: the token probably expired
   * mid-push, so the whole operation is worth one more attempt with a fresh token.
   */
  readonly staleAuth: boolean;

  constructor(
    code: ErrorCode,
    message: string,
    fields: {
      status: number;
      registryCodes?: string[];
      retryable?: boolean;
      retryAfterMs?: number;
      staleAuth?: boolean;
      cause?: unknown;
      details?: Record<string, unknown>;
    },
  ) {
    super(code, message, {
      cause: fields.cause,
      details: { status: fields.status, registryCodes: fields.registryCodes ?? [], ...fields.details },
    });
    this.name = 'RegistryError';
    this.status = fields.status;
    this.registryCodes = fields.registryCodes ?? [];
    this.retryable = fields.retryable ?? false;
    this.retryAfterMs = fields.retryAfterMs;
    this.staleAuth = fields.staleAuth ?? false;
  }
}

/** A connection-level failure (refused, reset, timeout, TLS). */
export class NetworkError extends LadingError {
  readonly retryable: boolean;
  readonly systemCode: string | undefined;
  constructor(message: string, fields: { retryable: boolean; systemCode: string | undefined; cause: unknown }) {
    super('NETWORK', message, { cause: fields.cause, details: { systemCode: fields.systemCode } });
    this.name = 'NetworkError';
    this.retryable = fields.retryable;
    this.systemCode = fields.systemCode;
  }
}

function where(ctx: OperationContext): string {
  return `${ctx.operation} ${ctx.repository !== undefined ? `${ctx.registry}/${ctx.repository}` : ctx.registry}`;
}

/** Parses `{"errors":[...]}`; anything else yields no entries (HTML error pages exist). */
export function parseErrorBody(body: Buffer | undefined): RegistryErrorEntry[] {
  if (body === undefined || body.length === 0) return [];
  try {
    const o = JSON.parse(body.toString('utf8')) as unknown;
    if (typeof o !== 'object' || o === null || !Array.isArray((o as { errors?: unknown }).errors)) return [];
    return (o as { errors: unknown[] }).errors
      .filter(
        (e): e is Record<string, unknown> =>
          typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string',
      )
      .map((e) => ({
        code: e.code as string,
        ...(typeof e.message === 'string' ? { message: e.message } : {}),
        ...(e.detail !== undefined ? { detail: e.detail } : {}),
      }));
  } catch {
    return [];
  }
}

function describeEntries(entries: RegistryErrorEntry[], body: Buffer | undefined): string {
  if (entries.length === 0) {
    const text = body?.toString('utf8').replace(/\s+/g, ' ').trim() ?? '';
    // An HTML page says nothing useful and is long; a short plain text body may.
    return text !== '' && !text.startsWith('<') ? ` "${text.slice(0, 200)}"` : '';
  }
  return entries
    .slice(0, 3)
    .map((e) => {
      let detail = '';
      if (e.detail !== undefined && e.detail !== null) {
        const d = typeof e.detail === 'string' ? e.detail : JSON.stringify(e.detail);
        if (d !== '{}' && d !== '""') detail = ` (${d.slice(0, 200)})`;
      }
      return ` ${e.code}${e.message !== undefined ? ` "${e.message.slice(0, 200)}"` : ''}${detail}`;
    })
    .join(';');
}

/** Maps a protocol code (or the status) to lading's code and a hint about what to do. */
function classify(
  status: number,
  codes: string[],
  credentialSource: string | undefined,
  hasCredentials: boolean,
  messages = '',
): { code: ErrorCode; hint: string; retryable: boolean } {
  const has = (c: string): boolean => codes.includes(c);
  // ECR answers a write to an immutable tag that is taken with TAG_INVALID (400), not 409.
  if (has('TAG_INVALID') && /immutable/i.test(messages)) {
    return {
      code: 'CONFLICT',
      hint: "the tag already exists on another image and the repository's tags are immutable; push under a new tag",
      retryable: false,
    };
  }
  // lading puts a manifest only once every blob and child it names was confirmed (201 or HEAD
  // 200), so "blob unknown" then is a registry's read-after-write race: distribution's
  // filesystem driver rewrites a repository's blob link in place when concurrent pushes of one
  // blob commit, and a manifest PUT meanwhile reads it empty (seen with 20 parallel pushes).
  // Retried with backoff; distribution sends DIGEST_INVALID alongside, hence checked first.
  if (has('MANIFEST_BLOB_UNKNOWN')) {
    return {
      code: 'BLOB_MISSING',
      hint: 'the manifest references a blob the repository lacks: push its blobs (and child manifests) first',
      retryable: true,
    };
  }
  if (has('DIGEST_INVALID'))
    return {
      code: 'DIGEST_MISMATCH',
      hint: 'the content does not match its digest: the source is corrupt or changed while it was read',
      retryable: false,
    };
  if (has('SIZE_INVALID'))
    return { code: 'SIZE_MISMATCH', hint: 'the content does not match its declared size', retryable: false };
  if (has('MANIFEST_INVALID') || has('MANIFEST_UNVERIFIED'))
    return { code: 'BAD_MANIFEST', hint: 'the registry rejected the manifest document', retryable: false };
  if (has('NAME_INVALID') || has('TAG_INVALID'))
    return { code: 'BAD_REFERENCE', hint: 'the registry rejected the repository name or tag', retryable: false };
  if (has('BLOB_UPLOAD_UNKNOWN') || has('BLOB_UPLOAD_INVALID') || status === 416) {
    return {
      code: 'REGISTRY',
      hint: 'the upload session was lost or rejected; it is restarted from the beginning',
      retryable: true,
    };
  }
  if (status === 401 || has('UNAUTHORIZED')) {
    const hint = hasCredentials
      ? `authentication failed with credentials from ${credentialSource ?? 'the configured source'}; check the username and password or token (docker login, aws ecr get-login-password)`
      : `the registry requires credentials and none were found (looked in ${credentialSource ?? 'no source'}); log in or pass credentials`;
    return { code: 'AUTH', hint, retryable: false };
  }
  if (status === 403 || has('DENIED')) {
    return {
      code: 'AUTH',
      hint: `access denied${hasCredentials ? ` for credentials from ${credentialSource ?? 'the configured source'}` : ' to anonymous access'}; they need pull and push permission on this repository`,
      retryable: false,
    };
  }
  if (has('NAME_UNKNOWN'))
    return {
      code: 'NOT_FOUND',
      hint: 'the repository does not exist: check the name, or create it first (ECR)',
      retryable: false,
    };
  if (has('MANIFEST_UNKNOWN'))
    return { code: 'NOT_FOUND', hint: 'no such manifest: check the tag or digest', retryable: false };
  if (has('BLOB_UNKNOWN')) return { code: 'NOT_FOUND', hint: 'no such blob in this repository', retryable: false };
  if (status === 404)
    return {
      code: 'NOT_FOUND',
      hint: 'not found: check the repository name and that the host is a registry',
      retryable: false,
    };
  if (status === 409)
    return { code: 'CONFLICT', hint: 'the registry refused to overwrite (immutable tag?)', retryable: false };
  if (status === 429 || has('TOOMANYREQUESTS'))
    return { code: 'REGISTRY', hint: 'rate limited by the registry', retryable: true };
  if (has('UNSUPPORTED'))
    return { code: 'REGISTRY', hint: 'the registry does not support this operation or media type', retryable: false };
  if (status === 408) return { code: 'REGISTRY', hint: 'the registry timed out the request', retryable: true };
  if (status >= 500 && status !== 501 && status !== 505)
    return { code: 'REGISTRY', hint: 'the registry failed; retried with backoff', retryable: true };
  return { code: 'REGISTRY', hint: 'unexpected registry response', retryable: false };
}

/** Builds the one-line error for an unexpected HTTP response. */
export function responseError(
  ctx: OperationContext,
  res: { status: number; headers: Record<string, string | string[] | undefined>; body?: Buffer },
  auth: { credentialSource?: string; hasCredentials: boolean; staleAuth?: boolean },
  redact: (s: string) => string,
): RegistryError {
  const entries = parseErrorBody(res.body);
  const codes = entries.map((e) => e.code);
  const c = classify(
    res.status,
    codes,
    auth.credentialSource,
    auth.hasCredentials,
    entries.map((e) => e.message ?? '').join(' '),
  );
  const ra = res.headers['retry-after'];
  const retryAfterMs = parseRetryAfter(Array.isArray(ra) ? ra[0] : ra);
  const message = redact(`${where(ctx)} failed: HTTP ${res.status}${describeEntries(entries, res.body)}; ${c.hint}`);
  return new RegistryError(c.code, message, {
    status: res.status,
    registryCodes: codes,
    retryable: c.retryable,
    retryAfterMs,
    staleAuth: auth.staleAuth === true,
    details: {
      operation: ctx.operation,
      registry: ctx.registry,
      ...(ctx.repository !== undefined ? { repository: ctx.repository } : {}),
    },
  });
}

const RETRYABLE_SYSTEM = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'EAI_AGAIN',
  'HEADERS_TIMEOUT',
  'IDLE_TIMEOUT',
]);

// The first code along the cause chain: a stream error may wrap the socket's.
/**
 * Turns a failure below HTTP (sockets, TLS, timeouts, abort) into a LadingError that names
 * the host and suggests the likely fix. A refused connection is not retried: it almost
 * always means a wrong host or a registry that is not running, and retrying only delays
 * that message.
 */
export function transportError(
  ctx: OperationContext,
  host: string,
  e: unknown,
  signal: AbortSignal | undefined,
  redact: (s: string) => string,
  tls: { clientCertificate?: boolean; directory?: string | undefined } = {},
): LadingError {
  if (e instanceof LadingError) return e;
  if (signal?.aborted) return abortError(signal);
  const tlsError = tlsFailure(e, `${where(ctx)} failed`, { host, registry: true, ...tls });
  if (tlsError) return tlsError;
  const sys = systemCodeOf(e);
  const msg = e instanceof Error ? e.message : String(e);
  let hint: string;
  switch (sys) {
    case 'ECONNREFUSED':
      hint = `connection refused by ${host}: is the registry running, is the host and port right?`;
      break;
    case 'ENOTFOUND':
      hint = `host ${host} not found (DNS): is the registry host right?`;
      break;
    case 'EAI_AGAIN':
      hint = `DNS lookup of ${host} failed temporarily`;
      break;
    case 'ECONNRESET':
    case 'EPIPE':
      hint = `connection to ${host} was reset (${msg})`;
      break;
    case 'ETIMEDOUT':
      hint = `connecting to ${host} timed out: is the host reachable (firewall, proxy)?`;
      break;
    case 'HEADERS_TIMEOUT':
    case 'IDLE_TIMEOUT':
      hint = `${host} stopped answering (${msg})`;
      break;
    default:
      hint = `${host}: ${msg}`;
  }
  return new NetworkError(redact(`${where(ctx)} failed: ${hint}`), {
    retryable: sys !== undefined && RETRYABLE_SYSTEM.has(sys),
    systemCode: sys,
    cause: e,
  });
}

/** The retry policy of every registry operation. */
export function registryRetryDecision(e: unknown): RetryDecision {
  if (e instanceof RegistryError) {
    if (e.staleAuth) return { retry: true, afterMs: 0 };
    return e.retryable ? { retry: true, afterMs: e.retryAfterMs } : { retry: false };
  }
  if (e instanceof NetworkError || e instanceof ProxyError) return { retry: e.retryable };
  return { retry: false };
}
