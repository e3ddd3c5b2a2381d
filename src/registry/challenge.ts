/**
 * One `WWW-Authenticate` challenge. `scheme` is lower case (`basic`, `bearer`), as are the
 * parameter names; values are unquoted and unescaped.
 */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;

/**
 * Parses one or more `WWW-Authenticate` header values (RFC 7235 §4.1) into challenges.
 *
 * A header may carry several challenges separated by commas, and quoted values may contain
 * commas and escaped quotes, so splitting on `,` is wrong; this is a small tokenizer
 * instead. It never throws: a malformed tail is dropped and what parsed is returned, since
 * a registry's odd header should not hide the challenge we can use.
 */
export function parseChallenges(header: string | readonly string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  if (typeof header !== 'string') return header.flatMap((h) => parseChallenges(h));
  const s = header;
  const out: Challenge[] = [];
  let i = 0;
  const skip = (chars: RegExp): void => {
    while (i < s.length && chars.test(s[i]!)) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < s.length && TCHAR.test(s[i]!)) i++;
    return s.slice(start, i);
  };
  const quoted = (): string => {
    // At the opening quote; an unterminated string runs to the end of the header.
    i++;
    let v = '';
    while (i < s.length && s[i] !== '"') {
      if (s[i] === '\\' && i + 1 < s.length) i++;
      v += s[i];
      i++;
    }
    i++;
    return v;
  };
  while (i < s.length) {
    skip(/[\s,]/);
    const scheme = token();
    if (scheme === '') {
      // Not a token: skip one character so a stray byte cannot loop forever.
      if (i < s.length) i++;
      continue;
    }
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(challenge);
    while (i < s.length) {
      const mark = i;
      skip(/[\s,]/);
      const name = token();
      skip(/[ \t]/);
      if (name === '' || s[i] !== '=') {
        // Not `name=`: the token starts the next challenge (or is a token68, which no
        // registry uses); rewind so the outer loop reads it as a scheme.
        i = mark;
        break;
      }
      i++;
      skip(/[ \t]/);
      const value = s[i] === '"' ? quoted() : token();
      // defineProperty: a parameter named `__proto__` must stay a plain own property.
      Object.defineProperty(challenge.params, name.toLowerCase(), {
        value,
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
  }
  return out;
}

/** Quotes a value for a challenge header; the inverse of the parser, used by tests and servers. */
export function quoteParam(value: string): string {
  return `"${value.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}
