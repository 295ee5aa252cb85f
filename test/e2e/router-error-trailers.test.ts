/**
 * Errors keep their code across the process boundary: a real `teiplex router` process (dist/, so
 * `npm run build` first) answers a @grpc/grpc-js client over loopback, and every failure carries
 * the trailers of src/tei/grpc-status.ts: `teiplex-error-code` (the machine code),
 * `teiplex-error-index` (the failing input of a teiplex.v1.Batch call, the failing message of a
 * stream) and nothing made up where there is no index. `fromGrpcStatus` (what the manager does
 * with a child's status) reads them back into the same TeiplexError.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ERROR_CODE_KEY, ERROR_INDEX_KEY, fromGrpcStatus, RETRY_AFTER_KEY } from '../../src/tei/grpc-status.js';
import { testModel } from '../helpers/models.js';
import { bidi, direct, unary, type AnyClient } from '../helpers/mux-client.js';
import { startRouterProcess, type RouterProcess } from '../helpers/router-process.js';

const KEY = 'trailer-test-key';

function auth(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${KEY}`);
  return md;
}

const trailer = (err: grpc.ServiceError | undefined, key: string): string | undefined => {
  const v = err?.metadata?.get(key)[0];
  return typeof v === 'string' ? v : undefined;
};

/** The call's failure (it must fail). */
async function failure(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  assert.fail('the call succeeded');
}

describe('a router child sends its error code and input index in trailers', () => {
  let router: RouterProcess;
  const clients: AnyClient[] = [];
  const client = (service: Parameters<typeof direct>[1]): AnyClient => {
    const c = direct(router.grpcPort, service);
    clients.push(c);
    return c;
  };

  before(async () => {
    const modelDir = await testModel({ kind: 'embedding' });
    router = await startRouterProcess(['--model-id', modelDir, '--threads', '1', '--max-concurrent-requests', '16', '--api-key', KEY]);
  });
  after(async () => {
    for (const c of clients) c.close();
    await router?.stop('SIGKILL');
  });

  test('teiplex.v1.Batch: the failing input is named in the message and carried as the index', async () => {
    const batch = client('teiplex.v1.Batch');
    const err = await failure(unary(batch, 'EmbedBatch', { inputs: ['ok', 'fine', '', 'last'] }, {}, auth()));
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err.details, /^input 2: `inputs` cannot be empty/);
    assert.equal(trailer(err, ERROR_CODE_KEY), 'VALIDATION');
    assert.equal(trailer(err, ERROR_INDEX_KEY), '2');
    assert.equal(trailer(err, RETRY_AFTER_KEY), undefined);

    const long = 'word '.repeat(200_000);
    const tooLong = await failure(unary(batch, 'EmbedBatch', { inputs: ['ok', long], truncate: false }, {}, auth()));
    assert.equal(tooLong.code, grpc.status.INVALID_ARGUMENT);
    assert.match(tooLong.details, /^input 1: `inputs` must have less than/);
    assert.deepEqual([trailer(tooLong, ERROR_CODE_KEY), trailer(tooLong, ERROR_INDEX_KEY)], ['VALIDATION', '1']);

    // The manager's reading of the same status: the code and the index survive the hop.
    const read = fromGrpcStatus(err, "instance 'x'");
    assert.deepEqual([read.code, read.index, read.message], ['VALIDATION', 2, err.details]);
  });

  test('an empty batch is EMPTY, with no index; rerank on an embedding model WRONG_MODEL_TYPE', async () => {
    const empty = await failure(unary(client('teiplex.v1.Batch'), 'EmbedBatch', { inputs: [] }, {}, auth()));
    assert.equal(empty.code, grpc.status.INVALID_ARGUMENT);
    assert.deepEqual([trailer(empty, ERROR_CODE_KEY), trailer(empty, ERROR_INDEX_KEY)], ['EMPTY', undefined]);

    const wrong = await failure(unary(client('tei.v1.Rerank'), 'Rerank', { query: 'q', texts: ['a'] }, {}, auth()));
    assert.equal(wrong.code, grpc.status.FAILED_PRECONDITION);
    assert.deepEqual([trailer(wrong, ERROR_CODE_KEY), trailer(wrong, ERROR_INDEX_KEY)], ['WRONG_MODEL_TYPE', undefined]);
    assert.equal(fromGrpcStatus(wrong, "instance 'x'").code, 'WRONG_MODEL_TYPE');
  });

  test('a stream names the failing message by its position', async () => {
    const { responses, error } = await bidi(client('tei.v1.Embed'), 'EmbedStream', [{ inputs: 'a' }, { inputs: 'b' }, { inputs: '' }, { inputs: 'c' }], {}, auth());
    assert.equal(responses.length, 2, 'the messages before the failing one are answered');
    assert.equal(error?.code, grpc.status.INVALID_ARGUMENT);
    assert.deepEqual([trailer(error, ERROR_CODE_KEY), trailer(error, ERROR_INDEX_KEY)], ['VALIDATION', '2']);
  });

  test('the API key check answers with its code too', async () => {
    const err = await failure(unary(client('teiplex.v1.Batch'), 'EmbedBatch', { inputs: ['x'] }));
    assert.equal(err.code, grpc.status.UNAUTHENTICATED);
    assert.equal(trailer(err, ERROR_CODE_KEY), 'UNAUTHENTICATED');
  });
});
