/** The hand-built UploadLayerPart body is exactly the JSON the SDK would send. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { encodeBase64Into, PartBody, partBodyCapacity, PartBuffers, partRequestBody } from '../../src/ecr/part-body';

const fields = {
  registryId: '000000000000',
  repositoryName: 'team/app',
  uploadId: 'a1b2c3d4-0000-4000-8000-000000000000',
  partFirstByte: 10485760,
  partLastByte: 20971519,
};

test('UploadLayerPart body: the fields plus the part in base64, for edge lengths', () => {
  for (const n of [0, 1, 2, 3, 4, 3 * 1024 * 1024 - 1, 3 * 1024 * 1024, 3 * 1024 * 1024 + 1, 10 * 1024 * 1024]) {
    const part = randomBytes(n);
    const body = partRequestBody(fields, part);
    const doc = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    assert.deepEqual(doc, { ...fields, layerPartBlob: part.toString('base64') }, `length ${n}`);
    assert.equal(body.length, Buffer.byteLength(JSON.stringify({ ...fields, layerPartBlob: part.toString('base64') })));
  }
});

test('UploadLayerPart body: property over arbitrary parts and names', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 4096 }),
      fc.stringMatching(/^[a-z0-9]+(\/[a-z0-9]+)*$/),
      (bytes, repositoryName) => {
        const part = Buffer.from(bytes);
        const doc = JSON.parse(partRequestBody({ ...fields, repositoryName }, part).toString('utf8')) as {
          layerPartBlob: string;
          repositoryName: string;
        };
        assert.equal(doc.repositoryName, repositoryName);
        assert.ok(Buffer.from(doc.layerPartBlob, 'base64').equals(part));
      },
    ),
  );
});

test("base64 encoder: Node's output, at even and odd offsets", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 3000 }), fc.nat({ max: 9 }), (bytes, at) => {
      const src = Buffer.from(bytes).subarray(0, bytes.length - (bytes.length % 3));
      const dst = Buffer.alloc(at + (src.length / 3) * 4 + 3, 0x21);
      const end = encodeBase64Into(src, dst, at);
      assert.equal(end, at + (src.length / 3) * 4);
      assert.equal(dst.subarray(at, end).toString('latin1'), src.toString('base64'));
      assert.ok(
        dst.subarray(0, at).every((c) => c === 0x21) && dst.subarray(end).every((c) => c === 0x21),
        'nothing written outside',
      );
    }),
  );
});

test('UploadLayerPart body: a part appended in arbitrary pieces encodes as one', () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 20000 }),
      fc.array(fc.nat({ max: 7000 }), { maxLength: 12 }),
      (bytes, cuts) => {
        const part = Buffer.from(bytes);
        const body = new PartBody(Buffer.alloc(partBodyCapacity(part.length)));
        let off = 0;
        for (const c of cuts) {
          const n = Math.min(c, part.length - off);
          body.append(part.subarray(off, off + n));
          off += n;
        }
        body.append(part.subarray(off));
        assert.equal(body.bytes, part.length);
        const out = body.finish(fields);
        assert.ok(out.equals(partRequestBody(fields, part)));
        assert.ok(
          Buffer.from((JSON.parse(out.toString('utf8')) as { layerPartBlob: string }).layerPartBlob, 'base64').equals(
            part,
          ),
        );
      },
    ),
  );
});

test('UploadLayerPart body: a reused buffer builds the next part from scratch', () => {
  const buf = Buffer.alloc(partBodyCapacity(3000));
  for (const n of [3000, 17, 2999]) {
    const part = randomBytes(n);
    const b = new PartBody(buf);
    b.append(part);
    assert.ok(b.finish(fields).equals(partRequestBody(fields, part)), `length ${n}`);
  }
});

test('part buffers: at most max at once, a waiter gets the next one released, an abort ends the wait', async () => {
  const pool = new PartBuffers(16, 2);
  const a = await pool.acquire();
  const b = await pool.acquire();
  assert.notEqual(a, b);
  let got: Buffer | undefined;
  const waiting = pool.acquire().then((x) => (got = x));
  await new Promise((r) => setImmediate(r));
  assert.equal(got, undefined, 'waits while both are out');
  pool.release(a);
  await waiting;
  assert.equal(got, a);
  const ac = new AbortController();
  const aborted = pool.acquire(ac.signal);
  ac.abort(new Error('stop'));
  await assert.rejects(aborted, /stop/);
  pool.release(b);
  assert.equal(await pool.acquire(), b, 'the aborted waiter took nothing');
});

test('lading serve decodes a part straight from the raw body and refuses what is not strict base64', async () => {
  const { startTestServer, http, createRepo, sdkSignedRequest } = await import('../serve/helpers.js');
  const srv = await startTestServer();
  try {
    await createRepo(srv.ecr, 'team/app');
    const { InitiateLayerUploadCommand } = await import('@aws-sdk/client-ecr');
    const { uploadId } = await srv.ecr.send(new InitiateLayerUploadCommand({ repositoryName: 'team/app' }));
    // Bodies the SDK would never write, signed by it (the server checks signatures first).
    const send = async (blob: string, first: number, last: number) => {
      const signed = await sdkSignedRequest(
        srv.url,
        'UploadLayerPart',
        `{"repositoryName":"team/app","uploadId":"${uploadId!}","partFirstByte":${first},"partLastByte":${last},"layerPartBlob":"${blob}"}`,
      );
      return http(srv.url, { method: 'POST', headers: signed.headers, body: signed.body });
    };
    for (const bad of ['ab-d', 'ab_d', 'abc', 'a=bc', 'ab d']) {
      const r = await send(bad, 0, 2);
      assert.equal(r.status, 400, bad);
      assert.match(r.body.toString(), /SerializationException/, bad);
    }
    const ok = await send(Buffer.from('hey').toString('base64'), 0, 2);
    assert.equal(ok.status, 200, ok.body.toString());
    assert.equal((JSON.parse(ok.body.toString()) as { lastByteReceived: number }).lastByteReceived, 2);
  } finally {
    await srv.stop();
  }
});
