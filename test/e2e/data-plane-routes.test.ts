/**
 * The manager's HTTP data plane end to end: a real `teiplex serve` with real children — `emb`
 * (teiplex router: teiplex.v1.Batch path), `emb-tei` (the same model behind a `command` runtime,
 * so the manager speaks plain tei.v1 to it, as to a TEI binary), `splade` and `rerank`, each also
 * serving TEI's HTTP routes itself (`--http-port 0`) so the manager's answers can be compared with
 * the child's own. Every route, model resolution (name, model id, alias, X-Model, two models in
 * one test), splitting past max_client_batch_size in order, the official `openai` client, typed
 * encode gathered across instances, score, and every error path with its status and shape.
 */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { projectPath } from '../../src/common/paths.js';
import { startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { assertErrorCode, assertTeiError, childHttpPort, client, close, instanceToml, writeConfig } from '../helpers/data-plane.js';
import { until } from '../helpers/wait.js';

let dir: string;
let m: ManagerProcess;
let api: ReturnType<typeof client>;
const direct: Record<string, ReturnType<typeof client>> = {};
let models: { embedding: string; splade: string; reranker: string };

const MAX_REQUEST_INPUTS = 300;
const texts = (n: number, tag = 't') => Array.from({ length: n }, (_, i) => `${tag} ${i} ${'word '.repeat(i % 7)}${i % 3 === 0 ? 'alpha' : 'beta'}`);

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-dp-'));
  models = {
    embedding: await testModel({ kind: 'embedding' }),
    splade: await testModel({ kind: 'splade' }),
    reranker: await testModel({ kind: 'reranker' }),
  };
  // A child the manager only knows as "some executable with TEI's flags": tei.v1, no Batch.
  const script = path.join(dir, 'tei-like.sh');
  await writeFile(script, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(projectPath('bin', 'teiplex.js'))} router "$@"\n`);
  await chmod(script, 0o755);
  const http = 'extra_args = ["--http-port", "0"]';
  const file = await writeConfig(
    dir,
    `max_request_inputs = ${MAX_REQUEST_INPUTS}\nhttp_body_limit_mb = 1`,
    instanceToml('emb', models.embedding, `aliases = ["minilm"]\nmax_concurrent_requests = 64\n${http}`) +
      instanceToml('emb-tei', models.embedding, `runtime = "command"\ncommand = ${JSON.stringify(script)}\nmax_concurrent_requests = 2\n${http}`) +
      instanceToml('splade', models.splade, `pooling = "splade"\naliases = ["minilm"]\n${http}`) +
      instanceToml('rerank', models.reranker, `aliases = ["my-reranker"]\n${http}`),
  );
  m = await startManager(file);
  for (const name of ['emb', 'emb-tei', 'splade', 'rerank']) await m.waitFor(name, (i) => i.status === 'running', 120_000);
  for (const name of ['emb', 'emb-tei', 'splade', 'rerank']) direct[name] = client(await childHttpPort(m, name));
  assert.equal(m.ready.data_port, m.apiPort, 'without data_port the data plane shares the admin listener');
  api = client(m.apiPort);
});

after(async () => {
  if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  await rm(dir, { recursive: true, force: true });
});

/** The manager's answer and the child's own for the same body (without `model`). */
async function both(route: string, instance: string, body: Record<string, unknown>) {
  const viaManager = await api.post(route, { ...body, model: instance });
  const viaChild = await direct[instance].post(route, body);
  assert.equal(viaManager.status, 200, `${route} via manager: ${JSON.stringify(viaManager.body)}`);
  assert.equal(viaChild.status, 200, `${route} via child: ${JSON.stringify(viaChild.body)}`);
  assert.equal(viaManager.headers.get('x-teiplex-instance'), instance);
  assert.match(viaManager.headers.get('x-total-time') ?? '', /^\d+$/);
  if (viaChild.headers.get('x-compute-tokens') !== null) {
    // Inference routes: TEI's timing headers, and the child's own token count.
    for (const h of ['x-queue-time', 'x-inference-time']) assert.match(viaManager.headers.get(h) ?? '', /^\d+$/, h);
    assert.equal(viaManager.headers.get('x-compute-tokens'), viaChild.headers.get('x-compute-tokens'), `${route}: token counts`);
  }
  return { got: viaManager.body, want: viaChild.body };
}

describe('TEI routes answer what the child answers itself', () => {
  test('/embed, /embed_all, /tokenize, /decode (embedding model)', async () => {
    for (const body of [{ inputs: 'hello world' }, { inputs: ['a b c', 'the quick brown fox'], normalize: false, dimensions: 8 }, { inputs: ['x y'], truncate: true, truncation_direction: 'Left' }]) {
      const { got, want } = await both('/embed', 'emb', body);
      close(got, want);
    }
    const all = await both('/embed_all', 'emb', { inputs: ['hello', 'a longer text here'] });
    close(all.got, all.want);
    const tok = await both('/tokenize', 'emb', { inputs: ['hello world', 'x'], add_special_tokens: false });
    assert.deepEqual(tok.got, tok.want);
    const dec = await both('/decode', 'emb', { ids: [[101, 7592, 2088, 102], [7592]], skip_special_tokens: false });
    assert.deepEqual(dec.got, dec.want);
  });

  test('/embed_sparse (SPLADE)', async () => {
    const { got, want } = await both('/embed_sparse', 'splade', { inputs: ['hello world', 'sparse text'] });
    close(got, want);
  });

  test('/rerank and /predict (reranker)', async () => {
    const rr = await both('/rerank', 'rerank', { query: 'what is it', texts: ['a', 'b c', 'what it is'], return_text: true, raw_scores: true });
    close(rr.got, rr.want);
    for (const inputs of ['one text', ['a', 'pair'], [['first'], ['second', 'pair']]]) {
      const p = await both('/predict', 'rerank', { inputs });
      close(p.got, p.want);
    }
  });

  test('a plain tei.v1 child (no Batch) gives the same answers as the Batch path', async () => {
    for (const route of ['/embed', '/embed_all', '/tokenize']) {
      const body = { inputs: ['hello world', 'a b c d'] };
      const a = await api.post(route, { ...body, model: 'emb' });
      const b = await api.post(route, { ...body, model: 'emb-tei' });
      assert.equal(b.status, 200, JSON.stringify(b.body));
      assert.equal(b.headers.get('x-teiplex-instance'), 'emb-tei');
      close(b.body, a.body);
    }
  });

  test('token-id inputs are decoded by the child tokenizer, then embedded', async () => {
    const tok = await api.post('/tokenize', { inputs: 'hello world', add_special_tokens: false, model: 'emb' });
    const ids = tok.body[0].map((t: { id: number }) => t.id);
    const byIds = await api.post('/embed', { inputs: [ids], model: 'emb' });
    const byText = await api.post('/embed', { inputs: ['hello world'], model: 'emb' });
    close(byIds.body, byText.body);
  });
});

describe('splitting past max_client_batch_size (32)', () => {
  test('200 inputs come back whole and in order (Batch path and tei.v1 path)', async () => {
    const inputs = texts(200);
    // The child's own answers, 32 at a time (its limit).
    const want: number[][] = [];
    for (let i = 0; i < inputs.length; i += 32) want.push(...(await direct.emb.post('/embed', { inputs: inputs.slice(i, i + 32) })).body);
    assertTeiError(await direct.emb.post('/embed', { inputs }), 422, 'validation', 'the child alone refuses 200 inputs');
    for (const model of ['emb', 'emb-tei']) {
      const r = await api.post('/embed', { inputs, model });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.length, 200);
      close(r.body, want);
    }
    const oa = await api.post('/v1/embeddings', { input: inputs, model: 'emb' });
    assert.deepEqual(oa.body.data.map((d: { index: number }) => d.index), [...inputs.keys()]);
    close(oa.body.data.map((d: { embedding: number[] }) => d.embedding), want);
    const tokens = await api.post('/tokenize', { inputs, model: 'emb-tei' });
    assert.equal(tokens.body.length, 200);
    assert.equal(tokens.body[199][2].text, '199');
  });

  test('rerank over 100 texts ranks them together; sparse over 70 keeps order', async () => {
    const docs = texts(100, 'doc');
    const r = await api.post('/rerank', { query: 'alpha', texts: docs, model: 'rerank', return_text: true });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.map((x: { index: number }) => x.index).sort((a: number, b: number) => a - b), [...docs.keys()]);
    for (let i = 1; i < r.body.length; i++) assert.ok(r.body[i - 1].score >= r.body[i].score, 'sorted by score, best first');
    for (const x of r.body) assert.equal(x.text, docs[x.index]);
    const want = (await direct.rerank.post('/rerank', { query: 'alpha', texts: docs.slice(32, 64) })).body;
    for (const w of want) close(r.body.find((x: { index: number }) => x.index === w.index + 32).score, w.score);

    const sp = texts(70, 'sparse');
    const s = await api.post('/embed_sparse', { inputs: sp, model: 'splade' });
    assert.equal(s.body.length, 70);
    close(s.body[69], (await direct.splade.post('/embed_sparse', { inputs: sp[69] })).body[0]);
  });
});

describe('choosing the model per request', () => {
  test('two models in one test, interleaved: each answer from the instance named', async () => {
    const calls = Array.from({ length: 12 }, (_, i) =>
      i % 2 === 0
        ? api.post('/embed', { inputs: [`text ${i}`], model: 'emb' }).then((r) => ({ r, want: 'emb' }))
        : api.post('/embed_sparse', { inputs: [`text ${i}`], model: 'splade' }).then((r) => ({ r, want: 'splade' })),
    );
    for (const { r, want } of await Promise.all(calls)) {
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.headers.get('x-teiplex-instance'), want);
      if (want === 'emb') assert.equal(r.body[0].length, 32);
      else assert.ok(typeof r.body[0][0].index === 'number');
    }
  });

  test('by model id (replicas share the load), by alias (the capable member), by X-Model', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const r = await api.post('/embed', { inputs: ['replica'], model: models.embedding });
      assert.equal(r.status, 200);
      seen.add(r.headers.get('x-teiplex-instance')!);
    }
    assert.deepEqual([...seen].sort(), ['emb', 'emb-tei'], 'both replicas of the model id served');
    // "minilm" names emb (dense) and splade (sparse): each route goes to the member that can answer it.
    assert.equal((await api.post('/embed', { inputs: 'x', model: 'minilm' })).headers.get('x-teiplex-instance'), 'emb');
    assert.equal((await api.post('/embed_sparse', { inputs: 'x', model: 'minilm' })).headers.get('x-teiplex-instance'), 'splade');
    const viaHeader = await api.post('/rerank', { query: 'q', texts: ['a'] }, { 'x-model': 'my-reranker' });
    assert.equal(viaHeader.headers.get('x-teiplex-instance'), 'rerank');
    // The body's model wins over the header.
    assert.equal((await api.post('/embed', { inputs: 'x', model: 'emb' }, { 'x-model': 'splade' })).headers.get('x-teiplex-instance'), 'emb');
  });
});

describe('OpenAI, Cohere/Jina, typed encode and score', () => {
  test('the official openai client: string and list input, float and base64', async () => {
    const openai = new OpenAI({ baseURL: `${api.base}/v1`, apiKey: 'unused', maxRetries: 0 });
    const want = (await api.post('/embed', { inputs: ['hello world', 'second'], model: 'emb' })).body;
    const one = await openai.embeddings.create({ model: 'emb', input: 'hello world', encoding_format: 'float' });
    assert.equal(one.object, 'list');
    assert.equal(one.model, 'emb');
    close(one.data[0].embedding, want[0]);
    assert.ok(one.usage.prompt_tokens > 0 && one.usage.total_tokens === one.usage.prompt_tokens);
    const list = await openai.embeddings.create({ model: 'minilm', input: ['hello world', 'second'], encoding_format: 'base64' });
    const decoded = list.data.map((d) => {
      const b = Buffer.from(d.embedding as unknown as string, 'base64');
      return Array.from({ length: b.length / 4 }, (_, k) => b.readFloatLE(k * 4));
    });
    close(decoded, want);
    // The client's default asks for base64 and decodes it itself.
    const dflt = await openai.embeddings.create({ model: models.embedding, input: ['hello world', 'second'], dimensions: 4 });
    assert.equal(dflt.data[1].embedding.length, 4);
    const listed = await openai.models.list();
    assert.ok(listed.data.some((x) => x.id === 'minilm'));
    assert.equal((await openai.models.retrieve('my-reranker')).id, 'my-reranker');
    await assert.rejects(openai.embeddings.create({ model: 'nope', input: 'x' }), (e: InstanceType<typeof OpenAI.APIError>) => {
      assert.equal(e.status, 404);
      assert.equal(e.code, 'model_not_found');
      assert.match(e.message, /model 'nope' is not served: no instance, model id or alias has that name; choose from instances 'emb', 'emb-tei', 'rerank', 'splade'; models .*'minilm'/);
      return true;
    });
  });

  test('POST /v1/rerank: documents as strings or {text}, top_n, return_documents', async () => {
    const documents = ['alpha beta', { text: 'gamma' }, 'delta alpha', { text: 'epsilon' }];
    const r = await api.post('/v1/rerank', { model: 'my-reranker', query: 'alpha', documents, top_n: 3, return_documents: true });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const tei = (await api.post('/rerank', { model: 'rerank', query: 'alpha', texts: ['alpha beta', 'gamma', 'delta alpha', 'epsilon'] })).body;
    assert.deepEqual(
      r.body.results.map((x: { index: number }) => x.index),
      tei.slice(0, 3).map((x: { index: number }) => x.index),
    );
    close(r.body.results.map((x: { relevance_score: number }) => x.relevance_score), tei.slice(0, 3).map((x: { score: number }) => x.score));
    for (const x of r.body.results) assert.deepEqual(x.document, { text: typeof documents[x.index] === 'string' ? documents[x.index] : (documents[x.index] as { text: string }).text });
    assert.ok(r.body.usage.total_tokens > 0);
    const bare = await api.post('/v1/rerank', { model: 'rerank', query: 'q', documents: ['a', 'b'] });
    assert.equal(bare.body.results.length, 2);
    assert.equal(bare.body.results[0].document, undefined);
  });

  test('POST /v1/encode: dense, sparse and multivector gathered from the instances of one alias', async () => {
    const items = [{ id: 'a', text: 'hello world' }, { text: 'second one' }];
    const r = await api.post('/v1/encode/minilm', { items, output_types: ['dense', 'sparse', 'multivector'] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.headers.get('x-teiplex-instance')!.split(',').sort(), ['emb', 'splade']);
    assert.deepEqual(r.body.items.map((x: { id: unknown }) => x.id), ['a', 1]);
    const dense = (await api.post('/embed', { inputs: items.map((x) => x.text), model: 'emb' })).body;
    const sparse = (await api.post('/embed_sparse', { inputs: items.map((x) => x.text), model: 'splade' })).body;
    const multi = (await api.post('/embed_all', { inputs: items.map((x) => x.text), model: 'emb' })).body;
    r.body.items.forEach((x: any, i: number) => {
      assert.equal(x.dense.dim, 32);
      close(x.dense.values, dense[i]);
      close(x.sparse.indices, sparse[i].map((s: { index: number }) => s.index));
      close(x.sparse.values, sparse[i].map((s: { value: number }) => s.value));
      assert.equal(x.multivector.tokens, multi[i].length);
      close(x.multivector.values, multi[i].flat());
    });
    const dims = await api.post(`/v1/encode/${models.embedding}`, { items: [{ text: 'x' }], output_types: ['dense'], dimensions: 4, normalize: false });
    assert.equal(dims.status, 200, JSON.stringify(dims.body));
    assert.equal(dims.body.items[0].dense.dim, 4);
    const no = await api.post('/v1/encode/emb', { items, output_types: ['sparse'] });
    assertErrorCode(no, 422, 'OUTPUT_TYPE_UNSUPPORTED');
    assert.equal(no.body.error.message, "instance 'emb' cannot produce 'sparse': its capabilities are 'dense', 'multivector'");
  });

  test('POST /v1/score: best first with ids; a non-reranker is 422 naming its capabilities', async () => {
    const items = [{ id: 'x', text: 'alpha' }, { id: 7, text: 'beta gamma' }, { text: 'alpha beta' }];
    const r = await api.post('/v1/score/my-reranker', { query: 'alpha', items });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const tei = (await api.post('/rerank', { query: 'alpha', texts: items.map((x) => x.text), model: 'rerank' })).body;
    assert.deepEqual(r.body.scores.map((s: { index: number }) => s.index), tei.map((t: { index: number }) => t.index));
    for (const s of r.body.scores) assert.equal(s.id, items[s.index].id ?? s.index);
    const no = await api.post('/v1/score/splade', { query: 'q', items });
    assertErrorCode(no, 422, 'OUTPUT_TYPE_UNSUPPORTED');
    assert.match(no.body.error.message, /instance 'splade' cannot produce 'score': its capabilities are 'sparse'/);
  });
});

describe('errors: status, shape, the field or limit named', () => {
  test('no model with several instances: 400 naming the choices; unknown: 404 listing the models', async () => {
    const none = await api.post('/embed', { inputs: 'x' });
    assert.equal(none.status, 400);
    assert.match(none.body.error, /`model` is required when several instances serve: .*'emb', 'emb-tei', 'rerank', 'splade'/);
    assert.equal(none.body.error_type, 'validation');
    const unknown = await api.post('/embed', { inputs: 'x', model: 'nope' });
    assertTeiError(unknown, 404, 'not_found');
    assert.match(unknown.body.error, /model 'nope' is not served: .*; models .*'minilm'/);
    const oa = await api.post('/v1/embeddings', { input: 'x', model: 'nope' });
    assertErrorCode(oa, 404, 'MODEL_NOT_FOUND');
    assert.deepEqual(Object.keys(oa.body.error).sort(), ['code', 'message', 'param', 'type']);
    assert.equal(oa.body.error.param, 'model');
  });

  test('422 naming the field; 400 for JSON that does not parse; wrong model type 400', async () => {
    const bad = await api.post('/embed', { inputs: 'x', model: 'emb', normalize: 'yes' });
    assert.equal(bad.status, 422);
    assert.deepEqual(bad.body, { error: '`normalize` expected boolean', error_type: 'validation' });
    const oa = await api.post('/v1/embeddings', { input: ['a', 3], model: 'emb' });
    assertErrorCode(oa, 422, 'VALIDATION');
    assert.equal(oa.body.error.type, 'invalid_request_error');
    assert.match(oa.body.error.message, /`input/);
    const empty = await api.post('/embed', { inputs: [], model: 'emb' });
    assert.deepEqual([empty.status, empty.body], [422, { error: '`inputs` cannot be empty', error_type: 'empty' }]);
    assertTeiError(await api.post('/embed', '{"inputs": ', { 'x-model': 'emb' }), 400, 'validation', 'JSON that does not parse');
    const wrong = await api.post('/rerank', { query: 'q', texts: ['a'], model: 'emb' });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.body.error_type, 'validation');
  });

  test('413: more inputs than max_request_inputs, a body over http_body_limit_mb', async () => {
    const many = await api.post('/embed', { inputs: texts(MAX_REQUEST_INPUTS + 1), model: 'emb' });
    assertTeiError(many, 413, 'validation');
    assert.match(many.body.error, new RegExp(`301 inputs, more than max_request_inputs \\(${MAX_REQUEST_INPUTS}\\)`));
    const big = await api.post('/v1/embeddings', { input: 'a'.repeat(1.1 * 1024 * 1024), model: 'emb' });
    assertErrorCode(big, 413, 'PAYLOAD_TOO_LARGE');
    assert.match(big.body.error.message, /http_body_limit_mb \(1048576 bytes\)/);
  });

  test('429 with Retry-After when the child is overloaded', async () => {
    // emb-tei admits 2 inputs at once. The manager never sends it more (its input window,
    // docs/tenancy.md): its calls wait their turn. The child refuses them when other clients (here
    // calls to its own HTTP port) hold its permits.
    let overloaded: Awaited<ReturnType<typeof api.post>> | undefined;
    for (let round = 0; round < 10 && overloaded === undefined; round++) {
      const others = Promise.all(Array.from({ length: 24 }, (_, i) => direct['emb-tei']!.post('/embed', { inputs: `other ${round} ${i} ${'word '.repeat(60)}` })));
      const rs = await Promise.all(Array.from({ length: 24 }, (_, i) => api.post('/embed', { inputs: `load ${round} ${i} ${'word '.repeat(60)}`, model: 'emb-tei' })));
      await others;
      for (const r of rs) assert.ok(r.status === 200 || r.status === 429, `${r.status} ${JSON.stringify(r.body)}`);
      overloaded = rs.find((r) => r.status === 429);
    }
    assert.ok(overloaded, 'some request was refused as overloaded');
    assert.equal(overloaded.headers.get('retry-after'), '1');
    assert.deepEqual(overloaded.body, { error: 'Model is overloaded', error_type: 'overloaded' });
  });

  test('503 with Retry-After while an instance starts, and when it is stopped', async () => {
    const created = await m.api('POST', '/instances', { name: 'late', model_id: models.embedding });
    assert.equal(created.status, 201);
    const starting = await api.post('/v1/embeddings', { input: 'x', model: 'late' });
    assertErrorCode(starting, 503, 'INSTANCE_UNAVAILABLE');
    assert.equal(starting.headers.get('retry-after'), '5');
    assert.match(starting.body.error.message, /instance 'late' is starting/);
    await m.waitFor('late', (i) => i.status === 'running', 120_000);
    assert.equal((await api.post('/embed', { inputs: 'x', model: 'late' })).status, 200);
    assert.equal((await m.api('POST', '/instances/late/stop')).status, 200);
    const stopped = await api.post('/embed', { inputs: 'x', model: 'late' });
    assert.equal(stopped.status, 503);
    assert.match(stopped.body.error, /instance 'late' is stopped/);
    assert.equal(stopped.body.error_type, 'unhealthy');
    assert.equal((await m.api('DELETE', '/instances/late')).status, 200);
    assertTeiError(await api.post('/embed', { inputs: 'x', model: 'late' }), 404, 'not_found');
  });
});

