import { request as httpRequest, type Agent as HttpAgent, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import { LadingError } from '../errors';
import { ProxyHttpAgent, ProxyHttpsAgent } from '../net/agents';
import { defaultNetwork, type Network } from '../net/network';
import { proxyRefusal } from '../net/tunnel';
import { release } from '../util/buffer-pool';

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
  /** Lower-case names; a header sent more than once is an array. */
  headers: Headers;
  body: Readable;
}

/** A connection pool to share between clients (see {@link HttpOptions.agents}). */
export interface HttpAgents {
  http: HttpAgent;
  https: HttpsAgent;
}

export interface HttpOptions {
  /** TLS without certificate verification (`--insecure`). */
  insecure?: boolean;
  /** Share one pool between clients; the client then does not close it. */
  agents?: HttpAgents;
  /** Proxies and certificates. @default from the process environment */
  network?: Network;
  /** Longest wait for response headers once the request is sent, e.g. while a registry hashes a large upload. @default 300_000 */
  headersTimeoutMs?: number;
  /** Longest silence on the connection while a request or response body streams. @default 300_000 */
  idleTimeoutMs?: number;
}

/**
 * Keep-alive pools for plain and TLS connections, with lading's settings, through the proxies
 * and with the certificates (per-registry CAs and client certificates) that `network` names.
 */
export function createAgents(options: { insecure?: boolean; network?: Network } = {}): HttpAgents {
  // Idle sockets are dropped after 30 s, before the usual 60 s of load balancers in front of
  // registries, so a pooled connection is rarely found closed under us.
  const common = { keepAlive: true, keepAliveMsecs: 10_000, timeout: 30_000, scheduling: 'lifo' as const };
  const network = options.network ?? defaultNetwork();
  const net = {
    routes: network.routes,
    tlsFor: (hostPort: string) => network.trust.forRegistry(hostPort).secureContext,
    proxyTls: () => network.generalTls,
  };
  return {
    http: new ProxyHttpAgent(common, net),
    https: new ProxyHttpsAgent({ ...common, rejectUnauthorized: options.insecure !== true }, net),
  };
}

function timeoutError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/**
 * A thin layer over node:http(s): keep-alive pooling, one place for timeouts and TLS settings.
 *
 * Why not undici (which lading used at first): its HTTP parser is WebAssembly, and compiling
 * it costs ~35 MiB of peak RSS at the first request and ~20 MiB for the module itself, a
 * quarter of the 128 MiB a push is meant to fit in; node:http's parser is native and
 * already loaded. Registry traffic is a few small JSON documents and large request bodies,
 * which node:http streams as well.
 */
export class Http {
  private readonly agents: HttpAgents;
  private readonly owned: boolean;
  private readonly headersTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly network: Network;

  constructor(options: HttpOptions = {}) {
    this.owned = options.agents === undefined;
    this.network = options.network ?? defaultNetwork();
    this.agents = options.agents ?? createAgents({ insecure: options.insecure === true, network: this.network });
    this.headersTimeoutMs = options.headersTimeoutMs ?? 300_000;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 300_000;
  }

