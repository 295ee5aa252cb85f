/**
 * The data plane on its own listener (`data_port`) with a single instance and API keys, and a
 * fuzzed corpus of bad bodies against every route: random JSON values, valid bodies with one field
 * broken, and bytes that are not JSON. Never a 5xx; a body its schema refuses is always 422 with
 * the documented code (`VALIDATION`, or `EMPTY` for an empty list: docs/errors.md) and a message
 * in the route's error shape. Next to them, valid bodies generated per route (seeded): 200 with
 * the documented answer shape on the routes an embedding model serves, and the documented code
 * (`WRONG_MODEL_TYPE` / `OUTPUT_TYPE_UNSUPPORTED`) on the ones it cannot.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import fc from 'fast-check';
import { EncodeBody } from '../../src/http/data-plane/encode-route.js';
import { RerankV1Body } from '../../src/http/data-plane/rerank-route.js';
import { ScoreBody } from '../../src/http/data-plane/score-route.js';
import { bodySchemas } from '../../src/tei/http-routes.js';
import { client, instanceToml, writeConfig, type Answer } from '../helpers/data-plane.js';
import { startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';

let dir: string;
let m: ManagerProcess;
let data: ReturnType<typeof client>;
let admin: ReturnType<typeof client>;
let modelId: string;
const sha = (key: string) => createHash('sha256').update(key).digest('hex');

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-dpf-'));
  modelId = await testModel({ kind: 'embedding' });
  const keys = `[auth]
admin_requires_key = false
[[auth.api_keys]]
name = "all"
key_sha256 = "${sha('key-all')}"
[[auth.api_keys]]
name = "other-only"
key_sha256 = "${sha('key-other')}"
instances = ["other"]
`;
  m = await startManager(await writeConfig(dir, `data_port = 0\n${keys}`, instanceToml('solo', modelId)));
  await m.waitFor('solo', (i) => i.status === 'running', 120_000);
  data = client(Number(m.ready.data_port), { authorization: 'Bearer key-all' });
  admin = client(m.apiPort, { authorization: 'Bearer key-all' });
});

after(async () => {
  if (m) assert.equal(await m.stop(), 0);
  await rm(dir, { recursive: true, force: true });
});

describe('data_port: the data plane on its own listener', () => {
  test('data routes there, admin routes on api_port only', async () => {
    assert.notEqual(Number(m.ready.data_port), m.apiPort);
    const r = await data.post('/embed', { inputs: 'x' });
    assert.equal(r.status, 200, 'a single instance needs no model');
    assert.equal(r.headers.get('x-teiplex-instance'), 'solo');
    const onAdmin = await admin.post('/embed', { inputs: 'x' });
    assert.equal(onAdmin.status, 404);
    assert.equal(onAdmin.body.code, 'NOT_FOUND');
    assert.equal((await data.get('/instances')).status, 404);
    assert.equal((await data.get('/health')).status, 200);
    const oa = await data.post('/v1/embeddings', { input: ['a', 'b'] });
    assert.equal(oa.body.model, modelId, 'the model id answers for a request without model');
    assert.equal((await data.post(`/v1/encode/${modelId}`, { items: [{ text: 'x' }] })).status, 200, 'a model id with slashes in the path');
  });

  test('API keys: 401 without a valid key, 403 for a key limited to other instances, in the route shape', async () => {
    const anon = client(Number(m.ready.data_port));
    const none = await anon.post('/embed', { inputs: 'x' });
    assert.equal(none.status, 401);
    assert.equal(none.body.error_type, 'unauthorized');
    const wrong = await anon.post('/v1/embeddings', { input: 'x' }, { authorization: 'Bearer nope' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error.type, 'authentication_error');
    const other = client(Number(m.ready.data_port), { authorization: 'Bearer key-other' });
    const denied = await other.post('/v1/embeddings', { input: 'x', model: 'solo' });
    assert.equal(denied.status, 403);
    assert.match(denied.body.error.message, /API key 'other-only' cannot use model 'solo': it does not exist or is not one this key may use/);
    assert.deepEqual((await other.get('/v1/models')).body.data, [], 'a key sees only the models it may use');
    assert.equal((await data.get('/v1/models')).body.data[0].id, modelId);
    assert.equal((await anon.get('/health')).status, 200, 'health stays open');
  });
});

interface Route {
  url: string;
  schema: TSchema;
  valid: Record<string, unknown>;
  openai: boolean;
  /** The instance's model (an embedding model) can serve it; else its valid body is 400/422 for the model's type. */
  served?: false;
}

