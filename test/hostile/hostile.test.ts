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
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { createGzip } from 'node:zlib';
import { legacyDockerSave } from '../fixtures';
import { BAD_BUILDERS } from '../fixtures/bad';
import { BOUNDED_BUILDERS } from './bounded-archives';
import { DIFFERENTIAL_BUILDERS } from './differential-archives';
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
  ...DIFFERENTIAL_BUILDERS,
  ...BOUNDED_BUILDERS,
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
  const same = (c: string): string[] =>
    c === 'DIGEST_MISMATCH' || c === 'DIFF_ID_MISMATCH' ? ['DIGEST_MISMATCH', 'DIFF_ID_MISMATCH'] : [c];
  assert.ok(
    h.codes.flatMap(same).includes(doc.error.code ?? ''),
    `code ${doc.error.code}, expected one of ${h.codes.join(', ')}: ${ctx}`,
  );
  assert.ok(!doc.error.message.includes('\n'), `message on one line: ${ctx}`);
  const shape = oneLineError(r.stderr);
  assert.equal(shape, undefined, `${shape}: ${ctx}`);
  const limit = h.timeMs ?? DEFAULT_TIME_MS;
  assert.ok(r.ms < limit, `took ${r.ms} ms (bound ${limit}): ${ctx}`);
  if (r.maxRssKiB !== undefined) {
    const bound = (h.rssMiB ?? DEFAULT_RSS_MIB) * 1024;
    assert.ok(
      r.maxRssKiB < bound,
      `peak RSS ${(r.maxRssKiB / 1024).toFixed(0)} MiB (bound ${bound / 1024} MiB): ${ctx}`,
    );
  }
}

/** The oci: output: absent, or holding no index.json that references anything. */
function checkOciOut(out: string, h: Hostile): void {
  const index = join(out, 'index.json');
  if (!existsSync(index)) return;
  const doc = JSON.parse(readFileSync(index, 'utf8')) as { manifests?: unknown[] };
  assert.deepEqual(
    doc.manifests ?? [],
    [],
    `${h.name}: oci: output index.json references ${JSON.stringify(doc.manifests)}`,
  );
}

