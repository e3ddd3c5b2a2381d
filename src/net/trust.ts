import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { LadingError } from '../errors';

export interface TrustOptions {
  /** Where `AWS_CA_BUNDLE` and `NODE_EXTRA_CA_CERTS` are read. @default process.env */
  env?: NodeJS.ProcessEnv;
  /**
   * skopeo's `--cert-dir`: the registry's certificates are in this directory (`*.crt` CAs,
   * `*.cert` + `*.key` client pairs), which replaces the per-host directories.
   */
  certDir?: string;
  /**
   * Per-host certificate directories, searched in order; the first with a `HOST[:PORT]`
   * sub-directory is used, as containers/image does.
   * @default ~/.config/containers/certs.d, /etc/containers/certs.d, /etc/docker/certs.d
   */
  certsDirectories?: string[];
}

export function defaultCertsDirectories(): string[] {
  return [join(homedir(), '.config/containers/certs.d'), '/etc/containers/certs.d', '/etc/docker/certs.d'];
}

/** What was found for one host: for TLS and for error messages. */
export interface HostTrust {
  secureContext: tls.SecureContext | undefined;
  /** The directory the host's certificates came from, if any. */
  directory: string | undefined;
  /** A client certificate is offered (mutual TLS). */
  clientCertificate: boolean;
}

let defaults: string[] | undefined;

/**
 * Node's own trust store: the bundled roots and NODE_EXTRA_CA_CERTS. Passing `ca` to TLS
 * REPLACES that store, so a custom context must start from it or the public roots (and the
 * corporate CA in NODE_EXTRA_CA_CERTS) would stop being trusted.
 */
function defaultRoots(): string[] {
  if (defaults) return defaults;
  // Node >= 22.15 says what its default store is (system store included with --use-system-ca).
  const get = (tls as { getCACertificates?: (type: string) => string[] }).getCACertificates;
  if (get) {
    defaults = get('default');
  } else {
    // Node reads NODE_EXTRA_CA_CERTS from its own environment, once, at start-up.
    const extra = process.env.NODE_EXTRA_CA_CERTS;
    defaults = [...tls.rootCertificates, ...(extra && existsSync(extra) ? [readFileSync(extra, 'utf8')] : [])];
  }
  return defaults;
}

function readPem(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new LadingError('TLS', `cannot read ${what} ${path}: ${(e as { code?: string }).code ?? String(e)}`, {
      cause: e,
    });
  }
}

function context(options: tls.SecureContextOptions, what: string): tls.SecureContext {
  try {
    return tls.createSecureContext(options);
  } catch (e) {
    throw new LadingError('TLS', `${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
}

interface DirectoryCerts {
  cas: string[];
  cert?: string;
  key?: string;
}

/** docker's rules for a certs.d directory: `*.crt` are CAs, `NAME.cert` pairs with `NAME.key`. */
function readCertDirectory(dir: string): DirectoryCerts {
  const files = readdirSync(dir).sort();
  const out: DirectoryCerts = { cas: [] };
  for (const f of files) {
    const path = join(dir, f);
    if (f.endsWith('.crt')) out.cas.push(readPem(path, 'CA certificate'));
    else if (f.endsWith('.cert')) {
      const key = `${f.slice(0, -5)}.key`;
      if (!files.includes(key)) throw new LadingError('TLS', `${path}: client certificate without its key ${key}`);
      if (out.cert !== undefined)
        throw new LadingError('TLS', `${dir}: more than one client certificate (*.cert); keep one`);
      out.cert = readPem(path, 'client certificate');
      out.key = readPem(join(dir, key), 'client key');
    } else if (f.endsWith('.key')) {
      const cert = `${f.slice(0, -4)}.cert`;
      if (!files.includes(cert)) throw new LadingError('TLS', `${path}: client key without its certificate ${cert}`);
    }
  }
  return out;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Which certificates lading trusts and presents, per host: Node's store (with
 * NODE_EXTRA_CA_CERTS), plus AWS_CA_BUNDLE (the AWS CLI's convention, which the AWS SDK for
 * JavaScript does not read by itself), plus, for registries, docker's and podman's per-host
 * `certs.d` directories or `--cert-dir`. Contexts are built once per host: parsing the ~150
 * roots costs milliseconds, and a context per connection would cost it every time.
 */
export class Trust {
  private readonly env: NodeJS.ProcessEnv;
  private readonly certDir: string | undefined;
  private readonly certsDirectories: string[];
  private readonly hosts = new Map<string, HostTrust>();
  private bundle: string[] | undefined;
  private general: HostTrust | undefined;

  constructor(options: TrustOptions = {}) {
    this.env = options.env ?? process.env;
    this.certDir = options.certDir;
    this.certsDirectories = options.certsDirectories ?? defaultCertsDirectories();
    if (this.certDir !== undefined && !isDirectory(this.certDir))
      throw new LadingError('USAGE', `--cert-dir ${this.certDir} is not a directory`);
  }

  /** The PEM text of AWS_CA_BUNDLE, if set. */
  private awsBundle(): string[] {
    if (this.bundle === undefined) {
      const path = this.env.AWS_CA_BUNDLE?.trim();
      this.bundle = path ? [readPem(path, 'AWS_CA_BUNDLE file')] : [];
    }
    return this.bundle;
  }

  /** For AWS endpoints and proxies: Node's store plus AWS_CA_BUNDLE. */
  forAws(): HostTrust {
    if (!this.general) {
      const extra = this.awsBundle();
      this.general = {
        secureContext:
          extra.length > 0
            ? context({ ca: [...defaultRoots(), ...extra] }, `AWS_CA_BUNDLE ${this.env.AWS_CA_BUNDLE}`)
            : undefined,
        directory: undefined,
        clientCertificate: false,
      };
    }
    return this.general;
  }

  /** The directory holding a registry's certificates: `--cert-dir`, or the first certs.d/HOST[:PORT]. */
  directoryFor(hostPort: string): string | undefined {
    if (this.certDir !== undefined) return this.certDir;
    return this.certsDirectories.map((d) => join(d, hostPort)).find(isDirectory);
  }

  /** For a registry at `hostPort` (`URL.host`: the port only when not 443). */
  forRegistry(hostPort: string): HostTrust {
    let t = this.hosts.get(hostPort);
    if (t) return t;
    const directory = this.directoryFor(hostPort);
    const certs = directory ? readCertDirectory(directory) : { cas: [] };
    const extra = [...this.awsBundle(), ...certs.cas];
    const options: tls.SecureContextOptions = {
      ...(extra.length > 0 ? { ca: [...defaultRoots(), ...extra] } : {}),
      ...(certs.cert !== undefined ? { cert: certs.cert, key: certs.key } : {}),
    };
    t = {
      secureContext:
        Object.keys(options).length > 0
          ? context(options, `certificates for ${hostPort}${directory ? ` in ${directory}` : ''}`)
          : undefined,
      directory,
      clientCertificate: certs.cert !== undefined,
    };
    this.hosts.set(hostPort, t);
    return t;
  }
}
