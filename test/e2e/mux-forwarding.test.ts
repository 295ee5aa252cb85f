/**
 * The gRPC multiplexer of `teiplex serve`, end to end: a real manager with real `teiplex router`
 * children (classifier, two replicas of an embedding model, reranker, SPLADE). Every forwarded RPC
 * answers what the child answers when called directly; routing by instance_name, model_id and
 * instance_index; model_id balances on calls in flight; errors (unknown, missing or changing
 * target, missing request, malformed bytes, message size both ways) with clear statuses; the
 * child's own statuses pass through; health per instance; reflection; ListInstances; metrics.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { INSTANCE_HEADER } from '../../src/mux/forward.js';
import { MUX_SERVICE } from '../../src/mux/protos.js';
import { startManager, type ManagerProcess, loopbackConfig } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import {
  assertClose,
  bidi,
  clientStream,
  direct,
  errorCode,
  grpcError,
  health,
  mux,
  rawUnary,
  reflect,
  unary,
  withoutTimes,
  type AnyClient,
} from '../helpers/mux-client.js';

const { status } = grpc;
/** 48 KiB: small enough to exceed with a Tokenize answer, large enough for everything else. */
const MAX_MESSAGE_MB = 0.046875;

let dir: string;
let m: ManagerProcess;
let client: AnyClient;
let models: Record<'embedding' | 'splade' | 'reranker' | 'classifier', string>;
const ports: Record<string, number> = {};
const directClients: AnyClient[] = [];

function childClient(instance: string, service: Parameters<typeof direct>[1]): AnyClient {
  const c = direct(ports[instance], service);
  directClients.push(c);
  return c;
}

const byName = (instance_name: string) => ({ instance_name });

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-mux-'));
  models = {
    embedding: await testModel({ kind: 'embedding' }),
    splade: await testModel({ kind: 'splade' }),
    reranker: await testModel({ kind: 'reranker' }),
    classifier: await testModel({ kind: 'classifier' }),
  };
  const instance = (name: string, model: string, extra = '') => `[[instances]]\nname = "${name}"\nmodel_id = ${JSON.stringify(model)}\nmax_concurrent_requests = 64\n${extra}`;
  const file = path.join(dir, 'mux.toml');
  await writeFile(
    file,
    `${loopbackConfig(dir)}health_check_interval_secs = 5
startup_timeout_secs = 120
grpc_request_timeout_secs = 30
grpc_max_message_size_mb = ${MAX_MESSAGE_MB}
${instance('cls', models.classifier)}${instance('emb-a', models.embedding)}${instance('emb-b', models.embedding)}${instance('rerank', models.reranker)}${instance('splade', models.splade, 'pooling = "splade"\n')}`,
  );
  m = await startManager(file);
  assert.ok(Number(m.ready.grpc_port) > 0, 'the ready line names the bound grpc_port');
  for (const name of ['cls', 'emb-a', 'emb-b', 'rerank', 'splade']) ports[name] = (await m.waitFor(name, (i) => i.status === 'running', 120_000)).port;
  client = mux(Number(m.ready.grpc_port));
});

after(async () => {
  client?.close();
  for (const c of directClients) c.close();
  if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly with the multiplexer');
  await rm(dir, { recursive: true, force: true });
});