// The data plane's bodies: TEI's, each with the `model` field.
const B = bodySchemas(true);
const ROUTES: Route[] = [
  {
    url: '/embed',
    schema: B.embed,
    valid: { inputs: ['a', 'b'], truncate: true, normalize: false, dimensions: 4, prompt_name: null, truncation_direction: 'Left' },
    openai: false,
  },
  { url: '/embed_sparse', schema: B.embedSparse, valid: { inputs: 'a' }, openai: false, served: false },
  { url: '/embed_all', schema: B.embedAll, valid: { inputs: ['a'], truncate: false }, openai: false },
  { url: '/predict', schema: B.predict, valid: { inputs: [['a', 'b']], raw_scores: true }, openai: false, served: false },
  { url: '/predict_tokens', schema: B.predictTokens, valid: { inputs: ['a'], aggregation_strategy: 'simple', truncate: true }, openai: false, served: false },
  { url: '/rerank', schema: B.rerank, valid: { query: 'q', texts: ['a'], return_text: true }, openai: false, served: false },
  { url: '/tokenize', schema: B.tokenize, valid: { inputs: ['a'], add_special_tokens: false }, openai: false },
  { url: '/decode', schema: B.decode, valid: { ids: [101, 102], skip_special_tokens: true }, openai: false },
  { url: '/v1/embeddings', schema: B.openai, valid: { input: ['a'], model: 'solo', encoding_format: 'base64', dimensions: 3, user: 'u' }, openai: true },
  {
    url: '/v1/rerank',
    schema: RerankV1Body,
    valid: { model: 'solo', query: 'q', documents: ['a', { text: 'b' }], top_n: 1, return_documents: true },
    openai: true,
    served: false,
  },
  {
    url: '/v1/encode/solo',
    schema: EncodeBody,
    valid: { items: [{ id: 'a', text: 'x' }], output_types: ['dense', 'multivector'], normalize: true, dimensions: 2 },
    openai: true,
  },
  { url: '/v1/score/solo', schema: ScoreBody, valid: { query: 'q', items: [{ text: 'x' }] }, openai: true, served: false },
];

/** The error message of an answer in the route's shape ('' when the shape is wrong). */
function message(r: Answer, openai: boolean): string {
  if (openai) {
    const e = r.body?.error;
    const ok = e !== null && typeof e === 'object' && typeof e.message === 'string' && typeof e.type === 'string' && typeof e.code === 'string' && 'param' in e;
    return ok ? e.message : '';
  }
  return typeof r.body?.error === 'string' && typeof r.body?.error_type === 'string' ? r.body.error : '';
}

/** The machine code of an error answer: OpenAI's `error.code` (lower case), TEI's `error_type`. */
function codeOf(r: Answer, openai: boolean): string | undefined {
  return openai ? r.body?.error?.code : r.body?.error_type;
}

const counts = { invalid: 0, valid: 0 };

