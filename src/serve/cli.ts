import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseCommandArgs, strings, usageError, type CommandContext, type OptionValues } from '../command/context';
import { parseFaultSpec, type FaultRule } from './faults';
import { startServer } from './server';
import { DEFAULT_CREDENTIALS, type ServeCredentials } from './sigv4';

export const serveHelp = `Usage: lading serve [options]

Run a local Amazon ECR-compatible endpoint on 127.0.0.1, for tests, demos and offline
pipelines. It speaks ECR's API (POST /: CreateRepository, DescribeRepositories,
BatchCheckLayerAvailability, InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload,
PutImage, BatchGetImage, DescribeImages, ListImages, BatchDeleteImage, DeleteRepository,
PutImageTagMutability, GetAuthorizationToken) and the registry API (/v2/) with Basic auth
AWS:<password from GetAuthorizationToken>. Each repository is stored as an OCI image
layout: DIR/REPOSITORY/{oci-layout,index.json,blobs/}.

ECR API requests must be signed (AWS Signature Version 4, as the AWS SDKs and CLI do) with
the access key it accepts, else they get ECR's 403 (UnrecognizedClientException,
InvalidSignatureException): by default access key id "${DEFAULT_CREDENTIALS.accessKeyId}", secret access key
"${DEFAULT_CREDENTIALS.secretAccessKey}" (printed at start-up), or the pair given by --access-key-id and
--secret-access-key, or by LADING_SERVE_ACCESS_KEY_ID and LADING_SERVE_SECRET_ACCESS_KEY
(the environment keeps the secret out of the process list). Clients sign with it as with any
AWS key: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile... The registry API (/v2/)
takes the password GetAuthorizationToken issues. It listens on 127.0.0.1 only: never
expose it beyond the local machine.

Options:
  --port N            port on 127.0.0.1 (default 0: a free port)
  --data DIR          where repositories are stored (default: a temp dir removed on exit);
                      OCI layouts already in DIR are served as repositories
  --registry-id ID    12-digit account id to answer as (default 000000000000)
  --blob-mounting     honour cross-repository blob mounts on /v2/ (ECR's opt-in setting)
  --access-key-id ID  the AWS access key id to accept (with --secret-access-key)
  --secret-access-key SECRET
                      its secret (prefer LADING_SERVE_SECRET_ACCESS_KEY: the environment)
  --no-verify-signatures
                      accept any request, signed or not, with any key (ad-hoc use only)
  --fault SPEC        inject a fault (repeatable): op=NAME,kind=KIND[,after=N][,times=N|inf]
                      [,delay=MS][,error=NAME][,status=N]
                      NAME: an ECR operation (UploadLayerPart) or a registry call
                      ("PATCH upload", "PUT manifest", "HEAD blob", "GET /v2/") or *
                      KIND: throttle, server-error, drop-connection, drop-response, slow, error
  --debug             log every request to stderr
  -h, --help          show this help

The first line on standard output is "listening on http://127.0.0.1:PORT". It runs until
interrupted (Ctrl-C, SIGTERM). Use it with lading or the AWS tools:
  export AWS_ACCESS_KEY_ID=${DEFAULT_CREDENTIALS.accessKeyId} AWS_SECRET_ACCESS_KEY=${DEFAULT_CREDENTIALS.secretAccessKey} AWS_REGION=us-east-1
  lading push app.tar 000000000000.dkr.ecr.us-east-1.amazonaws.com/app:1 \\
    --endpoint-url http://127.0.0.1:PORT --create-repository
  aws ecr describe-images --endpoint-url http://127.0.0.1:PORT --repository-name app
  skopeo inspect --tls-verify=false --creds AWS:"$(aws ecr get-login-password \\
    --endpoint-url http://127.0.0.1:PORT)" docker://127.0.0.1:PORT/app:1
`;

