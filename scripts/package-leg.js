#!/usr/bin/env node
// The language-packages leg of `npm test` (issue 16): builds the jsii package lading-cdk
// (`npm run package`: the Python wheel in packages/lading-cdk/dist/python) and runs its Python
// test (`npm run package:test`: a Python CDK app in a venv with PyPI's aws-cdk-lib, synthesized
// and checked). LADING_PACKAGE_LEG=0 skips it.
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

if (process.env.LADING_PACKAGE_LEG === '0') {
  process.stdout.write('package-leg: skipped (LADING_PACKAGE_LEG=0)\n');
  process.exit(0);
}
const root = path.join(__dirname, '..');
for (const script of ['package', 'package:test']) {
  const t0 = Date.now();
  process.stdout.write(`\npackage-leg: npm run ${script}\n`);
  const r = spawnSync('npm', ['run', script], { cwd: root, stdio: 'inherit' });
  const s = ((Date.now() - t0) / 1000).toFixed(0);
  process.stdout.write(`package-leg: npm run ${script}: ${r.status === 0 ? 'passed' : 'FAILED'} in ${s} s\n`);
  if (r.status !== 0) process.exit(1);
}
