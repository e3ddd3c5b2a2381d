/**
 * lading serve's registry API (/v2/): Basic auth with the GetAuthorizationToken password,
 * pulls of what the ECR API stored, pushes (monolithic, streamed PATCH, chunks, Content-Range),
 * PutImage's rules on PUT manifest, tags/list, referrers; and skopeo reading both the
 * data directory (oci:) and the endpoint (docker://), and pushing through it.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  BatchCheckLayerAvailabilityCommand,
  BatchGetImageCommand,
  DescribeImagesCommand,
  GetAuthorizationTokenCommand,
  PutImageCommand,
  type ECRClient,
} from '@aws-sdk/client-ecr';
import { digestOf } from '../../src/image/digest';
import {
  blob,
  createRepo,
  http,
  indexOf,
  manifestOf,
  MiB,
  OCI_INDEX,
  OCI_MANIFEST,
  pushImage,
  randomBytesSeeded,
  registryCreds,
  run,
  skopeoAvailable,
  smallImage,
  startTestServer,
  tempDir,
  type Blob,
  type TestServer,
} from './helpers';

describe('lading serve: registry API (/v2/)', () => {
  let srv: TestServer;
  let ecr: ECRClient;
  let auth: { authorization: string };
  let creds: { username: string; password: string };
  before(async () => {
    srv = await startTestServer();
    ecr = srv.ecr;
    const c = await registryCreds(ecr);
    creds = c;
    auth = { authorization: c.header };
  });
  after(() => srv.stop());

  const v2 = (path: string, opts: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {}) =>
    http(`${srv.url}/v2/${path}`, { ...opts, headers: { ...auth, ...opts.headers } });
  const ociCode = (body: Buffer): string =>
    (JSON.parse(body.toString()) as { errors: { code: string }[] }).errors[0]!.code;

  test('GET /v2/: 401 with a Basic challenge without or with wrong credentials, 200 with the issued token', async () => {
    const anon = await http(`${srv.url}/v2/`);
    assert.equal(anon.status, 401);
    assert.match(String(anon.headers['www-authenticate']), /^Basic realm="/);
    assert.equal(anon.headers['docker-distribution-api-version'], 'registry/2.0');
    assert.equal(ociCode(anon.body), 'UNAUTHORIZED');
    const wrong = await http(`${srv.url}/v2/`, {
      headers: { authorization: `Basic ${Buffer.from('AWS:guess').toString('base64')}` },
    });
    assert.equal(wrong.status, 401);
    const wrongUser = await http(`${srv.url}/v2/`, {
      headers: { authorization: `Basic ${Buffer.from(`root:${creds.password}`).toString('base64')}` },
    });
    assert.equal(wrongUser.status, 401);
    const ok = await v2('');
    assert.equal(ok.status, 200);
    assert.equal(creds.username, 'AWS');
    // Every route is behind auth.
    assert.equal((await http(`${srv.url}/v2/anything/tags/list`)).status, 401);
  });

  test('expired passwords are refused', async () => {
    // Long enough that the first use is in time on a busy machine; then wait past the expiry it states.
    const short = await startTestServer({ tokenTtlMs: 3000 });
    try {
      const c = await registryCreds(short.ecr);
      // Issued after c's password, so it expires after it.
      const later = await short.ecr.send(new GetAuthorizationTokenCommand({}));
      const expiresAt = later.authorizationData![0]!.expiresAt!.getTime();
      assert.equal((await http(`${short.url}/v2/`, { headers: { authorization: c.header } })).status, 200);
      await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 100));
      const late = await http(`${short.url}/v2/`, { headers: { authorization: c.header } });
      assert.equal(late.status, 401);
      assert.match(late.body.toString(), /expired/);
    } finally {
      await short.stop();
    }
  });

  test('pull what the ECR API pushed: manifests by tag and digest, blobs with ranges, tags/list', async () => {
    await createRepo(ecr, 'pull/app');
    const img = smallImage('pull');
    await pushImage(ecr, 'pull/app', img, 'v1');
    for (const ref of ['v1', img.manifest.digest]) {
      const m = await v2(`pull/app/manifests/${ref}`, { headers: { accept: OCI_MANIFEST } });
      assert.equal(m.status, 200);
      assert.equal(m.headers['content-type'], OCI_MANIFEST);
      assert.equal(m.headers['docker-content-digest'], img.manifest.digest);
      assert.deepEqual(m.body, img.manifest.bytes);
      const head = await v2(`pull/app/manifests/${ref}`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], String(img.manifest.size));
      assert.equal(head.body.length, 0);
    }
    assert.equal((await v2('pull/app/manifests/v2')).status, 404);
    assert.equal(ociCode((await v2('pull/app/manifests/v2')).body), 'MANIFEST_UNKNOWN');
    const layer = img.layers[0]!;
    const b = await v2(`pull/app/blobs/${layer.digest}`);
    assert.equal(b.status, 200);
    assert.deepEqual(b.body, layer.bytes);
    assert.equal(b.headers['docker-content-digest'], layer.digest);
    const head = await v2(`pull/app/blobs/${layer.digest}`, { method: 'HEAD' });
    assert.equal(head.headers['content-length'], String(layer.size));
    const part = await v2(`pull/app/blobs/${layer.digest}`, { headers: { range: 'bytes=10-19' } });
    assert.equal(part.status, 206);
    assert.deepEqual(part.body, layer.bytes.subarray(10, 20));
    assert.equal(part.headers['content-range'], `bytes 10-19/${layer.size}`);
    assert.equal(
      (await v2(`pull/app/blobs/${layer.digest}`, { headers: { range: `bytes=${layer.size}-` } })).status,
      416,
    );
    assert.equal(ociCode((await v2(`pull/app/blobs/${digestOf('nope')}`)).body), 'BLOB_UNKNOWN');
    assert.equal(ociCode((await v2(`missing/repo/blobs/${layer.digest}`)).body), 'NAME_UNKNOWN');
    const tags = await v2('pull/app/tags/list');
    assert.deepEqual(JSON.parse(tags.body.toString()), { name: 'pull/app', tags: ['v1'] });
  });

  /** Uploads a blob with POST + PATCH chunks + PUT; returns the final response. */
  async function chunked(repo: string, b: Blob, chunkSizes: number[]) {
    const start = await v2(`${repo}/blobs/uploads/`, { method: 'POST' });
    assert.equal(start.status, 202);
    assert.equal(start.headers['oci-chunk-min-length'], String(5 * MiB));
    let location = String(start.headers.location);
    let off = 0;
    for (const n of chunkSizes) {
      const chunk = b.bytes.subarray(off, off + n);
      const r = await http(new URL(location, srv.url).href, {
        method: 'PATCH',
        headers: {
          ...auth,
          'content-type': 'application/octet-stream',
          'content-range': `${off}-${off + chunk.length - 1}`,
          'content-length': String(chunk.length),
        },
        body: chunk,
      });
      assert.equal(r.status, 202, r.body.toString());
      off += chunk.length;
      assert.equal(r.headers.range, `0-${off - 1}`);
      location = String(r.headers.location);
    }
    const rest = b.bytes.subarray(off);
    const sep = location.includes('?') ? '&' : '?';
    return http(new URL(`${location}${sep}digest=${b.digest}`, srv.url).href, {
      method: 'PUT',
      headers: { ...auth, 'content-length': String(rest.length) },
      body: rest,
    });
  }

  test('push blobs: monolithic POST ?digest=, POST+PUT, streamed PATCH chunks; digests verified; ECR sees them', async () => {
    await createRepo(ecr, 'push');
    const mono = blob('monolithic blob');
    const r1 = await v2(`push/blobs/uploads/?digest=${mono.digest}`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: mono.bytes,
    });
    assert.equal(r1.status, 201);
    assert.equal(r1.headers['docker-content-digest'], mono.digest);
    assert.equal(r1.headers.location, `/v2/push/blobs/${mono.digest}`);

    const one = blob(randomBytesSeeded(3 * MiB, 21));
    const r2 = await chunked('push', one, []);
    assert.equal(r2.status, 201);

    const big = blob(randomBytesSeeded(12 * MiB + 3, 22));
    const r3 = await chunked('push', big, [5 * MiB, 6 * MiB]);
    assert.equal(r3.status, 201, r3.body.toString());
    assert.deepEqual(await readFile(join(srv.dataDir, 'push', 'blobs', 'sha256', big.digest.slice(7))), big.bytes);

    // Chunks under 5 MiB (but the last) are refused at the end, as ECR does.
    const small = blob(randomBytesSeeded(300_000, 23));
    const r4 = await chunked('push', small, [100_000, 100_000]);
    assert.equal(r4.status, 400);
    assert.equal(ociCode(r4.body), 'BLOB_UPLOAD_INVALID');

    // A wrong digest is refused and nothing is stored.
    const start = await v2('push/blobs/uploads/', { method: 'POST' });
    const wrong = await http(new URL(`${String(start.headers.location)}?digest=${digestOf('else')}`, srv.url).href, {
      method: 'PUT',
      headers: auth,
      body: 'content',
    });
    assert.equal(wrong.status, 400);
    assert.equal(ociCode(wrong.body), 'DIGEST_INVALID');
    assert.equal((await v2(`push/blobs/${digestOf('else')}`, { method: 'HEAD' })).status, 404);
    // An out-of-order Content-Range gets 416 with the current Range.
    const s2 = await v2('push/blobs/uploads/', { method: 'POST' });
    const loc = new URL(String(s2.headers.location), srv.url).href;
    await http(loc, { method: 'PATCH', headers: { ...auth, 'content-range': '0-3' }, body: 'abcd' });
    const bad = await http(loc, { method: 'PATCH', headers: { ...auth, 'content-range': '10-13' }, body: 'efgh' });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers.range, '0-3');
    const status = await http(loc, { headers: auth });
    assert.equal(status.status, 204);
    assert.equal(status.headers.range, '0-3');
    assert.equal((await http(loc, { method: 'DELETE', headers: auth })).status, 204);
    assert.equal((await http(loc, { method: 'PATCH', headers: auth, body: 'x' })).status, 404);
    // Zero-byte blobs can go through the registry API (not through the layer API).
    const empty = blob('');
    assert.equal((await v2(`push/blobs/uploads/?digest=${empty.digest}`, { method: 'POST', body: '' })).status, 201);

    const check = await ecr.send(
      new BatchCheckLayerAvailabilityCommand({
        repositoryName: 'push',
        layerDigests: [mono.digest, one.digest, big.digest, small.digest],
      }),
    );
    assert.deepEqual(
      check.layers?.map((l) => l.layerDigest),
      [mono.digest, one.digest, big.digest],
    );
    assert.equal(srv.openUploads, 0);
  });

  test('PUT manifest applies PutImage rules: blobs and children must exist, immutable tags stay, digest refs verified', async () => {
    await createRepo(ecr, 'rules-v2', 'IMMUTABLE');
    const amd = smallImage('r2', 'amd64');
    const arm = smallImage('r2', 'arm64');
    const putManifest = (ref: string, m: Blob, type = OCI_MANIFEST) =>
      v2(`rules-v2/manifests/${ref}`, { method: 'PUT', headers: { 'content-type': type }, body: m.bytes });
    let r = await putManifest('v1', amd.manifest);
    assert.equal(r.status, 400);
    assert.equal(ociCode(r.body), 'MANIFEST_BLOB_UNKNOWN');
    for (const b of [...amd.layers, amd.config, ...arm.layers, arm.config]) {
      await v2(`rules-v2/blobs/uploads/?digest=${b.digest}`, { method: 'POST', body: b.bytes });
    }
    r = await putManifest('v1', amd.manifest);
    assert.equal(r.status, 201);
    assert.equal(r.headers['docker-content-digest'], amd.manifest.digest);
    assert.equal(r.headers.location, `/v2/rules-v2/manifests/${amd.manifest.digest}`);
    // Re-putting the same manifest under the same tag is a success on this API.
    assert.equal((await putManifest('v1', amd.manifest)).status, 201);
    r = await putManifest('v1', arm.manifest);
    assert.equal(r.status, 400);
    assert.equal(ociCode(r.body), 'TAG_INVALID');
    r = await putManifest(digestOf('not this'), arm.manifest);
    assert.equal(ociCode(r.body), 'DIGEST_INVALID');
    const index = indexOf([
      { manifest: amd.manifest, architecture: 'amd64' },
      { manifest: arm.manifest, architecture: 'arm64' },
    ]);
    r = await putManifest('multi', index, OCI_INDEX);
    assert.equal(ociCode(r.body), 'MANIFEST_BLOB_UNKNOWN');
    assert.equal((await putManifest(arm.manifest.digest, arm.manifest)).status, 201);
    r = await putManifest('multi', index, OCI_INDEX);
    assert.equal(r.status, 201);
    // A manifest without mediaType takes the Content-Type.
    const bare = manifestOf(amd.config, amd.layers, { annotations: { bare: 'yes' } }, false);
    assert.equal((await putManifest('bare', bare)).status, 201);
    assert.equal((await v2('rules-v2/manifests/bare')).headers['content-type'], OCI_MANIFEST);
    // The ECR API sees what /v2/ stored.
    const got = await ecr.send(
      new BatchGetImageCommand({ repositoryName: 'rules-v2', imageIds: [{ imageTag: 'multi' }] }),
    );
    assert.equal(got.images?.[0]?.imageManifest, index.bytes.toString());
    const details = await ecr.send(new DescribeImagesCommand({ repositoryName: 'rules-v2' }));
    assert.equal(details.imageDetails?.length, 4);
    const tags = JSON.parse((await v2('rules-v2/tags/list?n=2')).body.toString()) as { tags: string[] };
    assert.deepEqual(tags.tags, ['bare', 'multi']);
    const next = await v2('rules-v2/tags/list?n=2&last=multi');
    assert.deepEqual((JSON.parse(next.body.toString()) as { tags: string[] }).tags, ['v1']);
  });

  test('missingRepository "close": a push to a missing repository gets its connection closed, as ECR does', async () => {
    const closing = await startTestServer({ missingRepository: 'close' });
    try {
      const c = await registryCreds(closing.ecr);
      await assert.rejects(
        http(`${closing.url}/v2/absent/blobs/uploads/`, { method: 'POST', headers: { authorization: c.header } }),
      );
      const pull = await http(`${closing.url}/v2/absent/manifests/latest`, { headers: { authorization: c.header } });
      assert.equal(pull.status, 404);
      assert.equal(ociCode(pull.body), 'NAME_UNKNOWN');
    } finally {
      await closing.stop();
    }
    const push = await v2('absent/blobs/uploads/', { method: 'POST' });
    assert.equal(push.status, 404);
    assert.equal(ociCode(push.body), 'NAME_UNKNOWN');
  });

  test('referrers: manifests with a subject are listed, filtered by artifactType', async () => {
    await createRepo(ecr, 'refs');
    const img = smallImage('refs');
    await pushImage(ecr, 'refs', img, 'v1');
    const sbom = blob('{"sbom":true}');
    const empty = blob('{}');
    for (const b of [sbom, empty])
      await v2(`refs/blobs/uploads/?digest=${b.digest}`, { method: 'POST', body: b.bytes });
    const referrer = blob(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType: 'application/spdx+json',
        config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty.digest, size: empty.size },
        layers: [{ mediaType: 'application/spdx+json', digest: sbom.digest, size: sbom.size }],
        subject: { mediaType: OCI_MANIFEST, digest: img.manifest.digest, size: img.manifest.size },
      }),
    );
    const put = await v2(`refs/manifests/${referrer.digest}`, {
      method: 'PUT',
      headers: { 'content-type': OCI_MANIFEST },
      body: referrer.bytes,
    });
    assert.equal(put.status, 201);
    assert.equal(put.headers['oci-subject'], img.manifest.digest);
    const list = JSON.parse((await v2(`refs/referrers/${img.manifest.digest}`)).body.toString()) as {
      manifests: { digest: string; artifactType: string }[];
    };
    assert.deepEqual(
      list.manifests.map((m) => [m.digest, m.artifactType]),
      [[referrer.digest, 'application/spdx+json']],
    );
    const filtered = await v2(`refs/referrers/${img.manifest.digest}?artifactType=application/other`);
    assert.equal(filtered.headers['oci-filters-applied'], 'artifactType');
    assert.deepEqual((JSON.parse(filtered.body.toString()) as { manifests: unknown[] }).manifests, []);
  });

  test('cross-repository mount: refused by default (a new session), honoured with blobMounting', async () => {
    await createRepo(ecr, 'mount-src');
    await createRepo(ecr, 'mount-dst');
    const b = blob('mountable');
    await v2(`mount-src/blobs/uploads/?digest=${b.digest}`, { method: 'POST', body: b.bytes });
    const r = await v2(`mount-dst/blobs/uploads/?mount=${b.digest}&from=mount-src`, { method: 'POST' });
    assert.equal(r.status, 202);
    await http(new URL(String(r.headers.location), srv.url).href, { method: 'DELETE', headers: auth });
    const m = await startTestServer({ blobMounting: true });
    try {
      await createRepo(m.ecr, 'mount-src');
      await createRepo(m.ecr, 'mount-dst');
      const c = await registryCreds(m.ecr);
      const h = { authorization: c.header };
      await http(`${m.url}/v2/mount-src/blobs/uploads/?digest=${b.digest}`, {
        method: 'POST',
        headers: h,
        body: b.bytes,
      });
      const ok = await http(`${m.url}/v2/mount-dst/blobs/uploads/?mount=${b.digest}&from=mount-src`, {
        method: 'POST',
        headers: h,
      });
      assert.equal(ok.status, 201);
      assert.equal(
        (await http(`${m.url}/v2/mount-dst/blobs/${b.digest}`, { headers: h })).body.toString(),
        'mountable',
      );
      // Not mountable (absent from the source): a normal upload session.
      const miss = await http(`${m.url}/v2/mount-dst/blobs/uploads/?mount=${digestOf('absent')}&from=mount-src`, {
        method: 'POST',
        headers: h,
      });
      assert.equal(miss.status, 202);
    } finally {
      await m.stop();
    }
  });
});

