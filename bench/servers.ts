/**
 * The servers pushed to: the CNCF distribution registry (`/usr/bin/docker-registry`,
 * filesystem storage) and `lading serve` (the local ECR-compatible endpoint). Both run
 * as children on 127.0.0.1 and are stopped by their own pid.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { BenchError } from './measure';

export const REGISTRY_BINARY = '/usr/bin/docker-registry';

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

function probe(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = get(`${url}/v2/`, { timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
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

/** A fresh registry with its storage in a new folder `dir` (removed by stop()). */
export async function startRegistry(dir: string): Promise<Server> {
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
      '',
    ].join('\n'),
  );
  const child = spawn(REGISTRY_BINARY, ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(child);
  let err = '';
  child.stderr!.on('data', (b: Buffer) => {
    if (err.length < 100_000) err += b.toString();
  });
  const url = `http://127.0.0.1:${port}`;
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
      if ((await probe(url)) === 200) break;
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

/** `lading serve --port 0 --data DIR` from the built CLI; DIR is made fresh and removed by stop(). */
export async function startServe(cli: string, dir: string): Promise<Server> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const child = spawn(process.execPath, [cli, 'serve', '--port', '0', '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
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
      const timer = setTimeout(() => reject(new BenchError(`lading serve did not print its address within 15 s: ${err.slice(-2000)}`)), 15_000);
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
