/**
 * TEI's HTTP routes over loopback, served by startRouter in this process with real Engines on
 * generated models: shapes, defaults, headers, errors and statuses, payload limit, api key, and
 * /v1/embeddings through the official `openai` client.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import OpenAI from 'openai';
import { silentLog } from '../../src/router/router-log.js';
import { startRouter, type RunningRouter } from '../../src/router/server.js';
import type { RouterOptions } from '../../src/router/options.js';
import { testModel } from '../helpers/models.js';
import { testRouterOptions } from '../helpers/router-options.js';
import { cosine, norm } from '../helpers/vectors.js';

const options = (modelId: string, over: Partial<RouterOptions> = {}): RouterOptions => testRouterOptions({ modelId, httpPort: 0, ...over });

interface Reply {
  status: number;
  body: any;
  headers: Headers;
}

function client(r: RunningRouter, headers: Record<string, string> = {}) {
  const base = `http://127.0.0.1:${r.httpPort}`;
  const call = async (method: string, path: string, body?: unknown, raw?: string): Promise<Reply> => {
    const res = await fetch(base + path, {
      method,
      headers: body !== undefined || raw !== undefined ? { 'content-type': 'application/json', ...headers } : headers,
      body: raw ?? (body !== undefined ? JSON.stringify(body) : undefined),
    });
    const text = await res.text();
    let parsed: unknown = text;
    if ((res.headers.get('content-type') ?? '').includes('json')) parsed = JSON.parse(text);
    return { status: res.status, body: parsed, headers: res.headers };
  };
  return {
    base,
    post: (path: string, body: unknown) => call('POST', path, body),
    raw: (path: string, raw: string) => call('POST', path, undefined, raw),
    get: (path: string) => call('GET', path),
  };
}



function assertError(r: Reply, status: number, type: string, re?: RegExp): void {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(r.body.error_type, type, JSON.stringify(r.body));
  assert.equal(typeof r.body.error, 'string');
  if (re) assert.match(r.body.error, re);
}

/** Well over the tiny model's 128 tokens, and different at each end. */
const LONG = Array.from({ length: 200 }, (_, i) => `word${i}`).join(' ');

