/**
 * lading/cdk: the `TarballImage` construct (aws-cdk-lib v2). The custom-resource handler
 * is bundled separately (dist/cdk-handler) and is not loaded here.
 *
 * Also the entry point of the jsii package `lading-cdk` (packages/lading-cdk), which compiles
 * these same files for Python, Java, .NET and Go: everything exported here must be
 * jsii-compatible (enums, not string unions; interfaces with readonly members for props and
 * facts; no `null`, no inline object types, no Error subclasses).
 */
export {
  TarballImage,
  TarballImageCompression,
  type TarballImageProps,
  type TarballImageFacts,
  type TarballImageManifestFacts,
} from './tarball-image';
