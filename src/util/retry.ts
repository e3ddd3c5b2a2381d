import { LadingError } from '../errors';

/**
 * What to do after a failed attempt. `retry: false` rethrows at once; `afterMs` (a server's
 * `Retry-After`) replaces the computed backoff when it is longer.
 */
export interface RetryDecision {
  retry: boolean;
  afterMs?: number;
}

export interface RetryOptions {
  /** Total attempts, the first included. @default 5 */
  attempts?: number;
  /** Base of the exponential backoff. @default 250 */
  baseDelayMs?: number;
  /** Cap of a computed backoff. @default 10_000 */
  maxDelayMs?: number;
  /**
   * Cap of a server-requested delay: a registry asking for an hour must not hang a deploy
   * for an hour, so a longer `Retry-After` fails the operation instead. @default 60_000
   */
  maxRetryAfterMs?: number;
  /** Classifies an error; the default retries nothing. */
  classify?: (error: unknown, attempt: number) => RetryDecision;
  /** Told before each wait, for logs and progress. */
  onRetry?: (info: { error: unknown; attempt: number; delayMs: number }) => void;
  signal?: AbortSignal;
  /** Injected for tests. @default Math.random */
  random?: () => number;
}

/**
 * Runs `fn` until it succeeds, the error is not retryable, or the attempts are spent; the
 * last error is rethrown as is, so callers see the real cause rather than a wrapper.
 *
 * Backoff is "full jitter" (a random delay in [0, min(max, base * 2^n)]): many clients
 * failing together (a registry restart) then spread out instead of retrying in lockstep.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const attempts = Math.max(1, options.attempts ?? 5);
  const base = options.baseDelayMs ?? 250;
  const max = options.maxDelayMs ?? 10_000;
  const maxRetryAfter = options.maxRetryAfterMs ?? 60_000;
  const random = options.random ?? Math.random;
  const classify = options.classify ?? (() => ({ retry: false }));
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(options.signal);
    try {
      return await fn(attempt);
    } catch (error) {
      if (attempt >= attempts || options.signal?.aborted) throw error;
      const decision = classify(error, attempt);
      if (!decision.retry) throw error;
      if (decision.afterMs !== undefined && decision.afterMs > maxRetryAfter) throw error;
      const jitter = Math.floor(random() * Math.min(max, base * 2 ** (attempt - 1)));
      const delayMs = Math.max(jitter, decision.afterMs ?? 0);
      options.onRetry?.({ error, attempt, delayMs });
      await sleep(delayMs, options.signal);
    }
  }
}

/**
 * Parses a `Retry-After` header (delta-seconds or an HTTP date) into milliseconds from `now`;
 * undefined when absent or unreadable, so the caller falls back to its own backoff.
 */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

/** Resolves after `ms`, or rejects with an ABORTED LadingError as soon as `signal` fires. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError(signal));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

/** The error every abortable lading operation rejects with; the signal's reason is kept as cause. */
export function abortError(signal: AbortSignal): LadingError {
  const reason: unknown = signal.reason;
  if (reason instanceof LadingError) return reason;
  return new LadingError('ABORTED', 'operation aborted', { cause: reason });
}
