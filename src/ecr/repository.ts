import { CreateRepositoryCommand, DescribeRepositoriesCommand, type ECRClient } from '@aws-sdk/client-ecr';
import { LadingError } from '../errors';
import { ecrError } from './errors';

export interface EnsureRepositoryOptions {
  repository: string;
  registryId?: string;
  /** Create the repository when it is missing (--create-repository). */
  create?: boolean;
  imageTagMutability?: 'MUTABLE' | 'IMMUTABLE';
  /** Registry host/repository, for messages. */
  where: string;
  signal?: AbortSignal;
  logger?: (line: string) => void;
  /** Counts calls by operation (the destination's counters). */
  count?: (op: string) => void;
}

const DENIED = new Set(['AccessDeniedException', 'AccessDenied', 'UnauthorizedOperation']);

/**
 * Makes sure the repository exists before anything is uploaded. Without `create`, a
 * missing repository becomes the usual NOT_FOUND error with its fix; that matters for the
 * registry transport, where ECR answers a push to a missing repository by closing the
 * connection, which would otherwise read as a network fault. A caller allowed to push but
 * not to describe repositories (a tight IAM policy) is let through: the push itself tells.
 */
export async function ensureRepository(client: ECRClient, opts: EnsureRepositoryOptions): Promise<void> {
  const ids = { ...(opts.registryId ? { registryId: opts.registryId } : {}) };
  let missing = false;
  try {
    opts.count?.('DescribeRepositories');
    await client.send(new DescribeRepositoriesCommand({ ...ids, repositoryNames: [opts.repository] }), {
      abortSignal: opts.signal,
    });
    return;
  } catch (e) {
    const name = (e as { name?: string }).name ?? '';
    if (name === 'RepositoryNotFoundException') missing = true;
    else if (!DENIED.has(name)) throw ecrError(e, 'DescribeRepositories', opts.where, 'checking the repository');
    else opts.logger?.(`not allowed to describe ${opts.repository} (${name}); going ahead`);
  }
  if (!opts.create) {
    if (missing) {
      throw new LadingError(
        'NOT_FOUND',
        `${opts.where}: the repository does not exist; create it (aws ecr create-repository) or pass --create-repository (with --image-tag-mutability IMMUTABLE|MUTABLE)`,
        { details: { awsCode: 'RepositoryNotFoundException', operation: 'DescribeRepositories' } },
      );
    }
    return;
  }
  try {
    opts.count?.('CreateRepository');
    await client.send(
      new CreateRepositoryCommand({
        ...ids,
        repositoryName: opts.repository,
        imageTagMutability: opts.imageTagMutability ?? 'MUTABLE',
      }),
      { abortSignal: opts.signal },
    );
    opts.logger?.(`created ECR repository ${opts.repository} (tags ${opts.imageTagMutability ?? 'MUTABLE'})`);
  } catch (e) {
    // Created meanwhile by a parallel push: what we wanted.
    if ((e as { name?: string }).name === 'RepositoryAlreadyExistsException') return;
    // Denied creation of a repository we could not see: it may well exist; the push tells.
    if (!missing && DENIED.has((e as { name?: string }).name ?? '')) return;
    throw ecrError(e, 'CreateRepository', opts.where, 'creating the repository');
  }
}
