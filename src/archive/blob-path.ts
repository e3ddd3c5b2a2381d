import { isDigest, type Digest } from '../image/digest';

/**
 * The digest-shaped text an OCI layout's blob path states (`blobs/<algorithm>/<hex>`, at the
 * root or below a folder), unvalidated: callers decide whether a malformed one is an error.
 */
export function blobPathDigestText(path: string): string | undefined {
  const m = /(?:^|\/)blobs\/(sha256|sha512)\/([a-f0-9]+)$/.exec(path);
  return m ? `${m[1]}:${m[2]}` : undefined;
}

/** The digest a blob path states, when it is a well-formed one. */
export function blobPathDigest(path: string): Digest | undefined {
  const text = blobPathDigestText(path);
  return text !== undefined && isDigest(text) ? text : undefined;
}
