/**
 * Faults on the wire between `lading push` (the CLI, in-process, --json) and a real registry
 * (docker-registry behind test/registry/fault-proxy.ts). For each fault the push either
 * completes (skopeo reads the pushed digest and copies every blob) or fails with a one-line
 * message; in no case is a tag left pointing at an image with a missing child or blob; and the
 * same command run again completes, uploading only what was missing.
 * docs/faults.md lists these tests.
 */
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { registryAvailable, startRegistry, type RegistryServer } from '../helpers/registry-server';
import { startFaultProxy, type Fault, type FaultProxy } from '../registry/fault-proxy';
import { startTokenServer, type TokenServer } from '../registry/token-server';
import {
  legacyArchive,
  multiPlatformArchive,
  push,
  skopeoVerify,
  tagProblems,
  workDir,
  type PushResult,
} from './helpers';

const skip = registryAvailable ? false : 'docker-registry is not installed';

const isUpload = (r: IncomingMessage): boolean => (r.url ?? '').includes('/blobs/uploads/');
const isBlobPut = (r: IncomingMessage): boolean =>
  isUpload(r) && (r.method === 'PUT' || r.method === 'PATCH') && Number(r.headers['content-length'] ?? '1') > 0;
const isManifestPut = (r: IncomingMessage): boolean => r.method === 'PUT' && (r.url ?? '').includes('/manifests/');
const isTagPut = (r: IncomingMessage): boolean => isManifestPut(r) && !(r.url ?? '').includes('/manifests/sha256:');

/** The first `n` requests matching `match` get `fault`; the others pass. */
function first(n: number, match: (r: IncomingMessage) => boolean, fault: Fault): (r: IncomingMessage) => Fault {
  let left = n;
  return (r) => (match(r) && left-- > 0 ? fault : undefined);
}

/** `n` matching requests pass, every later one gets `fault`. */
function afterN(n: number, match: (r: IncomingMessage) => boolean, fault: Fault): (r: IncomingMessage) => Fault {
  let seen = 0;
  return (r) => (match(r) && ++seen > n ? fault : undefined);
}

interface Scenario {
  name: string;
  archive: 'legacy' | 'multi';
  fault: () => (r: IncomingMessage) => Fault;
  /** ok: the push completes despite the fault; fail: it gives up with one of these codes. */
  outcome: { ok: true; minMs?: number } | { ok: false; codes: string[] };
}

const SCENARIOS: Scenario[] = [
  {
    name: 'connection reset in the middle of a blob upload',
    archive: 'legacy',
    fault: () => first(1, isBlobPut, { resetAfterBytes: 256 * 1024 }),
    outcome: { ok: true },
  },
  {
    name: 'connection reset in the middle of every blob, twice each',
    archive: 'legacy',
    fault: () => first(4, isBlobPut, { resetAfterBytes: 64 * 1024 }),
    outcome: { ok: true },
  },
  {
    name: '500 on a blob upload',
    archive: 'legacy',
    fault: () => first(1, isBlobPut, { status: 500 }),
    outcome: { ok: true },
  },
  {
    name: '502 on the manifest PUT',
    archive: 'legacy',
    fault: () => first(1, isManifestPut, { status: 502, body: 'Bad Gateway' }),
    outcome: { ok: true },
  },
  {
    name: '503 twice on starting an upload',
    archive: 'legacy',
    fault: () => first(2, (r) => isUpload(r) && r.method === 'POST', { status: 503 }),
    outcome: { ok: true },
  },
  {
    name: '429 with Retry-After: 2 on blob existence checks',
    archive: 'legacy',
    fault: () =>
      first(1, (r) => r.method === 'HEAD' && (r.url ?? '').includes('/blobs/'), {
        status: 429,
        headers: { 'retry-after': '2' },
        body: '{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
      }),
    outcome: { ok: true, minMs: 1900 },
  },
  {
    name: 'slow responses: every upload request delayed 700 ms',
    archive: 'legacy',
    fault: () => (r) => (isUpload(r) ? { delayMs: 700 } : undefined),
    outcome: { ok: true },
  },
  {
    name: 'truncated response: the /v2/ ping cut in half',
    archive: 'legacy',
    fault: () => first(1, (r) => r.url === '/v2/', 'truncate-response'),
    outcome: { ok: true },
  },
  {
    name: 'truncated response: a blob existence answer lost',
    archive: 'legacy',
    fault: () => first(1, (r) => r.method === 'HEAD' && (r.url ?? '').includes('/blobs/'), 'truncate-response'),
    outcome: { ok: true },
  },
  {
    name: 'every child and index manifest PUT reset once (multi-platform)',
    archive: 'multi',
    fault: () => first(3, isManifestPut, 'reset'),
    outcome: { ok: true },
  },
  {
    name: 'persistent 503 on the top index PUT (children already pushed)',
    archive: 'multi',
    fault: () => afterN(2, isManifestPut, { status: 503 }),
    outcome: { ok: false, codes: ['REGISTRY'] },
  },
  {
    name: 'persistent 503 on uploads after two blobs',
    archive: 'multi',
    fault: () => afterN(2, (r) => isUpload(r) && r.method === 'POST', { status: 503 }),
    outcome: { ok: false, codes: ['REGISTRY'] },
  },
  {
    name: 'persistent reset of the tag PUT',
    archive: 'legacy',
    fault: () => (r) => (isTagPut(r) ? 'reset' : undefined),
    outcome: { ok: false, codes: ['NETWORK'] },
  },
  {
    name: 'a 403 DENIED on a blob upload (not retryable)',
    archive: 'legacy',
    fault: () =>
      first(1, isBlobPut, {
        status: 403,
        body: '{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}',
      }),
    outcome: { ok: false, codes: ['AUTH'] },
  },
];

