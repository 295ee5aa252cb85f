/**
 * The request bodies the docs promise (docs/router.md, docs/data-plane.md, docs/errors.md): every
 * field TEI (router/src/http/types.rs) and OpenAI's embeddings API define is accepted, any other
 * field is refused with 422 `validation` naming it (a misspelled `normalise` is never silently
 * ignored), and TEI's `POST /similarity` answers the cosine of each sentence with the source.
 * Pure checks on the shared schemas, then the router's routes over loopback in this process on
 * generated models (the data plane's own copy of the routes: test/e2e/docs-contract-manager.test.ts),
 * and the router's registered HTTP routes against docs/router.md's list of them (both directions,
 * checked on a doctored copy too).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import type { TObject } from '@sinclair/typebox';
import Fastify from 'fastify';
import { httpFront } from '../../src/router/http-front.js';
import { silentLog } from '../../src/router/router-log.js';
import { startRouter, type RunningRouter } from '../../src/router/server.js';
import { bodySchemas } from '../../src/tei/http-routes.js';
import { typeboxValidator } from '../../src/tei/http-schemas.js';
import { drift, readDoc } from '../helpers/docs-contract.js';
import { testModel } from '../helpers/models.js';
import { testRouterOptions } from '../helpers/router-options.js';
import { cosine } from '../helpers/vectors.js';

/**
 * The fields TEI's request types define (router/src/http/types.rs), `dimensions` on /embed
 * (TEI's Matryoshka option), /predict_tokens (BEI's), OpenAI's embeddings request (`input`, `model`, `user`,
 * `encoding_format`, `dimensions`: what the `openai` client sends), Cohere's v2 embed request for
 * texts (`model`, `texts`, `input_type`, `embedding_types`, `truncate`, `output_dimension`), and
 * teiplex's output matrix (`embedding_type`, `encoding`) and prompts by `input_type`
 * (docs/data-plane.md).
 */
const DEFINED: Record<string, string[]> = {
  embed: ['inputs', 'truncate', 'truncation_direction', 'prompt_name', 'normalize', 'dimensions', 'embedding_type', 'encoding', 'input_type'],
  embedSparse: ['inputs', 'truncate', 'truncation_direction', 'prompt_name', 'input_type'],
  embedAll: ['inputs', 'truncate', 'truncation_direction', 'prompt_name', 'input_type'],
  predict: ['inputs', 'truncate', 'truncation_direction', 'raw_scores'],
  // BEI's token classification route (TEI has none), with transformers' aggregation strategies.
  predictTokens: ['inputs', 'truncate', 'truncation_direction', 'raw_scores', 'aggregation_strategy'],
  rerank: ['query', 'texts', 'truncate', 'truncation_direction', 'raw_scores', 'return_text'],
  similarity: ['inputs', 'parameters'],
  tokenize: ['inputs', 'add_special_tokens', 'prompt_name'],
  decode: ['ids', 'skip_special_tokens'],
  openai: ['input', 'model', 'user', 'encoding_format', 'dimensions', 'embedding_type', 'input_type'],
  cohere: ['model', 'texts', 'input_type', 'embedding_types', 'truncate', 'output_dimension'],
};

/** The fields a checker finds missing (defined but not accepted) or extra (accepted but not defined). */
export function bodyFieldDrift(schemas: Record<string, TObject>, defined: Record<string, string[]>, extra: string[] = []): string[] {
  const out: string[] = [];
  for (const [route, fields] of Object.entries(defined)) {
    const schema = schemas[route];
    if (schema === undefined) {
      out.push(`${route}: no schema`);
      continue;
    }
    const props = Object.keys(schema.properties);
    for (const f of fields) if (!props.includes(f)) out.push(`${route}: ${f} is not accepted`);
    for (const p of props) if (!fields.includes(p) && !extra.includes(p)) out.push(`${route}: ${p} is not defined`);
    if (schema.additionalProperties !== false) out.push(`${route}: unknown fields are not refused`);
  }
  for (const route of Object.keys(schemas)) if (!(route in defined)) out.push(`${route}: not in the list`);
  return out;
}

