/**
 * Descriptors, manifests, indexes and configs: what is accepted, what is refused and with
 * which code. Documents are built as bytes, as they arrive from archives and registries.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LadingError, type ErrorCode } from '../../src/errors';
import {
  buildManifest,
  configPlatform,
  descriptorJson,
  digestOf,
  familyOf,
  isAttestation,
  isForeignLayerMediaType,
  isIndexMediaType,
  isManifestMediaType,
  isSchema1MediaType,
  isValidMediaType,
  layerCompressionOf,
  layerMediaType,
  MAX_JSON_BYTES,
  MediaType,
  parseDescriptor,
  parseImageConfig,
  parseJsonBytes,
  parseManifestDocument,
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
} from '../../src/image';

const CONFIG_BYTES = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
const LAYER_BYTES = Buffer.from('layer bytes');

function desc(mediaType: string, bytes: Buffer, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { mediaType, digest: digestOf(bytes), size: bytes.length, ...extra };
}

function bytesOf(v: unknown): Buffer {
  return Buffer.from(JSON.stringify(v), 'utf8');
}

function ociManifest(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    schemaVersion: 2,
    mediaType: MediaType.OciManifest,
    config: desc(MediaType.OciConfig, CONFIG_BYTES),
    layers: [desc(MediaType.OciLayerGzip, LAYER_BYTES)],
    ...extra,
  };
}

function dockerManifest(): Record<string, unknown> {
  return {
    schemaVersion: 2,
    mediaType: MediaType.DockerManifest,
    config: desc(MediaType.DockerConfig, CONFIG_BYTES),
    layers: [
      desc(MediaType.DockerLayerGzip, LAYER_BYTES),
      desc(MediaType.DockerForeignLayerGzip, Buffer.from('w'), { urls: ['https://example.com/w'] }),
    ],
  };
}

function ociIndex(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const m = bytesOf(ociManifest());
  return {
    schemaVersion: 2,
    mediaType: MediaType.OciIndex,
    manifests: [
      desc(MediaType.OciManifest, m, { platform: { os: 'linux', architecture: 'amd64' } }),
      desc(MediaType.OciManifest, Buffer.from('{}'), {
        platform: { os: 'unknown', architecture: 'unknown' },
        annotations: {
          'vnd.docker.reference.type': 'attestation-manifest',
          'vnd.docker.reference.digest': digestOf(m),
        },
      }),
    ],
    ...extra,
  };
}

function codeOf(fn: () => unknown): ErrorCode | 'none' {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof LadingError, `expected a LadingError, got ${(e as Error)?.stack ?? String(e)}`);
    return e.code;
  }
  return 'none';
}

function parse(doc: unknown, declared?: string): ReturnType<typeof parseManifestDocument> {
  return parseManifestDocument(bytesOf(doc), 'doc', declared);
}

describe('parseDescriptor', () => {
  it('accepts a minimal descriptor', () => {
    const d = parseDescriptor(desc(MediaType.OciLayer, LAYER_BYTES), 'd');
    assert.deepEqual(d, { mediaType: MediaType.OciLayer, digest: digestOf(LAYER_BYTES), size: LAYER_BYTES.length });
  });

  it('accepts every optional field', () => {
    const data = Buffer.from('{"hello":"world"}');
    const d = parseDescriptor(
      desc(MediaType.OciConfig, data, {
        urls: ['https://a/b'],
        annotations: { 'org.opencontainers.image.title': 'x' },
        platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
        artifactType: 'application/vnd.example+json',
        data: data.toString('base64'),
        unknownField: { ignored: true },
      }),
      'd',
    );
    assert.deepEqual(d.urls, ['https://a/b']);
    assert.deepEqual(d.annotations, { 'org.opencontainers.image.title': 'x' });
    assert.deepEqual(d.platform, { os: 'linux', architecture: 'arm64', variant: 'v8' });
    assert.equal(d.artifactType, 'application/vnd.example+json');
    assert.equal(d.data, data.toString('base64'));
    assert.equal('unknownField' in d, false);
  });

  it('accepts embedded data checked against a sha512 digest', () => {
    const data = Buffer.from('abc');
    const d = parseDescriptor(
      { mediaType: MediaType.OciConfig, digest: digestOf(data, 'sha512'), size: 3, data: data.toString('base64') },
      'd',
    );
    assert.equal(d.data, 'YWJj');
  });

  it('accepts empty embedded data for the empty blob', () => {
    assert.equal(parseDescriptor(desc(MediaType.OciEmpty, Buffer.alloc(0), { data: '' }), 'd').data, '');
  });

  it('uses the default media type only when the descriptor has none', () => {
    const raw = { digest: digestOf(LAYER_BYTES), size: LAYER_BYTES.length };
    assert.equal(parseDescriptor(raw, 'd', MediaType.DockerLayer).mediaType, MediaType.DockerLayer);
    assert.equal(
      parseDescriptor({ ...raw, mediaType: MediaType.OciLayer }, 'd', MediaType.DockerLayer).mediaType,
      MediaType.OciLayer,
    );
  });

  const base = desc(MediaType.OciLayer, LAYER_BYTES);
  const bad: [string, unknown, ErrorCode][] = [
    ['null', null, 'BAD_DESCRIPTOR'],
    ['an array', [base], 'BAD_DESCRIPTOR'],
    ['a string', 'sha256:...', 'BAD_DESCRIPTOR'],
    ['no mediaType', { ...base, mediaType: undefined }, 'BAD_DESCRIPTOR'],
    ['numeric mediaType', { ...base, mediaType: 7 }, 'BAD_DESCRIPTOR'],
    ['mediaType without a slash', { ...base, mediaType: 'layer' }, 'BAD_DESCRIPTOR'],
    ['mediaType with spaces', { ...base, mediaType: 'application/vnd. oci' }, 'BAD_DESCRIPTOR'],
    ['no digest', { ...base, digest: undefined }, 'BAD_DIGEST'],
    ['bad digest', { ...base, digest: 'sha256:1234' }, 'BAD_DIGEST'],
    ['unsupported digest algorithm', { ...base, digest: `md5:${'a'.repeat(32)}` }, 'BAD_DIGEST'],
    ['no size', { ...base, size: undefined }, 'BAD_DESCRIPTOR'],
    ['string size', { ...base, size: '11' }, 'BAD_DESCRIPTOR'],
    ['negative size', { ...base, size: -1 }, 'BAD_DESCRIPTOR'],
    ['fractional size', { ...base, size: 1.5 }, 'BAD_DESCRIPTOR'],
    ['unsafe integer size', { ...base, size: 2 ** 53 }, 'BAD_DESCRIPTOR'],
    ['urls not an array', { ...base, urls: 'https://a' }, 'BAD_DESCRIPTOR'],
    ['urls with a number', { ...base, urls: ['https://a', 1] }, 'BAD_DESCRIPTOR'],
    ['annotations with a number', { ...base, annotations: { a: 1 } }, 'BAD_MANIFEST'],
    ['annotations as an array', { ...base, annotations: ['a'] }, 'BAD_MANIFEST'],
    ['platform without architecture', { ...base, platform: { os: 'linux' } }, 'BAD_PLATFORM'],
    ['numeric artifactType', { ...base, artifactType: 1 }, 'BAD_DESCRIPTOR'],
    ['data not base64', { ...base, data: 'not base64!' }, 'BAD_DESCRIPTOR'],
    ['data not a string', { ...base, data: 12 }, 'BAD_DESCRIPTOR'],
    [
      'data that does not match the digest',
      { ...base, data: Buffer.from('layer bytez').toString('base64') },
      'BAD_DESCRIPTOR',
    ],
    [
      'data that does not match the size',
      { ...desc(MediaType.OciLayer, LAYER_BYTES), size: 12, data: LAYER_BYTES.toString('base64') },
      'BAD_DESCRIPTOR',
    ],
  ];
  for (const [what, value, code] of bad) {
    it(`refuses ${what} with ${code}`, () => {
      assert.equal(
        codeOf(() => parseDescriptor(value, 'manifest.layers[0]')),
        code,
      );
    });
  }

  it('messages name where the descriptor was', () => {
    assert.throws(
      () => parseDescriptor({ ...base, size: -1 }, 'manifest.layers[4]'),
      /^LadingError: manifest\.layers\[4\]: "size"/,
    );
  });

  it('descriptorJson writes the spec key order and the optional fields', () => {
    const d: Descriptor = {
      size: 3,
      digest: digestOf('abc'),
      mediaType: MediaType.OciLayer,
      annotations: { a: 'b' },
      platform: { os: 'linux', architecture: 'amd64' },
    };
    assert.deepEqual(Object.keys(descriptorJson(d)), ['mediaType', 'digest', 'size', 'annotations', 'platform']);
  });
});

describe('isValidMediaType', () => {
  it('follows RFC 6838 names', () => {
    for (const mt of Object.values(MediaType)) assert.equal(isValidMediaType(mt), true, mt);
    for (const mt of ['', 'a', 'a/', '/b', 'a/b/c', 'a b/c', 'application/json; charset=utf-8', `a/${'b'.repeat(128)}`])
      assert.equal(isValidMediaType(mt), false, mt);
  });
});

describe('parseManifestDocument: accepted documents', () => {
  it('an OCI image manifest, with digest and exact bytes', () => {
    const bytes = bytesOf(ociManifest({ annotations: { 'org.opencontainers.image.created': '1970' } }));
    const m = parseManifestDocument(bytes, 'm') as ImageManifest;
    assert.equal(m.kind, 'manifest');
    assert.equal(m.mediaType, MediaType.OciManifest);
    assert.equal(m.digest, digestOf(bytes));
    assert.equal(m.bytes, bytes);
    assert.equal(m.config.digest, digestOf(CONFIG_BYTES));
    assert.equal(m.layers.length, 1);
    assert.deepEqual(m.annotations, { 'org.opencontainers.image.created': '1970' });
  });

  it('a Docker v2 schema 2 manifest (with a foreign layer)', () => {
    const m = parse(dockerManifest()) as ImageManifest;
    assert.equal(m.kind, 'manifest');
    assert.equal(m.mediaType, MediaType.DockerManifest);
    assert.deepEqual(m.layers[1]!.urls, ['https://example.com/w']);
  });

  it('an OCI index with platforms and an attestation', () => {
    const i = parse(ociIndex()) as ImageIndex;
    assert.equal(i.kind, 'index');
    assert.equal(i.mediaType, MediaType.OciIndex);
    assert.deepEqual(i.manifests[0]!.platform, { os: 'linux', architecture: 'amd64' });
    assert.equal(isAttestation(i.manifests[0]!), false);
    assert.equal(isAttestation(i.manifests[1]!), true);
  });

  it('a Docker manifest list', () => {
    const m = bytesOf(dockerManifest());
    const i = parse({
      schemaVersion: 2,
      mediaType: MediaType.DockerManifestList,
      manifests: [desc(MediaType.DockerManifest, m, { platform: { os: 'linux', architecture: 'arm', variant: 'v7' } })],
    });
    assert.equal(i.kind, 'index');
    assert.equal(i.mediaType, MediaType.DockerManifestList);
  });

  it('"manifests": null (Docker 25 writes it for an empty layout) as an empty index', () => {
    const i = parse({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: null }) as ImageIndex;
    assert.equal(i.kind, 'index');
    assert.deepEqual(i.manifests, []);
  });

  it('"manifests": null without mediaType is an empty index too (Go\'s ocispec.Index with no MediaType and a nil slice writes it)', () => {
    const i = parse({ schemaVersion: 2, manifests: null }) as ImageIndex;
    assert.equal(i.kind, 'index');
    assert.deepEqual(i.manifests, []);
  });

  it('an index without "manifests" at all is empty', () => {
    assert.deepEqual((parse({ schemaVersion: 2, mediaType: MediaType.OciIndex }) as ImageIndex).manifests, []);
  });

  it('documents without mediaType: the descriptor decides, else the shape', () => {
    const { mediaType: _m, ...bare } = ociManifest();
    assert.equal(parse(bare).mediaType, MediaType.OciManifest);
    assert.equal(parse(bare, MediaType.DockerManifest).mediaType, MediaType.DockerManifest);
    const { mediaType: _i, ...bareIndex } = ociIndex();
    assert.equal(parse(bareIndex).kind, 'index');
    assert.equal(parse(bareIndex).mediaType, MediaType.OciIndex);
    assert.equal(parse(bareIndex, MediaType.DockerManifestList).mediaType, MediaType.DockerManifestList);
  });

  it('a declared type that is not a manifest type does not contradict the document', () => {
    assert.equal(parse(ociManifest(), 'application/octet-stream').mediaType, MediaType.OciManifest);
  });

  it('subject and artifactType (OCI 1.1)', () => {
    const subject = desc(MediaType.OciManifest, Buffer.from('{}'));
    const m = parse(ociManifest({ subject, artifactType: 'application/vnd.example.sbom' })) as ImageManifest;
    assert.equal(m.subject!.digest, subject.digest);
    assert.equal(m.artifactType, 'application/vnd.example.sbom');
  });

  it('an artifact manifest with the empty config and zero layers', () => {
    const m = parse(
      ociManifest({ config: desc(MediaType.OciEmpty, Buffer.from('{}'), { data: 'e30=' }), layers: [] }),
    ) as ImageManifest;
    assert.equal(m.layers.length, 0);
    assert.equal(m.config.data, 'e30=');
  });

  it('a document with whitespace around it, digested as stored', () => {
    const bytes = Buffer.concat([Buffer.from('\n  '), bytesOf(ociManifest()), Buffer.from('\n')]);
    const m = parseManifestDocument(bytes, 'm');
    assert.equal(m.digest, digestOf(bytes));
  });

  it('exactly 4 MiB is accepted', () => {
    const body = bytesOf(ociManifest());
    const bytes = Buffer.alloc(MAX_JSON_BYTES, 0x20);
    body.copy(bytes);
    assert.equal(parseManifestDocument(bytes, 'm').kind, 'manifest');
  });

  it('10000 layers are accepted', () => {
    const layers = Array.from({ length: 10000 }, () => desc(MediaType.OciLayer, LAYER_BYTES));
    assert.equal((parse(ociManifest({ layers })) as ImageManifest).layers.length, 10000);
  });
});

describe('parseManifestDocument: refused documents', () => {
  const m = ociManifest();
  const cases: [string, unknown, ErrorCode, string?][] = [
    [
      'schemaVersion 1',
      { schemaVersion: 1, name: 'x', tag: 'latest', fsLayers: [], history: [] },
      'UNSUPPORTED_SCHEMA',
    ],
    ['schema 1 media type', { ...m, mediaType: MediaType.DockerSchema1 }, 'UNSUPPORTED_SCHEMA'],
    [
      'signed schema 1 media type',
      { ...m, schemaVersion: 1, mediaType: MediaType.DockerSchema1Signed },
      'UNSUPPORTED_SCHEMA',
    ],
    ['declared as schema 1', m, 'UNSUPPORTED_SCHEMA', MediaType.DockerSchema1Signed],
    ['schemaVersion 3', { ...m, schemaVersion: 3 }, 'UNSUPPORTED_SCHEMA'],
    ['schemaVersion "2"', { ...m, schemaVersion: '2' }, 'UNSUPPORTED_SCHEMA'],
    ['no schemaVersion', { ...m, schemaVersion: undefined }, 'UNSUPPORTED_SCHEMA'],
    ['a JSON array', [m], 'BAD_MANIFEST'],
    ['JSON null', null, 'BAD_MANIFEST'],
    ['a JSON string', 'manifest', 'BAD_MANIFEST'],
    ['numeric mediaType', { ...m, mediaType: 2 }, 'BAD_MANIFEST'],
    ['an unknown mediaType', { ...m, mediaType: 'application/vnd.example+json' }, 'BAD_MANIFEST'],
    ['a config media type as the document type', { ...m, mediaType: MediaType.OciConfig }, 'BAD_MANIFEST'],
    ['a mediaType that contradicts the descriptor', m, 'BAD_MANIFEST', MediaType.OciIndex],
    ['a Docker manifest declared as OCI', dockerManifest(), 'BAD_MANIFEST', MediaType.OciManifest],
    ['no config', { ...m, config: undefined }, 'BAD_DESCRIPTOR'],
    ['config as a string', { ...m, config: 'sha256:x' }, 'BAD_DESCRIPTOR'],
    [
      'config with a bad digest',
      { ...m, config: { ...desc(MediaType.OciConfig, CONFIG_BYTES), digest: 'sha256:XYZ' } },
      'BAD_DIGEST',
    ],
    ['no layers', { ...m, layers: undefined }, 'BAD_MANIFEST'],
    ['layers: null', { ...m, layers: null }, 'BAD_MANIFEST'],
    ['layers as an object', { ...m, layers: {} }, 'BAD_MANIFEST'],
    ['a layer that is a string', { ...m, layers: ['sha256:abc'] }, 'BAD_DESCRIPTOR'],
    [
      'a layer with a string size',
      { ...m, layers: [{ ...desc(MediaType.OciLayer, LAYER_BYTES), size: '11' }] },
      'BAD_DESCRIPTOR',
    ],
    [
      '10001 layers',
      { ...m, layers: Array.from({ length: 10001 }, () => desc(MediaType.OciLayer, LAYER_BYTES)) },
      'LIMIT_EXCEEDED',
    ],
    ['numeric artifactType', { ...m, artifactType: 5 }, 'BAD_MANIFEST'],
    ['annotations with non-strings', { ...m, annotations: { a: true } }, 'BAD_MANIFEST'],
    ['a bad subject', { ...m, subject: { mediaType: MediaType.OciManifest } }, 'BAD_DIGEST'],
    ['index manifests as an object', { ...ociIndex(), manifests: {} }, 'BAD_MANIFEST'],
    ['index manifests as a string', { ...ociIndex(), manifests: 'none' }, 'BAD_MANIFEST'],
    [
      'an index entry without digest',
      { ...ociIndex(), manifests: [{ mediaType: MediaType.OciManifest, size: 2 }] },
      'BAD_DIGEST',
    ],
    [
      'an index entry with a bad platform',
      { ...ociIndex(), manifests: [desc(MediaType.OciManifest, Buffer.from('{}'), { platform: { os: 'linux' } })] },
      'BAD_PLATFORM',
    ],
    [
      'an index of 10001 manifests',
      { ...ociIndex(), manifests: Array.from({ length: 10001 }, () => desc(MediaType.OciManifest, Buffer.from('{}'))) },
      'LIMIT_EXCEEDED',
    ],
  ];
  for (const [what, doc, code, declared] of cases) {
    it(`${what} -> ${code}`, () => {
      assert.equal(
        codeOf(() => parse(doc, declared)),
        code,
      );
    });
  }

  it('4 MiB + 1 byte -> JSON_TOO_LARGE, before any decoding', () => {
    // Invalid UTF-8 and invalid JSON: only the size check may answer.
    assert.equal(
      codeOf(() => parseManifestDocument(Buffer.alloc(MAX_JSON_BYTES + 1, 0xff), 'm')),
      'JSON_TOO_LARGE',
    );
    const padded = Buffer.alloc(MAX_JSON_BYTES + 1, 0x20);
    bytesOf(ociManifest()).copy(padded);
    assert.equal(
      codeOf(() => parseManifestDocument(padded, 'm')),
      'JSON_TOO_LARGE',
    );
  });

  it('invalid UTF-8 -> BAD_JSON', () => {
    const good = bytesOf(ociManifest({ annotations: { a: 'é' } }));
    const i = good.indexOf(Buffer.from('é'));
    const bad = Buffer.from(good);
    bad[i + 1] = 0x28; // a lone lead byte
    assert.equal(
      codeOf(() => parseManifestDocument(bad, 'm')),
      'BAD_JSON',
    );
    assert.equal(
      codeOf(() => parseManifestDocument(Buffer.from([0x7b, 0xc0, 0x80, 0x7d]), 'm')),
      'BAD_JSON',
    ); // overlong NUL
    // An encoded UTF-16 surrogate (CESU-8) is not UTF-8 either.
    assert.equal(
      codeOf(() =>
        parseManifestDocument(
          Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')]),
          'm',
        ),
      ),
      'BAD_JSON',
    );
  });

  it('syntactically invalid JSON -> BAD_JSON', () => {
    for (const text of ['', '{', '{"schemaVersion":2,}', "{'a':1}", 'NaN', '{"a":1}{"b":2}']) {
      assert.equal(
        codeOf(() => parseManifestDocument(Buffer.from(text), 'm')),
        'BAD_JSON',
        text,
      );
    }
  });
});

describe('parseImageConfig', () => {
  it('reads platform fields and diff_ids', () => {
    const d1 = digestOf('l1');
    const bytes = bytesOf({
      architecture: 'arm',
      os: 'linux',
      variant: 'v7',
      'os.version': '',
      rootfs: { type: 'layers', diff_ids: [d1] },
    });
    const cfg = parseImageConfig(bytes, 'c');
    assert.equal(cfg.digest, digestOf(bytes));
    assert.deepEqual(cfg.diffIds, [d1]);
    assert.deepEqual(configPlatform(cfg), { os: 'linux', architecture: 'arm', variant: 'v7' });
  });

  it('accepts a config without rootfs, or with diff_ids null', () => {
    assert.deepEqual(parseImageConfig(bytesOf({}), 'c').diffIds, []);
    assert.deepEqual(parseImageConfig(bytesOf({ rootfs: { diff_ids: null } }), 'c').diffIds, []);
    assert.equal(configPlatform(parseImageConfig(bytesOf({ os: 'linux' }), 'c')), undefined);
  });

  it('keeps os.version for Windows', () => {
    const cfg = parseImageConfig(bytesOf({ os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.1' }), 'c');
    assert.deepEqual(configPlatform(cfg), { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.1' });
  });

  const bad: [string, unknown, ErrorCode][] = [
    ['an array', [], 'BAD_MANIFEST'],
    ['rootfs as a string', { rootfs: 'layers' }, 'BAD_MANIFEST'],
    ['diff_ids as a string', { rootfs: { diff_ids: 'sha256:x' } }, 'BAD_MANIFEST'],
    ['a bad diff_id', { rootfs: { diff_ids: ['sha256:abc'] } }, 'BAD_DIGEST'],
  ];
  for (const [what, doc, code] of bad) {
    it(`refuses ${what} with ${code}`, () => {
      assert.equal(
        codeOf(() => parseImageConfig(bytesOf(doc), 'c')),
        code,
      );
    });
  }
  it('refuses large and invalid configs like manifests', () => {
    assert.equal(
      codeOf(() => parseImageConfig(Buffer.alloc(MAX_JSON_BYTES + 1, 0x20), 'c')),
      'JSON_TOO_LARGE',
    );
    assert.equal(
      codeOf(() => parseImageConfig(Buffer.from([0xff]), 'c')),
      'BAD_JSON',
    );
  });
});

describe('parseJsonBytes', () => {
  it('parses, and honours a smaller limit', () => {
    assert.deepEqual(parseJsonBytes(Buffer.from('{"a":[1,2]}'), 'x'), { a: [1, 2] });
    assert.equal(
      codeOf(() => parseJsonBytes(Buffer.from('[1, 2, 3]'), 'x', 8)),
      'JSON_TOO_LARGE',
    );
    assert.deepEqual(parseJsonBytes(Buffer.from('[1,2,3]'), 'x', 7), [1, 2, 3]);
  });
  it('messages name where the document came from', () => {
    assert.throws(
      () => parseJsonBytes(Buffer.from('{'), 'blobs/sha256/abc'),
      /^LadingError: blobs\/sha256\/abc: invalid JSON/,
    );
  });
});

describe('buildManifest', () => {
  const config: Descriptor = {
    mediaType: MediaType.DockerConfig,
    digest: digestOf(CONFIG_BYTES),
    size: CONFIG_BYTES.length,
  };
  const layer: Descriptor = {
    mediaType: MediaType.DockerLayer,
    digest: digestOf(LAYER_BYTES),
    size: LAYER_BYTES.length,
  };

  it('writes a deterministic Docker manifest that parses back to the same thing', () => {
    const a = buildManifest(MediaType.DockerManifest, config, [layer]);
    const b = buildManifest(MediaType.DockerManifest, config, [layer]);
    assert.equal(a.digest, b.digest);
    assert.ok(a.bytes.equals(b.bytes));
    assert.equal(a.digest, digestOf(a.bytes));
    const back = parseManifestDocument(a.bytes, 'm') as ImageManifest;
    assert.equal(back.digest, a.digest);
    assert.deepEqual(back.config, config);
    assert.deepEqual(back.layers, [layer]);
    // Docker's key order: mediaType, size, digest.
    assert.match(
      a.bytes.toString(),
      /^\{"schemaVersion":2,"mediaType":"[^"]+","config":\{"mediaType":"[^"]+","size":\d+,"digest"/,
    );
  });

  it('writes OCI key order for OCI manifests', () => {
    const m = buildManifest(MediaType.OciManifest, { ...config, mediaType: MediaType.OciConfig }, [
      { ...layer, mediaType: MediaType.OciLayer },
    ]);
    assert.match(m.bytes.toString(), /"config":\{"mediaType":"[^"]+","digest":"sha256:[0-9a-f]{64}","size":\d+\}/);
    assert.equal(parseManifestDocument(m.bytes, 'm').kind, 'manifest');
  });
});

describe('media types', () => {
  it('classifies manifest, index and schema 1 types', () => {
    assert.equal(isManifestMediaType(MediaType.OciManifest), true);
    assert.equal(isManifestMediaType(MediaType.DockerManifest), true);
    assert.equal(isManifestMediaType(MediaType.OciIndex), false);
    assert.equal(isManifestMediaType(undefined), false);
    assert.equal(isIndexMediaType(MediaType.OciIndex), true);
    assert.equal(isIndexMediaType(MediaType.DockerManifestList), true);
    assert.equal(isIndexMediaType(MediaType.DockerManifest), false);
    assert.equal(isSchema1MediaType(MediaType.DockerSchema1), true);
    assert.equal(isSchema1MediaType(MediaType.DockerSchema1Signed), true);
    assert.equal(isSchema1MediaType(MediaType.DockerManifest), false);
  });

  it('maps layer media types to compressions and back', () => {
    for (const family of ['oci', 'docker'] as const) {
      for (const c of ['none', 'gzip', 'zstd'] as const) {
        const mt = layerMediaType(family, c);
        assert.equal(layerCompressionOf(mt), c, mt);
        assert.equal(isForeignLayerMediaType(mt), false, mt);
        assert.equal(mt.startsWith(family === 'oci' ? 'application/vnd.oci.' : 'application/vnd.docker.'), true, mt);
      }
      for (const c of family === 'oci' ? (['none', 'gzip', 'zstd'] as const) : (['none', 'gzip'] as const)) {
        const mt = layerMediaType(family, c, true);
        assert.equal(layerCompressionOf(mt), c, mt);
        assert.equal(isForeignLayerMediaType(mt), true, mt);
      }
    }
    assert.equal(layerCompressionOf(MediaType.OciConfig), undefined);
    assert.equal(layerCompressionOf('application/octet-stream'), undefined);
  });

  it('families follow the manifest type', () => {
    assert.equal(familyOf(MediaType.DockerManifest), 'docker');
    assert.equal(familyOf(MediaType.DockerManifestList), 'docker');
    assert.equal(familyOf(MediaType.OciManifest), 'oci');
    assert.equal(familyOf(undefined), 'oci');
  });
});