async function check(route: Route, body: unknown): Promise<void> {
  const r = await data.post(route.url, typeof body === 'string' ? JSON.stringify(body) : body);
  const label = `${route.url} ${JSON.stringify(body).slice(0, 300)} -> ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`;
  assert.ok(r.status < 500, `never a 5xx: ${label}`);
  if (r.status >= 400) assert.ok(message(r, route.openai).length > 0, `an error with a message in the route's shape: ${label}`);
  if (!Value.Check(route.schema, body)) {
    counts.invalid++;
    // VALIDATION and EMPTY are 422 (TEI error_type 'validation' / 'empty'; OpenAI code in lower case).
    assert.equal(r.status, 422, `a body the schema refuses is 422: ${label}`);
    assert.ok(['validation', 'empty'].includes(codeOf(r, route.openai) ?? ''), `documented code (VALIDATION or EMPTY): ${label}`);
  }
}

/** Values of every JSON type, awkward ones included. */
const oddValue = fc.oneof(
  fc.constantFrom(
    null,
    true,
    false,
    0,
    -1,
    1.5,
    2 ** 40,
    -(2 ** 53),
    '',
    ' ',
    '\u0000',
    '\ud800',
    [],
    {},
    [[]],
    [[[]]],
    [1.5],
    [-1],
    [2 ** 33],
    [''],
    [null],
    { text: 1 },
    { __proto__: 1 },
  ),
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.array(fc.oneof(fc.string({ maxLength: 5 }), fc.integer({ min: -5, max: 2 ** 32 + 5 })), { maxLength: 4 }),
  fc.jsonValue({ maxDepth: 2 }),
);

describe('fuzzed bad bodies: never 5xx; refused by the schema: 422 with the documented code and a message in the route shape', () => {
  for (const route of ROUTES) {
    test(route.url, async () => {
      // The valid body itself answers 2xx (the corpus below is a set of departures from it).
      const ok = await data.post(route.url, route.valid);
      if (route.served === false) assert.ok(ok.status === 400 || ok.status === 422, JSON.stringify(ok.body));
      else assert.equal(ok.status, 200, JSON.stringify(ok.body));
      const keys = [...new Set([...Object.keys(route.valid), ...Object.keys((route.schema as { properties?: object }).properties ?? {})])];
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(
            // One field replaced by an odd value, or removed.
            fc.record({ key: fc.constantFrom(...keys), value: oddValue, drop: fc.boolean() }).map(({ key, value, drop }) => {
              const b: Record<string, unknown> = { ...route.valid };
              if (drop) delete b[key];
              else b[key] = value;
              return b;
            }),
            // An unknown field, or an element of a list field broken.
            fc
              .record({ key: fc.string({ minLength: 1, maxLength: 8 }), value: oddValue })
              .map(({ key, value }) => ({ ...route.valid, [key === '__proto__' ? 'x' : key]: value })),
            // Any JSON value at all.
            fc.jsonValue({ maxDepth: 3 }),
          ),
          (body) => check(route, body),
        ),
        { numRuns: 40, seed: 20240611, includeErrorInReport: true },
      );
    });
  }

  test('bytes that are not a JSON body: 400/415, in the route shape', async () => {
    for (const route of [ROUTES[0], ROUTES[7]]) {
      for (const raw of ['', '{', '{"inputs": "x"', 'nul', '[1,]', '{"a":1}}', '\u0000']) {
        const r = await data.post(route.url, raw);
        assert.ok(r.status === 400 || r.status === 422, `${route.url} ${JSON.stringify(raw)} -> ${r.status}`);
        assert.ok(message(r, route.openai).length > 0, JSON.stringify(r.body));
      }
      const xml = await data.post(route.url, '<inputs/>', { 'content-type': 'application/xml' });
      assert.equal(xml.status, 415);
      assert.equal(codeOf(xml, route.openai), route.openai ? 'unsupported_media_type' : 'validation', JSON.stringify(xml.body));
      assert.ok(message(xml, route.openai).length > 0, JSON.stringify(xml.body));
      const proto = await data.post(route.url, '{"__proto__": {"x": 1}, "inputs": "a", "input": "a"}');
      assert.equal(proto.status, 400, 'prototype poisoning refused');
      assert.equal(codeOf(proto, route.openai), route.openai ? 'bad_request' : 'validation', JSON.stringify(proto.body));
    }
  });
});

