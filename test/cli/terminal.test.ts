/**
 * Output a terminal can trust (issue 19): names from a hostile archive, and arguments, cannot
 * move the cursor, clear the screen, retitle the terminal or forge a line; --json stays exact.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { terminalSafe } from '../../src/terminal/format';
import { dockerArchiveParts, freshPath, sampleLayers, tarBuffer } from '../fixtures';
import { runCli } from '../hostile/run-cli';

const ESC = '\u001b';
const FORGED = '\nlading: pushed, all verified';

describe('terminalSafe', () => {
  test('control characters, C1, separators and bidi overrides become visible escapes; text is cut', () => {
    assert.equal(
      terminalSafe(`a${ESC}[2Jb\r\n\tc\u0085\u2028\u202e\u2066d\u007f`),
      'a\\x1b[2Jb\\r\\n\\tc\\x85\\u2028\\u202e\\u2066d\\x7f',
    );
    assert.equal(terminalSafe('é€😀 ok'), 'é€😀 ok', 'printable text is left alone');
    assert.equal(terminalSafe('x'.repeat(50), 10), `${'x'.repeat(10)}...`);
  });
});

describe('hostile names through the CLI', () => {
  test('inspect and errors escape names from the archive; --json keeps them exact', async () => {
    const evil = `evil${ESC}]0;pwned\u0007${ESC}[2J:1${FORGED}`;
    const layers = await sampleLayers('terminal', ['none']);
    const parts = dockerArchiveParts([{ repoTags: [evil], platform: { os: 'linux', architecture: 'amd64' }, layers }], {
      order: 'sorted',
    });
    const path = freshPath('terminal.tar');
    writeFileSync(path, await tarBuffer(parts.entries));

    const human = await runCli(['inspect', path], { measure: false });
    assert.equal(human.code, 0, human.stderr);
    assert.ok(
      !human.stdout.includes(ESC) && !human.stdout.includes('\u0007'),
      'no raw escape or bell reaches the terminal',
    );
    assert.ok(!/^lading: pushed/m.test(human.stdout), 'no forged line');
    assert.ok(human.stdout.includes('evil\\x1b]0;pwned\\x07\\x1b[2J:1\\nlading: pushed, all verified'), human.stdout);

    const json = await runCli(['inspect', path, '--json'], { measure: false });
    assert.deepEqual(
      (JSON.parse(json.stdout) as { images: { names: string[] }[] }).images[0]!.names,
      [evil],
      '--json is exact',
    );

    const err = await runCli(['push', path, '127.0.0.1:9/x/y', '--image', `${ESC}[31mred${FORGED}`], {
      measure: false,
    });
    assert.equal(err.code, 1);
    assert.ok(!err.stderr.includes(ESC), err.stderr);
    const lines = err.stderr.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, `one line: ${JSON.stringify(err.stderr)}`);
    assert.match(lines[0]!, /^lading: .*\\x1b\[31mred\\nlading: pushed, all verified/);
  });
});
