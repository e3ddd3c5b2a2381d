/**
 * Proxies and a certificate authority for tests that prove lading's HTTP clients honour
 * HTTPS_PROXY / HTTP_PROXY / NO_PROXY and corporate CAs. Everything listens on 127.0.0.1.
 *
 * ```ts
 * const ca = await makeTestCA();                          // openssl: a root CA in a temp dir
 * const { cert, key } = await ca.issue(['registry.corp.example', '127.0.0.1']);
 * const proxy = await startTestProxy({ user: 'u', password: 'p@ss' });
 * // proxy.authUrl === 'http://u:p%40ss@127.0.0.1:PORT'; every target host is reached on 127.0.0.1,
 * // so https://registry.corp.example:ORIGIN_PORT/ works only through the proxy.
 * const tp = await startTinyproxy();                      // Debian's tinyproxy, a real proxy
 * after(() => Promise.all([proxy.stop(), tp.stop(), ca.cleanup()]));
 * ```
 *
 * Only 127.0.0.1 and localhost resolve on the test machines: a client that reaches
 * `registry.corp.example` did so through `startTestProxy` (tinyproxy resolves targets
 * itself, so through it only 127.0.0.1 / localhost targets work). Processes still running
 * when the test process exits are killed. No side effects at import.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import {
  Agent as HttpAgent,
  createServer as createHttpServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect as netConnect, createServer as createNetServer, isIP, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { checkServerIdentity, createSecureContext, TLSSocket, type SecureContext } from 'node:tls';
import type { Duplex } from 'node:stream';

// ---------------------------------------------------------------------------------------------
// Test certificate authority (the `openssl` CLI, OpenSSL 3 and 1.1 alike)
// ---------------------------------------------------------------------------------------------

export interface IssuedCert {
  /** PEM of the leaf certificate (the CA is not appended). */
  cert: string;
  /** PEM of its private key (PKCS#8, EC P-256). */
  key: string;
  certPath: string;
  keyPath: string;
}

export interface TestCA {
  /** The directory holding the CA's and the issued files. */
  dir: string;
  /** PEM of the root certificate: what a client is told to trust. */
  certPem: string;
  certPath: string;
  keyPath: string;
  /**
   * A server certificate (extendedKeyUsage serverAuth) whose subjectAltName lists every name:
   * `IP:` for IP addresses (127.0.0.1, ::1), `DNS:` for the rest. The CN is the first name.
   */
  issue(names: string[]): Promise<IssuedCert>;
  /** A client certificate (extendedKeyUsage clientAuth) with subject CN=cn, for mutual TLS. */
  issueClient(cn: string): Promise<IssuedCert>;
  /** Removes `dir` when makeTestCA created it (a given dir is left alone). Idempotent. */
  cleanup(): Promise<void>;
}

