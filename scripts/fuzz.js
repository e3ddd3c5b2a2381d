#!/usr/bin/env node
// Runs the property tests (dist/test/**/*props.test.js) with a much larger fast-check budget
// than `npm test` gives them. The tests read FC_NUM_RUNS; this sets it to 5000 unless it is
// already set. Usage (after a build; `npm run fuzz` builds first):
//   node scripts/fuzz.js                        every property file, FC_NUM_RUNS=5000
//   FC_NUM_RUNS=50000 node scripts/fuzz.js      a bigger budget
//   node scripts/fuzz.js dist/test/image        only the property files under these paths
// A failure prints fast-check's seed, path and counterexample; replay it with
//   FC_SEED=<seed> FC_PATH=<path> node scripts/fuzz.js --test-name-pattern='<test name>'
// (lading's own property files read both). The exit code is the test runner's.
// Seeds (the archives the mutations start from) live in the property files: the corrupted-
// archive bases of test/archive/tar-props.test.ts (which include every parser-differential
// case of test/archive/differential-cases.ts and names 300 levels deep) and the builders of
// test/archive/corrupt-props.test.ts (every format, and the small shapes of the hostile
// archives of issue 19: a FIFO or a lone zero block hiding a second manifest.json, a
// duplicated manifest.json, layers named through chains of links, indexes that fan out).
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const path = require('node:path');
const { collect } = require('./lib/tests');

const args = process.argv.slice(2);
const flags = args.filter((a) => a.startsWith('-'));
const targets = args.filter((a) => !a.startsWith('-'));
const distTest = path.join(__dirname, '..', 'dist', 'test');
if (targets.length === 0 && !existsSync(distTest)) {
  console.error('fuzz: dist/test is missing; run `npm run build` first (or `npm run fuzz`)');
  process.exit(2);
}
const files = (targets.length > 0 ? targets : [distTest]).flatMap((r) => collect(r, [], /props\.test\.js$/));
if (files.length === 0) {
  console.error('fuzz: no *props.test.js files found');
  process.exit(2);
}
const runs = process.env.FC_NUM_RUNS ?? '5000';
console.error(
  `fuzz: FC_NUM_RUNS=${runs} over ${files.length} file(s):\n  ${files.map((f) => path.relative(process.cwd(), f)).join('\n  ')}`,
);
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...flags, ...files], {
  stdio: 'inherit',
  env: { ...process.env, FC_NUM_RUNS: runs },
});
process.exit(r.status ?? 1);
