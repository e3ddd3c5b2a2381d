/**
 * Digest grammar (OCI image spec, descriptor.md#digests): sha256 required, sha512
 * accepted, other well-formed algorithms refused as unsupported, upper-case hex refused.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { LadingError } from '../../src/errors';
import {
  createDigester,
  digestAlgorithm,
  digestHex,
  digestOf,
  finishDigest,
  isDigest,
  parseDigest,
} from '../../src/image';

const HEX64 = 'a'.repeat(64);
const HEX128 = '0123456789abcdef'.repeat(8);
const EMPTY_SHA256 = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof LadingError, `expected a LadingError, got ${String(e)}`);
    return e.code;
  }
  return 'none';
}

describe('parseDigest / isDigest', () => {
  const valid = [`sha256:${HEX64}`, EMPTY_SHA256, `sha512:${HEX128}`, `sha256:${'0123456789abcdef'.repeat(4)}`];
  for (const d of valid) {
    it(`accepts ${d.slice(0, 20)}...`, () => {
      assert.equal(parseDigest(d), d);
      assert.equal(isDigest(d), true);
    });
  }

  const invalid: [string, unknown][] = [
    ['empty string', ''],
    ['no colon', `sha256${HEX64}`],
    ['empty algorithm', `:${HEX64}`],
    ['empty encoded', 'sha256:'],
    ['63 hex digits', `sha256:${'a'.repeat(63)}`],
    ['65 hex digits', `sha256:${'a'.repeat(65)}`],
    ['upper-case hex for sha256', `sha256:${'A'.repeat(64)}`],
    ['mixed-case hex for sha256', `sha256:${'a'.repeat(63)}F`],
    ['upper-case algorithm', `SHA256:${HEX64}`],
    ['non-hex characters', `sha256:${'g'.repeat(64)}`],
    ['sha512 with 64 digits', `sha512:${HEX64}`],
    ['sha512 upper case', `sha512:${HEX128.toUpperCase()}`],
    ['leading space', ` sha256:${HEX64}`],
    ['trailing newline', `sha256:${HEX64}\n`],
    ['two colons', `sha256:${HEX64}:`],
    ['separator at the end of the algorithm', `sha256+:${HEX64}`],
    ['longer than 256 characters', `sha256:${'a'.repeat(300)}`],
    ['a number', 42],
    ['null', null],
    ['undefined', undefined],
    ['an object', { algorithm: 'sha256', hex: HEX64 }],
  ];
  for (const [what, d] of invalid) {
    it(`refuses ${what} with BAD_DIGEST`, () => {
      assert.equal(
        code(() => parseDigest(d)),
        'BAD_DIGEST',
      );
      assert.equal(isDigest(d), false);
    });
  }

  const unsupported = [
    'md5:d41d8cd98f00b204e9800998ecf8427e',
    `sha384:${'a'.repeat(96)}`,
    `blake3:${HEX64}`,
    `sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564`,
    `multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8`,
  ];
  for (const d of unsupported) {
    it(`refuses the well-formed but unsupported ${d.slice(0, d.indexOf(':'))} with a message naming the algorithm`, () => {
      assert.equal(isDigest(d), false);
      assert.throws(
        () => parseDigest(d),
        (e: unknown) =>
          e instanceof LadingError && e.code === 'BAD_DIGEST' && /unsupported digest algorithm/.test(e.message),
      );
    });
  }

  it('names where the digest came from and shortens long values in the message', () => {
    assert.throws(
      () => parseDigest(`sha256:${'z'.repeat(200)}`, 'manifest.layers[3].digest'),
      (e: unknown) =>
        e instanceof LadingError && e.message.startsWith('manifest.layers[3].digest:') && e.message.length < 200,
    );
  });
});

describe('digestOf and friends', () => {
  it('computes sha256 of bytes and of strings (utf-8)', () => {
    assert.equal(digestOf(Buffer.alloc(0)), EMPTY_SHA256);
    assert.equal(digestOf(''), EMPTY_SHA256);
    assert.equal(
      digestOf('héllo'),
      `sha256:${createHash('sha256').update(Buffer.from('héllo', 'utf8')).digest('hex')}`,
    );
    assert.equal(
      digestOf(new Uint8Array([1, 2, 3])),
      `sha256:${createHash('sha256')
        .update(Buffer.from([1, 2, 3]))
        .digest('hex')}`,
    );
  });

  it('computes sha512 when asked, and its result parses', () => {
    const d = digestOf('abc', 'sha512');
    assert.equal(d, `sha512:${createHash('sha512').update('abc').digest('hex')}`);
    assert.equal(parseDigest(d), d);
    assert.equal(digestAlgorithm(d), 'sha512');
    assert.equal(digestHex(d).length, 128);
  });

  it('splits a digest into algorithm and hex', () => {
    const d = parseDigest(EMPTY_SHA256);
    assert.equal(digestAlgorithm(d), 'sha256');
    assert.equal(digestHex(d), EMPTY_SHA256.slice(7));
  });

  it('createDigester + finishDigest equal digestOf over chunks', () => {
    for (const alg of ['sha256', 'sha512'] as const) {
      const h = createDigester(alg);
      h.update('ab');
      h.update(Buffer.from('c'));
      assert.equal(finishDigest(h, alg), digestOf('abc', alg));
    }
  });
});
