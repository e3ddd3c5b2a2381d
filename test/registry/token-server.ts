/**
 * A small token server of the distribution token protocol, for registry tests: it signs
 * RS256 JWTs with a key and self-signed certificate made with the `openssl` CLI, and puts
 * the certificate in the JWT header's `x5c` (what distribution 2.8 checks against its
 * `rootcertbundle`). No side effects at import: node --test runs every file under test/.
 */
import { execFileSync } from 'node:child_process';
import { createSign, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TokenRequestRecord {
  method: string;
  scopes: string[];
  service: string | undefined;
  account: string | undefined;
  /** `basic` when Basic credentials were sent, `refresh_token` for the OAuth2 POST form. */
  auth: 'none' | 'basic' | 'refresh_token';
}

export interface TokenServerOptions {
  service: string;
  issuer?: string;
  /** user -> password; requests with other credentials get 401. */
  users?: Record<string, string>;
  /** Accept requests without credentials. @default true */
  anonymous?: boolean;
  /** refresh tokens accepted by the POST form -> the user they stand for. */
  refreshTokens?: Record<string, string>;
  /** `expires_in` announced to clients. @default 300 */
  expiresIn?: number;
  /** Answer with `access_token` instead of `token`. */
  accessTokenField?: boolean;
}

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  /** PEM of the signing certificate, for the registry's rootcertbundle. */
  certPem: string;
  requests: TokenRequestRecord[];
  /** Changeable while running: what the next tokens announce and how they are returned. */
  settings: { expiresIn: number; accessTokenField: boolean };
  /** The next N tokens are issued already expired (exp in the past) while `expires_in` says otherwise. */
  expireNext(n: number): void;
  stop(): Promise<void>;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** Makes an RSA key and a self-signed certificate with openssl (about 100 ms). */
function makeKeyAndCert(): { keyPem: string; certPem: string } {
  const dir = mkdtempSync(join(tmpdir(), 'lading-token-'));
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
        '-days',
        '2',
        '-subj',
        '/CN=lading-test-token-issuer',
      ],
      { stdio: 'ignore' },
    );
    return { keyPem: readFileSync(join(dir, 'key.pem'), 'utf8'), certPem: readFileSync(join(dir, 'cert.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function accessOf(scopes: string[]): { type: string; name: string; actions: string[] }[] {
  return scopes
    .flatMap((s) => s.split(' '))
    .filter((s) => s !== '')
    .map((s) => {
      // repository:name:actions, where the name itself has no ':' (ports are not in names)
      const first = s.indexOf(':');
      const last = s.lastIndexOf(':');
      return { type: s.slice(0, first), name: s.slice(first + 1, last), actions: s.slice(last + 1).split(',') };
    });
}

export async function startTokenServer(options: TokenServerOptions): Promise<TokenServer> {
  const { keyPem, certPem } = makeKeyAndCert();
  const x5c = certPem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  const issuer = options.issuer ?? 'lading-test-issuer';
  const requests: TokenRequestRecord[] = [];
  let expireNext = 0;
  const settings = { expiresIn: options.expiresIn ?? 300, accessTokenField: options.accessTokenField === true };

  const sign = (account: string | undefined, scopes: string[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const expired = expireNext > 0;
    if (expired) expireNext--;
    const header = { typ: 'JWT', alg: 'RS256', x5c: [x5c] };
    const claims = {
      iss: issuer,
      sub: account ?? '',
      aud: options.service,
      // distribution allows 60 s of clock skew: an hour ago is surely rejected.
      exp: expired ? now - 3600 : now + settings.expiresIn,
      nbf: now - 3700,
      iat: now - 3700,
      jti: randomUUID(),
      access: accessOf(scopes),
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(input).sign(keyPem);
    return `${input}.${b64url(signature)}`;
  };

  const reply = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== '/token') return reply(res, 404, { error: 'not found' });
    let account: string | undefined;
    let scopes: string[];
    let service: string | undefined;
    let auth: TokenRequestRecord['auth'] = 'none';
    if (req.method === 'POST') {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      auth = 'refresh_token';
      const user =
        form.get('grant_type') === 'refresh_token'
          ? options.refreshTokens?.[form.get('refresh_token') ?? '']
          : undefined;
      service = form.get('service') ?? undefined;
      scopes = (form.get('scope') ?? '').split(' ').filter((s) => s !== '');
      requests.push({ method: 'POST', scopes, service, account: user, auth });
      if (user === undefined) return reply(res, 401, { error: 'invalid_grant' });
      account = user;
      return reply(res, 200, { access_token: sign(account, scopes), expires_in: settings.expiresIn });
    }
    scopes = url.searchParams.getAll('scope');
    service = url.searchParams.get('service') ?? undefined;
    const authz = req.headers.authorization;
    if (authz?.startsWith('Basic ')) {
      auth = 'basic';
      const decoded = Buffer.from(authz.slice(6), 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      const user = decoded.slice(0, i);
      if (options.users?.[user] === undefined || options.users[user] !== decoded.slice(i + 1)) {
        requests.push({ method: 'GET', scopes, service, account: user, auth });
        return reply(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] });
      }
      account = user;
    } else if (options.anonymous === false) {
      requests.push({ method: 'GET', scopes, service, account: undefined, auth });
      return reply(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'credentials required' }] });
    }
    requests.push({ method: 'GET', scopes, service, account, auth });
    const token = sign(account, scopes);
    const body: Record<string, unknown> = { expires_in: settings.expiresIn, issued_at: new Date().toISOString() };
    body[settings.accessTokenField ? 'access_token' : 'token'] = token;
    return reply(res, 200, body);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => reply(res, 500, { error: String(e) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service: options.service,
    issuer,
    certPem,
    requests,
    settings,
    expireNext: (n) => {
      expireNext = n;
    },
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
