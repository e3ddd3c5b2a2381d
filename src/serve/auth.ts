/**
 * Registry credentials, as ECR hands them out: GetAuthorizationToken issues a password
 * valid 12 hours; the registry API takes Basic `AWS:<password>`.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';

export const TOKEN_USER = 'AWS';

export class TokenStore {
  private readonly tokens = new Map<string, number>();

  constructor(private readonly ttlMs: number) {}

  /** A new password and when it expires. */
  issue(now = Date.now()): { username: string; password: string; expiresAt: Date; authorizationToken: string } {
    // ECR's passwords are long opaque base64 strings; so are these.
    const password = randomBytes(48).toString('base64');
    const expiresAt = now + this.ttlMs;
    this.tokens.set(password, expiresAt);
    // Expired ones are kept a day, so that using one says "expired" rather than "invalid".
    for (const [p, exp] of this.tokens) if (exp + 86_400_000 <= now) this.tokens.delete(p);
    return {
      username: TOKEN_USER,
      password,
      expiresAt: new Date(expiresAt),
      authorizationToken: Buffer.from(`${TOKEN_USER}:${password}`, 'utf8').toString('base64'),
    };
  }

  /** Checks an `Authorization` header value: 'ok', or why not. */
  check(header: string | undefined, now = Date.now()): 'ok' | 'missing' | 'invalid' | 'expired' {
    if (!header) return 'missing';
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    if (!m) return 'invalid';
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i < 0 || decoded.slice(0, i) !== TOKEN_USER) return 'invalid';
    const pw = decoded.slice(i + 1);
    let exp: number | undefined;
    const given = Buffer.from(pw, 'utf8');
    for (const [p, e] of this.tokens) {
      const b = Buffer.from(p, 'utf8');
      if (b.length === given.length && timingSafeEqual(b, given)) exp = e;
    }
    if (exp === undefined) return 'invalid';
    return exp > now ? 'ok' : 'expired';
  }
}
