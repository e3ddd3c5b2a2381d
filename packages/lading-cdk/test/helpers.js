/**
 * What the language tests (python.test.js, java.test.js) share: running a command, writing the
 * test archive, and checking what a CDK app using TarballImage synthesized.
 */
'use strict';
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const { createHash } = require('node:crypto');
const { existsSync, readFileSync, writeFileSync } = require('node:fs');
const { join, resolve } = require('node:path');

const pkg = resolve(__dirname, '..');
const root = resolve(pkg, '..', '..');

/** Runs a command; fails with its output when it fails. Returns stdout, stderr and the time taken. */
function run(cmd, args, opts = {}) {
  const t0 = Date.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, ...opts });
  const ms = Date.now() - t0;
  if (r.error) throw r.error;
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} exited with ${r.status}\n${r.stdout}\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr, ms };
}

/** The last JSON line of a program's output (the test apps print one). */
function lastJsonLine(stdout) {
  const line = stdout
    .split('\n')
    // eslint-disable-next-line no-control-regex -- the ANSI colour codes Maven prints
    .map((l) => l.replace(/\x1b\[[0-9;]*m/g, '').trim())
    .filter((l) => l.startsWith('{'))
    .pop();
  assert.ok(line, `no JSON line in the output:\n${stdout}`);
  return JSON.parse(line);
}

function sha256(path) {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/**
 * Writes a small docker-save archive (linux/amd64, two uncompressed layers, named `name`):
 * lading's sample image, by lading's own code, bundled on the fly with the root's esbuild (no
 * build of the root needed, only its `npm ci`).
 */
function writeSampleArchive(path, name) {
  const esbuild = require(require.resolve('esbuild', { paths: [root] }));
  const script = esbuild.buildSync({
    stdin: {
      contents:
        "import { writeFileSync } from 'node:fs';\nimport { sampleDockerArchive } from './src/sample';\n" +
        'writeFileSync(process.argv[2], sampleDockerArchive(process.argv[3]));\n',
      resolveDir: root,
      loader: 'ts',
    },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    write: false,
  });
  const js = `${path}.write.js`;
  writeFileSync(js, script.outputFiles[0].text);
  run(process.execPath, [js, path, name]);
}

/**
 * Checks the synthesized stack: one Custom::LadingTarballImage served by the bundled handler; the
 * L1 and L2 image functions (and the ECS task, if any) name the image by a Fn::GetAtt of its
 * ImageUri; no docker image asset; the archive staged byte for byte as a file asset.
 */
function checkSynth(outdir, stackName, archive) {
  const template = JSON.parse(readFileSync(join(outdir, `${stackName}.template.json`), 'utf8'));
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
  for (const [, task] of resources.filter(([, r]) => r.Type === 'AWS::ECS::TaskDefinition'))
    assert.deepEqual(task.Properties.ContainerDefinitions[0].Image, getAtt);

  // The handler is the bundled one, a Node.js function beside the custom resource.
  const handler = resources.find(
    ([, r]) => r.Type === 'AWS::Lambda::Function' && r.Properties.Handler === 'index.handler',
  );
  assert.ok(handler, 'the handler function');
  assert.deepEqual(resource.Properties.ServiceToken, { 'Fn::GetAtt': [handler[0], 'Arn'] });

  // No docker image asset: the archive is a plain file asset, staged byte for byte.
  const manifest = JSON.parse(readFileSync(join(outdir, `${stackName}.assets.json`), 'utf8'));
  assert.deepEqual(Object.keys(manifest.dockerImages ?? {}), [], 'no docker image assets');
  const files = Object.values(manifest.files);
  const tars = files.filter((f) => f.source.path.endsWith('.tar'));
  assert.equal(tars.length, 1, 'the archive, as a file asset');
  assert.equal(tars[0].source.packaging, 'file');
  assert.equal(sha256(join(outdir, tars[0].source.path)), sha256(archive), 'staged as it is');
  assert.equal(resource.Properties.Key, Object.values(tars[0].destinations)[0].objectKey);
  const zip = files.find((f) => f.source.packaging === 'zip' && existsSync(join(outdir, f.source.path, 'index.js')));
  assert.ok(zip, 'the handler code, a zip asset');
  assert.ok(readFileSync(join(outdir, zip.source.path, 'index.js')).length > 100_000, 'the bundled handler');
  return template;
}

module.exports = { pkg, root, run, lastJsonLine, writeSampleArchive, checkSynth };
