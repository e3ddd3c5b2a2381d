/**
 * What the handler calls against what the construct grants (issue 13). The handler's real code
 * (`handle()` from src/cdk/handler.ts) runs through a TarballImage's lifecycle against s3rver and
 * `lading serve`, each behind a recording proxy, with the resource properties of synthesized
 * stacks (one TarballImage each): Creates of an uncompressed docker archive (gzip), of an OCI
 * image with a zero-byte layer (`compress: 'none'`: the blob takes the registry endpoint), and
 * of a multi-platform index (its untagged child manifests are looked up first), an Update to
 * another archive, and Deletes under RemovalPolicy.RETAIN and DESTROY. Every call seen on the
 * wire becomes an IAM action on a resource (an ECR operation is `ecr:<Operation>` on the
 * repository ARN its body names; a registry-API call is the action ECR authorizes it with; an S3
 * GET or HEAD of an object is s3:GetObject on the object ARN, a PUT s3:PutObject...), and then:
 *   - every action called is granted, on that resource, by the policy attached to the handler's
 *     role in the stack whose properties the call ran with;
 *   - every action granted is called on some path of a resource with that removal policy, but
 *     for the exceptions listed in GRANTED_UNCALLED with their reason.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { App, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { CreateRepositoryCommand, ECRClient } from '@aws-sdk/client-ecr';
import { S3Client } from '@aws-sdk/client-s3';
import {
  handle,
  type CustomResourceEvent,
  type CustomResourceResponse,
  type TarballImageResourceProperties,
} from '../../src/cdk/handler';
import { TarballImage, TarballImageCompression, type TarballImageProps } from '../../src/cdk';
import { registryRoute } from '../../src/serve/registry-api';
import {
  BlobStore,
  digestOf,
  dockerArchiveParts,
  file,
  freshPath,
  indexJson,
  makeLayer,
  OCI_LAYOUT,
  pseudoRandom,
  putImageManifest,
  sampleLayers,
  tarBuffer,
  withAnnotations,
  type Layer,
} from '../fixtures';
import { SERVE_CREDENTIALS, startTestServer, type TestServer } from '../serve/helpers';
import { ensureHandlerBundle, multiPlatformArchive } from './helpers';
import {
  recordingProxy,
  responseReceiver,
  startS3,
  type Recorded,
  type RecordingProxy,
  type ResponseReceiver,
  type S3Rig,
} from './bundled-rig';

const ACCOUNT = '000000000000'; // lading serve's registry id
const REGION = 'us-east-1';
const PARTITION = 'aws';

/**
 * Granted actions no test path calls, each with the reason it is granted all the same. Empty:
 * every grant is exercised. An entry needs a reason a reviewer can check.
 */
const GRANTED_UNCALLED: Record<string, string> = {};

/** The AWS-managed policies the handler's role may carry, and why they are outside the comparison. */
const MANAGED_POLICIES: Record<string, string> = {
  [`arn:${PARTITION}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole`]:
    "logs:CreateLogGroup/CreateLogStream/PutLogEvents: the Lambda runtime writes the handler's console output to CloudWatch; the handler itself makes no logs call",
};

// ---------------------------------------------------------------------------------------------
// CloudFormation values, evaluated for one account and region

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const PSEUDO: Record<string, string> = {
  'AWS::Partition': PARTITION,
  'AWS::AccountId': ACCOUNT,
  'AWS::Region': REGION,
  'AWS::URLSuffix': 'amazonaws.com',
};

