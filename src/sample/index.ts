import { digestHex, digestOf } from '../image/digest';
import { tarOf } from '../archive/tar-writer';

/**
 * A small, deterministic sample image in `docker save` layout: what the demo pushes when
 * no archive is given. Two layers (a script and a text file) over no base image.
 */
export function sampleDockerArchive(name = 'lading-demo:latest'): Buffer {
  const layer1 = tarOf([
    { name: 'bin/', type: 'directory' },
    { name: 'bin/hello', data: Buffer.from('#!/bin/sh\necho "hello from an image lading pushed"\n') },
  ]);
  const layer2 = tarOf([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/motd', data: Buffer.from('This image was pushed without docker.\n'.repeat(64)) },
  ]);
  const layers = [layer1, layer2];
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: '1970-01-01T00:00:00Z',
      config: { Cmd: ['/bin/hello'], Env: ['PATH=/bin'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => digestOf(l)) },
      history: layers.map(() => ({ created: '1970-01-01T00:00:00Z', created_by: 'lading sample' })),
    }),
  );
  const configName = `${digestHex(digestOf(config))}.json`;
  const ids = layers.map((l) => digestHex(digestOf(l)));
  const manifest = Buffer.from(
    JSON.stringify([{ Config: configName, RepoTags: [name], Layers: ids.map((id) => `${id}/layer.tar`) }]),
  );
  return tarOf([
    ...ids.flatMap((id, i) => [
      { name: `${id}/`, type: 'directory' as const },
      { name: `${id}/VERSION`, data: Buffer.from('1.0') },
      { name: `${id}/layer.tar`, data: layers[i]! },
    ]),
    { name: configName, data: config },
    { name: 'manifest.json', data: manifest },
  ]);
}
