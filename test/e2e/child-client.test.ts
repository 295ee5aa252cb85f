/**
 * The manager's client to one child (src/child/child-client.ts) against real children on
 * loopback: two `teiplex router` processes (one with teiplex.v1.Batch, one without) with small
 * batch limits, so requests are split; and in-process grpc-js servers standing in for a child
 * whose answers a test must choose (a Batch service that names the failing input in its trailers).
 * The Engine's answers equal the child's own per-input answers whichever path made them; Batch
 * support is learned (UNIMPLEMENTED -> tei.v1, remembered); token-id inputs are decoded by the
 * child first; a failure is the TeiplexError the child's status means; cancellation and deadlines
 * end every call.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { ChildChannel } from '../../src/child/child-channel.js';
import { ChildClient } from '../../src/child/child-client.js';
import { CallScope } from '../../src/child/call-scope.js';
import { childStatusOf } from '../../src/child/child-status.js';
import { DENSE } from '../../src/child/row-kinds.js';
import { TeiplexError } from '../../src/common/errors.js';
import { ERROR_CODE_KEY, ERROR_INDEX_KEY } from '../../src/tei/grpc-status.js';
import { serviceDefinition } from '../../src/tei/proto.js';
import { testModel } from '../helpers/models.js';
import { startRouterProcess, type RouterProcess } from '../helpers/router-process.js';
import { until } from '../helpers/wait.js';

const SETTINGS = { maxMessageBytes: 4 * 1024 * 1024, keepaliveMs: 30_000, keepaliveTimeoutMs: 10_000 };
const LIMITS = ['--max-client-batch-size', '4', '--max-concurrent-requests', '16', '--threads', '1'];
const TEXTS = Array.from({ length: 11 }, (_, i) => `text number ${i} ${'word '.repeat(i)}`);

function client(port: number, who = 'child'): ChildClient {
  return new ChildClient(new ChildChannel(port, SETTINGS), { who: `instance '${who}'`, timeoutMs: 30_000 });
}

function close(a: ArrayLike<number>, b: ArrayLike<number>): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-5, `value ${i}: ${a[i]} vs ${b[i]}`);
}

const routers: RouterProcess[] = [];
let batchPort: number;
let streamPort: number;

before(async () => {
  const model = await testModel({ kind: 'embedding' });
  const [a, b] = await Promise.all([
    startRouterProcess(['--model-id', model, ...LIMITS]),
    startRouterProcess(['--model-id', model, ...LIMITS], { TEIPLEX_ROUTER_DISABLE_BATCH: '1' }),
  ]);
  routers.push(a, b);
  batchPort = a.grpcPort;
  streamPort = b.grpcPort;
});

after(async () => {
  await Promise.all(routers.map((r) => r.stop()));
});

describe('ChildClient against teiplex router children', () => {
  test('embed past max_client_batch_size: Batch when served, else tei.v1 (learned from UNIMPLEMENTED); same rows as one-by-one', async () => {
    const opts = { truncate: false, truncationDirection: 'right', normalize: true } as const;
    const one = client(batchPort);
    const singles = await Promise.all(TEXTS.map((t) => one.embed([t], opts)));
    for (const [port, learned] of [
      [batchPort, 'yes'],
      [streamPort, 'no'],
    ] as const) {
      const c = client(port);
      assert.equal(c.known.batch, 'unknown');
      const info = await c.info();
      assert.equal(info.max_client_batch_size, 4);
      const out = await c.embed(TEXTS, opts);
      assert.equal(c.known.batch, learned, `port ${port}`);
      assert.equal(out.results.length, TEXTS.length);
      out.results.forEach((row, i) => close(row, singles[i]!.results[0]!));
      // Once learned, still right.
      const again = await c.embed(TEXTS.slice(0, 6), opts);
      again.results.forEach((row, i) => close(row, singles[i]!.results[0]!));
    }
  });

  test('token-id inputs are decoded by the child first: the same rows as their text', async () => {
    const c = client(streamPort);
    const [tokens] = await c.tokenize(['hello world'], true);
    const ids = tokens!.map((t) => t.id);
    const opts = { truncate: false, truncationDirection: 'right' } as const;
    const out = await c.embedAll([ids, 'hello world'], opts);
    close(out.results[0]!.values, out.results[1]!.values);
    assert.deepEqual(await c.decode([ids], true), ['hello world']);
  });

  test('onFloats is told the floats of each chunk as it arrives; throwing stops the call with that error', async () => {
    const c = client(batchPort);
    const seen: number[] = [];
    const stop = new TeiplexError('PAYLOAD_TOO_LARGE', 'too much');
    const onFloats = (n: number): void => {
      seen.push(n);
      if (seen.length === 2) throw stop;
    };
    await assert.rejects(c.embedAll(TEXTS, { truncate: false, truncationDirection: 'right' }, { onFloats }), (e: unknown) => e === stop);
    assert.ok(seen.length >= 2 && seen.every((n) => n > 0), String(seen));
  });

  test("a child's refusal is the TeiplexError its status means, the raw status kept", async () => {
    const c = client(batchPort);
    const texts = [...TEXTS];
    texts[6] = '';
    const err = await c.embed(texts, { truncate: false, truncationDirection: 'right', normalize: true }).then(
      () => assert.fail('should fail'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof TeiplexError, String(err));
    assert.equal(err.grpcStatus, grpc.status.INVALID_ARGUMENT);
    assert.equal(childStatusOf(err)?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err.message, /cannot be empty/);
  });

  test('cancellation: an aborted signal ends the call at once with CANCELLED; a passed deadline with REQUEST_TIMEOUT', async () => {
    const c = client(streamPort);
    const ac = new AbortController();
    const p = c.embed(Array.from({ length: 200 }, (_, i) => `cancelled ${i}`), { truncate: true, truncationDirection: 'right', normalize: true }, { signal: ac.signal });
    ac.abort();
    await assert.rejects(p, (e: unknown) => e instanceof TeiplexError && e.code === 'CANCELLED');
    await assert.rejects(c.info({ deadlineMs: Date.now() - 1 }), (e: unknown) => e instanceof TeiplexError && e.code === 'REQUEST_TIMEOUT');
    // A failed Info fetch is not kept.
    assert.equal((await c.info()).max_client_batch_size, 4);
  });
});

describe('ChildClient against stand-in children (grpc-js on loopback)', () => {
  let server: grpc.Server;
  let port: number;
  let batchCalls = 0;
  let infoCalls = 0;
  /** While set, Info answers only once it resolves (a test holds an Info call in flight). */
  let infoGate: Promise<void> | undefined;

  before(async () => {
    server = new grpc.Server();
    const info = serviceDefinition('tei.v1.Info');
    const batch = serviceDefinition('teiplex.v1.Batch');
    server.addService(info, {
      Info: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        infoCalls++;
        const answer = () => cb(null, { model_id: 'stand-in', model_dtype: 'float32', model_type: 'MODEL_TYPE_EMBEDDING', max_concurrent_requests: 6, max_client_batch_size: 3, max_batch_tokens: 1000, max_input_length: 128, tokenization_workers: 1, version: '0' });
        if (infoGate === undefined) answer();
        else void infoGate.then(answer);
      },
    });
    server.addService(batch, {
      // Two floats per input: [its position in the call, its length]; an input 'bad' is refused, naming it.
      EmbedBatch: (call: grpc.ServerUnaryCall<{ inputs: string[] }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        batchCalls++;
        const inputs = call.request.inputs;
        const bad = inputs.indexOf('bad');
        if (bad >= 0) {
          const md = new grpc.Metadata();
          md.set(ERROR_CODE_KEY, 'VALIDATION');
          md.set(ERROR_INDEX_KEY, String(bad));
          cb({ code: grpc.status.INVALID_ARGUMENT, details: '`inputs` is bad', metadata: md });
          return;
        }
        const values = Buffer.alloc(inputs.length * 8);
        inputs.forEach((t, i) => (values.writeFloatLE(i, i * 8), values.writeFloatLE(t.length, i * 8 + 4)));
        cb(null, { dim: 2, embeddings: values });
      },
      EmbedSparseBatch: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.UNIMPLEMENTED, details: 'no' }),
      EmbedAllBatch: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.UNIMPLEMENTED, details: 'no' }),
    });
    port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  });

  after(() => server.forceShutdown());

  test('Info is fetched once and shared by concurrent callers', async () => {
    const c = client(port);
    const before = infoCalls;
    let release!: () => void;
    infoGate = new Promise<void>((r) => (release = r));
    try {
      const first = c.info();
      // The first caller's Info is in flight at the child (held there) when the others ask.
      await until('an Info call in flight at the stand-in', () => infoCalls > before);
      const infos = [first, ...Array.from({ length: 4 }, () => c.info())];
      release();
      for (const i of await Promise.all(infos)) assert.equal(i.max_client_batch_size, 3);
    } finally {
      release();
      infoGate = undefined;
    }
    assert.equal(infoCalls - before, 1);
  });

  test('row-wise requests: chunks within half the input budget, rows in order; the child\'s input index becomes the row of the whole request', async () => {
    const c = client(port);
    const texts = Array.from({ length: 10 }, (_, i) => 'x'.repeat(i + 1));
    const source = { length: texts.length, bytesOf: (i: number) => texts[i]!.length, text: (i: number) => texts[i]!, slice: (a: number, b: number) => texts.slice(a, b) };
    const scope = new CallScope(Date.now() + 10_000);
    const before = batchCalls;
    const out = await c.rows(scope, DENSE, source, { truncate: false });
    assert.equal(out.path, 'batch');
    // max_concurrent_requests 6: chunks of 3.
    assert.equal(batchCalls - before, 4);
    out.rows.forEach((r, i) => assert.deepEqual([...r], [i % 3, i + 1]));

    texts[7] = 'bad';
    const failing = await c.rows(new CallScope(Date.now() + 10_000), DENSE, source, { truncate: false }).then(
      () => assert.fail('should fail'),
      (e: unknown) => e,
    );
    assert.ok(failing instanceof TeiplexError);
    assert.equal(failing.code, 'VALIDATION');
    assert.equal(failing.index, 7);
    assert.match(failing.message, /^row 7: `inputs` is bad/);
  });

  test('the Engine splits past max_client_batch_size and falls back per kind: UNIMPLEMENTED from a Batch method is remembered', async () => {
    const c = client(port);
    const out = await c.embed(['a', 'bb', 'ccc', 'dddd'], { truncate: false, truncationDirection: 'right', normalize: true });
    assert.equal(c.known.batch, 'yes');
    assert.deepEqual(
      out.results.map((r) => [...r]),
      [
        [0, 1],
        [1, 2],
        [2, 3],
        [0, 4],
      ],
    );
    // Sparse: the stand-in's EmbedSparseBatch is UNIMPLEMENTED and it has no tei.v1.Embed: the tei.v1 call fails as WRONG_MODEL_TYPE.
    await assert.rejects(c.embedSparse(['a', 'b'], { truncate: false, truncationDirection: 'right' }), (e: unknown) => e instanceof TeiplexError && e.code === 'WRONG_MODEL_TYPE');
    assert.equal(c.known.batch, 'no');
  });

  test('token classification on a child without teiplex.v1.TokenClassification (a TEI child): WRONG_MODEL_TYPE naming it', async () => {
    const c = client(port);
    await assert.rejects(
      c.predictTokens(['a', 'b'], { truncate: false, truncationDirection: 'right', rawScores: false, aggregation: 'simple' }),
      (e: unknown) => e instanceof TeiplexError && e.code === 'WRONG_MODEL_TYPE' && /instance 'child' does not serve token classification/.test(e.message),
    );
  });

  test("a stream's failure names the row by the message position the child names, not by the answers so far", async () => {
    const embed = serviceDefinition('tei.v1.Embed');
    const streamOnly = new grpc.Server();
    streamOnly.addService(serviceDefinition('tei.v1.Info'), {
      Info: (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { model_type: 'MODEL_TYPE_EMBEDDING', max_concurrent_requests: 64, max_client_batch_size: 64 }),
    });
    streamOnly.addService(embed, {
      // Reads every message before answering any: the failing one is named by its position.
      EmbedStream: (call: grpc.ServerDuplexStream<{ inputs: string }, unknown>) => {
        const got: string[] = [];
        call.on('data', (m: { inputs: string }) => got.push(m.inputs));
        call.on('end', () => {
          const bad = got.indexOf('bad');
          const md = new grpc.Metadata();
          md.set(ERROR_CODE_KEY, 'VALIDATION');
          md.set(ERROR_INDEX_KEY, String(bad));
          call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: '`inputs` is bad', metadata: md });
        });
      },
    });
    const p = await new Promise<number>((resolve, reject) => streamOnly.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, n) => (e ? reject(e) : resolve(n))));
    try {
      const c = new ChildClient(new ChildChannel(p, SETTINGS), { who: "instance 'tei'", timeoutMs: 10_000, batch: 'no' });
      const texts = Array.from({ length: 10 }, (_, i) => (i === 7 ? 'bad' : `t${i}`));
      const source = { length: texts.length, bytesOf: (i: number) => texts[i]!.length, text: (i: number) => texts[i]!, slice: (a: number, b: number) => texts.slice(a, b) };
      const err = await c.rows(new CallScope(Date.now() + 10_000), DENSE, source, { truncate: false }).then(
        () => assert.fail('should fail'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof TeiplexError);
      assert.deepEqual([err.code, err.index], ['VALIDATION', 7]);
      assert.match(err.message, /^row 7: `inputs` is bad/);
    } finally {
      streamOnly.forceShutdown();
    }
  });
});
