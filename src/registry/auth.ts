import { LadingError } from '../errors';
import type { Challenge } from './challenge';
import type { CredentialProvider, ResolvedCredential } from './credentials';
import { responseError, transportError, type OperationContext } from './errors';
import { discard, readBody, readErrorBody, type Http } from './http';
import { sanitizeUrl, type Redactor } from './redact';

export type Action = 'pull' | 'push';

/** Access to one repository, as the token protocol's `scope` parameter spells it. */
export interface Scope {
  repository: string;
  actions: Action[];
}

/** `repository:NAME:pull,push`. */
export function scopeString(s: Scope): string {
  return `repository:${s.repository}:${[...new Set(s.actions)].sort().join(',')}`;
}

/** How the registry wants to be spoken to, learnt from `/v2/` (or any 401). */
export type AuthScheme =
  { kind: 'anonymous' } | { kind: 'basic' } | { kind: 'bearer'; realm: URL; service: string | undefined };

interface CachedToken {
  token: string;
  scopes: Scope[];
  expiresAt: number;
}

export interface AuthenticatorOptions {
  registry: string;
  /** The registry's base URL, for realms given as relative paths. */
  baseUrl: URL;
  credentials: CredentialProvider | undefined;
  http: Http;
  redactor: Redactor;
  userAgent: string;
  log: (line: string) => void;
}

const MAX_TOKEN_RESPONSE = 1024 * 1024;
/** The distribution token spec's default when `expires_in` is absent. */
const DEFAULT_TOKEN_SECONDS = 60;

/**
 * Produces the `Authorization` header for a request. Bearer tokens are cached per scope
 * set and shared between concurrent requests (one token request for N parallel uploads);
 * a token is renewed before it expires, or at once when the registry rejects it.
 */
export class Authenticator {
  scheme: AuthScheme | undefined;
  private credential: Promise<ResolvedCredential | undefined> | undefined;
  private resolved: ResolvedCredential | undefined;
  private readonly tokens = new Map<string, Promise<CachedToken>>();
  /** Tokens a registry rejected; checked synchronously so a renewal never picks one up again. */
  private readonly revoked = new Set<string>();

  constructor(private readonly o: AuthenticatorOptions) {}

  /** Where credentials came from (or were looked for), for AUTH messages. */
  get credentialSource(): string {
    return this.resolved?.source ?? this.o.credentials?.description ?? 'no credential source';
  }

  get hasCredentials(): boolean {
    return this.resolved !== undefined;
  }

  /** Learns the scheme from a 401's challenges; Bearer is preferred, as docker does. */
  learn(challenges: Challenge[], ctx: OperationContext): void {
    const bearer = challenges.find((c) => c.scheme === 'bearer' && c.params.realm);
    if (bearer) {
      let realm: URL;
      try {
        realm = new URL(bearer.params.realm!, this.o.baseUrl);
      } catch {
        throw new LadingError('AUTH', `${ctx.operation}: ${this.o.registry} sent an invalid token realm`);
      }
      if (realm.protocol !== 'https:' && realm.protocol !== 'http:') {
        throw new LadingError(
          'AUTH',
          `${ctx.operation}: ${this.o.registry} sent a token realm that is not http(s): ${sanitizeUrl(realm)}`,
        );
      }
      this.scheme = { kind: 'bearer', realm, service: bearer.params.service };
      return;
    }
    if (challenges.some((c) => c.scheme === 'basic')) {
      this.scheme = { kind: 'basic' };
      return;
    }
    const names = challenges.map((c) => c.scheme).join(', ') || 'none';
    throw new LadingError(
      'AUTH',
      `${ctx.operation}: ${this.o.registry} asks for authentication with unsupported scheme(s) ${names} (Basic and Bearer are supported)`,
    );
  }

  private async getCredential(signal: AbortSignal | undefined): Promise<ResolvedCredential | undefined> {
    if (this.o.credentials === undefined) return undefined;
    this.credential ??= this.o.credentials.resolve(this.o.registry, signal).then((c) => {
      if (c !== undefined) {
        for (const s of [c.password, c.identityToken, c.registryToken]) this.o.redactor.add(s);
        if (c.username !== undefined && c.password !== undefined) this.o.redactor.add(`${c.username}:${c.password}`);
      }
      this.resolved = c;
      return c;
    });
    try {
      return await this.credential;
    } catch (e) {
      this.credential = undefined;
      throw e;
    }
  }

