import { LadingError } from '../errors';

/** OpenSSL's verdicts that mean "no trusted root for this chain". */
const UNKNOWN_AUTHORITY = new Set([
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
]);

/** The server's alerts when it wants (another) client certificate. */
const CLIENT_CERTIFICATE = new Set([
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
  'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE',
  'ERR_SSL_TLSV1_ALERT_ACCESS_DENIED',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN',
]);

/** The first string `code` along an error's cause chain. */
export function systemCodeOf(e: unknown): string | undefined {
  for (let cur: unknown = e, depth = 0; typeof cur === 'object' && cur !== null && depth < 5; depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

export interface TlsContext {
  /** The host as the user named it (`host[:port]`). */
  host: string;
  /** A registry (certs.d and --insecure apply) rather than an AWS endpoint. */
  registry: boolean;
  /** A client certificate was offered. */
  clientCertificate?: boolean;
  /** Where the host's certificates were read from, if anywhere. */
  directory?: string | undefined;
}

/**
 * A TLS failure as one line that says what failed and how to fix it, or undefined when `e` is
 * not a TLS failure. The fix names the conventions lading reads: NODE_EXTRA_CA_CERTS and
 * AWS_CA_BUNDLE everywhere, docker's certs.d directories (or --cert-dir) for registries.
 */
export function tlsFailure(e: unknown, where: string, ctx: TlsContext): LadingError | undefined {
  const code = systemCodeOf(e);
  if (code === undefined) return undefined;
  const msg = e instanceof Error ? e.message : String(e);
  const dir = ctx.directory ?? `/etc/docker/certs.d/${ctx.host}`;
  let text: string;
  if (UNKNOWN_AUTHORITY.has(code)) {
    const where2 = ctx.registry ? `, or put it in ${dir}/ca.crt (or a directory given with --cert-dir)` : '';
    const skip = ctx.registry ? '; --insecure skips the check' : '';
    text = `the TLS certificate of ${ctx.host} is signed by an unknown authority (${code}): if a proxy or your company inspects TLS, trust its root CA: set NODE_EXTRA_CA_CERTS or AWS_CA_BUNDLE to its PEM file${where2}${skip}`;
  } else if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    text = `the TLS certificate of ${ctx.host} ${code === 'CERT_HAS_EXPIRED' ? 'has expired' : 'is not valid yet'} (${code}): check this machine's clock, or have the certificate renewed`;
  } else if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    text = `the TLS certificate of ${ctx.host} is for other names (${msg}): use the name the certificate is for`;
  } else if (CLIENT_CERTIFICATE.has(code) && ctx.registry) {
    text = ctx.clientCertificate
      ? `${ctx.host} refused the client certificate from ${dir} (${code}): check that it is the one the registry expects and is not expired`
      : `${ctx.host} requires a client certificate (${code}): put client.cert and client.key in ${dir}/ (or a directory given with --cert-dir)`;
  } else if (code.startsWith('ERR_SSL_') || code === 'EPROTO' || code.startsWith('ERR_TLS_')) {
    text = `the TLS handshake with ${ctx.host} failed (${code}: ${msg})${ctx.registry ? ': if the registry speaks plain HTTP, use --plain-http' : ''}`;
  } else {
    return undefined;
  }
  return new LadingError('TLS', `${where}: ${text}`, { cause: e, details: { systemCode: code } });
}

/**
 * For AWS SDK calls: a proxy failure as it is, a TLS failure with its fix, or undefined for
 * everything else (the caller's own mapping of AWS errors then applies).
 */
export function awsTransportFailure(e: unknown, where: string, endpoint: string): LadingError | undefined {
  if (e instanceof LadingError && (e.code === 'PROXY' || e.code === 'TLS')) return e;
  return tlsFailure(e, where, { host: endpoint, registry: false });
}
