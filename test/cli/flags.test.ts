/**
 * The `lading push` options that README.md's CLI reference and `lading push --help` document
 * and that no other test exercised (issue 17): `--compression-level`, `--chunk-size`,
 * `--plain-http`, `--dry-run` (plain and `--json`), `--region`, `--ecr`, and the ECR host forms
 * with the API endpoint each one selects. Each runs the built CLI as a child process against a
 * real server (Debian's docker-registry, or `lading serve` with the AWS SDK on the wire), and
 * each expectation comes from the documentation, not from lading's code: what the server
 * received (counted by a recording proxy in front of it) or what it stored.
 *
 * Each test fails when its flag is ignored. How that was checked is written above each test:
 * the flag's wiring (runPush in src/cli/push.ts, openDestination in src/destinations/open.ts)
 * was broken in a compiled copy of the tree (`tsc --outDir .build-flags`, so no one else's build
 * saw it), this file run against it and the named test seen to fail, and the copy restored.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { DescribeImagesCommand } from '@aws-sdk/client-ecr';
import { AdaptiveGzip } from '../../src/compress/adaptive-gzip';
import { igzip } from '../../src/compress/igzip';
import { registryAvailable, startRegistry, type RegistryServer } from '../helpers/registry-server';
import { dockerArchiveParts, file, freshPath, makeLayer, pseudoRandom, tarBuffer, type Layer } from '../fixtures';
import { oneLineError, runCli, sandbox, type CliResult, type Sandbox } from '../hostile/run-cli';
import { startTestProxy, type TestProxy } from '../net/proxies';
import { startTestServer, type TestServer } from '../serve/helpers';

const ci = process.env.CI !== undefined;
// Under CI a missing registry fails the run (it is installed there); elsewhere the suite says why it skipped.
const registryGate =
  registryAvailable || ci ? {} : { skip: 'docker-registry is not installed (apt-get install docker-registry)' };
// lading serve's documented default key pair (it verifies SigV4 signatures against it).
const AWS = { AWS_ACCESS_KEY_ID: 'lading', AWS_SECRET_ACCESS_KEY: 'lading-secret' };

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/**
 * Text that deflate and zstd shrink, and shrink more at higher levels: lines of words drawn
 * from a 2,000-word vocabulary by a seeded generator (long-range repetition rewards the
 * longer match searches of the higher levels).
 */
function compressibleText(seed: string, bytes: number): Buffer {
  const rnd = pseudoRandom(seed, bytes * 2);
  const letters = 'etaoinshrdlucmfwypvbgkjqxz';
  const vocabulary: string[] = [];
  for (let i = 0; vocabulary.length < 2000; i += 8) {
    const len = 3 + (rnd[i]! % 8);
    let w = '';
    for (let j = 0; j < len; j++) w += letters[rnd[i + 1 + (j % 7)]! % (j % 2 === 0 ? 9 : 26)];
    vocabulary.push(`${w}${i % 5}`);
  }
  const out: string[] = [];
  let size = 0;
  for (let i = 16_000; size < bytes; i += 2) {
    const w = vocabulary[rnd.readUInt16LE(i % (rnd.length - 2)) % vocabulary.length]!;
    const sep = rnd[(i + 7) % rnd.length]! % 12 === 0 ? '\n' : ' ';
    out.push(w, sep);
    size += w.length + 1;
  }
  return Buffer.from(out.join('').slice(0, bytes));
}

