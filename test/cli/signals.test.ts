/**
 * SIGINT / SIGTERM during a push, the CLI as a child process: the destination is slowed (the
 * fault proxy's delay, lading serve's `slow` fault, or standard input that stalls) so the push is
 * mid-flight when the signal comes. Expected: exit 130 (SIGINT) or 143 (SIGTERM) quickly (the
 * in-flight requests are cancelled, not waited for), one line on stderr, no tag written, no
 * temp file left (TMPDIR private and empty afterwards; the oci: layout holds no partial file).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CreateRepositoryCommand, DescribeImagesCommand } from '@aws-sdk/client-ecr';
import { registryAvailable, startRegistry, type RegistryServer } from '../helpers/registry-server';
import { startFaultProxy } from '../registry/fault-proxy';
import { SERVE_AWS_ENV, startTestServer, type TestServer } from '../serve/helpers';
import { legacyArchive, tagProblems, MiB } from '../faults/helpers';
import { CLI, runCli, sandbox, type CliResult, type Sandbox } from '../hostile/run-cli';

const skip = registryAvailable ? false : 'docker-registry is not installed';

async function until(cond: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for the push to be mid-flight');
    await new Promise((r) => setTimeout(r, 20));
  }
}

function checkInterrupted(r: CliResult, sig: 'SIGINT' | 'SIGTERM', signalledAt: number, box: Sandbox): void {
  const ctx = `exit ${r.code} ${r.signal ?? ''}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
  assert.equal(r.code, sig === 'SIGINT' ? 130 : 143, ctx);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('lading: '));
  assert.equal(lines.length, 1, ctx);
  assert.match(lines[0]!, new RegExp(`interrupted by ${sig}`), ctx);
  assert.ok(!/\n\s+at /.test(r.stderr), ctx);
  const doc = JSON.parse(r.stdout) as { error?: { code: string } };
  assert.equal(doc.error?.code, 'ABORTED', ctx);
  const took = Date.now() - signalledAt;
  assert.ok(took < 2500, `exited ${took} ms after the signal: in-flight requests were waited for, not cancelled`);
  assert.deepEqual(
    box.tree().filter((p) => p.startsWith('tmp/') && p !== 'tmp/'),
    [],
    'temp files left in TMPDIR',
  );
}

describe('signals during a push (child process)', { skip, timeout: 10 * 60_000 }, () => {
  let reg: RegistryServer;
  let box: Sandbox;
  let archive: string;
  before(async () => {
    reg = await startRegistry();
    box = sandbox('lading-signals-');
    archive = await legacyArchive(join(box.root, 'app.tar'), 'signals', 3, 2 * MiB);
  });
  after(async () => {
    await reg?.stop();
    box?.remove();
  });

  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    test(`registry: ${sig} while blob uploads are in flight: exit ${sig === 'SIGINT' ? 130 : 143}, no tag, no temp file`, async () => {
      const proxy = await startFaultProxy(reg, (r) =>
        (r.url ?? '').includes('/blobs/uploads/') && r.method !== 'POST' ? { delayMs: 10_000 } : undefined,
      );
      try {
        let signalledAt = 0;
        const repo = `signals/${sig.toLowerCase()}`;
        const r = await runCli(['push', archive, `${proxy.host}/${repo}:v1`, '--json'], {
          env: box.env,
          cwd: box.cwd,
          measure: false,
          onSpawn: (pid) => {
            void until(() => proxy.seen.some((s) => s.startsWith('PATCH ') || s.startsWith('PUT /v2/signals'))).then(
              () => {
                signalledAt = Date.now();
                process.kill(pid, sig);
              },
            );
          },
        });
        checkInterrupted(r, sig, signalledAt, box);
        assert.equal(await tagProblems(`${reg.url}/v2/${repo}`, 'v1'), undefined, 'no tag');
      } finally {
        await proxy.stop();
      }
    });
  }

  test('oci: SIGINT while the archive streams in from stdin: exit 130, no index.json entry, no partial file', async () => {
    const out = join(box.root, 'oci-out');
    const bytes = readFileSync(archive);
    let signalledAt = 0;
    const child = spawn(process.execPath, [CLI, 'push', '-', `oci:${out}`, '--json'], {
      env: box.env,
      cwd: box.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.stdin.on('error', () => undefined);
    // Most of the archive (layers first in a sorted docker save: uploads under way), then a stall.
    // The write completes once the pipe has taken it all, i.e. once the push has read all but the
    // pipe's buffer (64 KiB) of it: the readiness signal, not a guessed delay.
    let consumed = false;
    assert.ok(bytes.length * 0.6 > 1024 * 1024, 'the part written is far larger than a pipe buffer');
    child.stdin.write(bytes.subarray(0, Math.floor(bytes.length * 0.6)), () => (consumed = true));
    const code = await new Promise<number | null>((resolve) => {
      // Signalled once the push is under way (it has read most of what was written), not after a
      // guessed delay that a cold process on a busy machine may not have reached.
      void until(() => consumed).then(() => {
        signalledAt = Date.now();
        child.kill('SIGINT');
      });
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.on('close', (c) => {
        clearTimeout(killer);
        resolve(c);
      });
    });
    checkInterrupted({ code, signal: null, stdout, stderr, ms: 0, maxRssKiB: undefined }, 'SIGINT', signalledAt, box);
    if (existsSync(join(out, 'index.json'))) {
      const idx = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as { manifests?: unknown[] };
      assert.deepEqual(idx.manifests ?? [], []);
    }
    const partial = box
      .tree()
      .filter(
        (p) =>
          p.startsWith('oci-out/') && !/^oci-out\/(blobs\/(sha256\/([0-9a-f]{64})?)?|oci-layout|index\.json)$/.test(p),
      );
    assert.deepEqual(partial, [], 'partial files left in the layout');
  });
});

describe('signals during an ECR push (lading serve, child process)', { timeout: 5 * 60_000 }, () => {
  let srv: TestServer;
  let box: Sandbox;
  before(async () => {
    srv = await startTestServer();
    box = sandbox('lading-signals-ecr-');
  });
  after(async () => {
    await srv?.stop();
    box?.remove();
  });

  test('ecr: SIGTERM while UploadLayerPart calls are slow: exit 143, no image', async () => {
    const archive = await legacyArchive(join(box.root, 'app.tar'), 'signals-ecr', 3, 2 * MiB);
    await srv.ecr.send(new CreateRepositoryCommand({ repositoryName: 'signals/ecr' }));
    srv.faults.add({ op: 'UploadLayerPart', kind: 'slow', delayMs: 10_000, times: Infinity });
    srv.resetCalls();
    let signalledAt = 0;
    try {
      const env = {
        ...box.env,
        ...SERVE_AWS_ENV,
        AWS_REGION: 'us-east-1',
      };
      const r = await runCli(
        [
          'push',
          archive,
          `000000000000.dkr.ecr.us-east-1.amazonaws.com/signals/ecr:v1`,
          '--endpoint-url',
          srv.url,
          '--json',
        ],
        {
          env,
          cwd: box.cwd,
          measure: false,
          onSpawn: (pid) => {
            void until(() => (srv.calls.UploadLayerPart ?? 0) > 0).then(() => {
              signalledAt = Date.now();
              process.kill(pid, 'SIGTERM');
            });
          },
        },
      );
      checkInterrupted(r, 'SIGTERM', signalledAt, box);
    } finally {
      srv.faults.clear();
    }
    const images = await srv.ecr.send(new DescribeImagesCommand({ repositoryName: 'signals/ecr' }));
    assert.deepEqual(images.imageDetails ?? [], [], 'no image was put');
  });
});
