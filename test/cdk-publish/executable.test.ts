/**
 * The pure parts of `lading cdk publish`: recognising the executables that TarballImageAsset
 * writes (every aws-cdk-lib generation, any CDK_DOCKER), stack patterns as cdk deploy reads them.
 */
import assert from 'node:assert/strict';
import { userInfo } from 'node:os';
import { describe, test } from 'node:test';
import { stackPatternMatches } from '../../src/cdk-publish/assembly';
import { cdkSessionName } from '../../src/cdk-publish/aws';
import { firstCommandWords, parseExecutable } from '../../src/cdk-publish/executable';

const SED = 'sed "s/Loaded image[^:]*: //g"';

describe('parseExecutable', () => {
  test('aws-cdk-lib >= 2.1xx: the archive is $1, after the script and $0', () => {
    const exe = ['sh', '-c', `docker load -i "$1" | tail -n 1 | ${SED}`, 'cdk-tarball-image-asset', 'asset.abc.tar'];
    assert.deepEqual(parseExecutable(exe), { kind: 'archive', path: 'asset.abc.tar', tool: 'docker' });
  });

  test('older aws-cdk-lib: the path inside the script, with or without tail', () => {
    assert.deepEqual(
      parseExecutable(['sh', '-c', 'docker load -i asset.1.tar | tail -n 1 | sed "s/Loaded image: //g"']),
      { kind: 'archive', path: 'asset.1.tar', tool: 'docker' },
    );
    assert.deepEqual(parseExecutable(['sh', '-c', 'docker load -i asset.2.tar | sed "s/Loaded image: //g"']), {
      kind: 'archive',
      path: 'asset.2.tar',
      tool: 'docker',
    });
  });

  test('CDK_DOCKER values baked in at synth: podman, finch, a path with spaces, ${CDK_DOCKER:-docker}', () => {
    assert.deepEqual(parseExecutable(['sh', '-c', `podman load -i "$1" | tail -n 1 | ${SED}`, '$0', 'a.tar']), {
      kind: 'archive',
      path: 'a.tar',
      tool: 'podman',
    });
    assert.deepEqual(parseExecutable(['sh', '-c', `/usr/local/bin/finch load --input "$1" | ${SED}`, 'x', 'b.tar']), {
      kind: 'archive',
      path: 'b.tar',
      tool: 'finch',
    });
    assert.deepEqual(parseExecutable(['sh', '-c', `"/opt/my tools/docker" load --input="$1" | ${SED}`, 'x', 'c.tar']), {
      kind: 'archive',
      path: 'c.tar',
      tool: 'docker',
    });
    assert.deepEqual(parseExecutable(['sh', '-c', `\${CDK_DOCKER:-docker} load -i \${1} | ${SED}`, 'x', 'd.tar']), {
      kind: 'archive',
      path: 'd.tar',
      tool: 'docker',
    });
    assert.deepEqual(parseExecutable(['/bin/bash', '-c', `docker load -qi '/abs/e f.tar' | ${SED}`]), {
      kind: 'archive',
      path: '/abs/e f.tar',
      tool: 'docker',
    });
  });

  test('not an archive load: other executables, stdin loads, unresolvable paths are "other" with a reason', () => {
    const build = parseExecutable(['sh', '-c', 'docker build -t x . && echo x']);
    assert.equal(build.kind, 'other');
    assert.match((build as { reason: string }).reason, /not an image-archive load/);
    const stdin = parseExecutable(['sh', '-c', 'cat a.tar | docker load']);
    assert.equal(stdin.kind, 'other');
    const stdin2 = parseExecutable(['sh', '-c', 'docker load < a.tar']);
    assert.equal(stdin2.kind, 'other');
    const variable = parseExecutable(['sh', '-c', 'docker load -i "$TARBALL"']);
    assert.equal(variable.kind, 'other');
    assert.match((variable as { reason: string }).reason, /shell expansions/);
    assert.equal(parseExecutable([]).kind, 'other');
  });

  test('a non-shell executable is read as its own words', () => {
    assert.deepEqual(parseExecutable(['docker', 'load', '-i', 'z.tar']), {
      kind: 'archive',
      path: 'z.tar',
      tool: 'docker',
    });
  });

  test('firstCommandWords: quotes, escapes, expansions, stops at the first pipe', () => {
    const w = firstCommandWords(`a 'b c' "d $1 \\"e\\"" f\\ g \${X:-dflt} | h`, ['zero', 'one'], {});
    assert.deepEqual(
      w.map((x) => x.text),
      ['a', 'b c', 'd one "e"', 'f g', 'dflt'],
    );
    assert.deepEqual(
      firstCommandWords('$UNSET x', [], {}).map((x) => x.text),
      [null, 'x'],
    );
  });
});

describe('stack patterns (as cdk deploy)', () => {
  test('* stays in a path component, ** crosses them, ? is one character', () => {
    assert.ok(stackPatternMatches('Pinned', 'Pinned'));
    assert.ok(stackPatternMatches('Pin*', 'Pinned'));
    assert.ok(!stackPatternMatches('*', 'Prod/Svc'));
    assert.ok(stackPatternMatches('Prod/*', 'Prod/Svc'));
    assert.ok(stackPatternMatches('**', 'Prod/Svc'));
    assert.ok(stackPatternMatches('P?od/S*', 'Prod/Svc'));
    assert.ok(!stackPatternMatches('Prod', 'Prod/Svc'));
    assert.ok(stackPatternMatches('a.b+c', 'a.b+c'));
    assert.ok(!stackPatternMatches('a.b', 'axb'));
  });

  test('the role session name is the CDK CLI one: aws-cdk-<OS user>, IAM-refused characters as @, at most 64', () => {
    assert.equal(cdkSessionName(), `aws-cdk-${userInfo().username.replace(/[^\w+=,.@-]/g, '@')}`.slice(0, 64));
  });
});
