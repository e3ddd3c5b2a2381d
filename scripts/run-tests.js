#!/usr/bin/env node
// Runs the compiled test suite with Node's own test runner. Kept as a script so the
// concurrency (2 cores, and tests that start registries) is set in one place.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const dir = path.join(__dirname, '..', 'dist', 'test');
const extra = process.argv.slice(2);
const args = ['--test', '--test-concurrency=2', ...extra];
if (!extra.some((a) => !a.startsWith('-'))) args.push(dir);
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(r.status ?? 1);
