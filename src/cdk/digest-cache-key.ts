/** Every object the handler writes beside an asset starts with this (one IAM grant covers them). */
export function assetSidePrefix(assetKey: string): string {
  return `${assetKey}.lading-`;
}

/** Marks a request whose push failed in an isComplete call (see handler.ts providerIsComplete). */
export function failureMarkerKey(assetKey: string, requestId: string): string {
  return `${assetSidePrefix(assetKey)}failed-${requestId.replace(/[^A-Za-z0-9-]/g, '_').slice(0, 200)}`;
}

/**
 * The S3 key of an asset's compressed-digest cache: beside the asset, so it goes when the
 * asset's object goes. Shared by the construct (which grants access to exactly this object) and
 * the handler (which reads and writes it).
 */
export function digestCacheKey(assetKey: string): string {
  return `${assetSidePrefix(assetKey)}digests.jsonl`;
}
