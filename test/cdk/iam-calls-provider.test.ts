/**
 * What the handler calls on the Provider-framework path against what the construct grants
 * (issue 13; iam-calls.test.ts covers the single-invocation path; the rig, the action mapping
 * included, is iam-rig.ts). Stacks whose TarballImage has `totalTimeout` set are synthesized; the custom
 * resource's service token is the framework, whose onEvent and isComplete functions call the
 * TarballImage's own two functions (read from the framework's USER_ON_EVENT_FUNCTION_ARN and
 * USER_IS_COMPLETE_FUNCTION_ARN). The handler's real code (`providerOnEvent`,
 * `providerIsComplete`, what those functions' entry points run) is driven as the framework's
 * state machine would drive it, isComplete getting the request merged with what onEvent
 * returned, against s3rver and `lading serve` behind recording proxies, every invocation in a
 * fresh container (an empty /tmp: the digest cache beside the asset is read from S3):
 *   - a Create that spans invocations (each drains at once: one blob per invocation), with
 *     the digest cache `<asset>.lading-digests.jsonl` read and written;
 *   - Creates of a zero-byte layer (it takes the registry endpoint and its token) and of a
 *     multi-platform index (its child manifests are looked up), spanning invocations too;
 *   - an Update to another archive done within onEvent, isComplete then only confirming, and
 *     the Deletes CloudFormation then sends (RETAIN: the replaced id and the stack; DESTROY);
 *   - a fatal isComplete failure (a layer blob whose bytes are not what its digest says, synth
 *     not verifying blobs), which answers FAILED itself and writes the marker
 *     `<asset>.lading-failed-<RequestId>`; the next isComplete sees the marker; the Delete of
 *     the failed Create.
 * Every call seen on the wire becomes an IAM action on a resource (the documented IAM action of
 * each ECR and S3 API, iam-rig.ts), and then:
 *   - every action a function calls is granted, on that resource, to the role THAT function runs
 *     with (onEvent's calls to onEvent's role, isComplete's to isComplete's);
 *   - every action granted to either role, on each resource it is granted on, is called by a
 *     function running with that role on some path of a resource with that removal policy, but
 *     for GRANTED_UNCALLED with its reason.
 * The Provider framework's own functions (framework-onEvent, -isComplete, -onTimeout) and their
 * roles are aws-cdk-lib's (lambda:InvokeFunction on the two functions, states:StartExecution):
 * outside this comparison.
 *
 * Each check can fail: the last test runs the same checks on the synthesized policies as read
 * here with one grant removed (s3:PutObject from isComplete's, ecr:BatchDeleteImage from
 * onEvent's) and one added (ecr:ListImages), and sees them reported. Checked by hand as well:
 * dropping s3:PutObject from every role's grants in readProviderStack (test code, not src) fails
 * the second test, naming the digest cache's PUTs of onEvent and isComplete and the marker's PUT
 * of isComplete; adding ecr:ListImages there fails the third.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { CreateRepositoryCommand, ECRClient } from '@aws-sdk/client-ecr';
import { S3Client } from '@aws-sdk/client-s3';
import {
  providerIsComplete,
  providerOnEvent,
  type CustomResourceEvent,
  type HandlerContext,
  type HandlerDeps,
  type IsCompleteEvent,
  type TarballImageResourceProperties,
} from '../../src/cdk/handler';
import { TarballImageCompression, type TarballImageProps } from '../../src/cdk';
import {
  BlobStore,
  file,
  freshPath,
  indexJson,
  OCI_LAYOUT,
  putImageManifest,
  sampleLayers,
  tarBuffer,
  withAnnotations,
} from '../fixtures';
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
  iamMatch,
  PARTITION,
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

/** The ECR client signs with lading serve's default key pair (SERVE_CREDENTIALS); S3 with s3rver's fixed one. */
const S3RVER_KEYS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

type Fn = 'onEvent' | 'isComplete';

interface UserFunction {
  /** Logical id of the function and of the role it runs with. */
  id: string;
  roleId: string;
  /** The Allow statements of the policies attached to that role, evaluated. */
  grants: Grant[];
  environment: Record<string, string>;
}

