#!/usr/bin/env node
// Runs the compiled test suite (dist/test/**/*.test.js) with Node's own test runner.
// Kept as a script so the file selection and the concurrency (2 cores, and tests that
// start registries) live in one place. Arguments: extra node --test flags and/or test
// files or directories to narrow the run.
'use strict';
const { spawnSync } = require('node:child_process');
const { readdirSync, statSync } = require('node:fs');
const path = require('node:path');

function collect(p, out) {
  if (statSync(p).isDirectory()) {
    for (const name of readdirSync(p).sort()) collect(path.join(p, name), out);
  } else if (p.endsWith('.test.js')) {
    out.push(p);
  }
  return out;
}

const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith('-'));
const targets = args.filter((a) => !a.startsWith('-'));
const roots = targets.length > 0 ? targets : [path.join(__dirname, '..', 'dist', 'test')];
const files = roots.flatMap((r) => collect(r, []));
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...flags, ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
