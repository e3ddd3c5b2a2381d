import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { LadingError } from '../../src/errors';
import { digestOf, MediaType, type Digest } from '../../src/image';
import { RegistryClient, RegistryError } from '../../src/registry';
import { registryAvailable, startRegistry, type RegistryServer } from '../helpers/registry-server';
import {
  blob,
  configBlob,
  dockerManifest,
  ociIndex,
  ociManifest,
  randomBlob,
  readAll,
  skopeoInspectRaw,
  source,
} from './fixtures';

const skip = registryAvailable ? false : 'docker-registry is not installed (apt-get install docker-registry)';

describe('RegistryClient against a real registry (anonymous)', { skip }, () => {
  let reg: RegistryServer;
  let client: RegistryClient;
  const logs: string[] = [];

  before(async () => {
    reg = await startRegistry();
    client = new RegistryClient({ registry: reg.host, logger: (l) => logs.push(l), retryBaseDelayMs: 10 });
  });
  after(async () => {
    await client?.close();
    await reg?.stop();
  });

  async function fetchBack(repo: string, digest: Digest): Promise<Buffer> {
    const { stream } = await client.getBlob(repo, digest);
    return readAll(stream);
  }

  test('ping speaks plain HTTP to 127.0.0.1 and finds no auth', async () => {
    assert.equal(client.baseUrl.protocol, 'http:');
    assert.deepEqual(await client.ping(), { auth: 'anonymous' });
  });

  test('monolithic upload: one PUT, digest checked, blob fetched back identical', async () => {
    const b = randomBlob(300_000);
    const src = source(b);
    const progress: number[] = [];
    const before = logs.length;
    const r = await client.uploadBlob('mono/app', src, { onProgress: (p) => progress.push(p.bytes) });
    assert.deepEqual(r, { digest: b.digest, size: b.size, mounted: false });
    assert.equal(src.opens, 1);
    assert.equal(progress.at(-1), b.size);
    assert.ok(progress.length > 1, 'progress reported while streaming');
    const methods = logs.slice(before).map((l) => l.split(' ')[0]);
    assert.deepEqual(methods, ['POST', 'PUT']);
    assert.deepEqual(await client.blobExists('mono/app', b.digest), { size: b.size });
    assert.ok((await fetchBack('mono/app', b.digest)).equals(b.bytes));
  });

  test('streamed upload with the digest unknown: PATCH while hashing, then PUT ?digest=', async () => {
    const b = randomBlob(500_000);
    const before = logs.length;
    const r = await client.uploadBlob('stream/app', source(b, {}));
    assert.deepEqual(r, { digest: b.digest, size: b.size, mounted: false });
    assert.deepEqual(
      logs.slice(before).map((l) => l.split(' ')[0]),
      ['POST', 'PATCH', 'PUT'],
    );
    assert.ok((await fetchBack('stream/app', b.digest)).equals(b.bytes));
  });

  test('chunked upload with a small chunk size: Content-Range PATCHes, last one short', async () => {
    const b = randomBlob(100_000);
    const before = logs.length;
    const progress: number[] = [];
    const r = await client.uploadBlob('chunked/app', source(b, { size: true }), {
      chunkSize: 30_000,
      onProgress: (p) => progress.push(p.bytes),
    });
    assert.deepEqual(r, { digest: b.digest, size: b.size, mounted: false });
    assert.deepEqual(
      logs.slice(before).map((l) => l.split(' ')[0]),
      ['POST', 'PATCH', 'PATCH', 'PATCH', 'PATCH', 'PUT'],
    );
    assert.deepEqual(progress, [30_000, 60_000, 90_000, 100_000]);
    assert.ok((await fetchBack('chunked/app', b.digest)).equals(b.bytes));
  });

  test('empty blob, in each mode', async () => {
    const b = blob('');
    assert.equal((await client.uploadBlob('empty/app', source(b))).digest, b.digest);
    assert.equal((await client.uploadBlob('empty/app', source(b, {}))).digest, b.digest);
    assert.equal((await client.uploadBlob('empty/app', source(b, {}), { chunkSize: 10 })).digest, b.digest);
    assert.deepEqual(await client.blobExists('empty/app', b.digest), { size: 0 });
  });

  test('manifests: OCI manifest, Docker manifest and OCI index pushed, fetched back, checked by skopeo', async () => {
    const cfgA = configBlob('amd64');
    const cfgB = configBlob('arm64');
    const layer = randomBlob(1000);
    for (const b of [cfgA, cfgB, layer]) await client.uploadBlob('img/app', source(b));
    const oci = ociManifest(cfgA, [layer]);
    const ociArm = ociManifest(cfgB, [layer]);
    const docker = dockerManifest(cfgA, [layer]);
    assert.equal(await client.putManifest('img/app', 'oci', oci, MediaType.OciManifest), digestOf(oci));
    assert.equal(
      await client.putManifest('img/app', digestOf(ociArm), ociArm, MediaType.OciManifest),
      digestOf(ociArm),
    );
    assert.equal(await client.putManifest('img/app', 'docker', docker, MediaType.DockerManifest), digestOf(docker));
    const index = ociIndex([
      { bytes: oci, architecture: 'amd64' },
      { bytes: ociArm, architecture: 'arm64' },
    ]);
    const indexDigest = await client.putManifest('img/app', 'multi', index, MediaType.OciIndex);

    for (const [ref, bytes, mt] of [
      ['oci', oci, MediaType.OciManifest],
      ['docker', docker, MediaType.DockerManifest],
      ['multi', index, MediaType.OciIndex],
      [digestOf(ociArm), ociArm, MediaType.OciManifest],
    ] as const) {
      const got = await client.getManifest('img/app', ref);
      assert.ok(got.bytes.equals(bytes), ref);
      assert.equal(got.mediaType, mt);
      assert.equal(got.digest, digestOf(bytes));
      assert.deepEqual(await client.headManifest('img/app', ref), {
        digest: digestOf(bytes),
        mediaType: mt,
        size: bytes.length,
      });
    }
    // An independent client reads exactly the bytes we pushed.
    const raw = await skopeoInspectRaw(reg.host, 'img/app', indexDigest);
    assert.equal(digestOf(raw), indexDigest);
    assert.equal(digestOf(await skopeoInspectRaw(reg.host, 'img/app', 'docker')), digestOf(docker));
  });

  test('manifest pushed by a digest that is not its own is refused before sending', async () => {
    const m = ociManifest(configBlob(), []);
    await assert.rejects(client.putManifest('img/app', `sha256:${'0'.repeat(64)}`, m, MediaType.OciManifest), {
      code: 'DIGEST_MISMATCH',
    });
  });

  test('manifest referencing missing blobs -> BLOB_MISSING with the protocol code', async () => {
    const m = ociManifest(randomBlob(10), [randomBlob(10)]);
    await assert.rejects(client.putManifest('img/app', 'broken', m, MediaType.OciManifest), (e: unknown) => {
      assert.ok(e instanceof RegistryError);
      assert.equal(e.code, 'BLOB_MISSING');
      assert.deepEqual(e.registryCodes.includes('MANIFEST_BLOB_UNKNOWN'), true);
      assert.match(e.message, /push manifest broken 127\.0\.0\.1:\d+\/img\/app failed: HTTP 400 MANIFEST_BLOB_UNKNOWN/);
      assert.ok(!e.message.includes('\n'));
      return true;
    });
  });

  test('cross-repository mount: 201 mounts, unknown blob falls back to upload', async () => {
    const b = randomBlob(2000);
    await client.uploadBlob('mount/src', source(b));
    assert.equal(await client.mountBlob('mount/dst', b.digest, 'mount/src'), true);
    assert.deepEqual(await client.blobExists('mount/dst', b.digest), { size: b.size });

    const other = randomBlob(2000);
    assert.equal(await client.mountBlob('mount/dst', other.digest, 'mount/src'), false);
    const src = source(other);
    const r = await client.uploadBlob('mount/dst', src, { mountFrom: 'mount/src' });
    assert.deepEqual(r, { digest: other.digest, size: other.size, mounted: false });
    assert.equal(src.opens, 1);

    const third = randomBlob(100);
    await client.uploadBlob('mount/src', source(third));
    const src3 = source(third);
    assert.deepEqual(await client.uploadBlob('mount/dst2', src3, { mountFrom: 'mount/src' }), {
      digest: third.digest,
      size: third.size,
      mounted: true,
    });
    assert.equal(src3.opens, 0, 'a mounted blob is never read');
  });

  test('a wrong declared digest is refused by the registry -> DIGEST_MISMATCH', async () => {
    const b = randomBlob(1000);
    const wrong = { ...b, digest: digestOf('something else') };
    await assert.rejects(client.uploadBlob('bad/app', source(wrong)), (e: unknown) => {
      assert.ok(e instanceof LadingError);
      assert.equal(e.code, 'DIGEST_MISMATCH');
      assert.match(e.message, /DIGEST_INVALID/);
      return true;
    });
    assert.equal(await client.blobExists('bad/app', wrong.digest), undefined);
  });

  test('a source shorter or longer than declared -> SIZE_MISMATCH, not retried', async () => {
    const b = randomBlob(1000);
    const short = source({ ...b, size: 1001 });
    await assert.rejects(client.uploadBlob('bad/app', short), { code: 'SIZE_MISMATCH' });
    assert.equal(short.opens, 1);
    await assert.rejects(client.uploadBlob('bad/app', source({ ...b, size: 999 })), { code: 'SIZE_MISMATCH' });
    await assert.rejects(
      client.uploadBlob('bad/app', { open: () => Readable.from([b.bytes]), digest: digestOf('x') }),
      { code: 'DIGEST_MISMATCH' },
    );
  });

  test('not found: blob and manifest HEAD give undefined, GET gives NOT_FOUND naming the repository', async () => {
    const d = digestOf('nothing');
    assert.equal(await client.blobExists('none/app', d), undefined);
    assert.equal(await client.headManifest('none/app', 'latest'), undefined);
    await assert.rejects(client.getManifest('none/app', 'latest'), (e: unknown) => {
      assert.ok(e instanceof LadingError && e.code === 'NOT_FOUND');
      assert.match(
        e.message,
        /get manifest latest 127\.0\.0\.1:\d+\/none\/app failed: HTTP 404 (NAME|MANIFEST)_UNKNOWN/,
      );
      return true;
    });
    await assert.rejects(client.getBlob('none/app', d), { code: 'NOT_FOUND' });
  });

  test('bad names are refused locally with BAD_REFERENCE', async () => {
    await assert.rejects(client.blobExists('Bad/Name', digestOf('x')), { code: 'BAD_REFERENCE' });
    await assert.rejects(client.getManifest('ok/name', 'bad tag'), { code: 'BAD_REFERENCE' });
  });

  test('an aborted signal rejects with ABORTED', async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(client.uploadBlob('abort/app', source(randomBlob(10)), { signal: ac.signal }), {
      code: 'ABORTED',
    });
    const ac2 = new AbortController();
    const slow = new Readable({ read() {} });
    const p = client.uploadBlob(
      'abort/app',
      { open: () => slow, size: 10, digest: digestOf('0123456789') },
      { signal: ac2.signal },
    );
    setTimeout(() => ac2.abort(), 100);
    await assert.rejects(p, { code: 'ABORTED' });
    assert.ok(slow.destroyed, 'the source is closed');
  });

  test('getBlob verifies the content as it streams: a corrupted stored blob -> DIGEST_MISMATCH', async () => {
    const b = randomBlob(100);
    await client.uploadBlob('verify/app', source(b));
    const ok = await client.getBlob('verify/app', b.digest);
    assert.equal(ok.size, 100);
    assert.ok((await readAll(ok.stream)).equals(b.bytes));
    const hex = b.digest.slice('sha256:'.length);
    writeFileSync(
      join(reg.storageDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data'),
      randomBlob(100).bytes,
    );
    const bad = await client.getBlob('verify/app', b.digest);
    await assert.rejects(readAll(bad.stream), { code: 'DIGEST_MISMATCH' });
  });
});
