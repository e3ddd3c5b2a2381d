import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { LadingError } from '../errors';
import { abortError } from '../util/retry';
import { DOCKER_HUB_REGISTRY } from '../reference/reference';

/**
 * Credentials for one registry. `identityToken` is an OAuth2 refresh token (docker's
 * `identitytoken`, a credential helper's `<token>` user); `registryToken` is a bearer token
 * sent as is.
 */
export interface Credential {
  username?: string;
  password?: string;
  identityToken?: string;
  registryToken?: string;
}

/** A credential and where it came from, so an AUTH error can say which source was tried. */
export interface ResolvedCredential extends Credential {
  /** e.g. `LADING_USERNAME/LADING_PASSWORD`, `/root/.docker/config.json (credHelpers: ecr-login)`. */
  source: string;
}

/**
 * Where credentials come from. `resolve` is called lazily, once per client and again after
 * a rejected credential (a provider backed by a short-lived token, like ECR's, can renew).
 */
export interface CredentialProvider {
  /** Names the places looked in, for "no credentials found (looked in ...)". */
  readonly description: string;
  resolve(registry: string, signal?: AbortSignal): Promise<ResolvedCredential | undefined>;
}

/** Either a provider or fixed credentials. */
export type CredentialSource = CredentialProvider | Credential;

export function isCredentialProvider(s: CredentialSource): s is CredentialProvider {
  return typeof (s as CredentialProvider).resolve === 'function';
}

/** Fixed credentials (command-line flags, a CDK prop, ECR's GetAuthorizationToken). */
export function staticCredentials(credential: Credential, description = 'explicit credentials'): CredentialProvider {
  return { description, resolve: () => Promise.resolve({ ...credential, source: description }) };
}

/** `LADING_USERNAME` / `LADING_PASSWORD`, for CI systems that inject secrets as variables. */
export function environmentCredentials(env: NodeJS.ProcessEnv = process.env): CredentialProvider {
  const description = 'LADING_USERNAME/LADING_PASSWORD';
  return {
    description,
    resolve: () => {
      const username = env.LADING_USERNAME;
      const password = env.LADING_PASSWORD;
      if (username === undefined || username === '' || password === undefined) return Promise.resolve(undefined);
      return Promise.resolve({ username, password, source: description });
    },
  };
}

/** Tries providers in order; the first that has credentials wins. */
export function chainCredentials(...providers: CredentialProvider[]): CredentialProvider {
  return {
    description: providers.map((p) => p.description).join(', '),
    async resolve(registry, signal) {
      for (const p of providers) {
        const c = await p.resolve(registry, signal);
        if (c !== undefined) return c;
      }
      return undefined;
    },
  };
}

export interface DockerConfigOptions {
  /** Files to read, first match wins. @default {@link defaultAuthFiles} */
  files?: string[];
  /** Environment for locating files and running helpers. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Kill a credential helper that hangs (a keychain prompt on a headless box). @default 30_000 */
  helperTimeoutMs?: number;
}

/**
 * The auth files docker and podman/skopeo use, in the order containers/image gives them
 * precedence: `REGISTRY_AUTH_FILE`, podman's `$XDG_RUNTIME_DIR/containers/auth.json` (where
 * `podman login` writes), `$XDG_CONFIG_HOME/containers/auth.json` (~/.config), then
 * `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
 */
