/**
 * lading/cdk: the `TarballImage` construct (aws-cdk-lib v2). The custom-resource handler
 * is bundled separately (dist/cdk-handler) and is not loaded here.
 */
export {
  TarballImage,
  type TarballImageProps,
  type TarballImageCompression,
  type TarballImageFacts,
} from './tarball-image';
