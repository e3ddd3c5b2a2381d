/**
 * The rig shared by the bundled-handler and IAM-calls tests: s3rver behind a recording
 * proxy (every request, method, path, Range, status), a recording proxy for any HTTP
 * endpoint (request bodies kept: ECR's JSON API names the repository in them), CloudFormation's
 * response receiver (method, headers and raw body of each answer), and official Node.js
 * binaries of a given major version from the npm registry's `node` package (via npx).
 * No side effects at import.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const S3rver = require('s3rver') as new (opts: Record<string, unknown>) => S3rverInstance;

export interface Recorded {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  /** The request body (the JSON of an ECR call). */
  body: Buffer;
  status: number;
  /** Response body bytes passed back. */
  bytes: number;
}

export interface RecordingProxy {
  url: string;
  port: number;
  log: Recorded[];
  stop(): Promise<void>;
}

/** A plain HTTP proxy (reverse: it forwards every request to 127.0.0.1:target) that records each exchange. */
export async function recordingProxy(target: number): Promise<RecordingProxy> {
  const log: Recorded[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const up = request(
        { host: '127.0.0.1', port: target, method: req.method, path: req.url, headers: req.headers },
        (ur) => {
          const entry: Recorded = {
            method: req.method!,
            url: req.url!,
            headers: req.headers,
            body,
            status: ur.statusCode!,
            bytes: 0,
          };
          log.push(entry);
          res.writeHead(ur.statusCode!, ur.headers);
          ur.on('data', (c: Buffer) => (entry.bytes += c.length));
          ur.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    log,
    stop: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

export interface S3Rig {
  bucket: string;
  /** s3rver itself (the test stages objects there directly, unrecorded). */
  directUrl: string;
  /** The recording proxy in front of it: what the handler is pointed at. */
  proxy: RecordingProxy;
  put(key: string, body: Buffer): Promise<void>;
  stop(): Promise<void>;
}

/** s3rver on 127.0.0.1 with one bucket, and a recording proxy in front of it. */
export async function startS3(bucket: string): Promise<S3Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'lading-bundled-s3rver-'));
  const s3rver = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  const addr = await s3rver.run();
  const proxy = await recordingProxy(addr.port);
  const directUrl = `http://127.0.0.1:${addr.port}`;
  const s3 = new S3Client({
    endpoint: directUrl,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    maxAttempts: 2,
  });
  return {
    bucket,
    directUrl,
    proxy,
    put: async (key, body) => {
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    },
    stop: async () => {
      s3.destroy();
      await proxy.stop();
      await s3rver.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Answer {
  method: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface ResponseReceiver {
  /** The pre-signed response URL CloudFormation would give. */
  url: string;
  received: Answer[];
  stop(): Promise<void>;
}

/** CloudFormation's side: records every request made to the pre-signed response URL, whatever its method. */
export async function responseReceiver(): Promise<ResponseReceiver> {
  const received: Answer[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks) });
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/cfn-response?X-Amz-Signature=x`,
    received,
    stop: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

export type NodeBinary = { ok: true; path: string; version: string; resolveMs: number } | { ok: false; error: string };

const nodeBinaries = new Map<number, Promise<NodeBinary>>();

/** npm's settings that say where and how to fetch packages: kept when a test runs under `npm test`. */
const NPM_FETCH_SETTINGS = new Set([
  'registry',
  'proxy',
  'https_proxy',
  'http_proxy',
  'noproxy',
  'no_proxy',
  'cafile',
  'ca',
  'strict_ssl',
  'cache',
  'userconfig',
  'globalconfig',
  'offline',
  'prefer_offline',
]);

/**
 * This environment without what `npm test` (or `npm exec -c`) exports for its script: npx reads
 * lower-case npm_config_* as its own options (an inherited npm_config_call makes it fail), so only
 * the fetch settings stay.
 */
function npxEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => !k.startsWith('npm_') || NPM_FETCH_SETTINGS.has(k.slice('npm_config_'.length)),
    ),
  );
}

/**
 * An official Node.js binary of major version `major`: `npx -y -p node@MAJOR node` (the npm
 * registry's `node` package; the first call downloads it, ~12 s here, later calls find it in
 * npx's cache in ~1.5 s). Resolved once per process; the path is then run directly.
 */
export function nodeBinary(major: number): Promise<NodeBinary> {
  let p = nodeBinaries.get(major);
  if (!p) {
    p = new Promise<NodeBinary>((resolve) => {
      const t0 = Date.now();
      // A scratch cwd: npx must not see this project's package.json or node_modules.
      const cwd = mkdtempSync(join(tmpdir(), 'lading-npx-node-'));
      execFile(
        'npx',
        [
          '-y',
          '-p',
          `node@${major}`,
          'node',
          '-e',
          'process.stdout.write(JSON.stringify({ path: process.execPath, version: process.version }))',
        ],
        { cwd, env: npxEnv(), timeout: 300_000, maxBuffer: 1 << 20, encoding: 'utf8' },
        (err, stdout, stderr) => {
          rmSync(cwd, { recursive: true, force: true });
          if (err)
            return resolve({
              ok: false,
              error: `npx -p node@${major} failed (${err.message.split('\n')[0]}): ${stderr.trim().split('\n').slice(-3).join(' / ')}`,
            });
          try {
            const out = JSON.parse(stdout.trim().split('\n').pop() ?? '') as { path: string; version: string };
            if (!out.version.startsWith(`v${major}.`))
              return resolve({ ok: false, error: `npx -p node@${major} ran Node ${out.version}` });
            resolve({ ok: true, path: out.path, version: out.version, resolveMs: Date.now() - t0 });
          } catch {
            resolve({
              ok: false,
              error: `npx -p node@${major}: unexpected output ${JSON.stringify(stdout)} ${stderr}`,
            });
          }
        },
      );
    });
    nodeBinaries.set(major, p);
  }
  return p;
}

/** `nodejs22.x` -> 22. */
export function runtimeMajor(runtime: string): number {
  const m = /^nodejs(\d+)\.x$/.exec(runtime);
  if (!m) throw new Error(`not a Lambda Node.js runtime: ${runtime}`);
  return Number(m[1]);
}