function run(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${file} ${args.slice(0, 2).join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** Names that go into a subject or a config line unquoted: host names, IPs, simple CNs. */
const SAFE_NAME = /^[A-Za-z0-9*._:@ -]+$/;

function sanName(name: string): string {
  return isIP(name) !== 0 ? `IP:${name}` : `DNS:${name}`;
}

/** A positive random serial: no serial file, so concurrent issues do not race. */
function serial(): string {
  return `0x${randomBytes(15).toString('hex')}`;
}

// A minimal config so `openssl req` neither needs nor is changed by the system openssl.cnf.
const REQ_CONFIG = `[req]
distinguished_name = dn
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
`;

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A root CA (EC P-256, CA:TRUE, keyCertSign) made with `openssl` in `dir` or a new temp dir. */
export async function makeTestCA(dir?: string): Promise<TestCA> {
  const own = dir === undefined;
  const caDir = dir ?? (await mkdtemp(join(tmpdir(), 'lading-test-ca-')));
  const reqConfig = join(caDir, 'req.cnf');
  const certPath = join(caDir, 'ca.crt');
  const keyPath = join(caDir, 'ca.key');
  await writeFile(reqConfig, REQ_CONFIG);
  await run('openssl', [
    'req',
    '-x509',
    ...EC_KEY,
    '-keyout',
    keyPath,
    '-out',
    certPath,
    '-days',
    '30',
    '-subj',
    '/O=lading tests/CN=lading test root CA',
    '-config',
    reqConfig,
    '-extensions',
    'ca_ext',
    '-set_serial',
    serial(),
  ]);
  const certPem = await readFile(certPath, 'utf8');
  let n = 0;

  const sign = async (cn: string, ext: string[]): Promise<IssuedCert> => {
    if (!SAFE_NAME.test(cn)) throw new Error(`makeTestCA: unsupported name ${JSON.stringify(cn)}`);
    const base = join(caDir, `cert-${++n}`);
    const leafKey = `${base}.key`;
    const leafCert = `${base}.crt`;
    const csr = `${base}.csr`;
    const extFile = `${base}.ext`;
    await writeFile(extFile, `[ext]\n${ext.join('\n')}\n`);
    await run('openssl', [
      'req',
      '-new',
      ...EC_KEY,
      '-keyout',
      leafKey,
      '-out',
      csr,
      '-subj',
      `/CN=${cn.slice(0, 64)}`,
      '-config',
      reqConfig,
    ]);
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      certPath,
      '-CAkey',
      keyPath,
      '-set_serial',
      serial(),
      '-days',
      '30',
      '-sha256',
      '-extfile',
      extFile,
      '-extensions',
      'ext',
      '-out',
      leafCert,
    ]);
    await rm(csr, { force: true });
    return {
      cert: await readFile(leafCert, 'utf8'),
      key: await readFile(leafKey, 'utf8'),
      certPath: leafCert,
      keyPath: leafKey,
    };
  };

  let cleaned = false;
  return {
    dir: caDir,
    certPem,
    certPath,
    keyPath,
    issue: (names) => {
      if (names.length === 0) return Promise.reject(new Error('ca.issue: give at least one name'));
      const bad = names.find((name) => !SAFE_NAME.test(name) || name.includes(' ') || name.includes(','));
      if (bad !== undefined) return Promise.reject(new Error(`ca.issue: unsupported name ${JSON.stringify(bad)}`));
      return sign(names[0], [
        'basicConstraints = critical, CA:FALSE',
        'keyUsage = critical, digitalSignature, keyEncipherment',
        'extendedKeyUsage = serverAuth',
        `subjectAltName = ${names.map(sanName).join(', ')}`,
        'subjectKeyIdentifier = hash',
        'authorityKeyIdentifier = keyid',
      ]);
    },
    issueClient: (cn) =>
      sign(cn, [
        'basicConstraints = critical, CA:FALSE',
        'keyUsage = critical, digitalSignature',
        'extendedKeyUsage = clientAuth',
        'subjectKeyIdentifier = hash',
        'authorityKeyIdentifier = keyid',
      ]),
    cleanup: async () => {
      if (cleaned || !own) return;
      cleaned = true;
      await rm(caDir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Shared bits
// ---------------------------------------------------------------------------------------------

// tinyproxy processes (and their temp dirs) still around when the test process exits.
const running = new Map<ChildProcess, string>();
let exitHook = false;
function trackChild(child: ChildProcess, dir: string): void {
  running.set(child, dir);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const [c, d] of running) {
        c.kill('SIGKILL');
        rmSync(d, { recursive: true, force: true });
      }
    });
  }
}

/** A port free right now on 127.0.0.1 (bound with port 0, then closed: callers retry on a race). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function userinfo(user: string, password: string): string {
  return `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
}

// ---------------------------------------------------------------------------------------------
// tinyproxy (Debian package `tinyproxy`, 1.11 on Debian 12)
// ---------------------------------------------------------------------------------------------

function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/usr/sbin', '/usr/local/bin'];
  for (const d of dirs) {
    if (d === '') continue;
    try {
      accessSync(join(d, name), fsConstants.X_OK);
      return join(d, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

const tinyproxyBinary = findBinary('tinyproxy');

/** Whether the tinyproxy binary is installed (suites skip locally when not, and fail under CI). */
export const tinyproxyAvailable: boolean = tinyproxyBinary !== undefined;

/** `node:test` options for a tinyproxy test: skip locally when it is missing, run (and fail) under CI. */
export function tinyproxyGate(): { skip?: string } {
  if (tinyproxyAvailable || process.env.CI) return {};
  return { skip: 'tinyproxy is not installed (apt-get install tinyproxy)' };
}