  /** The header for a request needing `scopes`, or undefined for anonymous access. */
  async authorization(
    scopes: Scope[],
    ctx: OperationContext,
    signal: AbortSignal | undefined,
  ): Promise<string | undefined> {
    const scheme = this.scheme;
    if (scheme === undefined || scheme.kind === 'anonymous') return undefined;
    const cred = await this.getCredential(signal);
    if (scheme.kind === 'basic') {
      if (cred?.username === undefined || cred.password === undefined) return undefined;
      return `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
    }
    if (cred?.registryToken !== undefined) return `Bearer ${cred.registryToken}`;
    const token = await this.token(scheme, scopes, cred, ctx, signal);
    return `Bearer ${token}`;
  }

  /**
   * Forgets what made a request fail with 401: the cached token it carried, or the
   * resolved credential (a provider may renew it, like ECR's 12-hour tokens).
   */
  invalidate(sentAuthorization: string | undefined): void {
    if (sentAuthorization === undefined) return;
    if (sentAuthorization.startsWith('Basic ')) {
      this.credential = undefined;
      return;
    }
    const token = sentAuthorization.slice('Bearer '.length);
    this.revoked.add(token);
    for (const [key, p] of this.tokens) {
      p.then(
        (t) => {
          if (t.token === token && this.tokens.get(key) === p) this.tokens.delete(key);
        },
        () => undefined,
      );
    }
  }

  private async token(
    scheme: Extract<AuthScheme, { kind: 'bearer' }>,
    scopes: Scope[],
    cred: ResolvedCredential | undefined,
    ctx: OperationContext,
    signal: AbortSignal | undefined,
  ): Promise<string> {
    const now = Date.now();
    for (const p of this.tokens.values()) {
      const t = await p.catch(() => undefined);
      if (t !== undefined && t.expiresAt > now && !this.revoked.has(t.token) && covers(t.scopes, scopes))
        return t.token;
    }
    const key = scopes.map(scopeString).sort().join(' ');
    const existing = this.tokens.get(key);
    if (existing !== undefined) {
      const t = await existing.catch(() => undefined);
      if (t !== undefined && t.expiresAt > Date.now() && !this.revoked.has(t.token)) return t.token;
    }
    const p = this.fetchToken(scheme, scopes, cred, ctx, signal);
    this.tokens.set(key, p);
    try {
      return (await p).token;
    } catch (e) {
      if (this.tokens.get(key) === p) this.tokens.delete(key);
      throw e;
    }
  }

  private async fetchToken(
    scheme: Extract<AuthScheme, { kind: 'bearer' }>,
    scopes: Scope[],
    cred: ResolvedCredential | undefined,
    ctx: OperationContext,
    signal: AbortSignal | undefined,
  ): Promise<CachedToken> {
    const scopeStrings = scopes.map(scopeString);
    const url = new URL(scheme.realm);
    const headers: Record<string, string> = { 'user-agent': this.o.userAgent, accept: 'application/json' };
    let method: 'GET' | 'POST' = 'GET';
    let body: Buffer | undefined;
    if (cred?.identityToken !== undefined) {
      // An identity token is an OAuth2 refresh token: only the POST form accepts it.
      method = 'POST';
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: cred.identityToken,
        client_id: 'lading',
      });
      if (scheme.service !== undefined) form.set('service', scheme.service);
      if (scopeStrings.length > 0) form.set('scope', scopeStrings.join(' '));
      body = Buffer.from(form.toString());
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else {
      if (scheme.service !== undefined) url.searchParams.append('service', scheme.service);
      for (const s of scopeStrings) url.searchParams.append('scope', s);
      if (cred?.username !== undefined && cred.password !== undefined) {
        url.searchParams.append('account', cred.username);
        headers.authorization = `Basic ${Buffer.from(`${cred.username}:${cred.password}`).toString('base64')}`;
      }
    }
    const tctx: OperationContext = {
      operation: `get a token for ${scopeStrings.join(' ') || 'the registry'} from ${url.origin}${url.pathname} (for ${ctx.operation})`,
      registry: this.o.registry,
    };
    const redact = (s: string): string => this.o.redactor.redact(s);
    const started = Date.now();
    let res;
    try {
      res = await this.o.http.send({ method, url, headers, body, signal });
    } catch (e) {
      throw transportError(tctx, url.host, e, signal, redact, this.o.http.tlsInfo(url.host));
    }
    this.o.log(redact(`${method} ${sanitizeUrl(url)} -> ${res.status} (${Date.now() - started} ms)`));
    if (res.status !== 200) {
      const errBody = await readErrorBody(res);
      throw responseError(
        tctx,
        { status: res.status, headers: res.headers, body: errBody },
        { credentialSource: this.credentialSource, hasCredentials: cred !== undefined },
        redact,
      );
    }
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      const bytes = await readBody(res, MAX_TOKEN_RESPONSE, tctx.operation);
      parsed = JSON.parse(bytes.toString('utf8')) as typeof parsed;
    } catch (e) {
      if (e instanceof LadingError) throw e;
      await discard(res);
      throw new LadingError('AUTH', `${tctx.operation}: the token server answered with invalid JSON`);
    }
    const token = typeof parsed.token === 'string' && parsed.token !== '' ? parsed.token : parsed.access_token;
    if (typeof token !== 'string' || token === '') {
      throw new LadingError(
        'AUTH',
        `${tctx.operation}: the token server's answer has neither "token" nor "access_token"`,
      );
    }
    this.o.redactor.add(token);
    const seconds =
      typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_TOKEN_SECONDS;
    // Renew a little early: a token that expires between our check and the registry's
    // check costs a failed (possibly large) request.
    const lifetime = seconds * 1000;
    const expiresAt = started + lifetime - Math.min(30_000, lifetime / 4);
    this.o.log(`token for ${scopeStrings.join(' ') || '(no scope)'} valid for ${seconds} s`);
    return { token, scopes, expiresAt };
  }
}

/** True when the granted scopes include every needed action on every needed repository. */
export function covers(granted: Scope[], needed: Scope[]): boolean {
  return needed.every((n) =>
    n.actions.every((a) => granted.some((g) => g.repository === n.repository && g.actions.includes(a))),
  );
}
