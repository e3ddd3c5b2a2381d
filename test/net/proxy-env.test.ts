import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { LadingError } from '../../src/errors';
import { displayProxy, noProxyMatcher, parseProxyUrl, proxyRoutesFromEnv } from '../../src/net/proxy-env';
import { proxyAuthorization } from '../../src/net/tunnel';

const via = (env: NodeJS.ProcessEnv, url: string): string | undefined => {
  const p = proxyRoutesFromEnv(env).proxyFor(new URL(url));
  return p ? `${p.url.host} ${p.source}` : undefined;
};

describe('proxy variables', () => {
  test('https targets take HTTPS_PROXY, http targets HTTP_PROXY, ALL_PROXY is the fallback', () => {
    const env = { HTTPS_PROXY: 'http://s:1', HTTP_PROXY: 'http://p:2' };
    assert.equal(via(env, 'https://r.example/v2/'), 's:1 HTTPS_PROXY');
    assert.equal(via(env, 'http://r.example/v2/'), 'p:2 HTTP_PROXY');
    assert.equal(
      via({ HTTPS_PROXY: 'http://s:1' }, 'http://r.example/'),
      undefined,
      'HTTPS_PROXY is not for http targets',
    );
    assert.equal(via({ ALL_PROXY: 'http://a:3' }, 'http://r.example/'), 'a:3 ALL_PROXY');
    assert.equal(via({ ALL_PROXY: 'http://a:3', https_proxy: 'http://s:1' }, 'https://r.example/'), 's:1 https_proxy');
    assert.equal(via({}, 'https://r.example/'), undefined);
  });

  test('the lower-case form wins where both are set; an empty value is unset', () => {
    assert.equal(
      via({ HTTPS_PROXY: 'http://upper:1', https_proxy: 'http://lower:2' }, 'https://r.example/'),
      'lower:2 https_proxy',
    );
    assert.equal(via({ HTTPS_PROXY: 'http://upper:1', https_proxy: '' }, 'https://r.example/'), 'upper:1 HTTPS_PROXY');
    assert.equal(
      via({ HTTPS_PROXY: 'http://p:1', NO_PROXY: 'a.example', no_proxy: 'b.example' }, 'https://a.example/'),
      'p:1 HTTPS_PROXY',
      'no_proxy replaces NO_PROXY',
    );
    assert.equal(
      via({ HTTPS_PROXY: 'http://p:1', NO_PROXY: 'a.example', no_proxy: 'b.example' }, 'https://b.example/'),
      undefined,
    );
  });

  test('proxy URLs: scheme optional (http), http and https only, credentials hidden in messages', () => {
    assert.equal(parseProxyUrl('proxy.corp:3128', 'HTTPS_PROXY').href, 'http://proxy.corp:3128/');
    assert.equal(parseProxyUrl('https://proxy.corp', 'HTTPS_PROXY').protocol, 'https:');
    assert.throws(
      () => parseProxyUrl('socks5://p:1080', 'ALL_PROXY'),
      (e: unknown) =>
        e instanceof LadingError && e.code === 'USAGE' && /socks5 proxies are not supported/.test(e.message),
    );
    assert.throws(
      () => parseProxyUrl('http://us%er:se cret@[bad', 'HTTPS_PROXY'),
      (e: unknown) =>
        e instanceof LadingError &&
        e.code === 'USAGE' &&
        !e.message.includes('se cret') &&
        e.message.includes('HTTPS_PROXY'),
    );
    assert.equal(displayProxy(new URL('http://user:s3cret@proxy:3128')), 'http://***@proxy:3128');
    assert.equal(displayProxy(new URL('http://proxy:3128')), 'http://proxy:3128');
  });

  test('credentials are percent-decoded into Proxy-Authorization', () => {
    const auth = proxyAuthorization(new URL('http://do%40main%5Cuser:p%3Ass%20w@proxy:3128'));
    assert.equal(Buffer.from(auth!.slice('Basic '.length), 'base64').toString(), 'do@main\\user:p:ss w');
    assert.equal(proxyAuthorization(new URL('http://proxy:3128')), undefined);
  });
});

describe('NO_PROXY', () => {
  const bypass = (rules: string, url: string): boolean => noProxyMatcher(rules)(new URL(url));

  test('host names and domain suffixes, with or without a leading dot or *.', () => {
    for (const rule of ['example.com', '.example.com', '*.example.com', 'EXAMPLE.com.']) {
      assert.ok(bypass(rule, 'https://example.com/'), `${rule} matches the domain`);
      assert.ok(bypass(rule, 'https://a.b.example.com/'), `${rule} matches names under it`);
      assert.ok(!bypass(rule, 'https://badexample.com/'), `${rule} is not a bare suffix`);
      assert.ok(!bypass(rule, 'https://example.com.evil/'), rule);
    }
    assert.ok(bypass('registry.local', 'http://REGISTRY.local.:5000/'), 'case and trailing dot of the target');
  });

  test('IPs, CIDR ranges (v4 and v6), ports, *', () => {
    assert.ok(bypass('10.1.2.3', 'https://10.1.2.3/'));
    assert.ok(!bypass('10.1.2.3', 'https://10.1.2.4/'));
    assert.ok(bypass('10.0.0.0/8', 'https://10.200.0.1:5000/'));
    assert.ok(!bypass('10.0.0.0/8', 'https://11.0.0.1/'));
    assert.ok(!bypass('10.0.0.0/8', 'https://ten.example/'), 'names are not resolved');
    assert.ok(bypass('fd00::/8', 'https://[fd12::1]/'));
    assert.ok(bypass('::1', 'http://[::1]:5000/'));
    assert.ok(bypass('[::1]:5000', 'http://[::1]:5000/'));
    assert.ok(!bypass('[::1]:5000', 'http://[::1]:5001/'));
    assert.ok(bypass('registry.corp:5000', 'https://registry.corp:5000/'));
    assert.ok(!bypass('registry.corp:5000', 'https://registry.corp/'));
    assert.ok(bypass('registry.corp:443', 'https://registry.corp/'), 'the default port counts');
    assert.ok(bypass('169.254.169.254, s3.amazonaws.com ,.internal', 'http://169.254.169.254/latest'));
    assert.ok(bypass('a,b *', 'https://anything/'));
    assert.ok(!bypass('', 'https://anything/'));
    assert.ok(!bypass('10.0.0.0/99, bad/8, :', 'https://anything/'), 'malformed entries are ignored');
  });

  test('property: a host always matches itself and its parent domains, never an unrelated name', () => {
    // A letter first: `https://0/` is the IPv4 address 0.0.0.0 to the URL parser.
    const label = fc.stringMatching(/^[a-z]([a-z0-9-]{0,10}[a-z0-9])?$/);
    fc.assert(
      fc.property(fc.array(label, { minLength: 1, maxLength: 5 }), label, (labels, other) => {
        const host = labels.join('.');
        for (let i = 0; i < labels.length; i++) {
          const parent = labels.slice(i).join('.');
          if (!bypass(parent, `https://${host}/`) || !bypass(`.${parent}`, `https://${host}/`)) return false;
        }
        const unrelated = `${other}x.invalid`;
        return !bypass(host, `https://${unrelated}/`) && !bypass(`${host}:1`, `https://${host}:2/`);
      }),
    );
  });

  test('property: the parser never throws, whatever the variable holds', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 200 }),
        fc.constantFrom('https://a.example/', 'http://10.0.0.1:80/', 'https://[::1]:5000/'),
        (value, url) => {
          noProxyMatcher(value)(new URL(url));
          return true;
        },
      ),
    );
  });
});
