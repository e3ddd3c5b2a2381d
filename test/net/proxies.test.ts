/**
 * Self-tests of the proxy and CA helpers in ./proxies, with node:http / node:https / node:tls
 * and explicit options only (no lading code): what later tests rely on when they prove that
 * lading's clients go through HTTPS_PROXY and trust a corporate CA.
 */
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import {
  Agent as HttpAgent,
  createServer as createHttpServer,
  request as httpRequest,
  type ClientRequestArgs,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type RequestListener,
  type Server,
} from 'node:http';
import {
  createServer as createHttpsServer,
  request as httpsRequest,
  type RequestOptions as HttpsRequestOptions,
} from 'node:https';
import { isIP, type Socket } from 'node:net';
import { Readable, type Duplex } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { makeTestCA, startTestProxy, startTinyproxy, tinyproxyGate, type IssuedCert, type TestCA } from './proxies';

const HOST = 'registry.corp.example';

interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  encrypted: boolean;
  clientCN?: string;
}

interface Origin {
  port: number;
  seen: Seen[];
  stop(): Promise<void>;
}

/** An origin on 127.0.0.1 (HTTPS with `tls`) that records each request and answers with a JSON summary. */
async function startOrigin(tls?: { cert: IssuedCert; ca?: string; requestCert?: boolean }): Promise<Origin> {
  const seen: Seen[] = [];
  const handler: RequestListener = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const socket = req.socket as TLSSocket;
      const peer = socket.encrypted && tls?.requestCert === true ? socket.getPeerCertificate() : undefined;
      const s: Seen = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks),
        encrypted: socket.encrypted === true,
        ...(peer?.subject !== undefined ? { clientCN: String(peer.subject.CN) } : {}),
      };
      seen.push(s);
      const body = JSON.stringify({ method: s.method, url: s.url, host: req.headers.host, length: s.body.length });
      res.writeHead(200, { 'content-type': 'application/json', 'x-origin': 'yes' }).end(body);
    });
  };
  const server: Server =
    tls === undefined
      ? createHttpServer(handler)
      : createHttpsServer(
          {
            cert: tls.cert.cert,
            key: tls.cert.key,
            ...(tls.requestCert === true ? { requestCert: true, rejectUnauthorized: true, ca: tls.ca } : {}),
          },
          handler,
        );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return {
    port,
    seen,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One request; the body may be a stream (sent chunked). */
function fetchText(opts: HttpsRequestOptions, body?: string | Readable, secure = false): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = (secure ? httpsRequest : httpRequest)(opts, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body instanceof Readable) body.pipe(req);
    else req.end(body);
  });
}

/** A manual CONNECT to the proxy on 127.0.0.1; resolves with the answer and the raw socket. */
function connectVia(
  proxyPort: number,
  target: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: IncomingHttpHeaders; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      method: 'CONNECT',
      host: '127.0.0.1',
      port: proxyPort,
      path: target,
      headers: { host: target, ...headers },
      agent: false,
    });
    req.once('connect', (res: IncomingMessage, socket: Socket) =>
      resolve({ status: res.statusCode ?? 0, headers: res.headers, socket }),
    );
    req.once('error', reject);
    req.end();
  });
}

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/**
 * A keep-alive agent that opens each connection as CONNECT through a proxy, then TLS with
 * `tlsOptions` (SNI = the request's host name): what an HTTPS_PROXY-aware client does.
 */
