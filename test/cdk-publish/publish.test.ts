/**
 * `lading cdk publish` end to end, with real parts only: a CDK app of stock aws-cdk-lib
 * constructs synthesized offline, `lading serve` as Amazon ECR, a local STS endpoint that
 * records what it is asked, and skopeo reading the published images back through the
 * registry API.
 */
import assert from 'node:assert/strict';
import { cp, rm, truncate } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DescribeImagesCommand } from '@aws-sdk/client-ecr';
import type { PublishReport } from '../../src/cdk-publish';
import { main } from '../../src/cli/main';
import {
  createRepo,
  pushImage,
  run,
  SERVE_CREDENTIALS,
  skopeoAvailable,
  smallImage,
  startTestServer,
  tempDir,
  type TestServer,
} from '../serve/helpers';
import { PINNED_EXTERNAL_ID, PINNED_SESSION_TAG, synthFixtureApp, type FixtureApp } from './fixture-app';
import { startRecordingProxy } from './recording-proxy';
import { startStsServer, type StsServer } from './sts-server';
import { makeTestCA, startTestProxy } from '../net/proxies';

// The SDK's default credential chain reads this process's environment: base credentials of a "CI user".
const BASE = { accessKeyId: 'AKIDLADINGBASE', secretAccessKey: 'base-secret' };
process.env.AWS_ACCESS_KEY_ID = BASE.accessKeyId;
process.env.AWS_SECRET_ACCESS_KEY = BASE.secretAccessKey;
process.env.AWS_EC2_METADATA_DISABLED = 'true';
delete process.env.AWS_PROFILE;
delete process.env.AWS_ENDPOINT_URL;
delete process.env.AWS_ENDPOINT_URL_ECR;
delete process.env.AWS_ENDPOINT_URL_STS;

const REPO_000 = 'cdk-hnb659fds-container-assets-000000000000-us-east-1';
const REPO_111 = 'cdk-hnb659fds-container-assets-111111111111-eu-west-1';
const ROLE_000 = 'arn:aws:iam::000000000000:role/cdk-hnb659fds-image-publishing-role-000000000000-us-east-1';
const ROLE_111 = 'arn:aws:iam::111111111111:role/cdk-hnb659fds-image-publishing-role-111111111111-eu-west-1';

interface Run {
  code: number;
  out: string;
  err: string;
  report?: PublishReport;
}

