#!/usr/bin/env node
/**
 * The jsii package from Java, with real parts: a Maven project (test/java) depends on the
 * artifact `npm run package:java` wrote to dist/java (and, through it, Maven Central's aws-cdk-lib
 * and jsii runtime); its app builds a TarballImage from a docker-save archive written here,
 * consumes it with an L2 DockerImageFunction and an L1 CfnFunction, and synthesizes. The template
 * is checked as from Python, and a bad archive must fail in Java with the construct path.
 *
 * Run: `npm run test:java` here, after `npm run package:java`. Needs a JDK (17+), Maven and Maven
 * Central; the Maven repository is kept in .tmp/m2 between runs.
 */
'use strict';
const assert = require('node:assert/strict');
const { existsSync, mkdirSync, rmSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { pathToFileURL } = require('node:url');
const { before, describe, it } = require('node:test');
const { checkSynth, lastJsonLine, pkg, run, writeSampleArchive } = require('./helpers');

const work = join(pkg, '.tmp', `java-${process.pid}`);
const repo = join(pkg, 'dist', 'java');
const mvn = [
  'mvn',
  '-q',
  '-B',
  '-Dstyle.color=never',
  '-f',
  join(__dirname, 'java', 'pom.xml'),
  `-Dmaven.repo.local=${join(pkg, '.tmp', 'm2')}`,
  `-Dlading.repo=${pathToFileURL(repo).href}`,
  // Build output outside the source tree.
  `-Dbuild.dir=${join(work, 'target')}`,
];

function app(args) {
  return run(mvn[0], [...mvn.slice(1), 'exec:java', `-Dexec.args=${args.map((a) => `'${a}'`).join(' ')}`], {
    cwd: work,
  });
}

describe('lading-cdk from Java (jsii): TarballImage in a Java CDK app', () => {
  const timings = {};
  let archive;

  before(() => {
    assert.ok(existsSync(join(repo, 'io')), `a Maven repository in ${repo}: run npm run package:java first`);
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { recursive: true });
    archive = join(work, 'app.tar');
    writeSampleArchive(archive, 'java-app:1');
    // lading-cdk may have been rebuilt under the same version: take it from dist/java again.
    rmSync(join(pkg, '.tmp', 'm2', 'io', 'github', 'lading'), { recursive: true, force: true });
    timings.compile = run(mvn[0], [...mvn.slice(1), 'compile'], { cwd: work }).ms;
  });

  it('synthesizes L2 and L1 Lambda consumers from one TarballImage', (t) => {
    const outdir = join(work, 'cdk.out');
    const r = app(['good', archive, outdir]);
    timings.synth = r.ms;
    assert.deepEqual(lastJsonLine(r.stdout), { platform: 'linux/amd64' });
    checkSynth(outdir, 'JavaStack', archive);
    t.diagnostic(`synth from Java: ${timings.synth} ms`);
  });

  it('a bad archive fails in Java, the message starting with the construct path', (t) => {
    const bad = join(work, 'bad.tar');
    writeFileSync(bad, 'not an image archive\n'.repeat(100));
    const { error } = lastJsonLine(app(['bad', bad, join(work, 'cdk.out.bad')]).stdout);
    assert.match(error ?? '', /^BadStack\/Img: .*bad\.tar/);
    t.diagnostic(`timings (ms): ${JSON.stringify(timings)}`);
    rmSync(work, { recursive: true, force: true });
  });
});