describe('every RPC through the multiplexer equals the child called directly', () => {
  const texts = ['hello world', 'the quick brown fox jumps over the lazy dog', 'alpha beta gamma'];

  test('Info (by name, by model_id, by index; with and without a request)', async () => {
    for (const [name, service] of [['cls', 'MODEL_TYPE_CLASSIFIER'], ['emb-a', 'MODEL_TYPE_EMBEDDING'], ['rerank', 'MODEL_TYPE_RERANKER'], ['splade', 'MODEL_TYPE_EMBEDDING']] as const) {
      const want = await unary(childClient(name, 'tei.v1.Info'), 'Info', {});
      const got = await unary(client, 'Info', { target: byName(name) });
      assert.deepEqual(got.res, want.res, name);
      assert.equal(got.res.model_type, service);
      assert.deepEqual(got.headers.get(INSTANCE_HEADER), [name]);
      assert.deepEqual((await unary(client, 'Info', { target: byName(name), request: {} })).res, want.res);
    }
  });

  test('Embed, EmbedStream, EmbedAll, EmbedAllStream (embedding model)', async () => {
    const embed = childClient('emb-a', 'tei.v1.Embed');
    for (const req of [{ inputs: texts[0] }, { inputs: texts[1], normalize: false, dimensions: 8 }, { inputs: texts[2], truncate: true, truncation_direction: 'TRUNCATION_DIRECTION_LEFT' }]) {
      const want = await unary(embed, 'Embed', req);
      const got = await unary(client, 'Embed', { target: byName('emb-a'), request: req });
      assertClose(withoutTimes(got.res), withoutTimes(want.res));
      // TEI's timing headers come through, with the serving instance.
      assert.equal(got.headers.get('x-compute-tokens')[0], want.headers.get('x-compute-tokens')[0]);
      assert.deepEqual(got.headers.get(INSTANCE_HEADER), ['emb-a']);
      const all = await unary(client, 'EmbedAll', { target: byName('emb-a'), request: { inputs: req.inputs } });
      assertClose(withoutTimes(all.res), withoutTimes((await unary(embed, 'EmbedAll', { inputs: req.inputs })).res));
    }
    const want = await bidi(embed, 'EmbedStream', texts.map((inputs) => ({ inputs })));
    // Target on the first message only, or repeated on every one: both fine.
    for (const every of [false, true]) {
      const got = await bidi(client, 'EmbedStream', texts.map((inputs, i) => ({ target: i === 0 || every ? byName('emb-a') : undefined, request: { inputs } })));
      assert.equal(got.error, undefined);
      assertClose(withoutTimes(got.responses), withoutTimes(want.responses));
    }
    const wantAll = await bidi(embed, 'EmbedAllStream', texts.map((inputs) => ({ inputs })));
    const gotAll = await bidi(client, 'EmbedAllStream', texts.map((inputs) => ({ target: byName('emb-a'), request: { inputs } })));
    assert.equal(gotAll.error, undefined);
    assertClose(withoutTimes(gotAll.responses), withoutTimes(wantAll.responses));
  });

  test('EmbedSparse, EmbedSparseStream (SPLADE model)', async () => {
    const embed = childClient('splade', 'tei.v1.Embed');
    const want = await unary(embed, 'EmbedSparse', { inputs: texts[1] });
    const got = await unary(client, 'EmbedSparse', { target: byName('splade'), request: { inputs: texts[1] } });
    assert.ok(got.res.sparse_embeddings.length > 0);
    assertClose(withoutTimes(got.res), withoutTimes(want.res));
    const ws = await bidi(embed, 'EmbedSparseStream', texts.map((inputs) => ({ inputs })));
    const gs = await bidi(client, 'EmbedSparseStream', texts.map((inputs) => ({ target: byName('splade'), request: { inputs } })));
    assert.equal(gs.error, undefined);
    assertClose(withoutTimes(gs.responses), withoutTimes(ws.responses));
  });

  test('Predict, PredictStream (classifier); PredictPair, PredictPairStream (reranker)', async () => {
    const cls = childClient('cls', 'tei.v1.Predict');
    for (const req of [{ inputs: texts[0] }, { inputs: texts[1], raw_scores: true }]) {
      assertClose(withoutTimes((await unary(client, 'Predict', { target: byName('cls'), request: req })).res), withoutTimes((await unary(cls, 'Predict', req)).res));
    }
    const ps = await bidi(client, 'PredictStream', texts.map((inputs) => ({ target: byName('cls'), request: { inputs } })));
    assert.equal(ps.error, undefined);
    assertClose(withoutTimes(ps.responses), withoutTimes((await bidi(cls, 'PredictStream', texts.map((inputs) => ({ inputs })))).responses));

    const pairs = childClient('rerank', 'tei.v1.Predict');
    const pair = { inputs: ['what is a fox', texts[1]] };
    assertClose(withoutTimes((await unary(client, 'PredictPair', { target: byName('rerank'), request: pair })).res), withoutTimes((await unary(pairs, 'PredictPair', pair)).res));
    const pps = await bidi(client, 'PredictPairStream', texts.map((t) => ({ target: byName('rerank'), request: { inputs: ['q', t] } })));
    assert.equal(pps.error, undefined);
    assertClose(withoutTimes(pps.responses), withoutTimes((await bidi(pairs, 'PredictPairStream', texts.map((t) => ({ inputs: ['q', t] })))).responses));
  });

  test('Rerank, RerankStream (reranker)', async () => {
    const rerank = childClient('rerank', 'tei.v1.Rerank');
    const req = { query: 'which animal is quick', texts, return_text: true };
    const got = await unary(client, 'Rerank', { target: byName('rerank'), request: req });
    assert.equal(got.res.ranks.length, texts.length);
    assertClose(withoutTimes(got.res), withoutTimes((await unary(rerank, 'Rerank', req)).res));
    const gs = await clientStream(client, 'RerankStream', texts.map((text) => ({ target: byName('rerank'), request: { query: req.query, text, return_text: true } })));
    const ws = await clientStream(rerank, 'RerankStream', texts.map((text) => ({ query: req.query, text, return_text: true })));
    assertClose(withoutTimes(gs), withoutTimes(ws));
  });

  test('Tokenize, TokenizeStream, Decode, DecodeStream', async () => {
    const tok = childClient('emb-a', 'tei.v1.Tokenize');
    const want = await unary(tok, 'Tokenize', { inputs: texts[1], add_special_tokens: true });
    const got = await unary(client, 'Tokenize', { target: byName('emb-a'), request: { inputs: texts[1], add_special_tokens: true } });
    assert.deepEqual(got.res, want.res);
    const ids = got.res.tokens.map((t: { id: number }) => t.id);
    const decoded = await unary(client, 'Decode', { target: byName('emb-a'), request: { ids, skip_special_tokens: true } });
    assert.deepEqual(decoded.res, (await unary(tok, 'Decode', { ids, skip_special_tokens: true })).res);
    const ts = await bidi(client, 'TokenizeStream', texts.map((inputs) => ({ target: byName('emb-a'), request: { inputs } })));
    assert.equal(ts.error, undefined);
    assert.deepEqual(ts.responses, (await bidi(tok, 'TokenizeStream', texts.map((inputs) => ({ inputs })))).responses);
    const ds = await bidi(client, 'DecodeStream', ts.responses.map((r) => ({ target: byName('emb-a'), request: { ids: r.tokens.map((t: { id: number }) => t.id), skip_special_tokens: true } })));
    assert.equal(ds.error, undefined);
    assert.deepEqual(ds.responses.map((r) => r.text), (await bidi(tok, 'DecodeStream', ts.responses.map((r) => ({ ids: r.tokens.map((t: { id: number }) => t.id), skip_special_tokens: true })))).responses.map((r) => r.text));
  });

  test('an empty bidirectional stream ends OK with no answer', async () => {
    const got = await bidi(client, 'EmbedStream', []);
    assert.equal(got.error, undefined);
    assert.deepEqual(got.responses, []);
  });

  test('ListInstances; EmbedArrow and EmbedSparseArrow answer (test/mux-arrow.test.ts tests them)', async () => {
    const { res } = await unary(client, 'ListInstances', {});
    assert.deepEqual(
      res.instances.map((i: { name: string; instance_index: number; status: string; serving: boolean; runtime: string }) => [i.name, i.instance_index, i.status, i.serving, i.runtime]),
      [['cls', 0, 'running', true, 'router'], ['emb-a', 1, 'running', true, 'router'], ['emb-b', 2, 'running', true, 'router'], ['rerank', 3, 'running', true, 'router'], ['splade', 4, 'running', true, 'router']],
    );
    assert.equal(res.instances[1].model_id, models.embedding);
    assert.ok((await unary(client, 'EmbedArrow', { target: byName('emb-a'), arrow_ipc: Buffer.alloc(0) })).res.arrow_ipc.length > 0, 'an empty request gets the schema');
    assert.ok((await unary(client, 'EmbedSparseArrow', { target: byName('splade'), arrow_ipc: Buffer.alloc(0) })).res.arrow_ipc.length > 0);
  });
});