describe('request bodies: what TEI and OpenAI define, nothing else', () => {
  test("the router's and the data plane's schemas accept exactly TEI's and OpenAI's fields plus `model`, and refuse any other", () => {
    // `model`: the data plane's instance; on the router accepted and ignored (a data-plane client works against a router).
    assert.deepEqual(bodyFieldDrift(bodySchemas(false), DEFINED, ['model']), []);
    assert.deepEqual(bodyFieldDrift(bodySchemas(true), DEFINED, ['model']), []);
  });

  test('the checker sees a drift: a field dropped, a field added, a schema left open', () => {
    const s = bodySchemas(false);
    const { normalize: _, ...rest } = s.embed.properties;
    const drift = bodyFieldDrift({ ...s, embed: { ...s.embed, properties: rest } as TObject, decode: { ...s.decode, additionalProperties: undefined } as unknown as TObject }, DEFINED, ['model']);
    assert.deepEqual(drift, ['embed: normalize is not accepted', 'decode: unknown fields are not refused']);
    assert.deepEqual(bodyFieldDrift(s, { ...DEFINED, embed: DEFINED.embed.filter((f) => f !== 'dimensions') }, ['model']), ['embed: dimensions is not defined']);
  });

  test('the validator names the unknown field', () => {
    const check = typeboxValidator({ schema: bodySchemas(false).embed });
    const r = check({ inputs: 'x', normalise: false }) as { error?: Error & { field: string } };
    assert.equal(r.error?.field, 'normalise');
    assert.equal(r.error?.message, '`normalise` is not a known field');
    const nested = typeboxValidator({ schema: bodySchemas(true).similarity })({ model: 'm', inputs: { source_sentence: 'a', sentences: [], sentence: 'b' } }) as { error?: Error & { field: string } };
    assert.equal(nested.error?.field, 'inputs.sentence');
  });
});

interface Reply {
  status: number;
  body: any;
}

describe("the router's routes: strict bodies and /similarity", () => {
  let emb: RunningRouter;
  let rer: RunningRouter;
  const post = async (r: RunningRouter, path: string, body: unknown): Promise<Reply> => {
    const res = await fetch(`http://127.0.0.1:${r.httpPort}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, body: await res.json() };
  };

  before(async () => {
    const [embDir, rerDir] = await Promise.all([testModel({ kind: 'embedding', prompts: { query: 'query: ' } }), testModel({ kind: 'reranker' })]);
    emb = await startRouter(testRouterOptions({ modelId: embDir, httpPort: 0, maxClientBatchSize: 4 }), silentLog);
    rer = await startRouter(testRouterOptions({ modelId: rerDir, httpPort: 0 }), silentLog);
  });
  after(async () => {
    await emb?.stop();
    await rer?.stop();
  });

  test('a misspelled field is refused with 422 validation naming it, on TEI and OpenAI routes', async () => {
    const tei = await post(emb, '/embed', { inputs: 'hello', normalise: false });
    assert.equal(tei.status, 422, JSON.stringify(tei.body));
    assert.deepEqual(tei.body, { error: '`normalise` is not a known field', error_type: 'validation' });
    const rerank = await post(rer, '/rerank', { query: 'q', texts: ['a'], return_texts: true });
    assert.equal(rerank.status, 422, JSON.stringify(rerank.body));
    assert.deepEqual(rerank.body, { error: '`return_texts` is not a known field', error_type: 'validation' });
    const openai = await post(emb, '/v1/embeddings', { input: 'hello', encodingFormat: 'float' });
    assert.equal(openai.status, 422, JSON.stringify(openai.body));
    assert.deepEqual(openai.body, { message: '`encodingFormat` is not a known field', code: 422, type: 'validation' });
  });

  test("every field TEI defines is accepted (prompt_name, truncation_direction, raw_scores, return_text, ...)", async () => {
    const embed = await post(emb, '/embed', { inputs: ['hello'], truncate: true, truncation_direction: 'Left', prompt_name: 'query', normalize: false, dimensions: 8 });
    assert.equal(embed.status, 200, JSON.stringify(embed.body));
    assert.equal(embed.body[0].length, 8);
    for (const [path, body] of [
      ['/embed_sparse', { inputs: 'x', truncate: null, truncation_direction: 'right', prompt_name: null }],
      ['/embed_all', { inputs: 'x', truncate: false, truncation_direction: 'Right', prompt_name: null }],
      ['/tokenize', { inputs: 'x', add_special_tokens: false, prompt_name: 'query' }],
      ['/decode', { ids: [1, 2], skip_special_tokens: false }],
    ] as const) {
      const r = await post(emb, path, body);
      // /embed_sparse needs a SPLADE model: refused for that (400 validation), never for a field.
      if (path === '/embed_sparse') {
        assert.equal(r.status, 400, JSON.stringify(r.body));
        assert.equal(r.body.error_type, 'validation');
      } else assert.equal(r.status, 200, `${path}: ${JSON.stringify(r.body)}`);
      assert.doesNotMatch(JSON.stringify(r.body), /not a known field/);
    }
    const rerank = await post(rer, '/rerank', { query: 'q', texts: ['a', 'b'], truncate: true, truncation_direction: 'left', raw_scores: true, return_text: true });
    assert.equal(rerank.status, 200, JSON.stringify(rerank.body));
    assert.equal(typeof rerank.body[0].text, 'string');
    const predict = await post(rer, '/predict', { inputs: ['q', 'a'], truncate: true, truncation_direction: 'Left', raw_scores: true });
    assert.equal(predict.status, 200, JSON.stringify(predict.body));
  });

  test("a data-plane client's `model` is accepted and ignored by the router", async () => {
    const r = await post(emb, '/embed', { model: 'whatever', inputs: 'hello' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const bad = await post(emb, '/embed', { model: 1, inputs: 'hello' });
    assert.equal(bad.status, 422, JSON.stringify(bad.body));
    assert.equal(bad.body.error_type, 'validation');
  });

  test('the official openai client (encoding_format, dimensions, user) is accepted', async () => {
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${emb.httpPort}/v1`, apiKey: 'unused', maxRetries: 0 });
    // Without encoding_format the client sends `encoding_format: "base64"` itself and decodes it.
    const out = await client.embeddings.create({ model: 'x', input: ['hello', 'world'], dimensions: 4, user: 'someone' });
    assert.equal(out.data.length, 2);
    assert.equal(out.data[0].embedding.length, 4);
    const float = await client.embeddings.create({ model: 'x', input: 'hello', encoding_format: 'float' });
    assert.equal(typeof float.data[0].embedding[0], 'number');
  });

  test('/similarity: the cosine of each sentence with the source, in order', async () => {
    const sentences = ['a cat sat', 'the stock market', 'query text'];
    const sim = await post(emb, '/similarity', { inputs: { source_sentence: 'a dog sat', sentences }, parameters: { truncate: true, truncation_direction: 'Right', prompt_name: null } });
    assert.equal(sim.status, 200, JSON.stringify(sim.body));
    const vectors = await post(emb, '/embed', { inputs: ['a dog sat', ...sentences], normalize: false });
    assert.equal(vectors.status, 200);
    assert.equal(sim.body.length, 3);
    for (let i = 0; i < 3; i++) assert.ok(Math.abs(sim.body[i] - cosine(vectors.body[0], vectors.body[i + 1])) < 1e-5, `sentence ${i}: ${sim.body[i]}`);
    // `parameters` is optional; the source is one of the inputs counted against the batch size (4).
    const bare = await post(emb, '/similarity', { inputs: { source_sentence: 'a dog sat', sentences: ['a dog sat'] } });
    assert.equal(bare.status, 200);
    assert.ok(Math.abs(bare.body[0] - 1) < 1e-5);
    const many = await post(emb, '/similarity', { inputs: { source_sentence: 's', sentences: ['a', 'b', 'c', 'd'] } });
    assert.equal(many.status, 422, JSON.stringify(many.body));
    assert.equal(many.body.error_type, 'validation');
  });

  test('/similarity refuses an unknown field, and a model that does not embed', async () => {
    const nested = await post(emb, '/similarity', { inputs: { source_sentence: 'a', sentences: ['b'] }, parameters: { normalize: true } });
    assert.equal(nested.status, 422, JSON.stringify(nested.body));
    assert.deepEqual(nested.body, { error: '`parameters.normalize` is not a known field', error_type: 'validation' });
    const wrong = await post(rer, '/similarity', { inputs: { source_sentence: 'a', sentences: ['b'] } });
    assert.equal(wrong.status, 400, JSON.stringify(wrong.body));
    assert.equal(wrong.body.error_type, 'validation');
  });
});

