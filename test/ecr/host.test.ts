/**
 * parseEcrHost: the ECR registry host names README.md's "Amazon ECR" section lists, and the
 * account and region in each, as Amazon ECR's documentation writes them ("Amazon ECR private
 * registry": `aws_account_id.dkr.ecr.region.amazonaws.com`; "Making requests to Amazon ECR
 * registries": `aws_account_id.dkr-ecr.region.on.aws` for dual-stack; the AWS General Reference:
 * `dkr.ecr-fips.region.amazonaws.com` for FIPS, `.amazonaws.com.cn` in the China Regions). The CLI
 * end of the same (the region signed for and the API endpoint chosen) is in
 * test/cli/flags.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseEcrHost } from '../../src/ecr/host';

describe('parseEcrHost', () => {
  for (const [host, account, region, fips, dualStack] of [
    ['123456789012.dkr.ecr.us-east-1.amazonaws.com', '123456789012', 'us-east-1', false, false],
    ['000000000000.dkr.ecr.eu-west-3.amazonaws.com', '000000000000', 'eu-west-3', false, false],
    ['210987654321.dkr.ecr.ap-southeast-5.amazonaws.com', '210987654321', 'ap-southeast-5', false, false],
    ['123456789012.dkr.ecr.us-gov-west-1.amazonaws.com', '123456789012', 'us-gov-west-1', false, false],
    // China Regions: the amazonaws.com.cn suffix.
    ['123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn', '123456789012', 'cn-north-1', false, false],
    ['123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn', '123456789012', 'cn-northwest-1', false, false],
    // FIPS
    ['123456789012.dkr.ecr-fips.us-east-1.amazonaws.com', '123456789012', 'us-east-1', true, false],
    ['123456789012.dkr.ecr-fips.us-gov-east-1.amazonaws.com', '123456789012', 'us-gov-east-1', true, false],
    // Dual-stack (IPv4 and IPv6), and dual-stack FIPS
    ['123456789012.dkr-ecr.eu-central-2.on.aws', '123456789012', 'eu-central-2', false, true],
    ['123456789012.dkr-ecr-fips.us-west-2.on.aws', '123456789012', 'us-west-2', true, true],
  ] as const) {
    test(`${host}: account ${account}, region ${region}${fips ? ', FIPS' : ''}${dualStack ? ', dual-stack' : ''}`, () => {
      assert.deepEqual(parseEcrHost(host), { account, region, fips, dualStack, host });
    });
  }

  test('host names are case-insensitive (DNS): upper case parses, reported in lower case', () => {
    assert.deepEqual(parseEcrHost('123456789012.DKR.ECR.EU-WEST-1.AMAZONAWS.COM'), {
      account: '123456789012',
      region: 'eu-west-1',
      fips: false,
      dualStack: false,
      host: '123456789012.dkr.ecr.eu-west-1.amazonaws.com',
    });
  });

  for (const [host, why] of [
    ['public.ecr.aws', 'ECR Public is another service (no layer API of this kind, no account in the host)'],
    ['dkr.ecr.us-east-1.amazonaws.com', 'no account'],
    ['12345678901.dkr.ecr.us-east-1.amazonaws.com', 'an account id has 12 digits (11 here)'],
    ['1234567890123.dkr.ecr.us-east-1.amazonaws.com', 'an account id has 12 digits (13 here)'],
    ['12345678901a.dkr.ecr.us-east-1.amazonaws.com', 'an account id is digits'],
    ['api.ecr.us-east-1.amazonaws.com', 'the API endpoint, not a registry'],
    ['123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example', 'a look-alike under another domain'],
    ['evil-123456789012.dkr.ecr.us-east-1.amazonaws.com', 'a prefix before the account'],
    ['123456789012.dkr.ecr..amazonaws.com', 'no region'],
    ['123456789012.dkr.ecr.us-east-1.on.aws', 'the dual-stack name is dkr-ecr, not dkr.ecr'],
    ['123456789012.dkr-ecr.us-east-1.amazonaws.com', 'dkr-ecr is only under on.aws'],
    ['123456789012.dkr.ecr-fips.cn-north-1.amazonaws.com.cn', 'no FIPS endpoints in the China Regions'],
    ['registry-1.docker.io', 'Docker Hub'],
    ['localhost:5000', 'a local registry'],
    ['127.0.0.1:5000', 'lading serve: an ECR only with --ecr'],
  ] as const) {
    test(`not ECR: ${host} (${why})`, () => {
      assert.equal(parseEcrHost(host), undefined);
    });
  }
});
