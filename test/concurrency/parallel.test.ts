/**
 * Concurrent pushes to one repository (the CLI in-process, all at once): 20 different archives
 * (each with a unique layer and a layer they all share, so 20 uploads of one blob race), and one
 * archive pushed 10 times to the same tag. All succeed; afterwards every tag points at a whole
 * image, and skopeo reads each one. For docker-registry and for lading serve's native ECR API.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateRepositoryCommand } from '@aws-sdk/client-ecr';
import { dockerArchiveParts } from '../fixtures/docker';
import { makeLayer } from '../fixtures/image';
import { dir, file, pseudoRandom, tarBuffer } from '../fixtures/util';
import { registryAvailable, startRegistry, type RegistryServer } from '../helpers/registry-server';
import { registryCreds, SERVE_AWS_ENV, startTestServer, type TestServer } from '../serve/helpers';
import { push, skopeoVerify, tagProblems, workDir, type PushResult } from '../faults/helpers';
import { runCli, sandbox, type Sandbox } from '../hostile/run-cli';

Object.assign(process.env, SERVE_AWS_ENV); // the key pair lading serve accepts
process.env.AWS_EC2_METADATA_DISABLED = 'true';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
delete process.env.AWS_PROFILE;

const skip = registryAvailable ? false : 'docker-registry is not installed';
const ECR_HOST = '000000000000.dkr.ecr.us-east-1.amazonaws.com';

/** Archive i: a layer shared by all, a unique one. */
async function archives(root: string, n: number): Promise<string[]> {
  const shared = await makeLayer([dir('shared/'), file('shared/data.bin', pseudoRandom('shared-layer', 512 * 1024))]);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const own = await makeLayer([dir('own/'), file(`own/${i}.bin`, pseudoRandom(`own-${i}`, 256 * 1024))]);
    const { entries } = dockerArchiveParts(
      [{ repoTags: [`lading/par:${i}`], platform: { os: 'linux', architecture: 'amd64' }, layers: [shared, own] }],
      { order: 'sorted', dirEntries: true },
    );
    const p = join(root, `a${i}.tar`);
    writeFileSync(p, await tarBuffer(entries));
    out.push(p);
  }
  return out;
}

function allOk(rs: PushResult[]): void {
  for (const [i, r] of rs.entries()) assert.equal(r.code, 0, `push ${i}: ${r.stdout}\n${r.stderr}`);
}

describe('concurrent pushes: docker-registry', { skip, timeout: 15 * 60_000 }, () => {
  let reg: RegistryServer;
  let w: { dir: string; remove(): void };
  let paths: string[];
  before(async () => {
    reg = await startRegistry();
    w = workDir('lading-par-');
    paths = await archives(w.dir, 20);
  });
  after(async () => {
    await reg?.stop();
    w?.remove();
  });

  test('registry: 20 different archives in parallel to one repository', async () => {
    const env = { ...process.env, XDG_CACHE_HOME: join(w.dir, 'cache-a') };
    const rs = await Promise.all(paths.map((p, i) => push(p, `${reg.host}/par/app:t${i}`, [], env)));
    allOk(rs);
    for (const [i, r] of rs.entries()) {
      const st = await tagProblems(`${reg.url}/v2/par/app`, `t${i}`);
      assert.ok(st && st.problems.length === 0 && st.digest === r.json.digest, `t${i}: ${JSON.stringify(st)}`);
      await skopeoVerify(`${reg.host}/par/app@${r.json.digest}`, r.json.digest!);
    }
  });

  test('registry: one archive pushed 10 times in parallel to one tag', async () => {
    const env = { ...process.env, XDG_CACHE_HOME: join(w.dir, 'cache-b') };
    const rs = await Promise.all(Array.from({ length: 10 }, () => push(paths[0]!, `${reg.host}/par/same:v1`, [], env)));
    allOk(rs);
    const digests = new Set(rs.map((r) => r.json.digest));
    assert.equal(digests.size, 1, 'every push computed the same digest');
    const st = await tagProblems(`${reg.url}/v2/par/same`, 'v1');
    assert.ok(st && st.problems.length === 0 && digests.has(st.digest));
    await skopeoVerify(`${reg.host}/par/same@${st.digest}`, st.digest);
  });
});

