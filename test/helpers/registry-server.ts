/**
 * Starts a real CNCF distribution registry (`/usr/bin/docker-registry`, Debian package
 * `docker-registry`) for tests: 127.0.0.1, a free port, filesystem storage in a temp dir.
 *
 * ```ts
 * const reg = await startRegistry();                 // anonymous
 * const reg = await startRegistry({ htpasswd: { alice: 'secret' } });
 * const reg = await startRegistry({ token: { realm, service, issuer, rootCertBundle: certPem } });
 * // reg.host === '127.0.0.1:PORT'; plain HTTP
 * after(() => reg.stop());                           // kills it and removes the temp dir
 * ```
 * Registries still running when the process exits are killed and their directories
 * removed, so a crashed test leaves nothing behind.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashSync } from 'bcryptjs';

export const REGISTRY_BINARY = '/usr/bin/docker-registry';

/** False when the binary is missing: suites use it in `skip` to say why they did not run. */
export const registryAvailable: boolean = existsSync(REGISTRY_BINARY);

export interface TokenAuthConfig {
  /** The token endpoint URL the registry sends clients to. */
  realm: string;
  /** The `service` (and the JWT audience). */
  service: string;
  /** The JWT issuer the registry trusts. */
  issuer: string;
  /** PEM of the certificate(s) that sign tokens. */
  rootCertBundle: string;
}

export interface RegistryServerOptions {
  /** Basic auth: user -> plain password (hashed with bcrypt here). */
  htpasswd?: Record<string, string>;
  /** Bearer token auth (see test/registry/token-server.ts for a matching token server). */
  token?: TokenAuthConfig;
  /**
   * Serve HTTPS with a self-signed certificate for 127.0.0.1 made here with the `openssl`
   * CLI (clients then need `insecure`, and `plainHttp: false` since 127.0.0.1 defaults to HTTP).
   */
  tls?: boolean | RegistryTls;
  /** Milliseconds to wait for `/v2/` to answer. @default 15000 */
  startTimeoutMs?: number;
}

/** HTTPS with a given certificate (e.g. from a test CA), optionally requiring client certificates. */
export interface RegistryTls {
  certPath: string;
  keyPath: string;
  /** PEM file of the CAs whose client certificates the registry accepts: mutual TLS. */
  clientCAPath?: string;
}

export interface RegistryServer {
  /** `127.0.0.1:PORT`, what a RegistryClient or skopeo is given. */
  host: string;
  port: number;
  /** `http://127.0.0.1:PORT` (`https://` with `tls`). */
  url: string;
  /** The storage root, for tests that inspect or corrupt what was stored. */
  storageDir: string;
  /** Stops the registry (SIGTERM, then SIGKILL) and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
}

const running = new Set<{ child: ChildProcess; dir: string }>();
process.on('exit', () => {
  for (const r of running) {
    r.child.kill('SIGKILL');
    rmSync(r.dir, { recursive: true, force: true });
  }
});

/** A port free right now on 127.0.0.1 (the OS picks it; the tiny race is acceptable in tests). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function configYaml(dir: string, port: number, options: RegistryServerOptions): string {
  const lines = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(join(dir, 'storage'))}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    '  secret: lading-test-secret',
  ];
  if (options.tls === true) {
    const cert = join(dir, 'tls-cert.pem');
    const key = join(dir, 'tls-key.pem');
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'ignore' },
    );
    lines.push('  tls:', `    certificate: ${JSON.stringify(cert)}`, `    key: ${JSON.stringify(key)}`);
  } else if (typeof options.tls === 'object') {
    lines.push(
      '  tls:',
      `    certificate: ${JSON.stringify(options.tls.certPath)}`,
      `    key: ${JSON.stringify(options.tls.keyPath)}`,
    );
    if (options.tls.clientCAPath !== undefined)
      lines.push('    clientcas:', `      - ${JSON.stringify(options.tls.clientCAPath)}`);
  }
  if (options.htpasswd !== undefined) {
    const file = join(dir, 'htpasswd');
    // Cost 4: the registry checks the hash on every request; real cost would slow the suite.
    const entries = Object.entries(options.htpasswd).map(([u, p]) => `${u}:${hashSync(p, 4)}`);
    writeFileSync(file, `${entries.join('\n')}\n`);
    lines.push('auth:', '  htpasswd:', '    realm: lading-test', `    path: ${JSON.stringify(file)}`);
  } else if (options.token !== undefined) {
    const bundle = join(dir, 'token-roots.pem');
    writeFileSync(bundle, options.token.rootCertBundle);
    lines.push(
      'auth:',
      '  token:',
      `    realm: ${JSON.stringify(options.token.realm)}`,
      `    service: ${JSON.stringify(options.token.service)}`,
      `    issuer: ${JSON.stringify(options.token.issuer)}`,
      `    rootcertbundle: ${JSON.stringify(bundle)}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** One GET /v2/ with node:http(s), so a self-signed certificate can be accepted. */
function probe(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? httpsGet : httpGet;
    const req = get(`${url}/v2/`, { rejectUnauthorized: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function waitReady(
  url: string,
  child: ChildProcess,
  stderr: () => string,
  timeoutMs: number,
  mutualTls: boolean,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`docker-registry exited early (${child.exitCode ?? child.signalCode}): ${stderr().slice(-2000)}`);
    }
    try {
      const status = await probe(url);
      if (status === 200 || status === 401) return;
    } catch (e) {
      // Not listening yet; with mutual TLS, a refused handshake means it is up.
      if (mutualTls && (e as { code?: string }).code !== 'ECONNREFUSED') return;
    }
    if (Date.now() > deadline)
      throw new Error(`docker-registry did not answer ${url}/v2/ within ${timeoutMs} ms: ${stderr().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts a registry; see the module comment. Rejects if it does not come up. */
export async function startRegistry(options: RegistryServerOptions = {}): Promise<RegistryServer> {
  const dir = mkdtempSync(join(tmpdir(), 'lading-registry-'));
  const port = await freePort();
  const config = join(dir, 'config.yml');
  writeFileSync(config, configYaml(dir, port, options));
  const child = spawn(REGISTRY_BINARY, ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  const entry = { child, dir };
  running.add(entry);
  let err = '';
  child.stderr?.on('data', (b: Buffer) => {
    if (err.length < 100_000) err += b.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    running.delete(entry);
    rmSync(dir, { recursive: true, force: true });
  };
  const url = `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  try {
    await waitReady(
      url,
      child,
      () => err,
      options.startTimeoutMs ?? 15_000,
      typeof options.tls === 'object' && options.tls.clientCAPath !== undefined,
    );
  } catch (e) {
    await stop();
    throw e;
  }
  return { host: `127.0.0.1:${port}`, port, url, storageDir: join(dir, 'storage'), stop };
}
