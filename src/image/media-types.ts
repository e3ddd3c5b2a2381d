/** Media types of the OCI image spec and of Docker's image manifest v2 schema 2. */
export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OciLayerNondistributable: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  OciLayerNondistributableGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  OciLayerNondistributableZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  OciEmpty: 'application/vnd.oci.empty.v1+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerLayerZstd: 'application/vnd.docker.image.rootfs.diff.tar.zstd',
  DockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  DockerForeignLayer: 'application/vnd.docker.image.rootfs.foreign.diff.tar',
  DockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  DockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

export type Compression = 'none' | 'gzip' | 'zstd';

export function isIndexMediaType(mt: string | undefined): boolean {
  return mt === MediaType.OciIndex || mt === MediaType.DockerManifestList;
}

export function isManifestMediaType(mt: string | undefined): boolean {
  return mt === MediaType.OciManifest || mt === MediaType.DockerManifest;
}

export function isSchema1MediaType(mt: string | undefined): boolean {
  return mt === MediaType.DockerSchema1 || mt === MediaType.DockerSchema1Signed || mt === 'application/json';
}

/** Foreign (Docker) and non-distributable (OCI) layers are not pushed by default: their descriptors carry `urls`. */
export function isForeignLayerMediaType(mt: string): boolean {
  return (
    mt.startsWith('application/vnd.docker.image.rootfs.foreign.') ||
    mt.startsWith('application/vnd.oci.image.layer.nondistributable.')
  );
}

/** The compression a layer media type declares, or undefined when it is not a known layer type. */
export function layerCompressionOf(mt: string): Compression | undefined {
  switch (mt) {
    case MediaType.OciLayer:
    case MediaType.OciLayerNondistributable:
    case MediaType.DockerLayer:
    case MediaType.DockerForeignLayer:
      return 'none';
    case MediaType.OciLayerGzip:
    case MediaType.OciLayerNondistributableGzip:
    case MediaType.DockerLayerGzip:
    case MediaType.DockerForeignLayerGzip:
      return 'gzip';
    case MediaType.OciLayerZstd:
    case MediaType.OciLayerNondistributableZstd:
    case MediaType.DockerLayerZstd:
      return 'zstd';
    default:
      return undefined;
  }
}

export type MediaTypeFamily = 'oci' | 'docker';

export function familyOf(manifestMediaType: string | undefined): MediaTypeFamily {
  return manifestMediaType === MediaType.DockerManifest || manifestMediaType === MediaType.DockerManifestList
    ? 'docker'
    : 'oci';
}

/**
 * The layer media type for a given family and compression. Docker's schema 2 has no zstd
 * type of its own; registries and containerd accept the `.zstd` suffix, so it is used.
 */
export function layerMediaType(family: MediaTypeFamily, compression: Compression, foreign = false): string {
  if (family === 'docker') {
    if (foreign) return compression === 'none' ? MediaType.DockerForeignLayer : MediaType.DockerForeignLayerGzip;
    return compression === 'gzip'
      ? MediaType.DockerLayerGzip
      : compression === 'zstd'
        ? MediaType.DockerLayerZstd
        : MediaType.DockerLayer;
  }
  if (foreign) {
    return compression === 'gzip'
      ? MediaType.OciLayerNondistributableGzip
      : compression === 'zstd'
        ? MediaType.OciLayerNondistributableZstd
        : MediaType.OciLayerNondistributable;
  }
  return compression === 'gzip'
    ? MediaType.OciLayerGzip
    : compression === 'zstd'
      ? MediaType.OciLayerZstd
      : MediaType.OciLayer;
}
