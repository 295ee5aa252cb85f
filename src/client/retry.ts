/**
 * Retries of idempotent calls: capped exponential back-off with full jitter, or the server's
 * Retry-After when it names one (HTTP 429/503, gRPC UNAVAILABLE/RESOURCE_EXHAUSTED with a
 * `retry-after` trailer), bounded attempts. A non-idempotent call is tried exactly once.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CANCELLED, CancelledError, CONNECTION_FAILED, GrpcCode, TeiplexClientError } from './errors.js';
import type { ResolvedRetry, RetryEvent } from './options.js';

/** Codes that a retry cannot help even when their status is 429/503/UNAVAILABLE/RESOURCE_EXHAUSTED. */
const NEVER_RETRIED = new Set(['PAYLOAD_TOO_LARGE', 'TOO_MANY_INPUTS', 'MODEL_LOAD_FAILED', 'MAX_INSTANCES_REACHED', 'STATE_WRITE_FAILED']);

/** Whether `e` is a failure a later try of the same idempotent call may not meet. */
export function isRetryable(e: unknown): e is TeiplexClientError {
  if (!(e instanceof TeiplexClientError) || NEVER_RETRIED.has(e.code)) return false;
  if (e.code === CONNECTION_FAILED) return true;
  if (e.status === 429 || e.status === 503) return true;
  return e.grpcCode === GrpcCode.UNAVAILABLE || e.grpcCode === GrpcCode.RESOURCE_EXHAUSTED;
}

/** The back-off before retry number `retry` (1-based): uniform in [0, min(maxDelayMs, baseDelayMs * 2^(retry-1))]. */
export function backoffMs(retry: number, p: ResolvedRetry, random: () => number = Math.random): number {
  const cap = Math.min(p.maxDelayMs, p.baseDelayMs * 2 ** Math.max(0, retry - 1));
  return Math.round(random() * cap);
}

export interface RetryRun {
  /** What is tried, for messages and the onRetry hook: `GET /instances`, `gRPC Embed`. */
  operation: string;
  /** Only idempotent calls are retried. */
  idempotent: boolean;
  policy: ResolvedRetry;
  onRetry?: ((event: RetryEvent) => void) | undefined;
  /** Stops the waiting between tries. */
  signal?: AbortSignal | undefined;
}

/** Runs `attempt` until it succeeds, fails with an error not worth retrying, or the tries run out. */
export async function withRetry<T>(run: RetryRun, attempt: (n: number) => Promise<T>): Promise<T> {
  const tries = run.idempotent ? run.policy.attempts : 1;
  for (let n = 1; ; n++) {
    if (run.signal?.aborted) throw new CancelledError(CANCELLED, `${run.operation}: cancelled`, { cause: run.signal.reason });
    try {
      return await attempt(n);
    } catch (e) {
      if (n >= tries || !isRetryable(e)) throw e;
      const after = e.retryAfterMs;
      if (after !== undefined && after > run.policy.maxRetryAfterMs) throw e;
      // The server's Retry-After when it named one (a cold start names the time left), else back-off.
      const delayMs = after ?? backoffMs(n, run.policy);
      run.onRetry?.({ attempt: n, error: e, delayMs, operation: run.operation });
      if (delayMs > 0) {
        try {
          await sleep(delayMs, undefined, run.signal === undefined ? undefined : { signal: run.signal });
        } catch (abort) {
          throw new CancelledError(CANCELLED, `${run.operation}: cancelled while waiting ${delayMs} ms to retry after: ${e.message}`, { cause: abort });
        }
      }
    }
  }
}
