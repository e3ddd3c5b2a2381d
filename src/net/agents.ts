import { Agent as HttpAgent, type AgentOptions, type ClientRequest, type ClientRequestArgs } from 'node:http';
import { Agent as HttpsAgent, type RequestOptions as HttpsRequestOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect, type SecureContext } from 'node:tls';
import type { Proxy, ProxyRoutes } from './proxy-env';
import { openTunnel, proxyAuthorization, unreachableProxy } from './tunnel';

/**
 * Proxying is done inside node:http's own Agent (its documented `createConnection` hook for
 * CONNECT tunnels, and the request path for plain forwarding) rather than with Node's
 * `proxyEnv` agent option or an agent package:
 * - `proxyEnv` exists only from Node 22.21/24.5 (Node 20 ignores it silently), and reads the
 *   environment its own way (no CIDR ranges in NO_PROXY, its own error messages);
 * - keeping node:http's Agent keeps what the bench measured: its native parser (no WebAssembly
 *   heap, see registry/http.ts), its keep-alive pool per origin, and TLS session reuse.
 */

type Callback = (err: Error | null, stream: Duplex) => void;
type TlsOptions = HttpsRequestOptions & { secureContext?: SecureContext; socket?: Duplex };

export interface AgentNetwork {
  routes: ProxyRoutes;
  /** TLS for a target, by `host[:port]` (port omitted when 443): per-registry CAs and client certs. */
  tlsFor: (hostPort: string) => SecureContext | undefined;
  /**
   * TLS towards an `https://` proxy; asked only when one is used, because building a context
   * from Node's store plus AWS_CA_BUNDLE costs ~130 ms a push to a plain-HTTP registry never needs.
   */
  proxyTls: () => SecureContext | undefined;
}

function hostPortOf(host: string, port: number, defaultPort: number): string {
  const h = host.includes(':') ? `[${host}]` : host;
  return port === defaultPort ? h : `${h}:${port}`;
}

function targetUrl(protocol: 'http:' | 'https:', host: string, port: number): URL {
  return new URL(`${protocol}//${hostPortOf(host, port, protocol === 'https:' ? 443 : 80)}`);
}

/** A keep-alive HTTPS agent that tunnels through the proxy the environment names, and applies per-host TLS. */
export class ProxyHttpsAgent extends HttpsAgent {
  constructor(
    options: AgentOptions & { rejectUnauthorized?: boolean },
    private readonly network: AgentNetwork,
  ) {
    super(options);
  }