class TunnelAgent extends HttpAgent {
  readonly peers: TLSSocket[] = [];
  constructor(
    private readonly proxyPort: number,
    private readonly tlsOptions: ConnectionOptions,
    private readonly proxyHeaders: Record<string, string> = {},
  ) {
    super({ keepAlive: true });
  }
  override createConnection(
    options: ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): undefined {
    const host = String(options.host);
    const done = callback ?? (() => undefined);
    connectVia(this.proxyPort, `${host}:${String(options.port)}`, this.proxyHeaders).then(
      ({ status, socket }) => {
        if (status !== 200) {
          socket.destroy();
          done(new Error(`proxy answered CONNECT with ${status}`), socket);
          return;
        }
        const t = tlsConnect({ socket, ...(isIP(host) === 0 ? { servername: host } : {}), host, ...this.tlsOptions });
        this.peers.push(t);
        let called = false;
        t.once('secureConnect', () => {
          called = true;
          done(null, t);
        });
        t.once('error', (err) => {
          if (!called) done(err, t);
        });
      },
      (err: Error) => done(err, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

function slowBody(parts: Buffer[]): Readable {
  return Readable.from(
    (async function* () {
      for (const p of parts) {
        yield p;
        await new Promise((r) => setTimeout(r, 5));
      }
    })(),
  );
}

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

describe('test/net/proxies helpers', { timeout: 60_000 }, () => {
  let ca: TestCA;
  before(async () => {
    ca = await makeTestCA();
  });
  after(() => ca.cleanup());

  describe('makeTestCA', () => {
    it('makes a root CA and issues server certificates for every name, DNS and IP', async () => {
      const root = new X509Certificate(ca.certPem);
      assert.equal(root.ca, true);
      assert.match(root.subject, /CN=lading test root CA/);
      assert.equal(root.checkIssued(root), true);
      const issued = await ca.issue([HOST, 'localhost', '127.0.0.1', '::1']);
      const leaf = new X509Certificate(issued.cert);
      assert.equal(leaf.ca, false);
      assert.equal(leaf.checkIssued(root), true);
      assert.equal(leaf.verify(root.publicKey), true);
      assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']); // extendedKeyUsage serverAuth
      assert.equal(leaf.subjectAltName, `DNS:${HOST}, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1`);
      assert.equal(leaf.checkHost(HOST), HOST);
      assert.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1');
      assert.equal(leaf.checkPrivateKey(createPrivateKey(issued.key)), true);
      assert.ok(issued.certPath.startsWith(ca.dir) && issued.keyPath.startsWith(ca.dir));
    });

    it('its certificates pass a real TLS handshake only for their names and only when the CA is trusted', async () => {
      const origin = await startOrigin({ cert: await ca.issue([HOST, '127.0.0.1']) });
      try {
        const base = { host: '127.0.0.1', port: origin.port, path: '/ok', agent: false } as const;
        const byName = await fetchText(
          { ...base, servername: HOST, headers: { host: HOST }, ca: ca.certPem },
          undefined,
          true,
        );
        assert.equal(byName.status, 200);
        const byIp = await fetchText({ ...base, ca: ca.certPem }, undefined, true);
        assert.equal(byIp.status, 200);
        await assert.rejects(fetchText({ ...base, servername: HOST }, undefined, true), {
          code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
        });
        await assert.rejects(
          fetchText({ ...base, servername: 'other.corp.example', ca: ca.certPem }, undefined, true),
          { code: 'ERR_TLS_CERT_ALTNAME_INVALID' },
        );
      } finally {
        await origin.stop();
      }
    });

    it('issues client certificates for mutual TLS', async () => {
      const client = await ca.issueClient('lading-ci');
      const leaf = new X509Certificate(client.cert);
      assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.2']); // clientAuth
      assert.match(leaf.subject, /CN=lading-ci/);
      const origin = await startOrigin({ cert: await ca.issue(['127.0.0.1']), ca: ca.certPem, requestCert: true });
      try {
        const base = { host: '127.0.0.1', port: origin.port, path: '/mtls', agent: false, ca: ca.certPem } as const;
        const ok = await fetchText({ ...base, cert: client.cert, key: client.key }, undefined, true);
        assert.equal(ok.status, 200);
        assert.equal(origin.seen[0].clientCN, 'lading-ci');
        await assert.rejects(fetchText(base, undefined, true));
        // A server certificate is no client certificate.
        const server = await ca.issue(['127.0.0.1']);
        await assert.rejects(fetchText({ ...base, cert: server.cert, key: server.key }, undefined, true));
        assert.equal(origin.seen.length, 1);
      } finally {
        await origin.stop();
      }
    });
  });

  describe('startTestProxy', () => {
    it('tunnels CONNECT for any host name to 127.0.0.1:PORT, keep-alive included', async () => {
      const origin = await startOrigin({ cert: await ca.issue([HOST]) });
      const proxy = await startTestProxy();
      const agent = new TunnelAgent(proxy.port, { ca: ca.certPem });
      try {
        assert.equal(proxy.url, `http://127.0.0.1:${proxy.port}`);
        assert.equal(proxy.authUrl, undefined);
        for (const path of ['/v2/', '/v2/x/blobs/uploads/']) {
          const r = await fetchText({ host: HOST, port: origin.port, path, agent });
          assert.equal(r.status, 200);
          assert.deepEqual(JSON.parse(r.body), { method: 'GET', url: path, host: `${HOST}:${origin.port}`, length: 0 });
        }
        assert.deepEqual(proxy.connects, [{ target: `${HOST}:${origin.port}`, status: 200 }]);
        assert.deepEqual(proxy.requests, []);
        assert.equal(origin.seen.length, 2);
        assert.equal(origin.seen[0].encrypted, true);
      } finally {
        agent.destroy();
        await proxy.stop();
        await origin.stop();
      }
    });

    it('requires Basic credentials when given a user: 407 without or with wrong ones', async () => {
      const origin = await startOrigin({ cert: await ca.issue([HOST]) });
      const plain = await startOrigin();
      const proxy = await startTestProxy({ user: 'alice', password: 'p@ss:w0rd/é' });
      try {
        assert.equal(proxy.authUrl, `http://alice:p%40ss%3Aw0rd%2F%C3%A9@127.0.0.1:${proxy.port}`);
        const target = `${HOST}:${origin.port}`;
        const none = await connectVia(proxy.port, target);
        none.socket.destroy();
        assert.equal(none.status, 407);
        assert.equal(none.headers['proxy-authenticate'], 'Basic realm="test"');
        const wrong = await connectVia(proxy.port, target, { 'proxy-authorization': basic('alice', 'nope') });
        wrong.socket.destroy();
        assert.equal(wrong.status, 407);
        const agent = new TunnelAgent(
          proxy.port,
          { ca: ca.certPem },
          { 'proxy-authorization': basic('alice', 'p@ss:w0rd/é') },
        );
        const ok = await fetchText({ host: HOST, port: origin.port, path: '/', agent });
        agent.destroy();
        assert.equal(ok.status, 200);
        assert.deepEqual(
          proxy.connects.map((c) => [c.status, c.auth]),
          [
            [407, undefined],
            [407, 'alice:nope'],
            [200, 'alice:p@ss:w0rd/é'],
          ],
        );

        const url = `http://${HOST}:${plain.port}/p`;
        const denied = await fetchText({
          host: '127.0.0.1',
          port: proxy.port,
          path: url,
          headers: { host: `${HOST}:${plain.port}` },
          agent: false,
        });
        assert.equal(denied.status, 407);
        assert.equal(denied.headers['proxy-authenticate'], 'Basic realm="test"');
        const allowed = await fetchText({
          host: '127.0.0.1',
          port: proxy.port,
          path: url,
          headers: { host: `${HOST}:${plain.port}`, 'proxy-authorization': basic('alice', 'p@ss:w0rd/é') },
          agent: false,
        });
        assert.equal(allowed.status, 200);
        assert.equal(plain.seen.length, 1);
        assert.equal(plain.seen[0].headers['proxy-authorization'], undefined, 'the proxy strips its credentials');
        assert.deepEqual(
          proxy.requests.map((r) => [r.method, r.url, r.status, r.auth]),
          [
            ['GET', url, 407, undefined],
            ['GET', url, 200, 'alice:p@ss:w0rd/é'],
          ],
        );
      } finally {
        await proxy.stop();
        await origin.stop();
        await plain.stop();
      }
    });

    it('refuseConnect answers 403 to the targets it names', async () => {
      const proxy = await startTestProxy({ refuseConnect: (t) => t.startsWith('blocked.example:') });
      const origin = await startOrigin();
      try {
        const refused = await connectVia(proxy.port, 'blocked.example:443');
        refused.socket.destroy();
        assert.equal(refused.status, 403);
        const open = await connectVia(proxy.port, `open.example:${origin.port}`);
        open.socket.destroy();
        assert.equal(open.status, 200);
        const bad = await connectVia(proxy.port, 'no-port.example');
        bad.socket.destroy();
        assert.equal(bad.status, 400);
        assert.deepEqual(
          proxy.connects.map((c) => [c.target, c.status]),
          [
            ['blocked.example:443', 403],
            [`open.example:${origin.port}`, 200],
            ['no-port.example', 400],
          ],
        );
      } finally {
        await proxy.stop();
        await origin.stop();
      }
    });

    it('forwards plain absolute-URI requests, bodies streamed, hop-by-hop headers dropped', async () => {
      const origin = await startOrigin();
      const proxy = await startTestProxy();
      try {
        const hostHeader = `${HOST}:${origin.port}`;
        const get = await fetchText({
          host: '127.0.0.1',
          port: proxy.port,
          path: `http://${hostHeader}/v2/a/../b?n=1&m=%2F`,
          headers: { host: hostHeader, 'proxy-connection': 'keep-alive', 'x-kept': 'yes' },
          agent: false,
        });
        assert.equal(get.status, 200);
        assert.equal(get.headers['x-origin'], 'yes');
        assert.deepEqual(JSON.parse(get.body), {
          method: 'GET',
          url: '/v2/a/../b?n=1&m=%2F',
          host: hostHeader,
          length: 0,
        });
        assert.equal(origin.seen[0].headers['proxy-connection'], undefined);
        assert.equal(origin.seen[0].headers['x-kept'], 'yes');

        const parts = Array.from({ length: 4 }, (_, i) => Buffer.alloc(64 * 1024, 65 + i));
        const post = await fetchText(
          {
            host: '127.0.0.1',
            port: proxy.port,
            method: 'POST',
            path: `http://${hostHeader}/upload`,
            headers: { host: hostHeader },
            agent: false,
          },
          slowBody(parts),
        );
        assert.equal(post.status, 200);
        assert.equal(origin.seen[1].headers['transfer-encoding'], 'chunked');
        assert.equal(sha(origin.seen[1].body), sha(Buffer.concat(parts)));

        const put = await fetchText(
          {
            host: '127.0.0.1',
            port: proxy.port,
            method: 'PUT',
            path: `http://${hostHeader}/put`,
            headers: { host: hostHeader, 'content-length': '5' },
            agent: false,
          },
          'hello',
        );
        assert.equal(put.status, 200);
        assert.equal(origin.seen[2].body.toString(), 'hello');

        const nobody = await fetchText({
          host: '127.0.0.1',
          port: proxy.port,
          path: `http://${HOST}:1/`,
          headers: { host: `${HOST}:1` },
          agent: false,
        });
        assert.equal(nobody.status, 502);
        const notAProxyRequest = await fetchText({ host: '127.0.0.1', port: proxy.port, path: '/v2/', agent: false });
        assert.equal(notAProxyRequest.status, 400);
        assert.deepEqual(
          proxy.requests.map((r) => [r.method, r.url, r.status]),
          [
            ['GET', `http://${hostHeader}/v2/a/../b?n=1&m=%2F`, 200],
            ['POST', `http://${hostHeader}/upload`, 200],
            ['PUT', `http://${hostHeader}/put`, 200],
            ['GET', `http://${HOST}:1/`, 502],
            ['GET', '/v2/', 400],
          ],
        );
        assert.deepEqual(proxy.connects, []);
      } finally {
        await proxy.stop();
        await origin.stop();
      }
    });

    it('mitm: presents a certificate for the requested host signed by the CA and forwards the decrypted requests', async () => {
      const origin = await startOrigin(); // plain HTTP behind the inspecting proxy
      const proxy = await startTestProxy({ mitm: { ca } });
      const agent = new TunnelAgent(proxy.port, { ca: ca.certPem });
      try {
        const a = await fetchText({ host: HOST, port: origin.port, path: '/a', agent });
        const parts = [Buffer.alloc(100_000, 1), Buffer.alloc(50_000, 2)];
        const b = await fetchText(
          { host: HOST, port: origin.port, path: '/b', method: 'POST', agent },
          slowBody(parts),
        );
        assert.equal(a.status, 200);
        assert.equal(b.status, 200);
        assert.equal(JSON.parse(b.body).length, 150_000);
        assert.equal(sha(origin.seen[1].body), sha(Buffer.concat(parts)));
        assert.equal(origin.seen[0].headers.host, `${HOST}:${origin.port}`);

        assert.equal(agent.peers.length, 1, 'one TLS session, kept alive');
        const peer = agent.peers[0].getPeerCertificate();
        assert.equal(peer.subjectaltname, `DNS:${HOST}`);
        assert.equal(peer.issuer.CN, 'lading test root CA');
        assert.equal(proxy.tlsSessions(), 1);
        assert.deepEqual(proxy.connects, [{ target: `${HOST}:${origin.port}`, status: 200, servername: HOST }]);
        assert.deepEqual(
          proxy.requests.map((r) => [r.method, r.url, r.status]),
          [
            ['GET', `https://${HOST}:${origin.port}/a`, 200],
            ['POST', `https://${HOST}:${origin.port}/b`, 200],
          ],
        );

        // A client that does not trust the inspecting CA sees the interception.
        const untrusting = new TunnelAgent(proxy.port, {});
        await assert.rejects(fetchText({ host: HOST, port: origin.port, path: '/c', agent: untrusting }), {
          code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
        });
        untrusting.destroy();
        assert.equal(origin.seen.length, 2);
      } finally {
        agent.destroy();
        await proxy.stop();
        await origin.stop();
      }
    });

    it('mitm with originTls re-encrypts to the origin and checks its certificate', async () => {
      const origin = await startOrigin({ cert: await ca.issue([HOST]) });
      const wrongName = await startOrigin({ cert: await ca.issue(['elsewhere.example']) });
      const proxy = await startTestProxy({ mitm: { ca, originTls: true } });
      const agent = new TunnelAgent(proxy.port, { ca: ca.certPem });
      try {
        const r = await fetchText({ host: HOST, port: origin.port, path: '/v2/', agent });
        assert.equal(r.status, 200);
        assert.equal(origin.seen[0].encrypted, true);
        const bad = await fetchText({ host: HOST, port: wrongName.port, path: '/v2/', agent });
        assert.equal(bad.status, 502);
        assert.match(bad.body, /altnames|does not match/i);
        assert.equal(wrongName.seen.length, 0);
      } finally {
        agent.destroy();
        await proxy.stop();
        await origin.stop();
        await wrongName.stop();
      }
    });

    it('stop() ends open tunnels at once', async () => {
      const origin = await startOrigin();
      const proxy = await startTestProxy();
      const tunnel = await connectVia(proxy.port, `${HOST}:${origin.port}`);
      assert.equal(tunnel.status, 200);
      const closed = new Promise<void>((resolve) => tunnel.socket.once('close', () => resolve()));
      tunnel.socket.on('error', () => undefined);
      const t0 = Date.now();
      await proxy.stop();
      await closed;
      assert.ok(Date.now() - t0 < 1000, `stop took ${Date.now() - t0} ms`);
      await origin.stop();
    });
  });

  describe('startTinyproxy', tinyproxyGate(), () => {
    it('tunnels CONNECT to any port and forwards plain requests; its log records both', async () => {
      const tls = await startOrigin({ cert: await ca.issue(['127.0.0.1']) });
      const plain = await startOrigin();
      const tp = await startTinyproxy();
      const agent = new TunnelAgent(tp.port, { ca: ca.certPem });
      try {
        assert.equal(tp.url, `http://127.0.0.1:${tp.port}`);
        assert.equal(tp.authUrl, undefined);
        const viaTunnel = await fetchText({ host: '127.0.0.1', port: tls.port, path: '/tunnelled', agent });
        assert.equal(viaTunnel.status, 200);
        const url = `http://127.0.0.1:${plain.port}/plain?x=1`;
        const forwarded = await fetchText({
          host: '127.0.0.1',
          port: tp.port,
          path: url,
          headers: { host: `127.0.0.1:${plain.port}` },
          agent: false,
        });
        assert.equal(forwarded.status, 200);
        assert.equal(plain.seen[0].url, '/plain?x=1');
        assert.deepEqual(tp.connects(), [`127.0.0.1:${tls.port}`]);
        assert.deepEqual(tp.requests(), [url]);
        assert.match(tp.log(), /Established connection to host "127\.0\.0\.1"/);
      } finally {
        agent.destroy();
        await tp.stop();
        await tls.stop();
        await plain.stop();
      }
      assert.match(tp.log(), /Shutting down/, 'the log stays readable after stop()');
    });

    it('BasicAuth: 407 without credentials, 401 (sic) with wrong ones, through with the right ones', async () => {
      const tls = await startOrigin({ cert: await ca.issue(['127.0.0.1']) });
      const plain = await startOrigin();
      const tp = await startTinyproxy({ user: 'bob', password: 's3cret' });
      try {
        assert.equal(tp.authUrl, `http://bob:s3cret@127.0.0.1:${tp.port}`);
        const target = `127.0.0.1:${tls.port}`;
        const none = await connectVia(tp.port, target);
        none.socket.destroy();
        assert.equal(none.status, 407);
        assert.equal(none.headers['proxy-authenticate'], 'Basic realm="Tinyproxy"');
        const wrong = await connectVia(tp.port, target, { 'proxy-authorization': basic('bob', 'wrong') });
        wrong.socket.destroy();
        assert.ok(wrong.status === 401 || wrong.status === 407, `status ${wrong.status}`);
        const agent = new TunnelAgent(tp.port, { ca: ca.certPem }, { 'proxy-authorization': basic('bob', 's3cret') });
        const ok = await fetchText({ host: '127.0.0.1', port: tls.port, path: '/', agent });
        agent.destroy();
        assert.equal(ok.status, 200);
        const url = `http://127.0.0.1:${plain.port}/p`;
        const denied = await fetchText({ host: '127.0.0.1', port: tp.port, path: url, agent: false });
        assert.equal(denied.status, 407);
        const allowed = await fetchText({
          host: '127.0.0.1',
          port: tp.port,
          path: url,
          headers: { 'proxy-authorization': basic('bob', 's3cret') },
          agent: false,
        });
        assert.equal(allowed.status, 200);
        assert.equal(plain.seen.length, 1);
        assert.equal(plain.seen[0].headers['proxy-authorization'], undefined);
        // Request lines are logged before the credentials are checked.
        assert.deepEqual(tp.connects(), [target, target, target]);
        assert.deepEqual(tp.requests(), [url, url]);
      } finally {
        await tp.stop();
        await tls.stop();
        await plain.stop();
      }
    });

    it('extraConfig: a ConnectPort line restricts CONNECT; a bad line makes start reject with its stderr', async () => {
      const origin = await startOrigin();
      const tp = await startTinyproxy({ extraConfig: ['ConnectPort 443'] });
      try {
        const r = await connectVia(tp.port, `127.0.0.1:${origin.port}`);
        r.socket.destroy();
        assert.equal(r.status, 403);
      } finally {
        await tp.stop();
        await origin.stop();
      }
      await assert.rejects(
        startTinyproxy({ extraConfig: ['NoSuchDirective 1'] }),
        /exited early.*Syntax error on line/s,
      );
    });
  });
});