export interface TinyproxyOptions {
  /** BasicAuth: then requests without credentials get 407 (wrong ones get 401, see pitfalls). */
  user?: string;
  password?: string;
  /** More config lines, e.g. `ConnectPort 443` (by default CONNECT reaches any port). */
  extraConfig?: string[];
  /** Milliseconds to wait for the port to accept connections. @default 10000 */
  startTimeoutMs?: number;
}

export interface Tinyproxy {
  /** `http://127.0.0.1:PORT`, without credentials. */
  url: string;
  port: number;
  /** `http://user:password@127.0.0.1:PORT` (percent-encoded) when started with a user. */
  authUrl?: string;
  /** The log file's text (Info level): what tinyproxy saw. Still readable after stop(). */
  log(): string;
  /**
   * `host:port` of every CONNECT request line in the log, in order. tinyproxy logs the request
   * line before checking credentials, so requests it then refused (407/401) are listed too.
   */
  connects(): string[];
  /** Absolute URLs of the plainly proxied (non-CONNECT) request lines in the log, same caveat. */
  requests(): string[];
  /** SIGTERM (SIGKILL after 2 s), then removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

// e.g. `CONNECT   Dec 03 13:22:07.177 [7536]: Request (file descriptor 5): CONNECT 127.0.0.1:18999 HTTP/1.1`
const REQUEST_LINE = /\]: Request \(file descriptor \d+\): (\S+) (\S+) HTTP\/\d\.\d$/;

function requestLines(log: string): { method: string; target: string }[] {
  const out: { method: string; target: string }[] = [];
  for (const line of log.split('\n')) {
    const m = REQUEST_LINE.exec(line.trimEnd());
    if (m) out.push({ method: m[1], target: m[2] });
  }
  return out;
}

const CONFIG_VALUE = /^[A-Za-z0-9._~!$&'()*+,;=:@%-]+$/;

/**
 * Runs Debian's tinyproxy in the foreground (`tinyproxy -d -c CONF`) on 127.0.0.1 and a free
 * port, allowing only 127.0.0.1 and CONNECT to any port. Rejects with its stderr if it exits
 * before the port accepts connections (retrying another port when the one chosen was taken).
 */
export async function startTinyproxy(opts: TinyproxyOptions = {}): Promise<Tinyproxy> {
  if (tinyproxyBinary === undefined) throw new Error('tinyproxy is not installed (apt-get install tinyproxy)');
  const binary = tinyproxyBinary;
  const auth = opts.user !== undefined ? { user: opts.user, password: opts.password ?? '' } : undefined;
  if (auth && (!CONFIG_VALUE.test(auth.user) || !CONFIG_VALUE.test(auth.password))) {
    throw new Error('startTinyproxy: user and password must be non-empty and hold no spaces, quotes or #');
  }
  const dir = await mkdtemp(join(tmpdir(), 'lading-tinyproxy-'));
  const logFile = join(dir, 'tinyproxy.log');
  const confFile = join(dir, 'tinyproxy.conf');
  const deadline = Date.now() + (opts.startTimeoutMs ?? 10_000);

  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const lines = [
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Timeout 60',
      'MaxClients 200',
      'LogLevel Info',
      `LogFile "${logFile}"`,
      'Allow 127.0.0.1',
      // No ConnectPort line: tinyproxy then allows CONNECT to every port.
      ...(auth ? [`BasicAuth ${auth.user} ${auth.password}`] : []),
      ...(opts.extraConfig ?? []),
    ];
    await writeFile(confFile, `${lines.join('\n')}\n`);
    const child = spawn(binary, ['-d', '-c', confFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    trackChild(child, dir);
    let output = '';
    const collect = (b: Buffer): void => {
      if (output.length < 100_000) output += b.toString();
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    let spawnError: Error | undefined;
    child.once('error', (e) => (spawnError = e));
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const gone = (): boolean => spawnError !== undefined || child.exitCode !== null || child.signalCode !== null;

    let ready = false;
    while (!gone() && Date.now() < deadline) {
      if (await tryConnect(port)) {
        // Someone listens: make sure it is this tinyproxy and not a process that took the port.
        await new Promise((r) => setTimeout(r, 20));
        ready = !gone();
        break;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    if (!ready) {
      const timedOut = !gone();
      if (timedOut) child.kill('SIGKILL');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 2000)))]);
      clearTimeout(timer);
      running.delete(child);
      if (spawnError) {
        await rm(dir, { recursive: true, force: true });
        throw new Error(`tinyproxy could not be started: ${spawnError.message}`);
      }
      // Exit status 71 + "Could not create listening sockets": the port was taken meanwhile.
      if (/listening socket/i.test(output) && attempt < 5 && Date.now() < deadline) continue;
      await rm(dir, { recursive: true, force: true });
      const what = timedOut
        ? `did not accept connections on port ${port} in time`
        : `exited early (${child.exitCode ?? child.signalCode})`;
      throw new Error(`tinyproxy ${what}: ${output.trim().slice(-2000)}`);
    }

    let finalLog: string | undefined;
    const log = (): string => {
      if (finalLog !== undefined) return finalLog;
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    };
    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> =>
      (stopping ??= (async () => {
        if (!gone()) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
          await exited;
          clearTimeout(timer);
        }
        finalLog = log();
        await rm(dir, { recursive: true, force: true });
        running.delete(child);
      })());
    const url = `http://127.0.0.1:${port}`;
    return {
      url,
      port,
      ...(auth ? { authUrl: `http://${userinfo(auth.user, auth.password)}@127.0.0.1:${port}` } : {}),
      log,
      connects: () =>
        requestLines(log())
          .filter((r) => r.method === 'CONNECT')
          .map((r) => r.target),
      requests: () =>
        requestLines(log())
          .filter((r) => r.method !== 'CONNECT')
          .map((r) => r.target),
      stop,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// A forward proxy in Node that reaches every target host on 127.0.0.1
// ---------------------------------------------------------------------------------------------

export interface TestProxyOptions {
  /** Require `Proxy-Authorization: Basic` with these; otherwise 407 + `Proxy-Authenticate: Basic realm="test"`. */
  user?: string;
  password?: string;
  /** CONNECT targets (`host:port`) to refuse with 403. */
  refuseConnect?: (target: string) => boolean;
  /**
   * TLS inspection: after `200` to a CONNECT, terminate TLS with a certificate for the requested
   * host issued by `ca` (one per host), read the HTTP/1.1 requests inside and forward each to
   * 127.0.0.1:PORT of the target: over TLS when `originTls` (trusting `originCa`, default
   * `ca.certPem`, and checking the certificate against the target host name), else plain HTTP.
   */
  mitm?: { ca: TestCA; originTls?: boolean; originCa?: string };
}

export interface ConnectRecord {
  /** The CONNECT request target, `host:port`. */
  target: string;
  /** `user:password` decoded from a Basic Proxy-Authorization header (the raw value if not Basic). */
  auth?: string;
  /** What the proxy answered: 200, 400, 403, 407 or 502 (0 while still deciding). */
  status: number;
  /** With mitm: the SNI server name the client sent, once the TLS handshake is done. */
  servername?: string;
}

export interface RequestRecord {
  method: string;
  /** Absolute URL: as sent for plain proxying; `https://TARGET/path` for requests decrypted by mitm. */
  url: string;
  auth?: string;
  /** The status passed back to the client (the origin's, or 407 / 400 / 502 from the proxy; 0 while pending). */
  status: number;
  /** The request headers as the client sent them to the proxy (hop-by-hop ones included). */
  headers: IncomingHttpHeaders;
}

export interface TestProxy {
  /** `http://127.0.0.1:PORT`, without credentials. */
  url: string;
  port: number;
  /** `http://user:password@127.0.0.1:PORT` (percent-encoded) when started with a user. */
  authUrl?: string;
  /** Every CONNECT, in arrival order. */
  connects: ConnectRecord[];
  /** Every plainly proxied request and (with mitm) every decrypted request, in arrival order. */
  requests: RequestRecord[];
  /** With mitm: the number of completed TLS handshakes with clients. */
  tlsSessions(): number;
  /** Closes the listener and destroys every open socket (clients, tunnels, origin connections). */
  stop(): Promise<void>;
}

const HOP_BY_HOP = new Set([
  'connection',
  'proxy-connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** The headers minus hop-by-hop ones (and those the Connection header names). */
function endToEnd(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter((s) => s !== ''),
  );
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name) && !named.has(name)) out[name] = value;
  }
  return out;
}

