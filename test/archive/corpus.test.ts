/**
 * The real-world archives of ../shared/corpus (written by docker, bazel, go-containerregistry,
 * buildx + regctl; see its README). Each file is skipped when absent. Expectations were read off
 * the files with `tar tvf`, `jq` and `sha256sum`; they are written out below, not computed by the
 * code under test.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { inspectArchive } from '../../src/archive';
import { isLadingError } from '../../src/errors';
import {
  ExpectedImage,
  ExpectedInspect,
  MT,
  SYNTHESIZED,
  asJson,
  assertInspect,
  rejection,
  streamOf,
  within,
} from '../fixtures';

/** The repository root (the directory holding package.json), from the source or the compiled test. */
function repoRoot(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('package.json not found above the test');
    dir = up;
  }
  return dir;
}
const CORPUS = path.resolve(repoRoot(), '..', 'shared', 'corpus');
const corpus = (name: string): string => path.join(CORPUS, name);
const skipUnless = (name: string): { skip: string } | Record<string, never> =>
  fs.existsSync(corpus(name)) ? {} : { skip: `${name} is not in ../shared/corpus` };

const AMD64 = { os: 'linux', architecture: 'amd64' };

function legacy(
  names: string[],
  config: [string, number],
  layers: Array<{ digest: string; size: number; mediaType?: string; diffId?: string }>,
  platform = AMD64,
): ExpectedImage {
  return {
    names,
    digest: SYNTHESIZED,
    mediaType: MT.dockerManifest,
    manifests: [
      {
        digest: SYNTHESIZED,
        mediaType: MT.dockerManifest,
        available: true,
        platform,
        config: { digest: `sha256:${config[0]}`, size: config[1] },
        layers: layers.map((l) => ({
          digest: `sha256:${l.digest}`,
          size: l.size,
          mediaType: l.mediaType ?? MT.dockerLayer,
          diffId: `sha256:${l.diffId ?? l.digest}`,
        })),
      },
    ],
  };
}

const CONFIG_1: [string, number] = ['6e0b05049ed9c17d02e1a55e80d6599dbfcce7f4f4b022e3c673e685789c470e', 330];
const CONFIG_2: [string, number] = ['930705ce23e3b6ed4c08746b6fe880089c864fbaf62482702ae3fdd66b8c7fe9', 330];
const LAYER_1 = { digest: '8897395fd26dc44ad0e2a834335b33198cb41ac4d98dfddf58eced3853fa7b17', size: 10240 };
const LAYER_2 = { digest: '3610aa5267a210147ba6ca02cdd87610dfc08522de9c5f5015edd8ee14853fd8', size: 10240 };

interface GoodCase {
  expected: ExpectedInspect;
  notes: string;
  /** Maps an answer the case also accepts onto `expected` (for self-contradictory input only). */
  alsoAccept?: (got: unknown) => unknown;
}

