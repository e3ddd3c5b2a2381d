/**
 * lading serve verifies AWS Signature Version 4 as ECR does.
 *
 * First the construction itself, against values AWS publishes (so the expectations come from
 * the documentation, not from the code): the IAM `ListUsers` example of the SigV4 signing
 * documentation (canonical request, its hash, string to sign, signing key, signature) and cases
 * of AWS's SigV4 test suite (get-vanilla, get-vanilla-query-order-key-case, post-vanilla,
 * get-header-value-trim; credentials AKIDEXAMPLE, 20150830T123600Z, us-east-1, service
 * `service`). Then the server, with the real @aws-sdk/client-ecr signing: the right key works,
 * a wrong secret, an unknown key, an unsigned request and a signed request changed afterwards
 * (body, header, query) are refused with ECR's 403 errors, a client clock 20 minutes off is
 * refused and the SDK corrects it from the answer's Date header, and `verifySignatures: false`
 * accepts anything.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  CreateRepositoryCommand,
  DescribeRepositoriesCommand,
  ECRClient,
  GetAuthorizationTokenCommand,
} from '@aws-sdk/client-ecr';
import {
  canonicalRequest,
  sha256Hex,
  signature,
  signingKey,
  stringToSign,
  verifySignature,
  type ReceivedRequest,
} from '../../src/serve/sigv4';
import {
  createRepo,
  ECR_TARGET,
  ecrClient,
  http,
  pushImage,
  rejectsWith,
  sdkSignedRequest,
  SERVE_CREDENTIALS,
  smallImage,
  startTestServer,
  type TestServer,
} from './helpers';

const EXAMPLE_SECRET = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
const EMPTY = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const AT = Date.UTC(2015, 7, 30, 12, 36, 0);
const secretOf = (id: string): string | undefined => (id === 'AKIDEXAMPLE' ? EXAMPLE_SECRET : undefined);

describe('SigV4 construction, against the values AWS publishes', () => {
  test("IAM ListUsers (the signing documentation's example): canonical request, string to sign, signing key, signature", () => {
    const rawHeaders = [
      'Host',
      'iam.amazonaws.com',
      'Content-Type',
      'application/x-www-form-urlencoded; charset=utf-8',
      'X-Amz-Date',
      '20150830T123600Z',
    ];
    const canonical = canonicalRequest({
      method: 'GET',
      path: '/',
      query: 'Action=ListUsers&Version=2010-05-08',
      rawHeaders,
      signedHeaders: ['content-type', 'host', 'x-amz-date'],
      payloadHash: EMPTY,
    });
    assert.equal(
      canonical,
      [
        'GET',
        '/',
        'Action=ListUsers&Version=2010-05-08',
        'content-type:application/x-www-form-urlencoded; charset=utf-8',
        'host:iam.amazonaws.com',
        'x-amz-date:20150830T123600Z',
        '',
        'content-type;host;x-amz-date',
        EMPTY,
      ].join('\n'),
    );
    assert.equal(sha256Hex(canonical), 'f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59');
    const toSign = stringToSign('20150830T123600Z', '20150830/us-east-1/iam/aws4_request', canonical);
    assert.equal(
      toSign,
      'AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\nf536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59',
    );
    const key = signingKey(EXAMPLE_SECRET, '20150830', 'us-east-1', 'iam');
    assert.equal(key.toString('hex'), 'c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9');
    assert.equal(signature(key, toSign), '5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7');

    // The same request as the server receives it, with the documented Authorization header.
    const received: ReceivedRequest = {
      method: 'GET',
      target: '/?Action=ListUsers&Version=2010-05-08',
      rawHeaders: [
        ...rawHeaders,
        'Authorization',
        'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7',
      ],
      body: Buffer.alloc(0),
    };
    assert.deepEqual(verifySignature(received, 'iam', secretOf, AT), {
      ok: true,
      accessKeyId: 'AKIDEXAMPLE',
      region: 'us-east-1',
    });
  });

  /** A test-suite request as received, signed with the suite's published signature. */
  function suiteRequest(method: string, target: string, extra: string[], signed: string, sig: string): ReceivedRequest {
    return {
      method,
      target,
      rawHeaders: [
        'Host',
        'example.amazonaws.com',
        ...extra,
        'X-Amz-Date',
        '20150830T123600Z',
        'Authorization',
        `AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=${signed}, Signature=${sig}`,
      ],
      body: Buffer.alloc(0),
    };
  }

  test('test suite get-vanilla: canonical request, string to sign and signature', () => {
    const req = suiteRequest(
      'GET',
      '/',
      [],
      'host;x-amz-date',
      '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31',
    );
    const canonical = canonicalRequest({
      method: 'GET',
      path: '/',
      query: '',
      rawHeaders: req.rawHeaders,
      signedHeaders: ['host', 'x-amz-date'],
      payloadHash: EMPTY,
    });
    assert.equal(
      canonical,
      `GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n${EMPTY}`,
    );
    const toSign = stringToSign('20150830T123600Z', '20150830/us-east-1/service/aws4_request', canonical);
    assert.equal(
      toSign,
      'AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63',
    );
    assert.equal(
      signature(signingKey(EXAMPLE_SECRET, '20150830', 'us-east-1', 'service'), toSign),
      '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31',
    );
    assert.equal(verifySignature(req, 'service', secretOf, AT).ok, true);
  });

  test('test suite get-vanilla-query-order-key-case, post-vanilla, get-header-value-trim: verified', () => {
    const cases: [string, ReceivedRequest][] = [
      [
        'get-vanilla-query-order-key-case',
        suiteRequest(
          'GET',
          '/?Param2=value2&Param1=value1',
          [],
          'host;x-amz-date',
          'b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500',
        ),
      ],
      [
        'post-vanilla',
        suiteRequest(
          'POST',
          '/',
          [],
          'host;x-amz-date',
          '5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b',
        ),
      ],
      [
        'get-header-value-trim',
        suiteRequest(
          'GET',
          '/',
          ['My-Header1', ' value1', 'My-Header2', ' "a   b   c"'],
          'host;my-header1;my-header2;x-amz-date',
          'acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736',
        ),
      ],
    ];
    for (const [name, req] of cases) assert.deepEqual(verifySignature(req, 'service', secretOf, AT).ok, true, name);
    // get-header-value-trim's published canonical headers: trimmed, inner spaces collapsed.
    const trim = cases[2]![1];
    assert.equal(
      sha256Hex(
        canonicalRequest({
          method: 'GET',
          path: '/',
          query: '',
          rawHeaders: trim.rawHeaders,
          signedHeaders: ['host', 'my-header1', 'my-header2', 'x-amz-date'],
          payloadHash: EMPTY,
        }),
      ),
      'a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7',
    );
  });

  test('refusals: another secret, an unknown key, another service, a changed request, a date off by more than 15 minutes', () => {
    const vanilla = (): ReceivedRequest =>
      suiteRequest(
        'GET',
        '/',
        [],
        'host;x-amz-date',
        '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31',
      );
    const refused = (r: ReceivedRequest, lookup = secretOf, now = AT, service = 'service') => {
      const v = verifySignature(r, service, lookup, now);
      assert.equal(v.ok, false);
      return v as { ok: false; type: string; message: string };
    };
    assert.equal(refused(vanilla(), () => 'another secret').type, 'InvalidSignatureException');
    assert.equal(refused(vanilla(), () => undefined).type, 'UnrecognizedClientException');
    assert.match(refused(vanilla(), secretOf, AT, 'ecr').message, /scoped to correct service: 'ecr'/);
    const query = vanilla();
    query.target = '/?x=1';
    assert.equal(refused(query).type, 'InvalidSignatureException');
    const path = vanilla();
    path.target = '/other';
    assert.equal(refused(path).type, 'InvalidSignatureException');
    const body = vanilla();
    body.body = Buffer.from('x');
    assert.equal(refused(body).type, 'InvalidSignatureException');
    const host = vanilla();
    host.rawHeaders = ['Host', 'example.amazonaws.com:8080', ...host.rawHeaders.slice(2)];
    assert.equal(refused(host).type, 'InvalidSignatureException');
    assert.equal(verifySignature(vanilla(), 'service', secretOf, AT + 14 * 60_000).ok, true, '14 minutes later');
    assert.match(refused(vanilla(), secretOf, AT + 16 * 60_000).message, /^Signature expired: 20150830T123600Z/);
    assert.match(refused(vanilla(), secretOf, AT - 16 * 60_000).message, /^Signature not yet current/);
    const unsigned = vanilla();
    unsigned.rawHeaders = unsigned.rawHeaders.slice(0, -2);
    assert.equal(refused(unsigned).type, 'MissingAuthenticationTokenException');
    const basic = vanilla();
    basic.rawHeaders = [...unsigned.rawHeaders, 'Authorization', 'Basic QVdTOng='];
    assert.equal(refused(basic).type, 'IncompleteSignatureException');
  });
});

