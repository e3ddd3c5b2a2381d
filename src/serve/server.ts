/**
 * `lading serve`: a local endpoint that speaks ECR's JSON API (POST /) and its registry
 * API (/v2/) over one Node `http.Server` on 127.0.0.1, storing each repository as an OCI
 * image layout under `dataDir`. Built for tests (fault injection, call counters) and for
 * offline pipelines.
 *
 * ```ts
 * import { startServer, DEFAULT_CREDENTIALS } from 'lading/serve';
 * const srv = await startServer({ dataDir });
 * const ecr = new ECRClient({ endpoint: srv.url, region: 'us-east-1', credentials: { ...DEFAULT_CREDENTIALS } });
 * ...
 * assert.equal(srv.calls.InitiateLayerUpload ?? 0, 0);
 * await srv.close();
 * ```
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { LadingError } from '../errors';
import { TokenStore } from './auth';
import { ecrOperation, handleEcr, sendEcrError, type ServeState } from './ecr-api';
import { ApiError } from './errors';
import { FaultInjector, type FaultRule } from './faults';
import { reply, sleep, type Exchange } from './http';
import { ociError, RegistryApi, registryRoute } from './registry-api';
import { DEFAULT_CREDENTIALS, type SecretLookup, type ServeCredentials } from './sigv4';
import { Mutex, Storage } from './storage';
import { Uploads } from './uploads';

export interface ServeOptions {
  /** Where repositories are stored (created if missing; repositories already there are served). */
  dataDir: string;
  /** 0 (the default) picks a free port. The server listens on 127.0.0.1 only. */
  port?: number;
  /** Faults to inject (more can be added later through `server.faults`). */
  faults?: FaultRule[];
  /** One line per request and per notable event (never a password). */
  logger?: (line: string) => void;
  /** The account id (registryId) the emulator answers as. @default '000000000000' */
  registryId?: string;
  /** Region in ARNs. @default the region of the request's SigV4 credential scope, else us-east-1 */
  region?: string;
  /**
   * The AWS credentials whose SigV4 signatures the ECR API accepts: key pairs, or a function
   * giving the secret of an access key id (undefined: unknown key), e.g. to accept the
   * temporary keys a test STS hands out. Session tokens are not checked.
   * @default [DEFAULT_CREDENTIALS]: access key id `lading`, secret `lading-secret`
   */
  credentials?: readonly ServeCredentials[] | SecretLookup;
  /**
   * Verify the AWS Signature Version 4 of every ECR API request, as ECR does: unsigned requests,
   * unknown keys, bad signatures and requests dated more than 15 minutes away get 403.
   * `false` accepts anything, unsigned requests included. @default true
   */
  verifySignatures?: boolean;
  /** Lifetime of GetAuthorizationToken passwords. @default 12 hours */
  tokenTtlMs?: number;
  /** Upload sessions idle longer than this are dropped. @default 1 hour */
  uploadTtlMs?: number;
  /** Honour cross-repository mounts on /v2/ (ECR's opt-in BLOB_MOUNTING). @default false */
  blobMounting?: boolean;
  /** A registry-API push to a missing repository: 404 NAME_UNKNOWN, or a closed connection as ECR does. @default 'not-found' */
  missingRepository?: 'not-found' | 'close';
}

export interface LadingServer {
  /** `http://127.0.0.1:PORT`: the ECR endpoint URL and the registry's base URL. */
  url: string;
  /** `127.0.0.1:PORT`: the registry host (skopeo `docker://HOST/repo:tag`). */
  host: string;
  port: number;
  dataDir: string;
  registryId: string;
  /** Whether ECR API signatures are verified (`ServeOptions.verifySignatures`). */
  verifySignatures: boolean;
  /**
   * Calls received, by name: ECR operations (`UploadLayerPart`) and registry calls
   * (`GET /v2/`, `HEAD blob`, `POST upload`, `PATCH upload`, `PUT upload`, `PUT manifest`...).
   * Faulted calls count too.
   */
  calls: Record<string, number>;
  resetCalls(): void;
  faults: FaultInjector;
  /** What GetAuthorizationToken would give: Basic credentials for /v2/. */
  issueToken(): { username: string; password: string; expiresAt: Date };
  /** Open upload sessions. */
  readonly openUploads: number;
  /** Stops listening, drops connections and upload sessions. The data directory stays. */
  close(): Promise<void>;
}

