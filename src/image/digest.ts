import { createHash, type Hash } from 'node:crypto';
import { LadingError } from '../errors';

/** A validated content digest, `algorithm:encoded` (OCI image spec, descriptor.md#digests). */
export type Digest = string & { readonly __brand: 'Digest' };

export type DigestAlgorithm = 'sha256' | 'sha512';

// Grammar from the OCI image spec: algorithm-component ([+._-] algorithm-component)* ":" encoded
const GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const ENCODED: Record<DigestAlgorithm, RegExp> = {
  sha256: /^[a-f0-9]{64}$/,
  sha512: /^[a-f0-9]{128}$/,
};

export function isDigest(value: unknown): value is Digest {
  if (typeof value !== 'string' || value.length > 256 || !GRAMMAR.test(value)) return false;
  const i = value.indexOf(':');
  const re = ENCODED[value.slice(0, i) as DigestAlgorithm];
  return re !== undefined && re.test(value.slice(i + 1));
}

/** Parses and validates a digest; sha256 and sha512 are the algorithms lading can verify. */
export function parseDigest(value: unknown, where = 'digest'): Digest {
  if (typeof value !== 'string') {
    throw new LadingError('BAD_DIGEST', `${where}: expected a digest string, got ${typeof value}`);
  }
  const shown = value.length > 80 ? `${value.slice(0, 80)}...` : value;
  if (value.length > 256 || !GRAMMAR.test(value)) {
    throw new LadingError('BAD_DIGEST', `${where}: ${JSON.stringify(shown)} is not a valid digest`);
  }
  const i = value.indexOf(':');
  const alg = value.slice(0, i);
  const re = ENCODED[alg as DigestAlgorithm];
  if (re === undefined) {
    throw new LadingError(
      'BAD_DIGEST',
      `${where}: unsupported digest algorithm "${alg}" (sha256 and sha512 are supported)`,
    );
  }
  if (!re.test(value.slice(i + 1))) {
    throw new LadingError('BAD_DIGEST', `${where}: ${JSON.stringify(shown)} is not a valid ${alg} digest`);
  }
  return value as Digest;
}

export function digestAlgorithm(d: Digest): DigestAlgorithm {
  return d.slice(0, d.indexOf(':')) as DigestAlgorithm;
}

export function digestHex(d: Digest): string {
  return d.slice(d.indexOf(':') + 1);
}

export function createDigester(alg: DigestAlgorithm = 'sha256'): Hash {
  return createHash(alg);
}

export function digestOf(data: Uint8Array | string, alg: DigestAlgorithm = 'sha256'): Digest {
  return `${alg}:${createHash(alg).update(data).digest('hex')}` as Digest;
}

export function finishDigest(h: Hash, alg: DigestAlgorithm): Digest {
  return `${alg}:${h.digest('hex')}` as Digest;
}