describe(
  'lading serve: skopeo reads and writes it',
  { skip: skopeoAvailable ? false : 'skopeo is not installed' },
  () => {
    let srv: TestServer;
    let creds: { username: string; password: string };
    let work: string;
    before(async () => {
      srv = await startTestServer();
      creds = await registryCreds(srv.ecr);
      work = await tempDir('lading-serve-skopeo-');
    });
    after(async () => {
      await srv.stop();
      await rm(work, { recursive: true, force: true });
    });

    test('an image and an index pushed with the ECR API: skopeo inspects oci:DATA/repo:tag and docker://, copies --all', async () => {
      await createRepo(srv.ecr, 'sk/app');
      const amd = smallImage('sk', 'amd64');
      const arm = smallImage('sk', 'arm64');
      await pushImage(srv.ecr, 'sk/app', amd, 'amd');
      await pushImage(srv.ecr, 'sk/app', arm);
      const index = indexOf([
        { manifest: amd.manifest, architecture: 'amd64' },
        { manifest: arm.manifest, architecture: 'arm64' },
      ]);
      await srv.ecr.send(
        new PutImageCommand({ repositoryName: 'sk/app', imageManifest: index.bytes.toString(), imageTag: 'multi' }),
      );

      const local = JSON.parse(
        (await run('skopeo', ['inspect', `oci:${join(srv.dataDir, 'sk', 'app')}:amd`])).stdout,
      ) as { Digest: string; Architecture: string };
      assert.equal(local.Digest, amd.manifest.digest);
      assert.equal(local.Architecture, 'amd64');
      const rawLocal = (await run('skopeo', ['inspect', '--raw', `oci:${join(srv.dataDir, 'sk', 'app')}:multi`]))
        .stdout;
      assert.equal(digestOf(rawLocal), index.digest);

      const credsArg = `${creds.username}:${creds.password}`;
      const remote = JSON.parse(
        (await run('skopeo', ['inspect', '--tls-verify=false', '--creds', credsArg, `docker://${srv.host}/sk/app:amd`]))
          .stdout,
      ) as { Digest: string; Layers: string[] };
      assert.equal(remote.Digest, amd.manifest.digest);
      assert.deepEqual(
        remote.Layers,
        amd.layers.map((l) => l.digest),
      );
      const raw = (
        await run('skopeo', [
          'inspect',
          '--tls-verify=false',
          '--raw',
          '--creds',
          credsArg,
          `docker://${srv.host}/sk/app@${index.digest}`,
        ])
      ).stdout;
      assert.equal(digestOf(raw), index.digest);

      const out = join(work, 'copy');
      await run('skopeo', [
        'copy',
        '--all',
        '--preserve-digests',
        '--src-tls-verify=false',
        '--src-creds',
        credsArg,
        `docker://${srv.host}/sk/app:multi`,
        `oci:${out}:copied`,
      ]);
      const copiedIndex = JSON.parse(await readFile(join(out, 'index.json'), 'utf8')) as {
        manifests: { digest: string }[];
      };
      assert.equal(copiedIndex.manifests[0]!.digest, index.digest);
      for (const b of [...amd.layers, ...arm.layers, amd.config, arm.config])
        assert.deepEqual(await readFile(join(out, 'blobs', 'sha256', b.digest.slice(7))), b.bytes);
    });

    test('skopeo pushes through /v2/ (oci: -> docker://); the ECR API and a pull see the same image', async () => {
      await createRepo(srv.ecr, 'sk/pushed');
      // An OCI layout to push, made by hand.
      const src = join(work, 'src');
      const img = smallImage('pushed');
      await mkdir(join(src, 'blobs', 'sha256'), { recursive: true });
      for (const b of [...img.layers, img.config, img.manifest])
        await writeFile(join(src, 'blobs', 'sha256', b.digest.slice(7)), b.bytes);
      await writeFile(join(src, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
      await writeFile(
        join(src, 'index.json'),
        JSON.stringify({
          schemaVersion: 2,
          manifests: [
            {
              mediaType: OCI_MANIFEST,
              digest: img.manifest.digest,
              size: img.manifest.size,
              annotations: { 'org.opencontainers.image.ref.name': 'v1' },
            },
          ],
        }),
      );
      const credsArg = `${creds.username}:${creds.password}`;
      srv.resetCalls();
      await run('skopeo', [
        'copy',
        '--preserve-digests',
        '--dest-tls-verify=false',
        '--dest-creds',
        credsArg,
        `oci:${src}:v1`,
        `docker://${srv.host}/sk/pushed:v1`,
      ]);
      assert.ok((srv.calls['PUT manifest'] ?? 0) >= 1);
      assert.ok((srv.calls['PUT upload'] ?? 0) >= 3, JSON.stringify(srv.calls));
      const got = await srv.ecr.send(
        new BatchGetImageCommand({ repositoryName: 'sk/pushed', imageIds: [{ imageTag: 'v1' }] }),
      );
      assert.equal(got.images?.[0]?.imageId?.imageDigest, img.manifest.digest);
      const local = JSON.parse(
        (await run('skopeo', ['inspect', `oci:${join(srv.dataDir, 'sk', 'pushed')}:v1`])).stdout,
      ) as { Digest: string };
      assert.equal(local.Digest, img.manifest.digest);
      // Pushing the same again uploads nothing: skopeo finds every blob with HEAD.
      srv.resetCalls();
      await run('skopeo', [
        'copy',
        '--preserve-digests',
        '--dest-tls-verify=false',
        '--dest-creds',
        credsArg,
        `oci:${src}:v1`,
        `docker://${srv.host}/sk/pushed:v1`,
      ]);
      assert.equal(srv.calls['PUT upload'] ?? 0, 0);
      assert.equal(srv.calls['PATCH upload'] ?? 0, 0);
    });
  },
);