describe('lading cdk publish against lading serve and a local STS', () => {
  let work: string;
  let app: FixtureApp;
  let sts: StsServer;
  const servers: TestServer[] = [];

  before(async () => {
    work = await tempDir('lading-cdk-publish-');
    app = synthFixtureApp(work);
    sts = await startStsServer();
  });
  after(async () => {
    for (const s of servers) await s.stop();
    await sts.close();
    await rm(work, { recursive: true, force: true });
  });

  /** A fresh lading serve with the bootstrap repositories (immutable tags, as cdk bootstrap makes them). */
  async function ecr(repos: string[] = [REPO_000, REPO_111]): Promise<TestServer> {
    // It verifies signatures, knowing the keys IAM would: the CI user's, the role keys the STS
    // hands out, and the tests' own.
    const known = new Map([BASE, SERVE_CREDENTIALS].map((c) => [c.accessKeyId, c.secretAccessKey]));
    const srv = await startTestServer({ credentials: (id) => known.get(id) ?? sts.secretOf(id) });
    servers.push(srv);
    for (const r of repos) await createRepo(srv.ecr, r, 'IMMUTABLE');
    return srv;
  }

  async function publish(
    srv: TestServer,
    args: string[],
    env: NodeJS.ProcessEnv = {},
    endpoint = srv.url,
  ): Promise<Run> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(['cdk', 'publish', ...args, '--endpoint-url', endpoint], {
      stdout: (s) => out.push(s),
      stderr: (s) => err.push(s),
      env: { ...process.env, AWS_REGION: 'us-east-1', XDG_CACHE_HOME: join(work, 'cache'), ...env },
    });
    const r: Run = { code, out: out.join('\n'), err: err.join('\n') };
    if (args.includes('--json')) r.report = JSON.parse(r.out) as PublishReport;
    return r;
  }

  async function tagDigest(srv: TestServer, repositoryName: string, imageTag: string): Promise<string | undefined> {
    const out = await srv.ecr
      .send(new DescribeImagesCommand({ repositoryName, imageIds: [{ imageTag }] }))
      .catch((e: Error) => {
        if (e.name === 'ImageNotFoundException') return undefined;
        throw e;
      });
    return out?.imageDetails?.[0]?.imageDigest;
  }

  test('publishes every tarball asset to repositoryName:imageTag, assuming each role as the CDK CLI does; a second run publishes nothing', async () => {
    const srv = await ecr();
    const first = sts.requests.length;
    const proxy = await startRecordingProxy(srv.url);
    const r = await publish(srv, [app.outdir, '--json', '--sts-endpoint-url', sts.url], {}, proxy.url).finally(() =>
      proxy.close(),
    );
    assert.equal(r.code, 0, `${r.err}\n${r.out}`);
    const report = r.report!;
    assert.deepEqual(report.summary, { published: 3, exists: 0, 'would-publish': 0, skipped: 1, failed: 0 });

    // The shared archive: one image for both stacks (same asset hash, same destination once resolved).
    const published = report.assets.filter((a) => a.status === 'published');
    const shared = published.find((a) => a.stacks.includes('Pinned'))!;
    assert.deepEqual([...shared.stacks].sort(), ['Agnostic', 'Pinned']);
    assert.equal(shared.repositoryName, REPO_000);
    assert.equal(shared.imageUri, `000000000000.dkr.ecr.us-east-1.amazonaws.com/${REPO_000}:${shared.imageTag}`);
    const extra = published.find((a) => a.displayName === 'Extra')!;
    assert.deepEqual(extra.stacks, ['Agnostic']);
    assert.equal(
      extra.repositoryName,
      REPO_000,
      'the environment-agnostic stack resolves to the caller account and AWS_REGION',
    );
    const staged = published.find((a) => a.stacks.includes('Prod/Svc'))!;
    assert.equal(staged.repositoryName, REPO_111);
    assert.equal(staged.account, '111111111111');
    assert.equal(staged.region, 'eu-west-1');
    // Inside a Stage, TarballImageAsset names the archive relative to the root assembly (aws/aws-cdk#24827): found anyway.
    assert.ok(staged.manifests[0]!.startsWith('assembly-Prod/'), staged.manifests[0]);

    const skipped = report.assets.find((a) => a.status === 'skipped')!;
    assert.deepEqual(skipped.stacks, ['Agnostic']);
    assert.match(skipped.reason!, /directory.*needs docker/);

    // Every asset is at repositoryName:imageTag, pushed once (immutable tags: a second PutImage would fail).
    assert.equal(srv.calls.PutImage, 3, JSON.stringify(srv.calls));
    for (const a of published) {
      assert.match(a.digest!, /^sha256:[0-9a-f]{64}$/);
      assert.equal(await tagDigest(srv, a.repositoryName, a.imageTag), a.digest);
    }
    if (skopeoAvailable) {
      const pw = srv.issueToken().password;
      for (const a of published) {
        const { stdout } = await run('skopeo', [
          'inspect',
          '--tls-verify=false',
          '--creds',
          `AWS:${pw}`,
          `docker://${srv.host}/${a.repositoryName}:${a.imageTag}`,
        ]);
        const got = JSON.parse(stdout) as {
          Digest: string;
          Labels: Record<string, string> | null;
          Architecture: string;
        };
        assert.equal(got.Digest, a.digest);
        const label = a === shared ? 'shared' : a === extra ? 'extra' : 'stage';
        assert.equal(got.Labels?.label, label, 'the image under the tag is the one of that archive');
      }
    }

    // STS: one GetCallerIdentity; each role assumed with the CDK CLI's session name, the external
    // ID and session tags (transitive) where the synthesizer set them.
    const reqs = sts.requests.slice(first);
    assert.equal(reqs.filter((q) => q.action === 'GetCallerIdentity').length, 1);
    const assumes = reqs.filter((q) => q.action === 'AssumeRole');
    for (const q of reqs) assert.equal(q.accessKeyId, 'AKIDLADINGBASE', 'STS is called with the base credentials');
    // The CDK CLI's session name: aws-cdk-<OS user>, characters IAM refuses replaced by @.
    const expected = `aws-cdk-${userInfo().username.replace(/[^\w+=,.@-]/g, '@')}`.slice(0, 64);
    for (const q of assumes) assert.equal(q.params.RoleSessionName, expected);
    const withExternalId = assumes.filter((q) => q.params.ExternalId !== undefined);
    assert.equal(withExternalId.length, 1, JSON.stringify(assumes.map((q) => q.params)));
    assert.equal(withExternalId[0]!.params.RoleArn, ROLE_000);
    assert.equal(withExternalId[0]!.params.ExternalId, PINNED_EXTERNAL_ID);
    assert.equal(withExternalId[0]!.params['Tags.member.1.Key'], PINNED_SESSION_TAG.Key);
    assert.equal(withExternalId[0]!.params['Tags.member.1.Value'], PINNED_SESSION_TAG.Value);
    assert.equal(withExternalId[0]!.params['TransitiveTagKeys.member.1'], PINNED_SESSION_TAG.Key);
    assert.deepEqual(
      assumes.map((q) => q.params.RoleArn).sort(),
      [ROLE_000, ROLE_000, ROLE_111].sort(),
      'Pinned role (external ID), Agnostic role, Prod role',
    );
    // Every ECR call is signed with the credentials of its destination's role.
    assert.ok(proxy.calls.length > 0);
    for (const c of proxy.calls) {
      const role = c.repositoryName === REPO_111 ? ROLE_111 : ROLE_000;
      assert.ok(
        sts.issued.get(role)!.includes(c.accessKeyId!),
        `${c.op} on ${c.repositoryName} signed by ${c.accessKeyId}, not by ${role}`,
      );
    }
    assert.ok(proxy.calls.some((c) => c.repositoryName === REPO_111 && c.op === 'PutImage'));

    // Second run: every tag is there; nothing uploaded, nothing put.
    srv.resetCalls();
    const again = await publish(srv, [app.outdir, '--json'], { AWS_ENDPOINT_URL_STS: sts.url });
    assert.equal(again.code, 0, again.err);
    assert.deepEqual(again.report!.summary, { published: 0, exists: 3, 'would-publish': 0, skipped: 1, failed: 0 });
    for (const a of again.report!.assets.filter((x) => x.status === 'exists')) {
      assert.equal(
        a.digest,
        published.find((p) => p.imageTag === a.imageTag && p.repositoryName === a.repositoryName)!.digest,
      );
    }
    assert.equal(srv.calls.InitiateLayerUpload ?? 0, 0, JSON.stringify(srv.calls));
    assert.equal(srv.calls.PutImage ?? 0, 0);
    assert.equal(srv.calls.DescribeImages, 3);

    // Human output of a third run names each asset and why nothing was done.
    const text = await publish(srv, [app.outdir, '--sts-endpoint-url', sts.url]);
    assert.equal(text.code, 0, text.err);
    assert.match(text.out, /^exists +Agnostic, Pinned: |^exists +Pinned, Agnostic: /m);
    assert.match(text.out, /^skipped +Agnostic: Built: built from the directory/m);
    assert.match(text.out, /0 published, 3 already there, 1 skipped, 0 failed$/);
  });

  test('behind a TLS-inspecting proxy: STS and ECR calls go through HTTPS_PROXY, the corporate CA trusted through AWS_CA_BUNDLE', async () => {
    const srv = await ecr();
    const ca = await makeTestCA();
    const proxy = await startTestProxy({ mitm: { ca } });
    try {
      const stsPort = new URL(sts.url).port;
      // Names only the proxy resolves: a call that bypassed it could not connect at all.
      const r = await publish(
        srv,
        [app.outdir, '--json', '--sts-endpoint-url', `https://sts.corp.example:${stsPort}`],
        { HTTPS_PROXY: proxy.url, AWS_CA_BUNDLE: ca.certPath },
        `https://ecr.corp.example:${srv.port}`,
      );
      assert.equal(r.code, 0, `${r.err}\n${r.out}`);
      assert.equal(r.report!.summary.published, 3);
      const targets = new Set(proxy.connects.map((c) => c.target));
      assert.deepEqual([...targets].sort(), [`ecr.corp.example:${srv.port}`, `sts.corp.example:${stsPort}`].sort());
      const actions = proxy.requests.map((q) =>
        String(q.headers['x-amz-target'] ?? (q.method === 'POST' && q.url.includes('sts.corp.example') ? 'sts' : '')),
      );
      assert.ok(
        actions.some((a) => a === 'sts'),
        'STS (AssumeRole, GetCallerIdentity) through the proxy',
      );
      assert.ok(
        actions.some((a) => a.endsWith('.PutImage')),
        'ECR PutImage through the proxy',
      );
      // Without the CA: one TLS error with the fix, not a stack trace.
      const untrusted = await publish(
        srv,
        [app.outdir, '--json', '--sts-endpoint-url', `https://sts.corp.example:${stsPort}`],
        { HTTPS_PROXY: proxy.url },
        `https://ecr.corp.example:${srv.port}`,
      );
      assert.notEqual(untrusted.code, 0);
      assert.match(`${untrusted.err}\n${untrusted.out}`, /unknown authority.*AWS_CA_BUNDLE/);
    } finally {
      await proxy.stop();
      await ca.cleanup();
    }
  });

  test('--stack selects stacks with cdk deploy globs; --dry-run checks and publishes nothing', async () => {
    const srv = await ecr();
    const r = await publish(srv, [
      app.outdir,
      '--stack',
      'Prod/*',
      '--dry-run',
      '--json',
      '--sts-endpoint-url',
      sts.url,
    ]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.report!.summary, { published: 0, exists: 0, 'would-publish': 1, skipped: 0, failed: 0 });
    assert.deepEqual(r.report!.assets[0]!.stacks, ['Prod/Svc']);
    assert.equal(srv.calls.InitiateLayerUpload ?? 0, 0);
    assert.equal(await tagDigest(srv, REPO_111, r.report!.assets[0]!.imageTag), undefined);

    const pinned = await publish(srv, [app.outdir, '--stack', 'Pin*', '--json', '--sts-endpoint-url', sts.url]);
    assert.equal(pinned.code, 0, pinned.err);
    assert.deepEqual(pinned.report!.summary, { published: 1, exists: 0, 'would-publish': 0, skipped: 0, failed: 0 });
    assert.deepEqual(pinned.report!.assets[0]!.stacks, ['Pinned'], 'only the selected stacks are named');

    const none = await publish(srv, [app.outdir, '--stack', 'Nope', '--sts-endpoint-url', sts.url]);
    assert.equal(none.code, 1);
    assert.match(none.err, /no stack matches "Nope" \(stacks in .*: .*Pinned.*Prod\/Svc/);
  });

  test('a missing and a corrupt archive fail with errors naming the asset and the stack; the other assets still publish (exit 1)', async () => {
    const copy = join(work, 'broken.out');
    await cp(app.outdir, copy, { recursive: true });
    const srv = await ecr();
    const first = await publish(srv, [app.outdir, '--json', '--dry-run', '--sts-endpoint-url', sts.url]);
    const byName = (name: string) =>
      first.report!.assets.find((a) => a.displayName === name || a.stacks.includes(name))!;
    const extraTag = byName('Extra').imageTag;
    const stagedTag = byName('Prod/Svc').imageTag;
    await truncate(join(copy, `asset.${extraTag}.tar`), 3000); // corrupt: cut inside the archive
    await rm(join(copy, `asset.${stagedTag}.tar`)); // missing

    const r = await publish(srv, [copy, '--json', '--sts-endpoint-url', sts.url]);
    assert.equal(r.code, 1, r.out);
    const report = r.report!;
    assert.deepEqual(report.summary, { published: 1, exists: 0, 'would-publish': 0, skipped: 1, failed: 2 });
    const corrupt = report.assets.find((a) => a.imageTag === extraTag)!;
    assert.equal(corrupt.status, 'failed');
    assert.match(corrupt.error!.message, /^asset "Extra" \(\w{12}\) of stack Agnostic: /);
    assert.match(corrupt.error!.message, new RegExp(`asset\\.${extraTag}\\.tar`));
    const missing = report.assets.find((a) => a.imageTag === stagedTag)!;
    assert.equal(missing.status, 'failed');
    assert.equal(missing.error!.code, 'NOT_FOUND');
    assert.match(
      missing.error!.message,
      /^asset "Staged" \(\w{12}\) of stack Prod\/Svc: the image archive .* does not exist/,
    );
    const ok = report.assets.find((a) => a.status === 'published')!;
    assert.deepEqual([...ok.stacks].sort(), ['Agnostic', 'Pinned']);
    assert.equal(await tagDigest(srv, REPO_000, ok.imageTag), ok.digest);
    assert.equal(await tagDigest(srv, REPO_000, extraTag), undefined, 'nothing tagged for the corrupt archive');

    // The text form says the same on stdout, one line per asset.
    const text = await publish(srv, [copy, '--sts-endpoint-url', sts.url]);
    assert.equal(text.code, 1);
    assert.match(text.out, /^failed +asset "Extra" .* of stack Agnostic: /m);
    assert.match(text.out, /^failed +asset "Staged" .* of stack Prod\/Svc: the image archive/m);
    assert.match(text.out, /1 already there, 1 skipped, 2 failed$/);
  });

  test('a role that cannot be assumed: base credentials of the same account are used with a warning, another account fails; --no-assume-role assumes nothing', async () => {
    const srv = await ecr();
    sts.deny.add(ROLE_000);
    sts.deny.add(ROLE_111);
    try {
      const r = await publish(srv, [app.outdir, '--json', '--sts-endpoint-url', sts.url]);
      assert.equal(r.code, 1, r.out);
      assert.deepEqual(r.report!.summary, { published: 2, exists: 0, 'would-publish': 0, skipped: 1, failed: 1 });
      assert.match(
        r.err,
        /warning: could not assume arn:aws:iam::000000000000:role\/cdk-hnb659fds-image-publishing-role-000000000000-us-east-1 \(AccessDenied: .*\); the base credentials .* are for account 000000000000: using them/,
      );
      const failed = r.report!.assets.find((a) => a.status === 'failed')!;
      assert.deepEqual(failed.stacks, ['Prod/Svc']);
      assert.equal(failed.error!.code, 'AUTH');
      assert.match(
        failed.error!.message,
        /could not assume the role arn:aws:iam::111111111111:role\/.*AccessDenied.*cdk bootstrap aws:\/\/111111111111\/eu-west-1/,
      );
    } finally {
      sts.deny.clear();
    }

    const before = sts.requests.length;
    const srv2 = await ecr();
    const r2 = await publish(srv2, [app.outdir, '--json', '--no-assume-role', '--sts-endpoint-url', sts.url]);
    assert.equal(r2.code, 1, r2.out);
    assert.deepEqual(r2.report!.summary, { published: 2, exists: 0, 'would-publish': 0, skipped: 1, failed: 1 });
    assert.deepEqual(
      sts.requests.slice(before).map((q) => q.action),
      ['GetCallerIdentity'],
    );
    const staged = r2.report!.assets.find((a) => a.stacks.includes('Prod/Svc'))!;
    assert.equal(
      staged.status,
      'failed',
      'the credentials are for another account than the stage: not published into the wrong registry',
    );
    assert.match(
      staged.error!.message,
      /the destination is in account 111111111111, but your credentials \(arn:aws:iam::000000000000:user\/ci\) are for account 000000000000; without --no-assume-role/,
    );
  });

  test('an environment that is not bootstrapped (no repository) fails with the cdk bootstrap hint', async () => {
    const srv = await ecr([REPO_000]);
    const r = await publish(srv, [app.outdir, '--json', '--sts-endpoint-url', sts.url]);
    assert.equal(r.code, 1);
    const failed = r.report!.assets.filter((a) => a.status === 'failed');
    assert.equal(failed.length, 1);
    assert.match(
      failed[0]!.error!.message,
      /of stack Prod\/Svc: no ECR repository named cdk-hnb659fds-container-assets-111111111111-eu-west-1 in account 111111111111, region eu-west-1: is the environment bootstrapped\? \(cdk bootstrap aws:\/\/111111111111\/eu-west-1\)/,
    );
    assert.equal(r.report!.summary.published, 2);
  });

  test('two publishers at once into immutable repositories: both succeed, each image pushed under its tag once', async () => {
    const srv = await ecr();
    const [a, b] = await Promise.all([
      publish(srv, [app.outdir, '--json', '--no-cache', '--sts-endpoint-url', sts.url]),
      publish(srv, [app.outdir, '--json', '--no-cache', '--sts-endpoint-url', sts.url]),
    ]);
    assert.equal(a.code, 0, `${a.out}\n${a.err}`);
    assert.equal(b.code, 0, `${b.out}\n${b.err}`);
    for (const r of [a, b]) assert.equal(r.report!.summary.published + r.report!.summary.exists, 3);
    for (const x of a.report!.assets.filter((y) => y.status !== 'skipped')) {
      const y = b.report!.assets.find((z) => z.imageTag === x.imageTag && z.repositoryName === x.repositoryName)!;
      assert.equal(x.digest, y.digest);
      assert.equal(await tagDigest(srv, x.repositoryName, x.imageTag), x.digest);
    }
  });

  test('the tag appears under another image while lading publishes (immutable tags): the asset counts as there, not failed', async () => {
    const srv = await ecr();
    const dry = await publish(srv, [
      app.outdir,
      '--stack',
      'Pinned',
      '--json',
      '--dry-run',
      '--sts-endpoint-url',
      sts.url,
    ]);
    const tag = dry.report!.assets[0]!.imageTag;
    // lading's PutImage waits; meanwhile another publisher (the CDK CLI on another runner) tags its own build.
    // A window wide enough for the other push on a busy machine (the test waits for the call, not a clock).
    srv.faults.add({ op: 'PutImage', kind: 'slow', delayMs: 6000, times: 1 });
    const running = publish(srv, [
      app.outdir,
      '--stack',
      'Pinned',
      '--json',
      '--no-cache',
      '--sts-endpoint-url',
      sts.url,
    ]);
    const t0 = Date.now();
    while ((srv.calls.PutImage ?? 0) < 1 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
    const other = smallImage('other-build');
    await pushImage(srv.ecr, REPO_000, other, tag);
    const r = await running;
    srv.faults.clear();
    assert.equal(r.code, 0, r.out);
    const a = r.report!.assets[0]!;
    assert.equal(a.status, 'exists');
    assert.equal(a.digest, other.manifest.digest);
    assert.match(a.reason!, /another publisher/);
    assert.equal(await tagDigest(srv, REPO_000, tag), other.manifest.digest);
  });

  test('usage: help, unknown subcommand, bad --concurrency, not an assembly', async () => {
    const srv = await ecr([]);
    const help = await publish(srv, ['--help']);
    assert.equal(help.code, 0);
    assert.match(help.out, /npx cdk synth && npx lading cdk publish && npx cdk deploy --app cdk.out/);
    const out: string[] = [];
    assert.equal(await main(['cdk', 'frobnicate'], { stdout: (s) => out.push(s), stderr: (s) => out.push(s) }), 2);
    assert.match(out.join('\n'), /unknown cdk command "frobnicate"/);
    const bad = await publish(srv, [app.outdir, '--concurrency', '0']);
    assert.equal(bad.code, 2);
    const empty = join(work, 'empty');
    const notAssembly = await publish(srv, [work]);
    assert.equal(notAssembly.code, 1);
    assert.match(notAssembly.err, /is not a cloud assembly \(no manifest.json there\): run "cdk synth" first/);
    const missing = await publish(srv, [empty, '--json']);
    assert.equal(missing.code, 1);
    assert.equal((JSON.parse(missing.out) as { error: { code: string } }).error.code, 'NOT_FOUND');
  });
});
