import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseErrorBody } from '../../src/registry';
import { Redactor, sanitizeUrl } from '../../src/registry/redact';

describe('secrets stay out of logs and messages', () => {
  test('Redactor hides registered secrets and their base64 form', () => {
    const r = new Redactor();
    r.add('hunter22');
    r.add('u:hunter22');
    r.add('ab'); // too short to be a secret: ignored
    assert.equal(r.redact('password hunter22 and dTpodW50ZXIyMg== in a tab'), 'password *** and *** in a tab');
  });

  test('sanitizeUrl keeps useful query values and hides the rest and userinfo', () => {
    assert.equal(
      sanitizeUrl(
        'https://user:pw@r.example.com/v2/a/blobs/uploads/x?_state=SECRET&digest=sha256%3Aab&X-Amz-Signature=sig',
      ),
      'https://r.example.com/v2/a/blobs/uploads/x?_state=***&digest=sha256%3Aab&X-Amz-Signature=***',
    );
    assert.equal(sanitizeUrl('http://h/v2/'), 'http://h/v2/');
  });

  test('parseErrorBody reads the distribution error shape and tolerates anything else', () => {
    assert.deepEqual(
      parseErrorBody(Buffer.from('{"errors":[{"code":"DENIED","message":"no","detail":{"a":1}},{"nocode":1}]}')),
      [{ code: 'DENIED', message: 'no', detail: { a: 1 } }],
    );
    assert.deepEqual(parseErrorBody(Buffer.from('<html>502</html>')), []);
    assert.deepEqual(parseErrorBody(undefined), []);
  });
});