interface ProviderStack {
  name: string;
  removal: 'RETAIN' | 'DESTROY';
  /** The custom resource's properties, as the handler receives them. */
  props: TarballImageResourceProperties;
  onEvent: UserFunction;
  isComplete: UserFunction;
}

type FnResource = {
  Properties: { Handler?: string; Role: Json; Environment?: { Variables?: Record<string, Json> } };
};

/**
 * Reads one stack's template: the custom resource, the framework function its service token
 * names, the two functions that one calls (the TarballImage's onEvent and isComplete), the role
 * each runs with and the policies attached to it.
 */
function readProviderStack(name: string, removal: ProviderStack['removal'], template: Template): ProviderStack {
  const fns = template.findResources('AWS::Lambda::Function') as Record<string, FnResource>;
  const resources = Object.values(template.findResources('Custom::LadingTarballImage'));
  assert.equal(resources.length, 1);
  const raw = (resources[0] as { Properties: Record<string, Json> }).Properties;
  const token = raw.ServiceToken as { 'Fn::GetAtt'?: [string, string] };
  const frameworkId = token['Fn::GetAtt']?.[0];
  assert.ok(frameworkId && fns[frameworkId], `${name}: the service token is a function of the stack`);
  const vars = fns[frameworkId]!.Properties.Environment?.Variables ?? {};
  const userFn = (variable: string, handler: string): UserFunction => {
    const ref = vars[variable] as { 'Fn::GetAtt'?: [string, string] } | undefined;
    const id = ref?.['Fn::GetAtt']?.[0];
    assert.ok(id && fns[id], `${name}: the framework's ${variable} names a function of the stack`);
    // The entry point of the bundle that function runs: index.onEvent runs providerOnEvent,
    // index.isComplete providerIsComplete (src/cdk/handler.ts), what this test drives.
    assert.equal(fns[id]!.Properties.Handler, handler, `${name}: ${variable}'s entry point`);
    const roleId = functionRole(template, id);
    return {
      id,
      roleId,
      grants: roleGrants(`${name} (${id})`, template, roleId),
      environment: Object.fromEntries(Object.entries(fns[id]!.Properties.Environment?.Variables ?? {})) as Record<
        string,
        string
      >,
    };
  };
  const onEvent = userFn('USER_ON_EVENT_FUNCTION_ARN', 'index.onEvent');
  const isComplete = userFn('USER_IS_COMPLETE_FUNCTION_ARN', 'index.isComplete');
  const { ServiceToken: _token, ...props } = evaluate(raw, true) as unknown as TarballImageResourceProperties;
  assert.equal(props.RemoveOnDelete, removal === 'DESTROY' ? 'true' : 'false');
  return { name, removal, props: props as TarballImageResourceProperties, onEvent, isComplete };
}

/**
 * An OCI archive whose second layer blob (gzip, as pushed) holds other bytes of the same size
 * than those its digest names: synth with verifyAtSynth false reads only the JSON documents and
 * the sizes; the handler finds out while it uploads the blob, a fatal error.
 */