const GOOD: Record<string, GoodCase> = {
  'cimage-almostempty.tar': {
    notes: 'legacy docker save with the older per-layer VERSION/json files',
    expected: {
      format: 'docker-archive',
      compression: 'none',
      images: [
        legacy(
          ['emptyimage:latest'],
          ['9d7f147c0d0c4d4538a04c7ef385809e56eb1aac7bf800fbe976612188025b68', 1294],
          [{ digest: '0b916d257bd406111a3fced53f81b47de9a30f7c7d514a89769b3483aaddca7e', size: 1536 }],
        ),
      ],
    },
  },
  'ggcr-hello-world-v25.tar': {
    notes:
      'Docker >= 25 save whose index.json has "manifests": null; manifest.json points into blobs/, where the stored OCI manifest for that config and layer is found and used, so its digest is preserved (RepoTags null -> names [])',
    expected: {
      format: 'docker-archive',
      compression: 'none',
      images: [
        {
          names: [],
          digest: 'sha256:411caf340c828657e915a83ed561a79d2b8150dabad4dc079d881cbfe6f86afe',
          mediaType: MT.ociManifest,
          manifests: [
            {
              digest: 'sha256:411caf340c828657e915a83ed561a79d2b8150dabad4dc079d881cbfe6f86afe',
              mediaType: MT.ociManifest,
              available: true,
              platform: { os: 'linux', architecture: 'arm64' },
              config: { digest: 'sha256:ee301c921b8aadc002973b2e0c3da17d701dcd994b606769a7e6eaa100b81d44', size: 581 },
              layers: [
                {
                  digest: 'sha256:12660636fe55438cc3ae7424da7ac56e845cdb52493ff9cf949c47a7f57f8b43',
                  size: 10752,
                  mediaType: MT.ociLayer,
                  diffId: 'sha256:12660636fe55438cc3ae7424da7ac56e845cdb52493ff9cf949c47a7f57f8b43',
                },
              ],
            },
          ],
        },
      ],
    },
  },
  'ggcr-test_image_1.tar': {
    notes: 'legacy docker save (bazel rules_docker)',
    expected: {
      format: 'docker-archive',
      compression: 'none',
      images: [legacy(['bazel/v1/tarball:test_image_1'], CONFIG_1, [LAYER_1])],
    },
  },
  'ggcr-test_image_2.tar': {
    notes: 'legacy docker save (bazel rules_docker)',
    expected: {
      format: 'docker-archive',
      compression: 'none',
      images: [legacy(['bazel/v1/tarball:test_image_2'], CONFIG_2, [LAYER_2])],
    },
  },
  'ggcr-test_load_manifest.tar': {
    notes: 'legacy docker save, same image as test_image_1',
    expected: {
      format: 'docker-archive',
      compression: 'none',
      images: [legacy(['bazel/v1/tarball:test_image_1'], CONFIG_1, [LAYER_1])],
    },
  },
  'ggcr-test_bundle.tar': {
    notes: 'two images; the first has a LayerSources entry that contradicts its stored layer',
    // LayerSources[diff_id of test_image_2's layer] = {diff.tar.gzip, size 165, digest 321460...}: a
    // non-foreign descriptor that does not describe the stored bytes (uncompressed, 10240 bytes,
    // sha256 3610...). The rule "layers from LayerSources keep the descriptor given there" gives the
    // first answer; a reader that only trusts a LayerSources descriptor consistent with the bytes it
    // would push reports the stored bytes instead. Both are accepted for this one layer.
    expected: {
      format: 'docker-archive',
      compression: 'none',
      images: [
        legacy(['test_image_2'], CONFIG_2, [
          {
            digest: '321460fa87fd42433950b42d04b7aff249f4ed960d43404a9f699886906cc9d3',
            size: 165,
            mediaType: MT.dockerLayerGzip,
            diffId: LAYER_2.digest,
          },
        ]),
        legacy(['test_image_1'], CONFIG_1, [LAYER_1]),
      ],
    },
    alsoAccept: (got) => {
      const g = asJson(got) as { images?: Array<{ manifests?: Array<{ layers?: Array<Record<string, unknown>> }> }> };
      const layer = g.images?.[0]?.manifests?.[0]?.layers?.[0];
      if (
        layer &&
        layer.digest === `sha256:${LAYER_2.digest}` &&
        layer.size === LAYER_2.size &&
        layer.mediaType === MT.dockerLayer
      ) {
        Object.assign(layer, {
          digest: 'sha256:321460fa87fd42433950b42d04b7aff249f4ed960d43404a9f699886906cc9d3',
          size: 165,
          mediaType: MT.dockerLayerGzip,
        });
      }
      return g;
    },
  },
  'ggcr-test_link.tar': {
    notes:
      'two images sharing a layer through the symlink b159.../layer.tar -> ../6e77.../layer.tar (which comes AFTER it in the stream); Parent field',
    expected: {
      format: 'docker-archive',
      compression: 'none',
      images: [
        legacy(['bazel/v1/tarball:test_image_1'], CONFIG_1, [LAYER_1]),
        legacy(
          ['bazel/v1/tarball:test_image_3'],
          ['d4c9adacde69c3d92446e0484cea29493e9fd573cf0c8febfc700d80c46697a4', 1475],
          [LAYER_1, { digest: '6b617a2706576ed038acdc3aa668cac62010386a5a3d227d83aada32085c9f29', size: 2048 }],
        ),
      ],
    },
  },
};

