/**
 * The OCI distribution registry client: references, credentials, auth and the HTTP API
 * for blobs and manifests. See {@link RegistryClient}.
 */
export { RegistryClient, MANIFEST_ACCEPT } from './client';
export type { RegistryClientOptions, FetchedManifest, ManifestInfo, BlobInfo, BlobDownload } from './client';
export { createAgents } from './http';
export type { HttpAgents } from './http';
export type { BlobSource, UploadOptions, UploadProgress, UploadResult } from './upload';
export {
  parseReference,
  formatReference,
  parseRepository,
  normalizeRegistry,
  isLoopbackRegistry,
  isValidRegistryHost,
  isValidRepository,
  isValidTag,
  DOCKER_HUB_REGISTRY,
} from '../reference/reference';
export type { Reference } from '../reference/reference';
export { parseChallenges } from './challenge';
export type { Challenge } from './challenge';
export {
  staticCredentials,
  environmentCredentials,
  dockerConfigCredentials,
  chainCredentials,
  defaultCredentials,
  defaultAuthFiles,
  runCredentialHelper,
} from './credentials';
export type {
  Credential,
  ResolvedCredential,
  CredentialProvider,
  CredentialSource,
  DockerConfigOptions,
} from './credentials';
export { RegistryError, NetworkError, parseErrorBody } from './errors';
export type { RegistryErrorEntry } from './errors';
export { scopeString } from './auth';
export type { Scope, Action, AuthScheme } from './auth';
