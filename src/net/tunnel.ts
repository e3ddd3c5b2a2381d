import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type SecureContext } from 'node:tls';
import { LadingError } from '../errors';
import { displayProxy, type Proxy } from './proxy-env';

/** A failure of the proxy itself (unreachable, 407, refused CONNECT): names it and what to check. */
export class ProxyError extends LadingError {
  /** A proxy that could not reach the target right now (502, 503, 504) may do better on a retry. */
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean, cause?: unknown) {
    super('PROXY', message, cause === undefined ? undefined : { cause });
    this.name = 'ProxyError';
    this.retryable = retryable;
  }
}

/** `Proxy-Authorization` for a proxy URL with credentials (percent-decoded, as curl does). */
export function proxyAuthorization(url: URL): string | undefined {
  if (!url.username && !url.password) return undefined;
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/** What to say when the proxy itself cannot be reached. */
export function unreachableProxy(proxy: Proxy, target: string, e: unknown): ProxyError {
  const code = (e as { code?: string }).code;
  const msg = e instanceof Error ? e.message : String(e);
  const why =
    code === 'ENOTFOUND' || code === 'EAI_AGAIN'
      ? `its host does not resolve (${code})`
      : code === 'ECONNREFUSED'
        ? 'connection refused'
        : (code ?? msg);
  return new ProxyError(
    `cannot reach the proxy ${displayProxy(proxy.url)} (from ${proxy.source}) for ${target}: ${why}; check ${proxy.source}, or list ${target.replace(/:\d+$/, '')} in NO_PROXY to connect directly`,
    false,
    e,
  );
}

/** What to say about a proxy's non-2xx answer to CONNECT (or to a forwarded request, for 407). */
export function proxyRefusal(proxy: Proxy, target: string, status: number, statusText: string): ProxyError {
  const who = `the proxy ${displayProxy(proxy.url)} (from ${proxy.source})`;
  // tinyproxy answers wrong credentials with 401 rather than 407.
  if (status === 407 || status === 401) {
    const fix = proxy.url.username
      ? `it refused the credentials in ${proxy.source}; check the user name and password (percent-encode special characters)`
      : `put them in ${proxy.source} as http://USER:PASSWORD@${proxy.url.host}`;
    return new ProxyError(`${who} requires authentication (407 ${statusText}) for ${target}: ${fix}`, false);
  }
  const retryable = status === 502 || status === 503 || status === 504;
  const fix = retryable
    ? 'the proxy could not reach it; check that the host is right and reachable from the proxy'
    : `ask the proxy's administrators to allow ${target}, or list the host in NO_PROXY to connect directly`;
  return new ProxyError(`${who} refused to connect to ${target} (${status} ${statusText}): ${fix}`, retryable);
}

/** Longest wait for the proxy to open the tunnel. */
const CONNECT_TIMEOUT_MS = 30_000;
/** A CONNECT answer is a status line and a few headers. */
const MAX_CONNECT_RESPONSE = 16 * 1024;

/**
 * Opens a CONNECT tunnel to `host:port` through `proxy` and resolves with the raw socket, ready
 * for TLS to the target (https) or plain HTTP.
 *
 * Written here rather than taken from a package because it is small, and because the only
 * widely used one (https-proxy-agent) turns a refused CONNECT into a fake HTTP response that the
 * registry client would report as the registry's own 407/403; here it is a ProxyError naming the
 * proxy. The TLS proxy case (`https://` proxy URL) wraps the proxy connection in TLS first.
 */
export function openTunnel(
  proxy: Proxy,
  host: string,
  port: number,
  tlsToProxy: { secureContext?: SecureContext | undefined; rejectUnauthorized: boolean },
): Promise<Socket> {
  const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  return new Promise<Socket>((resolve, reject) => {
    const proxyPort = Number(proxy.url.port) || (proxy.url.protocol === 'https:' ? 443 : 80);
    const proxyHost = proxy.url.hostname.replace(/^\[(.*)\]$/, '$1');
    const socket: Socket =
      proxy.url.protocol === 'https:'
        ? tlsConnect({
            host: proxyHost,
            port: proxyPort,
            servername: proxyHost,
            rejectUnauthorized: tlsToProxy.rejectUnauthorized,
            ...(tlsToProxy.secureContext ? { secureContext: tlsToProxy.secureContext } : {}),
            ALPNProtocols: ['http/1.1'],
          })
        : netConnect({ host: proxyHost, port: proxyPort });
    let settled = false;
    let received = Buffer.alloc(0);
    const done = (e: Error | undefined): void => {
      if (settled) return;
      settled = true;
      socket.setTimeout(0);
      // Out of flowing mode before the listener goes: the TLS (or HTTP) layer reads on.
      socket.pause();
      socket.off('data', onData);
      socket.off('error', onError);
      if (e) {
        socket.destroy();
        reject(e);
      } else {
        resolve(socket);
      }
    };
    const onError = (e: Error): void => done(unreachableProxy(proxy, target, e));
    const onData = (chunk: Buffer): void => {
      received = Buffer.concat([received, chunk]);
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) {
        if (received.length > MAX_CONNECT_RESPONSE)
          done(
            new ProxyError(`the proxy ${displayProxy(proxy.url)} sent an oversized answer to CONNECT ${target}`, false),
          );
        return;
      }
      const statusLine = received.subarray(0, received.indexOf('\r\n')).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3}) ?(.*)$/.exec(statusLine);
      if (!m) {
        done(
          new ProxyError(
            `the proxy ${displayProxy(proxy.url)} (from ${proxy.source}) gave no HTTP answer to CONNECT ${target} (${JSON.stringify(statusLine.slice(0, 80))}): is it an HTTP proxy?`,
            false,
          ),
        );
        return;
      }
      const status = Number(m[1]);
      if (status < 200 || status > 299) {
        done(proxyRefusal(proxy, target, status, m[2] ?? ''));
        return;
      }
      // The target speaks only after the client (TLS ClientHello, HTTP request), so nothing
      // should follow the answer; if something does, it belongs to the tunnel.
      const rest = received.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest);
      done(undefined);
    };
    socket.setTimeout(CONNECT_TIMEOUT_MS, () =>
      done(
        new ProxyError(
          `the proxy ${displayProxy(proxy.url)} (from ${proxy.source}) did not answer CONNECT ${target} within ${CONNECT_TIMEOUT_MS / 1000} s`,
          true,
        ),
      ),
    );
    socket.on('error', onError);
    socket.on('data', onData);
    const auth = proxyAuthorization(proxy.url);
    socket.write(
      `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth ? `Proxy-Authorization: ${auth}\r\n` : ''}\r\n`,
    );
  });
}