const BAD: Record<string, { code: string; notes: string }> = {
  'ggcr-no_manifest.tar': {
    code: 'NO_MANIFEST',
    notes: 'only the pre-1.10 `repositories` + per-layer json: no manifest.json, no index.json',
  },
  'ggcr-null_manifest.tar': { code: 'BAD_MANIFEST', notes: 'manifest.json is the JSON literal null' },
};

void describe('corpus: real-world archives', () => {
  for (const [name, { expected, notes, alsoAccept }] of Object.entries(GOOD)) {
    const accept = alsoAccept ?? ((g: unknown): unknown => g);
    void it(`${name}: ${notes}`, skipUnless(name), async () => {
      const p = corpus(name);
      const fromPath = await inspectArchive(p);
      assertInspect(accept(fromPath), expected, `${name} from its path`);
      const fromStream = await inspectArchive(streamOf(p));
      assertInspect(accept(fromStream), expected, `${name} from a stream`);
      assert.deepStrictEqual(asJson(fromStream), asJson(fromPath), `${name}: stream and file differ`);
    });
  }

  for (const [name, { code, notes }] of Object.entries(BAD)) {
    void it(`${name} fails with ${code}: ${notes}`, skipUnless(name), async () => {
      for (const input of [corpus(name), streamOf(corpus(name))]) {
        const { value: err } = await within(5000, rejection(inspectArchive(input), name), name);
        assert.ok(isLadingError(err), `${name}: not a LadingError: ${String(err)}`);
        assert.equal(err.code, code, `${name}: ${err.message}`);
      }
    });
  }
});

// ---------------------------------------------------------------------------------------------
// regclient-testrepo: an OCI layout written by docker buildx + regctl

interface Desc {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string; variant?: string };
  annotations?: Record<string, string>;
}
const INDEX_TYPES = new Set<string>([MT.ociIndex, MT.dockerManifestList]);
const MANIFEST_TYPES = new Set<string>([MT.ociManifest, MT.dockerManifest]);

/**
 * What the layout's 26 index.json entries must give, from reading its JSON: 24 distinct digests
 * (v3 and mirror each have a second, referrers-style name). Per image: names, and per manifest
 * (depth first) its digest prefix and platform ("-" = null: the artifacts' configs are `{}`).
 */
