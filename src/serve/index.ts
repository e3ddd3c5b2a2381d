/**
 * `lading/serve`: the local ECR-compatible endpoint behind `lading serve`, for tests and offline
 * pipelines. A separate entry point, so the main `lading` API stays about pushing images.
 */
export { startServer, type LadingServer, type ServeOptions } from './server';
export { DEFAULT_CREDENTIALS, type SecretLookup, type ServeCredentials } from './sigv4';
export { FaultInjector, parseFaultSpec, type FaultKind, type FaultRule, type FiredFault } from './faults';
export { ECR_OPERATIONS, MIN_PART_SIZE, PART_SIZE } from './ecr-api';
