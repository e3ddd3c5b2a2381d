#!/usr/bin/env node
// The Node.js legs of `npm test` (issue 17): after the whole suite has run on this machine's
// Node, the suites whose code paths differ between Node versions run again on Node 22 and 24:
// archive reading, compression (Node >= 22.15 has zlib zstd), the copy engine against a real
// registry, the CDK handler (the Lambda runtime is Node 22/24), and the native binding's
// hashing (it finds each Node binary's own OpenSSL at load time). Official binaries come from
// the npm registry's `node` package through npx (the first fetch downloads ~30 MB per version,
// later runs find it in npx's cache).
//
// LADING_NODE_LEGS=0 skips them (a quick local run); LADING_NODE_LEGS=22 runs one. Under CI a
// Node that cannot be fetched fails the run; elsewhere (offline) it is reported and skipped.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const { existsSync, mkdtempSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const path = require('node:path');
const { collect, tapCount } = require('./lib/tests');

const root = path.join(__dirname, '..');
// Argument: the build directory (default dist), for a build made elsewhere.
const distTest = path.join(root, process.argv[2] ?? 'dist', 'test');
const SUITES = [
  'archive',
  'compress',
  'copy',
  'image/stream-digest.test.js',
  'cdk/handler.test.js',
  'cdk/s3-source.test.js',
];

const wanted = process.env.LADING_NODE_LEGS;
if (wanted === '0') {
  process.stdout.write('node-legs: skipped (LADING_NODE_LEGS=0)\n');
  process.exit(0);
}
const majors = wanted ? wanted.split(',').map(Number) : [22, 24];

/** The path of an official Node binary of `major`, fetched by npx outside this project. */
function nodeBinary(major) {
  // A scratch cwd, and no npm_* settings of this npm run: npx must not see this project.
  const cwd = mkdtempSync(path.join(tmpdir(), 'lading-node-leg-'));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('npm_')));
  try {
    const out = execFileSync(
      'npx',
      ['-y', '-p', `node@${major}`, 'node', '-e', 'process.stdout.write(process.execPath + " " + process.version)'],
      { cwd, env, encoding: 'utf8', timeout: 300_000, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const [bin, version] = out.trim().split('\n').pop().split(' ');
    if (!version.startsWith(`v${major}.`)) throw new Error(`npx -p node@${major} ran Node ${version}`);
    return { bin, version };
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
}

const files = SUITES.flatMap((s) => {
  const p = path.join(distTest, s);
  return existsSync(p) ? collect(p, []) : [];
});
if (files.length === 0) {
  process.stderr.write('node-legs: no compiled suites in dist/test (run npm run build first)\n');
  process.exit(1);
}

let failed = false;
for (const major of majors) {
  let node;
  try {
    node = nodeBinary(major);
  } catch (e) {
    const msg = `node-legs: cannot get Node ${major}: ${String(e.message).split('\n')[0]}`;
    if (process.env.CI) {
      process.stderr.write(`${msg}\n`);
      failed = true;
      continue;
    }
    process.stderr.write(`${msg}; skipped outside CI\n`);
    continue;
  }
  const t0 = Date.now();
  process.stdout.write(`\nnode-legs: Node ${node.version}: ${SUITES.join(', ')}\n`);
  const r = spawnSync(node.bin, ['--test', '--test-concurrency=2', '--test-reporter=tap', ...files], {
    stdio: ['inherit', 'pipe', 'inherit'],
    env: process.env,
    maxBuffer: 1 << 30,
    encoding: 'utf8',
  });
  process.stdout.write(r.stdout ?? '');
  const count = (what) => tapCount(r.stdout ?? '', what);
  const s = ((Date.now() - t0) / 1000).toFixed(0);
  // As in run-tests.js: under CI a skipped test is a failure (every tool is installed there).
  const skipped = count('skipped');
  const ok = r.status === 0 && !(process.env.CI && skipped > 0);
  process.stdout.write(
    `node-legs: Node ${node.version}: ${ok ? 'passed' : 'FAILED'} in ${s} s (${count('pass')} passed, ${count('fail')} failed, ${skipped} skipped)\n`,
  );
  if (!ok) failed = true;
}
process.exit(failed ? 1 : 0);
