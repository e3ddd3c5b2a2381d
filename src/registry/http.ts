import type { Readable } from 'node:stream';
import { Agent, type Dispatcher } from 'undici';
import { LadingError } from '../errors';

export type Headers = Record<string, string | string[] | undefined>;

export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  url: URL;
  headers?: Record<string, string>;
  body?: Buffer | Readable;
  signal?: AbortSignal;
}

export interface HttpResponse {
  status: number;
  headers: Headers;
  body: Dispatcher.ResponseData['body'];
}

export interface HttpOptions {
  /** TLS without certificate verification (`--insecure`). */
  insecure?: boolean;
  /** Share one pool between clients; the client then does not close it. */
  dispatcher?: Dispatcher;
  /** Longest wait for response headers, e.g. while a registry hashes a large upload. @default 300_000 */
  headersTimeoutMs?: number;
  /** Longest silence while a response body streams. @default 300_000 */
  bodyTimeoutMs?: number;
}

/** A thin layer over undici: keep-alive pooling, one place for timeouts and TLS settings. */
export class Http {
  private readonly dispatcher: Dispatcher;
  private readonly owned: boolean;

  constructor(options: HttpOptions = {}) {
    this.owned = options.dispatcher === undefined;
    this.dispatcher =
      options.dispatcher ??
      new Agent({
        keepAliveTimeout: 30_000,
        headersTimeout: options.headersTimeoutMs ?? 300_000,
        bodyTimeout: options.bodyTimeoutMs ?? 300_000,
        connect: { rejectUnauthorized: options.insecure !== true },
      });
  }

  async send(req: HttpRequest): Promise<HttpResponse> {
    const res = await this.dispatcher.request({
      origin: req.url.origin,
      path: `${req.url.pathname}${req.url.search}`,
      method: req.method,
      headers: req.headers ?? {},
      body: req.body ?? null,
      signal: req.signal ?? null,
    });
    return { status: res.statusCode, headers: res.headers, body: res.body };
  }

  async close(): Promise<void> {
    if (this.owned) await this.dispatcher.close();
  }
}

/** The first value of a header; undici lower-cases names. */
export function header(headers: Headers, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Drains a body we do not need so the connection goes back to the pool. */
export async function discard(res: HttpResponse): Promise<void> {
  try {
    await res.body.dump();
  } catch {
    // The connection is dropped instead; nothing to report.
  }
}

/**
 * Reads a whole body, refusing more than `limit` bytes so a hostile or broken server
 * cannot make us buffer gigabytes where a small document was expected.
 */
export async function readBody(res: HttpResponse, limit: number, what: string): Promise<Buffer> {
  const declared = Number(header(res.headers, 'content-length'));
  if (Number.isFinite(declared) && declared > limit) {
    await discard(res);
    throw new LadingError('LIMIT_EXCEEDED', `${what}: the response is ${declared} bytes, over the ${limit}-byte limit`);
  }
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of res.body) {
    const b = chunk as Buffer;
    n += b.length;
    if (n > limit) {
      res.body.destroy();
      throw new LadingError('LIMIT_EXCEEDED', `${what}: the response exceeds the ${limit}-byte limit`);
    }
    parts.push(b);
  }
  return Buffer.concat(parts);
}

/** Reads an error body for its message, bounded and never failing. */
export async function readErrorBody(res: HttpResponse): Promise<Buffer | undefined> {
  try {
    return await readBody(res, 64 * 1024, 'error body');
  } catch {
    return undefined;
  }
}
