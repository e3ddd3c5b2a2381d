/**
 * Secrets and trust, the CLI as a child process with --debug: passwords, bearer tokens, ECR
 * authorization tokens and Authorization headers never appear in stdout or stderr, on success
 * or failure, nor in any file lading writes; TLS is verified unless --insecure; the digest cache
 * is private and a poisoned one cannot steer file names.
 */
import assert from 'node:assert/strict';
import { lookup } from 'node:dns/promises';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateRepositoryCommand } from '@aws-sdk/client-ecr';
import { registryAvailable, startRegistry, type RegistryServer } from '../helpers/registry-server';
import { startFaultProxy, type FaultProxy } from '../registry/fault-proxy';
import { startTokenServer, type TokenServer } from '../registry/token-server';
import { SERVE_CREDENTIALS, startTestServer, type TestServer } from '../serve/helpers';
import { legacyArchive } from '../faults/helpers';
import { runCli, sandbox, type CliResult, type Sandbox } from '../hostile/run-cli';

const skip = registryAvailable ? false : 'docker-registry is not installed';
const BASIC_PW = 'Basic-Pa55word-lading-7f3a';
const TOKEN_PW = 'Token-Pa55word-lading-91c2';
const AWS_SECRET = 'AwsSecretKey-lading-test-0b5e2d';

/** Proxy that records every Authorization header it forwards. */
async function recordingProxy(target: { port: number }): Promise<{ proxy: FaultProxy; headers: Set<string> }> {
  const headers = new Set<string>();
  const proxy = await startFaultProxy(target, (r) => {
    const a = r.headers.authorization;
    if (a) headers.add(a);
    return undefined;
  });
  return { proxy, headers };
}

/** Every form a secret could leak in: the whole header, its credential part, decoded parts. */
function secretForms(values: Iterable<string>): string[] {
  const out = new Set<string>();
  for (const v of values) {
    out.add(v);
    const m = /^(Basic|Bearer)\s+(.+)$/i.exec(v);
    if (m) {
      out.add(m[2]!);
      if (m[1]!.toLowerCase() === 'basic') {
        const dec = Buffer.from(m[2]!, 'base64').toString('utf8');
        out.add(dec);
        out.add(dec.slice(dec.indexOf(':') + 1));
      } else {
        // a JWT's signature alone is a secret-bearing string too
        const sig = m[2]!.split('.')[2];
        if (sig && sig.length > 16) out.add(sig);
      }
    }
  }
  return [...out].filter((s) => s.length >= 8);
}

function assertNoSecrets(what: string, text: string, secrets: string[]): void {
  for (const s of secrets)
    assert.ok(!text.includes(s), `${what} contains a secret (${s.slice(0, 6)}...):\n${text.slice(0, 3000)}`);
  const header = /authorization["']?\s*[:=]\s*["']?(basic|bearer)\s+([^\s"',*]{6,})/i.exec(text);
  assert.equal(header, null, `${what} shows an Authorization header: ${header?.[0]}`);
}

/** Every file under `root` except `skip`, read whole (they are small in these tests). */
function filesOf(root: string, skipPaths: string[]): Array<{ path: string; mode: number; text: string }> {
  const out: Array<{ path: string; mode: number; text: string }> = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (skipPaths.includes(p)) continue;
      if (e.isDirectory()) walk(p);
      else if (e.isFile())
        out.push({ path: p, mode: statSync(p).mode & 0o777, text: readFileSync(p).toString('latin1') });
    }
  };
  walk(root);
  return out;
}