describe('routing', () => {
  const served = async (target: unknown, method = 'Info', request: unknown = {}): Promise<string> => (await unary(client, method, { target, request })).headers.get(INSTANCE_HEADER)[0] as string;

  test('instance_name, instance_index (the name-ordered list), model_id', async () => {
    for (const [index, name] of ['cls', 'emb-a', 'emb-b', 'rerank', 'splade'].entries()) {
      assert.equal(await served({ instance_index: index }), name, `index ${index}`);
      assert.equal(await served(byName(name)), name);
    }
    assert.equal((await unary(client, 'Info', { target: { instance_index: 0 } })).res.model_type, 'MODEL_TYPE_CLASSIFIER');
    assert.equal(await served({ model_id: models.reranker }), 'rerank');
    assert.equal(await served({ model_id: models.splade }, 'EmbedSparse', { inputs: 'x' }), 'splade');
    // A stream routed by model_id or index.
    const s = await bidi(client, 'EmbedSparseStream', [{ target: { model_id: models.splade }, request: { inputs: 'a' } }, { request: { inputs: 'b' } }]);
    assert.equal(s.error, undefined);
    assert.deepEqual(s.headers.get(INSTANCE_HEADER), ['splade']);
    assert.equal((await bidi(client, 'TokenizeStream', [{ target: { instance_index: 4 }, request: { inputs: 'a' } }])).headers.get(INSTANCE_HEADER)[0], 'splade');
  });

  test('model_id: replicas share the load, in turn when equally loaded', async () => {
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) seen.push(await served({ model_id: models.embedding }, 'Embed', { inputs: `text ${i}` }));
    assert.deepEqual(seen.filter((s) => s === 'emb-a').length, 3, seen.join(','));
    assert.deepEqual(seen.filter((s) => s === 'emb-b').length, 3, seen.join(','));
    // Concurrent calls: both replicas serve.
    const many = await Promise.all(Array.from({ length: 32 }, (_, i) => served({ model_id: models.embedding }, 'Embed', { inputs: `concurrent ${i}` })));
    assert.ok(many.includes('emb-a') && many.includes('emb-b'), many.join(','));
  });

  test('model_id: the replica with fewer calls in flight is chosen', async () => {
    // An open stream keeps one call in flight on the replica it was routed to...
    const stream = client.EmbedStream() as grpc.ClientDuplexStream<unknown, unknown>;
    const firstAnswer = new Promise<void>((resolve) => stream.once('data', () => resolve()));
    const headers = new Promise<string>((resolve) => stream.once('metadata', (md: grpc.Metadata) => resolve(md.get(INSTANCE_HEADER)[0] as string)));
    stream.on('error', () => undefined);
    stream.write({ target: { model_id: models.embedding }, request: { inputs: 'held open' } });
    await firstAnswer;
    const busy = await headers;
    // ...so every unary call by model_id goes to the other one.
    const other = busy === 'emb-a' ? 'emb-b' : 'emb-a';
    for (let i = 0; i < 4; i++) assert.equal(await served({ model_id: models.embedding }, 'Embed', { inputs: `x ${i}` }), other);
    const { res } = await unary(client, 'ListInstances', {});
    assert.equal(res.instances.find((i: { name: string }) => i.name === busy).inflight_requests, 1);
    stream.end();
    await new Promise((r) => stream.on('status', r));
  });
});

