/**
 * The README's main command, `npm run demo`, kept true: the compiled demo script builds a
 * sample archive, starts lading serve, pushes through the native ECR API, reads everything
 * back through /v2/ and prints the pinned image URI.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

test('npm run demo: serve, push through the ECR API, read back and verify, print the pinned URI', async () => {
  const script = join(__dirname, '..', '..', 'scripts', 'demo.js');
  const { stdout } = await promisify(execFile)(process.execPath, [script], {
    timeout: 60_000,
    env: {
      ...process.env,
      XDG_CACHE_HOME: '/nonexistent-lading-demo',
      // Keys of the user's shell: the demo signs with the server's own and keeps it on its defaults.
      AWS_ACCESS_KEY_ID: 'AKIDSOMEONESSHELL',
      AWS_SECRET_ACCESS_KEY: 'shell-secret',
      LADING_SERVE_ACCESS_KEY_ID: 'AKIDSERVESHELL',
      LADING_SERVE_SECRET_ACCESS_KEY: 'serve-shell-secret',
    },
  });
  assert.match(stdout, /verified: 1 manifest\(s\), 3 blobs, \d+ bytes, all matching their digests/);
  assert.match(
    stdout,
    /image URI: 000000000000\.dkr\.ecr\.us-east-1\.amazonaws\.com\/lading\/demo@sha256:[0-9a-f]{64}\n?$/,
  );
});
