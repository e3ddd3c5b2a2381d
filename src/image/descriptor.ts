import { LadingError } from '../errors';
import { digestOf, digestAlgorithm, parseDigest, type Digest } from './digest';
import { expectObject, stringMap } from './json';
import { parsePlatformObject, type Platform } from './platform';

/** An OCI content descriptor (image-spec descriptor.md). */
export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
  data?: string;
}

const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

export function isValidMediaType(mt: string): boolean {
  return MEDIA_TYPE.test(mt);
}

/**
 * Validates a descriptor found in a JSON document. `defaultMediaType` lets callers accept
 * the descriptors of docker's manifest.json world, which carry none.
 */
export function parseDescriptor(value: unknown, where: string, defaultMediaType?: string): Descriptor {
  const o = expectObject(value, where, 'BAD_DESCRIPTOR');
  const mediaType = o.mediaType ?? defaultMediaType;
  if (typeof mediaType !== 'string' || !isValidMediaType(mediaType)) {
    throw new LadingError('BAD_DESCRIPTOR', `${where}: "mediaType" must be a media type string`);
  }
  const digest = parseDigest(o.digest, `${where}.digest`);
  const size = o.size;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new LadingError('BAD_DESCRIPTOR', `${where}: "size" must be a non-negative integer`);
  }
  const d: Descriptor = { mediaType, digest, size };
  if (o.urls !== undefined) {
    if (!Array.isArray(o.urls) || !o.urls.every((u) => typeof u === 'string')) {
      throw new LadingError('BAD_DESCRIPTOR', `${where}: "urls" must be an array of strings`);
    }
    d.urls = o.urls as string[];
  }
  if (o.annotations !== undefined) d.annotations = stringMap(o.annotations, `${where}.annotations`);
  if (o.platform !== undefined) d.platform = parsePlatformObject(o.platform, `${where}.platform`);
  if (o.artifactType !== undefined) {
    if (typeof o.artifactType !== 'string')
      throw new LadingError('BAD_DESCRIPTOR', `${where}: "artifactType" must be a string`);
    d.artifactType = o.artifactType;
  }
  if (o.data !== undefined) {
    if (typeof o.data !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(o.data)) {
      throw new LadingError('BAD_DESCRIPTOR', `${where}: "data" must be base64`);
    }
    const bytes = Buffer.from(o.data, 'base64');
    // The spec says embedded data MUST match the descriptor; check it, it is cheap.
    if (bytes.length !== size || digestOf(bytes, digestAlgorithm(digest)) !== digest) {
      throw new LadingError('BAD_DESCRIPTOR', `${where}: embedded "data" does not match its digest and size`);
    }
    d.data = o.data;
  }
  return d;
}

/** Descriptor as JSON with the spec's key order, for manifests lading writes. */
export function descriptorJson(d: Descriptor): Record<string, unknown> {
  const out: Record<string, unknown> = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.urls) out.urls = d.urls;
  if (d.annotations) out.annotations = d.annotations;
  if (d.platform) out.platform = d.platform;
  if (d.artifactType) out.artifactType = d.artifactType;
  if (d.data) out.data = d.data;
  return out;
}
