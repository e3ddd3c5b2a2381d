/**
 * Manifest and index rewriting (src/image/rewrite.ts). Expectations come from the specs: the
 * OCI image spec's media types and their Docker schema 2 twins (image-spec media-types.md,
 * "Compatibility Matrix"), a descriptor's digest being the hash of the exact bytes, and the
 * rule that a document nothing changed is pushed as stored (so its digest is preserved).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  buildIndex,
  digestOf,
  MediaType,
  ociMediaType,
  parseManifestDocument,
  placedLayerDescriptor,
  rewriteIndex,
  rewriteManifest,
  type Descriptor,
  type Digest,
  type ImageIndex,
  type ImageManifest,
} from '../../src/image';

const d = (n: number): Digest => digestOf(`blob ${n}`);

function manifestOf(doc: Record<string, unknown>, mediaType: string): ImageManifest {
  const bytes = Buffer.from(JSON.stringify(doc));
  return parseManifestDocument(bytes, 'test', mediaType) as ImageManifest;
}

function indexOf(doc: Record<string, unknown>, mediaType: string): ImageIndex {
  const bytes = Buffer.from(JSON.stringify(doc));
  return parseManifestDocument(bytes, 'test', mediaType) as ImageIndex;
}

const config: Descriptor = { mediaType: MediaType.DockerConfig, digest: d(0), size: 100 };

function dockerManifest(layers: Descriptor[], extra: Record<string, unknown> = {}): ImageManifest {
  return manifestOf(
    { schemaVersion: 2, mediaType: MediaType.DockerManifest, config, layers, ...extra },
    MediaType.DockerManifest,
  );
}

function parsed(bytes: Buffer): Record<string, unknown> & { layers: Record<string, unknown>[] } {
  return JSON.parse(bytes.toString('utf8')) as Record<string, unknown> & { layers: Record<string, unknown>[] };
}

describe('ociMediaType: the Docker schema 2 types and their OCI twins', () => {
  const table: [string, string][] = [
    [MediaType.DockerManifest, MediaType.OciManifest],
    [MediaType.DockerManifestList, MediaType.OciIndex],
    [MediaType.DockerConfig, MediaType.OciConfig],
    [MediaType.DockerLayer, MediaType.OciLayer],
    [MediaType.DockerLayerGzip, MediaType.OciLayerGzip],
    [MediaType.DockerLayerZstd, MediaType.OciLayerZstd],
    [MediaType.DockerForeignLayer, MediaType.OciLayerNondistributable],
    [MediaType.DockerForeignLayerGzip, MediaType.OciLayerNondistributableGzip],
  ];
  for (const [docker, oci] of table) {
    it(`${docker} -> ${oci}`, () => assert.equal(ociMediaType(docker), oci));
  }
  it('leaves OCI and unknown media types as they are', () => {
    for (const mt of [MediaType.OciLayerGzip, MediaType.OciManifest, 'application/vnd.example.thing+json']) {
      assert.equal(ociMediaType(mt), mt);
    }
  });
});

describe('placedLayerDescriptor', () => {
  it('keeps a stored media type that still says the right compression, and every other field', () => {
    const stored: Descriptor = {
      mediaType: MediaType.OciLayerGzip,
      digest: d(1),
      size: 10,
      annotations: { a: 'b' },
    };
    const out = placedLayerDescriptor(stored, 'oci', { digest: d(1), size: 10, compression: 'gzip' }, false);
    assert.deepEqual(out, stored);
  });

  it('an uncompressed layer compressed on the way gets the compressed media type of its family', () => {
    const stored: Descriptor = { mediaType: MediaType.DockerLayer, digest: d(1), size: 10 };
    const docker = placedLayerDescriptor(stored, 'docker', { digest: d(2), size: 5, compression: 'gzip' }, false);
    assert.deepEqual(docker, { mediaType: MediaType.DockerLayerGzip, digest: d(2), size: 5 });
    const oci = placedLayerDescriptor(undefined, 'oci', { digest: d(2), size: 5, compression: 'zstd' }, false);
    assert.deepEqual(oci, { mediaType: MediaType.OciLayerZstd, digest: d(2), size: 5 });
  });

  it('a foreign layer pushed as an ordinary one loses its foreign media type and its URLs', () => {
    const stored: Descriptor = {
      mediaType: MediaType.DockerForeignLayerGzip,
      digest: d(1),
      size: 10,
      urls: ['https://example.com/layer'],
    };
    const out = placedLayerDescriptor(stored, 'docker', { digest: d(1), size: 10, compression: 'gzip' }, true);
    assert.deepEqual(out, { mediaType: MediaType.DockerLayerGzip, digest: d(1), size: 10 });
  });
});

describe('rewriteManifest', () => {
  const layers: Descriptor[] = [
    { mediaType: MediaType.DockerLayerGzip, digest: d(1), size: 11 },
    { mediaType: MediaType.DockerLayerGzip, digest: d(2), size: 22 },
  ];

  it('nothing changed: the stored bytes, so the digest is preserved', () => {
    const stored = dockerManifest(layers);
    const out = rewriteManifest(stored, config, stored.layers, { ociOnly: false });
    assert.equal(out.rewritten, false);
    assert.equal(out.doc.bytes, stored.bytes);
    assert.equal(out.doc.digest, stored.digest);
    assert.equal(out.doc.mediaType, MediaType.DockerManifest);
  });

  it('a changed layer: new bytes whose digest is their hash, every other field kept', () => {
    const stored = dockerManifest([{ ...layers[0]!, annotations: { keep: 'me' } }, layers[1]!], {
      annotations: { 'org.example': 'x' },
    });
    const now = [{ ...stored.layers[0]!, digest: d(9), size: 99 }, stored.layers[1]!];
    const out = rewriteManifest(stored, config, now, { ociOnly: false });
    assert.equal(out.rewritten, true);
    assert.equal(out.doc.digest, digestOf(out.doc.bytes));
    const o = parsed(out.doc.bytes);
    assert.deepEqual(o.annotations, { 'org.example': 'x' });
    assert.deepEqual(o.layers[0], {
      mediaType: MediaType.DockerLayerGzip,
      digest: d(9),
      size: 99,
      annotations: { keep: 'me' },
    });
    assert.equal(o.mediaType, MediaType.DockerManifest);
    // What a registry would parse back is what was asked for.
    const back = parseManifestDocument(out.doc.bytes, 'test', out.doc.mediaType) as ImageManifest;
    assert.deepEqual(back.layers, now);
  });

  it('a URL-less placed layer drops the stored urls', () => {
    const stored = dockerManifest([
      { mediaType: MediaType.DockerForeignLayerGzip, digest: d(1), size: 11, urls: ['https://example.com/l'] },
    ]);
    const out = rewriteManifest(stored, config, [{ mediaType: MediaType.DockerLayerGzip, digest: d(1), size: 11 }], {
      ociOnly: false,
    });
    assert.equal(out.rewritten, true, 'the same digest with another media type and no URLs is a change');
    assert.equal(parsed(out.doc.bytes).layers[0]!.urls, undefined);
  });

  it('a zstd layer makes a Docker manifest OCI (Docker schema 2 has no zstd type every client takes)', () => {
    const stored = dockerManifest(layers);
    const now = [{ mediaType: MediaType.DockerLayerZstd, digest: d(5), size: 5 }, layers[1]!];
    const out = rewriteManifest(stored, config, now, { ociOnly: false });
    const o = parsed(out.doc.bytes);
    assert.equal(out.doc.mediaType, MediaType.OciManifest);
    assert.equal(o.mediaType, MediaType.OciManifest);
    assert.equal((o.config as Descriptor).mediaType, MediaType.OciConfig);
    assert.deepEqual(
      o.layers.map((l) => l.mediaType),
      [MediaType.OciLayerZstd, MediaType.OciLayerGzip],
    );
  });

  it('a destination that takes OCI only gets OCI, foreign layers as non-distributable ones', () => {
    const stored = dockerManifest([
      { mediaType: MediaType.DockerForeignLayerGzip, digest: d(1), size: 11, urls: ['https://example.com/l'] },
      layers[1]!,
    ]);
    const out = rewriteManifest(stored, config, stored.layers, { ociOnly: true });
    assert.equal(out.rewritten, true);
    const o = parsed(out.doc.bytes);
    assert.equal(out.doc.mediaType, MediaType.OciManifest);
    assert.deepEqual(o.layers[0], {
      mediaType: MediaType.OciLayerNondistributableGzip,
      digest: d(1),
      size: 11,
      urls: ['https://example.com/l'],
    });
  });

  it('an OCI manifest is never converted', () => {
    const stored = manifestOf(
      {
        schemaVersion: 2,
        mediaType: MediaType.OciManifest,
        config: { ...config, mediaType: MediaType.OciConfig },
        layers: [{ mediaType: MediaType.OciLayerGzip, digest: d(1), size: 1 }],
      },
      MediaType.OciManifest,
    );
    const out = rewriteManifest(stored, stored.config, stored.layers, { ociOnly: true });
    assert.equal(out.rewritten, false);
    assert.equal(out.doc.bytes, stored.bytes);
  });

  it('no stored manifest (legacy docker save): a Docker schema 2 manifest is built, OCI when it must be', () => {
    const docker = rewriteManifest(undefined, config, layers, { ociOnly: false });
    assert.equal(docker.rewritten, true);
    assert.equal(docker.doc.mediaType, MediaType.DockerManifest);
    const back = parseManifestDocument(docker.doc.bytes, 'test', docker.doc.mediaType) as ImageManifest;
    assert.deepEqual(back.config, config);
    assert.deepEqual(back.layers, layers);

    const oci = rewriteManifest(undefined, config, layers, { ociOnly: true });
    const o = parseManifestDocument(oci.doc.bytes, 'test', oci.doc.mediaType) as ImageManifest;
    assert.equal(o.mediaType, MediaType.OciManifest);
    assert.equal(o.config.mediaType, MediaType.OciConfig);
    assert.deepEqual(
      o.layers.map((l) => l.mediaType),
      [MediaType.OciLayerGzip, MediaType.OciLayerGzip],
    );
  });

  it('property: the same layers give the stored bytes; other digests give a document that parses back to them', () => {
    const layerArb = fc.record({
      n: fc.integer({ min: 1, max: 1000 }),
      size: fc.integer({ min: 0, max: 2 ** 40 }),
      mt: fc.constantFrom(MediaType.DockerLayerGzip, MediaType.DockerLayer),
    });
    fc.assert(
      fc.property(
        fc.array(layerArb, { minLength: 1, maxLength: 8 }),
        fc.array(fc.boolean(), { maxLength: 8 }),
        (ls, flip) => {
          const storedLayers = ls.map((l) => ({ mediaType: l.mt, digest: d(l.n), size: l.size }));
          const stored = dockerManifest(storedLayers);
          const same = rewriteManifest(stored, config, stored.layers, { ociOnly: false });
          assert.equal(same.doc.bytes, stored.bytes);
          const now = stored.layers.map((l, i) => (flip[i] ? { ...l, digest: digestOf(`other ${i} ${l.digest}`) } : l));
          const out = rewriteManifest(stored, config, now, { ociOnly: false });
          assert.equal(
            out.rewritten,
            now.some((l, i) => l.digest !== stored.layers[i]!.digest),
          );
          const back = parseManifestDocument(out.doc.bytes, 'test', out.doc.mediaType) as ImageManifest;
          assert.deepEqual(back.layers, now);
          assert.equal(out.doc.digest, digestOf(out.doc.bytes));
        },
      ),
    );
  });
});

describe('rewriteIndex', () => {
  const amd: Descriptor = {
    mediaType: MediaType.DockerManifest,
    digest: d(10),
    size: 500,
    platform: { os: 'linux', architecture: 'amd64' },
  };
  const arm: Descriptor = {
    mediaType: MediaType.DockerManifest,
    digest: d(11),
    size: 501,
    platform: { os: 'linux', architecture: 'arm64' },
  };
  const list = indexOf(
    { schemaVersion: 2, mediaType: MediaType.DockerManifestList, manifests: [amd, arm] },
    MediaType.DockerManifestList,
  );

  it('children unchanged: the stored bytes', () => {
    const out = rewriteIndex(list, new Map([[amd.digest, amd]]), { ociOnly: false });
    assert.equal(out.rewritten, false);
    assert.equal(out.doc.bytes, list.bytes);
  });

  it('a changed child: its new descriptor, the platform and the other child kept', () => {
    const now = { ...amd, digest: d(20), size: 600 };
    const out = rewriteIndex(list, new Map([[amd.digest, now]]), { ociOnly: false });
    assert.equal(out.rewritten, true);
    assert.equal(out.doc.mediaType, MediaType.DockerManifestList);
    const back = parseManifestDocument(out.doc.bytes, 'test', out.doc.mediaType) as ImageIndex;
    assert.deepEqual(back.manifests, [now, arm]);
  });

  it('a child that became OCI makes the list an OCI index', () => {
    const now = { ...amd, mediaType: MediaType.OciManifest, digest: d(20) };
    const out = rewriteIndex(list, new Map([[amd.digest, now]]), { ociOnly: false });
    assert.equal(out.doc.mediaType, MediaType.OciIndex);
    assert.equal(parsed(out.doc.bytes).mediaType, MediaType.OciIndex);
  });

  it('a destination that takes OCI only: an OCI index', () => {
    const out = rewriteIndex(list, new Map(), { ociOnly: true });
    assert.equal(out.rewritten, true);
    assert.equal(out.doc.mediaType, MediaType.OciIndex);
  });
});

describe('buildIndex', () => {
  const child = (n: number, mt: string): Descriptor => ({ mediaType: mt, digest: d(n), size: n });

  it('some platforms of a Docker list: a Docker list of those, platforms given or from the descriptor', () => {
    const out = buildIndex(
      [
        { descriptor: child(1, MediaType.DockerManifest), platform: { os: 'linux', architecture: 'amd64' } },
        { descriptor: { ...child(2, MediaType.DockerManifest), platform: { os: 'linux', architecture: 'arm64' } } },
      ],
      MediaType.DockerManifestList,
      { ociOnly: false },
    );
    assert.equal(out.mediaType, MediaType.DockerManifestList);
    assert.equal(out.digest, digestOf(out.bytes));
    const back = parseManifestDocument(out.bytes, 'test', out.mediaType) as ImageIndex;
    assert.deepEqual(
      back.manifests.map((m) => m.platform?.architecture),
      ['amd64', 'arm64'],
    );
  });

  it('an OCI child, an OCI source index, or an OCI-only destination: an OCI index', () => {
    const docker = [{ descriptor: child(1, MediaType.DockerManifest) }];
    assert.equal(
      buildIndex([{ descriptor: child(1, MediaType.OciManifest) }], MediaType.DockerManifestList, { ociOnly: false })
        .mediaType,
      MediaType.OciIndex,
    );
    assert.equal(buildIndex(docker, MediaType.OciIndex, { ociOnly: false }).mediaType, MediaType.OciIndex);
    assert.equal(buildIndex(docker, MediaType.DockerManifestList, { ociOnly: true }).mediaType, MediaType.OciIndex);
  });
});

describe('placedLayerDescriptor: media types lading does not know', () => {
  it('an artifact layer type is kept while its bytes are the stored ones', () => {
    const stored: Descriptor = { mediaType: 'application/vnd.example.chart.v1.tar+gzip', digest: d(1), size: 3 };
    assert.deepEqual(
      placedLayerDescriptor(stored, 'oci', { digest: d(1), size: 3, compression: 'gzip' }, false),
      stored,
    );
  });
});
