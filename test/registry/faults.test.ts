import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { LadingError } from '../../src/errors';
import { MediaType } from '../../src/image';
import { NetworkError, RegistryClient, RegistryError } from '../../src/registry';
import { freePort, registryAvailable, startRegistry, type RegistryServer } from '../helpers/registry-server';
import { startFaultProxy, type Fault } from './fault-proxy';
import { configBlob, ociManifest, randomBlob, source } from './fixtures';
import type { IncomingMessage } from 'node:http';

const skip = registryAvailable ? false : 'docker-registry is not installed';

describe('retries and failures (fault-injecting proxy in front of a real registry)', { skip }, () => {
  let reg: RegistryServer;
  before(async () => {
    reg = await startRegistry();
  });
  after(async () => {
    await reg?.stop();
  });

  /** Runs `body` with a client behind a proxy that applies `faults` in order to matching requests. */
  async function withProxy(
    match: (req: IncomingMessage) => boolean,
    faults: Fault[],
    body: (c: RegistryClient, seen: string[], logs: string[]) => Promise<void>,
    attempts = 5,
  ): Promise<void> {
    const queue = [...faults];
    const proxy = await startFaultProxy(reg, (req) => (match(req) && queue.length > 0 ? queue.shift() : undefined));
    const logs: string[] = [];
    const c = new RegistryClient({ registry: proxy.host, retryBaseDelayMs: 10, attempts, logger: (l) => logs.push(l) });
    try {
      await body(c, proxy.seen, logs);
    } finally {
      await c.close();
      await proxy.stop();
    }
  }
  const isUpload = (req: IncomingMessage): boolean => (req.url ?? '').includes('/blobs/uploads/');

  test('503, then 429 with Retry-After, then a reset mid-PUT: the upload restarts and succeeds', async () => {
    const b = randomBlob(400_000);
    const src = source(b);
    await withProxy(
      isUpload,
      [
        { status: 503 },
        {
          status: 429,
          headers: { 'retry-after': '1' },
          body: '{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
        },
        undefined,
        'reset',
      ],
      async (c, seen, logs) => {
        const t0 = Date.now();
        const r = await c.uploadBlob('faults/app', src);
        assert.equal(r.digest, b.digest);
        assert.ok(Date.now() - t0 >= 950, 'Retry-After was honoured');
        assert.equal(src.opens, 2, 'the source was re-opened for the fresh attempt');
        assert.deepEqual(
          seen.filter((s) => s !== 'GET /v2/').map((s) => s.split(' ')[0]),
          ['POST', 'POST', 'POST', 'PUT', 'POST', 'PUT'],
        );
        assert.equal(logs.filter((l) => l.startsWith('retry ')).length, 3);
        assert.deepEqual(await c.blobExists('faults/app', b.digest), { size: b.size });
      },
    );
  });

  test('a 500 on the streamed PATCH restarts from a fresh POST', async () => {
    const b = randomBlob(100_000);
    const src = source(b, {});
    await withProxy(
      (req) => req.method === 'PATCH',
      [{ status: 500 }],
      async (c) => {
        assert.equal((await c.uploadBlob('faults/patch', src)).digest, b.digest);
        assert.equal(src.opens, 2);
      },
    );
  });

  test('a reset on /v2/ discovery and a 502 on a manifest PUT are retried', async () => {
    const cfg = configBlob();
    await withProxy(
      (req) => req.url === '/v2/' || req.method === 'PUT',
      ['reset', undefined, undefined, { status: 502, body: 'Bad Gateway' }],
      async (c) => {
        await c.uploadBlob('faults/m', source(cfg));
        const m = ociManifest(cfg, []);
        await c.putManifest('faults/m', 'v1', m, MediaType.OciManifest);
        assert.ok(await c.headManifest('faults/m', 'v1'));
      },
    );
  });

  test('non-retryable 4xx fails at once', async () => {
    await withProxy(
      isUpload,
      [{ status: 400, body: '{"errors":[{"code":"NAME_INVALID","message":"invalid repository name"}]}' }],
      async (c, seen) => {
        await assert.rejects(c.uploadBlob('faults/x', source(randomBlob(10))), (e: unknown) => {
          assert.ok(e instanceof RegistryError && e.code === 'BAD_REFERENCE');
          assert.deepEqual(e.registryCodes, ['NAME_INVALID']);
          return true;
        });
        assert.equal(seen.filter((s) => s.startsWith('POST')).length, 1);
      },
    );
  });

  test('attempts are bounded: a registry that keeps failing gives REGISTRY after N attempts', async () => {
    await withProxy(
      isUpload,
      Array<Fault>(10).fill({ status: 503 }),
      async (c, seen) => {
        await assert.rejects(c.uploadBlob('faults/y', source(randomBlob(10))), (e: unknown) => {
          assert.ok(e instanceof RegistryError && e.code === 'REGISTRY' && e.status === 503);
          assert.match(e.message, /push blob sha256:\w+ 127\.0\.0\.1:\d+\/faults\/y failed: HTTP 503 UNAVAILABLE/);
          return true;
        });
        assert.equal(seen.filter((s) => s.startsWith('POST')).length, 3);
      },
      3,
    );
  });

  test('registry down -> NETWORK error that says what to check, without retrying for long', async () => {
    const port = await freePort();
    const c = new RegistryClient({ registry: `127.0.0.1:${port}` });
    try {
      const t0 = Date.now();
      await assert.rejects(c.ping(), (e: unknown) => {
        assert.ok(e instanceof NetworkError && e instanceof LadingError);
        assert.equal(e.code, 'NETWORK');
        assert.match(
          e.message,
          /^ping 127\.0\.0\.1:\d+ failed: connection refused by 127\.0\.0\.1:\d+: is the registry running, is the host and port right\?$/,
        );
        return true;
      });
      assert.ok(Date.now() - t0 < 2000);
    } finally {
      await c.close();
    }
  });
});

describe('TLS', { skip }, () => {
  let reg: RegistryServer;
  before(async () => {
    reg = await startRegistry({ tls: true });
  });
  after(async () => {
    await reg?.stop();
  });

  test('a self-signed certificate is refused with a hint, and accepted with insecure', async () => {
    const strict = new RegistryClient({ registry: reg.host, plainHttp: false });
    const insecure = new RegistryClient({ registry: reg.host, plainHttp: false, insecure: true });
    const plain = new RegistryClient({ registry: reg.host });
    try {
      assert.equal(strict.baseUrl.protocol, 'https:');
      await assert.rejects(
        strict.ping(),
        (e: unknown) =>
          e instanceof LadingError &&
          e.code === 'TLS' &&
          /unknown authority .*NODE_EXTRA_CA_CERTS or AWS_CA_BUNDLE.*certs\.d\/127\.0\.0\.1:\d+\/ca\.crt.*--insecure/.test(
            e.message,
          ),
      );
      assert.deepEqual(await insecure.ping(), { auth: 'anonymous' });
      const b = randomBlob(1000);
      assert.equal((await insecure.uploadBlob('tls/app', source(b))).digest, b.digest);
      // Plain HTTP to a TLS port: the registry answers 400 to the HTTP request.
      await assert.rejects(plain.ping(), (e: unknown) => e instanceof LadingError);
    } finally {
      await strict.close();
      await insecure.close();
      await plain.close();
    }
  });
});