function ok(r: CliResult): void {
  assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr.slice(-3000)}`);
}

describe('secrets never appear in output (--debug included)', { skip, timeout: 10 * 60_000 }, () => {
  let box: Sandbox;
  let archive: string;
  before(async () => {
    box = sandbox('lading-secrets-');
    archive = await legacyArchive(join(box.root, 'app.tar'), 'secrets', 2, 256 * 1024);
  });
  after(() => box?.remove());

  test('Basic auth: --password-stdin, success and wrong password, with --debug', async () => {
    const reg = await startRegistry({ htpasswd: { alice: BASIC_PW } });
    const { proxy, headers } = await recordingProxy(reg);
    try {
      const good = await runCli(
        ['push', archive, `${proxy.host}/sec/basic:v1`, '--debug', '--username', 'alice', '--password-stdin'],
        { env: box.env, cwd: box.cwd, stdin: `${BASIC_PW}\n`, measure: false },
      );
      ok(good);
      const bad = await runCli(
        ['push', archive, `${proxy.host}/sec/basic:v2`, '--debug', '--username', 'alice', '--password-stdin'],
        { env: box.env, cwd: box.cwd, stdin: `${BASIC_PW}-wrong\n`, measure: false },
      );
      assert.equal(bad.code, 1, bad.stderr);
      const envCreds = await runCli(['push', archive, `${proxy.host}/sec/basic:v3`, '--debug', '--json'], {
        env: { ...box.env, LADING_USERNAME: 'alice', LADING_PASSWORD: BASIC_PW },
        cwd: box.cwd,
        measure: false,
      });
      ok(envCreds);
      assert.ok(headers.size > 0, 'the proxy saw Authorization headers');
      const secrets = secretForms([
        ...headers,
        `Basic ${Buffer.from(`alice:${BASIC_PW}`).toString('base64')}`,
        `Basic ${Buffer.from(`alice:${BASIC_PW}-wrong`).toString('base64')}`,
      ]);
      for (const [n, r] of Object.entries({ good, bad, envCreds }))
        assertNoSecrets(`${n} stdout+stderr`, `${r.stdout}\n${r.stderr}`, secrets);
      for (const f of filesOf(box.root, [archive])) assertNoSecrets(f.path, f.text, secrets);
    } finally {
      await proxy.stop();
      await reg.stop();
    }
  });

  test('Bearer tokens: token server credentials and the tokens it issues, with --debug', async () => {
    const ts: TokenServer = await startTokenServer({ service: 'lading-secrets', users: { bob: TOKEN_PW } });
    const reg = await startRegistry({
      token: { realm: ts.realm, service: ts.service, issuer: ts.issuer, rootCertBundle: ts.certPem },
    });
    const { proxy, headers } = await recordingProxy(reg);
    try {
      const r = await runCli(['push', archive, `${proxy.host}/sec/bearer:v1`, '--debug'], {
        env: { ...box.env, LADING_USERNAME: 'bob', LADING_PASSWORD: TOKEN_PW },
        cwd: box.cwd,
        measure: false,
      });
      ok(r);
      // an expired token mid-push: the 401 path logs too
      ts.expireNext(1);
      const r2 = await runCli(['push', archive, `${proxy.host}/sec/bearer:v2`, '--debug', '--json'], {
        env: { ...box.env, LADING_USERNAME: 'bob', LADING_PASSWORD: TOKEN_PW },
        cwd: box.cwd,
        measure: false,
      });
      ok(r2);
      const bearers = [...headers].filter((h) => /^bearer /i.test(h));
      assert.ok(bearers.length >= 2, `bearer tokens seen: ${bearers.length}`);
      const secrets = secretForms([...headers, `Basic ${Buffer.from(`bob:${TOKEN_PW}`).toString('base64')}`]);
      assertNoSecrets('bearer push output', `${r.stdout}\n${r.stderr}\n${r2.stdout}\n${r2.stderr}`, secrets);
      for (const f of filesOf(box.root, [archive])) assertNoSecrets(f.path, f.text, secrets);
    } finally {
      await proxy.stop();
      await reg.stop();
      await ts.stop();
    }
  });

  test('ECR: AWS secret key and GetAuthorizationToken passwords (native API and --transport registry), with --debug', async (t) => {
    // lading serve verifies signatures: it knows this test's own, recognisable key pair.
    const srv: TestServer = await startTestServer({
      credentials: [SERVE_CREDENTIALS, { accessKeyId: 'AKIDLADINGSECRETS', secretAccessKey: AWS_SECRET }],
    });
    const { proxy, headers } = await recordingProxy({ port: srv.port });
    try {
      await srv.ecr.send(new CreateRepositoryCommand({ repositoryName: 'sec/ecr' }));
      const env = {
        ...box.env,
        AWS_ACCESS_KEY_ID: 'AKIDLADINGSECRETS',
        AWS_SECRET_ACCESS_KEY: AWS_SECRET,
        AWS_SESSION_TOKEN: 'SessionToken-lading-5566aa',
        AWS_REGION: 'us-east-1',
      };
      const dest = '000000000000.dkr.ecr.us-east-1.amazonaws.com/sec/ecr';
      const a = await runCli(['push', archive, `${dest}:v1`, '--endpoint-url', `http://${proxy.host}`, '--debug'], {
        env,
        cwd: box.cwd,
        measure: false,
      });
      ok(a);
      const b = await runCli(
        [
          'push',
          archive,
          `${dest}:v2`,
          '--endpoint-url',
          `http://${proxy.host}`,
          '--transport',
          'registry',
          '--debug',
          '--json',
        ],
        { env, cwd: box.cwd, measure: false },
      );
      ok(b);
      const basic = [...headers].filter((h) => /^basic /i.test(h));
      t.diagnostic(`Authorization headers seen by the proxy: ${headers.size} (${basic.length} Basic for /v2/)`);
      // The debug output is there to be checked: it logs requests.
      assert.match(b.stderr, /debug: /);
      const secrets = secretForms([...headers, AWS_SECRET, 'SessionToken-lading-5566aa']);
      const out = `${a.stdout}\n${a.stderr}\n${b.stdout}\n${b.stderr}`;
      assertNoSecrets('ECR push output', out, secrets);
      // SigV4 signatures are derived from the secret: none may be printed either.
      assert.doesNotMatch(out, /Signature=[0-9a-f]{16}/);
      // When /v2/ traffic went through the proxy the registry password is in `secrets`; otherwise
      // (the endpoint named another host) look for any long base64 run that is not hex.
      if (basic.length === 0) {
        const runs = out.match(/[A-Za-z0-9+/]{60,}={0,2}/g) ?? [];
        assert.deepEqual(
          runs.filter((s) => /[g-zA-Z+/]/.test(s)),
          [],
          'a base64 token-like string in the output',
        );
      }
      for (const f of filesOf(box.root, [archive])) assertNoSecrets(f.path, f.text, secrets);
    } finally {
      await proxy.stop();
      await srv.stop();
    }
  });
});

