/**
 * The data plane's pure parts: chunking and bounded fan-out (order kept, concurrency bounded,
 * the first failure stops new chunks), float vectors as JSON text (in pieces too), the answer
 * budget's bytes per value as a true bound, a child's gRPC status as the
 * HTTP error it means, and the spec-derived child settings (aliases, --auto-truncate, SPLADE).
 */
import assert from 'node:assert/strict';
import { setImmediate as turn } from 'node:timers/promises';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import type { InstanceSpec } from '../../src/config/instance-spec.js';
import { aliasesOf, autoTruncateOf, isSplade } from '../../src/config/spec-flags.js';
import { TeiplexError } from '../../src/common/errors.js';
import { dataPlaneError } from '../../src/http/data-plane/errors.js';
import { chunk, fanOut, mapLimit } from '../../src/child/batching/fan-out.js';
import { AnswerBudget } from '../../src/http/data-plane/answer-budget.js';
import { childFailure, childStatusOf } from '../../src/child/child-status.js';
import { ERROR_CODE_KEY } from '../../src/tei/grpc-status.js';
import { rowJson } from '../../src/tei/embedding-output.js';
import { flatPieces, floatList, JSON_BYTES_PER_FLOAT, listPieces, matrixPieces } from '../../src/tei/json-answer.js';

describe('fan-out', () => {
  test('chunks cover the input in order; results come back in input order whatever the timing', async () => {
    await fc.assert(
      // Each chunk takes a number of event-loop turns drawn by fast-check: the chunks finish out of order, reproducibly.
      fc.asyncProperty(fc.array(fc.integer(), { maxLength: 70 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 6 }), fc.array(fc.nat(4), { minLength: 1 }), async (items, size, limit, turns) => {
        assert.deepEqual(chunk(items, size).flat(), items);
        assert.ok(chunk(items, size).every((c) => c.length >= 1 && c.length <= size));
        let inFlight = 0;
        let most = 0;
        let calls = 0;
        const out = await fanOut(items, size, limit, async (c, offset) => {
          most = Math.max(most, ++inFlight);
          for (let t = turns[calls++ % turns.length]; t > 0; t--) await turn();
          inFlight--;
          return c.map((x, k) => [offset + k, x]);
        });
        assert.deepEqual(out, items.map((x, i) => [i, x]));
        assert.ok(most <= limit, `at most ${limit} chunks in flight, saw ${most}`);
      }),
      { numRuns: 40 },
    );
  });

  test('the first failure fails the whole, and no chunk starts after it', async () => {
    const started: number[] = [];
    // Chunk 0 runs until the test lets it finish; chunk 1 fails meanwhile.
    let finish0!: () => void;
    const gate0 = new Promise<void>((r) => (finish0 = r));
    await assert.rejects(
      mapLimit([0, 1, 2, 3, 4, 5], 2, async (i) => {
        started.push(i);
        if (i === 0) await gate0;
        if (i === 1) throw new Error('chunk 1 failed');
        return i;
      }),
      /chunk 1 failed/,
    );
    // Chunk 0 finishes after the failure: its slot frees, and nothing takes it.
    finish0();
    for (let t = 0; t < 5; t++) await turn();
    assert.deepEqual(started, [0, 1], 'nothing starts after the failure');
  });
});

describe('JSON for vectors', () => {
  test('floatList gives the digits JSON.stringify gives; non-finite values are null', () => {
    fc.assert(
      fc.property(fc.array(fc.float(), { maxLength: 50 }), (xs) => {
        const v = Float32Array.from(xs);
        assert.equal(floatList(v), JSON.stringify(Array.from(v)));
      }),
    );
    assert.equal(floatList(new Float32Array([NaN, Infinity, -0, 1e-45])), JSON.stringify([null, null, -0, 1e-45].map((x) => (x === null ? null : Math.fround(x)))));
    assert.equal([...listPieces([new Float32Array([1, 2]), new Float32Array(0)], (v) => [floatList(v)])].join(''), '[[1,2],[]]');
    assert.equal([...matrixPieces(new Float32Array([1, 2, 3, 4, 5, 6]), 3, 2)].join(''), '[[1,2],[3,4],[5,6]]');
    assert.equal([...matrixPieces(new Float32Array(0), 0, 4)].join(''), '[]');
    const long = Float32Array.from({ length: 10_000 }, (_, i) => i / 7);
    assert.equal([...flatPieces(long)].join(''), floatList(long), 'a long list in pieces is the same text');
    const b = Buffer.from(JSON.parse(rowJson(new Float32Array([1.5, -2]), 'float32', true)), 'base64');
    assert.deepEqual([b.readFloatLE(0), b.readFloatLE(4)], [1.5, -2]);
  });
});

