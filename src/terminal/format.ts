/** Human-friendly sizes: 1.5 MiB, as skopeo and crane print them. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : v.toFixed(0)} ${units[i]}`;
}

export function shortDigest(d: string): string {
  const i = d.indexOf(':');
  return i === -1 ? d : `${d.slice(0, i + 1)}${d.slice(i + 1, i + 13)}`;
}

/** Control characters, DEL, C1, line/paragraph separators and bidi overrides: what can rewrite a terminal. */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * An untrusted string (names and media types from an archive, paths, registry messages) made
 * safe for a terminal, as coreutils quotes file names: every character that could move the
 * cursor, clear the screen, retitle the window or start a forged line is shown as an escape
 * (`\x1b`, `\n`, `\u202e`), and the text is cut at `max` characters. `--json` output never
 * goes through this: JSON escapes these itself.
 */
export function terminalSafe(s: string, max = 2000): string {
  const cut = s.length > max ? `${s.slice(0, max)}...` : s;
  return cut.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}
