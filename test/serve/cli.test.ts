/**
 * `lading serve` as a command (runServe with a CommandContext, as src/cli/main.ts runs it):
 * the banner, faults from flags, --data, the temp dir removed on exit, usage errors.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { describe, test } from 'node:test';
import { CreateRepositoryCommand, DescribeRepositoriesCommand } from '@aws-sdk/client-ecr';
import type { CommandContext } from '../../src/command/context';
import { runServe, serveHelp } from '../../src/serve/cli';
import { ecrClient, rejectsWith, tempDir } from './helpers';

function context(): { ctx: CommandContext; out: string[]; err: string[]; abort: () => void; debug: string[] } {
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
      env: {},
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
    ]) {
      await assert.rejects(runServe(context().ctx, args), { code: 'USAGE' }, args.join(' '));
    }
  });
});
