/**
 * The parts shared by the IAM-calls tests (iam-calls.test.ts: the single-invocation handler;
 * iam-calls-provider.test.ts: the Provider framework's onEvent and isComplete): CloudFormation
 * values evaluated for one account and region, IAM's wildcard match, the Allow statements of the
 * policies attached to a role in a synthesized template, and the calls seen on the wire (ECR's
 * JSON API and S3 through recording proxies, the registry API from lading serve's request log)
 * turned into IAM actions on resources, by the documented IAM action of each API. No side
 * effects at import.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { TarballImage, type TarballImageProps } from '../../src/cdk';
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
import type { CustomResourceEvent, TarballImageResourceProperties } from '../../src/cdk/handler';
import type { Recorded } from './bundled-rig';

export const ACCOUNT = '000000000000'; // lading serve's registry id
export const REGION = 'us-east-1';
export const PARTITION = 'aws';

/** The AWS-managed policies the handler's role may carry, and why they are outside the comparison. */
export const MANAGED_POLICIES: Record<string, string> = {
  [`arn:${PARTITION}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole`]:
    "logs:CreateLogGroup/CreateLogStream/PutLogEvents: the Lambda runtime writes the handler's console output to CloudWatch; the handler itself makes no logs call",
};

// ---------------------------------------------------------------------------------------------
// CloudFormation values, evaluated for one account and region

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const PSEUDO: Record<string, string> = {
  'AWS::Partition': PARTITION,
  'AWS::AccountId': ACCOUNT,
  'AWS::Region': REGION,
  'AWS::URLSuffix': 'amazonaws.com',
};

/** Evaluates Ref (pseudo parameters), Fn::Join, Fn::Sub and Fn::Select; anything else is an error (or, with `lenient`, a placeholder). */
export function evaluate(v: Json, lenient = false): Json {
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
export function iamMatch(pattern: string, value: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
    'i',
  );
  return re.test(value);
}

export interface Grant {
  actions: string[];
  resources: string[];
}

