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
const { spawnSync } = require('node:child_process');
const { createHash } = require('node:crypto');
const { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } = require('node:fs');
const { join, resolve } = require('node:path');
const { before, describe, it } = require('node:test');

const pkg = resolve(__dirname, '..');
const root = resolve(pkg, '..', '..');
const tmp = join(pkg, '.tmp');
const venv = join(tmp, 'venv');
const work = join(tmp, `run-${process.pid}`);
const python = process.env.PYTHON ?? 'python3';
const venvPython = join(venv, process.platform === 'win32' ? 'Scripts' : 'bin', 'python');

/** Runs a command; fails the test with its output when it fails. Returns stdout and the time taken. */
function run(cmd, args, opts = {}) {
  const t0 = Date.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, ...opts });
  const ms = Date.now() - t0;
  if (r.error) throw r.error;
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} exited with ${r.status}\n${r.stdout}\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr, ms };
}

function lastJsonLine(stdout) {
  return JSON.parse(stdout.trim().split('\n').pop());
}

function sha256(path) {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

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

    // A small docker-save archive (linux/amd64, two uncompressed layers): lading's sample image,
    // written by its own code, bundled on the fly (no build of the root needed).
    rmSync(work, { recursive: true, force: true });
    mkdirSync(join(work, 'build'), { recursive: true });
    const esbuild = require(require.resolve('esbuild', { paths: [root] }));
    const script = esbuild.buildSync({
      stdin: {
        contents:
          "import { writeFileSync } from 'node:fs';\nimport { sampleDockerArchive } from './src/sample';\n" +
          "writeFileSync(process.argv[2], sampleDockerArchive('python-app:1'));\n",
        resolveDir: root,
        loader: 'ts',
      },
      bundle: true,
      platform: 'node',
      format: 'cjs',
      write: false,
    });
    writeFileSync(join(work, 'write-archive.js'), script.outputFiles[0].text);
    archive = join(work, 'build', 'app.tar');
    run(process.execPath, [join(work, 'write-archive.js'), archive]);
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

    const template = JSON.parse(readFileSync(join(outdir, 'PyStack.template.json'), 'utf8'));
    const resources = Object.entries(template.Resources);
    const custom = resources.filter(([, r]) => r.Type === 'Custom::LadingTarballImage');
    assert.equal(custom.length, 1, 'one custom resource');
    const [customId, resource] = custom[0];
    const getAtt = { 'Fn::GetAtt': [customId, 'ImageUri'] };
    assert.equal(resource.Properties.Compress, 'gzip');
    assert.equal(resource.Properties.Platform, 'linux/amd64');
    assert.match(resource.Properties.Tag, /^lading-[0-9a-f]{40}$/);

    const imageFunctions = resources.filter(
      ([, r]) => r.Type === 'AWS::Lambda::Function' && r.Properties.PackageType === 'Image',
    );
    assert.deepEqual(imageFunctions.map(([id]) => id.replace(/[0-9A-F]{8}$/, '')).sort(), ['L1Function', 'L2Function']);
    for (const [id, fn] of imageFunctions) assert.deepEqual(fn.Properties.Code, { ImageUri: getAtt }, id);

    const [task] = resources.filter(([, r]) => r.Type === 'AWS::ECS::TaskDefinition').map(([, r]) => r);
    assert.deepEqual(task.Properties.ContainerDefinitions[0].Image, getAtt);

    // The handler is the bundled one, a Node.js function beside the custom resource.
    const handler = resources.find(
      ([, r]) => r.Type === 'AWS::Lambda::Function' && r.Properties.Handler === 'index.handler',
    );
    assert.ok(handler, 'the handler function');
    assert.deepEqual(resource.Properties.ServiceToken, { 'Fn::GetAtt': [handler[0], 'Arn'] });

    // No docker image asset: the archive is a plain file asset, staged byte for byte.
    const manifest = JSON.parse(readFileSync(join(outdir, 'PyStack.assets.json'), 'utf8'));
    assert.deepEqual(Object.keys(manifest.dockerImages ?? {}), [], 'no docker image assets');
    const files = Object.values(manifest.files);
    const tars = files.filter((f) => f.source.path.endsWith('.tar'));
    assert.equal(tars.length, 1, 'the archive, as a file asset');
    assert.equal(tars[0].source.packaging, 'file');
    assert.equal(sha256(join(outdir, tars[0].source.path)), sha256(archive), 'staged as it is');
    assert.equal(resource.Properties.Key, Object.values(tars[0].destinations)[0].objectKey);
    const zips = files.filter((f) => f.source.packaging === 'zip');
    assert.ok(zips.length >= 1, 'the handler code, a zip asset');
    const handlerDir = join(outdir, zips.find((z) => existsSync(join(outdir, z.source.path, 'index.js'))).source.path);
    assert.ok(readFileSync(join(handlerDir, 'index.js')).length > 100_000, 'the bundled handler');
    t.diagnostic(`synth from Python: ${timings.synth} ms`);
  });

  it('a bad archive fails in Python, the message starting with the construct path', (t) => {
    const bad = join(work, 'build', 'bad.tar');
    writeFileSync(bad, 'not an image archive\n'.repeat(100));
    const r = run(venvPython, [join(__dirname, 'app.py'), 'bad', bad, join(work, 'cdk.out.bad')], { cwd: work });
    const { error } = lastJsonLine(r.stdout);
    assert.ok(error, 'TarballImage raised');
    assert.match(error, /BadStack\/Img: /);
    const missing = run(venvPython, [join(__dirname, 'app.py'), 'bad', join(work, 'nope.tar'), join(work, 'o')], {
      cwd: work,
    });
    assert.match(lastJsonLine(missing.stdout).error, /BadStack\/Img: tarball .*nope\.tar does not exist/);
    t.diagnostic(`timings (ms): ${JSON.stringify(timings)}`);
    rmSync(work, { recursive: true, force: true });
  });
});