describe('files lading writes', { skip, timeout: 5 * 60_000 }, () => {
  let box: Sandbox;
  let reg: RegistryServer;
  before(async () => {
    box = sandbox('lading-files-');
    reg = await startRegistry();
  });
  after(async () => {
    box?.remove();
    await reg?.stop();
  });

  test('the digest cache is private (0700 dir, 0600 file) and oci: files are named by digests only', async () => {
    const archive = await legacyArchive(join(box.root, 'app.tar'), 'files', 2, 256 * 1024);
    const out = join(box.root, 'out');
    ok(await runCli(['push', archive, `${reg.host}/files/app:v1`], { env: box.env, cwd: box.cwd, measure: false }));
    ok(await runCli(['push', archive, `oci:${out}`, '--tag', 'v1'], { env: box.env, cwd: box.cwd, measure: false }));
    const dir = join(box.cache, 'lading');
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    for (const f of readdirSync(dir))
      assert.equal(statSync(join(dir, f)).mode & 0o077, 0, `${f} is readable by others`);
    const names = filesOf(out, []).map((f) => f.path.slice(out.length + 1));
    for (const n of names) assert.match(n, /^(oci-layout|index\.json|blobs\/sha256\/[0-9a-f]{64})$/);
    assert.deepEqual(readdirSync(box.tmp), [], 'TMPDIR is empty');
  });

  test('a poisoned digest cache (traversal, junk) is ignored: no file outside the layout, the push is correct', async () => {
    const archive = await legacyArchive(join(box.root, 'app2.tar'), 'poison', 2, 256 * 1024);
    const dir = join(box.cache, 'lading');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    // Entries for every diff_id lading could look up cannot be known in advance; junk lines of
    // every shape, including digests that are paths, must simply be skipped.
    const lines = [
      '{"u":"sha256:../../../../tmp/x","a":"gzip","l":null,"d":"sha256:../../../../etc/passwd","s":1}',
      '{"u":"sha256:' + 'a'.repeat(64) + '","a":"gzip","l":null,"d":"sha256:../../escape","s":1}',
      'not json at all',
      '{"u":1}',
    ];
    writeFileSync(join(dir, 'compressed-digests.jsonl'), `${lines.join('\n')}\n`, { mode: 0o600 });
    const out = join(box.root, 'out2');
    const r = await runCli(['push', archive, `oci:${out}`, '--json'], { env: box.env, cwd: box.cwd, measure: false });
    ok(r);
    for (const n of filesOf(out, []).map((f) => f.path.slice(out.length + 1)))
      assert.match(n, /^(oci-layout|index\.json|blobs\/sha256\/[0-9a-f]{64})$/);
    const strays = box.tree().filter((p) => /escape|passwd/.test(p));
    assert.deepEqual(strays, []);
  });
});

describe('TLS is verified unless --insecure', { skip, timeout: 5 * 60_000 }, () => {
  let reg: RegistryServer;
  let box: Sandbox;
  let host: string | undefined;
  before(async () => {
    reg = await startRegistry({ tls: true });
    box = sandbox('lading-tls-');
    // 127.0.0.1 and localhost mean plain HTTP to lading: reach the TLS registry by another name
    // of this machine that resolves to 127.0.0.1.
    const name = hostname();
    try {
      const a = await lookup(name, { family: 4 });
      if (a.address === '127.0.0.1' && name !== 'localhost') host = `${name}:${reg.port}`;
    } catch {
      host = undefined;
    }
  });
  after(async () => {
    await reg?.stop();
    box?.remove();
  });

  test('a self-signed registry: refused with a one-line TLS error naming --insecure; accepted with --insecure', async (t) => {
    if (host === undefined) {
      t.skip('no host name of this machine resolves to 127.0.0.1');
      return;
    }
    const archive = await legacyArchive(join(box.root, 'tls.tar'), 'tls', 1, 64 * 1024);
    const strict = await runCli(['push', archive, `${host}/tls/app:v1`, '--json'], {
      env: box.env,
      cwd: box.cwd,
      measure: false,
    });
    assert.equal(strict.code, 1, strict.stdout);
    const doc = JSON.parse(strict.stdout) as { error: { code: string; message: string } };
    assert.equal(doc.error.code, 'TLS');
    assert.match(doc.error.message, /certificate|TLS/i);
    assert.match(doc.error.message, /--insecure/);
    assert.equal(strict.stderr.split('\n').filter((l) => l.trim() !== '').length, 1, strict.stderr);
    const insecure = await runCli(['push', archive, `${host}/tls/app:v1`, '--insecure', '--json'], {
      env: box.env,
      cwd: box.cwd,
      measure: false,
    });
    ok(insecure);
  });
});