async function corruptLayerArchive(seed: string): Promise<string> {
  const [good, promised] = await sampleLayers(seed, ['gzip', 'gzip']);
  const store = new BlobStore();
  const m = putImageManifest(store, { os: 'linux', architecture: 'amd64' }, [good!, promised!]);
  const damaged = Buffer.from(promised!.data);
  damaged[damaged.length >> 1] ^= 0xff;
  store.putAs(promised!.digest, damaged);
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

interface Run {
  path: string;
  fn: Fn;
  stack: ProviderStack;
  calls: Call[];
}

/** Calls made but not granted to the role of the function that made them. */
function denied(runs: readonly Run[], grantsOf: (r: Run) => Grant[]): string[] {
  const out = new Set<string>();
  for (const r of runs)
    for (const c of r.calls)
      if (!allows(grantsOf(r), c))
        out.add(
          `${r.path} [${r.fn}, role ${r.stack[r.fn].roleId} of ${r.stack.name}]: ${c.action} on ${c.resource} (${c.seen})`,
        );
  return [...out];
}

/** A resource with the stack's asset key written `<asset>`: the grants on a stack's archive and its side objects have one shape in every stack. */
const ofAsset = (resource: string, s: ProviderStack): string => resource.split(s.props.Key).join('<asset>');

/**
 * Grants (action on resource) to the role of either function that no function running with that
 * role called on some path: Creates and Updates never read RemoveOnDelete, their calls count
 * for both policies; a Delete's for its own. Resources are compared with each stack's asset key
 * as `<asset>` (the failure marker is written by one stack's path, and every stack's
 * `<asset>.lading-*` grant is there for it).
 */
function unused(
  runs: readonly Run[],
  stacks: readonly ProviderStack[],
  grantsOf: (s: ProviderStack, fn: Fn) => Grant[],
): string[] {
  const out = new Set<string>();
  for (const s of stacks) {
    for (const fn of ['onEvent', 'isComplete'] as const) {
      const roleId = s[fn].roleId;
      const calls = runs
        .filter((r) => r.stack[r.fn].roleId === roleId)
        .filter((r) => !r.path.startsWith('Delete') || r.stack.removal === s.removal)
        .flatMap((r) => r.calls.map((c) => ({ ...c, resource: ofAsset(c.resource, r.stack) })));
      for (const g of grantsOf(s, fn)) {
        for (const a of g.actions) {
          if (a.includes('*')) {
            out.add(`${s.name} role ${roleId}: ${a} is a wildcard grant`);
            continue;
          }
          if (a in GRANTED_UNCALLED) continue;
          for (const res of g.resources)
            if (!calls.some((c) => c.action === a && iamMatch(ofAsset(res, s), c.resource)))
              out.add(`${s.name} (${s.removal}) role ${roleId}: ${a} on ${res}`);
        }
      }
    }
  }
  return [...out];
}

describe("the Provider path's calls (onEvent, isComplete) against the IAM policies of the roles they run with", () => {
  let s3: S3Rig;
  let srv: TestServer;
  let ecrProxy: RecordingProxy;
  let cfn: ResponseReceiver;
  let s3c: S3Client;
  let ecr: ECRClient;
  let cacheRoot: string;
  const srvLines: string[] = [];
  const handlerLines: string[] = [];
  const stacks: Record<string, ProviderStack> = {};
  const runs: Run[] = [];

  before(async () => {
    ensureHandlerBundle();
    const archives = {
      a: await dockerArchive('iam-provider-a'),
      b: await dockerArchive('iam-provider-b'),
      zero: await zeroByteLayerArchive('iam-provider-zero'),
      multi: await multiPlatformArchive(),
      corrupt: await corruptLayerArchive('iam-provider-corrupt'),
    };
    const provider = { totalTimeout: Duration.hours(1) };
    const specs: { name: string; removal: ProviderStack['removal']; props: TarballImageProps }[] = [
      { name: 'PA', removal: 'RETAIN', props: { tarball: archives.a, ...provider } },
      { name: 'PB', removal: 'RETAIN', props: { tarball: archives.b, ...provider } },
      {
        name: 'PBDestroy',
        removal: 'DESTROY',
        props: { tarball: archives.b, removalPolicy: RemovalPolicy.DESTROY, ...provider },
      },
      {
        name: 'PZero',
        removal: 'RETAIN',
        props: { tarball: archives.zero, compress: TarballImageCompression.NONE, ...provider },
      },
      { name: 'PMulti', removal: 'RETAIN', props: { tarball: archives.multi, ...provider } },
      { name: 'PCorrupt', removal: 'RETAIN', props: { tarball: archives.corrupt, verifyAtSynth: false, ...provider } },
    ];
    Object.assign(
      stacks,
      synthesizeEach(specs, (s, t) => readProviderStack(s.name, s.removal, t)),
    );

    const first = stacks.PA!.props;
    s3 = await startS3(first.Bucket);
    cfn = await responseReceiver();
    srv = await startTestServer({ logger: (l) => srvLines.push(l) });
    ecrProxy = await recordingProxy(srv.port);
    cacheRoot = mkdtempSync(join(tmpdir(), 'lading-iam-provider-cache-'));
    for (const s of specs) {
      const st = stacks[s.name]!;
      assert.equal(st.props.Bucket, first.Bucket);
      assert.match(st.props.Key, /^[0-9a-f]{64}\.tar$/);
      await s3.put(st.props.Key, readFileSync(s.props.tarball));
    }
    await srv.ecr.send(new CreateRepositoryCommand({ repositoryName: first.RepositoryName }));
    s3c = new S3Client({
      endpoint: s3.proxy.url,
      forcePathStyle: true,
      region: REGION,
      credentials: S3RVER_KEYS,
      maxAttempts: 1,
    });
    ecr = new ECRClient({
      endpoint: ecrProxy.url,
      region: REGION,
      credentials: { ...SERVE_CREDENTIALS },
      maxAttempts: 1,
    });
  });

  after(async () => {
    s3c?.destroy();
    ecr?.destroy();
    await ecrProxy?.stop();
    await srv?.stop();
    await cfn?.stop();
    await s3?.stop();
    if (cacheRoot) rmSync(cacheRoot, { recursive: true, force: true });
  });

  const event = cfnEvents(() => cfn.url);

  /** An invocation with 20 s left and no margin, draining at once: one blob, then "not done". */
  const brief = { ctx: { getRemainingTimeInMillis: () => 20_000 }, deps: { marginMs: 0, drainMs: 20_000 } };
  /** A full 15-minute invocation. */
  const full = { ctx: { getRemainingTimeInMillis: () => 900_000 }, deps: {} };

  /**
   * Runs one invocation of `fn` (with `stack`'s properties and function environment, in a fresh
   * container: an empty XDG_CACHE_HOME) and records the calls it made.
   */
  async function invoke<T>(
    path: string,
    fn: Fn,
    stack: ProviderStack,
    budget: { ctx: HandlerContext; deps: Partial<HandlerDeps> },
    call: (ctx: HandlerContext, deps: HandlerDeps) => Promise<T>,
  ): Promise<T> {
    srv.resetCalls();
    const marks = { ecr: ecrProxy.log.length, s3: s3.proxy.log.length, srv: srvLines.length };
    const saved = process.env.XDG_CACHE_HOME;
    assert.ok(stack[fn].environment.XDG_CACHE_HOME, `${fn}: the function sets XDG_CACHE_HOME`);
    process.env.XDG_CACHE_HOME = mkdtempSync(join(cacheRoot, 'container-'));
    let out: T;
    try {
      out = await call(budget.ctx, {
        s3: s3c,
        ecr,
        insecureRegistry: true,
        log: (l) => handlerLines.push(l),
        ...budget.deps,
      });
    } finally {
      if (saved === undefined) delete process.env.XDG_CACHE_HOME;
      else process.env.XDG_CACHE_HOME = saved;
    }
    await new Promise((res) => setImmediate(res));
    const calls = wireCalls(
      `${path} [${fn}]`,
      {
        ecr: ecrProxy.log.slice(marks.ecr),
        serveLines: srvLines.slice(marks.srv),
        s3: s3.proxy.log.slice(marks.s3),
      },
      srv.calls,
    );
    runs.push({ path, fn, stack, calls });
    return out;
  }

  const onEvent = (path: string, stack: ProviderStack, e: CustomResourceEvent, budget = full) =>
    invoke(path, 'onEvent', stack, budget, (ctx, deps) => providerOnEvent(e, ctx, deps));
  const isComplete = (path: string, stack: ProviderStack, e: IsCompleteEvent, budget = full) =>
    invoke(path, 'isComplete', stack, budget, (ctx, deps) => providerIsComplete(e, ctx, deps));

  /** The framework: onEvent, then isComplete (the request merged with onEvent's result) until complete. */
  async function lifecycle(
    path: string,
    stack: ProviderStack,
    e: CustomResourceEvent,
    budget = full,
  ): Promise<{ physical: string; data?: IsCompleteEvent['Data']; isCompleteCalls: number }> {
    const r = await onEvent(path, stack, e, budget);
    const merged: IsCompleteEvent = { ...e, PhysicalResourceId: r.PhysicalResourceId, Data: r.Data };
    for (let n = 1; n <= 20; n++) {
      const done = await isComplete(path, stack, merged, budget);
      if (done.IsComplete)
        return {
          physical: done.PhysicalResourceId ?? r.PhysicalResourceId,
          data: done.Data ?? r.Data,
          isCompleteCalls: n,
        };
    }
    throw new Error(`${path}: not complete after 20 isComplete calls\n${handlerLines.join('\n')}`);
  }

  it('runs Creates across invocations (a docker archive, a zero-byte layer, an index), an Update in onEvent, Deletes (RETAIN, DESTROY), a fatal isComplete failure, and records each call', async (t) => {
    const { PA, PB, PBDestroy, PZero, PMulti, PCorrupt } = stacks as Record<string, ProviderStack>;
    const answers = cfn.received.length;

    const created = await lifecycle('Create: docker archive, across invocations', PA!, event('Create', PA!), brief);
    assert.ok(created.isCompleteCalls > 1, `the Create went on in isComplete (${created.isCompleteCalls} calls)`);
    assert.match(created.physical, /:lading-[0-9a-f]{40}@sha256:[0-9a-f]{64}$/);
    // The registry endpoint (a zero-byte blob) and an index's child manifests, across invocations too.
    const zero = await lifecycle(
      'Create: zero-byte layer, compress none, across invocations',
      PZero!,
      event('Create', PZero!),
      brief,
    );
    assert.ok(zero.isCompleteCalls > 1, `the Create went on in isComplete (${zero.isCompleteCalls} calls)`);
    const multi = await lifecycle(
      'Create: multi-platform index, across invocations',
      PMulti!,
      event('Create', PMulti!),
      brief,
    );
    assert.ok(multi.isCompleteCalls > 1, `the Create went on in isComplete (${multi.isCompleteCalls} calls)`);
    const updated = await lifecycle(
      'Update: a new archive',
      PB!,
      event('Update', PB!, { PhysicalResourceId: created.physical, OldResourceProperties: PA!.props }),
    );
    assert.equal(updated.isCompleteCalls, 1, 'done in onEvent: isComplete confirms');
    assert.notEqual(updated.physical, created.physical);
    // CloudFormation then deletes the replaced id (with the old properties), and later the stack.
    await lifecycle(
      'Delete (RETAIN): the replaced id',
      PA!,
      event('Delete', PA!, { PhysicalResourceId: created.physical }),
    );
    await lifecycle('Delete (RETAIN)', PB!, event('Delete', PB!, { PhysicalResourceId: updated.physical }));
    await lifecycle(
      'Delete (DESTROY)',
      PBDestroy!,
      event('Delete', PBDestroy!, { PhysicalResourceId: updated.physical }),
    );
    assert.equal(cfn.received.length, answers, 'the framework answers CloudFormation on these paths, not the handler');

    // The fatal failure: onEvent stops after one blob, the next isComplete (a full invocation)
    // reaches the corrupt layer, answers FAILED and writes the marker; the framework goes on
    // calling isComplete, which finds the marker; CloudFormation deletes the failed Create.
    const bad = event('Create', PCorrupt!);
    const started = await onEvent('Create: a corrupt layer (onEvent)', PCorrupt!, bad, brief);
    assert.match(started.PhysicalResourceId, /^lading-create-pending-/, 'onEvent did not reach the corrupt layer');
    const pending: IsCompleteEvent = { ...bad, PhysicalResourceId: started.PhysicalResourceId };
    assert.deepEqual(await isComplete('Create: a corrupt layer, fatal', PCorrupt!, pending), { IsComplete: false });
    assert.equal(cfn.received.length, answers + 1, 'isComplete answered FAILED itself');
    const failed = JSON.parse(cfn.received.at(-1)!.body.toString('utf8')) as {
      Status: string;
      PhysicalResourceId: string;
    };
    assert.equal(failed.Status, 'FAILED');
    const marker = `${PCorrupt!.props.Key}.lading-failed-${bad.RequestId}`;
    assert.ok(
      runs.at(-1)!.calls.some((c) => c.action === 's3:PutObject' && c.resource.endsWith(`/${marker}`)),
      `the marker ${marker} was written:\n${handlerLines.slice(-20).join('\n')}`,
    );
    assert.deepEqual(await isComplete('Create: a corrupt layer, marked', PCorrupt!, pending), { IsComplete: false });
    assert.deepEqual(
      runs.at(-1)!.calls.map((c) => `${c.action} ${c.resource.replace(/^.*\//, '')}`),
      [`s3:GetObject ${marker}`],
      'a marked request: the marker HEAD alone',
    );
    assert.equal(cfn.received.length, answers + 1, 'no second answer');
    await lifecycle(
      'Delete (RETAIN): the failed Create',
      PCorrupt!,
      event('Delete', PCorrupt!, { PhysicalResourceId: failed.PhysicalResourceId }),
    );

    for (const r of runs)
      t.diagnostic(`${r.path} [${r.fn}]: ${[...new Set(r.calls.map((c) => c.action))].sort().join(' ') || 'no call'}`);
    const cacheKey = `${PA!.props.Key}.lading-digests.jsonl`;
    const paCalls = runs.filter((r) => r.stack === PA && r.path.startsWith('Create')).flatMap((r) => r.calls);
    for (const action of ['s3:GetObject', 's3:PutObject'])
      assert.ok(
        paCalls.some((c) => c.action === action && c.resource.endsWith(`/${cacheKey}`)),
        `${action} of the digest cache ${cacheKey}`,
      );
    assert.ok(
      runs.some((r) => r.stack === PZero && r.calls.some((c) => c.seen === 'registry POST upload')),
      `the zero-byte layer took the registry endpoint:\n${handlerLines.join('\n')}`,
    );
    assert.deepEqual(
      runs.filter((r) => r.path === 'Delete (RETAIN)').flatMap((r) => r.calls),
      [],
      'a retained image: no call at all',
    );
    assert.ok(
      runs.some((r) => r.path === 'Delete (DESTROY)' && r.calls.some((c) => c.action === 'ecr:BatchDeleteImage')),
    );
  });

  it("every action a function calls is granted, on the resource it was called on, to that function's role", () => {
    assert.ok(runs.length > 0, 'the paths ran');
    const d = denied(runs, (r) => r.stack[r.fn].grants);
    const table = (s: ProviderStack, fn: Fn): string =>
      `${fn} (${s[fn].id}, role ${s[fn].roleId}):\n` +
      s[fn].grants.map((g) => `  ${g.actions.join(', ')} on ${g.resources.join(', ')}`).join('\n');
    assert.deepEqual(
      d,
      [],
      `called but not granted:\n${d.join('\n')}\n\nthe grants of stack PA:\n${table(stacks.PA!, 'onEvent')}\n${table(stacks.PA!, 'isComplete')}`,
    );
  });

  it('every action granted to either role is called, on each resource granted, by a function with that role (or listed with its reason)', (t) => {
    assert.ok(runs.length > 0, 'the paths ran');
    for (const fn of ['onEvent', 'isComplete'] as const) {
      const s = stacks.PBDestroy!;
      t.diagnostic(
        `${fn} runs with ${s[fn].roleId}: ${s[fn].grants.map((g) => `${g.actions.join(',')} on ${g.resources.join(',')}`).join('; ')}`,
      );
    }
    // For the record, not asserted: what a function's role grants that this function itself never
    // called (the two share one role, src/cdk/tarball-image.ts; isComplete answers a Delete at once).
    for (const fn of ['onEvent', 'isComplete'] as const) {
      const own = new Set(runs.filter((r) => r.fn === fn).flatMap((r) => r.calls.map((c) => c.action)));
      const granted = new Set(stacks.PBDestroy![fn].grants.flatMap((g) => g.actions));
      t.diagnostic(`${fn} never called itself: ${[...granted].filter((a) => !own.has(a)).join(' ') || 'nothing'}`);
    }
    const u = unused(runs, Object.values(stacks), (s, fn) => s[fn].grants);
    assert.deepEqual(u, [], `granted but never called:\n${u.join('\n')}`);
    for (const a of Object.keys(GRANTED_UNCALLED)) {
      assert.ok(
        Object.values(stacks).some((s) =>
          [s.onEvent, s.isComplete].some((f) => f.grants.some((g) => g.actions.includes(a))),
        ),
        `GRANTED_UNCALLED lists ${a}, which no role grants any more: remove it`,
      );
    }
  });

  it('RemovalPolicy.DESTROY adds ecr:BatchDeleteImage on the repository and nothing else, to either role', () => {
    const pairs = (s: ProviderStack, fn: Fn): Set<string> =>
      new Set(s[fn].grants.flatMap((g) => g.actions.flatMap((a) => g.resources.map((r) => `${a} ${r}`))));
    for (const fn of ['onEvent', 'isComplete'] as const) {
      const retain = pairs(stacks.PB!, fn);
      const destroy = pairs(stacks.PBDestroy!, fn);
      assert.deepEqual(
        [...retain].filter((p) => !destroy.has(p)),
        [],
      );
      assert.deepEqual(
        [...destroy].filter((p) => !retain.has(p)),
        [`ecr:BatchDeleteImage ${repositoryArn(REGION, ACCOUNT, stacks.PB!.props.RepositoryName)}`],
        fn,
      );
    }
  });

  it('the checks fail when a grant is missing or one too many (the policies as read, changed here)', () => {
    assert.ok(runs.length > 0, 'the paths ran');
    // isComplete's role without s3:PutObject: the marker and the digest cache cannot be written.
    const withoutPut = (gs: Grant[]): Grant[] =>
      gs.map((g) => ({ ...g, actions: g.actions.filter((a) => a !== 's3:PutObject') }));
    const d = denied(runs, (r) =>
      r.fn === 'isComplete' ? withoutPut(r.stack.isComplete.grants) : r.stack[r.fn].grants,
    );
    assert.ok(
      d.some((l) => l.includes('[isComplete') && l.includes('s3:PutObject') && l.includes('.lading-failed-')),
      `the marker's PUT is reported:\n${d.join('\n')}`,
    );
    assert.ok(
      d.every((l) => l.includes('[isComplete') && l.includes('s3:PutObject')),
      d.join('\n'),
    );
    // onEvent's role without ecr:BatchDeleteImage: the DESTROY Delete is refused.
    const withoutDelete = denied(runs, (r) =>
      r.stack[r.fn].grants.map((g) =>
        r.fn === 'onEvent' ? { ...g, actions: g.actions.filter((a) => a !== 'ecr:BatchDeleteImage') } : g,
      ),
    );
    assert.ok(
      withoutDelete.some((l) => l.startsWith('Delete (DESTROY) [onEvent') && l.includes('ecr:BatchDeleteImage')),
    );
    // A grant no path needs (ecr:ListImages), and an object granted that nothing touches.
    const extra: Grant = {
      actions: ['ecr:ListImages', 's3:PutObject'],
      resources: [
        repositoryArn(REGION, ACCOUNT, stacks.PA!.props.RepositoryName),
        `arn:${PARTITION}:s3:::${stacks.PA!.props.Bucket}/elsewhere`,
      ],
    };
    const u = unused(runs, Object.values(stacks), (s, fn) => [
      ...s[fn].grants,
      ...(fn === 'isComplete' ? [extra] : []),
    ]);
    assert.ok(
      u.some((l) => l.includes('ecr:ListImages')),
      u.join('\n'),
    );
    assert.ok(
      u.some((l) => l.includes('s3:PutObject') && l.endsWith('/elsewhere')),
      u.join('\n'),
    );
  });
});
