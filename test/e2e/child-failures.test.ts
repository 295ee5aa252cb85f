/**
 * A child that never answers, and a child that refuses one chunk of a split request, end to end
 * through the manager's front ends. A real `teiplex serve` whose child is the FAKE tei.v1 child
 * (test/helpers/fake-tei-child.ts: `hang` is never answered, `fail` is refused with
 * INVALID_ARGUMENT), with grpc_request_timeout_secs = 5 and max_client_batch_size = 2:
 *
 * - docs/data-plane.md: "the child does not answer within grpc_request_timeout_secs": 504,
 *   TEI `error_type: backend`, OpenAI `server_error` / `request_timeout`; on gRPC
 *   DEADLINE_EXCEEDED with `teiplex-error-code: REQUEST_TIMEOUT` (docs/errors.md);
 * - a request split in chunks (5 inputs, 2 per call) whose second chunk the child refuses fails
 *   whole: the child's refusal (422 `validation`; on the Arrow RPC INVALID_ARGUMENT with
 *   `teiplex-error-code: VALIDATION`), no partial answer.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { encodeTexts } from '../../src/arrow/embedding-batch.js';
import { client, writeConfig } from '../helpers/data-plane.js';
import { fakeCallsOf, fakeChildScript, fakeInstanceToml } from '../helpers/fake-tei-child.js';
import { startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { mux, unary, type AnyClient } from '../helpers/mux-client.js';
import { until } from '../helpers/wait.js';

let dir: string;
let m: ManagerProcess;
let c: AnyClient;
let api: ReturnType<typeof client>;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-child-failures-'));
  const script = await fakeChildScript(dir);
  const file = await writeConfig(dir, 'grpc_request_timeout_secs = 5', fakeInstanceToml('fake', script, 'fake/model', 'extra_args = ["--max-client-batch-size", "2"]'));
  m = await startManager(file);
  await m.waitFor('fake', (i) => i.status === 'running', 120_000);
  c = mux(Number(m.ready.grpc_port));
  api = client(m.apiPort);
});

after(async () => {
  c?.close();
  if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  await rm(dir, { recursive: true, force: true });
});

const calls = () => fakeCallsOf(path.join(dir, 'logs'), 'fake');

describe('a child that never answers (fake child)', () => {
  test('HTTP /embed: 504, TEI error_type backend', async () => {
    const r = await api.post('/embed', { model: 'fake', inputs: 'hang' });
    assert.equal(r.status, 504, JSON.stringify(r.body));
    assert.equal(r.body.error_type, 'backend');
    // The manager's own timer or the channel's deadline, whichever fires first: both are the same timeout.
    assert.match(r.body.error, /grpc_request_timeout_secs|did not answer|timed? ?out|deadline exceeded/i);
  });

  test('HTTP /v1/embeddings: 504, OpenAI server_error / request_timeout', async () => {
    const r = await api.post('/v1/embeddings', { model: 'fake', input: 'hang' });
    assert.equal(r.status, 504, JSON.stringify(r.body));
    assert.equal(r.body.error.type, 'server_error');
    assert.equal(r.body.error.code, 'request_timeout');
  });

  test('gRPC Embed through the multiplexer: DEADLINE_EXCEEDED, teiplex-error-code REQUEST_TIMEOUT', async () => {
    const err = await unary(c, 'Embed', { target: { instance_name: 'fake' }, request: { inputs: 'hang' } }).then(
      () => assert.fail('answered'),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED, `${grpc.status[err.code]}: ${err.details}`);
    assert.deepEqual(err.metadata.get('teiplex-error-code'), ['REQUEST_TIMEOUT']);
  });
});

describe('one failing chunk fails the whole request (fake child, 2 inputs per call)', () => {
  const inputs = (tag: string) => [`${tag}-a`, `${tag}-b`, 'fail', `${tag}-d`, `${tag}-e`];

  test('HTTP /embed: 422 validation as the child said, no partial answer', async () => {
    const r = await api.post('/embed', { model: 'fake', inputs: inputs('http') });
    assert.equal(r.status, 422, JSON.stringify(r.body));
    assert.equal(r.body.error_type, 'validation');
    assert.match(r.body.error, /fake failure/);
    assert.ok(!Array.isArray(r.body), 'no partial answer');
    // The split really happened: 'fail' went in a call without the first chunk's inputs. (The child's
    // log line reaches its file through the manager's log pipe, possibly after the answer: polled.)
    const chunks = () => calls().filter((f) => f.inputs.some((i) => i.startsWith('http-') || i === 'fail'));
    await until('the failing chunk in the child\'s log', () => chunks().some((f) => f.inputs.includes('fail') && !f.inputs.includes('http-a'))).catch((err: Error) =>
      assert.fail(`${err.message}: the failing chunk was not a call of its own: ${JSON.stringify(chunks().map((f) => f.inputs))}`),
    );
  });

  test('HTTP /v1/embeddings: 422, OpenAI shape, no data', async () => {
    const r = await api.post('/v1/embeddings', { model: 'fake', input: inputs('openai') });
    assert.equal(r.status, 422, JSON.stringify(r.body));
    assert.equal(r.body.error.type, 'invalid_request_error');
    assert.equal(r.body.data, undefined);
  });

  test('gRPC EmbedArrow: INVALID_ARGUMENT, teiplex-error-code VALIDATION, no arrow_ipc', async () => {
    const err = await unary(c, 'EmbedArrow', { target: { instance_name: 'fake' }, arrow_ipc: Buffer.from(encodeTexts(inputs('arrow'))) }).then(
      (r) => assert.fail(`answered: ${JSON.stringify(r.res).slice(0, 200)}`),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `${grpc.status[err.code]}: ${err.details}`);
    assert.deepEqual(err.metadata.get('teiplex-error-code'), ['VALIDATION']);
    assert.match(err.details, /fake failure/);
  });
});