function decodeAuth(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  return m ? Buffer.from(m[1], 'base64').toString('utf8') : header;
}

/** `host:port` or `[v6]:port` -> parts; undefined when malformed. */
function splitTarget(target: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]/@]+)):(\d{1,5})$/.exec(target);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1] ?? m[2], port };
}

interface Origin {
  tls: boolean;
  host: string;
  port: number;
}

/** A forward proxy for tests; see TestProxyOptions and the module comment. */
export async function startTestProxy(opts: TestProxyOptions = {}): Promise<TestProxy> {
  const connects: ConnectRecord[] = [];
  const requests: RequestRecord[] = [];
  const sockets = new Set<Duplex>();
  const track = (s: Duplex): void => {
    if (sockets.has(s)) return;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    // After CONNECT node's server drops its own error handler: never let a reset crash the test.
    s.on('error', () => s.destroy());
  };
  const expected = opts.user !== undefined ? `${opts.user}:${opts.password ?? ''}` : undefined;
  const authorized = (header: string | undefined): boolean =>
    expected === undefined || (header !== undefined && /^Basic\s/i.test(header) && decodeAuth(header) === expected);
  // One origin connection per request: no stale keep-alive socket can turn into a spurious 502.
  const httpAgent = new HttpAgent({ keepAlive: false });
  const httpsAgent = new HttpsAgent({ keepAlive: false });
  const originCa = opts.mitm?.originCa ?? opts.mitm?.ca.certPem;
  let sessions = 0;
  let stopped = false;

  /** Streams req to origin (always on 127.0.0.1) and the answer back; `path` as the client wrote it. */
  const forward = (req: IncomingMessage, res: ServerResponse, origin: Origin, url: string, path: string): void => {
    const record: RequestRecord = {
      method: req.method ?? 'GET',
      url,
      ...(req.headers['proxy-authorization'] !== undefined
        ? { auth: decodeAuth(req.headers['proxy-authorization']) }
        : {}),
      status: 0,
      headers: req.headers,
    };
    requests.push(record);
    const common = {
      host: '127.0.0.1',
      port: origin.port,
      method: record.method,
      path,
      headers: endToEnd(req.headers),
    };
    const upstream = origin.tls
      ? httpsRequest({
          ...common,
          agent: httpsAgent,
          ca: originCa,
          // SNI and the certificate check use the host name the client asked for, not 127.0.0.1.
          ...(isIP(origin.host) === 0 ? { servername: origin.host } : {}),
          checkServerIdentity: (_host, cert) => checkServerIdentity(origin.host, cert),
        })
      : httpRequest({ ...common, agent: httpAgent });
    upstream.on('socket', (s) => track(s));
    upstream.once('response', (ures) => {
      record.status = ures.statusCode ?? 502;
      res.writeHead(record.status, ures.statusMessage, endToEnd(ures.headers));
      ures.pipe(res);
    });
    upstream.once('error', (err) => {
      if (!res.headersSent) {
        record.status = 502;
        res.writeHead(502, { 'content-type': 'text/plain', connection: 'close' }).end(`test proxy: ${err.message}\n`);
      } else {
        res.destroy(err);
      }
    });
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  };

  // Plain proxying: absolute-form request targets.
  const server = createHttpServer({ requestTimeout: 0 }, (req, res) => {
    const url = req.url ?? '';
    const auth = decodeAuth(req.headers['proxy-authorization']);
    if (!authorized(req.headers['proxy-authorization'])) {
      requests.push({
        method: req.method ?? 'GET',
        url,
        ...(auth !== undefined ? { auth } : {}),
        status: 407,
        headers: req.headers,
      });
      req.resume();
      res
        .writeHead(407, { 'proxy-authenticate': 'Basic realm="test"', 'content-length': '0', connection: 'close' })
        .end();
      return;
    }
    // Absolute form: http://HOST[:PORT][PATH]; the path is forwarded exactly as written.
    const m = /^http:\/\/([^/?#\s]+)(.*)$/i.exec(url);
    const hostPort = m ? /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]/@]+))(?::(\d{1,5}))?$/.exec(m[1]) : null;
    if (m === null || hostPort === null) {
      requests.push({
        method: req.method ?? 'GET',
        url,
        ...(auth !== undefined ? { auth } : {}),
        status: 400,
        headers: req.headers,
      });
      req.resume();
      res
        .writeHead(400, { 'content-type': 'text/plain', connection: 'close' })
        .end('test proxy: expected an absolute http:// URL\n');
      return;
    }
    const path = m[2] === '' ? '/' : m[2].startsWith('/') ? m[2] : `/${m[2]}`;
    forward(req, res, { tls: false, host: hostPort[1] ?? hostPort[2], port: Number(hostPort[3] ?? 80) }, url, path);
  });
  server.on('connection', (s: Socket) => track(s));
  server.on('clientError', (_err, s) => s.destroy());

  // TLS inspection: decrypted sockets are handed to this server, which never listens itself.
  const tunnels = new WeakMap<object, { target: string; host: string; port: number }>();
  const inner = createHttpServer({ requestTimeout: 0 }, (req, res) => {
    const t = tunnels.get(req.socket);
    if (t === undefined) {
      res.writeHead(500).end();
      return;
    }
    const path = req.url ?? '/';
    forward(
      req,
      res,
      { tls: opts.mitm?.originTls === true, host: t.host, port: t.port },
      `https://${t.target}${path}`,
      path,
    );
  });
  inner.on('clientError', (_err, s) => s.destroy());
  const contexts = new Map<string, Promise<SecureContext>>();
  const contextFor = (host: string): Promise<SecureContext> => {
    const ca = opts.mitm?.ca;
    if (ca === undefined) return Promise.reject(new Error('no mitm CA'));
    let ctx = contexts.get(host);
    if (ctx === undefined) {
      ctx = ca.issue([host]).then((c) => createSecureContext({ cert: c.cert, key: c.key }));
      contexts.set(host, ctx);
    }
    return ctx;
  };

  const answer = (socket: Duplex, status: number, reason: string, extra = ''): void => {
    socket.end(`HTTP/1.1 ${status} ${reason}\r\n${extra}Content-Length: 0\r\nConnection: close\r\n\r\n`);
  };

  server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const target = req.url ?? '';
    const auth = decodeAuth(req.headers['proxy-authorization']);
    const record: ConnectRecord = { target, ...(auth !== undefined ? { auth } : {}), status: 0 };
    connects.push(record);
    if (!authorized(req.headers['proxy-authorization'])) {
      record.status = 407;
      answer(socket, 407, 'Proxy Authentication Required', 'Proxy-Authenticate: Basic realm="test"\r\n');
      return;
    }
    const parts = splitTarget(target);
    if (parts === undefined) {
      record.status = 400;
      answer(socket, 400, 'Bad Request');
      return;
    }
    if (opts.refuseConnect?.(target) === true) {
      record.status = 403;
      answer(socket, 403, 'Forbidden');
      return;
    }
    if (opts.mitm !== undefined) {
      contextFor(parts.host).then(
        (secureContext) => {
          if (stopped || socket.destroyed) return;
          record.status = 200;
          socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
          if (head.length > 0) socket.unshift(head);
          const tlsSocket = new TLSSocket(socket as Socket, {
            isServer: true,
            secureContext,
            ALPNProtocols: ['http/1.1'],
          });
          track(tlsSocket);
          tlsSocket.once('secure', () => {
            sessions++;
            const sni = (tlsSocket as TLSSocket & { servername?: string | false }).servername;
            if (typeof sni === 'string') record.servername = sni;
          });
          tunnels.set(tlsSocket, { target, ...parts });
          inner.emit('connection', tlsSocket);
        },
        () => {
          record.status = 502;
          answer(socket, 502, 'Bad Gateway');
        },
      );
      return;
    }
    const upstream = netConnect(parts.port, '127.0.0.1');
    track(upstream);
    upstream.once('connect', () => {
      record.status = 200;
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    upstream.once('error', () => {
      if (record.status === 0) {
        record.status = 502;
        answer(socket, 502, 'Bad Gateway');
      } else {
        socket.destroy();
      }
    });
    socket.once('close', () => upstream.destroy());
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      stopped = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      httpAgent.destroy();
      httpsAgent.destroy();
      await closed;
    })());

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    ...(opts.user !== undefined
      ? { authUrl: `http://${userinfo(opts.user, opts.password ?? '')}@127.0.0.1:${port}` }
      : {}),
    connects,
    requests,
    tlsSessions: () => sessions,
    stop,
  };
}
