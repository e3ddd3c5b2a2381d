/**
 * The examples/ CDK app (a Lambda function and an ECS Fargate service from one image archive)
 * synthesizes offline with the real CDK CLI, with no docker: CDK_DOCKER points at a program
 * that does not exist, and the assembly holds file assets only (no docker image asset).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';

const root = join(__dirname, '..', '..', '..');
const tmp = mkdtempSync(join(tmpdir(), 'lading-example-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

test(
  'examples/tarball-app: npx cdk synth offline, no docker; Lambda and Fargate use the pushed image',
  { timeout: 180_000 },
  async () => {
    const run = promisify(execFile);
    const archive = join(tmp, 'app.tar');
    await run(process.execPath, [join(root, 'dist', 'scripts', 'example-archive.js'), archive]);
    const out = join(tmp, 'cdk.out');
    const env = {
      ...process.env,
      LADING_EXAMPLE_TARBALL: archive,
      CDK_DOCKER: join(tmp, 'no-docker-here'),
      CDK_DISABLE_VERSION_CHECK: '1',
    };
    await run(
      process.execPath,
      [
        join(root, 'node_modules', 'aws-cdk', 'bin', 'cdk'),
        'synth',
        '--quiet',
        '--no-notices',
        '--no-version-reporting',
        '-o',
        out,
      ],
      {
        cwd: join(root, 'examples', 'tarball-app'),
        env,
        timeout: 170_000,
      },
    );
    const template = JSON.parse(readFileSync(join(out, 'LadingTarballApp.template.json'), 'utf8')) as {
      Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
    };
    const resources = Object.values(template.Resources);
    const fn = resources.find((r) => r.Type === 'AWS::Lambda::Function' && r.Properties.PackageType === 'Image');
    assert.ok(fn, 'a Lambda function of package type Image');
    assert.match(JSON.stringify(fn.Properties.Code), /ImageUri/);
    const td = resources.find((r) => r.Type === 'AWS::ECS::TaskDefinition');
    assert.ok(td, 'an ECS task definition');
    assert.match(
      JSON.stringify(td.Properties.ContainerDefinitions),
      /ImageUri/,
      'the container image is the custom resource ImageUri',
    );
    assert.ok(resources.some((r) => r.Type === 'AWS::ECS::Service'));
    const assets = JSON.parse(
      readFileSync(
        join(
          out,
          readdirSync(out).find((f) => f.endsWith('.assets.json'))!,
        ),
        'utf8',
      ),
    ) as { files?: Record<string, unknown>; dockerImages?: Record<string, unknown> };
    assert.equal(Object.keys(assets.dockerImages ?? {}).length, 0, 'no docker image asset');
    assert.ok(Object.keys(assets.files ?? {}).length >= 2, 'the archive and the handler are file assets');
  },
);
