/**
 * The client's typed errors (src/client/errors.ts): every HTTP error body shape the manager answers
 * (admin, OpenAI, TEI, TEI's OpenAI), the gRPC trailers, Retry-After in seconds or as a date, and
 * the family class of each status.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  CancelledError,
  ConflictError,
  ConnectionError,
  errorFromGrpc,
  errorFromHttp,
  ForbiddenError,
  InvalidRequestError,
  NotFoundError,
  OverloadedError,
  parseRetryAfter,
  ServerError,
  TeiplexClientError,
  TimeoutError,
  UnauthorizedError,
  UnavailableError,
} from '../../src/client/errors.js';

test('errorFromHttp: the code of each body shape, the status, Retry-After', () => {
  const admin = errorFromHttp(404, { error: "instance 'x' not found", code: 'INSTANCE_NOT_FOUND', timestamp: 't' }, undefined, 'GET /instances/x');
  assert.ok(admin instanceof NotFoundError && admin instanceof TeiplexClientError);
  assert.deepEqual([admin.code, admin.status, admin.name], ['INSTANCE_NOT_FOUND', 404, 'NotFoundError']);
  assert.match(admin.message, /^GET \/instances\/x: 404 INSTANCE_NOT_FOUND: instance 'x' not found$/);

  const openai = errorFromHttp(503, { error: { message: 'starting', type: 'server_error', param: null, code: 'model_loading' } }, '3', 'POST /v1/encode/m');
  assert.ok(openai instanceof UnavailableError);
  assert.deepEqual([openai.code, openai.status, openai.retryAfterMs, openai.errorType], ['MODEL_LOADING', 503, 3000, 'server_error']);

  const tei = errorFromHttp(429, { error: 'busy', error_type: 'overloaded' }, '1', 'POST /predict');
  assert.ok(tei instanceof OverloadedError);
  assert.deepEqual([tei.code, tei.errorType, tei.retryAfterMs], ['MODEL_OVERLOADED', 'overloaded', 1000]);

  const teiOpenai = errorFromHttp(422, { message: 'too long', code: 422, type: 'validation' }, undefined, 'POST /v1/embeddings');
  assert.ok(teiOpenai instanceof InvalidRequestError);
  assert.equal(teiOpenai.code, 'VALIDATION');

  assert.equal(errorFromHttp(401, { error: 'no key', error_type: 'unauthorized' }, undefined, 'x').code, 'UNAUTHENTICATED');
  assert.equal(errorFromHttp(403, { error: 'not yours', error_type: 'unauthorized' }, undefined, 'x').code, 'PERMISSION_DENIED');
  const text = errorFromHttp(502, 'Bad Gateway', undefined, 'GET /health');
  assert.ok(text instanceof ServerError);
  assert.deepEqual([text.code, text.status], ['HTTP_502', 502]);
  assert.match(text.message, /Bad Gateway/);
});

test('errorFromHttp: the family class of each status', () => {
  const cases: Array<[number, new (...a: never[]) => TeiplexClientError]> = [
    [400, InvalidRequestError],
    [413, InvalidRequestError],
    [422, InvalidRequestError],
    [401, UnauthorizedError],
    [403, ForbiddenError],
    [404, NotFoundError],
    [409, ConflictError],
    [429, OverloadedError],
    [503, UnavailableError],
    [504, TimeoutError],
    [424, InvalidRequestError],
    [500, ServerError],
  ];
  for (const [status, Cls] of cases) {
    const e = errorFromHttp(status, { error: 'x', code: 'SOME_CODE', timestamp: 't' }, undefined, 'op');
    assert.ok(e instanceof Cls, `${status}: ${e.name}`);
    assert.equal(e.code, 'SOME_CODE');
  }
});

test('errorFromGrpc: the teiplex-error-code, retry-after and teiplex-error-index trailers; no code: the client\'s meaning', () => {
  const md = new grpc.Metadata();
  md.set('teiplex-error-code', 'VALIDATION');
  md.set('teiplex-error-index', '3');
  const v = errorFromGrpc({ code: grpc.status.INVALID_ARGUMENT, details: 'input 3: empty', metadata: md }, 'gRPC EmbedStream');
  assert.ok(v instanceof InvalidRequestError);
  assert.deepEqual([v.code, v.grpcCode, v.index], ['VALIDATION', 3, 3]);
  assert.match(v.message, /^gRPC EmbedStream: INVALID_ARGUMENT VALIDATION: input 3: empty$/);

  const loading = new grpc.Metadata();
  loading.set('teiplex-error-code', 'MODEL_LOADING');
  loading.set('retry-after', '4');
  const l = errorFromGrpc({ code: grpc.status.UNAVAILABLE, details: 'starting', metadata: loading }, 'gRPC Embed');
  assert.ok(l instanceof UnavailableError);
  assert.deepEqual([l.code, l.retryAfterMs, l.index], ['MODEL_LOADING', 4000, undefined]);

  const down = errorFromGrpc({ code: grpc.status.UNAVAILABLE, details: 'No connection established', metadata: new grpc.Metadata() }, 'gRPC Embed');
  assert.ok(down instanceof ConnectionError);
  assert.equal(down.code, 'CONNECTION_FAILED');
  const late = errorFromGrpc({ code: grpc.status.DEADLINE_EXCEEDED, details: 'Deadline exceeded' }, 'gRPC Embed');
  assert.ok(late instanceof TimeoutError);
  assert.equal(late.code, 'TIMEOUT');
  assert.equal(errorFromGrpc({ code: grpc.status.INTERNAL, details: 'boom' }, 'x').code, 'INTERNAL');
  const cancelled = errorFromGrpc({ code: grpc.status.CANCELLED, details: 'Cancelled on client' }, 'gRPC Embed');
  assert.ok(cancelled instanceof CancelledError);
  assert.equal(cancelled.code, 'CANCELLED');
});

test('parseRetryAfter: seconds, an HTTP date, nothing', () => {
  assert.equal(parseRetryAfter('5'), 5000);
  assert.equal(parseRetryAfter('0.5'), 500);
  assert.equal(parseRetryAfter(['2', '9']), 2000);
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:10 GMT', now), 10_000);
  assert.equal(parseRetryAfter('Wed, 31 Dec 2025 00:00:00 GMT', now), 0);
  assert.equal(parseRetryAfter(undefined), undefined);
  assert.equal(parseRetryAfter('soon'), undefined);
  assert.equal(parseRetryAfter(''), undefined);
});
