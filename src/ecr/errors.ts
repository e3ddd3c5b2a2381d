import { LadingError, type ErrorCode } from '../errors';
import { awsTransportFailure } from '../net/tls-errors';

/**
 * ECR's errors as messages a user can act on, with the fix. The AWS error name is kept in
 * `details.awsCode` so callers can branch on it (LayerAlreadyExistsException = success...).
 */
export function ecrError(e: unknown, op: string, where: string, context: string): LadingError {
  if (e instanceof LadingError) return e;
  const transport = awsTransportFailure(e, `${where}: ${context}`, 'the ECR API endpoint');
  if (transport) return transport;
  const err = e as { name?: string; message?: string; $metadata?: { httpStatusCode?: number }; code?: string };
  const name = err.name ?? 'Error';
  const msg = err.message ?? String(e);
  const details = {
    awsCode: name,
    operation: op,
    ...(err.$metadata?.httpStatusCode ? { status: err.$metadata.httpStatusCode } : {}),
  };
  const make = (code: ErrorCode, text: string): LadingError =>
    new LadingError(code, `${where}: ${context}: ${text}`, { cause: e, details });
  switch (name) {
    case 'RepositoryNotFoundException':
      return make(
        'NOT_FOUND',
        `the repository does not exist; create it (aws ecr create-repository) or pass --create-repository (with --image-tag-mutability IMMUTABLE|MUTABLE)`,
      );
    case 'ImageTagAlreadyExistsException':
      return make(
        'CONFLICT',
        `the tag already exists on another image and the repository's tags are immutable; push under a new tag (${msg})`,
      );
    case 'ImageAlreadyExistsException':
      return make('CONFLICT', msg);
    case 'LayerAlreadyExistsException':
      return make('CONFLICT', msg);
    case 'LayersNotFoundException':
      return make('BLOB_MISSING', `ECR is missing blobs this manifest needs (${msg}); run the push again`);
    case 'ReferencedImagesNotFoundException':
      return make('BLOB_MISSING', `ECR is missing manifests this index lists (${msg}); run the push again`);
    case 'ImageDigestDoesNotMatchException':
      return make('DIGEST_MISMATCH', `ECR computed another digest for the manifest (${msg})`);
    case 'InvalidLayerException':
    case 'InvalidLayerPartException':
      return make('REGISTRY', `ECR refused the upload (${name}: ${msg})`);
    case 'LayerPartTooSmallException':
    case 'EmptyUploadException':
    case 'UploadNotFoundException':
      return make('REGISTRY', `${name}: ${msg}`);
    case 'LimitExceededException':
      return make('LIMIT_EXCEEDED', `ECR quota reached (${msg})`);
    case 'CredentialsProviderError':
      return make(
        'AUTH',
        `no AWS credentials found: configure them (aws configure, AWS_PROFILE or --profile, or environment variables)`,
      );
    case 'UnrecognizedClientException':
    case 'InvalidSignatureException':
    case 'ExpiredTokenException':
    case 'AccessDeniedException':
    case 'AccessDenied':
      return make('AUTH', `AWS refused the credentials (${name}: ${msg}); check the profile, role and ECR permissions`);
    case 'ThrottlingException':
    case 'ServerException':
      return make('REGISTRY', `ECR kept failing after retries (${name}: ${msg})`);
    case 'AbortError':
      return make('ABORTED', 'interrupted');
    default: {
      const network = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|socket hang up|TimeoutError/i.test(
        `${err.code ?? ''} ${name} ${msg}`,
      );
      if (network)
        return make(
          'NETWORK',
          `cannot reach the ECR endpoint (${msg}); check the region, --endpoint-url and the network`,
        );
      return make('REGISTRY', `${name}: ${msg}`);
    }
  }
}
