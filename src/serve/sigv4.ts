/**
 * AWS Signature Version 4, the server's side: checks the `Authorization` header of an ECR API
 * request as AWS does, from the rules in the AWS documentation ("Create a signed AWS API
 * request" and "Elements of an AWS API request signature", IAM User Guide):
 *
 *   CanonicalRequest = Method \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n
 *                      SignedHeaders \n HashedPayload
 *   StringToSign     = "AWS4-HMAC-SHA256" \n X-Amz-Date \n date/region/service/aws4_request \n
 *                      hex(SHA256(CanonicalRequest))
 *   SigningKey       = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")
 *   Signature        = hex(HMAC(SigningKey, StringToSign))
 *
 * No dependency: node:crypto has SHA-256, HMAC and timingSafeEqual, which is all verifying
 * takes. The SDK's signer (@smithy/signature-v4) only signs, and the npm packages that verify
 * are small single-maintainer ones that would add more than the hundred lines below.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** A key pair the server accepts, as the AWS SDKs take it. */
export interface ServeCredentials {
  accessKeyId: string;
  secretAccessKey: string;
}

/**
 * What `lading serve` accepts when told nothing else (documented, printed at start-up, as
 * MinIO does with minioadmin): `AWS_ACCESS_KEY_ID=lading AWS_SECRET_ACCESS_KEY=lading-secret`.
 * Not frozen: the AWS SDK writes a `$source` member into the credentials object it is given.
 */
export const DEFAULT_CREDENTIALS: Readonly<ServeCredentials> = {
  accessKeyId: 'lading',
  secretAccessKey: 'lading-secret',
};

/** The secret of an access key id, or undefined when the key is unknown. */
export type SecretLookup = (accessKeyId: string) => string | undefined;

export const ALGORITHM = 'AWS4-HMAC-SHA256';
/** How far a request's date may be from the server's clock, either way (AWS: 15 minutes). */
export const MAX_SKEW_MS = 15 * 60_000;
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** A request as received, before anything is decoded. */
export interface ReceivedRequest {
  method: string;
  /** The request target as received: `/path?query`, still percent-encoded. */
  target: string;
  /** Header names and values as received, in order: Node's `IncomingMessage.rawHeaders`. */
  rawHeaders: readonly string[];
  body: Buffer;
}

export type Verdict =
  { ok: true; accessKeyId: string; region: string } | { ok: false; type: SignatureErrorType; message: string };

export type SignatureErrorType =
  | 'MissingAuthenticationTokenException'
  | 'IncompleteSignatureException'
  | 'InvalidSignatureException'
  | 'UnrecognizedClientException';

export const sha256Hex = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest();

/** RFC 3986 encoding as SigV4 wants it: unreserved characters kept, every other byte %XX (upper case). */
export function uriEncode(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Percent-decoding that leaves a malformed escape as it is (it then simply fails to match). */
function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * The canonical URI of a path as received: "." and ".." resolved and empty segments dropped
 * (the documented normalization, as the SDKs do it), then every segment URI-encoded. The path
 * on the wire is already encoded once, so this is the documented "encoded twice" (S3 excepted,
 * which is not served here).
 */
export function canonicalUri(path: string): string {
  const segments: string[] = [];
  for (const s of path.split('/')) {
    if (s === '' || s === '.') continue;
    if (s === '..') segments.pop();
    else segments.push(s);
  }
  if (segments.length === 0) return '/';
  return `/${segments.map(uriEncode).join('/')}${path.endsWith('/') ? '/' : ''}`;
}

/** The canonical query: each name and value decoded then URI-encoded, sorted by name then value. */
export function canonicalQuery(query: string): string {
  return query
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const i = p.indexOf('=');
      const [k, v] = i < 0 ? [p, ''] : [p.slice(0, i), p.slice(i + 1)];
      return [uriEncode(decode(k)), uriEncode(decode(v))] as const;
    })
    .sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

