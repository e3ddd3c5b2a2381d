import { resolve } from 'node:path';
import type { Destination } from '../copy/destination';
import { LadingError } from '../errors';
import { EcrDestination } from '../ecr/destination';
import { ECR_REPOSITORY, parseEcrHost } from '../ecr/host';
import { OciLayoutDestination } from '../layout/destination';

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
  logger?: (line: string) => void;
}

/** Turns a DESTINATION argument into a Destination, and the tags it names. */
export async function openDestination(arg: string, opts: DestinationOptions): Promise<{ destination: Destination; tags: string[] }> {
  if (arg.startsWith('oci:')) {
    const path = arg.slice(4);
    if (path === '') throw new LadingError('USAGE', 'oci: needs a directory path, e.g. oci:./out');
    return { destination: new OciLayoutDestination(resolve(path)), tags: [] };
  }
  const { host, repository, tag } = splitDestination(arg);
  const ecr = parseEcrHost(host);
  if (ecr !== undefined || opts.ecr) {
    if (!ECR_REPOSITORY.test(repository)) {
      throw new LadingError('BAD_REFERENCE', `"${repository}" is not a valid ECR repository name (2-256 lowercase letters, digits, and . _ - / separators)`);
    }
    if ((opts.transport ?? 'ecr-api') === 'ecr-api') {
      const region = opts.region ?? ecr?.region ?? opts.env?.AWS_REGION ?? opts.env?.AWS_DEFAULT_REGION;
      const destination = new EcrDestination({
        host,
        repository,
        ...(ecr ? { registryId: ecr.account } : {}),
        ...(region ? { region } : {}),
        ...(opts.profile ? { profile: opts.profile } : {}),
        ...(opts.endpointUrl ? { endpoint: opts.endpointUrl } : {}),
        ...(opts.createRepository ? { createRepository: true } : {}),
        ...(opts.imageTagMutability ? { imageTagMutability: opts.imageTagMutability } : {}),
        ...(opts.logger ? { logger: opts.logger } : {}),
      });
      return { destination, tags: tag ? [tag] : [] };
    }
  }
  throw new LadingError('USAGE', `registry destinations are not available yet: ${arg}`);
}

/** `host[:port]/repository[:tag]`: the tag is after the last colon that follows the last slash. */
export function splitDestination(arg: string): { host: string; repository: string; tag: string | undefined } {
  const slash = arg.indexOf('/');
  if (slash <= 0 || slash === arg.length - 1) {
    throw new LadingError('BAD_REFERENCE', `"${arg}" is not a destination: expected host[:port]/repository[:tag] or oci:PATH`);
  }
  const host = arg.slice(0, slash);
  let rest = arg.slice(slash + 1);
  if (rest.includes('@')) throw new LadingError('BAD_REFERENCE', `"${arg}": a destination takes a tag, not a digest`);
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!/^[\w][\w.-]{0,127}$/.test(tag)) throw new LadingError('BAD_REFERENCE', `"${tag}" is not a valid tag`);
  }
  return { host, repository: rest, tag };
}