const BLOBS = { legacy: 3, multi: 6 };

function oneLine(r: PushResult): void {
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('lading: '));
  assert.equal(lines.length, 1, r.stderr);
  assert.ok(!/\n\s+at /.test(r.stderr), r.stderr);
  assert.ok(r.json.error && !r.json.error.message.includes('\n'), r.stdout);
}

describe('faults on the wire: lading push -> fault proxy -> docker-registry', { skip, timeout: 20 * 60_000 }, () => {
  let reg: RegistryServer;
  let w: { dir: string; remove(): void };
  const archives: Record<string, string> = {};
  let env: NodeJS.ProcessEnv;
  before(async () => {
    reg = await startRegistry();
    w = workDir();
    env = { ...process.env, XDG_CACHE_HOME: join(w.dir, 'cache'), DOCKER_CONFIG: join(w.dir, 'docker') };
  });
  after(async () => {
    await reg?.stop();
    w?.remove();
  });

  async function archiveFor(kind: 'legacy' | 'multi', i: number): Promise<string> {
    const key = `${kind}-${i}`;
    archives[key] ??=
      kind === 'legacy'
        ? await legacyArchive(join(w.dir, `${key}.tar`), key)
        : await multiPlatformArchive(join(w.dir, `${key}.tar`), key);
    return archives[key]!;
  }

  for (const [i, s] of SCENARIOS.entries()) {
    test(`registry: ${s.name}`, async () => {
      const archive = await archiveFor(s.archive, i);
      const repo = `faults/s${i}`;
      let proxy: FaultProxy | undefined;
      const fault = s.fault();
      let fired = 0;
      proxy = await startFaultProxy(reg, (r) => {
        const f = fault(r);
        if (f !== undefined) fired++;
        return f;
      });
      try {
        const t0 = Date.now();
        const r = await push(archive, `${proxy.host}/${repo}:v1`, [], env);
        const ms = Date.now() - t0;
        assert.ok(fired > 0, `the fault fired (it never matched a request, so this scenario proved nothing)`);
        const state = await tagProblems(`${reg.url}/v2/${repo}`, 'v1');
        if (state) assert.deepEqual(state.problems, [], `the tag points at an incomplete image after: ${r.stdout}`);
        if (s.outcome.ok) {
          assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
          assert.ok(state && state.digest === r.json.digest, 'the tag points at the pushed digest');
          if (s.outcome.minMs) assert.ok(ms >= s.outcome.minMs, `Retry-After honoured (${ms} ms)`);
          assert.equal(r.json.blobs!.uploaded + r.json.blobs!.skipped, BLOBS[s.archive]);
          await skopeoVerify(`${reg.host}/${repo}@${r.json.digest}`, r.json.digest!);
        } else {
          assert.equal(r.code, 1, r.stdout);
          assert.ok(
            s.outcome.codes.includes(r.json.error!.code),
            `code ${r.json.error!.code}: ${r.json.error!.message}`,
          );
          oneLine(r);
          assert.equal(state, undefined, 'no tag written');
        }
        await proxy.stop();
        proxy = undefined;

        // The same command again, faults gone: completes, uploading only what is missing.
        const again = await push(archive, `${reg.host}/${repo}:v1`, [], env);
        assert.equal(again.code, 0, again.stdout);
        const b = again.json.blobs!;
        assert.equal(b.uploaded + b.skipped, BLOBS[s.archive]);
        if (s.outcome.ok) assert.equal(b.uploaded, 0, 'everything was already there');
        else if (s.name.includes('index PUT'))
          assert.equal(b.uploaded, 0, 'every blob was pushed before the index failed');
        else if (s.name.includes('after two blobs')) assert.ok(b.skipped >= 2 && b.uploaded >= 1, JSON.stringify(b));
        const final = await tagProblems(`${reg.url}/v2/${repo}`, 'v1');
        assert.ok(final && final.problems.length === 0 && final.digest === again.json.digest);
        if (!s.outcome.ok) await skopeoVerify(`${reg.host}/${repo}@${again.json.digest}`, again.json.digest!);
      } finally {
        await proxy?.stop();
      }
    });
  }
});

