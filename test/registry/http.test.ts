import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { createAgents, discard, Http, readBody } from '../../src/registry/http';
import { NetworkError, transportError } from '../../src/registry/errors';

/** A server on 127.0.0.1 whose handler the test decides; it tracks sockets to close them all. */
async function serve(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ url: URL; server: Server; connections: () => number; stop: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createServer(handler);
  server.on('connection', (s: Socket) => {
    connections++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: new URL(`http://127.0.0.1:${port}/`),
    server,
    connections: () => connections,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function drain(req: IncomingMessage): Promise<number> {
  return new Promise((resolve) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => resolve(n));
  });
}

const ctx = { operation: 'test request', registry: '127.0.0.1' };

describe('registry HTTP layer (node:http)', () => {
  const stops: Array<() => Promise<void>> = [];
  after(async () => {
    for (const s of stops) await s();
  });

  test('keeps connections alive across requests, repeated headers become lists', async () => {
    const s = await serve((req, res) => {
      void drain(req).then((n) => {
        res.setHeader('www-authenticate', ['Bearer realm="a"', 'Basic realm="b"']);
        res.end(`got ${n}`);
      });
    });
    stops.push(s.stop);
    const http = new Http();
    for (let i = 0; i < 3; i++) {
      const res = await http.send({
        method: 'PUT',
        url: new URL('/x', s.url),
        headers: { 'content-length': '5' },
        body: Buffer.from('hello'),
      });
      assert.equal(res.status, 200);
      assert.deepEqual(res.headers['www-authenticate'], ['Bearer realm="a"', 'Basic realm="b"']);
      assert.equal((await readBody(res, 100, 'x')).toString(), 'got 5');
    }
    assert.equal(s.connections(), 1);
    await http.close();
  });

  test('streams a Readable body, and a shared pool is not closed by a client', async () => {
    const s = await serve((req, res) => void drain(req).then((n) => res.end(String(n))));
    stops.push(s.stop);
    const agents = createAgents();
    const a = new Http({ agents });
    const b = new Http({ agents });
    const chunks = Array.from({ length: 64 }, (_, i) => Buffer.alloc(64 * 1024, i));
    const res = await a.send({ method: 'PATCH', url: new URL('/up', s.url), body: Readable.from(chunks) });
    assert.equal((await readBody(res, 100, 'x')).toString(), String(64 * 64 * 1024));
    await a.close();
    const res2 = await b.send({ method: 'GET', url: new URL('/again', s.url) });
    await discard(res2);
    assert.equal(res2.status, 200);
    assert.equal(s.connections(), 1);
    agents.http.destroy();
  });

  test('an error answered before the body is sent resolves, and the rest of the body is abandoned', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(400, { 'content-type': 'application/json', connection: 'close' });
      res.end('{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"no"}]}');
    });
    stops.push(s.stop);
    const http = new Http();
    let pulled = 0;
    // 256 MiB, produced lazily: the test fails by timeout if the client insisted on sending it all.
    const body = new Readable({
      read() {
        pulled++;
        this.push(pulled > 4096 ? null : Buffer.alloc(64 * 1024));
      },
    });
    const res = await http.send({
      method: 'PUT',
      url: new URL('/blob', s.url),
      headers: { 'content-length': String(4096 * 64 * 1024) },
      body,
    });
    assert.equal(res.status, 400);
    assert.match((await readBody(res, 1000, 'x')).toString(), /BLOB_UPLOAD_INVALID/);
    assert.ok(pulled < 4096, `pulled ${pulled} chunks`);
    await http.close();
  });

  test('a server that never answers fails with HEADERS_TIMEOUT, reported as "stopped answering" and retryable', async () => {
    const s = await serve((req) => void drain(req));
    stops.push(s.stop);
    const http = new Http({ headersTimeoutMs: 200 });
    const started = Date.now();
    const e = await http.send({ method: 'GET', url: new URL('/v2/', s.url) }).then(
      () => assert.fail('resolved'),
      (err: unknown) => err,
    );
    assert.equal((e as NodeJS.ErrnoException).code, 'HEADERS_TIMEOUT');
    assert.ok(Date.now() - started < 5000);
    const le = transportError(ctx, s.url.host, e, undefined, (x) => x);
    assert.match(le.message, /stopped answering/);
    assert.ok(le instanceof NetworkError && le.retryable);
    await http.close();
  });

  test('a body that stalls fails with IDLE_TIMEOUT', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('only part of it');
    });
    stops.push(s.stop);
    const http = new Http({ idleTimeoutMs: 200 });
    const res = await http.send({ method: 'GET', url: new URL('/blob', s.url) });
    await assert.rejects(
      readBody(res, 1000, 'x'),
      (e: NodeJS.ErrnoException) => e.code === 'IDLE_TIMEOUT' || e.code === 'ECONNRESET',
    );
    await http.close();
  });

  test('a body stream that fails aborts the request with its error', async () => {
    const s = await serve((req, res) => void drain(req).then(() => res.end('ok')));
    stops.push(s.stop);
    const http = new Http();
    const body = new Readable({
      read() {
        this.destroy(Object.assign(new Error('source broke'), { code: 'SOURCE' }));
      },
    });
    await assert.rejects(
      http.send({ method: 'PUT', url: new URL('/blob', s.url), headers: { 'content-length': '10' }, body }),
      /source broke/,
    );
    await http.close();
  });

  test('an abort signal rejects a pending request', async () => {
    const s = await serve((req) => void drain(req));
    stops.push(s.stop);
    const http = new Http();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    await assert.rejects(
      http.send({ method: 'GET', url: new URL('/v2/', s.url), signal: ac.signal }),
      (e: Error) => e.name === 'AbortError',
    );
    await http.close();
  });

  test('discard reads a short body to its end (connection reused) and closes a long one', async () => {
    const s = await serve((req, res) => res.end(req.url === '/long' ? Buffer.alloc(4 * 1024 * 1024) : 'short'));
    stops.push(s.stop);
    const http = new Http();
    await discard(await http.send({ method: 'GET', url: new URL('/short', s.url) }));
    await discard(await http.send({ method: 'GET', url: new URL('/short', s.url) }));
    assert.equal(s.connections(), 1);
    await discard(await http.send({ method: 'GET', url: new URL('/long', s.url) }));
    await discard(await http.send({ method: 'GET', url: new URL('/short', s.url) }));
    assert.equal(s.connections(), 2);
    await http.close();
  });
});