describe('errors', () => {
  test('unknown targets: NOT_FOUND naming them', async () => {
    const req = { request: { inputs: 'x' } };
    await assert.rejects(unary(client, 'Embed', { target: byName('nope'), ...req }), grpcError(status.NOT_FOUND, 'INSTANCE_NOT_FOUND', /instance 'nope' not found/));
    await assert.rejects(unary(client, 'Embed', { target: { model_id: 'org/unknown' }, ...req }), grpcError(status.NOT_FOUND, 'MODEL_NOT_FOUND', /no instance serves model_id 'org\/unknown'/));
    await assert.rejects(unary(client, 'Embed', { target: { instance_index: 5 }, ...req }), grpcError(status.NOT_FOUND, 'INSTANCE_NOT_FOUND', /instance_index 5 is out of range: there are 5 instances/));
    const s = await bidi(client, 'EmbedStream', [{ target: byName('nope'), ...req }]);
    assert.ok(s.error, 'the stream fails');
    grpcError(status.NOT_FOUND, 'INSTANCE_NOT_FOUND', /instance 'nope' not found/)(s.error);
  });

  test('missing target or request, a target naming nothing, malformed bytes: INVALID_ARGUMENT', async () => {
    await assert.rejects(unary(client, 'Embed', { request: { inputs: 'x' } }), grpcError(status.INVALID_ARGUMENT, 'BAD_REQUEST', /'target' is required/));
    await assert.rejects(unary(client, 'Embed', { target: {}, request: { inputs: 'x' } }), grpcError(status.INVALID_ARGUMENT, 'BAD_REQUEST', /'target' is required/));
    await assert.rejects(unary(client, 'Embed', { target: byName('emb-a') }), grpcError(status.INVALID_ARGUMENT, 'BAD_REQUEST', /'request' is required/));
    await assert.rejects(unary(client, 'Info', {}), grpcError(status.INVALID_ARGUMENT, 'BAD_REQUEST', /'target' is required/));
    const port = Number(m.ready.grpc_port);
    await assert.rejects(rawUnary(port, `/${MUX_SERVICE}/Embed`, Buffer.from([0x0a, 0x10, 0x0a])), grpcError(status.INVALID_ARGUMENT, 'BAD_REQUEST', /malformed message: .*runs past the end/));
    await assert.rejects(rawUnary(port, `/${MUX_SERVICE}/Embed`, Buffer.from([0x12, 0x02, 0x0a])), grpcError(status.INVALID_ARGUMENT, 'BAD_REQUEST', /malformed/));
    // The stream's first message must carry the target, every message a request.
    let s = await bidi(client, 'EmbedStream', [{ request: { inputs: 'x' } }]);
    assert.ok(s.error, 'the stream fails');
    grpcError(status.INVALID_ARGUMENT, 'BAD_REQUEST', /message 1: 'target' is required/)(s.error);
    s = await bidi(client, 'EmbedStream', [{ target: byName('emb-a'), request: { inputs: 'x' } }, { target: byName('emb-a') }]);
    assert.ok(s.error, 'the stream fails');
    grpcError(status.INVALID_ARGUMENT, 'BAD_REQUEST', /message 2: 'request' is required/)(s.error);
    await assert.rejects(clientStream(client, 'RerankStream', []), grpcError(status.INVALID_ARGUMENT, 'BAD_REQUEST', /no message/));
  });

  test('a different target later in a stream fails it with INVALID_ARGUMENT', async () => {
    for (const later of [byName('emb-b'), { model_id: models.embedding }, { instance_index: 1 }]) {
      const s = await bidi(client, 'EmbedStream', [
        { target: byName('emb-a'), request: { inputs: 'one' } },
        { request: { inputs: 'two' } },
        { target: later, request: { inputs: 'three' } },
      ]);
      assert.ok(s.error, `the stream fails: ${JSON.stringify(later)}`);
      grpcError(status.INVALID_ARGUMENT, 'BAD_REQUEST', /message 3: target .* differs from this stream's target instance_name 'emb-a'/)(s.error);
    }
    await assert.rejects(
      clientStream(client, 'RerankStream', [{ target: byName('rerank'), request: { query: 'q', text: 'a' } }, { target: byName('cls'), request: { query: 'q', text: 'b' } }]),
      grpcError(status.INVALID_ARGUMENT, 'BAD_REQUEST', /differs/),
    );
  });

  test("the child's statuses pass through with their messages", async () => {
    const cases: Array<[string, string, unknown, Parameters<typeof direct>[1]]> = [
      ['emb-a', 'Embed', { inputs: '' }, 'tei.v1.Embed'],
      ['emb-a', 'Rerank', { query: 'q', texts: ['a'] }, 'tei.v1.Rerank'],
      ['cls', 'PredictPair', { inputs: ['a', 'b', 'c'] }, 'tei.v1.Predict'],
    ];
    for (const [instance, method, req, service] of cases) {
      const want = await unary(childClient(instance, service), method, req).then(
        () => assert.fail('expected an error'),
        (e: grpc.ServiceError) => e,
      );
      await assert.rejects(unary(client, method, { target: byName(instance), request: req }), (e: grpc.ServiceError) => {
        assert.equal(e.code, want.code, `${method}: ${e.details}`);
        assert.ok(errorCode(want) !== undefined, `${method}: the router child names its code`);
        assert.equal(errorCode(e), errorCode(want), `${method}: the child's teiplex-error-code passes through`);
        assert.equal(e.details, want.details);
        return true;
      });
    }
    const s = await bidi(client, 'EmbedStream', [{ target: byName('emb-a'), request: { inputs: 'fine' } }, { request: { inputs: '' } }]);
    assert.equal(s.responses.length, 1, 'the answer before the failure arrives');
    assert.ok(s.error, 'the stream fails');
    grpcError(status.INVALID_ARGUMENT, 'VALIDATION', /empty/)(s.error);
  });

  test('message size limit (grpc_max_message_size_mb) on requests and on answers: RESOURCE_EXHAUSTED', async () => {
    const limit = MAX_MESSAGE_MB * 1024 * 1024;
    const word = 'alpha beta gamma delta ';
    await assert.rejects(unary(client, 'Embed', { target: byName('emb-a'), request: { inputs: word.repeat(Math.ceil((limit + 100) / word.length)), truncate: true } }), grpcError(status.RESOURCE_EXHAUSTED, 'PAYLOAD_TOO_LARGE', /^Received message larger than max \(\d+ vs \d+\)/));
    // A request under the limit whose answer is over it.
    const inputs = word.repeat(Math.floor((limit * 0.6) / word.length));
    const tok = await unary(childClient('emb-a', 'tei.v1.Tokenize'), 'Tokenize', { inputs }).catch((e: grpc.ServiceError) => e);
    assert.ok(!(tok instanceof Error), 'the child answers it directly');
    await assert.rejects(unary(client, 'Tokenize', { target: byName('emb-a'), request: { inputs } }), grpcError(status.RESOURCE_EXHAUSTED, 'PAYLOAD_TOO_LARGE', /^Received message larger than max \(\d+ vs\. \d+\)/));
    // Still fine afterwards.
    assert.equal((await unary(client, 'Embed', { target: byName('emb-a'), request: { inputs: 'ok' } })).res.embeddings.length > 0, true);
  });
});

describe('health, reflection, metrics', () => {
  test('grpc.health.v1: overall, the service, each instance by name; unknown names NOT_FOUND', async () => {
    const h = health(Number(m.ready.grpc_port));
    try {
      for (const name of ['', MUX_SERVICE, 'cls', 'emb-a', 'emb-b', 'rerank', 'splade']) assert.equal((await unary(h, 'Check', { service: name })).res.status, 'SERVING', name);
      await assert.rejects(unary(h, 'Check', { service: 'nope' }), grpcError(status.NOT_FOUND));
      const list = await unary(h, 'List', {});
      assert.deepEqual(Object.keys(list.res.statuses).sort(), ['', MUX_SERVICE, 'cls', 'emb-a', 'emb-b', 'rerank', 'splade'].sort());
    } finally {
      h.close();
    }
  });

  test('reflection (v1 and v1alpha) lists the multiplexer, health and reflection, and describes the service', async () => {
    for (const version of ['v1', 'v1alpha'] as const) {
      const { services, files } = await reflect(Number(m.ready.grpc_port), version, MUX_SERVICE);
      assert.ok(services.includes(MUX_SERVICE), services.join(', '));
      assert.ok(services.includes('grpc.health.v1.Health'), services.join(', '));
      assert.ok(!services.includes('tei.v1.Embed'), 'tei.v1 services are not served on this port');
      // protobufjs names the descriptors by package; the service's file and its tei.v1 import.
      assert.ok(files.some((f) => f.startsWith('tei_multiplexer')) && files.some((f) => f.startsWith('tei_v1') || f.startsWith('tei/v1')), files.join(', '));
    }
  });

  test('metrics on the manager /metrics: requests by instance, model, method, code; durations; in flight', async () => {
    const text = (await m.api('GET', '/metrics')).body as string;
    const model = JSON.stringify(models.embedding);
    const count = (re: RegExp): number => Number(re.exec(text)?.[1] ?? 0);
    assert.ok(count(new RegExp(`teiplex_requests_total\\{instance="emb-a",model=${model.replace(/[/.]/g, '\\$&')},method="Embed",code="OK"\\} (\\d+)`)) > 0, text.slice(0, 2000));
    assert.ok(count(/teiplex_requests_total\{instance="emb-b",model="[^"]*",method="Embed",code="OK"\} (\d+)/) > 0);
    assert.ok(count(/teiplex_requests_total\{instance="",model="",method="Embed",code="NOT_FOUND"\} (\d+)/) > 0);
    assert.ok(count(/teiplex_requests_total\{instance="emb-a",model="[^"]*",method="Embed",code="INVALID_ARGUMENT"\} (\d+)/) > 0);
    assert.ok(count(/teiplex_request_duration_seconds_count\{instance="emb-a",method="EmbedStream"\} (\d+)/) > 0);
    assert.match(text, /teiplex_request_duration_seconds_bucket\{le="0.001",instance="emb-a",method="Embed"\}/);
    assert.match(text, /teiplex_inflight_requests\{instance="emb-a"\} 0/);
    assert.match(text, /teiplex_inflight_requests\{instance="splade"\} 0/);
  });
});