/** docs/router.md's HTTP routes: the backticked paths of its `- HTTP (`--http-port`):` item, up to the headers it lists. */
export function routerDocRoutes(markdown: string): string[] {
  const start = markdown.indexOf('- HTTP (`--http-port`):');
  const text = markdown.slice(start, markdown.indexOf('with TEI\'s JSON shapes', start));
  return [...text.matchAll(/`(\/[a-z0-9_/]*)`/g)].map((m) => m[1]);
}

describe("the router's HTTP routes: docs/router.md and the registered ones", () => {
  test('every route the router registers is listed, and every listed path is a route', async (t) => {
    const dir = await testModel({ kind: 'embedding' });
    const r = await startRouter(testRouterOptions({ modelId: dir }), silentLog);
    t.after(() => r.stop());
    const app = Fastify({ logger: false });
    const urls = new Set<string>();
    app.addHook('onRoute', (o) => {
      if (o.method !== 'HEAD' && !(Array.isArray(o.method) && o.method.every((m) => m === 'HEAD'))) urls.add(o.url);
    });
    await app.register(httpFront, { engine: r.engine, maxClientBatchSize: 32, autoTruncate: false, payloadLimit: 1000, metrics: r.metrics });
    await app.ready();
    await app.close();
    const doc = routerDocRoutes(readDoc('docs/router.md'));
    assert.ok(urls.size >= 15, [...urls].join(' '));
    assert.deepEqual(drift(urls, doc, 'docs/router.md'), []);
    // The checker sees a route dropped from the doc.
    assert.deepEqual(drift(urls, routerDocRoutes(readDoc('docs/router.md').replace('`/similarity`, ', '')), 'docs/router.md'), ['/similarity: in the code, not in docs/router.md']);
  });
});