/** Evaluates Ref (pseudo parameters), Fn::Join, Fn::Sub and Fn::Select; anything else is an error (or, with `lenient`, a placeholder). */
function evaluate(v: Json, lenient = false): Json {
  if (Array.isArray(v)) return v.map((x) => evaluate(x, lenient));
  if (v === null || typeof v !== 'object') return v;
  const keys = Object.keys(v);
  if (keys.length === 1) {
    const [k] = keys as [string];
    const arg = v[k]!;
    if (k === 'Ref' && typeof arg === 'string' && arg in PSEUDO) return PSEUDO[arg]!;
    if (k === 'Fn::Join' && Array.isArray(arg))
      return (evaluate(arg[1]!, lenient) as Json[]).map(String).join(String(arg[0]));
    if (k === 'Fn::Sub' && typeof arg === 'string') {
      return arg.replace(/\$\{([^}]+)\}/g, (_, name: string) => {
        if (name in PSEUDO) return PSEUDO[name]!;
        throw new Error(`Fn::Sub of ${name}`);
      });
    }
    if (k === 'Fn::Select' && Array.isArray(arg)) return (evaluate(arg[1]!, lenient) as Json[])[Number(arg[0])]!;
    if (k.startsWith('Fn::') || k === 'Ref') {
      if (lenient) return `<${k} ${JSON.stringify(arg)}>`;
      throw new Error(`cannot evaluate ${JSON.stringify(v)}`);
    }
  }
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, evaluate(x, lenient)]));
}

/** IAM's wildcard match (`*` any run of characters, `?` one). */
function iamMatch(pattern: string, value: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    'i',
  );
  return re.test(value);
}

interface Grant {
  actions: string[];
  resources: string[];
}

interface Synthesized {
  name: string;
  removal: 'RETAIN' | 'DESTROY';
  /** The custom resource's properties, as the handler receives them. */
  props: TarballImageResourceProperties;
  /** The Allow statements of the policies attached to the handler's role, evaluated. */
  grants: Grant[];
  /** The handler function's environment. */
  environment: Record<string, string>;
}

