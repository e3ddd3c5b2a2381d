/**
 * The package is usable from ESM and from CommonJS (CDK apps are often CommonJS), through
 * its package.json "exports": named imports of the main entry, of `lading/cdk` and of
 * `lading/serve` (the test server, kept out of the main entry) resolve.
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
  'LadingError',
];
/** `lading/serve`: functions and classes, and the default credentials (an object). */
const SERVE_NAMES = ['startServer', 'FaultInjector', 'parseFaultSpec'];
const SERVE_EXPECTED = [...SERVE_NAMES.map(() => 'function'), 'lading/lading-secret'].join(' ');

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

test('ESM and CommonJS: lading/serve is its own entry point; the main entry has no server', async () => {
  const esm = await run([
    '--input-type=module',
    '-e',
    `import { ${SERVE_NAMES.join(', ')}, DEFAULT_CREDENTIALS } from 'lading/serve'; import * as main from 'lading';
     console.log([${SERVE_NAMES.join(', ')}].map((x) => typeof x).join(' '), DEFAULT_CREDENTIALS.accessKeyId + '/' + DEFAULT_CREDENTIALS.secretAccessKey);
     console.log(typeof main.startServer)`,
  ]);
  assert.deepEqual(esm.stdout.trim().split('\n'), [SERVE_EXPECTED, 'undefined']);
  const cjs = await run([
    '-e',
    `const s = require('lading/serve'); const c = s.DEFAULT_CREDENTIALS;
     console.log(${JSON.stringify(SERVE_NAMES)}.map((n) => typeof s[n]).join(' '), c.accessKeyId + '/' + c.secretAccessKey);
     console.log(typeof require('lading').startServer)`,
  ]);
  assert.deepEqual(cjs.stdout.trim().split('\n'), [SERVE_EXPECTED, 'undefined']);
});
