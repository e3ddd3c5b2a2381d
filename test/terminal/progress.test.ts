/**
 * Progress rendering: on a terminal, a live area (blobs in flight, total with rate and ETA)
 * redrawn in place under permanent log lines; without a terminal, plain lines; nothing with
 * --quiet. The terminal case runs the real CLI under a pseudo-terminal (util-linux `script`).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { ProgressRenderer } from '../../src/terminal/progress';
import type { Digest } from '../../src/image/digest';
import { sampleDockerArchive } from '../../src/sample';

const tmp = mkdtempSync(join(tmpdir(), 'lading-progress-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const D = `sha256:${'a'.repeat(64)}` as Digest;

test('tty mode: log lines above a live area that is erased and redrawn in place', async () => {
  const out: string[] = [];
  const r = new ProgressRenderer((s) => out.push(s), 'tty');
  r.onEvent({ type: 'plan', blobs: 2, bytes: 2048, manifests: 1 });
  r.onEvent({ type: 'blob-start', id: 'b1', label: 'layer 1/1 of linux/amd64', size: 2048, action: 'compress+upload' });
  r.onEvent({ type: 'blob-progress', id: 'b1', bytes: 1024 });
  await new Promise((resolve) => setTimeout(resolve, 400)); // the live area redraws every 150 ms
  r.onEvent({ type: 'blob-done', id: 'b1', digest: D, size: 900 });
  r.onEvent({ type: 'manifest', digest: D, mediaType: 'application/vnd.oci.image.manifest.v1+json', tag: 'v1' });
  r.stop();
  const text = out.join('');
  assert.match(text, /uploaded {2}layer 1\/1 of linux\/amd64 sha256:aaaaaaaaaaaa/);
  assert.match(text, /tagged {4}v1 -> sha256:a{64}/);
  // The live area was drawn (blob line + total line) and erased before each permanent line.
  assert.match(text, /total .* sent, .*\/s/);
  assert.ok(text.includes('\x1b[2A\x1b[J'), JSON.stringify(text));
  // Every write is passed through as is: control sequences are never followed by an added newline.
  const ESC = String.fromCharCode(27);
  assert.ok(!out.some((s) => s.startsWith(ESC) && s.endsWith('[J\n')));
});

test('plain and quiet modes', () => {
  const plain: string[] = [];
  const p = new ProgressRenderer((s) => plain.push(s), 'plain');
  p.onEvent({ type: 'plan', blobs: 1, bytes: 10, manifests: 1 });
  p.onEvent({ type: 'blob-skip', id: 'x', label: 'config of linux/amd64', digest: D, size: 10, reason: 'exists' });
  p.stop();
  assert.deepEqual(plain, [
    'copying 1 blobs (10 B stored) and 1 manifest\n',
    'skipped config of linux/amd64: already there (sha256:aaaaaaaaaaaa)\n',
  ]);
  assert.ok(!plain.join('').includes('\x1b'));
  const quiet: string[] = [];
  const q = new ProgressRenderer((s) => quiet.push(s), 'quiet');
  q.onEvent({ type: 'plan', blobs: 1, bytes: 10, manifests: 1 });
  q.stop();
  assert.deepEqual(quiet, []);
});

test(
  'the CLI on a terminal draws the live display; piped, it prints plain lines',
  { skip: existsSync('/usr/bin/script') ? false : 'util-linux script is not installed' },
  async () => {
    const archive = join(tmp, 'sample.tar');
    writeFileSync(archive, sampleDockerArchive('tty:1'));
    const cli = join(__dirname, '..', '..', 'src', 'cli', 'main.js');
    const env = { ...process.env, XDG_CACHE_HOME: join(tmp, 'xdg') };
    const cmd = `${process.execPath} ${cli} push ${archive} oci:${join(tmp, 'out-tty')} --tag v1`;
    const tty = await promisify(execFile)('script', ['-qec', cmd, '/dev/null'], { env, timeout: 30_000 });
    assert.ok(tty.stdout.includes('\x1b['), 'control sequences on a terminal');
    assert.match(tty.stdout, /tagged +v1 -> sha256:[0-9a-f]{64}/);
    assert.match(tty.stdout, /oci:.*@sha256:[0-9a-f]{64}\s*$/);
    const piped = await promisify(execFile)(
      process.execPath,
      [cli, 'push', archive, `oci:${join(tmp, 'out-pipe')}`, '--tag', 'v1'],
      { env, timeout: 30_000 },
    );
    assert.ok(!piped.stderr.includes('\x1b'), 'no control sequences in a pipe');
    assert.match(piped.stderr, /^copying 3 blobs/m);
  },
);
