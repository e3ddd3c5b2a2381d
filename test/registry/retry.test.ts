import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LadingError } from '../../src/errors';
import { parseRetryAfter, retry, sleep } from '../../src/util/retry';

describe('retry', () => {
  test('retries retryable errors up to the attempt bound, then rethrows the last error', async () => {
    let calls = 0;
    await assert.rejects(
      retry(
        (n) => {
          calls++;
          throw new Error(`fail ${n}`);
        },
        { attempts: 3, baseDelayMs: 1, classify: () => ({ retry: true }) },
      ),
      /fail 3/,
    );
    assert.equal(calls, 3);
  });

  test('stops at once on a non-retryable error', async () => {
    let calls = 0;
    await assert.rejects(
      retry(() => Promise.reject(new Error(`x${++calls}`)), { classify: () => ({ retry: false }) }),
      /x1/,
    );
    assert.equal(calls, 1);
  });

  test('returns the first success; delays grow with full jitter and honour afterMs', async () => {
    const delays: number[] = [];
    const r = await retry((n) => (n < 4 ? Promise.reject(new Error('again')) : Promise.resolve('done')), {
      attempts: 5,
      baseDelayMs: 8,
      random: () => 0.999,
      classify: (_e, attempt) => ({ retry: true, afterMs: attempt === 3 ? 100 : undefined }),
      onRetry: ({ delayMs }) => delays.push(delayMs),
    });
    assert.equal(r, 'done');
    assert.deepEqual(delays, [7, 15, 100]);
  });

  test('a Retry-After longer than allowed fails instead of hanging', async () => {
    let calls = 0;
    await assert.rejects(
      retry(() => Promise.reject(new Error(`busy ${++calls}`)), {
        classify: () => ({ retry: true, afterMs: 3_600_000 }),
        maxRetryAfterMs: 1000,
      }),
      /busy 1/,
    );
  });

  test('abort during the backoff rejects with ABORTED at once', async () => {
    const ac = new AbortController();
    const t0 = Date.now();
    setTimeout(() => ac.abort(), 20);
    await assert.rejects(
      retry(() => Promise.reject(new Error('x')), {
        baseDelayMs: 10_000,
        random: () => 1,
        signal: ac.signal,
        classify: () => ({ retry: true }),
      }),
      (e: unknown) => e instanceof LadingError && e.code === 'ABORTED',
    );
    assert.ok(Date.now() - t0 < 1000);
    await assert.rejects(sleep(10, AbortSignal.abort()), { code: 'ABORTED' });
  });

  test('parseRetryAfter: seconds, HTTP date, garbage', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    assert.equal(parseRetryAfter(new Date(10_000 + 5000).toUTCString(), 10_000), 5000);
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(parseRetryAfter(undefined), undefined);
  });
});