const REGCLIENT: Array<[string, string[], string[]]> = [
  [
    'sha256:119b4a63feed',
    ['b1'],
    ['2f295c8e37f1 linux/amd64', '35f35d912637 linux/arm64', 'a347aaec7c49 linux/arm/v7', '431e0e3ba987 linux/arm/v6'],
  ],
  [
    'sha256:87144634443f',
    ['b2'],
    ['dca0e7ab3bf3 linux/amd64', 'e4913f3e22d9 linux/arm64', 'f7b8e272ae4c linux/arm/v7', 'cc9f1f974e0d linux/arm/v6'],
  ],
  [
    'sha256:caf692c7d56c',
    ['b3'],
    ['5db14b573e80 linux/amd64', '2ee2598fa265 linux/arm64', 'aab659a864f0 linux/arm/v7', '2ecb7d1b2e09 linux/arm/v6'],
  ],
  [
    'sha256:7ceb9b6bcc27',
    ['v1'],
    [
      '1effc9d48232 linux/amd64',
      '7e87ffc91b9c linux/arm64',
      '43089316cfee unknown/unknown',
      'd91043439162 unknown/unknown',
    ],
  ],
  [
    'sha256:dfae8f425735',
    ['v2'],
    ['ee378b79279b linux/amd64', '6bed79d0800a linux/arm64', '36ed7f4ec454 linux/arm/v7'],
  ],
  [
    'sha256:6fe828b32b9b',
    ['v3', 'sha256-7ceb9b6bcc274697d0c38be6214b50cec79d601bc61708747d3f6cb772f6c6fa.6fe828b32b9b4572.meta'],
    ['f8c9d547514d linux/amd64', 'e2a061deaaf4 linux/arm64', 'f4682754068e linux/arm/v7', '8fb6a85012f4 linux/arm/v6'],
  ],
  ['sha256:43089316cfee', ['a-docker'], ['43089316cfee -']],
  ['sha256:d91043439162', ['a-docker-oci'], ['d91043439162 -']],
  [
    'sha256:4351e6ebc634',
    ['sha256-7e87ffc91b9ceafa85be2777b16b1be10e4664fd4f3acc86e4295b97da5163ba'],
    ['d91043439162 -'],
  ],
  ['sha256:0484e93c23cd', ['a1'], ['0484e93c23cd -']],
  [
    'sha256:955b8a891713',
    ['sha256-dfae8f425735a5e3a72e40d6609e03079995511d48157c74d54801ff4430491e'],
    ['0484e93c23cd -', '741132f956e1 -'],
  ],
  ['sha256:741132f956e1', ['a2'], ['741132f956e1 -']],
  [
    'sha256:41d51f3b861a',
    ['sha256-ee378b79279b57eb5ac1f3b892c9ad2a9be9d9ccabe1a29a9cbaed8cad182358'],
    ['30bc58e881e9 -'],
  ],
  [
    'sha256:98291b121cf5',
    ['sha256-36ed7f4ec4545a40ca043f60d76653ef3d2a76f58a051c0f3a256aaab26fb847'],
    ['d2e2970e57e0 -'],
  ],
  [
    'sha256:7ee385b1056d',
    ['sha256-6bed79d0800a0d3a1d0e0e8105a6a5f7f7758ce09e160a8f142574c418302467'],
    ['25ecacb3ebf8 -'],
  ],
  ['sha256:2a25aa502b51', ['a3'], ['2a25aa502b51 -']],
  ['sha256:df85221e1519', ['ai'], ['0484e93c23cd -', '741132f956e1 -']],
  ['sha256:905693978d03', ['a-example'], ['905693978d03 -']],
  ['sha256:8e54c6754f08', ['child'], ['8e54c6754f08 -']],
  ['sha256:d69399e05204', ['loop'], ['8e54c6754f08 -']],
  [
    'sha256:fdc0d9052a90',
    ['sha256-8e54c6754f08d22f85c7552bb1951b228b8194d29b14a1639dbe50868da0273e'],
    ['8e54c6754f08 -'],
  ],
  [
    'sha256:0514ce64171e',
    ['mirror', 'sha256-0514ce64171e869a0b065fa1ce1b533e82808c9228d5b97ea6e3ef2e026d9aed'],
    ['0514ce64171e -'],
  ],
  ['sha256:819ff4564a5d', [], ['819ff4564a5d -']],
  ['sha256:ad460bc30198', [], ['ad460bc30198 -']],
];

interface GotImage {
  names: string[];
  digest: string | null;
  mediaType: string;
  manifests: Array<{
    digest: string;
    mediaType: string;
    available: boolean;
    platform: { os: string; architecture: string; variant?: string } | null;
    config: { digest: string; size: number } | null;
    layers: Array<{ digest: string; size: number; mediaType: string; diffId: string }>;
  }>;
}

function platformString(p: { os: string; architecture: string; variant?: string } | null): string {
  return p ? [p.os, p.architecture, ...(p.variant ? [p.variant] : [])].join('/') : '-';
}

