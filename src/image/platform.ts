import { LadingError } from '../errors';

/** An image's platform, as in the OCI image index (`os.version` and `os.features` included). */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

const ARCH_ALIASES: Record<string, { architecture: string; variant?: string }> = {
  x86_64: { architecture: 'amd64' },
  'x86-64': { architecture: 'amd64' },
  amd64: { architecture: 'amd64' },
  aarch64: { architecture: 'arm64' },
  arm64: { architecture: 'arm64' },
  armhf: { architecture: 'arm', variant: 'v7' },
  armel: { architecture: 'arm', variant: 'v6' },
  i386: { architecture: '386' },
  i686: { architecture: '386' },
  x86: { architecture: '386' },
};

const SEGMENT = /^[A-Za-z0-9_.+-]{1,64}$/;

/**
 * Normalises a platform the way containerd does, so `linux/aarch64`, `linux/arm64/v8` and
 * `linux/arm64` compare equal: architecture aliases are mapped, default variants dropped
 * (arm64/v8, amd64/v1), and a bare `arm` means `arm/v7`.
 */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  const alias = ARCH_ALIASES[p.architecture.toLowerCase()];
  let architecture = alias ? alias.architecture : p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() ?? alias?.variant;
  if (architecture === 'arm64' && (variant === 'v8' || variant === '8')) variant = undefined;
  if (architecture === 'amd64' && variant === 'v1') variant = undefined;
  if (architecture === 'arm') {
    if (variant === undefined) variant = 'v7';
    else if (/^[5-8]$/.test(variant)) variant = `v${variant}`;
  }
  if (architecture === 'armv7l' || architecture === 'armv7') {
    architecture = 'arm';
    variant = 'v7';
  }
  const out: Platform = { os, architecture };
  if (variant !== undefined && variant !== '') out.variant = variant;
  if (p['os.version'] !== undefined) out['os.version'] = p['os.version'];
  if (p['os.features'] !== undefined) out['os.features'] = [...p['os.features']];
  return out;
}

/** Parses `os/arch[/variant]`, as given to `--platform`. */
export function parsePlatform(text: string): Platform {
  const parts = text.trim().split('/');
  if (parts.length < 2 || parts.length > 3 || !parts.every((s) => SEGMENT.test(s))) {
    throw new LadingError(
      'BAD_PLATFORM',
      `"${text}" is not a platform: expected os/arch[/variant], e.g. linux/amd64 or linux/arm/v7`,
    );
  }
  const p: Platform = { os: parts[0]!, architecture: parts[1]! };
  if (parts[2] !== undefined) p.variant = parts[2];
  return normalizePlatform(p);
}

/** The fields that name a platform (os, architecture, variant, os.version), without os.features. */
export function platformFields(p: Platform): Platform {
  const out: Platform = { os: p.os, architecture: p.architecture };
  if (p.variant) out.variant = p.variant;
  if (p['os.version']) out['os.version'] = p['os.version'];
  return out;
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter((s) => s !== undefined && s !== '').join('/');
}

/**
 * Whether an image of platform `have` satisfies the request `want`. A variant or os.version
 * left out of `want` matches any (except arm, where no variant means v7, as containerd does).
 */
export function platformMatches(want: Platform, have: Platform): boolean {
  const w = normalizePlatform(want);
  const h = normalizePlatform(have);
  if (w.os !== h.os || w.architecture !== h.architecture) return false;
  if (w.variant !== undefined && w.variant !== h.variant) return false;
  if (w['os.version'] !== undefined && w['os.version'] !== h['os.version']) return false;
  return true;
}

export function platformEquals(a: Platform, b: Platform): boolean {
  const x = normalizePlatform(a);
  const y = normalizePlatform(b);
  return (
    x.os === y.os && x.architecture === y.architecture && x.variant === y.variant && x['os.version'] === y['os.version']
  );
}

/** `unknown/unknown` is how buildx marks attestation manifests in an index. */
export function isUnknownPlatform(p: Platform | undefined): boolean {
  return p !== undefined && p.os === 'unknown' && p.architecture === 'unknown';
}

/** Validates a platform object found in a JSON document. */
export function parsePlatformObject(value: unknown, where: string): Platform {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new LadingError('BAD_PLATFORM', `${where}: platform must be an object`);
  }
  const v = value as Record<string, unknown>;
  if (typeof v.os !== 'string' || typeof v.architecture !== 'string') {
    throw new LadingError('BAD_PLATFORM', `${where}: platform needs string "os" and "architecture"`);
  }
  const p: Platform = { os: v.os, architecture: v.architecture };
  if (v.variant !== undefined) {
    if (typeof v.variant !== 'string')
      throw new LadingError('BAD_PLATFORM', `${where}: platform "variant" must be a string`);
    if (v.variant !== '') p.variant = v.variant;
  }
  if (v['os.version'] !== undefined) {
    if (typeof v['os.version'] !== 'string')
      throw new LadingError('BAD_PLATFORM', `${where}: platform "os.version" must be a string`);
    p['os.version'] = v['os.version'];
  }
  if (v['os.features'] !== undefined) {
    const f = v['os.features'];
    if (!Array.isArray(f) || !f.every((x) => typeof x === 'string')) {
      throw new LadingError('BAD_PLATFORM', `${where}: platform "os.features" must be an array of strings`);
    }
    p['os.features'] = f as string[];
  }
  return p;
}
