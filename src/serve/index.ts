export { startServer, type LadingServer, type ServeOptions } from './server';
export { FaultInjector, parseFaultSpec, type FaultKind, type FaultRule, type FiredFault } from './faults';
export { ECR_OPERATIONS, MIN_PART_SIZE, PART_SIZE } from './ecr-api';
