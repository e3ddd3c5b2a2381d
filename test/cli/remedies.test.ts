/**
 * The library names a remedy (LadingError.remedy); the CLI words it in its own flags. The
 * library's message itself is about the image (test/copy/push-*.test.ts check that side).
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { dockerSave25Containerd, legacyDockerSaveTwoImages } from '../fixtures/formats';
import { runCli } from '../hostile/run-cli';

const out = (): string => `oci:${join(mkdtempSync(join(tmpdir(), 'lading-remedy-')), 'layout')}`;

describe('remedies worded by the CLI', () => {
  test('several images and no choice: the images, then --image or --all-images; exit 1; --json too', async () => {
    const f = await legacyDockerSaveTwoImages();
    const r = await runCli(['push', f.path, out()], { measure: false });
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^lading: .* holds 3 images: .*lading\/first:1\.0.*; choose one with --image, or push them all with --all-images$/m,
    );
    const j = await runCli(['push', '--json', f.path, out()], { measure: false });
    const doc = JSON.parse(j.stdout) as { error: { code: string; message: string } };
    assert.equal(doc.error.code, 'AMBIGUOUS_IMAGE');
    assert.match(doc.error.message, /choose one with --image/);
  });

  test('platforms the archive lacks: what it holds, then --platform', async () => {
    const f = await dockerSave25Containerd();
    const r = await runCli(['push', f.path, out()], { measure: false });
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^lading: .*lacks the content of .*; it holds linux\/amd64; push the platforms it holds alone with --platform$/m,
    );
  });
});
