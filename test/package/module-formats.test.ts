/**
 * The package is usable from ESM and from CommonJS (CDK apps are often CommonJS), through
 * its package.json "exports": named imports of the main entry and of `lading/cdk` resolve.
 * Runs node by the package's own name (self-reference), as an app that installed it would.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

const root = join(__dirname, '..', '..', '..');
const run = (args: string[]) => promisify(execFile)(process.execPath, args, { cwd: root, timeout: 30_000 });
const NAMES = [
  'inspectArchive',
  'openArchive',
  'copyImage',
  'EcrDestination',
  'RegistryDestination',
  'OciLayoutDestination',
  'startServer',
  'LadingError',
];

test('ESM: named imports of lading', async () => {
  const { stdout } = await run([
    '--input-type=module',
    '-e',
    `import { ${NAMES.join(', ')} } from 'lading'; console.log([${NAMES.join(', ')}].map((x) => typeof x).join(' '))`,
  ]);
  assert.equal(stdout.trim(), NAMES.map(() => 'function').join(' '));
});

test('CommonJS: require of lading', async () => {
  const { stdout } = await run([
    '-e',
    `const l = require('lading'); console.log(${JSON.stringify(NAMES)}.map((n) => typeof l[n]).join(' '))`,
  ]);
  assert.equal(stdout.trim(), NAMES.map(() => 'function').join(' '));
});