export function defaultAuthFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR) files.push(join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  files.push(join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config'), 'containers', 'auth.json'));
  const dockerDir = env.DOCKER_CONFIG || join(env.HOME || homedir(), '.docker');
  files.push(join(dockerDir, 'config.json'));
  return files;
}

/** The keys docker uses for Docker Hub in config.json and with credential helpers. */
const DOCKER_HUB_KEY = 'https://index.docker.io/v1/';
const DOCKER_HUB_HOSTS = new Set(['index.docker.io', 'docker.io', DOCKER_HUB_REGISTRY]);

/** docker's `ConvertToHostname`: `https://host:port/v1/` -> `host:port`. */
function keyHost(key: string): string {
  const h = key.replace(/^[a-z]+:\/\//i, '');
  const slash = h.indexOf('/');
  return (slash < 0 ? h : h.slice(0, slash)).toLowerCase();
}

function sameRegistry(key: string, registry: string): boolean {
  const a = keyHost(key);
  const b = registry.toLowerCase();
  return a === b || (DOCKER_HUB_HOSTS.has(a) && DOCKER_HUB_HOSTS.has(b));
}

interface AuthEntry {
  auth?: unknown;
  username?: unknown;
  password?: unknown;
  identitytoken?: unknown;
  registrytoken?: unknown;
}

interface ConfigFile {
  auths?: Record<string, AuthEntry>;
  credsStore?: unknown;
  credHelpers?: Record<string, unknown>;
}

async function readConfig(file: string): Promise<ConfigFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR')
      return undefined;
    throw new LadingError('IO', `cannot read auth file ${file}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const o = JSON.parse(text) as unknown;
    return typeof o === 'object' && o !== null && !Array.isArray(o) ? (o as ConfigFile) : {};
  } catch {
    // Never echo the content: it holds secrets.
    throw new LadingError('AUTH', `auth file ${file} is not valid JSON; fix or remove it`);
  }
}

function fromEntry(entry: AuthEntry, source: string): ResolvedCredential | undefined {
  const out: ResolvedCredential = { source };
  if (typeof entry.auth === 'string' && entry.auth !== '') {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i < 0)
      throw new LadingError('AUTH', `${source}: the "auth" field is not base64 of "user:password"; log in again`);
    out.username = decoded.slice(0, i);
    out.password = decoded.slice(i + 1);
  } else {
    if (typeof entry.username === 'string') out.username = entry.username;
    if (typeof entry.password === 'string') out.password = entry.password;
  }
  if (typeof entry.identitytoken === 'string' && entry.identitytoken !== '') out.identityToken = entry.identitytoken;
  if (typeof entry.registrytoken === 'string' && entry.registrytoken !== '') out.registryToken = entry.registrytoken;
  const usable =
    (out.username !== undefined && out.password !== undefined) ||
    out.identityToken !== undefined ||
    out.registryToken !== undefined;
  return usable ? out : undefined;
}

/**
 * Runs `docker-credential-<helper> get` with the server URL on stdin, the protocol of
 * docker-credential-helpers (so `docker-credential-ecr-login` works). "Not found" is no
 * credential, not an error: docker behaves the same way.
 */
export async function runCredentialHelper(
  helper: string,
  serverUrl: string,
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; signal?: AbortSignal; source: string },
): Promise<ResolvedCredential | undefined> {
  if (!/^[A-Za-z0-9_.-]+$/.test(helper))
    throw new LadingError('AUTH', `${options.source}: invalid credential helper name ${JSON.stringify(helper)}`);
  const program = `docker-credential-${helper}`;
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>(
    (resolve, reject) => {
      if (options.signal?.aborted) {
        reject(abortError(options.signal));
        return;
      }
      const child = spawn(program, ['get'], {
        env: options.env ?? process.env,
        stdio: ['pipe', 'pipe', 'pipe'],
        ...(options.signal ? { signal: options.signal } : {}),
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => err.push(b));
      child.stdin.on('error', () => undefined); // a helper that exits without reading stdin
      child.on('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        if (options.signal?.aborted) reject(abortError(options.signal));
        else if (e.code === 'ENOENT')
          reject(
            new LadingError(
              'AUTH',
              `${options.source}: credential helper ${program} not found on PATH; install it or remove it from the docker config`,
            ),
          );
        else reject(new LadingError('AUTH', `${options.source}: cannot run ${program}: ${e.message}`, { cause: e }));
      });
      child.on('close', (c) => {
        clearTimeout(timer);
        resolve({ code: c, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
      });
      child.stdin.end(serverUrl);
    },
  );
  if (code !== 0) {
    const said = `${stdout} ${stderr}`.trim();
    if (/credentials not found/i.test(said)) return undefined;
    // The first line only, and never stdout (which would carry a secret on success).
    const line = stderr.trim().split('\n')[0]?.slice(0, 200) ?? '';
    throw new LadingError(
      'AUTH',
      `${options.source}: ${program} get failed (exit ${code ?? 'killed'})${line ? `: ${line}` : ''}`,
    );
  }
  let o: unknown;
  try {
    o = JSON.parse(stdout);
  } catch {
    throw new LadingError('AUTH', `${options.source}: ${program} get printed something that is not JSON`);
  }
  const r = o as { Username?: unknown; Secret?: unknown };
  if (typeof r.Secret !== 'string' || r.Secret === '') return undefined;
  // docker-credential-helpers mark an identity token with the user "<token>".
  if (r.Username === '<token>') return { identityToken: r.Secret, source: options.source };
  return { username: typeof r.Username === 'string' ? r.Username : '', password: r.Secret, source: options.source };
}

/**
 * Docker's `config.json` (and podman's `auth.json`, same format): `credHelpers` for the
 * host, then `credsStore`, then the `auths` entry.
 */
export function dockerConfigCredentials(options: DockerConfigOptions = {}): CredentialProvider {
  const env = options.env ?? process.env;
  const files = options.files ?? defaultAuthFiles(env);
  return {
    description: files.join(', '),
    async resolve(registry, signal) {
      for (const file of files) {
        const cfg = await readConfig(file);
        if (cfg === undefined) continue;
        const serverUrl = DOCKER_HUB_HOSTS.has(registry.toLowerCase()) ? DOCKER_HUB_KEY : registry;
        const run = (helper: string, how: string): Promise<ResolvedCredential | undefined> =>
          runCredentialHelper(helper, serverUrl, {
            env,
            timeoutMs: options.helperTimeoutMs,
            signal,
            source: `${file} (${how}: ${helper})`,
          });
        const helpers = cfg.credHelpers ?? {};
        for (const [key, helper] of Object.entries(helpers)) {
          if (typeof helper === 'string' && helper !== '' && sameRegistry(key, registry)) {
            const c = await run(helper, 'credHelpers');
            if (c !== undefined) return c;
          }
        }
        if (typeof cfg.credsStore === 'string' && cfg.credsStore !== '') {
          const c = await run(cfg.credsStore, 'credsStore');
          if (c !== undefined) return c;
        }
        for (const [key, entry] of Object.entries(cfg.auths ?? {})) {
          if (typeof entry === 'object' && entry !== null && sameRegistry(key, registry)) {
            const c = fromEntry(entry, file);
            if (c !== undefined) return c;
          }
        }
      }
      return undefined;
    },
  };
}

/** What the CLI uses when no credentials are given: the environment, then the auth files. */
export function defaultCredentials(env: NodeJS.ProcessEnv = process.env): CredentialProvider {
  return chainCredentials(environmentCredentials(env), dockerConfigCredentials({ env }));
}