/** Texts an embedding model takes without truncation (the test model: 128 tokens). */
const text = fc
  .oneof(fc.string({ minLength: 1, maxLength: 30, unit: 'grapheme' }), fc.constantFrom('hello world', 'naïve café', '東京', '🙂 ok', 'a-b_c'))
  .filter((t) => t.trim() !== '');
const texts = fc.array(text, { minLength: 1, maxLength: 4 });
const inputs = fc.oneof(text, texts);
const count = (x: string | string[]) => (typeof x === 'string' ? 1 : x.length);
const isVector = (v: unknown, dim?: number) =>
  Array.isArray(v) && v.length > 0 && (dim === undefined || v.length === dim) && v.every((x) => typeof x === 'number' && Number.isFinite(x));

interface Valid {
  url: string;
  openai: boolean;
  body: fc.Arbitrary<Record<string, unknown>>;
  /** Checks a 200 answer's shape against the body. */
  shape?: (body: any, answer: any) => void;
  /** A route the embedding model cannot serve: the documented code (TEI error_type / OpenAI code) and status. */
  refused?: { code: string; status: number };
}

const VALID: Valid[] = [
  {
    url: '/embed',
    openai: false,
    body: fc.record(
      {
        inputs,
        truncate: fc.boolean(),
        normalize: fc.boolean(),
        dimensions: fc.integer({ min: 1, max: 8 }),
        truncation_direction: fc.constantFrom('Left', 'Right'),
        model: fc.constant('solo'),
      },
      { requiredKeys: ['inputs'] },
    ),
    shape: (b, a) => {
      assert.equal(a.length, count(b.inputs));
      for (const v of a) assert.ok(isVector(v, b.dimensions), JSON.stringify(v).slice(0, 80));
    },
  },
  {
    url: '/embed_all',
    openai: false,
    body: fc.record({ inputs, truncate: fc.boolean() }, { requiredKeys: ['inputs'] }),
    shape: (b, a) => {
      assert.equal(a.length, count(b.inputs));
      for (const tokens of a) assert.ok(Array.isArray(tokens) && tokens.length > 0 && tokens.every((v: unknown) => isVector(v)));
    },
  },
  {
    url: '/tokenize',
    openai: false,
    body: fc.record({ inputs, add_special_tokens: fc.boolean() }, { requiredKeys: ['inputs'] }),
    shape: (b, a) => {
      assert.equal(a.length, count(b.inputs));
      for (const tokens of a)
        for (const t of tokens) assert.ok(Number.isInteger(t.id) && typeof t.text === 'string' && typeof t.special === 'boolean', JSON.stringify(t));
    },
  },
  {
    url: '/decode',
    openai: false,
    body: fc.record(
      { ids: fc.array(fc.integer({ min: 0, max: 30000 }), { minLength: 1, maxLength: 12 }), skip_special_tokens: fc.boolean() },
      { requiredKeys: ['ids'] },
    ),
    shape: (_b, a) => assert.ok(typeof a === 'string' || (Array.isArray(a) && a.every((x) => typeof x === 'string')), JSON.stringify(a)),
  },
  {
    url: '/v1/embeddings',
    openai: true,
    body: fc.record(
      {
        input: inputs,
        model: fc.constantFrom('solo'),
        encoding_format: fc.constantFrom('float', 'base64'),
        dimensions: fc.integer({ min: 1, max: 8 }),
        user: fc.string({ maxLength: 8 }),
      },
      { requiredKeys: ['input'] },
    ),
    shape: (b, a) => {
      assert.equal(a.object, 'list');
      assert.equal(a.data.length, count(b.input));
      a.data.forEach((d: any, i: number) => {
        assert.equal(d.index, i);
        if (b.encoding_format === 'base64')
          assert.equal(Buffer.from(d.embedding, 'base64').length / 4, b.dimensions ?? Buffer.from(d.embedding, 'base64').length / 4);
        else assert.ok(isVector(d.embedding, b.dimensions));
      });
      assert.ok(Number.isInteger(a.usage.prompt_tokens) && a.usage.prompt_tokens > 0);
    },
  },
  {
    url: '/v1/encode/solo',
    openai: true,
    body: fc.record(
      {
        items: fc.array(fc.record({ id: fc.string({ minLength: 1, maxLength: 6 }), text }, { requiredKeys: ['text'] }), { minLength: 1, maxLength: 4 }),
        output_types: fc.subarray(['dense', 'multivector'], { minLength: 1 }),
        normalize: fc.boolean(),
        dimensions: fc.integer({ min: 1, max: 8 }),
      },
      { requiredKeys: ['items'] },
    ),
    shape: (b, a) => {
      assert.equal(a.items.length, b.items.length);
      a.items.forEach((it: any, i: number) => {
        // `id` defaults to the item's index (docs/data-plane.md).
        assert.equal(it.id, b.items[i].id ?? i);
        const types: string[] = b.output_types ?? ['dense'];
        if (types.includes('dense'))
          assert.ok(isVector(it.dense.values, b.dimensions) && it.dense.dim === it.dense.values.length, JSON.stringify(it.dense).slice(0, 80));
        else assert.equal(it.dense, undefined);
        if (types.includes('multivector')) assert.equal(it.multivector.values.length, it.multivector.tokens * it.multivector.dim);
        else assert.equal(it.multivector, undefined);
      });
    },
  },
  { url: '/embed_sparse', openai: false, body: fc.record({ inputs }), refused: { code: 'validation', status: 400 } },
  { url: '/predict', openai: false, body: fc.record({ inputs: fc.oneof(text, fc.tuple(text, text)) }), refused: { code: 'validation', status: 400 } },
  { url: '/predict_tokens', openai: false, body: fc.record({ inputs: fc.oneof(text, texts) }), refused: { code: 'validation', status: 400 } },
  { url: '/rerank', openai: false, body: fc.record({ query: text, texts }), refused: { code: 'validation', status: 400 } },
  {
    url: '/v1/rerank',
    openai: true,
    body: fc.record({ model: fc.constant('solo'), query: text, documents: texts }),
    refused: { code: 'wrong_model_type', status: 400 },
  },
  {
    url: '/v1/score/solo',
    openai: true,
    body: fc.record({ query: text, items: texts.map((ts) => ts.map((t) => ({ text: t }))) }),
    refused: { code: 'output_type_unsupported', status: 422 },
  },
];

describe('fuzzed valid bodies: 200 in the documented shape, or the documented refusal where the model cannot serve the route', () => {
  for (const v of VALID) {
    test(v.url, async () => {
      const route = ROUTES.find((r) => r.url === v.url)!;
      await fc.assert(
        fc.asyncProperty(v.body, async (body) => {
          assert.ok(Value.Check(route.schema, body), `generator: ${JSON.stringify([...Value.Errors(route.schema, body)][0])}`);
          const r = await data.post(v.url, body);
          const label = `${v.url} ${JSON.stringify(body).slice(0, 300)} -> ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`;
          counts.valid++;
          if (v.refused !== undefined) {
            assert.equal(r.status, v.refused.status, label);
            assert.equal(codeOf(r, v.openai), v.refused.code, label);
            return;
          }
          assert.equal(r.status, 200, label);
          v.shape?.(body, r.body);
        }),
        { numRuns: 25, seed: 20240612, includeErrorInReport: true },
      );
    });
  }

  after(() => {
    // Both sides of the corpus were exercised (the counts go to the report).
    console.log(`# data-plane fuzz: ${counts.invalid} bodies the schema refuses, ${counts.valid} valid bodies`);
  });
});
