/**
 * The CLI's own surface: usage without a command, shell completion built from the help texts,
 * and the README's CLI reference agreeing with the help (every option in one is in the other).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { optionsOf } from '../../src/cli/completion';
import { inspectHelp } from '../../src/cli/inspect';
import { pushHelp } from '../../src/cli/push';
import { cdkHelp } from '../../src/cdk-publish/cli';
import { serveHelp } from '../../src/serve/cli';
import { CLI, runCli } from '../hostile/run-cli';

const README = readFileSync(join(__dirname, '../../../README.md'), 'utf8');

describe('lading: usage and completion', () => {
  test('no command: the usage on stderr, nothing on stdout, exit 2', async () => {
    const r = await runCli([], { measure: false });
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^lading .*\n\nUsage: lading COMMAND/);
  });

  /** Runs the completion function in bash as the shell would for `words`, the last being completed. */
  const complete = (words: string[]): string[] => {
    const script = execFileSync(process.execPath, [CLI, 'completion', 'bash'], { encoding: 'utf8' });
    const out = execFileSync(
      'bash',
      [
        '-c',
        `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _lading; printf '%s\\n' "\${COMPREPLY[@]}"`,
      ],
      { encoding: 'utf8' },
    );
    return out.split('\n').filter((l) => l !== '');
  };

  test("bash: commands, then each command's options as its --help lists them", () => {
    assert.deepEqual(complete(['lading', 'pu']), ['push']);
    assert.deepEqual(complete(['lading', 'push', 'app.tar', '--dig']), ['--digest-file']);
    assert.deepEqual(complete(['lading', 'push', '--cert']), ['--cert-dir']);
    assert.deepEqual(complete(['lading', 'inspect', '--no-v']), ['--no-verify']);
    assert.ok(complete(['lading', 'serve', '--']).includes('--port'));
  });

  test('zsh: the same function through bashcompinit; an unknown shell is a usage error', async () => {
    const zsh = execFileSync(process.execPath, [CLI, 'completion', 'zsh'], { encoding: 'utf8' });
    assert.match(zsh, /^autoload -U \+X bashcompinit && bashcompinit\n_lading\(\) \{/);
    const r = await runCli(['completion', 'fish'], { measure: false });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /bash or zsh/);
  });
});

describe('README and --help agree', () => {
  const helps: Record<string, string> = {
    inspect: inspectHelp,
    push: pushHelp,
    serve: serveHelp,
    'cdk publish': cdkHelp,
  };
  const reference = README.slice(
    README.indexOf('## CLI reference'),
    README.indexOf('\n## ', README.indexOf('## CLI reference') + 5),
  );

  test("every option a command's --help lists is in the README's CLI reference", () => {
    const missing = Object.entries(helps).flatMap(([name, help]) =>
      optionsOf(help)
        .filter((o) => o !== '--help' && !new RegExp(`\`${o}[\\s\`=|/,]`).test(reference))
        .map((o) => `lading ${name} ${o}`),
    );
    assert.deepEqual(
      missing,
      [],
      `options --help lists that the README's CLI reference does not: ${missing.join(', ')}`,
    );
  });

  test("every option the README's CLI reference names exists in some --help", () => {
    const known = new Set([...Object.values(helps).flatMap(optionsOf), '--help', '--version']);
    const named = [...reference.matchAll(/`(--[a-z][a-z0-9-]*)/g)].map((m) => m[1]!);
    const unknown = [...new Set(named.filter((o) => !known.has(o)))];
    assert.deepEqual(unknown, [], `options in the README that no --help lists: ${unknown.join(', ')}`);
  });

  test('the default tag and the gzip level range read the same in push --help and the README', () => {
    assert.match(pushHelp, /Default: the tag in DESTINATION, else the\s+image's own tags in the archive, else latest/);
    assert.match(reference, /Default: the tag in DESTINATION; else the image's own tags in the archive/);
    const helpLevels = /--compression-level N\s+gzip (\d)-(\d)/.exec(pushHelp);
    const readmeLevels = /`--compression-level N` \| gzip (\d)-(\d)/.exec(reference);
    assert.ok(helpLevels && readmeLevels, 'both state the gzip range');
    assert.deepEqual(helpLevels.slice(1), readmeLevels.slice(1));
  });
});