describe('lading serve verifies the signatures of ECR API requests', () => {
  let srv: TestServer;
  const clients: ECRClient[] = [];
  const client = (credentials: { accessKeyId: string; secretAccessKey: string }, maxAttempts = 1): ECRClient => {
    const c = ecrClient(srv.url, maxAttempts, credentials);
    clients.push(c);
    return c;
  };

  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    for (const c of clients) c.destroy();
    await srv.stop();
  });

  test('the SDK signing with the default credentials: every call works, UploadLayerPart bodies included', async () => {
    await createRepo(srv.ecr, 'signed');
    await pushImage(srv.ecr, 'signed', smallImage('signed'), 'v1');
    const out = await srv.ecr.send(new DescribeRepositoriesCommand({ repositoryNames: ['signed'] }));
    assert.equal(out.repositories?.[0]?.repositoryName, 'signed');
    // Any region: the one of the credential scope shows in ARNs.
    const paris = new ECRClient({
      endpoint: srv.url,
      region: 'eu-west-3',
      credentials: { ...SERVE_CREDENTIALS },
      maxAttempts: 1,
    });
    clients.push(paris);
    const created = await paris.send(new CreateRepositoryCommand({ repositoryName: 'paris' }));
    assert.match(created.repository!.repositoryArn!, /^arn:aws:ecr:eu-west-3:000000000000:repository\/paris$/);
  });

  test('another secret for the same key: 403 InvalidSignatureException', async () => {
    const e = await rejectsWith(
      client({ accessKeyId: SERVE_CREDENTIALS.accessKeyId, secretAccessKey: 'not-the-secret' }).send(
        new DescribeRepositoriesCommand({}),
      ),
      'InvalidSignatureException',
    );
    assert.equal(e.$metadata?.httpStatusCode, 403);
    assert.match(e.message, /signature we calculated does not match/);
  });

  test('an access key the server does not know: 403 UnrecognizedClientException', async () => {
    const e = await rejectsWith(
      client({ accessKeyId: 'AKIDSOMEONEELSE', secretAccessKey: SERVE_CREDENTIALS.secretAccessKey }).send(
        new GetAuthorizationTokenCommand({}),
      ),
      'UnrecognizedClientException',
    );
    assert.equal(e.$metadata?.httpStatusCode, 403);
  });

  test('unsigned, or not SigV4: 403 in ECR JSON error shape', async () => {
    const headers = { 'x-amz-target': `${ECR_TARGET}CreateRepository`, 'content-type': 'application/x-amz-json-1.1' };
    const body = JSON.stringify({ repositoryName: 'unsigned' });
    const unsigned = await http(`${srv.url}/`, { method: 'POST', headers, body });
    assert.equal(unsigned.status, 403);
    assert.equal(unsigned.headers['x-amzn-errortype'], 'MissingAuthenticationTokenException');
    assert.equal(unsigned.headers['content-type'], 'application/x-amz-json-1.1');
    assert.equal(
      (JSON.parse(unsigned.body.toString()) as { __type: string }).__type,
      'MissingAuthenticationTokenException',
    );
    // A header that only looks like a signature (what the tests sent before signatures were checked).
    const amzDate = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '');
    const fake = await http(`${srv.url}/`, {
      method: 'POST',
      headers: {
        ...headers,
        'x-amz-date': amzDate,
        authorization: `AWS4-HMAC-SHA256 Credential=lading/${amzDate.slice(0, 8)}/us-east-1/ecr/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}`,
      },
      body,
    });
    assert.equal(fake.status, 403);
    assert.equal(fake.headers['x-amzn-errortype'], 'InvalidSignatureException');
    const out = await srv.ecr.send(new DescribeRepositoriesCommand({}));
    assert.ok(!out.repositories?.some((r) => r.repositoryName === 'unsigned'), 'nothing was created');
  });

  test('a request signed by the SDK and changed afterwards: 403 InvalidSignatureException; replayed unchanged, it works', async () => {
    const body = JSON.stringify({ repositoryName: 'tamper-a' });
    const signed = await sdkSignedRequest(srv.url, 'CreateRepository', body);
    const send = (over: { headers?: Record<string, string>; body?: Buffer; path?: string } = {}) =>
      http(`${srv.url}${over.path ?? '/'}`, {
        method: 'POST',
        headers: over.headers ?? signed.headers,
        body: over.body ?? signed.body,
      });

    const bodyChanged = Buffer.from(signed.body);
    bodyChanged[bodyChanged.length - 3] = 'b'.charCodeAt(0); // tamper-a -> tamper-b
    const tampered = await send({ body: bodyChanged });
    assert.equal(tampered.status, 403);
    const err = JSON.parse(tampered.body.toString()) as { __type: string; message: string };
    assert.equal(err.__type, 'InvalidSignatureException');
    assert.equal(tampered.headers['x-amzn-errortype'], 'InvalidSignatureException');

    const target = await send({ headers: { ...signed.headers, 'x-amz-target': `${ECR_TARGET}DeleteRepository` } });
    assert.equal(target.headers['x-amzn-errortype'], 'InvalidSignatureException', 'a signed header changed');
    const query = await send({ path: '/?x=1' });
    assert.equal(query.headers['x-amzn-errortype'], 'InvalidSignatureException', 'a query added');

    const out = await srv.ecr.send(new DescribeRepositoriesCommand({}));
    assert.ok(!out.repositories?.some((r) => r.repositoryName?.startsWith('tamper-')), 'nothing was created');
    const intact = await send();
    assert.equal(intact.status, 200, intact.body.toString());
    assert.equal(
      (JSON.parse(intact.body.toString()) as { repository: { repositoryName: string } }).repository.repositoryName,
      'tamper-a',
    );
  });

  test('a client clock 20 minutes behind: refused as on AWS, then the SDK corrects its clock from the Date header', async () => {
    const slow = (maxAttempts: number): ECRClient => {
      const c = new ECRClient({
        endpoint: srv.url,
        region: 'us-east-1',
        credentials: { ...SERVE_CREDENTIALS },
        maxAttempts,
        systemClockOffset: -20 * 60_000,
      });
      clients.push(c);
      return c;
    };
    const e = await rejectsWith(slow(1).send(new DescribeRepositoriesCommand({})), 'InvalidSignatureException');
    assert.match(e.message, /^Signature expired/);
    assert.equal(e.$metadata?.httpStatusCode, 403);
    await slow(2).send(new DescribeRepositoriesCommand({}));
  });
});

