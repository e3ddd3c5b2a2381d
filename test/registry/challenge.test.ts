import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { parseChallenges } from '../../src/registry';
import { quoteParam } from '../../src/registry/challenge';

describe('parseChallenges', () => {
  test('docker hub bearer challenge', () => {
    assert.deepEqual(
      parseChallenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
      ),
      [
        {
          scheme: 'bearer',
          params: {
            realm: 'https://auth.docker.io/token',
            service: 'registry.docker.io',
            scope: 'repository:library/alpine:pull',
          },
        },
      ],
    );
  });

  test('several challenges in one header, quoted commas and escapes', () => {
    const h =
      'Basic realm="a, b", Bearer realm="https://x/token",service=svc, scope="repository:a:pull,push" , error="insufficient_scope",Custom k="q\\"uote"';
    assert.deepEqual(parseChallenges(h), [
      { scheme: 'basic', params: { realm: 'a, b' } },
      {
        scheme: 'bearer',
        params: {
          realm: 'https://x/token',
          service: 'svc',
          scope: 'repository:a:pull,push',
          error: 'insufficient_scope',
        },
      },
      { scheme: 'custom', params: { k: 'q"uote' } },
    ]);
  });

  test('several header lines, case-insensitive names, spaces around "="', () => {
    assert.deepEqual(parseChallenges(['BASIC Realm = "r"', 'bearer REALM="t"']), [
      { scheme: 'basic', params: { realm: 'r' } },
      { scheme: 'bearer', params: { realm: 't' } },
    ]);
  });

  test('a scheme without parameters and garbage', () => {
    assert.deepEqual(parseChallenges('Negotiate'), [{ scheme: 'negotiate', params: {} }]);
    assert.deepEqual(parseChallenges(''), []);
    assert.deepEqual(parseChallenges(undefined), []);
    assert.deepEqual(parseChallenges('Bearer realm="unterminated'), [
      { scheme: 'bearer', params: { realm: 'unterminated' } },
    ]);
  });
});

const token = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}$/);
const challenge = fc.record({
  scheme: token,
  params: fc.dictionary(
    token.map((k) => k.toLowerCase()),
    fc.string({ maxLength: 30 }),
    { maxKeys: 4 },
  ),
});

describe('parseChallenges properties', () => {
  test('parses back what a server would format, however many challenges and values', () => {
    fc.assert(
      fc.property(
        fc.array(challenge, { minLength: 1, maxLength: 4 }),
        fc.constantFrom(', ', ',', ' , '),
        (challenges, sep) => {
          const header = challenges
            .map((c) => {
              const params = Object.entries(c.params).map(([k, v]) => `${k}=${quoteParam(v)}`);
              return params.length > 0 ? `${c.scheme} ${params.join(sep)}` : c.scheme;
            })
            .join(sep);
          const want = challenges.map((c) => ({ scheme: c.scheme.toLowerCase(), params: { ...c.params } }));
          const got = parseChallenges(header).map((c) => ({ scheme: c.scheme, params: { ...c.params } }));
          assert.deepEqual(got, want);
        },
      ),
      { numRuns: 1000 },
    );
  });

  test('never throws and always terminates on arbitrary input', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => void parseChallenges(s)),
      { numRuns: 2000 },
    );
  });
});
