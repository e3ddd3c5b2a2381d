/**
 * Hostile archives through the real CLI, as a child process: `lading inspect --json` and
 * `lading push --json ARCHIVE oci:OUT`, and for files `lading push - oci:OUT` from standard input. Each must exit 1 with a typed error code, one line on
 * stderr without a stack trace, within a time and a peak-RSS bound, and write nothing outside
 * its sandbox (TMPDIR, XDG_CACHE_HOME, HOME and cwd all private; TMPDIR empty afterwards; the
 * oci: output, if created at all, referencing no image).
 *
 * The archives: every builder of test/fixtures/bad.ts plus those of ./fixtures.ts.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { BAD_BUILDERS } from '../fixtures/bad';
import { HOSTILE_BUILDERS, type Hostile } from './fixtures';
import { oneLineError, runCli, sandbox, timeAvailable, type CliResult, type Sandbox } from './run-cli';

const DEFAULT_TIME_MS = 20_000;
const DEFAULT_RSS_MIB = 300;

const all: Array<() => Promise<Hostile>> = [
  ...BAD_BUILDERS.map((b) => async (): Promise<Hostile> => {
    const f = await b();
    return { name: f.name, path: f.path, codes: [f.code, ...(f.alsoAccept ?? [])], notes: f.notes };
  }),
  ...HOSTILE_BUILDERS,
];

function checkFailure(what: string, h: Hostile, r: CliResult): void {
  const ctx = `${what} ${h.name}: exit ${r.code} ${r.signal ?? ''} in ${r.ms} ms\nstdout: ${r.stdout.slice(0, 2000)}\nstderr: ${r.stderr.slice(0, 2000)}`;
  assert.equal(r.signal, null, ctx);
  assert.equal(r.code, 1, ctx);
  let doc: { error?: { code?: string; message?: string } };
  try {
    doc = JSON.parse(r.stdout) as typeof doc;
  } catch {
    assert.fail(`stdout is not one JSON document: ${ctx}`);
  }
  assert.ok(doc.error && typeof doc.error.message === 'string' && doc.error.message.length > 0, ctx);
  // A layer whose bytes are not what the manifest says: which of the two digests (stored,
  // uncompressed) is compared first depends on the format and the command; both refuse it.
  const same = (c: string): string[] => (c === 'DIGEST_MISMATCH' || c === 'DIFF_ID_MISMATCH' ? ['DIGEST_MISMATCH', 'DIFF_ID_MISMATCH'] : [c]);
  assert.ok(h.codes.flatMap(same).includes(doc.error.code ?? ''), `code ${doc.error.code}, expected one of ${h.codes.join(', ')}: ${ctx}`);
  assert.ok(!doc.error.message.includes('\n'), `message on one line: ${ctx}`);
  const shape = oneLineError(r.stderr);
  assert.equal(shape, undefined, `${shape}: ${ctx}`);
  const limit = h.timeMs ?? DEFAULT_TIME_MS;
  assert.ok(r.ms < limit, `took ${r.ms} ms (bound ${limit}): ${ctx}`);
  if (r.maxRssKiB !== undefined) {
    const bound = (h.rssMiB ?? DEFAULT_RSS_MIB) * 1024;
    assert.ok(r.maxRssKiB < bound, `peak RSS ${(r.maxRssKiB / 1024).toFixed(0)} MiB (bound ${bound / 1024} MiB): ${ctx}`);
  }
}

/** The oci: output: absent, or holding no index.json that references anything. */
function checkOciOut(out: string, h: Hostile): void {
  const index = join(out, 'index.json');
  if (!existsSync(index)) return;
  const doc = JSON.parse(readFileSync(index, 'utf8')) as { manifests?: unknown[] };
  assert.deepEqual(doc.manifests ?? [], [], `${h.name}: oci: output index.json references ${JSON.stringify(doc.manifests)}`);
}

describe('hostile archives: lading inspect and push (child process)', { timeout: 30 * 60_000 }, () => {
  const boxes: Sandbox[] = [];
  after(() => {
    for (const b of boxes) b.remove();
  });
  if (!timeAvailable) test('peak RSS is not measured: /usr/bin/time is not installed', { skip: 'apt-get install time' }, () => undefined);

  for (const [i, build] of all.entries()) {
    test(`hostile #${i + 1}`, async (t) => {
      const h = await build();
      t.diagnostic(`${h.name}: ${h.notes}`);
      const box = sandbox();
      boxes.push(box);
      const before = box.tree();

      const inspect = await runCli(['inspect', h.path, '--json'], { env: box.env, cwd: box.cwd, timeoutMs: (h.timeMs ?? DEFAULT_TIME_MS) * 2 });
      checkFailure('inspect', h, inspect);

      const out = join(box.root, 'out');
      const push = await runCli(['push', h.path, `oci:${out}`, '--json', ...(h.pushArgs ?? [])], { env: box.env, cwd: box.cwd, timeoutMs: (h.timeMs ?? DEFAULT_TIME_MS) * 2 });
      checkFailure('push', h, push);
      checkOciOut(out, h);

      // The same archive as a non-seekable standard input (the one-pass reader).
      if (statSync(h.path).isFile()) {
        // Its own output and digest cache: a layer compressed by the push above would otherwise be
        // found in the cache and skipped unread (see the report on cached layers).
        const out2 = join(box.root, 'out-stdin');
        const env = { ...box.env, XDG_CACHE_HOME: join(box.root, 'cache-stdin') };
        const piped = await runCli(['push', '-', `oci:${out2}`, '--json', ...(h.pushArgs ?? [])], { env, cwd: box.cwd, stdin: readFileSync(h.path), timeoutMs: (h.timeMs ?? DEFAULT_TIME_MS) * 2 });
        checkFailure('push -', h, piped);
        checkOciOut(out2, h);
      }

      // Nothing but the oci: output (and the digest cache, if written) may appear.
      const added = box.tree().filter((p) => !before.includes(p) && !/^(out|out-stdin|cache|cache-stdin)\//.test(p));
      assert.deepEqual(added, [], `${h.name}: files left behind`);
      t.diagnostic(`inspect ${inspect.ms} ms ${((inspect.maxRssKiB ?? 0) / 1024).toFixed(0)} MiB, push ${push.ms} ms ${((push.maxRssKiB ?? 0) / 1024).toFixed(0)} MiB: ${JSON.parse(push.stdout).error.code}`);
      box.remove();
    });
  }
});