describe('lading serve with verifySignatures: false', () => {
  test('accepts unsigned requests and any key', async () => {
    const srv = await startTestServer({ verifySignatures: false });
    const other = ecrClient(srv.url, 1, { accessKeyId: 'anything', secretAccessKey: 'whatever' });
    try {
      assert.equal(srv.verifySignatures, false);
      const unsigned = await http(`${srv.url}/`, {
        method: 'POST',
        headers: { 'x-amz-target': `${ECR_TARGET}CreateRepository`, 'content-type': 'application/x-amz-json-1.1' },
        body: JSON.stringify({ repositoryName: 'adhoc' }),
      });
      assert.equal(unsigned.status, 200, unsigned.body.toString());
      const out = await other.send(new DescribeRepositoriesCommand({}));
      assert.deepEqual(
        out.repositories?.map((r) => r.repositoryName),
        ['adhoc'],
      );
    } finally {
      other.destroy();
      await srv.stop();
    }
  });
});

describe('lading serve with its own credentials', () => {
  test('a list of key pairs, or a function naming the secret of a key', async () => {
    const mine = { accessKeyId: 'AKIDMINE', secretAccessKey: 'my-secret' };
    const listed = await startTestServer({ credentials: [SERVE_CREDENTIALS, mine] });
    const looked = await startTestServer({ credentials: (id) => (id.startsWith('ASIA') ? `secret-${id}` : undefined) });
    const clientsOf: ECRClient[] = [];
    const c = (url: string, creds: { accessKeyId: string; secretAccessKey: string }) => {
      const x = ecrClient(url, 1, creds);
      clientsOf.push(x);
      return x;
    };
    try {
      await c(listed.url, mine).send(new DescribeRepositoriesCommand({}));
      await c(listed.url, SERVE_CREDENTIALS).send(new DescribeRepositoriesCommand({}));
      await c(looked.url, { accessKeyId: 'ASIA1234', secretAccessKey: 'secret-ASIA1234' }).send(
        new DescribeRepositoriesCommand({}),
      );
      await rejectsWith(
        c(looked.url, SERVE_CREDENTIALS).send(new DescribeRepositoriesCommand({})),
        'UnrecognizedClientException',
      );
    } finally {
      for (const x of clientsOf) x.destroy();
      await listed.stop();
      await looked.stop();
    }
  });
});