describe('metrics', () => {
  test('requests counted by route pattern, answering instance and status; durations observed', async () => {
    const count = async (labels: string): Promise<number> => {
      const text = String((await m.api('GET', '/metrics')).body);
      const line = text.split('\n').find((l) => l.startsWith(`teiplex_http_requests_total{${labels}}`));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    const ok = 'route="/embed",instance="emb",code="200"';
    const missing = 'route="/v1/embeddings",instance="",code="404"';
    const [ok0, missing0] = [await count(ok), await count(missing)];
    for (let i = 0; i < 3; i++) assert.equal((await api.post('/embed', { inputs: 'x', model: 'emb' })).status, 200);
    assertErrorCode(await api.post('/v1/embeddings', { input: 'x', model: 'no-such-model' }), 404, 'MODEL_NOT_FOUND');
    assert.equal(await count(ok), ok0 + 3);
    assert.equal(await count(missing), missing0 + 1);
    const text = String((await m.api('GET', '/metrics')).body);
    assert.match(text, /teiplex_http_request_duration_seconds_count\{route="\/embed"\} [1-9]/);
    assert.ok(!text.includes('no-such-model'), 'client input never becomes a label');
  });
});

describe('a client that goes away', () => {
  test('its child calls are cancelled (a hung child: in flight drops at once, not at the 30 s deadline)', async () => {
    const created = await m.api('POST', '/instances', { name: 'hang', model_id: models.embedding });
    assert.equal(created.status, 201);
    const info = await m.waitFor('hang', (i) => i.status === 'running', 120_000);
    assert.equal((await api.post('/embed', { inputs: 'warm', model: 'hang' })).status, 200); // child info cached
    const inflight = async (): Promise<number> => {
      const line = String((await m.api('GET', '/metrics')).body)
        .split('\n')
        .find((l) => l.startsWith('teiplex_inflight_requests{instance="hang"}'));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    assert.equal(await inflight(), 0);
    process.kill(info.pid, 'SIGSTOP');
    try {
      const client = new AbortController();
      const gone = fetch(`${api.base}/embed`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ inputs: 'never answered', model: 'hang' }),
        signal: client.signal,
      });
      // The call reached the hung child before the client leaves.
      await until('the call in flight at the hung child', async () => (await inflight()) === 1, { timeoutMs: 20_000 });
      client.abort();
      await assert.rejects(gone, { name: 'AbortError' });
      // Well before grpc_request_timeout_secs (30 s) would end it.
      await until('the call to the hung child cancelled when the client left', async () => (await inflight()) === 0, { timeoutMs: 10_000 });
    } finally {
      process.kill(info.pid, 'SIGCONT');
      assert.equal((await m.api('DELETE', '/instances/hang')).status, 200);
    }
  });
});