export async function startServer(opts: ServeOptions): Promise<LadingServer> {
  const log = opts.logger ?? (() => undefined);
  const registryId = opts.registryId ?? '000000000000';
  if (!/^[0-9]{12}$/.test(registryId))
    throw new LadingError('USAGE', `registryId must be 12 digits, got ${JSON.stringify(registryId)}`);
  const faults = new FaultInjector(opts.faults ?? []);
  const verifySignatures = opts.verifySignatures ?? true;
  const secretOf = verifySignatures ? secretLookup(opts.credentials ?? [DEFAULT_CREDENTIALS]) : undefined;
  const storage = await Storage.open(opts.dataDir, log);
  const uploads = new Uploads(storage.scratchDir, opts.uploadTtlMs ?? 3600_000);
  const tokens = new TokenStore(opts.tokenTtlMs ?? 12 * 3600_000);
  const calls: Record<string, number> = {};
  let host = '127.0.0.1:0';
  const state: ServeState = {
    storage,
    uploads,
    tokens,
    registryId,
    region: opts.region,
    secretOf,
    host: () => host,
    reposLock: new Mutex(),
    log,
  };
  const registry = new RegistryApi(state, {
    blobMounting: opts.blobMounting ?? false,
    missingRepository: opts.missingRepository ?? 'not-found',
  });

  const onRequest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const started = Date.now();
    const method = req.method ?? 'GET';
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const isRegistry = url.pathname === '/v2' || url.pathname.startsWith('/v2/');
    const route = isRegistry ? registryRoute(method, url.pathname) : undefined;
    const isEcr = !isRegistry && method === 'POST' && url.pathname === '/';
    const op = route
      ? route.key
      : isEcr
        ? (ecrOperation(req.headers['x-amz-target']) ?? 'ECR unknown operation')
        : `${method} other`;
    calls[op] = (calls[op] ?? 0) + 1;
    const x: Exchange = { req, res, url, op, dropResponse: false };
    const done = (): void =>
      log(
        `${method} ${url.pathname}${isEcr ? ` ${op}` : ''} -> ${x.status === undefined ? 'connection dropped' : x.status} (${Date.now() - started} ms)`,
      );
    res.once('close', done);
    if (!route && !isEcr) {
      req.resume();
      reply(
        x,
        404,
        { 'content-type': 'application/json' },
        JSON.stringify({
          message: `lading serve: no such endpoint ${method} ${url.pathname} (ECR API: POST /; registry API: /v2/)`,
        }),
      );
      return;
    }
    const fault = faults.check(op);
    if (fault) {
      log(`fault: ${fault.kind} on ${op}`);
      switch (fault.kind) {
        case 'drop-connection':
          req.socket.destroy();
          return;
        case 'drop-response':
          x.dropResponse = true;
          break;
        case 'slow': {
          const ac = new AbortController();
          const onClose = (): void => ac.abort();
          req.socket.once('close', onClose);
          await sleep(fault.delayMs ?? 2000, ac.signal);
          req.socket.off('close', onClose);
          if (req.socket.destroyed) return;
          break;
        }
        default: {
          req.resume();
          const message = fault.message ?? `injected ${fault.kind} fault`;
          if (isEcr) {
            const e =
              fault.kind === 'throttle'
                ? new ApiError('ThrottlingException', fault.message ?? 'Rate exceeded')
                : fault.kind === 'server-error'
                  ? new ApiError('ServerException', message, 500)
                  : new ApiError(fault.error!, message, fault.status ?? 400);
            sendEcrError(x, e);
          } else if (fault.kind === 'throttle')
            ociError(x, 429, 'TOOMANYREQUESTS', fault.message ?? 'Rate exceeded', undefined, { 'retry-after': '1' });
          else if (fault.kind === 'server-error') ociError(x, 500, 'UNKNOWN', message);
          else ociError(x, fault.status ?? 400, fault.error!, message);
          return;
        }
      }
    }
    if (route) await registry.handle(x, route);
    else await handleEcr(state, x);
  };

  const server = createServer((req, res) => {
    onRequest(req, res).catch((e: unknown) => {
      log(`internal error: ${(e as Error).stack ?? String(e)}`);
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ message: 'internal error' }));
      } else res.destroy();
    });
  });
  server.keepAliveTimeout = 5000;

  try {
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException): void => {
        reject(
          new LadingError(
            e.code === 'EADDRINUSE' ? 'USAGE' : 'IO',
            `cannot listen on 127.0.0.1:${opts.port ?? 0}: ${e.message}`,
            { cause: e },
          ),
        );
      };
      server.once('error', onError);
      server.listen(opts.port ?? 0, '127.0.0.1', () => {
        server.off('error', onError);
        resolve();
      });
    });
  } catch (e) {
    await uploads.close();
    await storage.release();
    throw e;
  }
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  host = `127.0.0.1:${port}`;
  log(`listening on http://${host}, data in ${opts.dataDir}, ${storage.repos.size} repositories`);

  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}`,
    host,
    port,
    dataDir: opts.dataDir,
    registryId,
    verifySignatures,
    calls,
    resetCalls: () => {
      for (const k of Object.keys(calls)) delete calls[k];
    },
    faults,
    issueToken: () => {
      const t = tokens.issue();
      return { username: t.username, password: t.password, expiresAt: t.expiresAt };
    },
    get openUploads() {
      return uploads.size;
    },
    close: () => {
      closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        await uploads.close();
        await storage.release();
      })();
      return closing;
    },
  };
}

function secretLookup(credentials: readonly ServeCredentials[] | SecretLookup): SecretLookup {
  if (typeof credentials === 'function') return credentials;
  const secrets = new Map<string, string>();
  for (const c of credentials) {
    if (!c.accessKeyId || !c.secretAccessKey)
      throw new LadingError('USAGE', 'credentials: every key pair needs an accessKeyId and a secretAccessKey');
    secrets.set(c.accessKeyId, c.secretAccessKey);
  }
  return (id) => secrets.get(id);
}
