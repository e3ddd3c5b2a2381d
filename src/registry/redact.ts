/**
 * Keeps secrets out of everything lading prints. Every secret the registry code learns
 * (passwords, identity and bearer tokens) is registered here, and every log line and error
 * message passes through `redact` before it leaves the module: defence in depth against a
 * registry or a credential helper echoing a secret back.
 */
export class Redactor {
  private readonly secrets = new Set<string>();

  add(secret: string | undefined): void {
    // Very short strings would blank out ordinary words; no real secret is that short.
    if (secret !== undefined && secret.length >= 4) {
      this.secrets.add(secret);
      // Basic auth puts `user:password` in base64; catch the encoded form as well.
      this.secrets.add(Buffer.from(secret).toString('base64'));
    }
  }

  redact(text: string): string {
    let out = text;
    for (const s of this.secrets) {
      if (out.includes(s)) out = out.split(s).join('***');
    }
    return out;
  }
}

// Query parameters that are safe and useful in logs; any other value (upload `_state`,
// presigned-URL signatures and credentials) is replaced.
const SAFE_QUERY = new Set(['digest', 'mount', 'from', 'service', 'scope', 'n', 'last', 'account']);

/** A URL for logs and messages: no userinfo, and query values other than known-safe ones hidden. */
export function sanitizeUrl(url: URL | string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return '<invalid URL>';
  }
  u.username = '';
  u.password = '';
  if (u.search === '') return u.toString();
  const parts = u.search
    .slice(1)
    .split('&')
    .map((kv) => {
      const eq = kv.indexOf('=');
      const key = eq < 0 ? kv : kv.slice(0, eq);
      return SAFE_QUERY.has(decodeURIComponentSafe(key)) || eq < 0 ? kv : `${key}=***`;
    });
  return `${u.origin}${u.pathname}?${parts.join('&')}`;
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
