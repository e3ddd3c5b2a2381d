import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseCommandArgs, strings, usageError, type CommandContext } from '../command/context';
import { parseFaultSpec, type FaultRule } from './faults';
import { startServer } from './server';

export const serveHelp = `Usage: lading serve [options]

Run a local Amazon ECR-compatible endpoint on 127.0.0.1, for tests, demos and offline
pipelines. It speaks ECR's API (POST /: CreateRepository, DescribeRepositories,
BatchCheckLayerAvailability, InitiateLayerUpload, UploadLayerPart, CompleteLayerUpload,
PutImage, BatchGetImage, DescribeImages, ListImages, BatchDeleteImage, DeleteRepository,
PutImageTagMutability, GetAuthorizationToken) and the registry API (/v2/) with Basic auth
AWS:<password from GetAuthorizationToken>. Each repository is stored as an OCI image
layout: DIR/REPOSITORY/{oci-layout,index.json,blobs/}.

AWS signatures are NOT verified: any credentials work, but requests must be signed
(carry an Authorization header). Never expose this endpoint beyond the local machine.

Options:
  --port N            port on 127.0.0.1 (default 0: a free port)
  --data DIR          where repositories are stored (default: a temp dir removed on exit);
                      OCI layouts already in DIR are served as repositories
  --registry-id ID    12-digit account id to answer as (default 000000000000)
  --blob-mounting     honour cross-repository blob mounts on /v2/ (ECR's opt-in setting)
  --fault SPEC        inject a fault (repeatable): op=NAME,kind=KIND[,after=N][,times=N|inf]
                      [,delay=MS][,error=NAME][,status=N]
                      NAME: an ECR operation (UploadLayerPart) or a registry call
                      ("PATCH upload", "PUT manifest", "HEAD blob", "GET /v2/") or *
                      KIND: throttle, server-error, drop-connection, drop-response, slow, error
  --debug             log every request to stderr
  -h, --help          show this help

The first line on standard output is "listening on http://127.0.0.1:PORT". It runs until
interrupted (Ctrl-C, SIGTERM). Use it with lading or the AWS tools:
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
      ...(registryId ? { registryId } : {}),
      ...(values['blob-mounting'] ? { blobMounting: true } : {}),
      ...(ctx.debug ? { logger: ctx.debug } : {}),
    });
    ctx.stdout(`listening on ${server.url}`);
    ctx.stderr(
      `lading serve: data in ${dataDir}${temp ? ' (temporary: removed on exit)' : ''}; account ${server.registryId}; ECR API at POST ${server.url}/, registry API at ${server.url}/v2/`,
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
