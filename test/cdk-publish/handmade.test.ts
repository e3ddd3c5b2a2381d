/**
 * Cloud assemblies written by hand, as other aws-cdk-lib generations and setups write them:
 * a schema version newer than lading's schema package, the old executable form (archive path
 * inside the script), a CDK_DOCKER value (podman) with an absolute path, a gzip-compressed
 * archive, a multi-image archive (docker load | tail -n 1 takes the last), destinations with no
 * role (CliCredentialsStackSynthesizer), and an asset manifest no stack uses.
 */
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import type { PublishReport } from '../../src/cdk-publish';
import { main } from '../../src/cli/main';
import {
  createRepo,
  run,
  SERVE_CREDENTIALS,
  skopeoAvailable,
  startTestServer,
  tempDir,
  type TestServer,
} from '../serve/helpers';
import { imageArchive } from './fixture-app';
import { startStsServer, type StsServer } from './sts-server';

const BASE = { accessKeyId: 'AKIDLADINGBASE', secretAccessKey: 'base-secret' };
const PROFILE = { accessKeyId: 'AKIDPROFILEDEPLOYER', secretAccessKey: 'profile-secret' };
process.env.AWS_ACCESS_KEY_ID = BASE.accessKeyId;
process.env.AWS_SECRET_ACCESS_KEY = BASE.secretAccessKey;
process.env.AWS_EC2_METADATA_DISABLED = 'true';
delete process.env.AWS_PROFILE;

const REPO = 'cdk-hnb659fds-container-assets-000000000000-eu-central-1';