describe('faults on the wire: bearer token expiring mid-push', { skip, timeout: 5 * 60_000 }, () => {
  let ts: TokenServer;
  let reg: RegistryServer;
  let w: { dir: string; remove(): void };
  before(async () => {
    ts = await startTokenServer({ service: 'lading-faults', users: { carol: 'carols-password' } });
    reg = await startRegistry({
      token: { realm: ts.realm, service: ts.service, issuer: ts.issuer, rootCertBundle: ts.certPem },
    });
    w = workDir();
  });
  after(async () => {
    await reg?.stop();
    await ts?.stop();
    w?.remove();
  });

  test('registry: the bearer token is renewed when it expires (short-lived tokens, then one issued already expired)', async () => {
    const archive = await legacyArchive(join(w.dir, 'tok.tar'), 'tok', 3);
    // Tokens live 2 s (renewed early by lading); each upload takes 700 ms through the proxy;
    // after the first token, the next one issued is already expired: the registry answers 401
    // mid-push and lading must fetch another.
    ts.settings.expiresIn = 2;
    let armed = false;
    const proxy = await startFaultProxy(reg, (r) => {
      if (!armed && ts.requests.length >= 1) {
        armed = true;
        ts.expireNext(1);
      }
      return isUpload(r) ? { delayMs: 700 } : undefined;
    });
    try {
      const env = {
        ...process.env,
        XDG_CACHE_HOME: join(w.dir, 'cache'),
        DOCKER_CONFIG: join(w.dir, 'docker'),
        LADING_USERNAME: 'carol',
        LADING_PASSWORD: 'carols-password',
      };
      const r = await push(archive, `${proxy.host}/tok/app:v1`, [], env);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.ok(ts.requests.length >= 3, `tokens fetched: ${ts.requests.length}`);
      const state = await tagProblems(`${reg.url}/v2/tok/app`, 'v1', {
        authorization: `Bearer ${await bearer(ts, 'tok/app')}`,
      });
      assert.ok(state && state.problems.length === 0 && state.digest === r.json.digest, JSON.stringify(state));
      const again = await push(archive, `${reg.host}/tok/app:v1`, [], env);
      assert.equal(again.code, 0, again.stdout);
      assert.equal(again.json.blobs!.uploaded, 0);
    } finally {
      await proxy.stop();
    }
  });
});

/** A pull token for checks made by the test itself. */
async function bearer(ts: TokenServer, repo: string): Promise<string> {
  const r = await fetch(`${ts.realm}?service=${encodeURIComponent(ts.service)}&scope=repository:${repo}:pull`, {
    headers: { authorization: `Basic ${Buffer.from('carol:carols-password').toString('base64')}` },
  });
  const j = (await r.json()) as { token?: string; access_token?: string };
  return j.token ?? j.access_token ?? '';
}
