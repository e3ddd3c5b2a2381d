/**
 * `lading push` where our users' CI lives: behind a forward proxy (Debian's tinyproxy, and a
 * test proxy that reaches `*.corp.example` names only it can resolve), with a corporate CA
 * (trusted through --cert-dir, certs.d, AWS_CA_BUNDLE or NODE_EXTRA_CA_CERTS), mutual TLS, and a
 * TLS-inspecting proxy in front of the ECR API. Every request is shown to have gone through the
 * proxy; NO_PROXY is shown to bypass it; proxy credentials never appear in the output.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { LadingError } from '../../src/errors';
import { Network } from '../../src/net/network';
import { RegistryClient } from '../../src/registry';
import { sampleArchive } from '../cdk/helpers';
import { freePort, registryAvailable, startRegistry, type RegistryServer } from '../helpers/registry-server';
import { oneLineError, runCli, sandbox, type CliResult, type Sandbox } from '../hostile/run-cli';
import { randomBlob, source } from '../registry/fixtures';
import { createRepo, SERVE_AWS_ENV, skopeoAvailable, startTestServer, type TestServer } from '../serve/helpers';
import {
  makeTestCA,
  startTestProxy,
  startTinyproxy,
  tinyproxyGate,
  type IssuedCert,
  type TestCA,
  type TestProxy,
  type Tinyproxy,
} from './proxies';

const ci = process.env.CI !== undefined;
const gate =
  registryAvailable && skopeoAvailable
    ? tinyproxyGate()
    : { skip: ci ? undefined : 'docker-registry or skopeo is not installed' };
const PROXY_PASSWORD = 'Pr0xy-Pa55-lading-4e1d';
const AWS = { ...SERVE_AWS_ENV, AWS_REGION: 'us-east-1' };

function ok(r: CliResult): void {
  assert.equal(r.code, 0, `exit ${r.code}\n${r.stderr.slice(-4000)}`);
}

/** The one error line and the JSON error of a failed `--json` run. */
function failure(r: CliResult): { code: string; message: string } {
  assert.equal(r.code, 1, `exit ${r.code}\n${r.stderr}`);
  assert.equal(oneLineError(r.stderr), undefined);
  return (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error;
}

function noSecret(r: CliResult): void {
  for (const s of [
    PROXY_PASSWORD,
    encodeURIComponent(PROXY_PASSWORD),
    Buffer.from(`ci:${PROXY_PASSWORD}`).toString('base64'),
  ]) {
    assert.ok(!r.stdout.includes(s) && !r.stderr.includes(s), `the proxy password leaked:\n${r.stderr.slice(0, 3000)}`);
  }
}

/** `debug: METHOD URL -> STATUS` lines: the registry requests lading made. */
function registryRequests(stderr: string): string[] {
  return [...stderr.matchAll(/^debug: (GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) -> \d+/gm)].map((m) => `${m[1]} ${m[2]}`);
}

describe('lading push through proxies and corporate CAs', gate, () => {
  let box: Sandbox;
  let ca: TestCA;
  let archive: string;
  let plain: RegistryServer;
  let tiny: Tinyproxy;
  let proxy: TestProxy;
  let tlsReg: RegistryServer;
  let mtlsReg: RegistryServer;
  let serverCert: IssuedCert;
  let client: IssuedCert;
  /** A --cert-dir with the CA only, and one with the CA and a client certificate. */
  let caDir: string;
  let mtlsDir: string;

  before(async () => {
    box = sandbox('lading-proxy-');
    ca = await makeTestCA();
    archive = sampleArchive('proxied:1');
    serverCert = await ca.issue(['registry.corp.example', '127.0.0.1']);
    client = await ca.issueClient('ci-runner');
    caDir = join(box.root, 'certs-ca');
    mtlsDir = join(box.root, 'certs-mtls');
    for (const d of [caDir, mtlsDir]) {
      mkdirSync(d);
      copyFileSync(ca.certPath, join(d, 'ca.crt'));
    }
    copyFileSync(client.certPath, join(mtlsDir, 'client.cert'));
    copyFileSync(client.keyPath, join(mtlsDir, 'client.key'));
    [plain, tiny, proxy, tlsReg, mtlsReg] = await Promise.all([
      startRegistry(),
      startTinyproxy({ user: 'ci', password: PROXY_PASSWORD }),
      startTestProxy({
        user: 'ci',
        password: PROXY_PASSWORD,
        refuseConnect: (t) => t.startsWith('forbidden.corp.example'),
      }),
      startRegistry({ tls: { certPath: serverCert.certPath, keyPath: serverCert.keyPath } }),
      startRegistry({ tls: { certPath: serverCert.certPath, keyPath: serverCert.keyPath, clientCAPath: ca.certPath } }),
    ]);
  });
  after(async () => {
    await Promise.all([plain?.stop(), tiny?.stop(), proxy?.stop(), tlsReg?.stop(), mtlsReg?.stop()]);
    await ca?.cleanup();
    box?.remove();
  });

  const push = (args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> =>
    runCli(['push', archive, ...args], { env: { ...box.env, ...env }, measure: false });

  test('HTTP_PROXY with credentials (tinyproxy): every registry request is forwarded by the proxy; the password never shows', async () => {
    const before = tiny.requests().length;
    const r = await push([`${plain.host}/via-tinyproxy:1`, '--debug', '--no-cache'], { HTTP_PROXY: tiny.authUrl! });
    ok(r);
    noSecret(r);
    assert.match(
      r.stderr,
      /debug: network: https proxy none, http proxy http:\/\/\*\*\*@127\.0\.0\.1:\d+ \(HTTP_PROXY\)/,
    );
    const made = registryRequests(r.stderr);
    const forwarded = tiny.requests().slice(before);
    assert.ok(made.length >= 5, made.join('\n'));
    // Each request lading made reached the registry through tinyproxy, as an absolute-form request.
    for (const m of made) {
      const url = m.slice(m.indexOf(' ') + 1).replace(/\?.*$/, '');
      assert.ok(
        forwarded.some((f) => f.replace(/\?.*$/, '') === url),
        `${m} did not go through the proxy; it forwarded:\n${forwarded.join('\n')}`,
      );
    }
    assert.match(tiny.log(), /Established connection to host "127\.0\.0\.1"/);
    const { stdout } = await promisify(execFile)('skopeo', [
      'inspect',
      '--tls-verify=false',
      `docker://${plain.host}/via-tinyproxy:1`,
    ]);
    assert.equal((JSON.parse(stdout) as { Digest: string }).Digest, r.stdout.trim().split('@')[1]);
  });

  test('NO_PROXY bypasses the proxy for matching hosts (IP, CIDR, host:port), and only for them', async () => {
    for (const noProxy of ['127.0.0.1', '127.0.0.0/8', `${plain.host}`, 'example.com,127.0.0.1']) {
      const before = tiny.requests().length;
      const r = await push([`${plain.host}/bypass:1`, '--no-cache'], { HTTP_PROXY: tiny.authUrl!, NO_PROXY: noProxy });
      ok(r);
      assert.equal(tiny.requests().length, before, `NO_PROXY=${noProxy}: nothing through the proxy`);
    }
    const before = tiny.requests().length;
    const r = await push([`${plain.host}/bypass:2`, '--no-cache'], {
      http_proxy: tiny.authUrl!,
      NO_PROXY: '10.0.0.0/8,127.0.0.1:1',
    });
    ok(r);
    assert.ok(tiny.requests().length > before, 'a non-matching NO_PROXY leaves the proxy in use');
  });

  test('HTTPS_PROXY: CONNECT tunnels to a registry only the proxy can reach, trusted through --cert-dir', async () => {
    const before = proxy.connects.length;
    const target = `registry.corp.example:${tlsReg.port}`;
    const r = await push([`${target}/tunnelled:1`, '--cert-dir', caDir, '--debug'], { HTTPS_PROXY: proxy.authUrl! });
    ok(r);
    noSecret(r);
    const connects = proxy.connects.slice(before);
    assert.ok(connects.length >= 1);
    for (const c of connects) {
      assert.equal(c.target, target);
      assert.equal(c.auth, `ci:${PROXY_PASSWORD}`, 'Proxy-Authorization from the proxy URL');
      assert.equal(c.status, 200);
    }
    // Keep-alive through the tunnel: far fewer tunnels than requests.
    assert.ok(
      connects.length < registryRequests(r.stderr).length,
      `${connects.length} tunnels for ${registryRequests(r.stderr).length} requests`,
    );
    const { stdout } = await promisify(execFile)('skopeo', [
      'inspect',
      '--cert-dir',
      caDir,
      `docker://127.0.0.1:${tlsReg.port}/tunnelled:1`,
    ]).catch(() => ({ stdout: '{}' }));
    // skopeo checks the name 127.0.0.1 (in the certificate too) with the same CA.
    assert.equal((JSON.parse(stdout) as { Digest?: string }).Digest, r.stdout.trim().split('@')[1]);
  });

  test('an unknown CA is a TLS error that names the fixes; mutual TLS needs client.cert and client.key', async () => {
    const target = `registry.corp.example:${tlsReg.port}`;
    const untrusted = failure(await push([`${target}/x:1`, '--json'], { HTTPS_PROXY: proxy.authUrl! }));
    assert.equal(untrusted.code, 'TLS');
    assert.match(
      untrusted.message,
      /registry\.corp\.example:\d+ is signed by an unknown authority .*NODE_EXTRA_CA_CERTS or AWS_CA_BUNDLE.*\/etc\/docker\/certs\.d\/registry\.corp\.example:\d+\/ca\.crt.*--cert-dir.*--insecure/,
    );
    // NODE_EXTRA_CA_CERTS, Node's own convention, is enough too.
    ok(await push([`${target}/extra-ca:1`], { HTTPS_PROXY: proxy.authUrl!, NODE_EXTRA_CA_CERTS: ca.certPath }));

    const mtarget = `registry.corp.example:${mtlsReg.port}`;
    const noClient = failure(
      await push([`${mtarget}/m:1`, '--json', '--cert-dir', caDir], { HTTPS_PROXY: proxy.authUrl! }),
    );
    assert.equal(noClient.code, 'TLS');
    assert.match(noClient.message, /requires a client certificate .*client\.cert and client\.key/);
    const r = await push([`${mtarget}/m:1`, '--cert-dir', mtlsDir], { HTTPS_PROXY: proxy.authUrl! });
    ok(r);
  });

  test('a loopback registry with certificates configured (--cert-dir) is reached over TLS, not plain HTTP', async () => {
    const r = await push([`${tlsReg.host}/loopback-tls:1`, '--cert-dir', caDir, '--debug'], {});
    ok(r);
    assert.ok(
      registryRequests(r.stderr).every((q) => q.includes(` https://${tlsReg.host}/`)),
      r.stderr,
    );
  });

  test('certs.d: the directory named HOST:PORT is found and used for the CA and the client certificate (library)', async () => {
    const certsD = mkdtempSync(join(tmpdir(), 'lading-certsd-'));
    try {
      const hostDir = join(certsD, `registry.corp.example:${mtlsReg.port}`);
      mkdirSync(hostDir);
      copyFileSync(ca.certPath, join(hostDir, 'ca.crt'));
      copyFileSync(client.certPath, join(hostDir, 'ci.cert'));
      copyFileSync(client.keyPath, join(hostDir, 'ci.key'));
      const network = new Network({
        env: { HTTPS_PROXY: proxy.authUrl! },
        certsDirectories: [join(certsD, 'none'), certsD],
      });
      const c = new RegistryClient({ registry: `registry.corp.example:${mtlsReg.port}`, network });
      try {
        assert.deepEqual(await c.ping(), { auth: 'anonymous' });
        const b = randomBlob(2000);
        assert.equal((await c.uploadBlob('certsd/app', source(b))).digest, b.digest);
      } finally {
        await c.close();
      }
      // A key without its certificate is refused, naming the file.
      copyFileSync(client.keyPath, join(hostDir, 'orphan.key'));
      const broken = new RegistryClient({
        registry: `registry.corp.example:${mtlsReg.port}`,
        network: new Network({ env: { HTTPS_PROXY: proxy.authUrl! }, certsDirectories: [certsD] }),
      });
      try {
        await assert.rejects(
          broken.ping(),
          (e: unknown) =>
            e instanceof LadingError &&
            e.code === 'TLS' &&
            /orphan\.key: client key without its certificate orphan\.cert/.test(e.message),
        );
      } finally {
        await broken.close();
      }
    } finally {
      rmSync(certsD, { recursive: true, force: true });
    }
  });

  test('tinyproxy CONNECT: a TLS registry at 127.0.0.1 through a real proxy (library)', async () => {
    const before = tiny.connects().length;
    const network = new Network({ env: { https_proxy: tiny.authUrl! }, certsDirectories: [], certDir: caDir });
    const c = new RegistryClient({ registry: tlsReg.host, plainHttp: false, network });
    try {
      const b = randomBlob(300_000);
      assert.equal((await c.uploadBlob('tiny/app', source(b))).digest, b.digest);
    } finally {
      await c.close();
    }
    const connects = tiny.connects().slice(before);
    assert.ok(connects.length >= 1 && connects.every((t) => t === tlsReg.host), connects.join(', '));
  });

  test('proxy failures: unreachable, 407 without or with wrong credentials, a refused CONNECT: one line naming the proxy', async () => {
    const closed = await freePort();
    const target = `registry.corp.example:${tlsReg.port}`;
    const unreachable = failure(
      await push([`${target}/f:1`, '--json', '--cert-dir', caDir], {
        HTTPS_PROXY: `http://ci:${PROXY_PASSWORD}@127.0.0.1:${closed}`,
      }),
    );
    assert.equal(unreachable.code, 'PROXY');
    assert.match(
      unreachable.message,
      new RegExp(
        `cannot reach the proxy http://\\*\\*\\*@127\\.0\\.0\\.1:${closed} \\(from HTTPS_PROXY\\) for ${target}: connection refused`,
      ),
    );
    assert.ok(!unreachable.message.includes(PROXY_PASSWORD));

    const before = proxy.connects.length;
    const noAuth = failure(await push([`${target}/f:1`, '--json', '--cert-dir', caDir], { HTTPS_PROXY: proxy.url }));
    assert.equal(noAuth.code, 'PROXY');
    assert.match(
      noAuth.message,
      /requires authentication \(407.*put them in HTTPS_PROXY as http:\/\/USER:PASSWORD@127\.0\.0\.1:\d+/,
    );
    const badAuth = await push([`${target}/f:1`, '--json', '--cert-dir', caDir], {
      HTTPS_PROXY: `http://ci:wrong-${PROXY_PASSWORD}@127.0.0.1:${proxy.port}`,
    });
    noSecret(badAuth);
    assert.match(failure(badAuth).message, /refused the credentials in HTTPS_PROXY/);
    assert.deepEqual(
      proxy.connects.slice(before).map((c) => c.status),
      [407, 407],
      'the proxy answered each CONNECT with 407 (and lading did not retry a refusal)',
    );

    const forbidden = failure(
      await push([`forbidden.corp.example:${tlsReg.port}/f:1`, '--json', '--cert-dir', caDir], {
        HTTPS_PROXY: proxy.authUrl!,
      }),
    );
    assert.equal(forbidden.code, 'PROXY');
    assert.match(forbidden.message, /refused to connect to forbidden\.corp\.example:\d+ \(403.*NO_PROXY/);
    assert.equal(proxy.connects.at(-1)?.status, 403);
  });
});

describe('the ECR paths through a TLS-inspecting proxy (lading serve behind it)', gate, () => {
  let box: Sandbox;
  let ca: TestCA;
  let mitm: TestProxy;
  let srv: TestServer;
  let archive: string;

  before(async () => {
    box = sandbox('lading-proxy-ecr-');
    ca = await makeTestCA();
    archive = sampleArchive('ecr-proxied:1');
    [mitm, srv] = await Promise.all([startTestProxy({ mitm: { ca } }), startTestServer()]);
    await createRepo(srv.ecr, 'corp/app');
  });
  after(async () => {
    await Promise.all([mitm?.stop(), srv?.stop()]);
    await ca?.cleanup();
    box?.remove();
  });

  const endpoint = (): string => `https://ecr.corp.example:${srv.port}`;
  const push = (args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> =>
    runCli(
      [
        'push',
        archive,
        `ecr.corp.example:${srv.port}/corp/app:${args[0]}`,
        '--ecr',
        '--endpoint-url',
        endpoint(),
        ...args.slice(1),
      ],
      { env: { ...box.env, ...AWS, ...env }, measure: false },
    );

  test('ecr-api: every ECR call through the proxy, the inspecting CA trusted only through AWS_CA_BUNDLE', async () => {
    const before = mitm.requests.length;
    const r = await push(['bundle'], { HTTPS_PROXY: mitm.url, AWS_CA_BUNDLE: ca.certPath });
    ok(r);
    const seen = mitm.requests.slice(before);
    const targets = seen.map((q) => String(q.headers['x-amz-target'] ?? '').replace(/^.*\./, ''));
    for (const op of [
      'DescribeRepositories',
      'BatchCheckLayerAvailability',
      'InitiateLayerUpload',
      'UploadLayerPart',
      'CompleteLayerUpload',
      'PutImage',
    ]) {
      assert.ok(targets.includes(op), `${op} went through the proxy (saw ${targets.join(', ')})`);
    }
    assert.ok(
      seen.every((q) => q.status === 200),
      'each answered',
    );
    assert.equal(srv.calls.PutImage !== undefined, true);
  });

  test('ecr-api: NODE_EXTRA_CA_CERTS works as well; without either, a TLS error naming both', async () => {
    ok(await push(['extra'], { HTTPS_PROXY: mitm.url, NODE_EXTRA_CA_CERTS: ca.certPath }));
    const r = await push(['none', '--json'], { HTTPS_PROXY: mitm.url });
    const e = failure(r);
    assert.equal(e.code, 'TLS');
    assert.match(
      e.message,
      /the ECR API endpoint is signed by an unknown authority .*NODE_EXTRA_CA_CERTS or AWS_CA_BUNDLE/,
    );
    assert.doesNotMatch(e.message, /certs\.d/, 'certs.d is for registries, not AWS endpoints');
  });

  test('registry transport: the API call tunnelled, the registry endpoint (http) forwarded', async () => {
    const before = mitm.requests.length;
    const r = await push(['registry', '--transport', 'registry'], {
      HTTPS_PROXY: mitm.url,
      HTTP_PROXY: mitm.url,
      AWS_CA_BUNDLE: ca.certPath,
    });
    ok(r);
    const seen = mitm.requests.slice(before);
    assert.ok(
      seen.some((q) => String(q.headers['x-amz-target'] ?? '').endsWith('GetAuthorizationToken')),
      'the token through the tunnel',
    );
    assert.ok(
      seen.some((q) => q.method === 'PUT' && q.url.includes('/v2/corp/app/manifests/registry')),
      `the tag through the proxy: ${seen.map((q) => `${q.method} ${q.url}`).join('\n')}`,
    );
  });
});