export async function runServe(ctx: CommandContext, args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    port: { type: 'string' },
    data: { type: 'string' },
    'registry-id': { type: 'string' },
    'blob-mounting': { type: 'boolean' },
    'access-key-id': { type: 'string' },
    'secret-access-key': { type: 'string' },
    'no-verify-signatures': { type: 'boolean' },
    fault: { type: 'string', multiple: true },
  });
  if (values.help) {
    ctx.stdout(serveHelp);
    return 0;
  }
  if (positionals.length > 0) throw usageError(`unexpected argument "${positionals[0]!}"`, 'serve');
  let port = 0;
  if (values.port !== undefined) {
    port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw usageError(`--port must be 0..65535, got "${String(values.port)}"`, 'serve');
  }
  const registryId = values['registry-id'] === undefined ? undefined : String(values['registry-id']);
  if (registryId !== undefined && !/^[0-9]{12}$/.test(registryId))
    throw usageError('--registry-id must be 12 digits', 'serve');
  const verifySignatures = values['no-verify-signatures'] !== true;
  if (!verifySignatures && (values['access-key-id'] !== undefined || values['secret-access-key'] !== undefined))
    throw usageError('--no-verify-signatures accepts any key: give no credentials with it', 'serve');
  // Under --no-verify-signatures, LADING_SERVE_* of the environment are of no use, and ignored.
  const credentials = verifySignatures ? credentialsOf(values, ctx.env) : undefined;
  let faults: FaultRule[];
  try {
    faults = strings(values.fault).map(parseFaultSpec);
  } catch (e) {
    throw usageError((e as Error).message, 'serve');
  }
  const temp = values.data === undefined;
  const dataDir = temp ? await mkdtemp(join(tmpdir(), 'lading-serve-')) : resolve(String(values.data));
  try {
    if (ctx.signal.aborted) return 0;
    const server = await startServer({
      dataDir,
      port,
      faults,
      registryId,
      blobMounting: values['blob-mounting'] === true,
      logger: ctx.debug,
      credentials: credentials ? [credentials] : undefined,
      verifySignatures,
    });
    ctx.stdout(`listening on ${server.url}`);
    ctx.stderr(
      `lading serve: data in ${dataDir}${temp ? ' (temporary: removed on exit)' : ''}; account ${server.registryId}; ECR API at POST ${server.url}/, registry API at ${server.url}/v2/`,
    );
    if (!verifySignatures)
      ctx.stderr(
        'lading serve: WARNING: signatures are not verified (--no-verify-signatures): any request is accepted',
      );
    else if (credentials)
      ctx.stderr(`lading serve: ECR API requests must be signed with access key id ${credentials.accessKeyId}`);
    else
      ctx.stderr(
        `lading serve: ECR API requests must be signed with the default credentials: AWS_ACCESS_KEY_ID=${DEFAULT_CREDENTIALS.accessKeyId} AWS_SECRET_ACCESS_KEY=${DEFAULT_CREDENTIALS.secretAccessKey} (set --access-key-id/--secret-access-key or LADING_SERVE_ACCESS_KEY_ID/LADING_SERVE_SECRET_ACCESS_KEY to choose others)`,
      );
    for (const f of faults)
      ctx.stderr(`lading serve: fault ${f.kind} on ${f.op} after ${f.after ?? 0} call(s), ${f.times ?? 1} time(s)`);
    await new Promise<void>((done) => {
      if (ctx.signal.aborted) done();
      else ctx.signal.addEventListener('abort', () => done(), { once: true });
    });
    await server.close();
    return 0;
  } finally {
    if (temp) await rm(dataDir, { recursive: true, force: true });
  }
}

/** The key pair from the flags, else from LADING_SERVE_ACCESS_KEY_ID / LADING_SERVE_SECRET_ACCESS_KEY, else undefined (the defaults). */
function credentialsOf(values: OptionValues, env: NodeJS.ProcessEnv): ServeCredentials | undefined {
  const flag = (k: string): string | undefined => (values[k] === undefined ? undefined : String(values[k]));
  const fromFlags = [flag('access-key-id'), flag('secret-access-key')] as const;
  const fromEnv = [
    env.LADING_SERVE_ACCESS_KEY_ID || undefined,
    env.LADING_SERVE_SECRET_ACCESS_KEY || undefined,
  ] as const;
  const [id, secret, where] =
    fromFlags[0] !== undefined || fromFlags[1] !== undefined
      ? [...fromFlags, '--access-key-id and --secret-access-key']
      : [...fromEnv, 'LADING_SERVE_ACCESS_KEY_ID and LADING_SERVE_SECRET_ACCESS_KEY'];
  if (id === undefined && secret === undefined) return undefined;
  if (!id || !secret) throw usageError(`${where} go together: give both or neither`, 'serve');
  if (/[\s/]/.test(id)) throw usageError('the access key id may hold no space and no "/"', 'serve');
  return { accessKeyId: id, secretAccessKey: secret };
}
