import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { LadingError } from '../../src/errors';
import { formatReference, isLoopbackRegistry, parseReference, type Reference } from '../../src/reference/reference';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  const cases: [string, Reference][] = [
    ['alpine', { registry: 'registry-1.docker.io', repository: 'library/alpine' }],
    ['alpine:3.20', { registry: 'registry-1.docker.io', repository: 'library/alpine', tag: '3.20' }],
    ['docker.io/alpine', { registry: 'registry-1.docker.io', repository: 'library/alpine' }],
    ['index.docker.io/team/app:v1', { registry: 'registry-1.docker.io', repository: 'team/app', tag: 'v1' }],
    ['team/app', { registry: 'registry-1.docker.io', repository: 'team/app' }],
    ['localhost/app', { registry: 'localhost', repository: 'app' }],
    ['localhost:5000/a/b/c:latest', { registry: 'localhost:5000', repository: 'a/b/c', tag: 'latest' }],
    [`127.0.0.1:5000/app@${D}`, { registry: '127.0.0.1:5000', repository: 'app', digest: D as Reference['digest'] }],
    [
      `[::1]:5000/app:t@${D}`,
      { registry: '[::1]:5000', repository: 'app', tag: 't', digest: D as Reference['digest'] },
    ],
    [
      '123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-app:1.0.0',
      { registry: '123456789012.dkr.ecr.eu-west-1.amazonaws.com', repository: 'my-app', tag: '1.0.0' },
    ],
    ['Registry/app', { registry: 'Registry', repository: 'app' }],
    ['a.b/x__y/z--w.v_u', { registry: 'a.b', repository: 'x__y/z--w.v_u' }],
  ];
  for (const [input, want] of cases) {
    test(input, () => assert.deepEqual(parseReference(input), want));
  }

  const bad: [string, RegExp][] = [
    ['', /empty/],
    ['UPPER', /lower case/],
    ['localhost:5000/', /missing/],
    ['app:bad tag', /tag/],
    ['app@sha256:123', /not a valid digest/],
    ['a..b/c/d_/e', /registry host/],
    ['a/c/d_/e', /not a valid repository/],
    ['host:99999/app', /registry host/],
    ['ex ample.com/app', /registry host/],
    [`x/${'a'.repeat(300)}`, /longer than 255/],
  ];
  for (const [input, why] of bad) {
    test(`rejects ${JSON.stringify(input.slice(0, 40))}`, () => {
      assert.throws(
        () => parseReference(input),
        (e: unknown) => e instanceof LadingError && e.code === 'BAD_REFERENCE' && why.test(e.message),
      );
    });
  }

  test('loopback registries', () => {
    for (const h of [
      'localhost',
      'localhost:5000',
      '127.0.0.1',
      '127.0.0.1:5000',
      '[::1]',
      '[::1]:5000',
      '127.1.2.3:80',
    ])
      assert.ok(isLoopbackRegistry(h), h);
    for (const h of ['example.com', 'localhost.example.com:5000', '10.0.0.1:5000', '[::2]:5000'])
      assert.ok(!isLoopbackRegistry(h), h);
  });
});

// Generators of the grammar's pieces, for round-trip properties.
const alnum = fc.stringMatching(/^[a-z0-9]{1,8}$/);
const separator = fc.constantFrom('.', '_', '__', '-', '--');
const component = fc
  .tuple(alnum, fc.array(fc.tuple(separator, alnum), { maxLength: 2 }))
  .map(([a, rest]) => a + rest.map(([s, b]) => s + b).join(''));
const repository = fc.array(component, { minLength: 1, maxLength: 4 }).map((c) => c.join('/'));
const host = fc.oneof(
  fc.constant('localhost'),
  fc
    .tuple(fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/), fc.stringMatching(/^[a-z]{2,6}$/))
    .map(([a, b]) => `${a}.${b}`),
  fc.ipV4(),
);
const registry = fc
  .tuple(host, fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }))
  .map(([h, p]) => (p === undefined ? h : `${h}:${p}`));
const tag = fc.stringMatching(/^[\w][\w.-]{0,40}$/);
const digest = fc.stringMatching(/^[a-f0-9]{64}$/).map((h) => `sha256:${h}`);

describe('parseReference properties', () => {
  test('format(parse(x)) round-trips for generated valid references', () => {
    fc.assert(
      fc.property(
        registry,
        repository,
        fc.option(tag, { nil: undefined }),
        fc.option(digest, { nil: undefined }),
        (reg, repo, t, d) => {
          fc.pre(reg.length + repo.length < 250);
          const input = `${reg}/${repo}${t !== undefined ? `:${t}` : ''}${d !== undefined ? `@${d}` : ''}`;
          const ref = parseReference(input);
          assert.equal(ref.repository, repo);
          assert.equal(ref.tag, t);
          assert.equal(ref.digest, d);
          assert.deepEqual(parseReference(formatReference(ref)), ref);
        },
      ),
    );
  });

  test('any string parses or fails with BAD_REFERENCE, never anything else', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 120 }), (s) => {
        try {
          const ref = parseReference(s);
          assert.deepEqual(parseReference(formatReference(ref)), ref);
        } catch (e) {
          assert.ok(e instanceof LadingError && e.code === 'BAD_REFERENCE', String(e));
        }
      }),
      { numRuns: 2000 },
    );
  });
});
