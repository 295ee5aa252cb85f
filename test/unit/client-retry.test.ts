/**
 * The client's retry policy (src/client/retry.ts): which failures are retried, capped exponential
 * back-off with full jitter, Retry-After honoured (and too long a one ending the retries), bounded
 * attempts, and a non-idempotent call tried exactly once whatever the answer.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CancelledError, ConnectionError, GrpcCode, InvalidRequestError, OverloadedError, TeiplexClientError, UnavailableError } from '../../src/client/errors.js';
import { DEFAULT_RETRY, type RetryEvent } from '../../src/client/options.js';
import { backoffMs, isRetryable, withRetry } from '../../src/client/retry.js';

test('isRetryable: connection failures, 429/503, UNAVAILABLE/RESOURCE_EXHAUSTED; never a refusal a retry cannot change', () => {
  const yes = [
    new ConnectionError('CONNECTION_FAILED', 'x'),
    new OverloadedError('MODEL_OVERLOADED', 'x', { status: 429 }),
    new UnavailableError('MODEL_LOADING', 'x', { status: 503 }),
    new UnavailableError('MODEL_LOADING', 'x', { grpcCode: GrpcCode.UNAVAILABLE }),
    new OverloadedError('COLD_START_QUEUE_FULL', 'x', { grpcCode: GrpcCode.RESOURCE_EXHAUSTED }),
    new UnavailableError('MEMORY_BUDGET_EXCEEDED', 'x', { status: 503 }),
  ];
  for (const e of yes) assert.equal(isRetryable(e), true, `${e.code} ${e.status ?? e.grpcCode}`);
  const no = [
    new InvalidRequestError('VALIDATION', 'x', { status: 422 }),
    new TeiplexClientError('TIMEOUT', 'x'),
    new OverloadedError('TOO_MANY_INPUTS', 'x', { grpcCode: GrpcCode.RESOURCE_EXHAUSTED }),
    new OverloadedError('PAYLOAD_TOO_LARGE', 'x', { grpcCode: GrpcCode.RESOURCE_EXHAUSTED }),
    new UnavailableError('MODEL_LOAD_FAILED', 'x', { status: 503 }),
    new UnavailableError('STATE_WRITE_FAILED', 'x', { status: 503 }),
    new InvalidRequestError('MAX_INSTANCES_REACHED', 'x', { status: 422 }),
    new Error('not a client error'),
  ];
  for (const e of no) assert.equal(isRetryable(e), false, String(e));
});

test('backoffMs: full jitter under a cap that doubles up to maxDelayMs', () => {
  const p = { ...DEFAULT_RETRY, baseDelayMs: 100, maxDelayMs: 1000 };
  assert.deepEqual([1, 2, 3, 4, 5, 9].map((n) => backoffMs(n, p, () => 1)), [100, 200, 400, 800, 1000, 1000]);
  assert.equal(backoffMs(3, p, () => 0), 0);
  assert.equal(backoffMs(3, p, () => 0.5), 200);
});

const policy = { attempts: 4, baseDelayMs: 1, maxDelayMs: 2, maxRetryAfterMs: 50 };

test('withRetry: retries until an answer, reporting each wait; Retry-After is the wait', async () => {
  const events: RetryEvent[] = [];
  let n = 0;
  const v = await withRetry({ operation: 'op', idempotent: true, policy, onRetry: (e) => events.push(e) }, async (attempt) => {
    n++;
    assert.equal(attempt, n);
    if (n === 1) throw new UnavailableError('MODEL_LOADING', 'loading', { status: 503, retryAfterMs: 7 });
    if (n === 2) throw new ConnectionError('CONNECTION_FAILED', 'refused');
    return 'answer';
  });
  assert.equal(v, 'answer');
  assert.deepEqual(events.map((e) => [e.attempt, (e.error as TeiplexClientError).code, e.operation]), [
    [1, 'MODEL_LOADING', 'op'],
    [2, 'CONNECTION_FAILED', 'op'],
  ]);
  assert.equal(events[0]!.delayMs, 7);
  // The back-off of retry 2 with baseDelayMs 1, maxDelayMs 2: a whole number in [0, 2].
  assert.ok([0, 1, 2].includes(events[1]!.delayMs), String(events[1]!.delayMs));
});

test('withRetry: bounded attempts, then the last error', async () => {
  let n = 0;
  await assert.rejects(
    withRetry({ operation: 'op', idempotent: true, policy }, async () => {
      n++;
      throw new OverloadedError('MODEL_OVERLOADED', `try ${n}`, { status: 429 });
    }),
    /try 4/,
  );
  assert.equal(n, 4);
});

test('withRetry: a non-idempotent call, an error not worth retrying, or too long a Retry-After: tried once', async () => {
  const cases: Array<[boolean, TeiplexClientError]> = [
    [false, new UnavailableError('MEMORY_BUDGET_EXCEEDED', 'no room', { status: 503, retryAfterMs: 5 })],
    [true, new InvalidRequestError('VALIDATION', 'bad', { status: 422 })],
    [true, new UnavailableError('MODEL_LOADING', 'long', { status: 503, retryAfterMs: 51 })],
  ];
  for (const [idempotent, err] of cases) {
    let n = 0;
    const events: RetryEvent[] = [];
    await assert.rejects(
      withRetry({ operation: 'op', idempotent, policy, onRetry: (e) => events.push(e) }, async () => {
        n++;
        throw err;
      }),
      (e) => e === err,
    );
    assert.equal(n, 1, err.code);
    assert.deepEqual(events, []);
  }
});

test('withRetry: an aborted signal ends the call before a try and while waiting to retry (CANCELLED)', async () => {
  const before = new AbortController();
  before.abort();
  let tries = 0;
  await assert.rejects(
    withRetry({ operation: 'op', idempotent: true, policy, signal: before.signal }, async () => {
      tries++;
      return 1;
    }),
    (e) => e instanceof CancelledError && e.code === 'CANCELLED',
  );
  assert.equal(tries, 0);
  const during = new AbortController();
  await assert.rejects(
    withRetry({ operation: 'op', idempotent: true, policy: { ...policy, maxRetryAfterMs: 60_000 }, signal: during.signal, onRetry: () => during.abort() }, async () => {
      tries++;
      throw new UnavailableError('MODEL_LOADING', 'loading', { status: 503, retryAfterMs: 60_000 });
    }),
    (e) => e instanceof CancelledError && /cancelled while waiting 60000 ms to retry after: loading/.test(e.message),
  );
  assert.equal(tries, 1);
});
