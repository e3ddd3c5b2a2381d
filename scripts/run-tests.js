#!/usr/bin/env node
// Runs the compiled test suite (dist/test/**/*.test.js) with Node's own test runner.
// Kept as a script so the file selection and the concurrency (2 cores, and tests that
// start registries) live in one place. Arguments: extra node --test flags and/or test
// files or directories to narrow the run.
'use strict';
const { spawn } = require('node:child_process');
const path = require('node:path');
const { collect, tapCount } = require('./lib/tests');

const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith('-'));
const targets = args.filter((a) => !a.startsWith('-'));
const roots = targets.length > 0 ? targets : [path.join(__dirname, '..', 'dist', 'test')];
const files = roots.flatMap((r) => collect(r, []));
// Under CI a skipped test is a failure: suites skip when a tool they need is missing, and CI
// installs every tool (.ci/run), so a skip there means a test that silently proved nothing.
const child = spawn(process.execPath, ['--test', '--test-concurrency=2', ...flags, ...files], {
  stdio: ['inherit', 'pipe', 'inherit'],
});
let tail = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString('utf8')).slice(-65536);
});
child.on('close', (code) => {
  const skipped = tapCount(tail, 'skipped');
  if (process.env.CI && skipped > 0 && code === 0) {
    process.stderr.write(
      `run-tests: ${skipped} test(s) skipped under CI; every tool the suite needs is installed by .ci/run, so a skip is a failure (search the output for "# SKIP")\n`,
    );
    process.exit(1);
  }
  process.exit(code ?? 1);
});
