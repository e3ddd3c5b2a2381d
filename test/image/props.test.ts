/**
 * Property tests of the parsers at lading's edge: digests, platforms, references, entry
 * names and manifest documents never throw anything but a LadingError, whatever the input,
 * and what they accept satisfies their invariants (round trips, idempotence).
 *
 * The budget: FC_NUM_RUNS (npm run fuzz sets a large one); by default each property runs a
 * few hundred to a few thousand cases, a second or two in all. FC_SEED and FC_PATH, as
 * fast-check prints them, replay a failure.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { normalizeEntryName } from '../../src/archive/entries';
import { LadingError, type ErrorCode } from '../../src/errors';
import {
  digestOf,
  formatPlatform,
  isDigest,
  isIndexMediaType,
  isManifestMediaType,
  MediaType,
  normalizePlatform,
  parseDigest,
  parseImageConfig,
  parseManifestDocument,
  parsePlatform,
  parsePlatformObject,
  platformEquals,
  platformMatches,
} from '../../src/image';
import { formatReference, parseReference } from '../../src/reference/reference';

const envRuns = process.env.FC_NUM_RUNS === undefined ? undefined : Number(process.env.FC_NUM_RUNS);
/** Runs for one property: FC_NUM_RUNS when set, else this property's default. */
const runs = (byDefault: number): number => envRuns ?? byDefault;
/** FC_SEED and FC_PATH (printed by fast-check on a failure) replay one counterexample. */
const replay =
  process.env.FC_SEED === undefined
    ? {}
    : { seed: Number(process.env.FC_SEED), ...(process.env.FC_PATH ? { path: process.env.FC_PATH } : {}) };
const timeout = (byDefault: number): number => 120_000 + (runs(byDefault) / byDefault) * 20_000;

/** Calls fn; a LadingError with one of `codes` is fine, anything else thrown fails the property. */
function onlyLadingErrors<T>(fn: () => T, codes: readonly ErrorCode[]): T | undefined {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof LadingError)) throw new Error(`threw a non-LadingError: ${(e as Error)?.stack ?? String(e)}`);
    assert.ok(codes.includes(e.code), `unexpected code ${e.code}: ${e.message}`);
    assert.match(e.message, /\S/);
    return undefined;
  }
}

/** Counts both outcomes of a property, to check that the generators reach both. */
class Tally {
  ok = 0;
  refused = 0;
  note(accepted: boolean): void {
    if (accepted) this.ok++;
    else this.refused++;
  }
  /** Both outcomes seen at least `min` times (skipped for tiny budgets). */
  check(what: string, min = 5): void {
    if (this.ok + this.refused < 500 || process.env.FC_SEED !== undefined) return;
    assert.ok(
      this.ok >= min && this.refused >= min,
      `${what}: generators too narrow (${this.ok} accepted, ${this.refused} refused)`,
    );
  }
}

const anyString = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
);

