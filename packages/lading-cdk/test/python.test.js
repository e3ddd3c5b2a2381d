#!/usr/bin/env node
/**
 * The jsii package from Python, with real parts: a virtual environment gets the wheel that
 * `npm run package` built (dist/python/*.whl) and PyPI's aws-cdk-lib and constructs; a Python
 * CDK app (test/app.py) builds a TarballImage from a docker-save archive written here, consumes
 * it with an L2 DockerImageFunction, an L1 CfnFunction and an ECS task, and synthesizes. The
 * template and asset manifest are then checked, and a bad archive must fail in Python with the
 * construct path in the message.
 *
 * Run: `npm run package:test` (root or this package), after `npm run package`. Needs python3
 * (3.10+) with venv, PyPI, and the root's `npm ci` (esbuild and lading's sources write the archive).
 * The venv is kept in .tmp/venv between runs (set LADING_CDK_FRESH_VENV=1 to start over).
 */
'use strict';
const assert = require('node:assert/strict');
const { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { before, describe, it } = require('node:test');
const { checkSynth, lastJsonLine, pkg, run, writeSampleArchive } = require('./helpers');

const tmp = join(pkg, '.tmp');
const venv = join(tmp, 'venv');
const work = join(tmp, `python-${process.pid}`);
const python = process.env.PYTHON ?? 'python3';
const venvPython = join(venv, process.platform === 'win32' ? 'Scripts' : 'bin', 'python');

describe('lading-cdk from Python (jsii): TarballImage in a Python CDK app', () => {
  const timings = {};
  let wheel;
  let archive;

  before(() => {
    const wheels = existsSync(join(pkg, 'dist', 'python'))
      ? readdirSync(join(pkg, 'dist', 'python')).filter((f) => f.endsWith('.whl'))
      : [];
    assert.equal(wheels.length, 1, `one wheel in ${join(pkg, 'dist', 'python')}: run npm run package first`);
    wheel = join(pkg, 'dist', 'python', wheels[0]);

    if (process.env.LADING_CDK_FRESH_VENV) rmSync(venv, { recursive: true, force: true });
    if (!existsSync(venvPython)) timings.venv = run(python, ['-m', 'venv', venv]).ms;
    // The dependencies from PyPI (reused when already there), then this build of the wheel.
    const pip = [venvPython, '-m', 'pip', 'install', '--quiet', '--disable-pip-version-check'];
    timings.pipDeps = run(pip[0], [...pip.slice(1), wheel, 'aws-cdk-lib>=2.168.0,<3', 'constructs>=10,<11']).ms;
    timings.pipWheel = run(pip[0], [...pip.slice(1), '--force-reinstall', '--no-deps', wheel]).ms;

    rmSync(work, { recursive: true, force: true });
    mkdirSync(join(work, 'build'), { recursive: true });
    archive = join(work, 'build', 'app.tar');
    writeSampleArchive(archive, 'python-app:1');
  });

  it('synthesizes L2 and L1 Lambda consumers and an ECS task from one TarballImage', (t) => {
    const outdir = join(work, 'cdk.out');
    // A relative tarball path: resolved from the app's working directory, as in TypeScript.
    const r = run(venvPython, [join(__dirname, 'app.py'), 'good', join('build', 'app.tar'), outdir], { cwd: work });
    timings.synth = r.ms;
    const { seen } = lastJsonLine(r.stdout);
    assert.deepEqual(seen, {
      format: 'docker-archive',
      all: false,
      names: ['python-app:1'],
      platforms: ['linux/amd64'],
      layers: [['none', 'none']],
      imageUriIsToken: true,
      compressName: 'GZIP',
    });

    checkSynth(outdir, 'PyStack', archive);
    t.diagnostic(`synth from Python: ${timings.synth} ms`);
  });

  it('a bad archive, and an image Lambda cannot run, fail in Python, the message starting with the construct path', (t) => {
    const bad = join(work, 'build', 'bad.tar');
    writeFileSync(bad, 'not an image archive\n'.repeat(100));
    const r = run(venvPython, [join(__dirname, 'app.py'), 'bad', bad, join(work, 'cdk.out.bad')], { cwd: work });
    const { error } = lastJsonLine(r.stdout);
    assert.ok(error, 'TarballImage raised');
    assert.match(error, /^BadStack\/Img: .*bad\.tar/);
    const missing = run(venvPython, [join(__dirname, 'app.py'), 'bad', join(work, 'nope.tar'), join(work, 'o')], {
      cwd: work,
    });
    assert.match(lastJsonLine(missing.stdout).error, /^BadStack\/Img: tarball .*nope\.tar does not exist/);
    // The architecture check fails app.synth(), a method call: jsii's kernel wraps an error thrown
    // in a method call in its RuntimeError, whose message is the error's String() (name: message).
    const arch = run(venvPython, [join(__dirname, 'app.py'), 'arch', archive, join(work, 'o')], { cwd: work });
    assert.match(
      lastJsonLine(arch.stdout).error,
      /^(TarballImageValidationError: )?ArchStack\/Img: the image is linux\/amd64 but the function's architecture is arm64 \(ArchStack\/Fn\); set architecture: lambda\.Architecture\.X86_64/,
    );
    t.diagnostic(`timings (ms): ${JSON.stringify(timings)}`);
    rmSync(work, { recursive: true, force: true });
  });
});
