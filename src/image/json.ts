import { LadingError } from '../errors';

/** The largest JSON document lading parses: ECR and most registries cap manifests at 4 MiB. */
export const MAX_JSON_BYTES = 4 * 1024 * 1024;

/**
 * Parses a JSON document from bytes, refusing anything over 4 MiB before it is decoded
 * so that a hostile archive cannot make us allocate gigabytes.
 */
export function parseJsonBytes(bytes: Uint8Array, where: string, limit = MAX_JSON_BYTES): unknown {
  if (bytes.byteLength > limit) {
    throw new LadingError(
      'JSON_TOO_LARGE',
      `${where}: JSON document of ${bytes.byteLength} bytes exceeds the ${limit}-byte limit`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new LadingError('BAD_JSON', `${where}: not valid UTF-8`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new LadingError('BAD_JSON', `${where}: invalid JSON (${(e as Error).message})`);
  }
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function expectObject(
  v: unknown,
  where: string,
  code: 'BAD_MANIFEST' | 'BAD_DESCRIPTOR' = 'BAD_MANIFEST',
): Record<string, unknown> {
  if (!isObject(v)) {
    throw new LadingError(
      code,
      `${where}: expected a JSON object, got ${v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v}`,
    );
  }
  return v;
}

export function optionalString(o: Record<string, unknown>, key: string, where: string): string | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new LadingError('BAD_MANIFEST', `${where}: "${key}" must be a string`);
  return v;
}

export function stringMap(v: unknown, where: string): Record<string, string> {
  if (!isObject(v) || !Object.values(v).every((x) => typeof x === 'string')) {
    throw new LadingError('BAD_MANIFEST', `${where}: must be an object of strings`);
  }
  return v as Record<string, string>;
}