const digestLike = fc.oneof(
  anyString,
  fc.stringMatching(/^[a-z0-9+._-]{0,12}:[a-zA-Z0-9=_-]{0,140}$/),
  fc
    .tuple(
      fc.constantFrom('sha256', 'sha512', 'SHA256', 'sha384', 'sha256+b64'),
      fc.stringMatching(/^[0-9a-fA-F]{60,130}$/),
    )
    .map(([a, h]) => `${a}:${h}`),
  fc
    .constantFrom(64, 128)
    .chain((n) =>
      fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`)).map((h) => `${n === 64 ? 'sha256' : 'sha512'}:${h}`),
    ),
);

const platformLike = fc.oneof(
  anyString,
  fc
    .array(
      fc.oneof(
        fc.constantFrom(
          'linux',
          'windows',
          'arm',
          'arm64',
          'aarch64',
          'x86_64',
          'amd64',
          'armhf',
          'armel',
          'armv7l',
          'v5',
          'v6',
          'v7',
          'v8',
          '7',
          '8',
          'V8',
          'unknown',
          '',
          ' ',
        ),
        fc.stringMatching(/^[A-Za-z0-9_.+-]{1,8}$/),
      ),
      { maxLength: 4 },
    )
    .map((parts) => parts.join('/')),
);

const referenceLike = fc.oneof(
  anyString,
  fc
    .tuple(
      fc.constantFrom('', 'localhost:5000/', 'docker.io/', 'Registry.example/', '[::1]:5000/', '127.0.0.1/'),
      fc.stringMatching(/^[a-z0-9._/-]{1,30}$/),
      fc.option(fc.stringMatching(/^:[\w.-]{0,10}$/), { nil: '' }),
      fc.option(
        digestLike.map((d) => `@${d}`),
        { nil: '' },
      ),
    )
    .map((p) => p.join('')),
);

describe('string parsers never throw anything but LadingError', () => {
  it('parseDigest / isDigest agree, and what parses is well formed', { timeout: timeout(3000) }, () => {
    const tally = new Tally();
    fc.assert(
      fc.property(fc.oneof(digestLike, fc.anything()), (s) => {
        const d = onlyLadingErrors(() => parseDigest(s), ['BAD_DIGEST']);
        tally.note(d !== undefined);
        assert.equal(isDigest(s), d !== undefined);
        if (d !== undefined) {
          assert.match(d, /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/);
        }
      }),
      { numRuns: runs(3000), ...replay },
    );
    tally.check('digests');
  });

  it('digestOf output always parses', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 200 }),
        fc.constantFrom('sha256' as const, 'sha512' as const),
        (b, alg) => {
          const d = digestOf(b, alg);
          assert.equal(parseDigest(d), d);
        },
      ),
      { numRuns: runs(300), ...replay },
    );
  });

  it(
    'parsePlatform: round trips through formatPlatform, normalisation is idempotent, matching is reflexive',
    { timeout: timeout(3000) },
    () => {
      const tally = new Tally();
      fc.assert(
        fc.property(platformLike, (s) => {
          const p = onlyLadingErrors(() => parsePlatform(s), ['BAD_PLATFORM']);
          tally.note(p !== undefined);
          if (p === undefined) return;
          assert.deepEqual(parsePlatform(formatPlatform(p)), p);
          assert.deepEqual(normalizePlatform(p), p);
          assert.equal(platformMatches(p, p), true);
          assert.equal(platformEquals(p, p), true);
          assert.equal(p.os, p.os.toLowerCase());
          if (p.architecture === 'arm')
            assert.ok(p.variant !== undefined, 'arm always has a variant after normalisation');
        }),
        { numRuns: runs(3000), ...replay },
      );
      tally.check('platforms');
    },
  );

  it('platformMatches: an exact request implies a match, equality is symmetric', () => {
    fc.assert(
      fc.property(platformLike, platformLike, (a, b) => {
        const p = onlyLadingErrors(() => parsePlatform(a), ['BAD_PLATFORM']);
        const q = onlyLadingErrors(() => parsePlatform(b), ['BAD_PLATFORM']);
        if (p === undefined || q === undefined) return;
        assert.equal(platformEquals(p, q), platformEquals(q, p));
        if (platformEquals(p, q)) assert.equal(platformMatches(p, q), true);
      }),
      { numRuns: runs(2000), ...replay },
    );
  });

  it('parsePlatformObject on arbitrary values', () => {
    const objects = fc.oneof(
      fc.anything(),
      fc.record(
        {
          os: fc.oneof(fc.string(), fc.anything()),
          architecture: fc.oneof(fc.string(), fc.anything()),
          variant: fc.anything(),
          'os.version': fc.anything(),
          'os.features': fc.anything(),
        },
        { requiredKeys: [] },
      ),
    );
    fc.assert(
      fc.property(objects, (v) => {
        const p = onlyLadingErrors(() => parsePlatformObject(v, 'p'), ['BAD_PLATFORM']);
        if (p !== undefined) {
          assert.equal(typeof p.os, 'string');
          assert.equal(typeof p.architecture, 'string');
          assert.doesNotThrow(() => normalizePlatform(p));
        }
      }),
      { numRuns: runs(2000), ...replay },
    );
  });

  it('parseReference: what parses formats back to the same reference', { timeout: timeout(3000) }, () => {
    const tally = new Tally();
    fc.assert(
      fc.property(referenceLike, (s) => {
        const r = onlyLadingErrors(() => parseReference(s), ['BAD_REFERENCE']);
        tally.note(r !== undefined);
        if (r !== undefined) assert.deepEqual(parseReference(formatReference(r)), r);
      }),
      { numRuns: runs(3000), ...replay },
    );
    tally.check('references');
  });

  it('normalizeEntryName: results are clean and normalising is idempotent', () => {
    const nameLike = fc.oneof(
      anyString,
      fc.array(fc.constantFrom('a', 'b', '.', '..', '', '...', 'c d', 'é'), { maxLength: 6 }).map((p) => p.join('/')),
    );
    fc.assert(
      fc.property(nameLike, (s) => {
        const n = onlyLadingErrors(() => normalizeEntryName(s, 'x'), ['UNSAFE_PATH']);
        if (n === undefined) {
          assert.ok(s.startsWith('/') || s.split('/').includes('..'));
          return;
        }
        assert.ok(!n.startsWith('/'));
        assert.ok(!n.split('/').some((p) => p === '' || p === '.' || p === '..') || n === '');
        assert.equal(normalizeEntryName(n, 'x'), n);
      }),
      { numRuns: runs(2000), ...replay },
    );
  });
});

// ------------------------------------------------------------------------------------------

const MANIFEST_CODES: ErrorCode[] = [
  'BAD_JSON',
  'JSON_TOO_LARGE',
  'BAD_MANIFEST',
  'BAD_DESCRIPTOR',
  'BAD_DIGEST',
  'BAD_PLATFORM',
  'UNSUPPORTED_SCHEMA',
  'LIMIT_EXCEEDED',
];

const layer = { mediaType: MediaType.OciLayerGzip, digest: digestOf('l'), size: 1 };
const VALID: Record<string, unknown>[] = [
  {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: { mediaType: MediaType.OciConfig, digest: digestOf('c'), size: 1 },
    layers: [layer],
    annotations: { a: 'b' },
  },
  {
    schemaVersion: 2,
    mediaType: MediaType.DockerManifest,
    config: { mediaType: MediaType.DockerConfig, digest: digestOf('c'), size: 1 },
    layers: [layer, layer],
  },
  {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [
      {
        mediaType: MediaType.OciManifest,
        digest: digestOf('m'),
        size: 1,
        platform: { os: 'linux', architecture: 'arm', variant: 'v7' },
        annotations: { x: 'y' },
      },
    ],
    subject: { mediaType: MediaType.OciManifest, digest: digestOf('s'), size: 1 },
  },
  { schemaVersion: 2, mediaType: MediaType.DockerManifestList, manifests: [] },
  { schemaVersion: 2, manifests: null },
  {
    schemaVersion: 2,
    config: { mediaType: MediaType.OciEmpty, digest: digestOf('{}'), size: 2, data: 'e30=' },
    layers: [],
  },
];

/** Replaces the value at a random path of a JSON value (objects and arrays) with another value. */
function mutateAt(value: unknown, path: number[], replacement: unknown, remove: boolean): unknown {
  if (path.length === 0 || value === null || typeof value !== 'object') return replacement;
  const [i, ...rest] = path as [number, ...number[]];
  if (Array.isArray(value)) {
    if (value.length === 0) return [replacement];
    const k = i % value.length;
    const copy = [...value];
    if (remove && rest.length === 0) copy.splice(k, 1);
    else copy[k] = mutateAt(value[k], rest, replacement, remove);
    return copy;
  }
  const keys = Object.keys(value);
  if (keys.length === 0) return { [String(i)]: replacement };
  const key = keys[i % keys.length]!;
  const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  if (remove && rest.length === 0) delete copy[key];
  else copy[key] = mutateAt(copy[key], rest, replacement, remove);
  return copy;
}

const jsonDoc = fc.oneof(
  { weight: 2, arbitrary: fc.jsonValue() },
  {
    weight: 5,
    arbitrary: fc
      .tuple(
        fc.constantFrom(...VALID),
        fc.array(
          fc.tuple(
            fc.array(fc.nat(), { maxLength: 4 }),
            fc.oneof(
              fc.jsonValue({ maxDepth: 2 }),
              fc.constantFrom(...Object.values(MediaType), 1, 2, null, '', 'sha256:x', digestOf('z')),
            ),
            fc.boolean(),
          ),
          { minLength: 1, maxLength: 3 },
        ),
      )
      .map(([doc, muts]) => muts.reduce<unknown>((d, [path, v, rm]) => mutateAt(d, path, v, rm), doc)),
  },
);

describe('parseManifestDocument and parseImageConfig throw only LadingErrors', () => {
  it('on arbitrary JSON values and on mutations of valid documents', { timeout: timeout(2000) }, () => {
    const manifests = new Tally();
    fc.assert(
      fc.property(
        jsonDoc,
        fc.option(fc.constantFrom(...Object.values(MediaType), 'application/json', 'text/plain'), { nil: undefined }),
        (doc, declared) => {
          const bytes = Buffer.from(JSON.stringify(doc) ?? 'null', 'utf8');
          const m = onlyLadingErrors(() => parseManifestDocument(bytes, 'doc', declared), MANIFEST_CODES);
          manifests.note(m !== undefined);
          if (m !== undefined) {
            assert.equal(m.digest, digestOf(bytes));
            assert.equal(m.bytes, bytes);
            assert.equal(m.kind === 'index', isIndexMediaType(m.mediaType));
            assert.equal(m.kind === 'manifest', isManifestMediaType(m.mediaType));
          }
          const c = onlyLadingErrors(() => parseImageConfig(bytes, 'config'), MANIFEST_CODES);
          if (c !== undefined) assert.equal(c.digest, digestOf(bytes));
        },
      ),
      { numRuns: runs(2000), ...replay },
    );
    manifests.check('manifest documents');
  });

  it('on arbitrary bytes', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? '', 'utf16le')),
        ),
        (b) => {
          onlyLadingErrors(() => parseManifestDocument(Buffer.from(b), 'doc'), MANIFEST_CODES);
          onlyLadingErrors(() => parseImageConfig(Buffer.from(b), 'config'), MANIFEST_CODES);
        },
      ),
      { numRuns: runs(1000), ...replay },
    );
  });
});
