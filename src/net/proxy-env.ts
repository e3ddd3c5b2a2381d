import { BlockList, isIP } from 'node:net';
import { LadingError } from '../errors';

/** A proxy to send requests through, and the variable it came from (for messages). */
export interface Proxy {
  url: URL;
  /** e.g. `HTTPS_PROXY`, as the user spelt it. */
  source: string;
}

/**
 * Which requests go through which proxy, from the environment, as curl reads it: `https_proxy`
 * for https targets, `http_proxy` for http targets, `all_proxy` for either when the specific one
 * is unset, and `no_proxy` for the exceptions. The lower-case form wins where both are set (curl
 * ignores upper-case `HTTP_PROXY` altogether, for CGI's sake; we read it, as Go and the AWS CLI
 * do). An empty value is unset.
 */
export interface ProxyRoutes {
  /** The proxy for `url`, or undefined to connect directly. */
  proxyFor(url: URL): Proxy | undefined;
  /** True when some proxy is configured (for the debug line). */
  readonly configured: boolean;
}

function variable(env: NodeJS.ProcessEnv, name: string): { value: string; source: string } | undefined {
  for (const source of [name.toLowerCase(), name.toUpperCase()]) {
    const value = env[source]?.trim();
    if (value) return { value, source };
  }
  return undefined;
}

/** Parses a proxy variable's value; `host:port` without a scheme means http, as in curl. */
export function parseProxyUrl(value: string, source: string): URL {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new LadingError(
      'USAGE',
      `${source} is not a proxy URL (${redactProxyText(value)}): expected http://[user:password@]host:port`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new LadingError(
      'USAGE',
      `${source}: ${url.protocol.slice(0, -1)} proxies are not supported; use an http:// or https:// proxy`,
    );
  }
  if (url.hostname === '') throw new LadingError('USAGE', `${source} names no proxy host (${redactProxyText(value)})`);
  return url;
}

/** The proxy URL without its credentials: what messages and logs may show. */
export function displayProxy(url: URL): string {
  return `${url.protocol}//${url.username ? '***@' : ''}${url.host}`;
}

/** Hides `user:password@` in a proxy value that did not even parse. */
function redactProxyText(value: string): string {
  return value.replace(/\/\/[^@/]*@/, '//***@').replace(/^[^/@]*@/, '***@');
}

interface Rule {
  /** Undefined: any port. */
  port?: number;
  /** A domain: the host itself and every name under it. */
  domain?: string;
  /** An address or a CIDR range. */
  addresses?: BlockList;
}

/** Host as compared with NO_PROXY: lower case, no brackets, no trailing dot. */
function normalHost(host: string): string {
  return host
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '');
}

function family(ip: string): 'ipv4' | 'ipv6' {
  return isIP(ip) === 6 ? 'ipv6' : 'ipv4';
}

/**
 * One NO_PROXY entry: `*`, a host name, a domain (`example.com` and `.example.com` both match
 * the domain and every name under it, as in curl >= 7.86; `*.example.com` too), an IP address,
 * a CIDR range (`10.0.0.0/8`, `fd00::/8`), any of them with `:port` (`[::1]:5000` for IPv6).
 * Host names are not resolved to compare them with addresses (neither curl nor Go does).
 */
function parseRule(entry: string): Rule | 'all' | undefined {
  let e = entry.trim().toLowerCase();
  if (e === '') return undefined;
  if (e === '*') return 'all';
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(e);
  if (bracketed) {
    e = bracketed[1]!;
    if (bracketed[2]) port = Number(bracketed[2]);
  } else {
    // One colon is host:port; more is a bare IPv6 address (or range).
    const m = /^([^:]+):(\d+)$/.exec(e);
    if (m) {
      e = m[1]!;
      port = Number(m[2]);
    }
  }
  const rule: Rule = port === undefined ? {} : { port };
  const slash = e.indexOf('/');
  if (slash > 0) {
    const ip = e.slice(0, slash);
    const prefix = Number(e.slice(slash + 1));
    if (isIP(ip) === 0 || !Number.isInteger(prefix) || prefix < 0 || prefix > (isIP(ip) === 6 ? 128 : 32))
      return undefined;
    const addresses = new BlockList();
    addresses.addSubnet(ip, prefix, family(ip));
    return { ...rule, addresses };
  }
  if (isIP(e) !== 0) {
    const addresses = new BlockList();
    addresses.addAddress(e, family(e));
    return { ...rule, addresses };
  }
  const domain = normalHost(e.replace(/^\*?\./, ''));
  return domain === '' ? undefined : { ...rule, domain };
}

function defaultPort(url: URL): number {
  return url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
}

/** The NO_PROXY matcher: true when `url` must be reached directly. */
export function noProxyMatcher(value: string | undefined): (url: URL) => boolean {
  const rules: Rule[] = [];
  for (const entry of (value ?? '').split(/[\s,]+/)) {
    const r = parseRule(entry);
    if (r === 'all') return () => true;
    if (r) rules.push(r);
  }
  return (url) => {
    const host = normalHost(url.hostname);
    const port = defaultPort(url);
    const ip = isIP(host) !== 0;
    return rules.some((r) => {
      if (r.port !== undefined && r.port !== port) return false;
      if (r.addresses) return ip && r.addresses.check(host, family(host));
      return !ip && (host === r.domain || host.endsWith(`.${r.domain!}`));
    });
  };
}

/** Proxy routes from environment variables (`process.env` by default). */
export function proxyRoutesFromEnv(env: NodeJS.ProcessEnv = process.env): ProxyRoutes {
  const all = variable(env, 'all_proxy');
  const https = variable(env, 'https_proxy') ?? all;
  const http = variable(env, 'http_proxy') ?? all;
  const proxies = {
    'https:': https ? { url: parseProxyUrl(https.value, https.source), source: https.source } : undefined,
    'http:': http ? { url: parseProxyUrl(http.value, http.source), source: http.source } : undefined,
  };
  const bypass = noProxyMatcher(variable(env, 'no_proxy')?.value);
  return {
    configured: proxies['https:'] !== undefined || proxies['http:'] !== undefined,
    proxyFor(url: URL): Proxy | undefined {
      const p = proxies[url.protocol as 'http:' | 'https:'];
      return p === undefined || bypass(url) ? undefined : p;
    },
  };
}