  send(req: HttpRequest): Promise<HttpResponse> {
    return new Promise<HttpResponse>((resolve, reject) => {
      const tls = req.url.protocol === 'https:';
      let settled = false;
      let headersTimer: NodeJS.Timeout | undefined;
      const body = req.body;
      const fail = (e: Error): void => {
        clearTimeout(headersTimer);
        if (settled) return;
        settled = true;
        reject(e);
      };
      const onResponse = (res: IncomingMessage): void => {
        clearTimeout(headersTimer);
        // A forwarded plain-HTTP request: the proxy, not the registry, asks for credentials.
        const proxy = !tls && res.statusCode === 407 ? this.network.routes.proxyFor(req.url) : undefined;
        if (proxy) {
          res.resume();
          fail(proxyRefusal(proxy, req.url.host, 407, res.statusMessage ?? ''));
          return;
        }
        settled = true;
        // A registry may answer (an error, usually) before the whole body is sent: once that
        // answer is read, the rest of the request is abandoned with its connection.
        res.once('end', () => {
          if (!r.writableFinished) r.destroy();
        });
        resolve({ status: res.statusCode ?? 0, headers: distinct(res), body: res });
      };
      const options = {
        method: req.method,
        headers: req.headers ?? {},
        timeout: this.idleTimeoutMs,
        ...(req.signal ? { signal: req.signal } : {}),
      };
      const r = tls
        ? httpsRequest(req.url, { ...options, agent: this.agents.https }, onResponse)
        : httpRequest(req.url, { ...options, agent: this.agents.http }, onResponse);
      r.once('error', fail);
      r.once('timeout', () =>
        r.destroy(
          timeoutError('IDLE_TIMEOUT', `no data from ${req.url.host} for ${Math.round(this.idleTimeoutMs / 1000)} s`),
        ),
      );
      r.once('finish', () => {
        if (settled) return;
        headersTimer = setTimeout(
          () =>
            r.destroy(
              timeoutError(
                'HEADERS_TIMEOUT',
                `no response from ${req.url.host} ${Math.round(this.headersTimeoutMs / 1000)} s after the request was sent`,
              ),
            ),
          this.headersTimeoutMs,
        );
        headersTimer.unref?.();
      });
      if (body === undefined) r.end();
      else if (Buffer.isBuffer(body)) r.end(body);
      else pump(body, r);
    });
  }

  /** What the TLS errors of `hostPort` should mention: the certificates used, if any. */
  tlsInfo(hostPort: string): { clientCertificate?: boolean; directory?: string | undefined } {
    try {
      const t = this.network.trust.forRegistry(hostPort);
      return { clientCertificate: t.clientCertificate, directory: t.directory };
    } catch {
      return {};
    }
  }

  async close(): Promise<void> {
    if (!this.owned) return;
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}

/**
 * Streams `body` into the request with backpressure, like `pipe`, and releases each chunk to
 * its pool once the socket has taken it (see util/buffer-pool): the request is the end of a
 * blob's journey.
 */
function pump(body: Readable, r: ClientRequest): void {
  const onData = (chunk: Buffer): void => {
    if (!r.write(chunk, (e) => (e ? undefined : release(chunk)))) body.pause();
  };
  const onDrain = (): void => void body.resume();
  const onEnd = (): void => void r.end();
  const onError = (e: Error): void => void r.destroy(e);
  body.on('data', onData);
  body.once('end', onEnd);
  body.once('error', onError);
  r.on('drain', onDrain);
  r.once('close', () => {
    body.off('data', onData);
    body.off('end', onEnd);
    r.off('drain', onDrain);
    // Abandoned (an early answer, a failure): stop reading; the body's owner destroys it.
    if (!body.readableEnded) body.pause();
  });
}

/** Headers as node:http parsed them, a repeated header (WWW-Authenticate) kept as a list. */
function distinct(res: IncomingMessage): Headers {
  const out: Headers = {};
  for (const [name, values] of Object.entries(res.headersDistinct)) {
    if (values === undefined) continue;
    out[name] = values.length === 1 ? values[0] : values;
  }
  return out;
}

/** The first value of a header (names are lower-case). */
export function header(headers: Headers, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Drains a body we do not need so the connection goes back to the pool. */
export async function discard(res: HttpResponse): Promise<void> {
  const body = res.body;
  if (body.readableEnded || body.destroyed) return;
  await new Promise<void>((resolve) => {
    let n = 0;
    // A short body is read to its end so the connection can be reused; past 256 KiB, closing
    // the connection is cheaper than reading on.
    body.on('data', (c: Buffer) => {
      n += c.length;
      if (n > 256 * 1024) body.destroy();
    });
    body.once('end', resolve);
    body.once('close', resolve);
    body.once('error', () => resolve());
  });
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
