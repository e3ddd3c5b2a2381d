export {
  publishAssembly,
  type AssetResult,
  type AssetStatus,
  type PublishOptions,
  type PublishReport,
} from './publish';
export { readAssembly, stackPatternMatches, type AssemblyPlan, type ImageAssetEntry, type StackInfo } from './assembly';
export { parseExecutable, type ExecutableSource } from './executable';
export { AwsEnvironment, cdkSessionName, type AwsOptions } from './aws';
export { runCdk, cdkHelp } from './cli';