describe('lading cdk publish on hand-made assemblies', () => {
  let work: string;
  let srv: TestServer;
  let sts: StsServer;
  before(async () => {
    work = await tempDir('lading-cdk-handmade-');
    sts = await startStsServer();
    // It verifies signatures, knowing the keys IAM would: the environment's, the profile's, the
    // role keys the STS hands out, and the tests' own.
    const known = new Map([BASE, PROFILE, SERVE_CREDENTIALS].map((c) => [c.accessKeyId, c.secretAccessKey]));
    srv = await startTestServer({ credentials: (id) => known.get(id) ?? sts.secretOf(id) });
    await createRepo(srv.ecr, REPO, 'IMMUTABLE');
  });
  after(async () => {
    await srv.stop();
    await sts.close();
    await rm(work, { recursive: true, force: true });
  });

  async function publish(args: string[]): Promise<{ code: number; report: PublishReport; err: string }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(
      ['cdk', 'publish', ...args, '--json', '--endpoint-url', srv.url, '--sts-endpoint-url', sts.url],
      {
        stdout: (s) => out.push(s),
        stderr: (s) => err.push(s),
        env: { ...process.env, XDG_CACHE_HOME: join(work, 'cache') },
      },
    );
    return { code, report: JSON.parse(out.join('\n')) as PublishReport, err: err.join('\n') };
  }

  test('old and new executable forms, podman, gzip and multi-image archives, no role, newer schema version', async () => {
    const dir = join(work, 'cdk.out');
    await mkdir(dir, { recursive: true });
    const abs = join(work, 'elsewhere', 'app.tar.gz');
    await mkdir(join(work, 'elsewhere'), { recursive: true });
    await writeFile(join(dir, 'asset.old.tar'), imageArchive(['first', 'second', 'last']));
    await writeFile(abs, gzipSync(imageArchive('gzipped')));
    await writeFile(join(dir, 'asset.orphan.tar'), imageArchive('orphan'));
    const dest = (tag: string) => ({
      'current_account-eu-central-1': {
        repositoryName: 'cdk-hnb659fds-container-assets-${AWS::AccountId}-${AWS::Region}',
        imageTag: tag,
        region: 'eu-central-1',
      },
    });
    await writeFile(
      join(dir, 'App.assets.json'),
      JSON.stringify({
        version: '99.0.0',
        files: {},
        dockerImages: {
          old: {
            source: { executable: ['sh', '-c', 'docker load -i asset.old.tar | sed "s/Loaded image: //g"'] },
            destinations: dest('old'),
          },
          podman: {
            source: {
              executable: [
                'sh',
                '-c',
                `podman load -i "$1" | tail -n 1 | sed "s/Loaded image[^:]*: //g"`,
                'cdk-tarball-image-asset',
                abs,
              ],
            },
            destinations: dest('podman'),
          },
          custom: { source: { executable: ['./build-image.sh'] }, destinations: dest('custom') },
        },
      }),
    );
    await writeFile(
      join(dir, 'Orphan.assets.json'),
      JSON.stringify({
        version: '99.0.0',
        dockerImages: {
          orphan: {
            source: { executable: ['sh', '-c', 'docker load -i asset.orphan.tar'] },
            destinations: dest('orphan'),
          },
        },
      }),
    );
    await writeFile(
      join(dir, 'manifest.json'),
      JSON.stringify({
        version: '99.0.0',
        artifacts: {
          'App.assets': { type: 'cdk:asset-manifest', properties: { file: 'App.assets.json' } },
          'Orphan.assets': { type: 'cdk:asset-manifest', properties: { file: 'Orphan.assets.json' } },
          App: {
            type: 'aws:cloudformation:stack',
            environment: 'aws://unknown-account/eu-central-1',
            properties: { templateFile: 'App.template.json' },
            dependencies: ['App.assets'],
            displayName: 'App',
          },
        },
      }),
    );

    const before = sts.requests.length;
    const r = await publish([dir]);
    assert.equal(r.code, 0, `${r.err}\n${JSON.stringify(r.report, null, 2)}`);
    assert.deepEqual(r.report.summary, { published: 3, exists: 0, 'would-publish': 0, skipped: 1, failed: 0 });
    assert.deepEqual(
      sts.requests.slice(before).map((q) => q.action),
      ['GetCallerIdentity'],
      'no role in the destinations: nothing assumed',
    );
    const byTag = new Map(r.report.assets.map((a) => [a.imageTag, a]));
    assert.match(byTag.get('custom')!.reason!, /not an image-archive load/);
    assert.equal(byTag.get('podman')!.archive, abs);
    assert.deepEqual(byTag.get('orphan')!.stacks, [], 'an asset manifest no stack depends on is still published');
    for (const a of r.report.assets.filter((x) => x.status === 'published')) assert.equal(a.repositoryName, REPO);

    if (skopeoAvailable) {
      const pw = srv.issueToken().password;
      const label = async (tag: string): Promise<string | undefined> => {
        const { stdout } = await run('skopeo', [
          'inspect',
          '--tls-verify=false',
          '--creds',
          `AWS:${pw}`,
          `docker://${srv.host}/${REPO}:${tag}`,
        ]);
        return (JSON.parse(stdout) as { Labels?: Record<string, string> }).Labels?.label;
      };
      assert.equal(await label('old'), 'last', 'the last image of the archive, as docker load | tail -n 1');
      assert.equal(await label('podman'), 'gzipped');
      assert.equal(await label('orphan'), 'orphan');
    }

    // --stack leaves the orphan out.
    const again = await publish([dir, '--stack', 'App']);
    assert.equal(again.code, 0);
    assert.deepEqual(again.report.summary, { published: 0, exists: 2, 'would-publish': 0, skipped: 1, failed: 0 });
  });

  test('--profile: credentials and region from the shared config files; environment-agnostic destinations resolve to that region', async () => {
    const dir = join(work, 'profile.out');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'asset.p.tar'), imageArchive('profiled'));
    await writeFile(
      join(dir, 'P.assets.json'),
      JSON.stringify({
        version: '55.0.0',
        dockerImages: {
          p: {
            source: {
              executable: ['sh', '-c', 'docker load -i "$1" | tail -n 1', 'cdk-tarball-image-asset', 'asset.p.tar'],
            },
            destinations: {
              'current_account-current_region': {
                repositoryName: 'cdk-hnb659fds-container-assets-${AWS::AccountId}-${AWS::Region}',
                imageTag: 'p',
                assumeRoleArn:
                  'arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-image-publishing-role-${AWS::AccountId}-${AWS::Region}',
              },
            },
          },
        },
      }),
    );
    await writeFile(
      join(dir, 'manifest.json'),
      JSON.stringify({
        version: '55.0.0',
        artifacts: {
          'P.assets': { type: 'cdk:asset-manifest', properties: { file: 'P.assets.json' } },
          P: {
            type: 'aws:cloudformation:stack',
            environment: 'aws://unknown-account/unknown-region',
            properties: { templateFile: 'P.template.json' },
            dependencies: ['P.assets'],
          },
        },
      }),
    );
    const config = join(work, 'aws-config');
    const credentials = join(work, 'aws-credentials');
    await writeFile(config, '[profile deployer]\nregion = eu-central-1\n');
    await writeFile(
      credentials,
      `[deployer]\naws_access_key_id = ${PROFILE.accessKeyId}\naws_secret_access_key = ${PROFILE.secretAccessKey}\n`,
    );
    process.env.AWS_CONFIG_FILE = config;
    process.env.AWS_SHARED_CREDENTIALS_FILE = credentials;
    const saved = { AWS_REGION: process.env.AWS_REGION, AWS_DEFAULT_REGION: process.env.AWS_DEFAULT_REGION };
    delete process.env.AWS_REGION;
    delete process.env.AWS_DEFAULT_REGION;
    const before = sts.requests.length;
    try {
      const r = await publish([dir, '--profile', 'deployer']);
      assert.equal(r.code, 0, `${r.err}\n${JSON.stringify(r.report, null, 2)}`);
      const a = r.report.assets[0]!;
      assert.equal(a.status, 'published');
      assert.equal(a.region, 'eu-central-1');
      assert.equal(a.repositoryName, REPO);
      const reqs = sts.requests.slice(before);
      assert.deepEqual(
        reqs.map((q) => q.action),
        ['GetCallerIdentity', 'AssumeRole'],
      );
      for (const q of reqs)
        assert.equal(q.accessKeyId, 'AKIDPROFILEDEPLOYER', "the profile's credentials, not the environment's");
      assert.equal(
        reqs[1]!.params.RoleArn,
        'arn:aws:iam::000000000000:role/cdk-hnb659fds-image-publishing-role-000000000000-eu-central-1',
      );
    } finally {
      delete process.env.AWS_CONFIG_FILE;
      delete process.env.AWS_SHARED_CREDENTIALS_FILE;
      for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
    }
  });
});