describe('hostile archives: lading inspect and push (child process)', { timeout: 30 * 60_000 }, () => {
  const boxes: Sandbox[] = [];
  after(() => {
    for (const b of boxes) b.remove();
  });
  if (!timeAvailable)
    test('peak RSS is not measured: /usr/bin/time is not installed', { skip: 'apt-get install time' }, () => undefined);

  for (const [i, build] of all.entries()) {
    test(`hostile #${i + 1}`, async (t) => {
      const h = await build();
      t.diagnostic(`${h.name}: ${h.notes}`);
      const box = sandbox();
      boxes.push(box);
      const before = box.tree();

      const inspect = await runCli(['inspect', h.path, '--json'], {
        env: box.env,
        cwd: box.cwd,
        timeoutMs: (h.timeMs ?? DEFAULT_TIME_MS) * 2,
      });
      checkFailure('inspect', h, inspect);

      const out = join(box.root, 'out');
      const push = await runCli(['push', h.path, `oci:${out}`, '--json', ...(h.pushArgs ?? [])], {
        env: box.env,
        cwd: box.cwd,
        timeoutMs: (h.timeMs ?? DEFAULT_TIME_MS) * 2,
      });
      checkFailure('push', h, push);
      checkOciOut(out, h);

      // The same archive as a non-seekable standard input (the one-pass reader).
      if (statSync(h.path).isFile()) {
        // Its own output and digest cache: a layer compressed by the push above would otherwise be
        // found in the cache and skipped unread (see the report on cached layers).
        const out2 = join(box.root, 'out-stdin');
        const env = { ...box.env, XDG_CACHE_HOME: join(box.root, 'cache-stdin') };
        const piped = await runCli(['push', '-', `oci:${out2}`, '--json', ...(h.pushArgs ?? [])], {
          env,
          cwd: box.cwd,
          stdin: readFileSync(h.path),
          timeoutMs: (h.timeMs ?? DEFAULT_TIME_MS) * 2,
        });
        checkFailure('push -', h, piped);
        checkOciOut(out2, h);
      }

      // Nothing but the oci: output (and the digest cache, if written) may appear.
      const added = box.tree().filter((p) => !before.includes(p) && !/^(out|out-stdin|cache|cache-stdin)\//.test(p));
      assert.deepEqual(added, [], `${h.name}: files left behind`);
      t.diagnostic(
        `inspect ${inspect.ms} ms ${((inspect.maxRssKiB ?? 0) / 1024).toFixed(0)} MiB, push ${push.ms} ms ${((push.maxRssKiB ?? 0) / 1024).toFixed(0)} MiB: ${JSON.parse(push.stdout).error.code}`,
      );
      box.remove();
    });
  }
});

/**
 * An input that goes on after the tar's end-of-archive marker (`cat image.tar /dev/zero |
 * lading push - ...`): lading reads at most 1 MiB past the marker, stops, and completes.
 */
describe('standard input that keeps sending after the end of the archive', { timeout: 10 * 60_000 }, () => {
  const boxes: Sandbox[] = [];
  after(() => {
    for (const b of boxes) b.remove();
  });

  /** The archive, then `more()` chunks for ever (or until the reader goes away). */
  function endless(archive: Buffer, more: () => Buffer, gzip: boolean): Readable {
    let sent = 0;
    const src = new Readable({
      read(): void {
        if (sent === 0) this.push(archive);
        else this.push(more());
        sent += 1;
      },
    });
    if (!gzip) return src;
    const gz = createGzip({ level: 1 });
    src.pipe(gz);
    gz.on('close', () => src.destroy());
    return gz;
  }

  const shapes: Array<[string, () => Buffer, boolean]> = [
    ['zeros (a plain tar)', () => Buffer.alloc(64 * 1024), false],
    ['random bytes (a plain tar)', () => randomBytes(64 * 1024), false],
    ['zeros inside a gzip stream that never ends', () => Buffer.alloc(64 * 1024), true],
  ];
  for (const [what, more, gzip] of shapes) {
    test(`a docker archive, then ${what}: inspect and push complete`, async (t) => {
      const archive = readFileSync((await legacyDockerSave()).path);
      const box = sandbox();
      boxes.push(box);
      const inspect = await runCli(['inspect', '-', '--json'], {
        env: box.env,
        cwd: box.cwd,
        stdinStream: endless(archive, more, gzip),
        timeoutMs: 120_000,
      });
      t.diagnostic(
        `inspect: exit ${inspect.code} in ${inspect.ms} ms, ${((inspect.maxRssKiB ?? 0) / 1024).toFixed(0)} MiB`,
      );
      assert.equal(inspect.code, 0, inspect.stderr);
      assert.equal((JSON.parse(inspect.stdout) as { images: unknown[] }).images.length, 1);
      const push = await runCli(['push', '-', `oci:${join(box.root, 'out')}`, '--json'], {
        env: box.env,
        cwd: box.cwd,
        stdinStream: endless(archive, more, gzip),
        timeoutMs: 120_000,
      });
      t.diagnostic(`push: exit ${push.code} in ${push.ms} ms, ${((push.maxRssKiB ?? 0) / 1024).toFixed(0)} MiB`);
      assert.equal(push.code, 0, push.stderr);
      for (const r of [inspect, push]) {
        assert.ok(r.ms < 60_000, `took ${r.ms} ms`);
        if (r.maxRssKiB !== undefined)
          assert.ok(r.maxRssKiB < DEFAULT_RSS_MIB * 1024, `peak RSS ${(r.maxRssKiB / 1024).toFixed(0)} MiB`);
      }
    });
  }
});

/**
 * SIGTERM or SIGINT while lading works through a slow hostile input (a gzip bomb's zeros being
 * skipped, a bomb layer being verified): it ends promptly with 143 or 130, whatever it was doing.
 */
describe('a signal while a slow hostile input is being read', { timeout: 10 * 60_000 }, () => {
  const boxes: Sandbox[] = [];
  after(() => {
    for (const b of boxes) b.remove();
  });
  const slow = [
    'gzip bomb: one 8 GiB entry, 1 GiB of it present',
    'gzip bomb layer: 2 GiB in 2 MiB',
    '60 configs of 3.5 MiB each (gzip)',
  ];
  for (const name of slow) {
    for (const [sig, code] of [
      ['SIGTERM', 143],
      ['SIGINT', 130],
    ] as const) {
      test(`${sig} during inspect of "${name}"`, async (t) => {
        let h: Hostile | undefined;
        for (const b of HOSTILE_BUILDERS.concat(BOUNDED_BUILDERS)) {
          const x = await b();
          if (x.name === name) {
            h = x;
            break;
          }
        }
        assert.ok(h, `no hostile archive named ${name}`);
        const box = sandbox();
        boxes.push(box);
        let signalledAt = 0;
        const r = await runCli(['inspect', h.path, '--json'], {
          env: box.env,
          cwd: box.cwd,
          measure: false,
          timeoutMs: 120_000,
          onSpawn: (pid) => {
            setTimeout(() => {
              try {
                process.kill(pid, sig);
                signalledAt = Date.now();
              } catch {
                // already gone
              }
            }, 700);
          },
        });
        const after = signalledAt === 0 ? -1 : Date.now() - signalledAt;
        t.diagnostic(`exit ${r.code} ${r.signal ?? ''} ${after} ms after ${sig} (run ${r.ms} ms)`);
        if (signalledAt === 0 || r.ms < 700) return; // done before the signal: nothing to check
        assert.equal(r.code, code, r.stderr);
        assert.ok(after < 3000, `ended ${after} ms after ${sig}`);
      });
    }
  }
});
