import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { LadingError } from '../../src/errors';
import { MediaType } from '../../src/image';
import { RegistryClient, RegistryError } from '../../src/registry';
import { registryAvailable, startRegistry, type RegistryServer } from '../helpers/registry-server';
import { startFaultProxy } from './fault-proxy';
import { configBlob, ociManifest, randomBlob, source } from './fixtures';
import { startTokenServer, type TokenServer } from './token-server';

const skip = registryAvailable ? false : 'docker-registry is not installed';

describe('Bearer token auth (registry behind a token server)', { skip }, () => {
  let ts: TokenServer;
  let reg: RegistryServer;
  const clients: RegistryClient[] = [];
  const make = (opts: Partial<ConstructorParameters<typeof RegistryClient>[0]> = {}): RegistryClient => {
    const c = new RegistryClient({
      registry: reg.host,
      credentials: { username: 'bob', password: 'bobs-password' },
      retryBaseDelayMs: 10,
      ...opts,
    });
    clients.push(c);
    return c;
  };

  before(async () => {
    ts = await startTokenServer({
      service: 'lading-test-registry',
      users: { bob: 'bobs-password' },
      refreshTokens: { 'refresh-me': 'bob' },
    });
    reg = await startRegistry({
      token: { realm: ts.realm, service: ts.service, issuer: ts.issuer, rootCertBundle: ts.certPem },
    });
  });
  beforeEach(() => {
    ts.requests.length = 0;
    ts.settings.expiresIn = 300;
    ts.settings.accessTokenField = false;
  });
  after(async () => {
    for (const c of clients) await c.close();
    await reg?.stop();
    await ts?.stop();
  });

  test('push asks once for repository:NAME:pull,push and reuses the token for reads', async () => {
    const c = make();
    const cfg = configBlob();
    const layer = randomBlob(5000);
    await c.uploadBlob('tok/app', source(cfg));
    await c.uploadBlob('tok/app', source(layer, {}));
    await c.putManifest('tok/app', 'v1', ociManifest(cfg, [layer]), MediaType.OciManifest);
    assert.ok(await c.blobExists('tok/app', layer.digest));
    assert.ok(await c.headManifest('tok/app', 'v1'));
    assert.deepEqual(ts.requests, [
      {
        method: 'GET',
        scopes: ['repository:tok/app:pull,push'],
        service: 'lading-test-registry',
        account: 'bob',
        auth: 'basic',
      },
    ]);
  });

  test('reads ask for pull only; a mount adds pull on the source repository', async () => {
    const c = make();
    const b = randomBlob(100);
    await c.uploadBlob('tok/src', source(b));
    ts.requests.length = 0;
    assert.equal(await c.blobExists('tok/other', b.digest), undefined);
    assert.deepEqual(
      ts.requests.map((r) => r.scopes),
      [['repository:tok/other:pull']],
    );
    ts.requests.length = 0;
    assert.equal(await c.mountBlob('tok/dst', b.digest, 'tok/src'), true);
    assert.deepEqual(
      ts.requests.map((r) => r.scopes),
      [['repository:tok/dst:pull,push', 'repository:tok/src:pull']],
    );
  });

  test('parallel uploads share one token request', async () => {
    const c = make();
    const blobs = [1, 2, 3, 4, 5, 6].map(() => randomBlob(50_000));
    const results = await Promise.all(
      blobs.map((b, i) => c.uploadBlob('tok/par', source(b, i % 2 === 0 ? { digest: true, size: true } : {}))),
    );
    assert.deepEqual(
      results.map((r) => r.digest),
      blobs.map((b) => b.digest),
    );
    assert.equal(ts.requests.length, 1);
  });

  test('"access_token" in the response works like "token"', async () => {
    ts.settings.accessTokenField = true;
    const c = make();
    assert.equal((await c.uploadBlob('tok/at', source(randomBlob(10)))).mounted, false);
  });

  test('a token is renewed when it expires', async () => {
    ts.settings.expiresIn = 1; // renewed after 0.75 s (a quarter early)
    const c = make();
    await c.blobExists('tok/exp', randomBlob(1).digest);
    await c.blobExists('tok/exp', randomBlob(1).digest);
    assert.equal(ts.requests.length, 1);
    await new Promise((r) => setTimeout(r, 800));
    await c.blobExists('tok/exp', randomBlob(1).digest);
    assert.equal(ts.requests.length, 2);
  });

  test('a token the registry rejects (401) is renewed and the request re-sent', async () => {
    ts.expireNext(1);
    const c = make();
    const b = randomBlob(1000);
    assert.equal((await c.uploadBlob('tok/renew', source(b))).digest, b.digest);
    assert.equal(ts.requests.length, 2);
  });

  test('a 401 on a streamed PUT mid-push restarts the upload with a fresh token', async () => {
    let injected = false;
    const proxy = await startFaultProxy(reg, (req) => {
      if (!injected && req.method === 'PUT' && req.url?.includes('/blobs/uploads/')) {
        injected = true;
        return {
          status: 401,
          headers: { 'www-authenticate': `Bearer realm="${ts.realm}",service="${ts.service}"` },
          body: JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'token expired' }] }),
        };
      }
      return undefined;
    });
    try {
      const c = make({ registry: proxy.host });
      const b = randomBlob(200_000);
      const src = source(b);
      assert.equal((await c.uploadBlob('tok/mid', src)).digest, b.digest);
      assert.equal(src.opens, 2, 'the source was re-opened');
      assert.equal(ts.requests.length, 2, 'the rejected token was replaced');
      assert.deepEqual(
        proxy.seen.filter((s) => !s.startsWith('GET /v2/')).map((s) => s.split(' ')[0]),
        ['POST', 'PUT', 'POST', 'PUT'],
      );
    } finally {
      await proxy.stop();
    }
  });

  test('identity token (refresh token) uses the OAuth2 POST form', async () => {
    const c = make({ credentials: { identityToken: 'refresh-me' } });
    await c.blobExists('tok/oauth', randomBlob(1).digest);
    assert.deepEqual(
      ts.requests.map((r) => [r.method, r.auth, r.scopes]),
      [['POST', 'refresh_token', ['repository:tok/oauth:pull']]],
    );
  });

  test('wrong password -> AUTH from the token server, secret not shown', async () => {
    const c = make({ credentials: { username: 'bob', password: 'wrong-password-123' } });
    await assert.rejects(c.uploadBlob('tok/app', source(randomBlob(10))), (e: unknown) => {
      assert.ok(e instanceof RegistryError && e.code === 'AUTH');
      assert.match(
        e.message,
        /get a token for repository:tok\/app:pull,push from http:\/\/127\.0\.0\.1:\d+\/token .*HTTP 401.*explicit credentials/,
      );
      assert.ok(!e.message.includes('wrong-password-123'));
      return true;
    });
    assert.equal(ts.requests.length, 1, 'a credential failure is not retried');
  });

  test('anonymous token works for this token server (it allows anonymous)', async () => {
    const c = make({ credentials: undefined });
    assert.deepEqual(await c.ping(), { auth: 'bearer' });
    await assert.rejects(
      c.getManifest('tok/none', 'latest'),
      (e: unknown) => e instanceof LadingError && e.code === 'NOT_FOUND',
    );
  });
});