const asList = (x: Json | undefined): Json[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

/** Reads one stack's template: the handler function, its role, the policies attached to it, the custom resource. */
function readStack(name: string, removal: Synthesized['removal'], template: Template): Synthesized {
  const fns = Object.entries(template.findResources('AWS::Lambda::Function'));
  assert.equal(fns.length, 1, `${name}: one function, the handler`);
  const fn = fns[0]![1] as {
    Properties: { Role: { 'Fn::GetAtt': [string, string] }; Environment?: { Variables?: Record<string, string> } };
  };
  const roleId = fn.Properties.Role['Fn::GetAtt'][0];
  const role = template.findResources('AWS::IAM::Role')[roleId] as
    { Properties: { Policies?: unknown; ManagedPolicyArns?: Json } } | undefined;
  assert.ok(role, `${name}: the handler's role ${roleId} is in the stack`);
  assert.equal(role.Properties.Policies, undefined, `${name}: no inline policies on the role itself`);
  for (const arn of asList(evaluate(role.Properties.ManagedPolicyArns ?? []))) {
    assert.ok(
      String(arn) in MANAGED_POLICIES,
      `${name}: managed policy ${String(arn)} on the handler's role: add it to the comparison`,
    );
  }
  const grants: Grant[] = [];
  let attached = 0;
  for (const [id, p] of Object.entries(template.findResources('AWS::IAM::Policy'))) {
    const props = (p as { Properties: { Roles?: Json[]; PolicyDocument: { Statement: Record<string, Json>[] } } })
      .Properties;
    if (!(props.Roles ?? []).some((r) => JSON.stringify(r) === JSON.stringify({ Ref: roleId }))) continue;
    attached++;
    for (const s of props.PolicyDocument.Statement) {
      const unknown = Object.keys(s).filter((k) => !['Effect', 'Action', 'Resource', 'Sid'].includes(k));
      assert.deepEqual(
        unknown,
        [],
        `${name}: policy ${id} has a statement with ${unknown.join(', ')}: extend this comparison`,
      );
      assert.equal(s.Effect, 'Allow', `${name}: policy ${id}: only Allow statements are expected`);
      grants.push({ actions: asList(s.Action).map(String), resources: asList(evaluate(s.Resource!)).map(String) });
    }
  }
  assert.ok(attached >= 1, `${name}: a policy is attached to the handler's role`);
  const resources = Object.values(template.findResources('Custom::LadingTarballImage'));
  assert.equal(resources.length, 1);
  const { ServiceToken: _token, ...props } = evaluate(
    (resources[0] as { Properties: Json }).Properties,
    true,
  ) as unknown as TarballImageResourceProperties;
  assert.equal(props.RemoveOnDelete, removal === 'DESTROY' ? 'true' : 'false');
  return {
    name,
    removal,
    props: props as TarballImageResourceProperties,
    grants,
    environment: fn.Properties.Environment?.Variables ?? {},
  };
}

// ---------------------------------------------------------------------------------------------
// the calls seen on the wire, as IAM actions

interface Call {
  action: string;
  resource: string;
  /** What was seen: `ECR PutImage`, `registry PUT upload`, `S3 GET /bucket/key`. */
  seen: string;
}

/** SigV4 credential scope of a request: region and service. */
function scope(r: Recorded): { region: string; service: string } {
  const m = /Credential=[^/]+\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request/.exec(String(r.headers.authorization ?? ''));
  assert.ok(m, `a signed request: ${r.method} ${r.url}`);
  return { region: m[1]!, service: m[2]! };
}

const repositoryArn = (region: string, registryId: string, name: string): string =>
  `arn:${PARTITION}:ecr:${region}:${registryId}:repository/${name}`;

/** ECR's JSON API: `ecr:<Operation>` on the repository the body names (GetAuthorizationToken: `*`, it takes no resource). */
function ecrCalls(log: Recorded[]): Call[] {
  return log
    .map((r) => {
      const op = String(r.headers['x-amz-target'] ?? '').replace(/^.*\./, '');
      assert.ok(op, `an ECR API call: ${r.method} ${r.url}`);
      const { region, service } = scope(r);
      assert.equal(service, 'ecr');
      const body = JSON.parse(r.body.toString('utf8') || '{}') as {
        repositoryName?: string;
        registryId?: string;
        repositoryNames?: string[];
      };
      const names = body.repositoryName ? [body.repositoryName] : (body.repositoryNames ?? []);
      if (op === 'GetAuthorizationToken') return [{ action: `ecr:${op}`, resource: '*', seen: `ECR ${op}` }];
      assert.ok(names.length > 0, `ECR ${op} names no repository: map its resource here`);
      return names.map((n) => ({
        action: `ecr:${op}`,
        resource: repositoryArn(region, body.registryId ?? ACCOUNT, n),
        seen: `ECR ${op}`,
      }));
    })
    .flat();
}

/**
 * The registry API (`/v2/`), by the IAM action ECR authorizes each call with: the ping is the
 * token's own check (the token comes from ecr:GetAuthorizationToken), a blob HEAD is
 * ecr:BatchCheckLayerAvailability, GET ecr:GetDownloadUrlForLayer, an upload's POST
 * ecr:InitiateLayerUpload, PATCH ecr:UploadLayerPart, the closing PUT ecr:CompleteLayerUpload (and
 * ecr:UploadLayerPart: it may carry the bytes), a manifest GET or HEAD ecr:BatchGetImage, PUT
 * ecr:PutImage, DELETE ecr:BatchDeleteImage, tags/list ecr:ListImages.
 */
const REGISTRY_ACTIONS: Record<string, string[]> = {
  'GET base': ['ecr:GetAuthorizationToken'],
  'HEAD blob': ['ecr:BatchCheckLayerAvailability'],
  'GET blob': ['ecr:GetDownloadUrlForLayer'],
  'POST upload': ['ecr:InitiateLayerUpload'],
  'PATCH upload': ['ecr:UploadLayerPart'],
  'PUT upload': ['ecr:CompleteLayerUpload', 'ecr:UploadLayerPart'],
  'HEAD manifest': ['ecr:BatchGetImage'],
  'GET manifest': ['ecr:BatchGetImage'],
  'PUT manifest': ['ecr:PutImage'],
  'DELETE manifest': ['ecr:BatchDeleteImage'],
  'GET tags': ['ecr:ListImages'],
};

/** Registry calls from lading serve's request log (`METHOD /v2/... -> STATUS`): they go to the endpoint GetAuthorizationToken names, not through the ECR proxy. */
function registryCalls(lines: string[]): Call[] {
  return lines.flatMap((l) => {
    const m = /^(GET|HEAD|POST|PUT|PATCH|DELETE) (\/v2(?:\/\S*)?) -> /.exec(l);
    if (!m) return [];
    const route = registryRoute(m[1]!, m[2]!);
    const key = `${m[1]} ${route.kind}`;
    const actions = REGISTRY_ACTIONS[key];
    assert.ok(actions, `registry call ${key} (${l}): map it to the IAM actions ECR authorizes it with`);
    return actions.map((action) => ({
      action,
      resource: route.kind === 'base' ? '*' : repositoryArn(REGION, ACCOUNT, route.name!),
      seen: `registry ${key}`,
    }));
  });
}

/** S3, path style: object reads are s3:GetObject (HEAD too), writes s3:PutObject, deletes s3:DeleteObject; a bucket-level GET is s3:ListBucket. */
function s3Calls(log: Recorded[]): Call[] {
  return log.map((r) => {
    assert.equal(scope(r).service, 's3');
    const url = new URL(r.url, 'http://s3.local');
    const [, bucket, ...rest] = url.pathname.split('/').map(decodeURIComponent);
    const key = rest.join('/');
    const seen = `S3 ${r.method} ${url.pathname}`;
    if (!key) {
      assert.equal(r.method, 'GET', `${seen}: a bucket-level call: map it here`);
      return { action: 's3:ListBucket', resource: `arn:${PARTITION}:s3:::${bucket}`, seen };
    }
    const object = `arn:${PARTITION}:s3:::${bucket}/${key}`;
    switch (r.method) {
      case 'GET':
      case 'HEAD':
        return { action: 's3:GetObject', resource: object, seen };
      case 'PUT':
        assert.equal(r.headers['x-amz-copy-source'], undefined, `${seen}: a copy: map its source here`);
        return { action: 's3:PutObject', resource: object, seen };
      case 'POST': // multipart upload
        return { action: 's3:PutObject', resource: object, seen };
      case 'DELETE':
        return { action: 's3:DeleteObject', resource: object, seen };
      default:
        throw new Error(`${seen}: map it here`);
    }
  });
}

// ---------------------------------------------------------------------------------------------

/** A docker-save archive with two uncompressed layers (`docker save` stores them so: the handler compresses them). */
async function dockerArchive(seed: string): Promise<string> {
  const a = await makeLayer([file('etc/motd', `hello ${seed}\n`)], 'none');
  const b = await makeLayer(
    [file('data/text.txt', `${seed} text\n`.repeat(4096)), file('data/random.bin', pseudoRandom(seed, 32 * 1024))],
    'none',
  );
  const parts = dockerArchiveParts(
    [{ repoTags: [`iam/${seed}:1`], platform: { os: 'linux', architecture: 'amd64' }, layers: [a, b] }],
    { order: 'sorted' },
  );
  const p = freshPath(`${seed}.tar`);
  writeFileSync(p, await tarBuffer(parts.entries));
  return p;
}

/** An OCI archive whose image has a zero-byte layer (uncompressed media type): the layer API refuses an empty upload. */
async function zeroByteLayerArchive(): Promise<string> {
  const store = new BlobStore();
  const empty = Buffer.alloc(0);
  const d = digestOf(empty);
  const layers: Layer[] = [
    ...(await sampleLayers('iam-zero', ['gzip'])),
    { tar: empty, diffId: d, compression: 'none', data: empty, digest: d, size: 0 },
  ];
  const m = putImageManifest(store, { os: 'linux', architecture: 'amd64' }, layers);
  const p = freshPath('zero-byte-layer.tar');
  writeFileSync(
    p,
    await tarBuffer([
      ...store.entries(),
      file('index.json', indexJson([withAnnotations(m.desc, { 'org.opencontainers.image.ref.name': 'iam/zero:1' })])),
      file('oci-layout', OCI_LAYOUT),
    ]),
  );
  return p;
}

describe("the handler's calls against the IAM policy TarballImage grants its role", () => {
  let s3: S3Rig;
  let srv: TestServer;
  let ecrProxy: RecordingProxy;
  let cfn: ResponseReceiver;
  let s3c: S3Client;
  let ecr: ECRClient;
  let cacheDir: string;
  const srvLines: string[] = [];
  const handlerLines: string[] = [];
  const stacks: Record<string, Synthesized> = {};
  /** Each path run: the stack whose properties (and policy) it ran with, and the calls. */
  const runs: { path: string; stack: Synthesized; calls: Call[] }[] = [];

  before(async () => {
    ensureHandlerBundle();
    const archives = {
      a: await dockerArchive('iam-a'),
      b: await dockerArchive('iam-b'),
      zero: await zeroByteLayerArchive(),
      multi: await multiPlatformArchive(),
    };
    const specs: { name: string; removal: Synthesized['removal']; props: TarballImageProps }[] = [
      { name: 'A', removal: 'RETAIN', props: { tarball: archives.a } },
      { name: 'B', removal: 'RETAIN', props: { tarball: archives.b } },
      { name: 'BDestroy', removal: 'DESTROY', props: { tarball: archives.b, removalPolicy: RemovalPolicy.DESTROY } },
      { name: 'Zero', removal: 'RETAIN', props: { tarball: archives.zero, compress: TarballImageCompression.NONE } },
      { name: 'Multi', removal: 'RETAIN', props: { tarball: archives.multi } },
    ];
    // One app, one synthesis; a stack per TarballImage.
    const app = new App();
    const made = specs.map((s) => {
      const stack = new Stack(app, s.name, { env: { account: ACCOUNT, region: REGION } });
      new TarballImage(stack, 'Img', s.props);
      return { ...s, stack };
    });
    const asm = app.synth();
    for (const s of made)
      stacks[s.name] = readStack(
        s.name,
        s.removal,
        Template.fromJSON(asm.getStackByName(s.stack.stackName).template as Record<string, unknown>),
      );

    const first = stacks.A!.props;
    s3 = await startS3(first.Bucket);
    cfn = await responseReceiver();
    // The handler's one key pair (its role) signs S3 and ECR calls alike: s3rver's fixed key,
    // which lading serve is told to accept too.
    srv = await startTestServer({
      logger: (l) => srvLines.push(l),
      credentials: [SERVE_CREDENTIALS, { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }],
    });
    ecrProxy = await recordingProxy(srv.port);
    cacheDir = mkdtempSync(join(tmpdir(), 'lading-iam-cache-'));
    // The objects cdk-assets would publish, where the template says; the repository the template names.
    for (const s of specs) {
      const st = stacks[s.name]!;
      assert.equal(st.props.Bucket, first.Bucket);
      assert.match(st.props.Key, /^[0-9a-f]{64}\.tar$/);
      await s3.put(st.props.Key, readFileSync(s.props.tarball));
    }
    await srv.ecr.send(new CreateRepositoryCommand({ repositoryName: first.RepositoryName }));
    const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
    s3c = new S3Client({ endpoint: s3.proxy.url, forcePathStyle: true, region: REGION, credentials, maxAttempts: 1 });
    ecr = new ECRClient({ endpoint: ecrProxy.url, region: REGION, credentials, maxAttempts: 1 });
  });

  after(async () => {
    s3c?.destroy();
    ecr?.destroy();
    await ecrProxy?.stop();
    await srv?.stop();
    await cfn?.stop();
    await s3?.stop();
    if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
  });

  let seq = 0;
  function event(
    type: CustomResourceEvent['RequestType'],
    stack: Synthesized,
    extra: Partial<CustomResourceEvent> = {},
  ): CustomResourceEvent {
    return {
      RequestType: type,
      ResponseURL: cfn.url,
      StackId: `arn:${PARTITION}:cloudformation:${REGION}:${ACCOUNT}:stack/${stack.name}/1`,
      RequestId: `req-${++seq}`,
      LogicalResourceId: 'ImgResource',
      ResourceType: 'Custom::LadingTarballImage',
      ResourceProperties: stack.props,
      ...extra,
    };
  }

  /** Runs the handler over one event with `stack`'s properties and records the calls it made. */
  async function run(path: string, e: CustomResourceEvent, stack: Synthesized): Promise<CustomResourceResponse> {
    srv.resetCalls();
    const marks = { ecr: ecrProxy.log.length, s3: s3.proxy.log.length, srv: srvLines.length, cfn: cfn.received.length };
    // The function's environment (XDG_CACHE_HOME), pointed at a temp dir.
    const saved = process.env.XDG_CACHE_HOME;
    assert.ok(stack.environment.XDG_CACHE_HOME, 'the function sets XDG_CACHE_HOME');
    process.env.XDG_CACHE_HOME = cacheDir;
    let r: CustomResourceResponse;
    try {
      r = await handle(
        e,
        { getRemainingTimeInMillis: () => 900_000 },
        { s3: s3c, ecr, insecureRegistry: true, log: (l) => handlerLines.push(l) },
      );
    } finally {
      if (saved === undefined) delete process.env.XDG_CACHE_HOME;
      else process.env.XDG_CACHE_HOME = saved;
    }
    await new Promise((res) => setImmediate(res));
    assert.equal(cfn.received.length, marks.cfn + 1, 'one answer');
    assert.equal(r.Status, 'SUCCESS', `${path}: ${r.Reason}\n${handlerLines.join('\n')}`);
    const ecrLog = ecrProxy.log.slice(marks.ecr);
    const lines = srvLines.slice(marks.srv);
    // Nothing reached lading serve but through the recording proxy or the registry endpoint.
    const onWire: Record<string, number> = {};
    for (const r of ecrLog) {
      const op = String(r.headers['x-amz-target']).replace(/^.*\./, '');
      onWire[op] = (onWire[op] ?? 0) + 1;
    }
    for (const l of lines) {
      const m = /^(GET|HEAD|POST|PUT|PATCH|DELETE) (\/v2(?:\/\S*)?) -> /.exec(l);
      if (m) {
        const key = registryRoute(m[1]!, m[2]!).key;
        onWire[key] = (onWire[key] ?? 0) + 1;
      }
    }
    assert.deepEqual(onWire, { ...srv.calls }, `${path}: every call lading serve counted was recorded`);
    const calls = [...ecrCalls(ecrLog), ...registryCalls(lines), ...s3Calls(s3.proxy.log.slice(marks.s3))];
    runs.push({ path, stack, calls });
    return r;
  }

  it('runs Create (gzip; a zero-byte layer; an index), Update, Delete (RETAIN, DESTROY) and records each call', async (t) => {
    const created = await run('Create: docker archive, gzip', event('Create', stacks.A!), stacks.A!);
    await run('Create: zero-byte layer, compress none', event('Create', stacks.Zero!), stacks.Zero!);
    await run('Create: multi-platform index', event('Create', stacks.Multi!), stacks.Multi!);
    const updated = await run(
      'Update: a new archive',
      event('Update', stacks.B!, {
        PhysicalResourceId: created.PhysicalResourceId,
        OldResourceProperties: stacks.A!.props,
      }),
      stacks.B!,
    );
    assert.notEqual(updated.PhysicalResourceId, created.PhysicalResourceId);
    // CloudFormation then deletes the replaced id (with the old properties), and later the stack.
    await run(
      'Delete (RETAIN): the replaced id',
      event('Delete', stacks.A!, { PhysicalResourceId: created.PhysicalResourceId }),
      stacks.A!,
    );
    await run(
      'Delete (RETAIN)',
      event('Delete', stacks.B!, { PhysicalResourceId: updated.PhysicalResourceId }),
      stacks.B!,
    );
    await run(
      'Delete (DESTROY)',
      event('Delete', stacks.BDestroy!, { PhysicalResourceId: updated.PhysicalResourceId }),
      stacks.BDestroy!,
    );

    for (const r of runs)
      t.diagnostic(`${r.path}: ${[...new Set(r.calls.map((c) => c.action))].sort().join(' ') || 'no call'}`);
    const zero = runs.find((r) => r.path.startsWith('Create: zero-byte'))!;
    assert.ok(
      zero.calls.some((c) => c.seen === 'registry POST upload'),
      `the zero-byte layer took the registry endpoint:\n${handlerLines.join('\n')}`,
    );
    assert.deepEqual(runs.find((r) => r.path === 'Delete (RETAIN)')!.calls, [], 'a retained image: no call at all');
  });

  it('every action called is granted on the resource it was called on', () => {
    assert.ok(runs.length > 0, 'the paths ran');
    const denied: string[] = [];
    for (const r of runs) {
      for (const c of r.calls) {
        const ok = r.stack.grants.some(
          (g) => g.actions.some((a) => iamMatch(a, c.action)) && g.resources.some((res) => iamMatch(res, c.resource)),
        );
        if (!ok) denied.push(`${r.path} (stack ${r.stack.name}): ${c.action} on ${c.resource} (${c.seen})`);
      }
    }
    const grants = (s: Synthesized): string =>
      s.grants.map((g) => `  ${g.actions.join(', ')} on ${g.resources.join(', ')}`).join('\n');
    assert.deepEqual(
      [...new Set(denied)],
      [],
      `called but not granted:\n${[...new Set(denied)].join('\n')}\n\nthe grants of stack A:\n${grants(stacks.A!)}`,
    );
  });

  it('every action granted is called on some path of a resource with that removal policy (or listed with its reason)', () => {
    assert.ok(runs.length > 0, 'the paths ran');
    // Create and Update never read RemoveOnDelete: their calls count for both policies; a Delete's for its own.
    const calledUnder = (removal: Synthesized['removal']): Set<string> =>
      new Set(
        runs
          .filter((r) => !r.path.startsWith('Delete') || r.stack.removal === removal)
          .flatMap((r) => r.calls.map((c) => c.action)),
      );
    const unused: string[] = [];
    for (const s of Object.values(stacks)) {
      const called = calledUnder(s.removal);
      for (const g of s.grants) {
        for (const a of g.actions) {
          if (a.includes('*')) unused.push(`${s.name}: ${a} is a wildcard grant`);
          else if (!called.has(a) && !(a in GRANTED_UNCALLED))
            unused.push(`${s.name} (${s.removal}): ${a} on ${g.resources.join(', ')}`);
        }
      }
    }
    assert.deepEqual([...new Set(unused)], [], `granted but never called:\n${[...new Set(unused)].join('\n')}`);
    for (const a of Object.keys(GRANTED_UNCALLED)) {
      assert.ok(
        Object.values(stacks).some((s) => s.grants.some((g) => g.actions.includes(a))),
        `GRANTED_UNCALLED lists ${a}, which no stack grants any more: remove it`,
      );
    }
  });

  it('RemovalPolicy.DESTROY adds ecr:BatchDeleteImage on the repository and nothing else', () => {
    const pairs = (s: Synthesized): Set<string> =>
      new Set(s.grants.flatMap((g) => g.actions.flatMap((a) => g.resources.map((r) => `${a} ${r}`))));
    const retain = pairs(stacks.B!);
    const destroy = pairs(stacks.BDestroy!);
    const added = [...destroy].filter((p) => !retain.has(p));
    const removed = [...retain].filter((p) => !destroy.has(p));
    assert.deepEqual(removed, []);
    assert.deepEqual(added, [`ecr:BatchDeleteImage ${repositoryArn(REGION, ACCOUNT, stacks.B!.props.RepositoryName)}`]);
  });
});
