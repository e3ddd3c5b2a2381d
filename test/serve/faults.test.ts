/**
 * Fault injection and call counters of lading serve, seen through the real SDK (whose
 * standard retry strategy recovers from throttling, 5xx and dropped connections) and
 * through raw /v2/ requests.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  BatchCheckLayerAvailabilityCommand,
  CompleteLayerUploadCommand,
  DescribeRepositoriesCommand,
  InitiateLayerUploadCommand,
  PutImageCommand,
  UploadLayerPartCommand,
} from '@aws-sdk/client-ecr';
import { digestOf } from '../../src/image/digest';
import { FaultInjector, parseFaultSpec } from '../../src/serve';
import {
  blob,
  createRepo,
  ecrClient,
  http,
  MiB,
  randomBytesSeeded,
  registryCreds,
  rejectsWith,
  smallImage,
  startTestServer,
  uploadBlob,
  pushImage,
  type TestServer,
} from './helpers';

describe('lading serve: fault injection and counters', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
    await createRepo(srv.ecr, 'faults');
  });
  after(() => srv.stop());

  test('throttle: UploadLayerPart fails once after 1 call; the SDK retries and the upload completes', async () => {
    srv.faults.clear();
    srv.resetCalls();
    srv.faults.add({ op: 'UploadLayerPart', kind: 'throttle', after: 1, times: 1 });
    const b = blob(randomBytesSeeded(11 * MiB, 31));
    const { parts } = await uploadBlob(srv.ecr, 'faults', b);
    assert.equal(parts, 2);
    assert.equal(srv.calls.UploadLayerPart, 3);
    assert.equal(srv.calls.InitiateLayerUpload, 1);
    assert.equal(srv.calls.CompleteLayerUpload, 1);
    assert.deepEqual(srv.faults.fired, [{ op: 'UploadLayerPart', kind: 'throttle', call: 2 }]);
  });

  test('throttle every time: ThrottlingException (400) reaches the caller once retries run out', async () => {
    srv.faults.clear();
    srv.faults.add({ op: 'DescribeRepositories', kind: 'throttle', times: Infinity });
    const client = ecrClient(srv.url, 2);
    try {
      const e = await rejectsWith(client.send(new DescribeRepositoriesCommand({})), 'ThrottlingException');
      assert.equal(e.$metadata?.httpStatusCode, 400);
      assert.equal(srv.faults.fired.length, 2);
    } finally {
      client.destroy();
      srv.faults.clear();
    }
  });

  test('server-error: ServerException (500) without retries; with retries the call succeeds', async () => {
    srv.faults.clear();
    srv.resetCalls();
    srv.faults.add({ op: 'InitiateLayerUpload', kind: 'server-error', times: 1 });
    const once = ecrClient(srv.url, 1);
    try {
      const e = await rejectsWith(
        once.send(new InitiateLayerUploadCommand({ repositoryName: 'faults' })),
        'ServerException',
      );
      assert.equal(e.$metadata?.httpStatusCode, 500);
      assert.equal(e.$fault, 'server');
    } finally {
      once.destroy();
    }
    srv.faults.add({ op: 'InitiateLayerUpload', kind: 'server-error', times: 2 });
    const out = await srv.ecr.send(new InitiateLayerUploadCommand({ repositoryName: 'faults' }));
    assert.ok(out.uploadId);
    assert.equal(srv.calls.InitiateLayerUpload, 4);
  });

  test('drop-connection: the request is never processed; the SDK retries it', async () => {
    srv.faults.clear();
    srv.resetCalls();
    srv.faults.add({ op: 'PutImage', kind: 'drop-connection', times: 1 });
    const img = smallImage('drop');
    await pushImage(srv.ecr, 'faults', img, 'dropped');
    assert.equal(srv.calls.PutImage, 2);
    const once = ecrClient(srv.url, 1);
    try {
      srv.faults.add({ op: 'DescribeRepositories', kind: 'drop-connection' });
      await assert.rejects(once.send(new DescribeRepositoriesCommand({})), (e: Error) =>
        /socket hang up|ECONNRESET|EPIPE/i.test(`${e.message} ${(e as { code?: string }).code ?? ''}`),
      );
    } finally {
      once.destroy();
    }
  });

  test('drop-response: the part is stored but the answer is lost; the retried part is refused with lastValidByteReceived', async () => {
    srv.faults.clear();
    const { uploadId } = await srv.ecr.send(new InitiateLayerUploadCommand({ repositoryName: 'faults' }));
    srv.faults.add({ op: 'UploadLayerPart', kind: 'drop-response' });
    const part = Buffer.from('part that arrives twice');
    const e = await rejectsWith(
      srv.ecr.send(
        new UploadLayerPartCommand({
          repositoryName: 'faults',
          uploadId: uploadId!,
          partFirstByte: 0,
          partLastByte: part.length - 1,
          layerPartBlob: part,
        }),
      ),
      'InvalidLayerPartException',
    );
    assert.equal(e.lastValidByteReceived, part.length - 1);
    // A client that reads lastValidByteReceived can complete the upload.
    const done = await srv.ecr.send(
      new CompleteLayerUploadCommand({ repositoryName: 'faults', uploadId: uploadId!, layerDigests: [digestOf(part)] }),
    );
    assert.equal(done.layerDigest, digestOf(part));
  });

  test('slow: the answer is delayed', async () => {
    srv.faults.clear();
    srv.faults.add({ op: 'DescribeRepositories', kind: 'slow', delayMs: 300 });
    const t0 = Date.now();
    await srv.ecr.send(new DescribeRepositoriesCommand({}));
    // A lower bound only: a delay is guaranteed, a busy machine only adds to it.
    assert.ok(Date.now() - t0 >= 290, `took ${Date.now() - t0} ms`);
    await srv.ecr.send(new DescribeRepositoriesCommand({}));
    assert.deepEqual(
      srv.faults.fired.map((f) => [f.op, f.kind, f.call]),
      [['DescribeRepositories', 'slow', 1]],
      'once: the second call was not delayed',
    );
  });

  test('error: any ECR error shape, e.g. LimitExceededException on PutImage (which the SDK retries as throttling)', async () => {
    srv.faults.clear();
    srv.resetCalls();
    srv.faults.add({
      op: 'PutImage',
      kind: 'error',
      error: 'LimitExceededException',
      message: 'too many images',
      times: Infinity,
    });
    const e = await rejectsWith(
      srv.ecr.send(new PutImageCommand({ repositoryName: 'faults', imageManifest: '{}' })),
      'LimitExceededException',
    );
    assert.equal(e.message, 'too many images');
    assert.equal(srv.calls.PutImage, 3);
    srv.faults.clear();
  });

  test('registry API faults by method and route: 429 on PATCH upload, 500 on GET /v2/, dropped HEAD blob', async () => {
    srv.faults.clear();
    srv.resetCalls();
    const c = await registryCreds(srv.ecr);
    const h = { authorization: c.header };
    srv.faults.add({ op: 'GET /v2/', kind: 'server-error' });
    srv.faults.add({ op: 'PATCH upload', kind: 'throttle' });
    srv.faults.add({ op: 'HEAD blob', kind: 'drop-connection' });
    assert.equal((await http(`${srv.url}/v2/`, { headers: h })).status, 500);
    assert.equal((await http(`${srv.url}/v2/`, { headers: h })).status, 200);
    const start = await http(`${srv.url}/v2/faults/blobs/uploads/`, { method: 'POST', headers: h });
    const loc = new URL(String(start.headers.location), srv.url).href;
    const throttled = await http(loc, { method: 'PATCH', headers: h, body: 'abc' });
    assert.equal(throttled.status, 429);
    assert.equal(throttled.headers['retry-after'], '1');
    assert.equal(
      (JSON.parse(throttled.body.toString()) as { errors: { code: string }[] }).errors[0]!.code,
      'TOOMANYREQUESTS',
    );
    assert.equal((await http(loc, { method: 'PATCH', headers: h, body: 'abc' })).status, 202);
    await assert.rejects(http(`${srv.url}/v2/faults/blobs/${blob('x').digest}`, { method: 'HEAD', headers: h }));
    assert.deepEqual(
      {
        base: srv.calls['GET /v2/'],
        post: srv.calls['POST upload'],
        patch: srv.calls['PATCH upload'],
        head: srv.calls['HEAD blob'],
      },
      { base: 2, post: 1, patch: 2, head: 1 },
    );
    await http(loc, { method: 'DELETE', headers: h });
  });

  test('counters: a re-push that checks first makes no upload calls', async () => {
    srv.faults.clear();
    await createRepo(srv.ecr, 'repush');
    const img = smallImage('repush');
    const push = async () => {
      const check = await srv.ecr.send(
        new BatchCheckLayerAvailabilityCommand({
          repositoryName: 'repush',
          layerDigests: [...img.layers, img.config].map((b) => b.digest),
        }),
      );
      const have = new Set(check.layers?.map((l) => l.layerDigest));
      for (const b of [...img.layers, img.config]) if (!have.has(b.digest)) await uploadBlob(srv.ecr, 'repush', b);
      await srv.ecr
        .send(
          new PutImageCommand({
            repositoryName: 'repush',
            imageManifest: img.manifest.bytes.toString(),
            imageTag: 'v1',
          }),
        )
        .catch((e: Error) => {
          if (e.name !== 'ImageAlreadyExistsException') throw e;
        });
    };
    srv.resetCalls();
    await push();
    assert.equal(srv.calls.InitiateLayerUpload, 3);
    srv.resetCalls();
    await push();
    assert.deepEqual(srv.calls, { BatchCheckLayerAvailability: 1, PutImage: 1 });
  });
});

describe('fault rules', () => {
  test('parseFaultSpec: the CLI form', () => {
    assert.deepEqual(parseFaultSpec('op=UploadLayerPart,kind=throttle,after=2,times=1'), {
      op: 'UploadLayerPart',
      kind: 'throttle',
      after: 2,
      times: 1,
    });
    assert.deepEqual(parseFaultSpec('op=PATCH upload,kind=slow,delay=500,times=inf'), {
      op: 'PATCH upload',
      kind: 'slow',
      delayMs: 500,
      times: Infinity,
    });
    assert.deepEqual(parseFaultSpec('op=*,kind=error,error=DENIED,status=403'), {
      op: '*',
      kind: 'error',
      error: 'DENIED',
      status: 403,
    });
    for (const bad of [
      'UploadLayerPart',
      'op=X,kind=explode',
      'op=X,kind=throttle,after=-1',
      'kind=throttle',
      'op=X,kind=error',
      'op=X,kind=slow,colour=red',
    ]) {
      assert.throws(() => parseFaultSpec(bad), { code: 'USAGE' }, bad);
    }
  });

  test('FaultInjector: after, times, wildcard, first matching rule wins, every rule counts', () => {
    const f = new FaultInjector([
      { op: 'A', kind: 'throttle', after: 1, times: 2 },
      { op: '*', kind: 'server-error', after: 3 },
    ]);
    const seen = ['A', 'A', 'B', 'A', 'A', 'B'].map((op) => f.check(op)?.kind ?? '-');
    assert.deepEqual(seen, ['-', 'throttle', '-', 'throttle', 'server-error', '-']);
  });
});
