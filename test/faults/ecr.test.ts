/**
 * Faults on the wire between `lading push` (the CLI, in-process, --json) and ECR, played by
 * `lading serve` with fault injection: the native API (InitiateLayerUpload / UploadLayerPart /
 * CompleteLayerUpload / PutImage) and `--transport registry` (GetAuthorizationToken, then /v2/).
 * Same promises as test/faults/registry.test.ts: completes (skopeo verifies) or fails with one
 * line; never a tag on an incomplete image; a re-run completes, uploading only what is missing.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateRepositoryCommand } from '@aws-sdk/client-ecr';
import type { FaultRule } from '../../src/serve';
import { registryCreds, SERVE_AWS_ENV, skopeoAvailable, startTestServer, type TestServer } from '../serve/helpers';
import {
  legacyArchive,
  multiPlatformArchive,
  push,
  skopeoVerify,
  tagProblems,
  workDir,
  type PushResult,
} from './helpers';

// The SDK's default credential chain reads this process's environment.
Object.assign(process.env, SERVE_AWS_ENV); // the key pair lading serve accepts
process.env.AWS_EC2_METADATA_DISABLED = 'true';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
delete process.env.AWS_PROFILE;

const HOST = '000000000000.dkr.ecr.us-east-1.amazonaws.com';
const BLOBS = { legacy: 3, multi: 6 };

interface Scenario {
  name: string;
  transport: 'ecr-api' | 'registry';
  archive: 'legacy' | 'multi';
  faults: FaultRule[];
  outcome: { ok: true } | { ok: false; codes: string[] };
  /** After a failure, the least number of blobs the re-run finds already there. */
  minSkipped?: number;
}

const SCENARIOS: Scenario[] = [
  {
    name: 'ThrottlingException twice on UploadLayerPart',
    transport: 'ecr-api',
    archive: 'legacy',
    faults: [{ op: 'UploadLayerPart', kind: 'throttle', times: 2 }],
    outcome: { ok: true },
  },
  {
    name: 'ServerException (500) on InitiateLayerUpload',
    transport: 'ecr-api',
    archive: 'legacy',
    faults: [{ op: 'InitiateLayerUpload', kind: 'server-error', times: 1 }],
    outcome: { ok: true },
  },
  {
    name: '503 ServiceUnavailableException on BatchCheckLayerAvailability',
    transport: 'ecr-api',
    archive: 'legacy',
    faults: [
      { op: 'BatchCheckLayerAvailability', kind: 'error', error: 'ServiceUnavailableException', status: 503, times: 1 },
    ],
    outcome: { ok: true },
  },
  {
    name: '502 Bad Gateway on CompleteLayerUpload',
    transport: 'ecr-api',
    archive: 'legacy',
    faults: [{ op: 'CompleteLayerUpload', kind: 'error', error: 'BadGateway', status: 502, times: 1 }],
    outcome: { ok: true },
  },
  {
    name: 'connection dropped on the second UploadLayerPart',
    transport: 'ecr-api',
    archive: 'legacy',
    faults: [{ op: 'UploadLayerPart', kind: 'drop-connection', after: 1, times: 1 }],
    outcome: { ok: true },
  },
  {
    name: 'response lost after CompleteLayerUpload committed the layer',
    transport: 'ecr-api',
    archive: 'legacy',
    faults: [{ op: 'CompleteLayerUpload', kind: 'drop-response', times: 1 }],
    outcome: { ok: true },
  },
  {
    name: 'response lost after PutImage stored a child manifest',
    transport: 'ecr-api',
    archive: 'multi',
    faults: [{ op: 'PutImage', kind: 'drop-response', times: 1 }],
    outcome: { ok: true },
  },
  {
    name: 'slow responses: every UploadLayerPart delayed 400 ms',
    transport: 'ecr-api',
    archive: 'legacy',
    faults: [{ op: 'UploadLayerPart', kind: 'slow', delayMs: 400, times: Infinity }],
    outcome: { ok: true },
  },
  {
    name: 'persistent ThrottlingException on PutImage (index after its children)',
    transport: 'ecr-api',
    archive: 'multi',
    faults: [{ op: 'PutImage', kind: 'throttle', after: 2, times: Infinity }],
    outcome: { ok: false, codes: ['REGISTRY', 'NETWORK'] },
    minSkipped: 6,
  },
  {
    name: 'persistent ServerException on uploads after two blobs',
    transport: 'ecr-api',
    archive: 'multi',
    faults: [{ op: 'InitiateLayerUpload', kind: 'server-error', after: 2, times: Infinity }],
    outcome: { ok: false, codes: ['REGISTRY', 'NETWORK'] },
    minSkipped: 2,
  },
  {
    name: 'registry transport: 429 on a blob PUT',
    transport: 'registry',
    archive: 'legacy',
    faults: [{ op: 'PUT upload', kind: 'throttle', times: 1 }],
    outcome: { ok: true },
  },
  {
    name: 'registry transport: 500 on a PATCH',
    transport: 'registry',
    archive: 'legacy',
    faults: [{ op: 'PATCH upload', kind: 'server-error', times: 1 }],
    outcome: { ok: true },
  },
  {
    name: 'registry transport: connection dropped on a manifest PUT',
    transport: 'registry',
    archive: 'multi',
    faults: [{ op: 'PUT manifest', kind: 'drop-connection', times: 1 }],
    outcome: { ok: true },
  },
  {
    name: 'registry transport: response lost after the tag PUT',
    transport: 'registry',
    archive: 'legacy',
    faults: [{ op: 'PUT manifest', kind: 'drop-response', times: 1 }],
    outcome: { ok: true },
  },
  {
    name: 'registry transport: persistent 500 on manifest PUTs',
    transport: 'registry',
    archive: 'legacy',
    faults: [{ op: 'PUT manifest', kind: 'server-error', times: Infinity }],
    outcome: { ok: false, codes: ['REGISTRY'] },
    minSkipped: 3,
  },
];