void describe('corpus: regclient-testrepo (OCI layout by buildx + regctl)', skipUnless('regclient-testrepo'), () => {
  const root = corpus('regclient-testrepo');
  const blob = (digest: string): Buffer =>
    fs.readFileSync(path.join(root, 'blobs', 'sha256', digest.slice('sha256:'.length)));

  void it('its "loop" entry is a referrers loop (through `subject` and a sha256-<hex> tag), not a cycle of index `manifests`', () => {
    // Established from the files, so the expectation below (the whole layout reads) stands on data:
    // loop (d693...) -> manifests [child 8e54...], subject child; sha256-8e54... (fdc0...) -> [loop].
    // Following `manifests` only, as inspect does, every path ends: there is no INDEX_CYCLE to report.
    const index = JSON.parse(fs.readFileSync(path.join(root, 'index.json'), 'utf8')) as { manifests: Desc[] };
    const visit = (d: Desc, onPath: string[]): void => {
      assert.ok(!onPath.includes(d.digest), `cycle through ${[...onPath, d.digest].join(' -> ')}`);
      if (!INDEX_TYPES.has(d.mediaType)) return;
      const children = (JSON.parse(blob(d.digest).toString('utf8')) as { manifests: Desc[] | null }).manifests ?? [];
      for (const c of children) visit(c, [...onPath, d.digest]);
    };
    for (const d of index.manifests) visit(d, []);
    const loop = index.manifests.find((d) => d.annotations?.['org.opencontainers.image.ref.name'] === 'loop');
    assert.ok(loop, 'a `loop` entry');
    const body = JSON.parse(blob(loop.digest).toString('utf8')) as { manifests: Desc[]; subject?: Desc };
    assert.equal(
      body.subject?.digest,
      body.manifests[0]?.digest,
      'the loop index lists and refers to (subject) the same child',
    );
  });

  void it('reads the whole layout: 24 images, names, nested platforms, artifacts with a null platform', async () => {
    const { value: result } = await within(10000, inspectArchive(root), 'regclient-testrepo');
    const got = asJson(result) as { format: string; compression: string; images: GotImage[] };
    assert.equal(got.format, 'oci-layout');
    assert.equal(got.compression, 'none');
    assert.deepStrictEqual(
      got.images.map((img) => [
        img.digest?.slice(0, 19) ?? null,
        img.names,
        img.manifests.map((m) => `${m.digest.slice(7, 19)} ${platformString(m.platform)}`),
      ]),
      REGCLIENT,
    );
    const index = JSON.parse(fs.readFileSync(path.join(root, 'index.json'), 'utf8')) as { manifests: Desc[] };
    for (const img of got.images) {
      const top = index.manifests.find((d) => d.digest === img.digest);
      assert.ok(top, `${img.digest} is a top-level entry`);
      assert.equal(img.mediaType, top.mediaType, `${img.digest}: media type of its index.json descriptor`);
      for (const m of img.manifests) {
        // every child of this layout is present: config and layers are those of the manifest blob
        const body = JSON.parse(blob(m.digest).toString('utf8')) as {
          mediaType?: string;
          config: Desc;
          layers: Desc[];
        };
        assert.ok(MANIFEST_TYPES.has(m.mediaType), `${m.digest}: an image manifest media type`);
        assert.equal(m.available, true, `${m.digest} available`);
        assert.deepStrictEqual(m.config, { digest: body.config.digest, size: body.config.size }, `${m.digest} config`);
        const config = JSON.parse(blob(body.config.digest).toString('utf8')) as { rootfs?: { diff_ids?: string[] } };
        assert.deepStrictEqual(
          m.layers.map((l) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType })),
          body.layers.map((l) => ({ digest: l.digest, size: l.size, mediaType: l.mediaType })),
          `${m.digest} layers`,
        );
        const diffIds = config.rootfs?.diff_ids;
        // artifacts (config `{}`) have no diff_ids: the spec leaves their diffId open, only a string is required
        m.layers.forEach((l, i) =>
          diffIds
            ? assert.equal(l.diffId, diffIds[i], `${m.digest} layer ${i} diffId`)
            : assert.equal(typeof l.diffId, 'string'),
        );
      }
    }
  });
});
