import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LadingError } from '../../src/errors';
import {
  chainCredentials,
  defaultAuthFiles,
  defaultCredentials,
  dockerConfigCredentials,
  environmentCredentials,
  staticCredentials,
} from '../../src/registry';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('credential lookup', () => {
  let dir: string;
  let bin: string;
  let env: NodeJS.ProcessEnv;
  const write = (name: string, content: unknown): string => {
    const f = join(dir, name);
    writeFileSync(f, typeof content === 'string' ? content : JSON.stringify(content));
    return f;
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'lading-creds-'));
    bin = join(dir, 'bin');
    mkdirSync(bin);
    // A fake helper: answers per server URL, like docker-credential-helpers do.
    const helper = join(bin, 'docker-credential-fake');
    writeFileSync(
      helper,
      `#!/bin/sh
read -r server
case "$server" in
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"hubuser","Secret":"hubsecret"}' ;;
  token.example.com) echo '{"ServerURL":"x","Username":"<token>","Secret":"refresh-123"}' ;;
  broken.example.com) echo "keychain locked" >&2; exit 3 ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
`,
    );
    chmodSync(helper, 0o755);
    env = { PATH: `${bin}:${process.env.PATH ?? ''}`, HOME: dir };
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('auths: base64 auth, username/password, identitytoken; keys with scheme and path', async () => {
    const f = write('c1.json', {
      auths: {
        'https://a.example.com/v2/': { auth: b64('ann:pw:with:colons') },
        'b.example.com:5000': { username: 'bo', password: 'pw2' },
        'http://c.example.com': { username: 'cy', identitytoken: 'idtok' },
        'https://index.docker.io/v1/': { auth: b64('hub:hubpw') },
        'empty.example.com': {},
      },
    });
    const p = dockerConfigCredentials({ files: [f], env });
    assert.deepEqual(await p.resolve('a.example.com'), { username: 'ann', password: 'pw:with:colons', source: f });
    assert.deepEqual(await p.resolve('b.example.com:5000'), { username: 'bo', password: 'pw2', source: f });
    assert.equal(await p.resolve('b.example.com'), undefined, 'the port is part of the key');
    assert.deepEqual(await p.resolve('c.example.com'), { username: 'cy', identityToken: 'idtok', source: f });
    assert.equal((await p.resolve('registry-1.docker.io'))?.username, 'hub');
    assert.equal(await p.resolve('empty.example.com'), undefined);
  });

  test('credHelpers win over auths; credsStore is asked with the Docker Hub URL; <token> is an identity token', async () => {
    const f = write('c2.json', {
      credsStore: 'fake',
      credHelpers: { 'token.example.com': 'fake' },
      auths: { 'only-auths.example.com': { auth: b64('o:p') } },
    });
    const p = dockerConfigCredentials({ files: [f], env });
    assert.deepEqual(await p.resolve('registry-1.docker.io'), {
      username: 'hubuser',
      password: 'hubsecret',
      source: `${f} (credsStore: fake)`,
    });
    assert.deepEqual(await p.resolve('token.example.com'), {
      identityToken: 'refresh-123',
      source: `${f} (credHelpers: fake)`,
    });
    assert.equal((await p.resolve('only-auths.example.com'))?.username, 'o', 'store says not found: auths still used');
  });

  test('helper failures are AUTH errors; a missing helper is named', async () => {
    const f = write('c3.json', {
      credHelpers: { 'broken.example.com': 'fake', 'missing.example.com': 'nosuchhelper' },
    });
    const p = dockerConfigCredentials({ files: [f], env });
    await assert.rejects(
      p.resolve('broken.example.com'),
      (e: unknown) => e instanceof LadingError && e.code === 'AUTH' && /exit 3\): keychain locked/.test(e.message),
    );
    await assert.rejects(
      p.resolve('missing.example.com'),
      (e: unknown) => e instanceof LadingError && /docker-credential-nosuchhelper not found on PATH/.test(e.message),
    );
  });

  test("file order: REGISTRY_AUTH_FILE, podman's auth.json (XDG_RUNTIME_DIR, then ~/.config), then DOCKER_CONFIG/config.json; missing files are skipped", async () => {
    const first = write('auth.json', { auths: { 'x.example.com': { auth: b64('first:1') } } });
    mkdirSync(join(dir, 'dc'), { recursive: true });
    write('dc/config.json', {
      auths: { 'x.example.com': { auth: b64('second:2') }, 'y.example.com': { auth: b64('second:3') } },
    });
    mkdirSync(join(dir, 'run', 'containers'), { recursive: true });
    write('run/containers/auth.json', {
      auths: { 'y.example.com': { auth: b64('podman:4') }, 'z.example.com': { auth: b64('podman:5') } },
    });
    const e = {
      ...env,
      REGISTRY_AUTH_FILE: first,
      DOCKER_CONFIG: join(dir, 'dc'),
      XDG_RUNTIME_DIR: join(dir, 'run'),
      XDG_CONFIG_HOME: join(dir, 'cfg'),
    };
    assert.deepEqual(defaultAuthFiles(e), [
      first,
      join(dir, 'run', 'containers', 'auth.json'),
      join(dir, 'cfg', 'containers', 'auth.json'),
      join(dir, 'dc', 'config.json'),
    ]);
    assert.deepEqual(defaultAuthFiles({ HOME: '/home/u' }), [
      '/home/u/.config/containers/auth.json',
      '/home/u/.docker/config.json',
    ]);
    const p = dockerConfigCredentials({ env: e });
    assert.equal((await p.resolve('x.example.com'))?.username, 'first');
    assert.equal((await p.resolve('y.example.com'))?.username, 'podman', "podman login's file before docker's");
    assert.equal((await p.resolve('z.example.com'))?.username, 'podman');
    const noPodman = dockerConfigCredentials({ env: { ...e, XDG_RUNTIME_DIR: join(dir, 'elsewhere') } });
    assert.equal((await noPodman.resolve('y.example.com'))?.username, 'second');
    assert.equal(
      await dockerConfigCredentials({ files: [join(dir, 'nope.json')] }).resolve('x.example.com'),
      undefined,
    );
  });

  test('a corrupt config file is an AUTH error that does not print its content', async () => {
    const f = write('bad.json', '{"auths": {"x": {"auth": "c2VjcmV0"}');
    await assert.rejects(
      dockerConfigCredentials({ files: [f] }).resolve('x'),
      (e: unknown) => e instanceof LadingError && e.code === 'AUTH' && !e.message.includes('c2VjcmV0'),
    );
  });

  test('environment and chain order: LADING_* first, then files', async () => {
    const f = write('c4.json', { auths: { 'z.example.com': { auth: b64('file:pw') } } });
    const fromEnv = environmentCredentials({ LADING_USERNAME: 'envuser', LADING_PASSWORD: 'envpw' });
    const chain = chainCredentials(fromEnv, dockerConfigCredentials({ files: [f] }));
    assert.equal((await chain.resolve('z.example.com'))?.username, 'envuser');
    assert.equal(
      (
        await chainCredentials(environmentCredentials({}), dockerConfigCredentials({ files: [f] })).resolve(
          'z.example.com',
        )
      )?.username,
      'file',
    );
    assert.equal(chain.description, `LADING_USERNAME/LADING_PASSWORD, ${f}`);
    assert.equal(
      (await defaultCredentials({ ...env, LADING_USERNAME: 'u', LADING_PASSWORD: 'p' }).resolve('any.example.com'))
        ?.source,
      'LADING_USERNAME/LADING_PASSWORD',
    );
    assert.deepEqual(await staticCredentials({ username: 'a', password: 'b' }).resolve('h'), {
      username: 'a',
      password: 'b',
      source: 'explicit credentials',
    });
  });
});