function oneLine(r: PushResult): void {
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('lading: '));
  assert.equal(lines.length, 1, r.stderr);
  assert.ok(!/\n\s+at /.test(r.stderr), r.stderr);
  assert.ok(r.json.error && !r.json.error.message.includes('\n'), r.stdout);
}

describe(
  'faults on the wire: lading push -> lading serve (ECR)',
  { skip: skopeoAvailable ? false : 'skopeo is not installed', timeout: 20 * 60_000 },
  () => {
    let srv: TestServer;
    let w: { dir: string; remove(): void };
    let env: NodeJS.ProcessEnv;
    before(async () => {
      srv = await startTestServer();
      w = workDir('lading-faults-ecr-');
      env = { ...process.env, XDG_CACHE_HOME: join(w.dir, 'cache') };
    });
    after(async () => {
      await srv?.stop();
      w?.remove();
    });

    async function state(repo: string): Promise<Awaited<ReturnType<typeof tagProblems>>> {
      const c = await registryCreds(srv.ecr);
      return tagProblems(`${srv.url}/v2/${repo}`, 'v1', { authorization: c.header });
    }

    async function verify(repo: string, digest: string): Promise<void> {
      const c = await registryCreds(srv.ecr);
      await skopeoVerify(`${srv.host}/${repo}@${digest}`, digest, `${c.username}:${c.password}`);
    }

    for (const [i, s] of SCENARIOS.entries()) {
      test(`ecr: ${s.name}`, async () => {
        const archive =
          s.archive === 'legacy'
            ? await legacyArchive(join(w.dir, `a${i}.tar`), `ecr-${i}`)
            : await multiPlatformArchive(join(w.dir, `a${i}.tar`), `ecr-${i}`);
        const repo = `faults/e${i}`;
        await srv.ecr.send(new CreateRepositoryCommand({ repositoryName: repo }));
        const args = ['--endpoint-url', srv.url, ...(s.transport === 'registry' ? ['--transport', 'registry'] : [])];
        srv.faults.clear();
        for (const f of s.faults) srv.faults.add(f);
        let r: PushResult;
        try {
          r = await push(archive, `${HOST}/${repo}:v1`, args, env);
          assert.ok(srv.faults.fired.length > 0, 'the fault fired');
        } finally {
          srv.faults.clear();
        }
        const st = await state(repo);
        if (st) assert.deepEqual(st.problems, [], `the tag points at an incomplete image after: ${r.stdout}`);
        if (s.outcome.ok) {
          assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
          assert.ok(st && st.digest === r.json.digest, 'the tag points at the pushed digest');
          await verify(repo, r.json.digest!);
        } else {
          assert.equal(r.code, 1, r.stdout);
          assert.ok(
            s.outcome.codes.includes(r.json.error!.code),
            `code ${r.json.error!.code}: ${r.json.error!.message}`,
          );
          oneLine(r);
          assert.equal(st, undefined, 'no tag written');
        }

        const again = await push(archive, `${HOST}/${repo}:v1`, args, env);
        assert.equal(again.code, 0, `${again.stdout}\n${again.stderr}`);
        const b = again.json.blobs!;
        assert.equal(b.uploaded + b.skipped, BLOBS[s.archive], JSON.stringify(b));
        if (s.outcome.ok) assert.equal(b.uploaded, 0, 'everything was already there');
        else assert.ok(b.skipped >= (s.minSkipped ?? 0), `only what was missing is uploaded: ${JSON.stringify(b)}`);
        const final = await state(repo);
        assert.ok(final && final.problems.length === 0 && final.digest === again.json.digest, JSON.stringify(final));
        if (!s.outcome.ok) await verify(repo, again.json.digest!);
      });
    }
  },
);

