import { ECRClient, GetAuthorizationTokenCommand } from '@aws-sdk/client-ecr';
import { LadingError } from '../errors';
import { RegistryClient } from '../registry/client';
import type { CredentialProvider } from '../registry/credentials';
import { RegistryDestination } from '../registry/destination';
import { ecrError } from './errors';
import { ensureRepository } from './repository';
import type { Network } from '../net/network';

export interface EcrRegistryOptions {
  client: ECRClient;
  repository: string;
  registryId?: string;
  /** Host shown in pinned references (the ECR host the user named). */
  host: string;
  logger?: (line: string) => void;
  insecure?: boolean;
  /** Proxies and certificates for the registry endpoint. @default from the process environment */
  network?: Network;
  /** Create the repository when missing (--create-repository). */
  createRepository?: boolean;
  imageTagMutability?: 'MUTABLE' | 'IMMUTABLE';
  /** Skip the repository check (the native destination's fallback, which already made it). */
  skipRepositoryCheck?: boolean;
  /** Runs after the destination closes (e.g. to destroy the ECR client). */
  onClose?: () => Promise<void>;
}

/**
 * ECR through its registry (OCI distribution) endpoint: GetAuthorizationToken gives a
 * 12-hour Basic credential (`AWS:<password>`) and the `proxyEndpoint` to use. ECR's quirks
 * are met by the client as it is: a blob goes in one streamed request (PUT, or one PATCH
 * answered 201 then the closing PUT), never in chunks under ECR's 5 MiB minimum.
 */
export async function ecrRegistryDestination(opts: EcrRegistryOptions): Promise<RegistryDestination> {
  if (!opts.skipRepositoryCheck) {
    await ensureRepository(opts.client, {
      repository: opts.repository,
      registryId: opts.registryId,
      create: opts.createRepository,
      imageTagMutability: opts.imageTagMutability,
      where: `${opts.host}/${opts.repository}`,
      logger: opts.logger,
    });
  }
  const fetchToken = async (
    signal?: AbortSignal,
  ): Promise<{ username: string; password: string; proxyEndpoint: string; expiresAt: Date | undefined }> => {
    let out;
    try {
      out = await opts.client.send(
        new GetAuthorizationTokenCommand(opts.registryId ? { registryIds: [opts.registryId] } : {}),
        { abortSignal: signal },
      );
    } catch (e) {
      throw ecrError(e, 'GetAuthorizationToken', opts.host, 'getting a registry token');
    }
    const data = out.authorizationData?.[0];
    if (!data?.authorizationToken || !data.proxyEndpoint) {
      throw new LadingError('AUTH', `${opts.host}: GetAuthorizationToken returned no token or endpoint`);
    }
    const decoded = Buffer.from(data.authorizationToken, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) throw new LadingError('AUTH', `${opts.host}: the ECR authorization token is not user:password`);
    return {
      username: decoded.slice(0, colon),
      password: decoded.slice(colon + 1),
      proxyEndpoint: data.proxyEndpoint,
      expiresAt: data.expiresAt,
    };
  };
  const first = await fetchToken();
  // The token lasts 12 hours, but a push can outlive it (or the endpoint revoke it): the
  // client asks again after a rejected credential, and this provider then fetches a new one.
  let current: typeof first | undefined = first;
  const credentials: CredentialProvider = {
    description: 'ECR GetAuthorizationToken',
    resolve: async (_registry, signal) => {
      const t = current ?? (await fetchToken(signal));
      current = undefined;
      return { username: t.username, password: t.password, source: 'ECR GetAuthorizationToken' };
    },
  };
  const endpoint = new URL(first.proxyEndpoint);
  const client = new RegistryClient({
    registry: endpoint.host,
    plainHttp: endpoint.protocol === 'http:',
    insecure: opts.insecure,
    network: opts.network,
    credentials,
    logger: opts.logger,
  });
  opts.logger?.(
    `ECR registry transport: ${endpoint.origin}, token valid until ${first.expiresAt?.toISOString() ?? 'unknown'}`,
  );
  return new RegistryDestination(client, opts.repository, {
    host: opts.host,
    onClose: opts.onClose,
  });
}