describe('TEI HTTP routes', () => {
  let emb: RunningRouter;
  let rer: RunningRouter;
  let cls: RunningRouter;
  let spl: RunningRouter;
  let auth: RunningRouter;

  before(async () => {
    const [embDir, rerDir, clsDir, splDir] = await Promise.all([
      testModel({ kind: 'embedding', prompts: { query: 'query: ' } }),
      testModel({ kind: 'reranker' }),
      testModel({ kind: 'classifier', numLabels: 3 }),
      testModel({ kind: 'splade' }),
    ]);
    emb = await startRouter(options(embDir, { maxClientBatchSize: 4, maxConcurrentRequests: 3, payloadLimit: 4096, servedModelName: 'tiny-embed' }), silentLog);
    rer = await startRouter(options(rerDir, { maxClientBatchSize: 4 }), silentLog);
    cls = await startRouter(options(clsDir), silentLog);
    spl = await startRouter(options(splDir, { pooling: 'splade' }), silentLog);
    auth = await startRouter(options(embDir, { apiKey: 'sekret' }), silentLog);
  });

  after(async () => {
    await Promise.all([emb, rer, cls, spl, auth].map((r) => r?.stop()));
  });

  describe('/embed', () => {
    test('one string: one normalized row and the compute headers', async () => {
      const r = await client(emb).post('/embed', { inputs: 'hello world' });
      assert.equal(r.status, 200);
      assert.equal(r.body.length, 1);
      assert.equal(r.body[0].length, emb.engine.model.hiddenSize);
      assert.ok(Math.abs(norm(r.body[0]) - 1) < 1e-5);
      assert.equal(r.headers.get('x-compute-characters'), '11');
      assert.equal(r.headers.get('x-compute-tokens'), '4'); // [CLS] hello world [SEP]
      for (const h of ['x-compute-time', 'x-total-time', 'x-tokenization-time', 'x-queue-time', 'x-inference-time']) {
        assert.match(r.headers.get(h) ?? '', /^\d+$/, h);
      }
    });

    test('a batch answers row by row, the same as alone', async () => {
      const c = client(emb);
      // One after the other: this router admits only 3 inputs at a time.
      const a = await c.post('/embed', { inputs: 'first text' });
      const b = await c.post('/embed', { inputs: 'a second, rather longer text to pad against' });
      const batch = await c.post('/embed', { inputs: ['first text', 'a second, rather longer text to pad against'] });
      assert.equal(batch.status, 200);
      assert.equal(batch.body.length, 2);
      assert.ok(cosine(a.body[0], batch.body[0]) > 0.99999);
      assert.ok(cosine(b.body[0], batch.body[1]) > 0.99999);
      assert.equal(Number(batch.headers.get('x-compute-characters')), 'first text'.length + 'a second, rather longer text to pad against'.length);
    });

    test('normalize false, dimensions', async () => {
      const c = client(emb);
      const raw = await c.post('/embed', { inputs: 'hello world', normalize: false });
      assert.ok(Math.abs(norm(raw.body[0]) - 1) > 1e-3, 'raw embeddings of the generated model are not unit length');
      const dims = await c.post('/embed', { inputs: 'hello world', dimensions: 8 });
      assert.equal(dims.body[0].length, 8);
      assert.ok(Math.abs(norm(dims.body[0]) - 1) < 1e-5);
      assert.ok(cosine(dims.body[0], raw.body[0].slice(0, 8)) > 0.99999);
      assertError(await c.post('/embed', { inputs: 'x', dimensions: 100000 }), 422, 'validation', /dimensions/);
    });

    test('truncate and truncation_direction ("Right"/"Left", lower case too)', async () => {
      const c = client(emb);
      assertError(await c.post('/embed', { inputs: LONG }), 422, 'validation', /must have less than 128 tokens/);
      assertError(await c.post('/embed', { inputs: LONG, truncate: null }), 422, 'validation');
      const right = await c.post('/embed', { inputs: LONG, truncate: true });
      const right2 = await c.post('/embed', { inputs: LONG, truncate: true, truncation_direction: 'Right' });
      const left = await c.post('/embed', { inputs: LONG, truncate: true, truncation_direction: 'Left' });
      const left2 = await c.post('/embed', { inputs: LONG, truncate: true, truncation_direction: 'left' });
      assert.equal(right.status, 200);
      assert.equal(right.headers.get('x-compute-tokens'), '128');
      assert.deepEqual(right.body, right2.body);
      assert.deepEqual(left.body, left2.body);
      assert.ok(cosine(left.body[0], right.body[0]) < 0.99999, 'left and right keep different tokens');
      assertError(await c.post('/embed', { inputs: 'x', truncation_direction: 'middle' }), 422, 'validation', /truncation_direction/);
    });

    test('prompt_name prepends the prompt; an unknown prompt is 422', async () => {
      const c = client(emb);
      const prompted = await c.post('/embed', { inputs: 'what is up', prompt_name: 'query' });
      const manual = await c.post('/embed', { inputs: 'query: what is up' });
      assert.ok(cosine(prompted.body[0], manual.body[0]) > 0.99999);
      assertError(await c.post('/embed', { inputs: 'x', prompt_name: 'passage' }), 422, 'validation', /passage/);
    });

    test('prompt_name names only the model\'s own prompts: constructor, toString, __proto__ are unknown (422)', async () => {
      const c = client(emb);
      for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
        const unknown = new RegExp(`prompt_name \`${name}\` is not a prompt of this model. Available prompts: query`);
        assertError(await c.post('/embed', { inputs: 'x', prompt_name: name }), 422, 'validation', unknown);
        assertError(await c.post('/embed_all', { inputs: 'x', prompt_name: name }), 422, 'validation', unknown);
        assertError(await c.post('/tokenize', { inputs: 'x', prompt_name: name }), 422, 'validation', unknown);
      }
      const prompted = await c.post('/embed', { inputs: 'what is up', prompt_name: 'query' });
      const manual = await c.post('/embed', { inputs: 'query: what is up' });
      assert.equal(prompted.status, 200);
      assert.ok(cosine(prompted.body[0], manual.body[0]) > 0.99999);
    });

    test('token ids as input', async () => {
      const c = client(emb);
      const tokens = await c.post('/tokenize', { inputs: 'hello world' });
      const ids = tokens.body[0].map((t: { id: number }) => t.id);
      const byIds = await c.post('/embed', { inputs: ids });
      const byText = await c.post('/embed', { inputs: 'hello world' });
      assert.equal(byIds.status, 200, JSON.stringify(byIds.body));
      assert.equal(byIds.body.length, 1);
      assert.ok(cosine(byIds.body[0], byText.body[0]) > 0.99999);
      const both = await c.post('/embed', { inputs: [ids, 'hello world'] });
      assert.equal(both.body.length, 2);
    });

    test('token ids past the vocabulary or negative are 422 naming the id and the vocabulary size; the router keeps serving', async () => {
      const c = client(emb);
      assert.equal(emb.engine.model.inputVocabSize, 30522);
      const outside = (id: number, at: number, row = '') =>
        new RegExp(`^${row}token id ${id} at position ${at} is not in the model's vocabulary: ids go from 0 to 30521 \\(vocabulary size 30522\\)$`);
      assertError(await c.post('/embed', { inputs: [101, 30522] }), 422, 'validation', outside(30522, 1));
      assertError(await c.post('/embed', { inputs: [101, 7592, -1] }), 422, 'validation', outside(-1, 2));
      assertError(await c.post('/embed', { inputs: [[101, 2], [101, 2 ** 32]] }), 422, 'validation', outside(2 ** 32, 1, 'input 1: '));
      assertError(await c.post('/embed', { inputs: ['text', [101, -7]] }), 422, 'validation', outside(-7, 1, 'input 1: '));
      assertError(await c.post('/embed_all', { inputs: [101, 99999] }), 422, 'validation', outside(99999, 1));
      assertError(await c.post('/', { inputs: [-1] }), 422, 'validation', outside(-1, 0));
      assertError(await c.post('/decode', { ids: [101, 99999] }), 422, 'validation', outside(99999, 1));
      assertError(await c.post('/decode', { ids: [[101], [102, -2]] }), 422, 'validation', outside(-2, 1, 'input 1: '));
      for (const input of [[101, -1], [[101, 30522]]]) {
        const r = await c.post('/v1/embeddings', { input, model: 'tiny-embed' });
        assert.equal(r.status, 422, JSON.stringify(r.body));
        assert.equal(r.body.type, 'validation');
        assert.match(r.body.message, /token id (-1|30522) at position 1 .*\(vocabulary size 30522\)/);
      }
      const ok = await c.post('/embed', { inputs: [101, 7592, 30521, 102] });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      assert.deepEqual((await c.post('/decode', { ids: [101, 7592, 102] })).body, ['hello']);
    });

    test('empty, too many inputs (max_client_batch_size), overloaded', async () => {
      const c = client(emb);
      assertError(await c.post('/embed', { inputs: [] }), 422, 'empty', /`inputs` cannot be empty/);
      assertError(await c.post('/embed', { inputs: ['a', 'b', 'c', 'd', 'e'] }), 422, 'validation', /batch size 5 > maximum allowed batch size 4/);
      // 4 inputs fit the client batch size but not max_concurrent_requests (3).
      assertError(await c.post('/embed', { inputs: ['a', 'b', 'c', 'd'] }), 429, 'overloaded', /Model is overloaded/);
      assert.equal((await c.post('/embed', { inputs: ['a', 'b', 'c'] })).status, 200, 'the server keeps serving');
    });

    test('bad bodies are 422 naming the field; bad JSON is 400', async () => {
      const c = client(emb);
      assertError(await c.post('/embed', {}), 422, 'validation', /`inputs` is required/);
      assertError(await c.post('/embed', { inputs: 5 }), 422, 'validation', /`inputs` must be a string, a list of token ids, or a list of those/);
      assertError(await c.post('/embed', { inputs: 'x', normalize: 'yes' }), 422, 'validation', /`normalize`/);
      assertError(await c.post('/embed', { inputs: 'x', dimensions: 0 }), 422, 'validation', /`dimensions`/);
      assertError(await c.raw('/embed', '{"inputs": '), 400, 'validation');
    });

    test('a body over --payload-limit is 413', async () => {
      const r = await client(emb).post('/embed', { inputs: 'x'.repeat(5000) });
      assertError(r, 413, 'payload_limit', /payload limit of 4096 bytes/);
    });

    test('routes for other model types answer 400', async () => {
      const c = client(emb);
      assertError(await c.post('/rerank', { query: 'q', texts: ['a'] }), 400, 'validation', /re-ranker/);
      assertError(await c.post('/predict', { inputs: 'a' }), 400, 'validation', /classifier/);
      assertError(await c.post('/embed_sparse', { inputs: 'a' }), 400, 'validation', /SPLADE/);
      assert.equal((await c.post('/embed', { inputs: 'still serving' })).status, 200);
    });

    test('POST / is the model\'s own route', async () => {
      const r = await client(emb).post('/', { inputs: 'hello world' });
      assert.equal(r.status, 200);
      assert.equal(r.body[0].length, emb.engine.model.hiddenSize);
    });
  });

  test('/embed_all: one vector per token', async () => {
    const r = await client(emb).post('/embed_all', { inputs: ['hello world', 'a b c'] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.length, 2);
    assert.equal(r.body[0].length, 4);
    assert.equal(r.body[1].length, 5);
    assert.equal(r.body[0][0].length, emb.engine.model.hiddenSize);
  });

  test('/embed_all: a large answer is streamed, whole and in order', async () => {
    const c = client(auth, { authorization: 'Bearer sekret' });
    const texts = Array.from({ length: 16 }, (_, i) => `text${i} ${LONG}`);
    const r = await c.post('/embed_all', { inputs: texts, truncate: true });
    assert.equal(r.status, 200, JSON.stringify(r.body).slice(0, 300));
    // Streamed (chunked), not built as one string with a length: 16 x 128 tokens x hidden floats.
    assert.equal(r.headers.get('content-length'), null);
    assert.equal(r.headers.get('transfer-encoding'), 'chunked');
    assert.match(r.headers.get('x-compute-tokens') ?? '', /^\d+$/);
    const hidden = auth.engine.model.hiddenSize;
    assert.equal(r.body.length, texts.length);
    for (const row of r.body) {
      assert.equal(row.length, auth.engine.model.maxInputLength);
      for (const token of row) assert.equal(token.length, hidden);
    }
    for (const i of [0, 7, 15]) {
      const alone = await c.post('/embed_all', { inputs: texts[i], truncate: true });
      assert.equal(alone.body[0].length, r.body[i].length);
      for (let t = 0; t < alone.body[0].length; t += 31) assert.ok(cosine(alone.body[0][t], r.body[i][t]) > 0.99999, `input ${i} token ${t}`);
    }
  });

  test('/tokenize and /decode', async () => {
    const c = client(emb);
    const one = await c.post('/tokenize', { inputs: 'hello world' });
    assert.equal(one.status, 200);
    assert.deepEqual(
      one.body[0].map((t: { text: string; special: boolean; start: number | null; stop: number | null }) => [t.text, t.special, t.start, t.stop]),
      [
        ['[CLS]', true, null, null],
        ['hello', false, 0, 5],
        ['world', false, 6, 11],
        ['[SEP]', true, null, null],
      ],
    );
    // The tokenizer routes have no timings (as in TEI): this process's own total time only.
    assert.match(one.headers.get('x-total-time') ?? '', /^\d+$/);
    assert.equal(one.headers.get('x-compute-tokens'), null);
    const plain = await c.post('/tokenize', { inputs: ['hello world', 'hi'], add_special_tokens: false });
    assert.equal(plain.body.length, 2);
    assert.equal(plain.body[0].length, 2);
    const prompted = await c.post('/tokenize', { inputs: 'hi', prompt_name: 'query' });
    assert.deepEqual(prompted.body[0].map((t: { text: string }) => t.text).slice(1, -1), ['query', ':', 'hi']);
    assertError(await c.post('/tokenize', { inputs: [] }), 422, 'empty');

    const ids = one.body[0].map((t: { id: number }) => t.id);
    assert.deepEqual((await c.post('/decode', { ids })).body, ['hello world']);
    const both = await c.post('/decode', { ids: [ids, ids], skip_special_tokens: false });
    assert.deepEqual(both.body, ['[CLS] hello world [SEP]', '[CLS] hello world [SEP]']);
    assertError(await c.post('/decode', { ids: [[1], [2], [3], [4], [5]] }), 422, 'validation', /maximum allowed batch size 4/);
  });

  test('/info, /health, /metrics', async () => {
    const c = client(emb);
    const info = await c.get('/info');
    assert.equal(info.status, 200);
    assert.equal(info.body.model_id, 'tiny-embed');
    assert.deepEqual(info.body.model_type, { embedding: { pooling: emb.engine.model.pooling } });
    assert.equal(info.body.max_client_batch_size, 4);
    assert.equal(info.body.max_concurrent_requests, 3);
    assert.equal(info.body.max_input_length, 128);
    assert.equal(info.body.auto_truncate, false);
    assert.match(info.body.version, /^\d+\.\d+\.\d+/);
    const health = await c.get('/health');
    assert.equal(health.status, 200);
    const metrics = await c.get('/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /te_request_count\{method="embed"\} \d+/);
    assert.match(metrics.body, /te_request_failure\{err="batch_size"\} \d+/);
    assert.match(metrics.body, /te_request_failure\{err="overloaded"\} \d+/);
    assert.match(metrics.body, /te_request_duration_bucket/);
    assert.match(metrics.body, /te_request_input_length_count \d+/);
    assert.match(metrics.body, /teiplex_batches_total [1-9]\d*/);
  });

  describe('/v1/embeddings', () => {
    const openai = (r: RunningRouter, apiKey = 'unused') => new OpenAI({ apiKey, baseURL: `http://127.0.0.1:${r.httpPort}/v1`, maxRetries: 0 });
    const texts = ['hello world', 'the quick brown fox'];

    test('the openai client, float and base64 (its default), real token counts', async () => {
      const floats = await openai(emb).embeddings.create({ model: 'tiny-embed', input: texts, encoding_format: 'float' });
      assert.equal(floats.object, 'list');
      assert.equal(floats.model, 'tiny-embed');
      assert.deepEqual(floats.data.map((d) => [d.object, d.index]), [['embedding', 0], ['embedding', 1]]);
      const direct = await client(emb).post('/embed', { inputs: texts });
      assert.ok(cosine(floats.data[0].embedding, direct.body[0]) > 0.99999);
      assert.ok(cosine(floats.data[1].embedding, direct.body[1]) > 0.99999);
      const tokenized = await client(emb).post('/tokenize', { inputs: texts });
      const tokens = tokenized.body[0].length + tokenized.body[1].length;
      assert.deepEqual(floats.usage, { prompt_tokens: tokens, total_tokens: tokens });

      const decoded = await openai(emb).embeddings.create({ model: 'tiny-embed', input: texts });
      assert.equal(decoded.data[0].embedding.length, emb.engine.model.hiddenSize);
      for (let i = 0; i < 2; i++) {
        for (let j = 0; j < floats.data[i].embedding.length; j++) assert.equal(decoded.data[i].embedding[j], Math.fround(floats.data[i].embedding[j]));
      }
    });

    test('raw base64 is little-endian float32; one string, token ids, dimensions', async () => {
      const c = client(emb);
      const r = await c.post('/v1/embeddings', { input: 'hello world', encoding_format: 'base64' });
      assert.equal(r.status, 200);
      const bytes = Buffer.from(r.body.data[0].embedding, 'base64');
      const v = Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
      const f = await c.post('/v1/embeddings', { input: 'hello world' });
      assert.deepEqual(v, f.body.data[0].embedding.map(Math.fround));
      const ids = (await c.post('/tokenize', { inputs: 'hello world' })).body[0].map((t: { id: number }) => t.id);
      const byIds = await c.post('/v1/embeddings', { input: [ids] });
      assert.equal(byIds.body.data.length, 1);
      assert.ok(cosine(byIds.body.data[0].embedding, f.body.data[0].embedding) > 0.99999);
      const small = await openai(emb).embeddings.create({ model: 'x', input: 'hello world', dimensions: 16, encoding_format: 'float' });
      assert.equal(small.data[0].embedding.length, 16);
    });

    test("errors come in TEI's OpenAI shape", async () => {
      const r = await client(emb).post('/v1/embeddings', { input: ['a', 'b', 'c', 'd', 'e'] });
      assert.equal(r.status, 422);
      assert.deepEqual(Object.keys(r.body).sort(), ['code', 'message', 'type']);
      assert.equal(r.body.code, 422);
      assert.match(r.body.message, /maximum allowed batch size 4/);
      assert.equal(r.body.type, 'validation');
      const empty = await client(emb).post('/v1/embeddings', { input: [] });
      assert.equal(empty.status, 422);
      assert.deepEqual({ code: empty.body.code, type: empty.body.type }, { code: 422, type: 'empty' });
      const wrongModel = await client(rer).post('/v1/embeddings', { input: 'a' });
      assert.equal(wrongModel.status, 400);
      assert.deepEqual({ keys: Object.keys(wrongModel.body).sort(), code: wrongModel.body.code, type: wrongModel.body.type }, { keys: ['code', 'message', 'type'], code: 400, type: 'validation' });
      // The openai client sees the status (TEI's shape has no `error` object for it to read).
      await assert.rejects(openai(emb).embeddings.create({ model: 'x', input: [] }), (e: unknown) => e instanceof OpenAI.UnprocessableEntityError && e.status === 422);
    });
  });

  describe('reranker', () => {
    test('/rerank: sorted by score, return_text, raw_scores; agrees with /predict', async () => {
      const c = client(rer);
      const texts = ['apples are red', 'the sky is blue', 'bananas are yellow'];
      const r = await c.post('/rerank', { query: 'what colour is the sky', texts });
      assert.equal(r.status, 200);
      assert.deepEqual(r.body.map((x: { index: number }) => x.index).sort(), [0, 1, 2]);
      for (let i = 1; i < r.body.length; i++) assert.ok(r.body[i - 1].score >= r.body[i].score);
      assert.ok(r.body.every((x: object) => !('text' in x)));
      const withText = await c.post('/rerank', { query: 'what colour is the sky', texts, return_text: true });
      for (const x of withText.body) assert.equal(x.text, texts[x.index]);
      const raw = await c.post('/rerank', { query: 'what colour is the sky', texts, raw_scores: true });
      for (const x of raw.body) {
        const s = r.body.find((y: { index: number }) => y.index === x.index).score;
        assert.ok(Math.abs(1 / (1 + Math.exp(-x.score)) - s) < 1e-6);
        const p = await c.post('/predict', { inputs: ['what colour is the sky', texts[x.index]], raw_scores: true });
        assert.ok(Math.abs(p.body[0].score - x.score) < 1e-5);
      }
      assert.match(r.headers.get('x-compute-tokens') ?? '', /^[1-9]\d*$/);
    });

    test('/rerank errors', async () => {
      const c = client(rer);
      assertError(await c.post('/rerank', { query: 'q', texts: [] }), 422, 'empty', /`texts` cannot be empty/);
      assertError(await c.post('/rerank', { query: 'q', texts: ['a', 'b', 'c', 'd', 'e'] }), 422, 'validation', /batch size 5 > maximum allowed batch size 4/);
      assertError(await c.post('/rerank', { texts: ['a'] }), 422, 'validation', /`query` is required/);
      assertError(await c.post('/embed', { inputs: 'a' }), 400, 'validation');
    });
  });

  describe('classifier', () => {
    test('/predict: a string, a pair, a batch', async () => {
      const c = client(cls);
      const one = await c.post('/predict', { inputs: 'I love this' });
      assert.equal(one.status, 200);
      assert.equal(one.body.length, 3);
      assert.deepEqual(one.body.map((p: { label: string }) => p.label).sort(), cls.engine.model.id2label.slice().sort());
      for (let i = 1; i < 3; i++) assert.ok(one.body[i - 1].score >= one.body[i].score);
      assert.ok(Math.abs(one.body.reduce((s: number, p: { score: number }) => s + p.score, 0) - 1) < 1e-5);
      const pair = await c.post('/predict', { inputs: ['I love this', 'so do I'] });
      assert.equal(pair.body.length, 3);
      const batch = await c.post('/predict', { inputs: [['I love this'], ['I love this', 'so do I']] });
      assert.equal(batch.body.length, 2);
      assert.deepEqual(batch.body[0], one.body);
      assert.deepEqual(batch.body[1].map((p: { label: string }) => p.label), pair.body.map((p: { label: string }) => p.label));
      const raw = await c.post('/predict', { inputs: 'I love this', raw_scores: true });
      assert.ok(Math.abs(raw.body.reduce((s: number, p: { score: number }) => s + p.score, 0) - 1) > 1e-6);
    });

    test('/predict errors', async () => {
      const c = client(cls);
      assertError(await c.post('/predict', { inputs: ['a', 'b', 'c'] }), 422, 'validation', /pair of strings/);
      assertError(await c.post('/predict', { inputs: [['a', 'b', 'c']] }), 422, 'validation');
      assertError(await c.post('/predict', { inputs: [] }), 422, 'validation');
      assertError(await c.post('/rerank', { query: 'q', texts: ['a'] }), 400, 'validation', /re-ranker/);
      const info = await c.get('/info');
      assert.deepEqual(Object.keys(info.body.model_type), ['classifier']);
      assert.equal(Object.keys(info.body.model_type.classifier.id2label).length, 3);
    });
  });

  test('labels named __proto__, constructor, toString survive: /info id2label and label2id, /predict', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'teiplex-proto-labels-'));
    let r: RunningRouter | undefined;
    try {
      await cp(await testModel({ kind: 'classifier', numLabels: 3 }), dir, { recursive: true });
      const configPath = path.join(dir, 'config.json');
      // Written as text: a JS object literal with a __proto__ key would set the prototype instead.
      const config = (await readFile(configPath, 'utf8')).replace(/"id2label":\s*\{[^}]*\}/, '"id2label": {"0": "__proto__", "1": "constructor", "2": "toString"}');
      assert.match(config, /"__proto__"/);
      await writeFile(configPath, config);
      r = await startRouter(options(dir), silentLog);
      const c = client(r);
      const info = await c.get('/info');
      assert.equal(info.status, 200);
      const text = JSON.stringify(info.body.model_type);
      assert.equal(text, JSON.stringify({ classifier: { id2label: { '0': '__proto__', '1': 'constructor', '2': 'toString' }, label2id: JSON.parse('{"__proto__": 0, "constructor": 1, "toString": 2}') } }));
      const label2id = info.body.model_type.classifier.label2id;
      assert.deepEqual(Object.entries(label2id), [['__proto__', 0], ['constructor', 1], ['toString', 2]]);
      const p = await c.post('/predict', { inputs: 'I love this', raw_scores: true });
      assert.equal(p.status, 200);
      assert.deepEqual(p.body.map((x: { label: string }) => x.label).sort(), ['__proto__', 'constructor', 'toString']);
    } finally {
      await r?.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('SPLADE: /embed_sparse returns [[{index, value}]], the nonzeros of the dense vector', async () => {
    const c = client(spl);
    const sparse = await c.post('/embed_sparse', { inputs: ['hello world', 'a b'] });
    assert.equal(sparse.status, 200, JSON.stringify(sparse.body));
    assert.equal(sparse.body.length, 2);
    const row = sparse.body[0] as { index: number; value: number }[];
    assert.ok(row.length > 0);
    for (let i = 0; i < row.length; i++) {
      assert.ok(row[i].value > 0);
      if (i > 0) assert.ok(row[i].index > row[i - 1].index);
    }
    const dense = await c.post('/embed', { inputs: 'hello world', normalize: false });
    assert.equal(dense.status, 200, JSON.stringify(dense.body));
    const nonzero = (dense.body[0] as number[]).flatMap((v, index) => (v !== 0 ? [{ index, value: v }] : []));
    assert.deepEqual(nonzero.map((x) => x.index), row.map((x) => x.index));
    const info = await c.get('/info');
    assert.deepEqual(info.body.model_type, { embedding: { pooling: 'splade' } });
  });

  test('api key: Bearer required except for health and metrics', async () => {
    const none = client(auth);
    assertError(await none.post('/embed', { inputs: 'x' }), 401, 'unauthorized');
    assertError(await client(auth, { authorization: 'Bearer wrong' }).post('/embed', { inputs: 'x' }), 401, 'unauthorized');
    assertError(await none.get('/info'), 401, 'unauthorized');
    const v1 = await none.post('/v1/embeddings', { input: 'x' });
    assert.equal(v1.status, 401);
    assert.deepEqual({ code: v1.body.code, type: v1.body.type }, { code: 401, type: 'unauthorized' });
    assert.equal((await none.get('/health')).status, 200);
    assert.equal((await none.get('/metrics')).status, 200);
    assert.equal((await client(auth, { authorization: 'Bearer sekret' }).post('/embed', { inputs: 'x' })).status, 200);
    const ok = await new OpenAI({ apiKey: 'sekret', baseURL: `http://127.0.0.1:${auth.httpPort}/v1`, maxRetries: 0 }).embeddings.create({ model: 'x', input: 'x' });
    assert.equal(ok.data.length, 1);
    await assert.rejects(
      new OpenAI({ apiKey: 'nope', baseURL: `http://127.0.0.1:${auth.httpPort}/v1`, maxRetries: 0 }).embeddings.create({ model: 'x', input: 'x' }),
      (e: unknown) => e instanceof OpenAI.AuthenticationError && e.status === 401,
    );
  });

  test('stop: in-flight requests complete, then the servers close without waiting for idle connections', async () => {
    const dir = await testModel({ kind: 'embedding', prompts: { query: 'query: ' } });
    const warnings: string[] = [];
    const r = await startRouter(options(dir), { ...silentLog, warn: (m) => warnings.push(m) });
    const c = client(r);
    assert.equal((await c.get('/health')).status, 200);
    // Keep a request in flight so the HTTP server is still answering while it drains.
    const inflight = c.post('/embed', { inputs: Array.from({ length: 32 }, (_, i) => `text number ${i} `.repeat(10)) });
    // Stop (synchronously after seeing it) while the request is inside the engine.
    // Checked every turn of the event loop (a poll every few ms could miss it), for 60 s at most.
    for (const end = Date.now() + 60_000; r.metrics.inputsInFlight === 0; await turn()) {
      if (Date.now() > end) throw new Error('the request never reached the engine');
    }
    const stopping = r.stop();
    const done = await inflight;
    assert.equal(done.status, 200, 'in-flight work completes during the drain');
    assert.equal(done.headers.get('connection'), 'close');
    await stopping;
    assert.deepEqual(warnings, [], 'the drain finished on its own');
  });
});
