#!/usr/bin/env node
/**
 * Builds lading's optional igzip binding (native/lading_isal.c -> native/build/lading_isal.node)
 * at install time, with the C compiler and the system's ISA-L (libisal). Optional: when it
 * cannot be built, gzip uses Node's zlib (slower on real files, same format) and the install
 * still succeeds; one line says why and what to install.
 *
 * Why not node-gyp: it downloads Node's headers from nodejs.org, which locked-down networks
 * refuse; the binding uses Node-API only, whose headers every Node.js installation carries
 * (include/node beside the binary), so one compiler call suffices and one build serves every
 * Node.js version.
 *
 * LADING_NATIVE=0 skips the build. LADING_NATIVE=require makes a failed build fail (CI uses it).
 */
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync, mkdirSync, renameSync, rmSync } = require('node:fs');
const { dirname, join, resolve } = require('node:path');

const root = resolve(__dirname, '..');
const source = join(root, 'native', 'lading_isal.c');
const outDir = join(root, 'native', 'build');
const target = join(outDir, 'lading_isal.node');
const mode = process.env.LADING_NATIVE;

function give(reason) {
  const line = `lading: the igzip binding was not built (${reason}); gzip uses Node's zlib instead`;
  if (mode === 'require') {
    console.error(`${line}, and LADING_NATIVE=require`);
    process.exit(1);
  }
  console.warn(line);
  process.exit(0);
}

if (mode === '0') process.exit(0);
if (!existsSync(source)) give(`${source} is missing`);
if (process.platform !== 'linux' && process.platform !== 'darwin') give(`not supported on ${process.platform}`);

/** Node-API's headers: beside this Node.js binary, or where npm was told Node lives. */
const nodeIncludes = [
  process.env.npm_config_nodedir && join(process.env.npm_config_nodedir, 'include', 'node'),
  join(dirname(process.execPath), '..', 'include', 'node'),
  '/usr/include/node',
  '/usr/local/include/node',
].filter(Boolean);
const nodeInclude = nodeIncludes.find((d) => existsSync(join(d, 'node_api.h')));
if (!nodeInclude) give(`Node-API headers (node_api.h) not found in ${nodeIncludes.join(', ')}`);

const prefixes = process.platform === 'darwin' ? ['/opt/homebrew', '/usr/local'] : ['/usr', '/usr/local'];
const isal = prefixes.find((p) => existsSync(join(p, 'include', 'isa-l', 'igzip_lib.h')));
if (!isal)
  give('ISA-L headers not found: install libisal-dev (Debian, Ubuntu), isa-l-devel (Fedora), isa-l (Homebrew)');

const cc = process.env.CC || 'cc';
const link = process.platform === 'darwin' ? ['-bundle', '-undefined', 'dynamic_lookup'] : ['-shared', '-fPIC'];
mkdirSync(outDir, { recursive: true });
const temp = join(outDir, `lading_isal.${process.pid}.tmp.node`);
const args = [
  '-O2',
  '-Wall',
  '-fvisibility=hidden',
  ...link,
  '-I',
  nodeInclude,
  '-I',
  join(isal, 'include'),
  source,
  '-o',
  temp,
  '-L',
  join(isal, 'lib'),
  '-lisal',
  ...(process.platform === 'linux' ? ['-ldl'] : []),
];
const r = spawnSync(cc, args, { encoding: 'utf8' });
if (r.error || r.status !== 0) {
  rmSync(temp, { force: true });
  const why = r.error ? r.error.message : (r.stderr || '').trim().split('\n').slice(-1)[0] || `exit ${r.status}`;
  give(`${cc} failed: ${why}`);
}
// Loaded once here, so a binding that cannot load (a missing libisal.so at run time) is not kept.
const check = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(temp)})`], { encoding: 'utf8' });
if (check.status !== 0) {
  rmSync(temp, { force: true });
  give(`it does not load: ${(check.stderr || '').trim().split('\n')[0]}`);
}
renameSync(temp, target);
