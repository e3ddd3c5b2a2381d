import type { SecureContext } from 'node:tls';
import { ProxyHttpAgent, ProxyHttpsAgent } from './agents';
import { displayProxy, proxyRoutesFromEnv, type ProxyRoutes } from './proxy-env';
import { Trust, type TrustOptions } from './trust';

export type NetworkOptions = TrustOptions;

/**
 * How lading reaches the network, the same way on every path (registry HTTP, ECR, STS, S3):
 * the proxies and the trusted certificates the environment (and `--cert-dir`) name. Built
 * once per command: it reads the environment and certificate files once.
 */
export class Network {
  readonly routes: ProxyRoutes;
  readonly trust: Trust;
  private readonly env: NodeJS.ProcessEnv;

  constructor(options: NetworkOptions = {}) {
    this.env = options.env ?? process.env;
    this.routes = proxyRoutesFromEnv(this.env);
    this.trust = new Trust(options);
  }

  /** TLS towards proxies and AWS endpoints (Node's store plus AWS_CA_BUNDLE). */
  get generalTls(): SecureContext | undefined {
    return this.trust.forAws().secureContext;
  }

  /**
   * `requestHandler` options for an AWS SDK client: keep-alive agents that honour the proxy
   * variables and AWS_CA_BUNDLE, which the SDK for JavaScript leaves to the application.
   */
  awsRequestHandler(): { httpAgent: ProxyHttpAgent; httpsAgent: ProxyHttpsAgent } {
    // Built at the first TLS connection, not here (see AgentNetwork.proxyTls).
    const general = (): SecureContext | undefined => this.generalTls;
    const net = { routes: this.routes, tlsFor: general, proxyTls: general };
    // The SDK's own defaults for its agents.
    const common = { keepAlive: true, maxSockets: 50 };
    return { httpAgent: new ProxyHttpAgent(common, net), httpsAgent: new ProxyHttpsAgent(common, net) };
  }

  /** One line for --debug: which proxies apply (never their credentials). */
  describe(): string {
    const p = (protocol: 'https:' | 'http:'): string => {
      const proxy = this.routes.proxyFor(new URL(`${protocol}//proxy-probe.invalid`));
      return proxy ? `${displayProxy(proxy.url)} (${proxy.source})` : 'none';
    };
    const noProxy = this.env.no_proxy ?? this.env.NO_PROXY;
    return `network: https proxy ${p('https:')}, http proxy ${p('http:')}${noProxy ? `, NO_PROXY ${noProxy}` : ''}${this.env.AWS_CA_BUNDLE ? `, AWS_CA_BUNDLE ${this.env.AWS_CA_BUNDLE}` : ''}`;
  }
}

let processNetwork: Network | undefined;

/** The network as the process environment describes it (for library callers that pass none). */
export function defaultNetwork(): Network {
  processNetwork ??= new Network();
  return processNetwork;
}
