import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LadingError } from '../../src/errors';
import { digestOf, MediaType } from '../../src/image';
import { dockerConfigCredentials, environmentCredentials, RegistryClient } from '../../src/registry';
import { registryAvailable, startRegistry, type RegistryServer } from '../helpers/registry-server';
import { configBlob, ociManifest, randomBlob, skopeoInspectRaw, source } from './fixtures';

const skip = registryAvailable ? false : 'docker-registry is not installed';
const PASSWORD = 'pa55-w0rd-very-secret';

describe('Basic auth (htpasswd registry)', { skip }, () => {
  let reg: RegistryServer;
  let dir: string;
  const clients: RegistryClient[] = [];
  const logs: string[] = [];
  const make = (opts: Partial<ConstructorParameters<typeof RegistryClient>[0]>): RegistryClient => {
    const c = new RegistryClient({ registry: reg.host, logger: (l) => logs.push(l), retryBaseDelayMs: 10, ...opts });
    clients.push(c);
    return c;
  };

  before(async () => {
    reg = await startRegistry({ htpasswd: { alice: PASSWORD } });
    dir = mkdtempSync(join(tmpdir(), 'lading-basic-'));
  });
  after(async () => {
    for (const c of clients) await c.close();
    await reg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('explicit credentials: ping, push a blob and a manifest, read back with skopeo', async () => {
    const c = make({ credentials: { username: 'alice', password: PASSWORD } });
    assert.deepEqual(await c.ping(), { auth: 'basic' });
    const cfg = configBlob();
    await c.uploadBlob('basic/app', source(cfg));
    const m = ociManifest(cfg, []);
    const d = await c.putManifest('basic/app', 'v1', m, MediaType.OciManifest);
    assert.equal(
      digestOf(await skopeoInspectRaw(reg.host, 'basic/app', 'v1', { username: 'alice', password: PASSWORD })),
      d,
    );
  });

  test('wrong password -> AUTH naming the credential source, never the secret', async () => {
    const wrong = 'not-the-right-password';
    const c = make({ credentials: { username: 'alice', password: wrong } });
    await assert.rejects(c.ping(), (e: unknown) => {
      assert.ok(e instanceof LadingError);
      assert.equal(e.code, 'AUTH');
      assert.match(e.message, /authentication failed with credentials from explicit credentials/);
      assert.ok(!e.message.includes(wrong));
      return true;
    });
    await assert.rejects(c.uploadBlob('basic/app', source(randomBlob(10))), { code: 'AUTH' });
    assert.ok(logs.every((l) => !l.includes(wrong) && !l.includes(Buffer.from(`alice:${wrong}`).toString('base64'))));
  });

  test('no credentials -> AUTH saying none were found and where it looked', async () => {
    const c = make({ credentials: environmentCredentials({}) });
    await assert.rejects(c.blobExists('basic/app', digestOf('x')), (e: unknown) => {
      assert.ok(e instanceof LadingError && e.code === 'AUTH');
      assert.match(
        e.message,
        /requires credentials and none were found \(looked in LADING_USERNAME\/LADING_PASSWORD\)/,
      );
      return true;
    });
  });

  test('LADING_USERNAME/LADING_PASSWORD', async () => {
    const c = make({ credentials: environmentCredentials({ LADING_USERNAME: 'alice', LADING_PASSWORD: PASSWORD }) });
    assert.deepEqual(await c.ping(), { auth: 'basic' });
  });

  test('docker config.json "auths" entry (base64 auth)', async () => {
    const file = join(dir, 'auths.json');
    writeFileSync(
      file,
      JSON.stringify({
        auths: { [`http://${reg.host}/v2/`]: { auth: Buffer.from(`alice:${PASSWORD}`).toString('base64') } },
      }),
    );
    const c = make({ credentials: dockerConfigCredentials({ files: [file] }) });
    const b = randomBlob(100);
    assert.equal((await c.uploadBlob('basic/cfg', source(b))).digest, b.digest);
  });

  test('docker config.json credHelpers: docker-credential-test on PATH gets the server URL on stdin', async () => {
    const bin = join(dir, 'bin');
    const seen = join(dir, 'helper-stdin');
    rmSync(bin, { recursive: true, force: true });
    mkdirSync(bin);
    const script = join(bin, 'docker-credential-test');
    writeFileSync(
      script,
      `#!/bin/sh
[ "$1" = get ] || exit 2
read -r server
printf '%s' "$server" > ${JSON.stringify(seen)}
if [ "$server" = ${JSON.stringify(reg.host)} ]; then
  printf '{"ServerURL":"%s","Username":"alice","Secret":"${PASSWORD}"}' "$server"
else
  echo "credentials not found in native keychain"; exit 1
fi
`,
    );
    chmodSync(script, 0o755);
    const file = join(dir, 'helpers.json');
    writeFileSync(file, JSON.stringify({ credHelpers: { [reg.host]: 'test', 'other.example.com': 'test' } }));
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` };
    const c = make({ credentials: dockerConfigCredentials({ files: [file], env }) });
    assert.deepEqual(await c.ping(), { auth: 'basic' });
    assert.equal(readFileSync(seen, 'utf8'), reg.host);
    const b = randomBlob(100);
    assert.equal((await c.uploadBlob('basic/helper', source(b))).digest, b.digest);

    // credsStore: the same helper, used for any host; "not found" means no credentials.
    const store = join(dir, 'store.json');
    writeFileSync(store, JSON.stringify({ credsStore: 'test' }));
    const provider = dockerConfigCredentials({ files: [store], env });
    assert.equal((await provider.resolve(reg.host))?.username, 'alice');
    assert.equal(await provider.resolve('elsewhere.example.com'), undefined);
  });
});