describe('answer budget', () => {
  test('JSON_BYTES_PER_FLOAT bounds what a float32 list takes in our JSON, commas and brackets included', () => {
    const extremes = new Float32Array([-1.1754942e-38, -3.4028235e38, -1.4e-45, -1.0741976e-6, -1.2345679e20, -0.1234567, NaN, -Infinity]);
    assert.ok(floatList(extremes).length <= extremes.length * JSON_BYTES_PER_FLOAT, floatList(extremes));
    fc.assert(
      fc.property(fc.array(fc.float(), { minLength: 1, maxLength: 64 }), (xs) => {
        const v = Float32Array.from(xs);
        return floatList(v).length <= v.length * JSON_BYTES_PER_FLOAT;
      }),
      { numRuns: 2000 },
    );
  });

  test('values are charged until the limit; past it 413 naming http_response_limit_mb', () => {
    const b = new AnswerBudget(100 * JSON_BYTES_PER_FLOAT);
    b.floats(60);
    b.floats(40);
    assert.throws(
      () => b.floats(1),
      (e: TeiplexError) => e.code === 'PAYLOAD_TOO_LARGE' && e.httpStatus === 413 && e.message.includes(`http_response_limit_mb (${100 * JSON_BYTES_PER_FLOAT} bytes`),
    );
  });
});

describe('errors', () => {
  test("a child's gRPC status as the HTTP error it means: the code it names in its trailers, else the gRPC code alone", () => {
    const cases: Array<[grpc.status, string, number, string, string?]> = [
      [grpc.status.INVALID_ARGUMENT, 'input is too long', 422, 'validation'],
      [grpc.status.INVALID_ARGUMENT, '`inputs` cannot be empty', 422, 'empty', 'EMPTY'],
      // The wording does not decide the code: an unnamed INVALID_ARGUMENT is VALIDATION whatever it says.
      [grpc.status.INVALID_ARGUMENT, '`inputs` cannot be empty', 422, 'validation'],
      [grpc.status.RESOURCE_EXHAUSTED, 'Model is overloaded', 429, 'overloaded'],
      [grpc.status.RESOURCE_EXHAUSTED, 'Received message larger than max', 413, 'payload_limit', 'PAYLOAD_TOO_LARGE'],
      [grpc.status.FAILED_PRECONDITION, 'Model is not a re-ranker model', 400, 'validation'],
      [grpc.status.UNIMPLEMENTED, 'unknown service', 400, 'validation'],
      [grpc.status.UNAVAILABLE, 'Connection dropped', 503, 'unhealthy'],
      [grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded', 504, 'backend'],
      [grpc.status.INTERNAL, 'boom', 424, 'backend'],
    ];
    for (const [code, details, http, type, named] of cases) {
      const metadata = new grpc.Metadata();
      if (named !== undefined) metadata.set(ERROR_CODE_KEY, named);
      const e = childFailure({ code, details, metadata }, "instance 'emb'");
      assert.equal(childStatusOf(e)?.code, code, 'the raw status stays readable');
      assert.deepEqual([e.httpStatus, e.teiErrorType], [http, type], details);
    }
  });

  test('answers: TEI and OpenAI bodies, Retry-After on 429 and 503, param named', () => {
    const overloaded = dataPlaneError(childFailure({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'Model is overloaded', metadata: new grpc.Metadata() }, "instance 'emb'"), 'tei', 1024);
    assert.deepEqual(overloaded.headers, { 'retry-after': '1' });
    assert.deepEqual(overloaded.body, { error: 'Model is overloaded', error_type: 'overloaded' });
    const missing = dataPlaneError(new TeiplexError('MODEL_NOT_FOUND', "model 'x' is not served", { param: 'model' }), 'openai', 1024);
    assert.deepEqual(missing.body, { error: { message: "model 'x' is not served", type: 'not_found_error', param: 'model', code: 'model_not_found' } });
    assert.deepEqual(dataPlaneError(new TeiplexError('INSTANCE_UNAVAILABLE', 'starting'), 'tei', 1024).headers, { 'retry-after': '5' });
    const big = dataPlaneError(Object.assign(new Error('too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 }), 'tei', 2048);
    assert.deepEqual([big.status, big.error.message], [413, 'the request body exceeds http_body_limit_mb (2048 bytes)']);
    assert.equal(dataPlaneError(new Error('unexpected'), 'tei', 1).status, 424, 'an unexpected failure is a backend error, still in the error shape');
  });
});

describe('child settings from the spec', () => {
  const spec = (s: Partial<InstanceSpec>): InstanceSpec => ({ name: 'x', model_id: 'org/m', ...s });
  test('aliases, --served-model-name, --auto-truncate, SPLADE pooling', () => {
    assert.deepEqual(aliasesOf(spec({ aliases: ['a', 'b'], extra_args: ['--served-model-name', 'c'] })), ['a', 'b', 'c']);
    assert.deepEqual(aliasesOf(spec({ env: { SERVED_MODEL_NAME: 'd' } })), ['d']);
    assert.equal(autoTruncateOf(spec({})), false);
    assert.equal(autoTruncateOf(spec({ extra_args: ['--auto-truncate', '--http-port', '0'] })), true);
    assert.equal(autoTruncateOf(spec({ extra_args: ['--auto-truncate=false'] })), false);
    assert.equal(autoTruncateOf(spec({ env: { AUTO_TRUNCATE: 'true' } })), true);
    assert.equal(isSplade(spec({ pooling: 'splade' })), true);
    assert.equal(isSplade(spec({ extra_args: ['--pooling', 'splade'] })), true);
    assert.equal(isSplade(spec({ pooling: 'mean' })), false);
  });
});
