import type { Readable } from 'node:stream';
import { LadingError } from '../errors';
import { Authenticator, type AuthScheme, type Scope } from './auth';
import { parseChallenges } from './challenge';
import type { CredentialProvider } from './credentials';
import { responseError, transportError, type OperationContext } from './errors';
import { discard, header, readErrorBody, type Http, type HttpResponse } from './http';
import { sanitizeUrl, type Redactor } from './redact';

export interface TransportRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** A path on the registry (`/v2/...`) or an absolute URL (an upload `Location`). */
  url: string | URL;
  headers?: Record<string, string>;
  /** A Buffer can be re-sent after a 401; a stream cannot (see RegistryError.staleAuth). */
  body?: Buffer | Readable;
  scopes: Scope[];
  /** Statuses the caller handles; any other becomes a RegistryError. */
  expect: number[];
  /** Follow redirects (GET/HEAD of blobs go to storage), dropping credentials across origins. */
  followRedirects?: boolean;
}

export interface TransportOptions {
  registry: string;
  baseUrl: URL;
  http: Http;
  credentials: CredentialProvider | undefined;
  redactor: Redactor;
  userAgent: string;
  log: (line: string) => void;
}

const MAX_REDIRECTS = 5;

/**
 * Sends requests to one registry with the right credentials: learns the auth scheme from
 * `/v2/` before the first request (so a streamed body is never wasted on a 401), retries a
 * replayable request once after renewing a rejected token, and turns every failure into a
 * LadingError naming the operation.
 */
export class RegistryTransport {
  readonly auth: Authenticator;
  private discovery: Promise<void> | undefined;

  constructor(private readonly o: TransportOptions) {
    this.auth = new Authenticator({
      registry: o.registry,
      baseUrl: o.baseUrl,
      credentials: o.credentials,
      http: o.http,
      redactor: o.redactor,
      userAgent: o.userAgent,
      log: o.log,
    });
  }

  get registry(): string {
    return this.o.registry;
  }

  redact = (s: string): string => this.o.redactor.redact(s);

  log(line: string): void {
    this.o.log(this.redact(line));
  }

  resolve(url: string | URL): URL {
    return new URL(url, this.o.baseUrl);
  }

  /** `GET /v2/` without credentials: tells whether and how the registry wants auth. */
  async discover(ctx: OperationContext, signal: AbortSignal | undefined, fresh = false): Promise<AuthScheme> {
    if (fresh || this.auth.scheme === undefined) {
      if (fresh || this.discovery === undefined) {
        const p = this.probe(ctx, signal);
        this.discovery = p;
        p.catch(() => {
          if (this.discovery === p) this.discovery = undefined;
        });
      }
      await this.discovery;
    }
    return this.auth.scheme!;
  }

  private async probe(ctx: OperationContext, signal: AbortSignal | undefined): Promise<void> {
    const res = await this.raw(ctx, { method: 'GET', url: this.resolve('/v2/'), headers: {} }, signal);
    await discard(res);
    if (res.status === 200) {
      this.auth.scheme = { kind: 'anonymous' };
    } else if (res.status === 401) {
      this.auth.learn(parseChallenges(res.headers['www-authenticate']), ctx);
    } else if (res.status === 404) {
      throw new LadingError(
        'NOT_FOUND',
        this.redact(
          `${ctx.operation} failed: ${this.o.baseUrl.origin} has no registry API at /v2/ (HTTP 404): is the host right?`,
        ),
      );
    } else {
      throw responseError(ctx, { status: res.status, headers: res.headers }, { hasCredentials: false }, this.redact);
    }
  }

  private async raw(
    ctx: OperationContext,
    req: { method: TransportRequest['method']; url: URL; headers: Record<string, string>; body?: Buffer | Readable },
    signal: AbortSignal | undefined,
  ): Promise<HttpResponse> {
    const started = Date.now();
    let res: HttpResponse;
    try {
      res = await this.o.http.send({
        method: req.method,
        url: req.url,
        headers: { 'user-agent': this.o.userAgent, ...req.headers },
        body: req.body,
        signal,
      });
    } catch (e) {
      this.log(`${req.method} ${sanitizeUrl(req.url)} failed: ${e instanceof Error ? e.message : String(e)}`);
      throw transportError(ctx, req.url.host, e, signal, this.redact, this.o.http.tlsInfo(req.url.host));
    }
    this.log(`${req.method} ${sanitizeUrl(req.url)} -> ${res.status} (${Date.now() - started} ms)`);
    return res;
  }

  /** Sends an authenticated request; see {@link TransportRequest}. */
  async request(ctx: OperationContext, req: TransportRequest, signal: AbortSignal | undefined): Promise<HttpResponse> {
    await this.discover(ctx, signal);
    let url = this.resolve(req.url);
    let renewed = false;
    let redirects = 0;
    for (;;) {
      const sameOrigin = url.origin === this.o.baseUrl.origin;
      const authorization = sameOrigin ? await this.auth.authorization(req.scopes, ctx, signal) : undefined;
      const headers: Record<string, string> = { ...req.headers };
      if (authorization !== undefined) headers.authorization = authorization;
      const res = await this.raw(ctx, { method: req.method, url, headers, body: req.body }, signal);
      if (res.status === 401 && sameOrigin && !req.expect.includes(401)) {
        const replayable = req.body === undefined || Buffer.isBuffer(req.body);
        const errBody = await readErrorBody(res);
        const challenges = parseChallenges(res.headers['www-authenticate']);
        const schemeBefore = this.auth.scheme?.kind;
        if (challenges.length > 0) this.auth.learn(challenges, ctx);
        // Worth a second try when the token may have expired or the scheme just changed
        // (a registry open at /v2/ but closed on the repository).
        const hope = authorization !== undefined || schemeBefore !== this.auth.scheme?.kind;
        this.auth.invalidate(authorization);
        if (hope && !renewed && replayable) {
          renewed = true;
          continue;
        }
        throw responseError(
          ctx,
          { status: 401, headers: res.headers, body: errBody },
          {
            credentialSource: this.auth.credentialSource,
            hasCredentials: this.auth.hasCredentials,
            staleAuth: hope && !replayable,
          },
          this.redact,
        );
      }
      if (
        req.followRedirects === true &&
        [301, 302, 303, 307, 308].includes(res.status) &&
        !req.expect.includes(res.status)
      ) {
        const location = header(res.headers, 'location');
        await discard(res);
        if (location === undefined || ++redirects > MAX_REDIRECTS) {
          throw new LadingError(
            'REGISTRY',
            this.redact(
              `${ctx.operation} failed: ${location === undefined ? 'a redirect without Location' : 'too many redirects'} from ${sanitizeUrl(url)}`,
            ),
          );
        }
        url = new URL(location, url);
        continue;
      }
      if (req.expect.includes(res.status)) return res;
      const errBody = await readErrorBody(res);
      throw responseError(
        ctx,
        { status: res.status, headers: res.headers, body: errBody },
        { credentialSource: this.auth.credentialSource, hasCredentials: this.auth.hasCredentials },
        this.redact,
      );
    }
  }
}
