/**
 * Every archive flavour lading reads, built deterministically by test/fixtures, read from a file
 * path (or directory) AND from a non-seekable stream, with identical results; then the hostile
 * and broken archives, each rejected with its LadingError code within a time bound.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { inspectArchive } from '../../src/archive';
import { isLadingError } from '../../src/errors';
import {
  BAD_BUILDERS,
  BadFixture,
  FORMAT_BUILDERS,
  Fixture,
  asJson,
  assertInspect,
  compressedFixture,
  dockerSave25,
  ggcrTarball,
  legacyDockerSave,
  legacyDockerSaveSymlink,
  nixStreamLayeredImage,
  ociArchive,
  pipeOf,
  rejection,
  sha256,
  streamOf,
  within,
} from '../fixtures';

/** Every bad archive must be rejected within this bound (they are all < 10 MiB). */
const TIME_BOUND_MS = 5000;

async function readBoth(f: Fixture): Promise<void> {
  const fromPath = await inspectArchive(f.path);
  assertInspect(fromPath, f.expected, `${f.name} read from its path`);
  if (f.kind !== 'file') return;
  const fromStream = await inspectArchive(streamOf(f.path));
  assertInspect(fromStream, f.expected, `${f.name} read from a non-seekable stream`);
  // synthesized digests included: the same archive gives the same answer however it is read
  assert.deepStrictEqual(asJson(fromStream), asJson(fromPath), `${f.name}: stream and file results differ`);
}

void describe('archive formats: file and stream give the expected inspect result', () => {
  for (const [title, build] of FORMAT_BUILDERS) {
    void it(title, async () => {
      await readBoth(await build());
    });
  }
});

void describe('whole archive compressed', () => {
  const cases: ReadonlyArray<readonly [string, () => Promise<Fixture>]> = [
    ['docker save (legacy)', legacyDockerSave],
    ['docker save (legacy, layer symlink)', legacyDockerSaveSymlink],
    ['docker save (Docker >= 25)', dockerSave25],
    ['go-containerregistry tarball', ggcrTarball],
    ['nix streamLayeredImage', nixStreamLayeredImage],
    ['OCI archive', ociArchive],
  ];
  for (const c of ['gzip', 'zstd'] as const) {
    for (const [title, build] of cases) {
      void it(`${title}, ${c}`, async () => {
        const plain = await build();
        await readBoth(compressedFixture(plain, c));
      });
    }
  }

  void it('a compressed archive gives the same images as the plain one (synthesized digests included)', async () => {
    const plain = await legacyDockerSave();
    const a = asJson(await inspectArchive(plain.path)) as { images: unknown };
    const gz = asJson(await inspectArchive(compressedFixture(plain, 'gzip').path)) as { images: unknown };
    const zst = asJson(await inspectArchive(streamOf(compressedFixture(plain, 'zstd').path))) as { images: unknown };
    assert.deepStrictEqual(gz.images, a.images);
    assert.deepStrictEqual(zst.images, a.images);
  });
});

void describe('other inputs', () => {
  void it('reads from a real OS pipe (cat FILE |)', async () => {
    const f = await legacyDockerSaveSymlink();
    assertInspect(await inspectArchive(pipeOf(f.path)), f.expected, 'from a pipe');
  });

  void it('reads a path that is a FIFO (lading inspect <(cat FILE)) as a stream, plain and gzip', async () => {
    const plain = await legacyDockerSaveSymlink();
    for (const f of [plain, compressedFixture(plain, 'gzip')]) {
      const fifo = join(fs.mkdtempSync(join(tmpdir(), 'lading-fifo-')), 'archive');
      execFileSync('mkfifo', [fifo]);
      const writer = spawn('sh', ['-c', 'cat "$1" > "$2"', 'sh', f.path, fifo], { stdio: 'ignore' });
      try {
        assertInspect(await inspectArchive(fifo), f.expected, `${f.name} through a FIFO`);
      } finally {
        writer.kill();
        fs.rmSync(join(fifo, '..'), { recursive: true, force: true });
      }
    }
  });

  void it('verify: false gives the same description', async () => {
    for (const build of [legacyDockerSave, dockerSave25, ociArchive]) {
      const f = await build();
      assertInspect(await inspectArchive(f.path, { verify: false }), f.expected, `${f.name} with verify: false`);
    }
  });

  void it('fixtures are deterministic (same bytes on every build)', async () => {
    for (const [, build] of FORMAT_BUILDERS) {
      const a = await build();
      const b = await build();
      if (a.kind === 'file') assert.equal(sha256(fs.readFileSync(a.path)), sha256(fs.readFileSync(b.path)), a.name);
      assert.deepStrictEqual(a.expected, b.expected, a.name);
    }
  });
});

async function expectRejection(f: BadFixture, input: string | NodeJS.ReadableStream, how: string): Promise<void> {
  const what = `${f.name} (${how})`;
  const { value: err, elapsed } = await within(
    TIME_BOUND_MS,
    rejection(inspectArchive(input, f.options ?? {}), what),
    what,
  );
  assert.ok(
    isLadingError(err),
    `${what}: expected a LadingError, got ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`,
  );
  const accepted = [f.code, ...(f.alsoAccept ?? [])];
  assert.ok(
    accepted.includes(err.code),
    `${what}: expected code ${accepted.join(' or ')}, got ${err.code}: ${err.message}`,
  );
  assert.ok(err.message.length > 0, `${what}: empty message`);
  assert.ok(elapsed < TIME_BOUND_MS, `${what}: took ${Math.round(elapsed)} ms`);
}

void describe('bad input is rejected with a stable code, quickly', () => {
  for (const build of BAD_BUILDERS) {
    void it(build.name, async () => {
      const f = await build();
      await expectRejection(f, f.path, 'from its path');
      if (f.kind === 'file') await expectRejection(f, streamOf(f.path), 'from a stream');
    });
  }
});
