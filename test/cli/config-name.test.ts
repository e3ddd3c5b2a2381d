/**
 * Issue 18: a config whose file name claims another digest than its content. docker identifies a
 * config by its content, and skopeo and crane push such archives (go-containerregistry's own
 * mutated test images are made this way): lading pushes it under its real digest and reports the
 * mismatch as a warning. A blobs/ path, which is how OCI documents link to each other, still may
 * not lie.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { execFileSync } from 'node:child_process';
import { dockerArchiveParts, freshPath, sampleLayers, tarBuffer } from '../fixtures';
import { registryAvailable, startRegistry } from '../helpers/registry-server';
import { runCli } from '../hostile/run-cli';

const LIE = 'ab'.repeat(32);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function archive(configName: (hex: string) => string): Promise<{ path: string; configHex: string }> {
  const layers = await sampleLayers('config-name', ['none']);
  const parts = dockerArchiveParts(
    [{ repoTags: ['lading/config-name:1'], platform: { os: 'linux', architecture: 'amd64' }, layers, configName }],
    { order: 'sorted' },
  );
  const config = parts.entries.find((e) => e.name === configName(''))!;
  const path = freshPath('config-name.tar');
  writeFileSync(path, await tarBuffer(parts.entries));
  return { path, configHex: sha((config as { data: Buffer }).data) };
}

describe('a config file name that disagrees with its content', () => {
  test('inspect accepts it with a warning (human and --json)', async () => {
    const a = await archive(() => `${LIE}.json`);
    const human = await runCli(['inspect', a.path], { measure: false });
    assert.equal(human.code, 0, human.stderr);
    assert.match(
      human.stdout,
      new RegExp(`warning +config "${LIE}\\.json" has digest sha256:${a.configHex}, its name says sha256:${LIE}`),
    );
    const j = await runCli(['inspect', '--json', a.path], { measure: false });
    const doc = JSON.parse(j.stdout) as { images: { warnings?: string[] }[] };
    assert.equal(doc.images[0]!.warnings?.length, 1);
    assert.match(doc.images[0]!.warnings![0]!, new RegExp(`its name says sha256:${LIE}`));
  });

  test('push goes ahead, the config under its real digest; the warning on stderr and in --json', async () => {
    const a = await archive(() => `${LIE}.json`);
    const dir = join(mkdtempSync(join(tmpdir(), 'lading-config-name-')), 'layout');
    const r = await runCli(['push', '--json', a.path, `oci:${dir}`], { measure: false });
    assert.equal(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout) as { digest: string; warnings?: string[] };
    assert.match(res.warnings?.[0] ?? '', new RegExp(`has digest sha256:${a.configHex}`));
    const manifest = JSON.parse(readFileSync(join(dir, 'blobs', 'sha256', res.digest.slice(7)), 'utf8')) as {
      config: { digest: string };
    };
    assert.equal(manifest.config.digest, `sha256:${a.configHex}`, 'the manifest names the config by its content');
    assert.ok(existsSync(join(dir, 'blobs', 'sha256', a.configHex)), 'the config is stored under its real digest');
    assert.ok(!existsSync(join(dir, 'blobs', 'sha256', LIE)), 'nothing is stored under the name it claimed');

    const human = await runCli(['push', a.path, `oci:${dir}-2`], { measure: false });
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stderr, /^lading: warning: config .* its name says sha256:ab/m);
  });

  test(
    'pushed to a real registry, skopeo reads the config back by its real digest',
    { skip: registryAvailable ? false : 'docker-registry is not installed' },
    async () => {
      const a = await archive(() => `${LIE}.json`);
      const reg = await startRegistry();
      try {
        const r = await runCli(['push', '--plain-http', a.path, `${reg.host}/lading/config-name:1`], {
          measure: false,
        });
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /^lading: warning: config /m);
        const config = execFileSync('skopeo', [
          'inspect',
          '--tls-verify=false',
          '--raw',
          '--config',
          `docker://${reg.host}/lading/config-name:1`,
        ]);
        assert.equal(sha(config), a.configHex, 'the registry serves the config under the digest of its content');
      } finally {
        await reg.stop();
      }
    },
  );

  test('a blobs/ path that lies is still refused', async () => {
    const a = await archive(() => `blobs/sha256/${LIE}`);
    const r = await runCli(['inspect', a.path], { measure: false });
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(`^lading: .*config "blobs/sha256/${LIE}" has digest sha256:${a.configHex}, its name says`, 'm'),
    );
  });
});