describe(
  'concurrent pushes: separate processes sharing one cache (docker-registry)',
  { skip, timeout: 10 * 60_000 },
  () => {
    let reg: RegistryServer;
    let box: Sandbox;
    before(async () => {
      reg = await startRegistry();
      box = sandbox('lading-par-proc-');
    });
    after(async () => {
      await reg?.stop();
      box?.remove();
    });

    test('registry: 10 CLI processes, 5 archives x 2, at once; the shared digest cache stays well-formed', async () => {
      const paths = await archives(box.root, 5);
      const rs = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          runCli(['push', paths[i % 5]!, `${reg.host}/proc/app:t${i % 5}`, '--json'], {
            env: box.env,
            cwd: box.cwd,
            measure: false,
          }),
        ),
      );
      for (const [i, r] of rs.entries()) assert.equal(r.code, 0, `process ${i}: ${r.stdout}\n${r.stderr}`);
      for (let i = 0; i < 5; i++) {
        const st = await tagProblems(`${reg.url}/v2/proc/app`, `t${i}`);
        assert.ok(st && st.problems.length === 0, `t${i}`);
        await skopeoVerify(`${reg.host}/proc/app@${st.digest}`, st.digest);
      }
      const cache = readFileSync(join(box.cache, 'lading', 'compressed-digests.jsonl'), 'utf8');
      for (const line of cache.split('\n').filter((l) => l !== ''))
        assert.doesNotThrow(() => JSON.parse(line), `cache line: ${line}`);
      assert.deepEqual(readdirSync(box.tmp), []);
    });
  },
);

describe('concurrent pushes: lading serve (native ECR API)', { timeout: 15 * 60_000 }, () => {
  let srv: TestServer;
  let w: { dir: string; remove(): void };
  let paths: string[];
  before(async () => {
    srv = await startTestServer();
    w = workDir('lading-par-ecr-');
    paths = await archives(w.dir, 20);
  });
  after(async () => {
    await srv?.stop();
    w?.remove();
  });

  async function check(repo: string, tag: string, digest: string): Promise<void> {
    const c = await registryCreds(srv.ecr);
    const st = await tagProblems(`${srv.url}/v2/${repo}`, tag, { authorization: c.header });
    assert.ok(st && st.problems.length === 0 && st.digest === digest, `${repo}:${tag}: ${JSON.stringify(st)}`);
    await skopeoVerify(`${srv.host}/${repo}@${digest}`, digest, `${c.username}:${c.password}`);
  }

  test('ecr: 20 different archives in parallel to one repository', async () => {
    await srv.ecr.send(new CreateRepositoryCommand({ repositoryName: 'par/app' }));
    const env = { ...process.env, XDG_CACHE_HOME: join(w.dir, 'cache-a') };
    const rs = await Promise.all(
      paths.map((p, i) => push(p, `${ECR_HOST}/par/app:t${i}`, ['--endpoint-url', srv.url], env)),
    );
    allOk(rs);
    for (const [i, r] of rs.entries()) await check('par/app', `t${i}`, r.json.digest!);
  });

  test('ecr: one archive pushed 10 times in parallel, each with --create-repository (the repository does not exist yet)', async () => {
    const env = { ...process.env, XDG_CACHE_HOME: join(w.dir, 'cache-b') };
    const rs = await Promise.all(
      Array.from({ length: 10 }, () =>
        push(paths[1]!, `${ECR_HOST}/par/same:v1`, ['--endpoint-url', srv.url, '--create-repository'], env),
      ),
    );
    allOk(rs);
    const digests = new Set(rs.map((r) => r.json.digest));
    assert.equal(digests.size, 1);
    await check('par/same', 'v1', [...digests][0]!);
  });
});
