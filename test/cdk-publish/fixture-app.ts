/**
 * A CDK app as users write it, with stock aws-cdk-lib constructs only, synthesized offline
 * in-process (no CDK CLI, no docker, no network):
 *
 * - `Pinned` (env 000000000000/us-east-1): a TarballImageAsset of the "shared" archive; its
 *   synthesizer gives the image publishing role an external ID and a session tag.
 * - `Agnostic` (environment-agnostic): an ECS task definition whose container image is
 *   ContainerImage.fromTarball of the same "shared" archive (same asset hash: both stacks
 *   share one image), a TarballImageAsset of the "extra" archive, and a DockerImageAsset
 *   built from a directory (needs docker: lading skips it).
 * - Stage `Prod` (env 111111111111/eu-west-1), stack `Svc`: a TarballImageAsset of the
 *   "stage" archive (a nested cloud assembly).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, CfnWaitConditionHandle, DefaultStackSynthesizer, Stack, Stage } from 'aws-cdk-lib';
import { DockerImageAsset, TarballImageAsset } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import { tarOf } from '../../src/archive/tar-writer';
import { digestHex, digestOf } from '../../src/image/digest';

export const PINNED_EXTERNAL_ID = 'ext-pinned-42';
export const PINNED_SESSION_TAG = { Key: 'team', Value: 'platform' };

/** A small `docker save` archive whose content (and so digest) depends on `label`; several labels: one image each, in that order. */
export function imageArchive(label: string | string[]): Buffer {
  const labels = Array.isArray(label) ? label : [label];
  const entries: Parameters<typeof tarOf>[0] = [];
  const manifest: unknown[] = [];
  for (const l of labels) {
    const layer = tarOf([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/label', data: Buffer.from(`${l}\n`) },
      { name: 'etc/motd', data: Buffer.from(`published by lading cdk publish: ${l}\n`.repeat(32)) },
    ]);
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        created: '1970-01-01T00:00:00Z',
        config: { Cmd: ['/bin/true'], Labels: { label: l } },
        rootfs: { type: 'layers', diff_ids: [digestOf(layer)] },
      }),
    );
    const configName = `${digestHex(digestOf(config))}.json`;
    const id = digestHex(digestOf(layer));
    entries.push(
      { name: `${id}/`, type: 'directory' as const },
      { name: `${id}/layer.tar`, data: layer },
      { name: configName, data: config },
    );
    manifest.push({ Config: configName, RepoTags: [`${l}:latest`], Layers: [`${id}/layer.tar`] });
  }
  entries.push({ name: 'manifest.json', data: Buffer.from(JSON.stringify(manifest)) });
  return tarOf(entries);
}

export interface FixtureApp {
  outdir: string;
  /** The archives the app was given (the assembly holds staged copies). */
  archives: { shared: string; extra: string; stage: string };
}

export function synthFixtureApp(work: string): FixtureApp {
  const src = join(work, 'images');
  mkdirSync(src, { recursive: true });
  const archives = { shared: join(src, 'shared.tar'), extra: join(src, 'extra.tar'), stage: join(src, 'stage.tar') };
  for (const [k, p] of Object.entries(archives)) writeFileSync(p, imageArchive(k));
  const dockerDir = join(work, 'docker-build');
  mkdirSync(dockerDir, { recursive: true });
  writeFileSync(join(dockerDir, 'Dockerfile'), 'FROM scratch\nCOPY hello /hello\n');
  writeFileSync(join(dockerDir, 'hello'), 'hello\n');

  const outdir = join(work, 'cdk.out');
  const app = new App({ outdir });
  const pinned = new Stack(app, 'Pinned', {
    env: { account: '000000000000', region: 'us-east-1' },
    synthesizer: new DefaultStackSynthesizer({
      imageAssetPublishingExternalId: PINNED_EXTERNAL_ID,
      imageAssetPublishingRoleAdditionalOptions: { Tags: [PINNED_SESSION_TAG] },
    }),
  });
  new TarballImageAsset(pinned, 'Shared', { tarballFile: archives.shared });
  // A resource, so that synth's template validation has nothing to say.
  new CfnWaitConditionHandle(pinned, 'Nothing');

  const agnostic = new Stack(app, 'Agnostic');
  const task = new ecs.FargateTaskDefinition(agnostic, 'Task');
  task.addContainer('app', { image: ecs.ContainerImage.fromTarball(archives.shared), memoryLimitMiB: 512 });
  new TarballImageAsset(agnostic, 'Extra', { tarballFile: archives.extra });
  new DockerImageAsset(agnostic, 'Built', { directory: dockerDir });

  const prod = new Stage(app, 'Prod', { env: { account: '111111111111', region: 'eu-west-1' } });
  const svc = new Stack(prod, 'Svc');
  new TarballImageAsset(svc, 'Staged', { tarballFile: archives.stage });
  new CfnWaitConditionHandle(svc, 'Nothing');

  app.synth();
  return { outdir, archives };
}
