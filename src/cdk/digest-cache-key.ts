/**
 * The S3 key of an asset's compressed-digest cache: beside the asset, so it goes when the
 * asset's object goes. Shared by the construct (which grants access to exactly this object) and
 * the handler (which reads and writes it).
 */
export function digestCacheKey(assetKey: string): string {
  return `${assetKey}.lading-digests.jsonl`;
}