  override createConnection(options: TlsOptions, callback?: Callback): Duplex | null | undefined {
    const host = (options.host ?? options.hostname ?? 'localhost').replace(/^\[(.*)\]$/, '$1');
    const port = Number(options.port ?? 443);
    const secureContext = options.secureContext ?? this.network.tlsFor(hostPortOf(host, port, 443));
    const opts = secureContext ? { ...options, secureContext } : options;
    const proxy = this.network.routes.proxyFor(targetUrl('https:', host, port));
    if (!proxy) return super.createConnection(opts, callback);
    const rejectUnauthorized = options.rejectUnauthorized !== false;
    openTunnel(proxy, host, port, { secureContext: this.network.proxyTls(), rejectUnauthorized }).then(
      (socket) => {
        let tlsSocket: Duplex | null | undefined;
        try {
          // The stock path with the tunnel as transport: servername, session reuse, checks.
          tlsSocket = super.createConnection({ ...opts, socket } as TlsOptions);
        } catch (e) {
          socket.destroy();
          callback?.(e as Error, undefined as unknown as Duplex);
          return;
        }
        callback?.(null, tlsSocket!);
      },
      (e: Error) => callback?.(e, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

/** Internal to node:http, and what agents that forward (http-proxy-agent among them) build on. */
interface AgentInternals {
  addRequest(req: ClientRequest, options: ClientRequestArgs): void;
}
const PROXY = Symbol('lading.proxy');
const FORWARDED = Symbol('lading.forwarded');
type ForwardOptions = ClientRequestArgs & { [PROXY]?: { proxy: Proxy; tunnel: boolean; target: URL } };

/**
 * A keep-alive HTTP agent that forwards through the proxy the environment names: the request
 * goes to the proxy with the absolute URL as its path (plain forwarding, as curl does for
 * http:// targets). A request whose head is already written (a body sent with `Expect:`) cannot
 * change its path and goes through a CONNECT tunnel instead.
 *
 * Forwarded requests get a connection each: proxies such as tinyproxy close the client's
 * connection after every forwarded request without saying so (HTTP/1.1, no `Connection:
 * close`), and the next request sent on it from the pool is lost. http:// registries behind a
 * proxy are rare, and a connection to a nearby proxy is cheap.
 */
export class ProxyHttpAgent extends HttpAgent {
  constructor(
    options: AgentOptions,
    private readonly network: AgentNetwork,
  ) {
    super(options);
  }

  addRequest(req: ClientRequest, options: ClientRequestArgs): void {
    const base = (HttpAgent.prototype as unknown as AgentInternals).addRequest;
    const host = (options.host ?? options.hostname ?? 'localhost').replace(/^\[(.*)\]$/, '$1');
    const port = Number(options.port ?? 80);
    const target = targetUrl('http:', host, port);
    const proxy = this.network.routes.proxyFor(target);
    if (!proxy) return base.call(this, req, options);
    const headWritten = typeof (req as unknown as { _header?: unknown })._header === 'string';
    if (headWritten)
      return base.call(this, req, { ...options, [PROXY]: { proxy, tunnel: true, target } } as ForwardOptions);
    const hostHeader = req.getHeader('host');
    req.path = `http://${typeof hostHeader === 'string' ? hostHeader : target.host}${req.path}`;
    const auth = proxyAuthorization(proxy.url);
    if (auth) req.setHeader('proxy-authorization', auth);
    req.setHeader('connection', 'close');
    const proxyHost = proxy.url.hostname.replace(/^\[(.*)\]$/, '$1');
    const proxyPort = Number(proxy.url.port) || (proxy.url.protocol === 'https:' ? 443 : 80);
    base.call(this, req, {
      ...options,
      host: proxyHost,
      hostname: proxyHost,
      port: proxyPort,
      [PROXY]: { proxy, tunnel: false, target },
    } as ForwardOptions);
  }

  override createConnection(options: ForwardOptions, callback?: Callback): Duplex | null | undefined {
    const route = options[PROXY];
    if (!route) return super.createConnection(options, callback);
    const { proxy, target } = route;
    const fail = (e: Error): void => callback?.(e, undefined as unknown as Duplex);
    if (route.tunnel) {
      openTunnel(proxy, target.hostname.replace(/^\[(.*)\]$/, '$1'), Number(target.port || 80), {
        secureContext: this.network.proxyTls(),
        rejectUnauthorized: true,
      }).then((socket) => callback?.(null, socket), fail);
      return undefined;
    }
    // Handed over once connected, so that a proxy that cannot be reached fails as the proxy.
    const host = options.host ?? 'localhost';
    const proxyTls = proxy.url.protocol === 'https:' ? this.network.proxyTls() : undefined;
    const socket =
      proxy.url.protocol === 'https:'
        ? tlsConnect({
            host,
            port: Number(options.port),
            servername: host,
            ...(proxyTls ? { secureContext: proxyTls } : {}),
          })
        : (super.createConnection(options) as Duplex);
    const onError = (e: Error): void => fail(unreachableProxy(proxy, target.host, e));
    socket.once('error', onError);
    socket.once(proxy.url.protocol === 'https:' ? 'secureConnect' : 'connect', () => {
      socket.off('error', onError);
      callback?.(null, socket);
    });
    (socket as Duplex & { [FORWARDED]?: boolean })[FORWARDED] = true;
    return undefined;
  }

  // Typed `void` by @types/node; node:http reads the boolean it documents.
  override keepSocketAlive(socket: Duplex): void {
    if ((socket as Duplex & { [FORWARDED]?: boolean })[FORWARDED]) return false as unknown as void;
    return super.keepSocketAlive(socket);
  }
}
