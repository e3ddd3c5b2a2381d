/**
 * Property: whatever happens to an archive's bytes (flipped bytes, truncation, spliced
 * garbage), reading it yields either a result or a LadingError with a stable code, never
 * another exception and never a hang. The seeds: archives of every format, and the shapes
 * of issue 19's hostile archives (parser differentials, link chains, index fan-out), small.
 * Run with FC_NUM_RUNS=5000 (npm run fuzz) for more.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { inspectArchive } from '../../src/archive';
import { isLadingError } from '../../src/errors';
import { dockerSave25, ggcrTarball, legacyDockerSaveSymlink, ociArchive } from '../fixtures';
import { gzipSync } from 'node:zlib';
import { fanOutEntries, linkChainEntries } from '../hostile/bounded-archives';
import { DIFFERENTIAL_BUILDERS } from '../hostile/differential-archives';
import { writeTar } from '../hostile/fixtures';

const runs = Number(process.env.FC_NUM_RUNS ?? 60);
const dir = mkdtempSync(join(tmpdir(), 'lading-corrupt-'));
after(() => rmSync(dir, { recursive: true, force: true }));

type Mutation =
  | { kind: 'flip'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'splice'; at: number; junk: Uint8Array };

const mutation = fc.oneof(
  fc.record({
    kind: fc.constant('flip' as const),
    at: fc.double({ min: 0, max: 1, noNaN: true }).map((x) => x),
    value: fc.integer({ min: 0, max: 255 }),
  }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({
    kind: fc.constant('splice' as const),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    junk: fc.uint8Array({ minLength: 1, maxLength: 600 }),
  }),
) as fc.Arbitrary<unknown> as fc.Arbitrary<{ kind: Mutation['kind']; at: number; value?: number; junk?: Uint8Array }>;

function apply(buf: Buffer, muts: { kind: Mutation['kind']; at: number; value?: number; junk?: Uint8Array }[]): Buffer {
  let b = Buffer.from(buf);
  for (const m of muts) {
    const at = Math.min(b.length - 1, Math.floor(m.at * b.length));
    if (m.kind === 'flip') b[at] = m.value!;
    else if (m.kind === 'truncate') b = b.subarray(0, at);
    else b = Buffer.concat([b.subarray(0, at), Buffer.from(m.junk!), b.subarray(at)]);
    if (b.length === 0) break;
  }
  return b;
}

async function check(bytes: Buffer, label: string): Promise<void> {
  const file = join(dir, `${label}.tar`);
  writeFileSync(file, bytes);
  for (const input of [file, Readable.from([bytes])]) {
    const started = Date.now();
    try {
      await inspectArchive(input);
    } catch (e) {
      assert.ok(isLadingError(e), `${label}: expected a LadingError, got ${(e as Error)?.stack ?? String(e)}`);
      assert.match(e.message, /\S/);
    }
    assert.ok(Date.now() - started < 5000, `${label}: took ${Date.now() - started} ms`);
  }
}

describe('corrupted archives give typed errors only', () => {
  const builders: ReadonlyArray<readonly [string, () => Promise<{ path: string }>]> = [
    ['legacy docker save with a symlinked layer', legacyDockerSaveSymlink],
    ['docker save >= 25', dockerSave25],
    ['OCI archive', ociArchive],
    ['ggcr tarball', ggcrTarball],
    // Seeds from issue 19: the shapes of hostile archives, small.
    ['a FIFO whose data is a second manifest.json', DIFFERENTIAL_BUILDERS[0]!],
    ['manifest.json twice', DIFFERENTIAL_BUILDERS[2]!],
    ['a lone zero block before a second manifest.json', DIFFERENTIAL_BUILDERS[9]!],
    [
      'layers named through a chain of directory links',
      async () => ({ path: await writeTar('seed-links', linkChainEntries(6, 40, 20)) }),
    ],
    [
      'indexes listing the next one many times',
      async () => ({ path: await writeTar('seed-fan-out', await fanOutEntries(4, 30)) }),
    ],
  ];
  for (const [name, build] of builders) {
    it(name, async () => {
      const original = readFileSync((await build()).path);
      let i = 0;
      await fc.assert(
        fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.boolean(), async (muts, gz) => {
          const corrupted = apply(original, muts);
          await check(gz ? gzipSync(corrupted) : corrupted, `${name.replace(/\W+/g, '-')}-${i++}`);
        }),
        { numRuns: runs },
      );
    });
  }
});
