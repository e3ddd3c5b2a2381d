/**
 * `lading serve` as a command (runServe with a CommandContext, as src/cli/main.ts runs it):
 * the banner, credentials from flags or environment, faults from flags, --data, the temp dir
 * removed on exit, usage errors.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { CreateRepositoryCommand, DescribeRepositoriesCommand } from '@aws-sdk/client-ecr';
import type { CommandContext } from '../../src/command/context';
import { runServe, serveHelp } from '../../src/serve/cli';
import { ECR_TARGET, ecrClient, http, rejectsWith, SERVE_CREDENTIALS, tempDir } from './helpers';

function context(env: NodeJS.ProcessEnv = {}): {
  ctx: CommandContext;
  out: string[];
  err: string[];
  abort: () => void;
  debug: string[];
} {
  const out: string[] = [];
  const err: string[] = [];
  const debug: string[] = [];
  const ac = new AbortController();
  return {
    ctx: {
      stdout: (s) => out.push(s),
      stderr: (s) => err.push(s),
      debug: (l) => debug.push(l),
      signal: ac.signal,
      isTTY: false,
      env,
    },
    out,
    err,
    debug,
    abort: () => ac.abort(),
  };
}

async function until<T>(fn: () => T | undefined, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('lading serve (command)', () => {
  test('prints "listening on URL", serves until aborted, applies --fault, removes its temp data dir', async () => {
    const c = context();
    const running = runServe(c.ctx, [
      '--port',
      '0',
      '--fault',
      'op=DescribeRepositories,kind=error,error=AccessDeniedException,status=400',
      '--debug',
    ]);
    const url = await until(() => /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(c.out[0] ?? '')?.[1]);
    const dataDir = /data in (\S+)/.exec(c.err.join('\n'))?.[1];
    assert.ok(dataDir && existsSync(dataDir), c.err.join('\n'));
    const ecr = ecrClient(url, 1);
    try {
      await rejectsWith(ecr.send(new DescribeRepositoriesCommand({})), 'AccessDeniedException');
      await ecr.send(new CreateRepositoryCommand({ repositoryName: 'from-cli' }));
      const out = await ecr.send(new DescribeRepositoriesCommand({}));
      assert.deepEqual(
        out.repositories?.map((r) => r.repositoryName),
        ['from-cli'],
      );
    } finally {
      ecr.destroy();
    }
    assert.ok(
      c.debug.some((l) => /CreateRepository -> 200/.test(l)),
      c.debug.join('\n'),
    );
    c.abort();
    assert.equal(await running, 0);
    assert.equal(existsSync(dataDir), false);
  });

  test('--data DIR keeps the repositories after exit', async () => {
    const dir = await tempDir();
    try {
      const c = context();
      const running = runServe(c.ctx, ['--data', dir, '--registry-id', '123456789012']);
      const url = await until(() => /^listening on (\S+)$/.exec(c.out[0] ?? '')?.[1]);
      const ecr = ecrClient(url);
      const out = await ecr.send(new CreateRepositoryCommand({ repositoryName: 'kept' }));
      assert.equal(out.repository?.registryId, '123456789012');
      ecr.destroy();
      c.abort();
      assert.equal(await running, 0);
      assert.ok(existsSync(`${dir}/kept/index.json`));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('--help, and usage errors', async () => {
    const c = context();
    assert.equal(await runServe(c.ctx, ['--help']), 0);
    assert.equal(c.out[0], serveHelp);
    for (const args of [
      ['--port', 'x'],
      ['--port', '70000'],
      ['--fault', 'nonsense'],
      ['--fault', 'op=X,kind=boom'],
      ['extra'],
      ['--registry-id', '12'],
      ['--nope'],
      ['--access-key-id', 'AKIDHALF'],
      ['--secret-access-key', 'half'],
      ['--access-key-id', 'a/b', '--secret-access-key', 's'],
      ['--no-verify-signatures', '--access-key-id', 'AKIDX', '--secret-access-key', 's'],
    ]) {
      await assert.rejects(runServe(context().ctx, args), { code: 'USAGE' }, args.join(' '));
    }
    await assert.rejects(runServe(context({ LADING_SERVE_ACCESS_KEY_ID: 'AKIDHALF' }).ctx, []), { code: 'USAGE' });
    assert.match(serveHelp, /--no-verify-signatures/);
    assert.match(serveHelp, /LADING_SERVE_SECRET_ACCESS_KEY/);
  });

  /** Runs `lading serve ARGS` with ENV; `use` gets its URL and standard error. */
  async function serving(
    args: string[],
    env: NodeJS.ProcessEnv,
    use: (url: string, err: string) => Promise<void>,
  ): Promise<void> {
    const c = context(env);
    const running = runServe(c.ctx, args);
    try {
      const url = await until(() => /^listening on (\S+)$/.exec(c.out[0] ?? '')?.[1]);
      await until(() => (c.err.some((l) => /signed with|not verified/.test(l)) ? true : undefined));
      await use(url, c.err.join('\n'));
    } finally {
      c.abort();
      assert.equal(await running, 0);
    }
  }

  test('credentials: the defaults, printed at start-up; --access-key-id/--secret-access-key or LADING_SERVE_* instead; --no-verify-signatures', async () => {
    const check = async (url: string, ok: { accessKeyId: string; secretAccessKey: string }, refused?: string) => {
      const good = ecrClient(url, 1, ok);
      try {
        await good.send(new DescribeRepositoriesCommand({}));
      } finally {
        good.destroy();
      }
      if (!refused) return;
      const bad = ecrClient(url, 1, { accessKeyId: refused, secretAccessKey: 'x' });
      try {
        await rejectsWith(bad.send(new DescribeRepositoriesCommand({})), 'UnrecognizedClientException');
      } finally {
        bad.destroy();
      }
    };
    await serving([], {}, async (url, err) => {
      assert.match(err, /AWS_ACCESS_KEY_ID=lading AWS_SECRET_ACCESS_KEY=lading-secret/);
      assert.deepEqual(SERVE_CREDENTIALS, { accessKeyId: 'lading', secretAccessKey: 'lading-secret' });
      await check(url, SERVE_CREDENTIALS, 'AKIDOTHER');
    });
    const flags = { accessKeyId: 'AKIDFLAGS', secretAccessKey: 'flags-secret' };
    const env = { LADING_SERVE_ACCESS_KEY_ID: 'AKIDENV', LADING_SERVE_SECRET_ACCESS_KEY: 'env-secret' };
    await serving(
      ['--access-key-id', flags.accessKeyId, '--secret-access-key', flags.secretAccessKey],
      env,
      async (url, err) => {
        assert.match(err, /signed with access key id AKIDFLAGS/);
        assert.doesNotMatch(err, /flags-secret/, 'a secret given is never printed');
        await check(url, flags, SERVE_CREDENTIALS.accessKeyId);
        await check(url, flags, 'AKIDENV');
      },
    );
    await serving([], env, async (url, err) => {
      assert.doesNotMatch(err, /env-secret/);
      await check(url, { accessKeyId: 'AKIDENV', secretAccessKey: 'env-secret' }, SERVE_CREDENTIALS.accessKeyId);
    });
    await serving(['--no-verify-signatures'], {}, async (url, err) => {
      assert.match(err, /WARNING: signatures are not verified/);
      const r = await http(`${url}/`, {
        method: 'POST',
        headers: { 'x-amz-target': `${ECR_TARGET}CreateRepository`, 'content-type': 'application/x-amz-json-1.1' },
        body: JSON.stringify({ repositoryName: 'unsigned' }),
      });
      assert.equal(r.status, 200, r.body.toString());
      await check(url, { accessKeyId: 'anyone', secretAccessKey: 'anything' });
    });
  });
});