export const asList = (x: Json | undefined): Json[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

/**
 * The Allow statements of the policies attached to role `roleId` of `template`, evaluated. The
 * role may carry only the managed policies of MANAGED_POLICIES and no inline policy of its own;
 * a statement with anything but Effect Allow, Action, Resource and Sid fails (extend the
 * comparison first).
 */
export function roleGrants(name: string, template: Template, roleId: string): Grant[] {
  const role = template.findResources('AWS::IAM::Role')[roleId] as
    { Properties: { Policies?: unknown; ManagedPolicyArns?: Json } } | undefined;
  assert.ok(role, `${name}: the role ${roleId} is in the stack`);
  assert.equal(role.Properties.Policies, undefined, `${name}: no inline policies on the role ${roleId} itself`);
  for (const arn of asList(evaluate(role.Properties.ManagedPolicyArns ?? []))) {
    assert.ok(
      String(arn) in MANAGED_POLICIES,
      `${name}: managed policy ${String(arn)} on the role ${roleId}: add it to the comparison`,
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
  assert.ok(attached >= 1, `${name}: a policy is attached to the role ${roleId}`);
  return grants;
}

/** The logical id of the role a function of the template runs with. */
export function functionRole(template: Template, functionId: string): string {
  const fn = template.findResources('AWS::Lambda::Function')[functionId] as
    { Properties: { Role: { 'Fn::GetAtt': [string, string] } } } | undefined;
  assert.ok(fn, `function ${functionId} is in the stack`);
  return fn.Properties.Role['Fn::GetAtt'][0];
}

// ---------------------------------------------------------------------------------------------
// the calls seen on the wire, as IAM actions

export interface Call {
  action: string;
  resource: string;
  /** What was seen: `ECR PutImage`, `registry PUT upload`, `S3 GET /bucket/key`. */
  seen: string;
}

/** Whether `grants` allow `c.action` on `c.resource`. */
export function allows(grants: readonly Grant[], c: Call): boolean {
  return grants.some(
    (g) => g.actions.some((a) => iamMatch(a, c.action)) && g.resources.some((r) => iamMatch(r, c.resource)),
  );
}

/** SigV4 credential scope of a request: region and service. */
export function scope(r: Recorded): { region: string; service: string } {
  const m = /Credential=[^/]+\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request/.exec(String(r.headers.authorization ?? ''));
  assert.ok(m, `a signed request: ${r.method} ${r.url}`);
  return { region: m[1]!, service: m[2]! };
}

export const repositoryArn = (region: string, registryId: string, name: string): string =>
  `arn:${PARTITION}:ecr:${region}:${registryId}:repository/${name}`;

/** ECR's JSON API: `ecr:<Operation>` on the repository the body names (GetAuthorizationToken: `*`, it takes no resource). */
export function ecrCalls(log: Recorded[]): Call[] {
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
export const REGISTRY_ACTIONS: Record<string, string[]> = {
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

const REGISTRY_LINE = /^(GET|HEAD|POST|PUT|PATCH|DELETE) (\/v2(?:\/\S*)?) -> /;

/** Registry calls from lading serve's request log (`METHOD /v2/... -> STATUS`): they go to the endpoint GetAuthorizationToken names, not through the ECR proxy. */
export function registryCalls(lines: string[]): Call[] {
  return lines.flatMap((l) => {
    const m = REGISTRY_LINE.exec(l);
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
export function s3Calls(log: Recorded[]): Call[] {
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

/**
 * Every call of one invocation as IAM actions: ECR's API through its proxy, the registry API
 * from lading serve's request log, S3 through its proxy. `counted` is what lading serve counted
 * meanwhile (its `calls`): every one of them must be on the wire the test saw, or a call escaped
 * the recording.
 */
export function wireCalls(
  what: string,
  seen: { ecr: Recorded[]; serveLines: string[]; s3: Recorded[] },
  counted: Record<string, number>,
): Call[] {
  const onWire: Record<string, number> = {};
  for (const r of seen.ecr) {
    const op = String(r.headers['x-amz-target']).replace(/^.*\./, '');
    onWire[op] = (onWire[op] ?? 0) + 1;
  }
  for (const l of seen.serveLines) {
    const m = REGISTRY_LINE.exec(l);
    if (m) {
      const key = registryRoute(m[1]!, m[2]!).key;
      onWire[key] = (onWire[key] ?? 0) + 1;
    }
  }
  assert.deepEqual(onWire, { ...counted }, `${what}: every call lading serve counted was recorded`);
  return [...ecrCalls(seen.ecr), ...registryCalls(seen.serveLines), ...s3Calls(seen.s3)];
}

// ---------------------------------------------------------------------------------------------
// archives

/** A docker-save archive with two uncompressed layers (`docker save` stores them so: the handler compresses them). */
export async function dockerArchive(seed: string): Promise<string> {
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
export async function zeroByteLayerArchive(seed = 'iam-zero'): Promise<string> {
  const store = new BlobStore();
  const empty = Buffer.alloc(0);
  const d = digestOf(empty);
  const layers: Layer[] = [
    ...(await sampleLayers(seed, ['gzip'])),
    { tar: empty, diffId: d, compression: 'none', data: empty, digest: d, size: 0 },
  ];
  const m = putImageManifest(store, { os: 'linux', architecture: 'amd64' }, layers);
  const p = freshPath(`${seed}.tar`);
  writeFileSync(
    p,
    await tarBuffer([
      ...store.entries(),
      file(
        'index.json',
        indexJson([withAnnotations(m.desc, { 'org.opencontainers.image.ref.name': `iam/${seed}:1` })]),
      ),
      file('oci-layout', OCI_LAYOUT),
    ]),
  );
  return p;
}

/**
 * CloudFormation's requests for the synthesized stacks of a rig, each with its own RequestId, the
 * answer going to `responseUrl()` (read at each call: the receiver starts after the rig is built).
 */
export function cfnEvents(responseUrl: () => string) {
  let seq = 0;
  return (
    type: CustomResourceEvent['RequestType'],
    stack: { name: string; props: TarballImageResourceProperties },
    extra: Partial<CustomResourceEvent> = {},
  ): CustomResourceEvent => ({
    RequestType: type,
    ResponseURL: responseUrl(),
    StackId: `arn:${PARTITION}:cloudformation:${REGION}:${ACCOUNT}:stack/${stack.name}/1`,
    RequestId: `req-${++seq}`,
    LogicalResourceId: 'ImgResource',
    ResourceType: 'Custom::LadingTarballImage',
    ResourceProperties: stack.props,
    ...extra,
  });
}

/**
 * One app, one synthesis, a stack per spec holding one TarballImage (ACCOUNT, REGION): each
 * stack's template read by `read`, by the spec's name.
 */
export function synthesizeEach<S extends { name: string; props: TarballImageProps }, T>(
  specs: readonly S[],
  read: (spec: S, template: Template) => T,
): Record<string, T> {
  const app = new App();
  const made = specs.map((s) => {
    const stack = new Stack(app, s.name, { env: { account: ACCOUNT, region: REGION } });
    new TarballImage(stack, 'Img', s.props);
    return { spec: s, stack };
  });
  const asm = app.synth();
  const out: Record<string, T> = {};
  for (const { spec, stack } of made) {
    const template = asm.getStackByName(stack.stackName).template as Record<string, unknown>;
    out[spec.name] = read(spec, Template.fromJSON(template));
  }
  return out;
}