/**
 * `name:value\n` for each signed header (lower-cased names, in the order given): the values of
 * every header of that name, in the order received, each trimmed with inner runs of spaces
 * collapsed, joined by commas.
 */
export function canonicalHeaders(rawHeaders: readonly string[], signed: readonly string[]): string {
  const values = new Map<string, string[]>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    const list = values.get(name) ?? [];
    list.push(rawHeaders[i + 1]!.trim().replace(/\s+/g, ' '));
    values.set(name, list);
  }
  return signed.map((h) => `${h}:${(values.get(h) ?? []).join(',')}\n`).join('');
}

export function canonicalRequest(r: {
  method: string;
  path: string;
  query: string;
  rawHeaders: readonly string[];
  signedHeaders: readonly string[];
  payloadHash: string;
}): string {
  return [
    r.method.toUpperCase(),
    canonicalUri(r.path),
    canonicalQuery(r.query),
    canonicalHeaders(r.rawHeaders, r.signedHeaders),
    r.signedHeaders.join(';'),
    r.payloadHash,
  ].join('\n');
}

export function stringToSign(amzDate: string, scope: string, canonical: string): string {
  return [ALGORITHM, amzDate, scope, sha256Hex(canonical)].join('\n');
}

export function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
}

export function signature(key: Buffer, toSign: string): string {
  return createHmac('sha256', key).update(toSign, 'utf8').digest('hex');
}

/** `20150830T123600Z` as a time, or undefined. */
function parseAmzDate(s: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) return undefined;
  const t = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
  return new Date(t).toISOString().replace(/[-:]|\.\d{3}/g, '') === s ? t : undefined;
}

const amzDateOf = (t: number): string => new Date(t).toISOString().replace(/[-:]|\.\d{3}/g, '');

function header(rawHeaders: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < rawHeaders.length; i += 2)
    if (rawHeaders[i]!.toLowerCase() === name) return rawHeaders[i + 1];
  return undefined;
}

const fail = (type: SignatureErrorType, message: string): Verdict => ({ ok: false, type, message });

/**
 * Checks a request's SigV4 `Authorization` header for `service`: the verdict, with the access
 * key and the region of the credential scope when it holds. The errors and their messages are
 * those of AWS's JSON services.
 */