/** A legacy `docker save` archive (uncompressed layers) holding `layers`, named `name`. */
async function archiveOf(name: string, layers: Layer[]): Promise<string> {
  const parts = dockerArchiveParts([{ repoTags: [name], platform: { os: 'linux', architecture: 'amd64' }, layers }], {
    order: 'sorted',
  });
  const p = freshPath(`${name.replace(/[^a-z0-9]+/g, '-')}.tar`);
  writeFileSync(p, await tarBuffer(parts.entries));
  return p;
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

// ---------------------------------------------------------------------------------------------
// A recording reverse proxy: forwards everything to 127.0.0.1:PORT unchanged (Host included, so
// a registry's Location headers and a SigV4 signature stay valid) and records each request.
// ---------------------------------------------------------------------------------------------

interface Recorded {
  method: string;
  /** Path and query as sent. */
  url: string;
  headers: IncomingHttpHeaders;
  /** Body bytes that went through. */
  bytes: number;
  /** The body itself when it is small (ECR JSON calls); undefined above 64 KiB. */
  body?: Buffer;
  status: number;
}

interface Recorder {
  /** `127.0.0.1:PORT` */
  host: string;
  url: string;
  requests: Recorded[];
  stop(): Promise<void>;
}

async function startRecorder(targetPort: number): Promise<Recorder> {
  const requests: Recorded[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const rec: Recorded = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, bytes: 0, status: 0 };
    requests.push(rec);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      rec.bytes += c.length;
      if (rec.bytes <= 65536) chunks.push(c);
    });
    req.on('end', () => {
      if (rec.bytes <= 65536) rec.body = Buffer.concat(chunks);
    });
    const up = request(
      { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        rec.status = upRes.statusCode ?? 502;
        res.writeHead(rec.status, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    requests,
    stop: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

function ok(r: CliResult): void {
  assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout.slice(-2000)}\nstderr: ${r.stderr.slice(-4000)}`);
}

/** The region of a SigV4 Authorization header's credential scope (`Credential=AKID/DATE/REGION/ecr/aws4_request`). */
function signingRegion(authorization: string | string[] | undefined): string | undefined {
  return /Credential=[^/,\s]+\/\d{8}\/([^/]+)\/ecr\/aws4_request/.exec(String(authorization ?? ''))?.[1];
}

/** The ECR operation of a recorded JSON 1.1 call (`X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.OP`). */
function ecrOp(r: Recorded): string | undefined {
  const t = r.headers['x-amz-target'];
  return typeof t === 'string' ? t.replace(/^.*\./, '') : undefined;
}

// ---------------------------------------------------------------------------------------------
// Usage errors: the documented ranges (no server needed)
// ---------------------------------------------------------------------------------------------

describe('--compression-level ranges (README: gzip 0-9, zstd 1-19)', () => {
  let box: Sandbox;
  let archive: string;
  before(async () => {
    box = sandbox('lading-flags-usage-');
    archive = await archiveOf('flags/usage:1', [await makeLayer([file('a.txt', 'a\n')], 'none')]);
  });
  after(() => box?.remove());

  // Checked: with runPush's bounds for --compression-level widened to -99..99, each of these
  // went on to push (exit 1, nothing listens on port 9) and failed.
  for (const [args, what] of [
    [['--compression-level', '10'], 'gzip above 9'],
    [['--compression-level=-1'], 'gzip below 0'],
    [['--compress', 'zstd', '--compression-level', '0'], 'zstd below 1'],
    [['--compress', 'zstd', '--compression-level', '20'], 'zstd above 19'],
    [['--compression-level', '2.5'], 'not an integer'],
  ] as const) {
    test(`${what}: a usage error (exit 2), nothing contacted`, async () => {
      // 127.0.0.1:9 (discard): were the level accepted, the push would fail to connect, exit 1.
      const r = await runCli(['push', archive, '127.0.0.1:9/flags/usage:1', ...args], {
        env: box.env,
        cwd: box.cwd,
        measure: false,
      });
      assert.equal(r.code, 2, r.stderr);
      assert.equal(oneLineError(r.stderr), undefined);
      assert.match(r.stderr, /--compression-level must be an integer from (0 to 9|1 to 19)/);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Against a real registry
// ---------------------------------------------------------------------------------------------

describe('push flags against a registry (docker-registry)', registryGate, () => {
  let reg: RegistryServer;
  let rec: Recorder;
  let box: Sandbox;
  /** 1.5 MiB of compressible text in one uncompressed layer. */
  let textLayer: Layer;
  let textArchive: string;
  /** 300,000 random bytes in one uncompressed layer, and a second small layer. */
  let randomArchive: string;

  before(async () => {
    box = sandbox('lading-flags-');
    reg = await startRegistry();
    rec = await startRecorder(reg.port);
    textLayer = await makeLayer([file('usr/share/words.txt', compressibleText('flags-text', 1536 * 1024))], 'none');
    textArchive = await archiveOf('flags/text:1', [textLayer]);
    randomArchive = await archiveOf('flags/random:1', [
      await makeLayer([file('data/random.bin', pseudoRandom('flags-random', 300_000))], 'none'),
      await makeLayer([file('etc/hostname', 'flags\n')], 'none'),
    ]);
  });
  after(async () => {
    await rec?.stop();
    await reg?.stop();
    box?.remove();
  });

  const push = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> =>
    runCli(['push', ...args], { env: { ...box.env, ...env }, cwd: box.cwd, measure: false });

  const ACCEPT = [
    'application/vnd.docker.distribution.manifest.v2+json',
    'application/vnd.oci.image.manifest.v1+json',
  ].join(', ');

  interface Manifest {
    mediaType?: string;
    config: { digest: string; size: number };
    layers: { mediaType: string; digest: string; size: number }[];
  }
  async function manifestOf(repo: string, ref: string): Promise<Manifest> {
    const r = await fetch(`${reg.url}/v2/${repo}/manifests/${ref}`, { headers: { accept: ACCEPT } });
    assert.equal(r.status, 200, `${repo}:${ref}: ${await r.clone().text()}`);
    return (await r.json()) as Manifest;
  }
  async function blobOf(repo: string, digest: string): Promise<Buffer> {
    const r = await fetch(`${reg.url}/v2/${repo}/blobs/${digest}`);
    assert.equal(r.status, 200);
    const b = Buffer.from(await r.arrayBuffer());
    assert.equal(sha256(b), digest, 'the registry serves what the digest names');
    return b;
  }
  async function tagsOf(repo: string): Promise<string[]> {
    const r = await fetch(`${reg.url}/v2/${repo}/tags/list`);
    return r.status === 404 ? [] : (((await r.json()) as { tags: string[] | null }).tags ?? []);
  }

  // Checked: with runPush's CopyOptions given `compressionLevel: undefined` whatever the flag,
  // every level gave the default's bytes and the level-0, l1/l9 and digest assertions failed.
  test('--compression-level (gzip): 9 is smaller than 1, 0 stores, no level is igzip 2 (zlib 2 without the binding); each inflates to the layer', async (t) => {
    const sizes: Record<string, { digest: string; size: number }> = {};
    for (const [name, level, env] of [
      ['l0', '0', {}],
      ['l1', '1', {}],
      ['l2', '2', {}],
      ['l9', '9', {}],
      ['default', undefined, {}],
      ['default-zlib', undefined, { LADING_GZIP_ENGINE: 'zlib' }],
    ] as const) {
      const r = await push(
        [
          textArchive,
          `${reg.host}/level/gzip-${name}:1`,
          '--no-cache',
          '--quiet',
          ...(level === undefined ? [] : ['--compression-level', level]),
        ],
        env,
      );
      ok(r);
      const m = await manifestOf(`level/gzip-${name}`, '1');
      assert.equal(m.layers.length, 1);
      const layer = m.layers[0]!;
      assert.match(layer.mediaType, /tar\.gzip$|tar\+gzip$/, `a gzip layer: ${layer.mediaType}`);
      const bytes = await blobOf(`level/gzip-${name}`, layer.digest);
      assert.equal(bytes.length, layer.size);
      assert.ok(gunzipSync(bytes).equals(textLayer.tar), `${name}: the gzip layer inflates to the archive's layer`);
      sizes[name] = { digest: layer.digest, size: layer.size };
    }
    const s = (k: string): number => sizes[k]!.size;
    t.diagnostic(
      `layer ${textLayer.tar.length} bytes; gzip sizes ${JSON.stringify(Object.fromEntries(Object.entries(sizes).map(([k, v]) => [k, v.size])))}`,
    );
    const tar = textLayer.tar.length;
    // Level 0 stores: deflate's stored blocks cost 5 bytes per 64 KiB, plus gzip's 18.
    assert.ok(s('l0') >= tar, `level 0 stores: ${s('l0')} >= ${tar}`);
    assert.ok(s('l1') < tar * 0.7, `level 1 compresses this text: ${s('l1')} of ${tar}`);
    assert.ok(s('l9') < s('l1') * 0.97, `level 9 is smaller than level 1 (at least 3%): ${s('l9')} vs ${s('l1')}`);
    // README: without a level, igzip level 2 where lading's binding is built, else zlib level 2.
    assert.equal(sizes['default-zlib']!.digest, sizes.l2!.digest, 'LADING_GZIP_ENGINE=zlib: the default is zlib 2');
    if (igzip()) {
      const gz = new AdaptiveGzip({ engine: 'igzip', level: 2 });
      const h = createHash('sha256');
      gz.on('data', (c: Buffer) => h.update(c));
      await new Promise((resolve, reject) => gz.on('end', resolve).on('error', reject).end(textLayer.tar));
      assert.equal(sizes.default!.digest, `sha256:${h.digest('hex')}`, 'no --compression-level is igzip level 2');
    } else {
      assert.ok(process.env.CI === undefined, 'CI builds the igzip binding');
      assert.equal(sizes.default!.digest, sizes.l2!.digest, 'no binding: no --compression-level is zlib level 2');
    }
    assert.notEqual(sizes.default!.digest, sizes.l1!.digest);
    assert.notEqual(sizes.default!.digest, sizes.l9!.digest);
  });

  // Checked: the same break (the level not passed on) made l19 == l1 and this test failed.
  test('--compression-level (zstd): 19 is smaller than 1, no level is level 3; each decompresses to the layer', async (t) => {
    const got: Record<string, { digest: string; size: number }> = {};
    for (const [name, level] of [
      ['l1', '1'],
      ['l3', '3'],
      ['l19', '19'],
      ['default', undefined],
    ] as const) {
      ok(
        await push([
          textArchive,
          `${reg.host}/level/zstd-${name}:1`,
          '--compress',
          'zstd',
          '--no-cache',
          '--quiet',
          ...(level === undefined ? [] : ['--compression-level', level]),
        ]),
      );
      const layer = (await manifestOf(`level/zstd-${name}`, '1')).layers[0]!;
      assert.match(layer.mediaType, /zstd$/, `a zstd layer: ${layer.mediaType}`);
      const bytes = await blobOf(`level/zstd-${name}`, layer.digest);
      assert.equal(bytes.readUInt32LE(0), 0xfd2fb528, 'a zstd frame');
      got[name] = { digest: layer.digest, size: layer.size };
    }
    t.diagnostic(`zstd sizes ${JSON.stringify(Object.fromEntries(Object.entries(got).map(([k, v]) => [k, v.size])))}`);
    assert.ok(
      got.l19!.size < got.l1!.size * 0.97,
      `level 19 is smaller than level 1 (at least 3%): ${got.l19!.size} vs ${got.l1!.size}`,
    );
    assert.equal(got.default!.digest, got.l3!.digest, 'no --compression-level is level 3 (README: default 3)');
    assert.notEqual(got.default!.digest, got.l1!.digest);
  });

  /** The body-carrying upload requests of one push, by blob digest: the sizes each blob went up in. */
  function uploadsByDigest(reqs: Recorded[]): Map<string, { sizes: number[]; ranges: string[] }> {
    // An upload session is the Location path (no query); its digest comes with the closing PUT
    // (or with a monolithic POST ?digest=).
    const sessions = new Map<string, { sizes: number[]; ranges: string[]; digest?: string }>();
    const out = new Map<string, { sizes: number[]; ranges: string[] }>();
    for (const r of reqs) {
      const u = new URL(r.url, 'http://x');
      if (!u.pathname.includes('/blobs/uploads/')) continue;
      const digest = u.searchParams.get('digest') ?? undefined;
      if (r.method === 'POST' && digest !== undefined) {
        out.set(digest, { sizes: [r.bytes], ranges: [] });
        continue;
      }
      const s = sessions.get(u.pathname) ?? { sizes: [], ranges: [] };
      sessions.set(u.pathname, s);
      if (r.bytes > 0) s.sizes.push(r.bytes);
      if (r.method === 'PATCH' && r.headers['content-range'] !== undefined)
        s.ranges.push(String(r.headers['content-range']));
      if (r.method === 'PUT' && digest !== undefined) s.digest = digest;
    }
    for (const s of sessions.values())
      if (s.digest !== undefined) out.set(s.digest, { sizes: s.sizes, ranges: s.ranges });
    return out;
  }

  // Checked: with chunkSize left out of openDestination's RegistryDestination options, each
  // blob went up in one request and the chunk assertions failed.
  test('--chunk-size: every blob goes up in PATCHes of exactly that size (the last shorter), in order; without it, one request per blob', async () => {
    const CHUNK = 65536;
    const chunkedFrom = rec.requests.length;
    ok(
      await push([
        randomArchive,
        `${rec.host}/chunks/on:1`,
        '--compress',
        'none',
        '--chunk-size',
        String(CHUNK),
        '--quiet',
      ]),
    );
    const chunked = rec.requests.slice(chunkedFrom);

    const plainFrom = rec.requests.length;
    ok(await push([randomArchive, `${rec.host}/chunks/off:1`, '--compress', 'none', '--quiet']));
    const plain = rec.requests.slice(plainFrom);

    const m = await manifestOf('chunks/on', '1');
    const blobs = [m.config, ...m.layers];
    assert.ok(
      m.layers.some((l) => l.size > 4 * CHUNK),
      'the random layer spans several chunks',
    );

    const on = uploadsByDigest(chunked);
    for (const b of blobs) {
      const u = on.get(b.digest);
      assert.ok(u, `${b.digest} was uploaded (saw ${[...on.keys()].join(', ')})`);
      const n = Math.ceil(b.size / CHUNK);
      const expected = Array.from({ length: n }, (_, i) => (i < n - 1 ? CHUNK : b.size - (n - 1) * CHUNK));
      assert.deepEqual(u.sizes, expected, `${b.digest} (${b.size} bytes) in chunks of ${CHUNK}`);
      // Content-Range of each PATCH: contiguous, inclusive (distribution's spec).
      assert.deepEqual(
        u.ranges,
        expected.map((len, i) => `${i * CHUNK}-${i * CHUNK + len - 1}`),
        `${b.digest}: Content-Range of each chunk`,
      );
    }
    assert.equal(
      chunked.filter((r) => r.method === 'PATCH').length,
      blobs.reduce((n, b) => n + Math.ceil(b.size / CHUNK), 0),
      'no other PATCH',
    );

    const off = uploadsByDigest(plain);
    for (const b of blobs) {
      assert.deepEqual(off.get(b.digest)?.sizes, [b.size], `${b.digest}: one request without --chunk-size`);
    }
    assert.ok(
      plain.every((r) => r.headers['content-range'] === undefined),
      'no Content-Range without --chunk-size',
    );
    assert.equal(
      (await manifestOf('chunks/off', '1')).layers[0]!.digest,
      m.layers[0]!.digest,
      'the same blobs either way',
    );
  });

  // Checked: with runPush's `dryRun` forced to false, the first "dry run" uploaded and tagged,
  // printed no plan, and the test failed.
  test('--dry-run: prints the plan (compress, upload, skip), sends only GET/HEAD, writes nothing; a real push afterwards matches it', async () => {
    const repo = 'dry/app';
    const from = rec.requests.length;
    const first = await push([textArchive, `${rec.host}/${repo}:1`, '--dry-run']);
    ok(first);
    const lines = first.stdout.trimEnd().split('\n');
    assert.equal(lines[0], 'dry run: nothing uploaded or written', first.stdout);
    // One line per blob: the uncompressed layer is to be compressed and uploaded, the config uploaded.
    assert.equal(lines.filter((l) => /^\s+compress\+upload\s/.test(l)).length, 1, first.stdout);
    assert.equal(lines.filter((l) => /^\s+upload\s/.test(l)).length, 1, first.stdout);
    assert.match(lines[lines.length - 1]!, /^\s+tag 1 -> /, 'the tag it would write');
    const sent = rec.requests.slice(from);
    assert.ok(sent.length > 0, 'the registry was asked what it has');
    assert.deepEqual(
      sent.filter((r) => r.method !== 'GET' && r.method !== 'HEAD').map((r) => `${r.method} ${r.url}`),
      [],
      'a dry run only reads',
    );
    assert.deepEqual(await tagsOf(repo), [], 'no tag written');

    // --json: one document, with the same plan and nothing uploaded.
    const jfrom = rec.requests.length;
    const j = await push([textArchive, `${rec.host}/${repo}:1`, '--dry-run', '--json']);
    ok(j);
    const doc = JSON.parse(j.stdout) as {
      blobs: { uploaded: number; bytesUploaded: number };
      tags: string[];
      plan: { action: string; size: number; digest?: string }[];
    };
    assert.deepEqual(doc.tags, ['1']);
    assert.equal(doc.blobs.uploaded, 0);
    assert.equal(doc.blobs.bytesUploaded, 0);
    assert.deepEqual(doc.plan.map((p) => p.action).sort(), ['compress+upload', 'upload']);
    assert.equal(doc.plan.find((p) => p.action === 'compress+upload')!.size, textLayer.tar.length);
    assert.ok(rec.requests.slice(jfrom).every((r) => r.method === 'GET' || r.method === 'HEAD'));
    assert.deepEqual(await tagsOf(repo), []);

    // The real push, then a dry run of the same: every blob already there, the same digest.
    const real = await push([textArchive, `${rec.host}/${repo}:1`, '--json']);
    ok(real);
    const pushed = JSON.parse(real.stdout) as { digest: string };
    assert.deepEqual(await tagsOf(repo), ['1']);
    const again = await push([textArchive, `${rec.host}/${repo}:1`, '--dry-run', '--json']);
    ok(again);
    const plan2 = JSON.parse(again.stdout) as { digest: string; plan: { action: string; reason?: string }[] };
    assert.deepEqual(
      plan2.plan.map((p) => p.action),
      ['skip', 'skip'],
      JSON.stringify(plan2.plan),
    );
    assert.equal(plan2.digest, pushed.digest, 'the dry run names the digest the push made');
    const human = await push([textArchive, `${rec.host}/${repo}:1`, '--dry-run']);
    ok(human);
    assert.equal(human.stdout.match(/^\s+skip\s/gm)?.length, 2, human.stdout);
    assert.match(human.stdout, new RegExp(`tag 1 -> ${pushed.digest}`));
  });

  describe('--plain-http', () => {
    let proxy: TestProxy;
    before(async () => {
      // Only 127.0.0.1 and localhost resolve here: `registry.corp.example` is reached through
      // this proxy, which connects every target to 127.0.0.1 and records what it was asked.
      proxy = await startTestProxy();
    });
    after(async () => proxy?.stop());

    // Checked: with runPush's `plainHttp` forced to false, the --plain-http push went out as a
    // CONNECT (https) and failed.
    test('a registry whose name is not loopback: http with --plain-http (README: plain HTTP), https without', async () => {
      const target = `registry.corp.example:${reg.port}`;
      const env = { HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url };

      const r0 = proxy.requests.length;
      const c0 = proxy.connects.length;
      ok(await push([randomArchive, `${target}/plain/app:1`, '--plain-http', '--quiet'], env));
      const plainReqs = proxy.requests.slice(r0);
      assert.equal(proxy.connects.length, c0, 'no TLS tunnel with --plain-http');
      assert.ok(
        plainReqs.some((q) => q.method === 'PUT' && q.url === `http://${target}/v2/plain/app/manifests/1`),
        `the manifest went to http://${target}: ${plainReqs.map((q) => `${q.method} ${q.url}`).join('\n')}`,
      );
      assert.ok(plainReqs.every((q) => q.url.startsWith(`http://${target}/`)));
      assert.deepEqual(await tagsOf('plain/app'), ['1'], 'stored');

      const r1 = proxy.requests.length;
      const c1 = proxy.connects.length;
      const tls = await push([randomArchive, `${target}/plain/tls:1`, '--quiet'], env);
      assert.equal(tls.code, 1, `https to a plain-http registry fails: ${tls.stderr}`);
      assert.equal(oneLineError(tls.stderr), undefined);
      assert.equal(proxy.requests.length, r1, 'no plain request without --plain-http');
      assert.ok(
        proxy.connects.slice(c1).some((c) => c.target === target),
        `a TLS tunnel to ${target} (https): ${JSON.stringify(proxy.connects.slice(c1))}`,
      );
      assert.deepEqual(await tagsOf('plain/tls'), []);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Amazon ECR flags, against lading serve through a recording proxy
// ---------------------------------------------------------------------------------------------

describe('ECR flags against lading serve', () => {
  let srv: TestServer;
  let rec: Recorder;
  let box: Sandbox;
  let archive: string;

  before(async () => {
    box = sandbox('lading-flags-ecr-');
    srv = await startTestServer();
    rec = await startRecorder(srv.port);
    archive = await archiveOf('flags/ecr:1', [await makeLayer([file('etc/motd', 'ecr flags\n')], 'none')]);
  });
  after(async () => {
    await rec?.stop();
    await srv?.stop();
    box?.remove();
  });

  const push = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> =>
    runCli(['push', archive, ...args], { env: { ...box.env, ...AWS, ...env }, cwd: box.cwd, measure: false });

  /** The ECR calls of one push and the signing regions they carried. */
  async function ecrPush(
    args: string[],
    env: NodeJS.ProcessEnv = {},
  ): Promise<{ r: CliResult; calls: Recorded[]; regions: string[] }> {
    const from = rec.requests.length;
    const r = await push(args, env);
    const calls = rec.requests.slice(from).filter((q) => ecrOp(q) !== undefined);
    return { r, calls, regions: [...new Set(calls.map((q) => signingRegion(q.headers.authorization) ?? 'unsigned'))] };
  }

  const HOST = '000000000000.dkr.ecr.us-east-1.amazonaws.com';

  // Checked: with runPush's destination options given `region: undefined` whatever the flag, the
  // --region run signed for us-east-1 and this test (and the --ecr and endpoint ones) failed.
  // With the host name's region dropped from openDestination's fallbacks, the second run signed
  // for AWS_REGION and failed.
  test('--region: every ECR call is signed for it, over the host name and AWS_REGION; without it the host name region wins', async () => {
    const flag = await ecrPush(
      [`${HOST}/flags/region:1`, '--region', 'eu-west-3', '--endpoint-url', rec.url, '--create-repository', '--quiet'],
      { AWS_REGION: 'ap-south-1' },
    );
    ok(flag.r);
    assert.ok(
      flag.calls.some((q) => ecrOp(q) === 'PutImage'),
      'the push went through the ECR API',
    );
    assert.deepEqual(flag.regions, ['eu-west-3'], 'SigV4 credential scope of every call');

    const host = await ecrPush([`${HOST}/flags/region:2`, '--endpoint-url', rec.url, '--quiet'], {
      AWS_REGION: 'ap-south-1',
    });
    ok(host.r);
    assert.deepEqual(host.regions, ['us-east-1'], 'README: default from the host name, else AWS_REGION');
  });

  // Checked: with runPush's `ecr` forced to false, the --ecr run went to /v2/ (no ECR
  // operation) and failed. With AWS_DEFAULT_REGION dropped from openDestination's fallbacks, the
  // fallback run failed.
  test('--ecr: a host that is not an ECR name goes through the ECR API; without it, through the registry API', async () => {
    const dest = `${rec.host}/flags/forced:1`;
    const forced = await ecrPush([dest, '--ecr', '--endpoint-url', rec.url, '--create-repository', '--quiet'], {
      AWS_REGION: 'ap-south-1',
    });
    ok(forced.r);
    const ops = new Set(forced.calls.map(ecrOp));
    for (const op of ['InitiateLayerUpload', 'UploadLayerPart', 'CompleteLayerUpload', 'PutImage'])
      assert.ok(ops.has(op), `${op} called (saw ${[...ops].join(', ')})`);
    assert.deepEqual(forced.regions, ['ap-south-1'], 'no region in a non-ECR host: AWS_REGION');
    const d = await srv.ecr.send(new DescribeImagesCommand({ repositoryName: 'flags/forced' }));
    assert.deepEqual(d.imageDetails?.[0]?.imageTags, ['1']);
    assert.match(
      forced.r.stdout.trim(),
      new RegExp(`^${rec.host.replace(/\./g, '\\.')}/flags/forced@sha256:[0-9a-f]{64}$`),
    );

    // --region beats AWS_REGION here too; AWS_DEFAULT_REGION is the fallback.
    const region = await ecrPush(
      [`${rec.host}/flags/forced:2`, '--ecr', '--region', 'sa-east-1', '--endpoint-url', rec.url, '--quiet'],
      {
        AWS_REGION: 'ap-south-1',
      },
    );
    ok(region.r);
    assert.deepEqual(region.regions, ['sa-east-1']);
    const fallback = await ecrPush([`${rec.host}/flags/forced:3`, '--ecr', '--endpoint-url', rec.url, '--quiet'], {
      AWS_DEFAULT_REGION: 'eu-north-1',
    });
    ok(fallback.r);
    assert.deepEqual(fallback.regions, ['eu-north-1'], 'README: AWS_REGION / AWS_DEFAULT_REGION');

    // The same command without --ecr: the OCI registry protocol to /v2/ of the same server, which
    // wants the Basic credential GetAuthorizationToken issues, so the anonymous push is refused.
    const from = rec.requests.length;
    const plain = await push([`${rec.host}/flags/forced:4`, '--endpoint-url', rec.url, '--quiet'], {
      AWS_REGION: 'ap-south-1',
    });
    const sent = rec.requests.slice(from);
    assert.deepEqual(sent.filter((q) => ecrOp(q) !== undefined).map(ecrOp), [], 'no ECR API call without --ecr');
    assert.ok(
      sent.some((q) => q.url.startsWith('/v2/')),
      'the registry API instead',
    );
    assert.equal(plain.code, 1, plain.stderr);
  });

  // One CLI run per host family: the account and region come from the host name (README: "--region
  // default: from the host name"); the account is the registryId of every call. The endpoint is
  // given each way the README names (--endpoint-url, AWS_ENDPOINT_URL_ECR, AWS_ENDPOINT_URL).
  // This found a bug, fixed in src/destinations/open.ts: a FIPS or dual-stack host with an
  // endpoint given failed with the SDK's "Invalid Configuration: FIPS and custom endpoint are
  // not supported". Checked: with the `!endpointGiven` conditions removed, the FIPS and
  // dual-stack runs fail with that error; restored.
  test('ECR host forms: account and region from the host name reach the API (China, FIPS, dual-stack), with an endpoint given', async () => {
    for (const [host, region, how] of [
      ['123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn', 'cn-north-1', '--endpoint-url'],
      ['123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com', 'us-gov-west-1', '--endpoint-url'],
      ['123456789012.dkr-ecr.eu-central-2.on.aws', 'eu-central-2', 'AWS_ENDPOINT_URL_ECR'],
      ['123456789012.dkr-ecr-fips.ca-central-1.on.aws', 'ca-central-1', 'AWS_ENDPOINT_URL'],
    ] as const) {
      const s = await startTestServer({ registryId: '123456789012' });
      const r = await startRecorder(s.port);
      try {
        const out = await runCli(
          [
            'push',
            archive,
            `${host}/flags/forms:1`,
            ...(how === '--endpoint-url' ? ['--endpoint-url', r.url] : []),
            '--create-repository',
            '--quiet',
          ],
          {
            env: {
              ...box.env,
              ...AWS,
              AWS_REGION: 'ap-south-1',
              ...(how === '--endpoint-url' ? {} : { [how]: r.url }),
            },
            cwd: box.cwd,
            measure: false,
          },
        );
        ok(out);
        const calls = r.requests.filter((q) => ecrOp(q) !== undefined);
        assert.ok(
          calls.some((q) => ecrOp(q) === 'PutImage'),
          `${host}: the push reached the endpoint given by ${how}`,
        );
        assert.deepEqual([...new Set(calls.map((q) => signingRegion(q.headers.authorization)))], [region], host);
        const ids = new Set(
          calls.map((q) => (JSON.parse(q.body?.toString('utf8') || '{}') as { registryId?: string }).registryId),
        );
        assert.deepEqual([...ids], ['123456789012'], `${host}: the account is the registryId of every call`);
        assert.match(out.stdout.trim(), new RegExp(`^${host.replace(/\./g, '\\.')}/flags/forms@sha256:[0-9a-f]{64}$`));
      } finally {
        await r.stop();
        await s.stop();
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The API endpoint each ECR host form selects, without --endpoint-url
// ---------------------------------------------------------------------------------------------

describe('ECR host forms: the default API endpoint (no --endpoint-url)', () => {
  let proxy: TestProxy;
  let box: Sandbox;
  let archive: string;
  before(async () => {
    box = sandbox('lading-flags-endpoint-');
    // HTTPS_PROXY: the SDK's first call shows up as a CONNECT naming the endpoint it resolved;
    // the proxy refuses it, so nothing leaves the machine.
    proxy = await startTestProxy({ refuseConnect: () => true });
    archive = await archiveOf('flags/endpoint:1', [await makeLayer([file('etc/motd', 'endpoint\n')], 'none')]);
  });
  after(async () => {
    await proxy?.stop();
    box?.remove();
  });

  /** The first CONNECT target of a push to `dest`; the push is killed once it is seen. */
  async function endpointOf(dest: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<string> {
    const from = proxy.connects.length;
    let pid: number | undefined;
    const done = runCli(['push', archive, dest, '--quiet', ...extra], {
      env: { ...box.env, ...AWS, HTTPS_PROXY: proxy.url, ...env },
      cwd: box.cwd,
      measure: false,
      timeoutMs: 60_000,
      onSpawn: (p) => (pid = p),
    });
    const deadline = Date.now() + 55_000;
    while (proxy.connects.length === from && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (pid !== undefined) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    const r = await done;
    const c = proxy.connects[from];
    assert.ok(c, `no CONNECT seen: exit ${r.code}\n${r.stderr}`);
    return c.target;
  }

  // The API endpoints: AWS General Reference, "Amazon ECR endpoints and quotas" (api.ecr.REGION.
  // amazonaws.com, ecr.REGION.api.aws dual-stack, ecr-fips.REGION.api.aws dual-stack FIPS; China
  // api.ecr.REGION.amazonaws.com.cn). For FIPS over IPv4 that table lists ecr-fips.REGION.amazonaws.com
  // while ECR's published endpoint rules (the ones every AWS SDK generates, and
  // amazon-ecr-credential-helper's host table) give api.ecr-fips.REGION.amazonaws.com: the test
  // accepts either, and rejects the non-FIPS api.ecr.REGION one a host parsed without its FIPS
  // mark would get.
  // Checked: with `useFipsEndpoint` / `useDualstackEndpoint` never set on openDestination's
  // ECRClient, the FIPS and dual-stack rows (and the next test) resolved to
  // api.ecr.REGION.amazonaws.com and failed.
  for (const [host, endpoint] of [
    ['123456789012.dkr.ecr.eu-west-1.amazonaws.com', /^api\.ecr\.eu-west-1\.amazonaws\.com:443$/],
    ['123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn', /^api\.ecr\.cn-northwest-1\.amazonaws\.com\.cn:443$/],
    ['123456789012.dkr.ecr-fips.us-east-2.amazonaws.com', /^(api\.)?ecr-fips\.us-east-2\.amazonaws\.com:443$/],
    ['123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com', /^(api\.)?ecr-fips\.us-gov-west-1\.amazonaws\.com:443$/],
    ['123456789012.dkr-ecr.us-west-2.on.aws', /^ecr\.us-west-2\.api\.aws:443$/],
    ['123456789012.dkr-ecr-fips.us-east-1.on.aws', /^ecr-fips\.us-east-1\.api\.aws:443$/],
  ] as const) {
    test(`${host}: its own API endpoint (${endpoint.source.replace(/[\\^$]/g, '')})`, async () => {
      assert.match(await endpointOf(`${host}/flags/endpoint:1`, [], { AWS_REGION: 'ap-south-1' }), endpoint);
    });
  }

  test('AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true: AWS_ENDPOINT_URL_ECR is ignored and a FIPS host keeps its FIPS endpoint', async () => {
    assert.match(
      await endpointOf('123456789012.dkr.ecr-fips.us-east-2.amazonaws.com/flags/endpoint:1', [], {
        AWS_ENDPOINT_URL_ECR: 'http://127.0.0.1:9',
        AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: 'true',
      }),
      /^(api\.)?ecr-fips\.us-east-2\.amazonaws\.com:443$/,
    );
  });

  // Checked with the --region break above: this resolved to api.ecr.eu-west-1 and failed.
  test('--region picks the endpoint of that region', async () => {
    assert.equal(
      await endpointOf('123456789012.dkr.ecr.eu-west-1.amazonaws.com/flags/endpoint:1', ['--region', 'ap-northeast-3']),
      'api.ecr.ap-northeast-3.amazonaws.com:443',
    );
  });
});
