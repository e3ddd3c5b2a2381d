#!/usr/bin/env node
// The aws-cdk-lib floor leg of `npm test` (issue 17): the construct's suites run against the
// LOWEST aws-cdk-lib the peer range allows, so the range is a tested fact, not a guess. The floor
// is where `lambda.Runtime.NODEJS_22_X` (the handler's runtime) first appeared: 2.168.0.
//
// How: the compiled tree is copied to a scratch directory whose node_modules holds only that
// aws-cdk-lib; everything else resolves from this project's node_modules through NODE_PATH
// (which Node consults after the node_modules hierarchy).
//
// LADING_CDK_FLOOR=0 skips it. Under CI an install failure fails the run; elsewhere it is
// reported and skipped (offline).
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync } = require('node:fs');
const { tmpdir } = require('node:os');
const path = require('node:path');
const { tapCount } = require('./lib/tests');

const root = path.join(__dirname, '..');
const build = path.join(root, process.argv[2] ?? 'dist');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const floor = /^\^?(\d+\.\d+\.\d+)$/.exec(pkg.peerDependencies['aws-cdk-lib'])?.[1];
const SUITES = ['test/cdk/construct.test.js', 'test/cdk/construct-vpc.test.js'];

if (process.env.LADING_CDK_FLOOR === '0') {
  process.stdout.write('cdk-floor: skipped (LADING_CDK_FLOOR=0)\n');
  process.exit(0);
}
if (!floor) {
  process.stderr.write(
    `cdk-floor: the aws-cdk-lib peer range must be ^X.Y.Z, not ${pkg.peerDependencies['aws-cdk-lib']}\n`,
  );
  process.exit(1);
}

const t0 = Date.now();
const dir = mkdtempSync(path.join(tmpdir(), 'lading-cdk-floor-'));
try {
  try {
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('npm_')));
    execFileSync(
      'npm',
      ['install', '--no-save', '--no-package-lock', '--no-audit', '--no-fund', '--prefix', dir, `aws-cdk-lib@${floor}`],
      { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'], timeout: 600_000 },
    );
  } catch (e) {
    const msg = `cdk-floor: cannot install aws-cdk-lib@${floor}: ${String(e.stderr ?? e.message)
      .trim()
      .split('\n')
      .pop()}`;
    process.stderr.write(`${msg}${process.env.CI ? '' : '; skipped outside CI'}\n`);
    process.exit(process.env.CI ? 1 : 0);
  }
  const installed = JSON.parse(readFileSync(path.join(dir, 'node_modules', 'aws-cdk-lib', 'package.json'), 'utf8'));
  if (installed.version !== floor) throw new Error(`installed aws-cdk-lib ${installed.version}, wanted ${floor}`);
  cpSync(build, path.join(dir, 'dist'), { recursive: true });
  // The suites find the repository (bundle script, package.json) relative to the compiled tree.
  symlinkSync(path.join(root, 'scripts'), path.join(dir, 'scripts'));
  cpSync(path.join(root, 'package.json'), path.join(dir, 'package.json'));
  process.stdout.write(`\ncdk-floor: aws-cdk-lib ${installed.version}: ${SUITES.join(', ')}\n`);
  const r = spawnSync(
    process.execPath,
    ['--test', '--test-concurrency=2', '--test-reporter=tap', ...SUITES.map((s) => path.join(dir, 'dist', s))],
    {
      env: { ...process.env, NODE_PATH: path.join(root, 'node_modules') },
      stdio: ['inherit', 'pipe', 'inherit'],
      encoding: 'utf8',
      maxBuffer: 1 << 30,
    },
  );
  process.stdout.write(r.stdout ?? '');
  const count = (what) => tapCount(r.stdout ?? '', what);
  const skipped = count('skipped');
  const ok = r.status === 0 && count('pass') > 0 && !(process.env.CI && skipped > 0);
  const s = ((Date.now() - t0) / 1000).toFixed(0);
  process.stdout.write(
    `cdk-floor: aws-cdk-lib ${floor}: ${ok ? 'passed' : 'FAILED'} in ${s} s (${count('pass')} passed, ${count('fail')} failed, ${skipped} skipped)\n`,
  );
  process.exitCode = ok ? 0 : 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