export function verifySignature(
  req: ReceivedRequest,
  service: string,
  secretOf: SecretLookup,
  now = Date.now(),
): Verdict {
  const authorization = header(req.rawHeaders, 'authorization');
  if (authorization === undefined || authorization.trim() === '')
    return fail('MissingAuthenticationTokenException', 'Missing Authentication Token');
  const auth = authorization.trim();
  const sp = auth.search(/\s/);
  const algorithm = sp < 0 ? auth : auth.slice(0, sp);
  if (algorithm !== ALGORITHM)
    return fail('IncompleteSignatureException', `Unsupported AWS 'algorithm': '${algorithm}' (only ${ALGORITHM})`);
  const fields = new Map<string, string>();
  for (const part of auth.slice(algorithm.length).split(',')) {
    const i = part.indexOf('=');
    if (i > 0) fields.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
  const missing = ['Credential', 'SignedHeaders', 'Signature'].filter((k) => !fields.get(k));
  if (missing.length > 0)
    return fail(
      'IncompleteSignatureException',
      missing.map((k) => `Authorization header requires '${k}' parameter.`).join(' ') +
        ` Authorization=${authorization.replace(/Signature=\S*/, 'Signature=...')}`,
    );
  // Credential=AKID/20150830/us-east-1/ecr/aws4_request; the key id itself may hold no '/'.
  const credential = fields.get('Credential')!.split('/');
  if (credential.length !== 5 || credential[4] !== 'aws4_request' || !/^\d{8}$/.test(credential[1]!) || !credential[2])
    return fail(
      'IncompleteSignatureException',
      `Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/aws4_request, got '${fields.get('Credential')!}'.`,
    );
  const [accessKeyId, scopeDate, region, scopeService] = credential as [string, string, string, string, string];
  if (scopeService !== service)
    return fail('InvalidSignatureException', `Credential should be scoped to correct service: '${service}'.`);
  const signedHeaders = fields
    .get('SignedHeaders')!
    .split(';')
    .map((h) => h.trim().toLowerCase());
  if (!signedHeaders.includes('host'))
    return fail('InvalidSignatureException', `'Host' must be a 'SignedHeader' in the AWS Authorization.`);

  // The request time: X-Amz-Date, else the Date header, within 15 minutes of now.
  const xAmzDate = header(req.rawHeaders, 'x-amz-date');
  const httpDate = header(req.rawHeaders, 'date');
  let amzDate: string;
  let t: number | undefined;
  if (xAmzDate !== undefined) {
    amzDate = xAmzDate.trim();
    t = parseAmzDate(amzDate);
  } else if (httpDate !== undefined && !Number.isNaN(Date.parse(httpDate))) {
    t = Date.parse(httpDate);
    amzDate = amzDateOf(t);
  } else {
    return fail(
      'IncompleteSignatureException',
      "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    );
  }
  if (t === undefined)
    return fail('IncompleteSignatureException', `X-Amz-Date must be in the ISO8601 basic format, got '${amzDate}'.`);
  if (amzDate.slice(0, 8) !== scopeDate)
    return fail(
      'InvalidSignatureException',
      `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${scopeDate}' != '${amzDate.slice(0, 8)}', from '${amzDate}'.`,
    );
  if (t < now - MAX_SKEW_MS)
    return fail(
      'InvalidSignatureException',
      `Signature expired: ${amzDate} is now earlier than ${amzDateOf(now - MAX_SKEW_MS)} (${amzDateOf(now)} - 15 min.)`,
    );
  if (t > now + MAX_SKEW_MS)
    return fail(
      'InvalidSignatureException',
      `Signature not yet current: ${amzDate} is still later than ${amzDateOf(now + MAX_SKEW_MS)} (${amzDateOf(now)} + 15 min.)`,
    );

  const secret = secretOf(accessKeyId);
  if (secret === undefined)
    return fail('UnrecognizedClientException', 'The security token included in the request is invalid.');

  // The payload hash: x-amz-content-sha256 when the client sent it (and then the body must
  // have that hash), else the hash of the body.
  const bodyHash = req.body.length === 0 ? EMPTY_SHA256 : sha256Hex(req.body);
  const claimed = header(req.rawHeaders, 'x-amz-content-sha256')?.trim();
  if (claimed !== undefined && claimed !== bodyHash)
    return fail(
      'InvalidSignatureException',
      "The provided 'x-amz-content-sha256' header does not match what was computed.",
    );
  const q = req.target.indexOf('?');
  let path = q < 0 ? req.target : req.target.slice(0, q);
  // An absolute-form target (a client talking to a proxy) signs only its path.
  const abs = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(path);
  if (abs) path = path.slice(abs[0].length) || '/';
  const canonical = canonicalRequest({
    method: req.method,
    path,
    query: q < 0 ? '' : req.target.slice(q + 1),
    rawHeaders: req.rawHeaders,
    signedHeaders: [...signedHeaders].sort(),
    payloadHash: claimed ?? bodyHash,
  });
  const scope = `${scopeDate}/${region}/${service}/aws4_request`;
  const toSign = stringToSign(amzDate, scope, canonical);
  const expected = Buffer.from(signature(signingKey(secret, scopeDate, region, service), toSign), 'hex');
  const given = fields.get('Signature')!;
  const givenBytes = /^[0-9a-f]{64}$/.test(given) ? Buffer.from(given, 'hex') : Buffer.alloc(0);
  if (givenBytes.length !== expected.length || !timingSafeEqual(givenBytes, expected))
    return fail(
      'InvalidSignatureException',
      'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.' +
        `\n\nThe Canonical String for this request should have been\n'${canonical}'\n\nThe String-to-Sign should have been\n'${toSign}'\n`,
    );
  return { ok: true, accessKeyId, region };
}