describe(
  'faults on the wire: ECR authorization token expiring mid-push (--transport registry)',
  { skip: skopeoAvailable ? false : 'skopeo is not installed', timeout: 5 * 60_000 },
  () => {
    let srv: TestServer;
    let w: { dir: string; remove(): void };
    before(async () => {
      // Passwords from GetAuthorizationToken live 1.5 s; each blob PUT takes 800 ms.
      srv = await startTestServer({ tokenTtlMs: 1500 });
      w = workDir('lading-faults-ecr-token-');
    });
    after(async () => {
      await srv?.stop();
      w?.remove();
    });

    test('ecr: the registry password expires mid-push: lading asks GetAuthorizationToken again and the push completes', async () => {
      const archive = await legacyArchive(join(w.dir, 'tok.tar'), 'ecr-token', 4, 1024 * 1024);
      await srv.ecr.send(new CreateRepositoryCommand({ repositoryName: 'faults/token' }));
      const env = { ...process.env, XDG_CACHE_HOME: join(w.dir, 'cache') };
      const args = ['--endpoint-url', srv.url, '--transport', 'registry', '--concurrency', '1'];
      srv.faults.add({ op: 'PUT upload', kind: 'slow', delayMs: 800, times: Infinity });
      srv.faults.add({ op: 'PATCH upload', kind: 'slow', delayMs: 800, times: Infinity });
      srv.resetCalls();
      const r = await push(archive, `${HOST}/faults/token:v1`, args, env);
      srv.faults.clear();
      assert.equal(r.code, 0, `the push should renew its token: ${r.stdout}`);
      // The fault fired: the first password expired under the push, and a second one was asked for.
      assert.ok((srv.calls.GetAuthorizationToken ?? 0) >= 2, `a new token was fetched: ${JSON.stringify(srv.calls)}`);
      const c = await registryCreds(srv.ecr);
      const st = await tagProblems(`${srv.url}/v2/faults/token`, 'v1', { authorization: c.header });
      assert.ok(st && st.problems.length === 0 && st.digest === r.json.digest);
      // Pushing again (fresh tokens) finds everything in place.
      const again = await push(archive, `${HOST}/faults/token:v1`, args, env);
      assert.equal(again.code, 0, `re-run failed: ${again.stdout}`);
      const final = await tagProblems(`${srv.url}/v2/faults/token`, 'v1', {
        authorization: (await registryCreds(srv.ecr)).header,
      });
      assert.ok(final && final.problems.length === 0 && final.digest === again.json.digest);
    });
  },
);
