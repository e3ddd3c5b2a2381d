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
 * GET or HEAD of an object is s3:GetObject on the object ARN, a PUT s3:PutObject...: iam-rig.ts,
 * shared with iam-calls-provider.test.ts, which covers the Provider-framework path), and then:
 *   - every action called is granted, on that resource, by the policy attached to the handler's
 *     role in the stack whose properties the call ran with;
 *   - every action granted is called on some path of a resource with that removal policy, but
 *     for the exceptions listed in GRANTED_UNCALLED with their reason.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RemovalPolicy } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { CreateRepositoryCommand, ECRClient } from '@aws-sdk/client-ecr';
import { S3Client } from '@aws-sdk/client-s3';
import {
  handle,
  type CustomResourceEvent,
  type CustomResourceResponse,
  type TarballImageResourceProperties,
} from '../../src/cdk/handler';
import { TarballImageCompression, type TarballImageProps } from '../../src/cdk';
import { SERVE_CREDENTIALS, startTestServer, type TestServer } from '../serve/helpers';
import { ensureHandlerBundle, multiPlatformArchive } from './helpers';
import {
  recordingProxy,
  responseReceiver,
  startS3,
  type RecordingProxy,
  type ResponseReceiver,
  type S3Rig,
} from './bundled-rig';
import {
  ACCOUNT,
  allows,
  dockerArchive,
  evaluate,
  functionRole,
  cfnEvents,
  synthesizeEach,
  REGION,
  repositoryArn,
  roleGrants,
  wireCalls,
  zeroByteLayerArchive,
  type Call,
  type Grant,
  type Json,
} from './iam-rig';

/**
 * Granted actions no test path calls, each with the reason it is granted all the same. Empty:
 * every grant is exercised. An entry needs a reason a reviewer can check.
 */
const GRANTED_UNCALLED: Record<string, string> = {};

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

/** Reads one stack's template: the handler function, its role, the policies attached to it, the custom resource. */
function readStack(name: string, removal: Synthesized['removal'], template: Template): Synthesized {
  const fns = Object.entries(template.findResources('AWS::Lambda::Function'));
  assert.equal(fns.length, 1, `${name}: one function, the handler`);
  const [fnId, fn] = fns[0]! as [string, { Properties: { Environment?: { Variables?: Record<string, string> } } }];
  const grants = roleGrants(name, template, functionRole(template, fnId));
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
    Object.assign(
      stacks,
      synthesizeEach(specs, (s, t) => readStack(s.name, s.removal, t)),
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

  const event = cfnEvents(() => cfn.url);

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
    // Nothing reached lading serve but through the recording proxy or the registry endpoint.
    const calls = wireCalls(
      path,
      { ecr: ecrProxy.log.slice(marks.ecr), serveLines: srvLines.slice(marks.srv), s3: s3.proxy.log.slice(marks.s3) },
      srv.calls,
    );
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
        if (!allows(r.stack.grants, c))
          denied.push(`${r.path} (stack ${r.stack.name}): ${c.action} on ${c.resource} (${c.seen})`);
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
