/** The hand-built UploadLayerPart body is exactly the JSON the SDK would send. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { partRequestBody } from '../../src/ecr/destination';

const fields = { registryId: '000000000000', repositoryName: 'team/app', uploadId: 'a1b2c3d4-0000-4000-8000-000000000000', partFirstByte: 10485760, partLastByte: 20971519 };

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
    fc.property(fc.uint8Array({ maxLength: 4096 }), fc.stringMatching(/^[a-z0-9]+(\/[a-z0-9]+)*$/), (bytes, repositoryName) => {
      const part = Buffer.from(bytes);
      const doc = JSON.parse(partRequestBody({ ...fields, repositoryName }, part).toString('utf8')) as { layerPartBlob: string; repositoryName: string };
      assert.equal(doc.repositoryName, repositoryName);
      assert.ok(Buffer.from(doc.layerPartBlob, 'base64').equals(part));
    }),
  );
});

test('lading serve decodes a part straight from the raw body and refuses what is not strict base64', async () => {
  const { startTestServer, http, createRepo } = await import('../serve/helpers.js');
  const srv = await startTestServer();
  try {
    await createRepo(srv.ecr, 'team/app');
    const { InitiateLayerUploadCommand } = await import('@aws-sdk/client-ecr');
    const { uploadId } = await srv.ecr.send(new InitiateLayerUploadCommand({ repositoryName: 'team/app' }));
    const send = (blob: string, first: number, last: number) =>
      http(srv.url, {
        method: 'POST',
        headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'AmazonEC2ContainerRegistry_V20150921.UploadLayerPart', authorization: 'AWS4-HMAC-SHA256 Credential=AK/20261129/us-east-1/ecr/aws4_request' },
        body: `{"repositoryName":"team/app","uploadId":"${uploadId!}","partFirstByte":${first},"partLastByte":${last},"layerPartBlob":"${blob}"}`,
      });
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
