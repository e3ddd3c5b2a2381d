import { resolve } from 'node:path';
import type { Destination } from '../copy/destination';
import { LadingError } from '../errors';
import { ECR_REPOSITORY, parseEcrHost } from '../ecr/host';
import { OciLayoutDestination } from '../layout/destination';
import { Network } from '../net/network';
import type { CredentialProvider } from '../registry/credentials';
import { DOCKER_HUB_REGISTRY, parseReference } from '../reference/reference';

export interface DestinationOptions {
  plainHttp?: boolean;
  insecure?: boolean;
  username?: string;
  password?: string;
  mountFrom?: string;
  chunkSize?: number;
  /** ECR: how to push (default ecr-api). */
  transport?: 'ecr-api' | 'registry';
  /** Treat the destination as ECR even when its host is not an ECR host (lading serve, a proxy). */
  ecr?: boolean;
  region?: string;
  profile?: string;
  endpointUrl?: string;
  createRepository?: boolean;
  imageTagMutability?: 'MUTABLE' | 'IMMUTABLE';
  env?: NodeJS.ProcessEnv;
  /** skopeo's --cert-dir: the registry's CA (*.crt) and client certificate (*.cert + *.key). */
  certDir?: string;
  /** Proxies and certificates. @default from `env` and `certDir` */
  network?: Network;
  logger?: (line: string) => void;
}

/** Turns a DESTINATION argument into a Destination, and the tags it names. */
export async function openDestination(
  arg: string,
  opts: DestinationOptions,
): Promise<{ destination: Destination; tags: string[] }> {
  if (arg.startsWith('oci:')) {
    const path = arg.slice(4);
    if (path === '') throw new LadingError('USAGE', 'oci: needs a directory path, e.g. oci:./out');
    return { destination: new OciLayoutDestination(resolve(path)), tags: [] };
  }
  // docker's grammar and defaults (docker.io, library/), ECR hosts included.
  const ref = parseReference(arg);
  if (ref.digest !== undefined)
    throw new LadingError('BAD_REFERENCE', `"${arg}": a destination takes a tag, not a digest`);
  const host = ref.registry === DOCKER_HUB_REGISTRY ? 'docker.io' : ref.registry;
  const repository = ref.repository;
  const tag = ref.tag;
  const network = opts.network ?? new Network({ env: opts.env ?? process.env, certDir: opts.certDir });
  opts.logger?.(network.describe());
  const ecr = parseEcrHost(host);
  if (ecr !== undefined || opts.ecr) {
    if (!ECR_REPOSITORY.test(repository)) {
      throw new LadingError(
        'BAD_REFERENCE',
        `"${repository}" is not a valid ECR repository name (2-256 lowercase letters, digits, and . _ - / separators)`,
      );
    }
    const region = opts.region ?? ecr?.region ?? opts.env?.AWS_REGION ?? opts.env?.AWS_DEFAULT_REGION;
    // The AWS SDK is loaded only for ECR destinations (start-up time and memory of other pushes).
    /* eslint-disable @typescript-eslint/no-require-imports */
    const { ECRClient } = require('@aws-sdk/client-ecr') as typeof import('@aws-sdk/client-ecr');
    const { EcrDestination } = require('../ecr/destination') as typeof import('../ecr/destination');
    const { ecrRegistryDestination } =
      require('../ecr/registry-transport') as typeof import('../ecr/registry-transport');
    /* eslint-enable @typescript-eslint/no-require-imports */
    // The API endpoint matching the registry host's form (FIPS, dual-stack), unless given: the
    // SDK refuses FIPS or dual-stack together with an endpoint ("Invalid Configuration").
    const env = opts.env ?? process.env;
    const endpointGiven = Boolean(
      opts.endpointUrl ||
      (env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS?.toLowerCase() !== 'true' &&
        (env.AWS_ENDPOINT_URL_ECR || env.AWS_ENDPOINT_URL)),
    );
    const client = new ECRClient({
      maxAttempts: 6,
      ...(region ? { region } : {}),
      ...(ecr?.fips && !endpointGiven ? { useFipsEndpoint: true } : {}),
      ...(ecr?.dualStack && !endpointGiven ? { useDualstackEndpoint: true } : {}),
      ...(opts.profile ? { profile: opts.profile } : {}),
      ...(opts.endpointUrl ? { endpoint: opts.endpointUrl } : {}),
      requestHandler: network.awsRequestHandler(),
    });
    if (opts.transport === 'registry') {
      const destination = await ecrRegistryDestination({
        client,
        repository,
        host,
        createRepository: opts.createRepository,
        imageTagMutability: opts.imageTagMutability,
        registryId: ecr?.account,
        insecure: opts.insecure,
        network,
        logger: opts.logger,
        onClose: async () => client.destroy(),
      });
      return { destination, tags: tag ? [tag] : [] };
    }
    const destination = new EcrDestination({
      client,
      host,
      repository,
      registryId: ecr?.account,
      region,
      profile: opts.profile,
      endpoint: opts.endpointUrl,
      createRepository: opts.createRepository,
      imageTagMutability: opts.imageTagMutability,
      insecure: opts.insecure,
      network,
      logger: opts.logger,
      onClose: async () => client.destroy(),
    });
    return { destination, tags: tag ? [tag] : [] };
  }
  if (opts.password !== undefined && opts.username === undefined)
    throw new LadingError('USAGE', 'a password needs --username');
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { RegistryClient } = require('../registry/client') as typeof import('../registry/client');
  const { defaultCredentials, staticCredentials } =
    require('../registry/credentials') as typeof import('../registry/credentials');
  const { RegistryDestination } = require('../registry/destination') as typeof import('../registry/destination');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const credentials: CredentialProvider =
    opts.username !== undefined
      ? staticCredentials({ username: opts.username, password: opts.password ?? '' }, '--username/--password-stdin')
      : defaultCredentials(opts.env ?? process.env);
  const client = new RegistryClient({
    registry: ref.registry,
    // Absent unless set: the client's `plainHttp ??` then detects a loopback registry.
    ...(opts.plainHttp ? { plainHttp: true } : {}),
    insecure: opts.insecure,
    network,
    credentials,
    logger: opts.logger,
  });
  const destination = new RegistryDestination(client, ref.repository, {
    host,
    mountFrom: opts.mountFrom,
    chunkSize: opts.chunkSize,
  });
  return { destination, tags: tag ? [tag] : [] };
}
