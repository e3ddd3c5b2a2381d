/**
 * Platforms: `os/arch[/variant]` parsing, containerd-style normalisation, formatting and
 * the matching rules used by platform selection.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LadingError } from '../../src/errors';
import {
  formatPlatform,
  isUnknownPlatform,
  normalizePlatform,
  parsePlatform,
  parsePlatformObject,
  platformEquals,
  platformMatches,
  type Platform,
} from '../../src/image';

function p(os: string, architecture: string, variant?: string): Platform {
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

function badPlatform(fn: () => unknown): void {
  assert.throws(fn, (e: unknown) => e instanceof LadingError && e.code === 'BAD_PLATFORM');
}

describe('parsePlatform normalisation table', () => {
  const table: [string, Platform][] = [
    ['linux/amd64', p('linux', 'amd64')],
    ['linux/x86_64', p('linux', 'amd64')],
    ['linux/x86-64', p('linux', 'amd64')],
    ['linux/amd64/v1', p('linux', 'amd64')],
    ['linux/amd64/v3', p('linux', 'amd64', 'v3')],
    ['linux/arm64', p('linux', 'arm64')],
    ['linux/arm64/v8', p('linux', 'arm64')],
    ['linux/arm64/8', p('linux', 'arm64')],
    ['linux/aarch64', p('linux', 'arm64')],
    ['linux/aarch64/v8', p('linux', 'arm64')],
    ['linux/arm64/v9', p('linux', 'arm64', 'v9')],
    ['linux/arm', p('linux', 'arm', 'v7')],
    ['linux/arm/v7', p('linux', 'arm', 'v7')],
    ['linux/arm/7', p('linux', 'arm', 'v7')],
    ['linux/arm/v6', p('linux', 'arm', 'v6')],
    ['linux/arm/6', p('linux', 'arm', 'v6')],
    ['linux/arm/v5', p('linux', 'arm', 'v5')],
    ['linux/armhf', p('linux', 'arm', 'v7')],
    ['linux/armel', p('linux', 'arm', 'v6')],
    ['linux/armv7l', p('linux', 'arm', 'v7')],
    ['linux/i386', p('linux', '386')],
    ['linux/i686', p('linux', '386')],
    ['linux/386', p('linux', '386')],
    ['linux/ppc64le', p('linux', 'ppc64le')],
    ['linux/s390x', p('linux', 's390x')],
    ['linux/riscv64', p('linux', 'riscv64')],
    ['windows/amd64', p('windows', 'amd64')],
    ['Linux/AMD64', p('linux', 'amd64')],
    ['LINUX/ARM64/V8', p('linux', 'arm64')],
    ['  linux/amd64\n', p('linux', 'amd64')],
    ['unknown/unknown', p('unknown', 'unknown')],
  ];
  for (const [text, want] of table) {
    it(`${JSON.stringify(text)} -> ${formatPlatform(want)}`, () => {
      assert.deepEqual(parsePlatform(text), want);
    });
  }
});

describe('parsePlatform refuses bad strings with BAD_PLATFORM', () => {
  const bad = [
    '',
    'linux',
    'linux/',
    '/amd64',
    'linux//amd64',
    'linux/amd64/',
    'linux/arm/v7/x',
    'a/b/c/d',
    'linux amd64',
    'linux/amd 64',
    'linux/amd64:v2',
    'linux\\amd64',
    `${'x'.repeat(65)}/amd64`,
    'linux/ämd64',
    '/',
    '//',
  ];
  for (const text of bad) {
    it(JSON.stringify(text), () => {
      badPlatform(() => parsePlatform(text));
    });
  }
  it('the message shows the input and an example', () => {
    assert.throws(() => parsePlatform('linux'), /"linux" is not a platform.*linux\/amd64/);
  });
});

describe('formatPlatform', () => {
  it('formats with and without variant', () => {
    assert.equal(formatPlatform(p('linux', 'arm', 'v7')), 'linux/arm/v7');
    assert.equal(formatPlatform(p('linux', 'amd64')), 'linux/amd64');
    assert.equal(formatPlatform({ os: 'linux', architecture: 'amd64', variant: '' }), 'linux/amd64');
    assert.equal(
      formatPlatform({ os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.1' }),
      'windows/amd64',
    );
  });

  it('parse(format(parse(s))) equals parse(s) for every table entry', () => {
    for (const s of [
      'linux/amd64',
      'linux/arm',
      'linux/arm/6',
      'linux/aarch64/v8',
      'linux/armhf',
      'linux/amd64/v3',
      'Linux/X86_64',
    ]) {
      const once = parsePlatform(s);
      assert.deepEqual(parsePlatform(formatPlatform(once)), once, s);
    }
  });
});

describe('normalizePlatform', () => {
  it('keeps os.version and copies os.features', () => {
    const features = ['win32k'];
    const n = normalizePlatform({
      os: 'windows',
      architecture: 'x86_64',
      'os.version': '10.0.20348.1',
      'os.features': features,
    });
    assert.deepEqual(n, {
      os: 'windows',
      architecture: 'amd64',
      'os.version': '10.0.20348.1',
      'os.features': ['win32k'],
    });
    assert.notEqual(n['os.features'], features);
  });
  it('drops an empty variant', () => {
    assert.deepEqual(normalizePlatform({ os: 'linux', architecture: 'amd64', variant: '' }), p('linux', 'amd64'));
  });
  it('is idempotent on the table', () => {
    for (const s of ['linux/arm', 'linux/arm64/v8', 'linux/armel', 'linux/armv7l', 'linux/x86_64', 'linux/arm/5']) {
      const once = parsePlatform(s);
      assert.deepEqual(normalizePlatform(once), once, s);
    }
  });
});

describe('platformMatches (want, have)', () => {
  const cases: [string, Platform, boolean][] = [
    ['linux/amd64', p('linux', 'amd64'), true],
    ['linux/amd64', p('linux', 'x86_64'), true],
    ['linux/amd64', p('linux', 'amd64', 'v3'), true], // variant omitted in the request matches any
    ['linux/amd64/v3', p('linux', 'amd64'), false],
    ['linux/amd64/v3', p('linux', 'amd64', 'v3'), true],
    ['linux/amd64', p('linux', 'arm64'), false],
    ['linux/amd64', p('windows', 'amd64'), false],
    ['linux/arm64', p('linux', 'arm64', 'v8'), true],
    ['linux/arm64', p('linux', 'aarch64'), true],
    ['linux/arm64/v8', p('linux', 'arm64'), true],
    ['linux/arm64', p('linux', 'arm64', 'v9'), true],
    ['linux/arm', p('linux', 'arm', 'v7'), true],
    ['linux/arm', p('linux', 'arm'), true], // both sides default to v7
    ['linux/arm', p('linux', 'arm', 'v6'), false], // arm: no variant means v7, not any
    ['linux/arm', p('linux', 'arm', 'v5'), false],
    ['linux/arm/v6', p('linux', 'arm', 'v6'), true],
    ['linux/arm/v6', p('linux', 'arm', 'v7'), false],
    ['linux/arm/v6', p('linux', 'arm'), false],
    ['linux/arm/v7', p('linux', 'armhf'), true],
    ['linux/arm/v6', p('linux', 'armel'), true],
    ['linux/arm', p('linux', 'arm64'), false],
    ['LINUX/AMD64', p('linux', 'amd64'), true],
  ];
  for (const [want, have, expected] of cases) {
    it(`${want} ${expected ? 'matches' : 'does not match'} ${formatPlatform(have)}`, () => {
      assert.equal(platformMatches(parsePlatform(want), have), expected);
    });
  }

  it('os.version in the request must match exactly; left out it matches any', () => {
    const have: Platform = { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.5458' };
    assert.equal(platformMatches({ os: 'windows', architecture: 'amd64' }, have), true);
    assert.equal(
      platformMatches({ os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.5458' }, have),
      true,
    );
    assert.equal(platformMatches({ os: 'windows', architecture: 'amd64', 'os.version': '10.0.20348.1' }, have), false);
    assert.equal(
      platformMatches(
        { os: 'windows', architecture: 'amd64', 'os.version': '10.0.20348.1' },
        { os: 'windows', architecture: 'amd64' },
      ),
      false,
    );
  });
});

describe('platformEquals', () => {
  it('compares normalised platforms', () => {
    assert.equal(platformEquals(p('linux', 'aarch64'), p('linux', 'arm64', 'v8')), true);
    assert.equal(platformEquals(p('linux', 'arm'), p('linux', 'arm', 'v7')), true);
    assert.equal(platformEquals(p('linux', 'amd64'), p('linux', 'amd64', 'v3')), false);
    assert.equal(
      platformEquals(
        { os: 'windows', architecture: 'amd64', 'os.version': '1' },
        { os: 'windows', architecture: 'amd64' },
      ),
      false,
    );
  });
});

describe('isUnknownPlatform', () => {
  it('is true only for unknown/unknown', () => {
    assert.equal(isUnknownPlatform(p('unknown', 'unknown')), true);
    assert.equal(isUnknownPlatform(p('linux', 'unknown')), false);
    assert.equal(isUnknownPlatform(undefined), false);
  });
});

describe('parsePlatformObject', () => {
  it('accepts the OCI fields and keeps them as written', () => {
    assert.deepEqual(
      parsePlatformObject({ os: 'linux', architecture: 'arm64', variant: 'v8' }, 'x'),
      p('linux', 'arm64', 'v8'),
    );
    assert.deepEqual(
      parsePlatformObject(
        { os: 'windows', architecture: 'amd64', 'os.version': '10.0', 'os.features': ['win32k'], extra: 1 },
        'x',
      ),
      {
        os: 'windows',
        architecture: 'amd64',
        'os.version': '10.0',
        'os.features': ['win32k'],
      },
    );
  });
  it('drops an empty variant', () => {
    assert.deepEqual(
      parsePlatformObject({ os: 'linux', architecture: 'amd64', variant: '' }, 'x'),
      p('linux', 'amd64'),
    );
  });
  const bad: [string, unknown][] = [
    ['null', null],
    ['a string', 'linux/amd64'],
    ['an array', ['linux', 'amd64']],
    ['no os', { architecture: 'amd64' }],
    ['no architecture', { os: 'linux' }],
    ['numeric architecture', { os: 'linux', architecture: 64 }],
    ['numeric variant', { os: 'linux', architecture: 'arm', variant: 7 }],
    ['numeric os.version', { os: 'windows', architecture: 'amd64', 'os.version': 10 }],
    ['os.features not an array', { os: 'windows', architecture: 'amd64', 'os.features': 'win32k' }],
    ['os.features with a number', { os: 'windows', architecture: 'amd64', 'os.features': ['a', 1] }],
  ];
  for (const [what, v] of bad) {
    it(`refuses ${what} with BAD_PLATFORM naming where`, () => {
      assert.throws(
        () => parsePlatformObject(v, 'index.manifests[2].platform'),
        (e: unknown) =>
          e instanceof LadingError && e.code === 'BAD_PLATFORM' && e.message.startsWith('index.manifests[2].platform'),
      );
    });
  }
});
