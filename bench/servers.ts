/**
 * The servers pushed to: the CNCF distribution registry (`/usr/bin/docker-registry`,
 * filesystem storage, plain http or TLS) and `lading serve` (the local ECR-compatible
 * endpoint), and the proxy pushed through (Debian's tinyproxy). All run as children on
 * 127.0.0.1 and are stopped by their own pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { BenchError } from './measure';

export const REGISTRY_BINARY = '/usr/bin/docker-registry';
/** Found on PATH (Debian puts it in /usr/bin). */
export const TINYPROXY_BINARY = 'tinyproxy';

export interface Server {
  url: string;
  host: string;
  pid: number;
  /** Where it stores what is pushed. */
  dir: string;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

function freePort(): Promise<number> {
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

function probe(url: string, ca?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const done = (res: IncomingMessage): void => {
      res.resume();
      resolve(res.statusCode ?? 0);
    };
    // Over TLS the probe trusts only the bench's CA: a registry serving the wrong certificate
    // fails here, before any push is measured.
    const req =
      ca !== undefined
        ? httpsGet(`${url}/v2/`, { timeout: 1000, ca }, done)
        : get(`${url}/v2/`, { timeout: 1000 }, done);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    live.delete(child);
    return;
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
  live.delete(child);
}

/** PEM files of a TLS registry: its certificate and key, and the CA that issued it (for the probe). */
export interface RegistryTls {
  certificate: string;
  key: string;
  caPem: string;
}

/**
 * A fresh registry with its storage in a new folder `dir` (removed by stop()); with `tls`,
 * it serves https with that certificate (`url` is then https://).
 */
export async function startRegistry(dir: string, tls?: RegistryTls): Promise<Server> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const config = join(dir, 'config.yml');
  writeFileSync(
    config,
    [
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
      '  secret: lading-bench-secret',
      ...(tls
        ? ['  tls:', `    certificate: ${JSON.stringify(tls.certificate)}`, `    key: ${JSON.stringify(tls.key)}`]
        : []),
      '',
    ].join('\n'),
  );
  const child = spawn(REGISTRY_BINARY, ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(child);
  let err = '';
  child.stderr!.on('data', (b: Buffer) => {
    if (err.length < 100_000) err += b.toString();
  });
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new BenchError(`docker-registry exited early: ${err.slice(-2000)}`);
    }
    try {
      if ((await probe(url, tls?.caPem)) === 200) break;
    } catch {
      // not yet listening
    }
    if (Date.now() > deadline) {
      await stop();
      throw new BenchError(`docker-registry did not answer ${url}/v2/ within 15 s: ${err.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url, host: `127.0.0.1:${port}`, pid: child.pid!, dir, stop };
}

/**
 * `lading serve --port 0 --data DIR` from the built CLI, accepting its default credentials
 * (LADING_SERVE_* of the environment left out); DIR is made fresh and removed by stop().
 */
export async function startServe(cli: string, dir: string): Promise<Server> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const child = spawn(process.execPath, [cli, 'serve', '--port', '0', '--data', dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LADING_SERVE_ACCESS_KEY_ID: undefined, LADING_SERVE_SECRET_ACCESS_KEY: undefined },
  });
  live.add(child);
  let err = '';
  child.stderr!.on('data', (b: Buffer) => {
    if (err.length < 100_000) err += b.toString();
  });
  const stop = async (): Promise<void> => {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(
        () => reject(new BenchError(`lading serve did not print its address within 15 s: ${err.slice(-2000)}`)),
        15_000,
      );
      child.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)\s*$/m.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new BenchError(`lading serve exited (${code}) before listening: ${err.slice(-2000)}`));
      });
    });
    child.stdout!.resume();
    return { url, host: new URL(url).host, pid: child.pid!, dir, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

export interface Proxy extends Server {
  /** Its log (LogLevel Warning: errors such as reset connections), read now. */
  log(): string;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Debian's tinyproxy (`tinyproxy -d -c CONF`, in the foreground) on 127.0.0.1 and a free
 * port, config and log in a new folder `dir` (removed by stop()). It accepts clients from
 * 127.0.0.1 only; without a ConnectPort line it allows CONNECT to every port, which the
 * registries' random ports need. `url` is `http://127.0.0.1:PORT`, what HTTPS_PROXY takes.
 */
export async function startTinyproxy(dir: string): Promise<Proxy> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const config = join(dir, 'tinyproxy.conf');
  const logFile = join(dir, 'tinyproxy.log');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Allow 127.0.0.1',
      // A tunnel idles while lading compresses the next layer: do not let tinyproxy cut it.
      'Timeout 600',
      'MaxClients 100',
      // Failures only, no line per request: what is measured is the relaying, not the logging.
      'LogLevel Warning',
      `LogFile ${JSON.stringify(logFile)}`,
      '',
    ].join('\n'),
  );
  const child = spawn(TINYPROXY_BINARY, ['-d', '-c', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(child);
  let err = '';
  child.stderr!.on('data', (b: Buffer) => {
    if (err.length < 100_000) err += b.toString();
  });
  const log = (): string => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  const stop = async (): Promise<void> => {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 15_000;
  while (!(await accepts(port))) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new BenchError(`tinyproxy exited early: ${err.slice(-2000)}${log().slice(-2000)}`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new BenchError(
        `tinyproxy did not accept connections on 127.0.0.1:${port} within 15 s: ${err.slice(-2000)}${log().slice(-2000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  // Someone listens on the port: make sure it is this tinyproxy, not a process that took the port.
  await new Promise((r) => setTimeout(r, 50));
  if (child.exitCode !== null || child.signalCode !== null) {
    await stop();
    throw new BenchError(`tinyproxy exited after starting: ${err.slice(-2000)}${log().slice(-2000)}`);
  }
  return { url: `http://127.0.0.1:${port}`, host: `127.0.0.1:${port}`, pid: child.pid!, dir, stop, log };
}
