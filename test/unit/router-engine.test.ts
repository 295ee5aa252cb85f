/**
 * The Engine on generated models (real ONNX Runtime, real tokenizer files), checked against direct
 * computations: ONNX Runtime run by the test on unpadded single rows, pooled/scored here.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { TeiplexError } from '../../src/common/errors.js';
import { createEngine, type RouterEngine } from '../../src/router/engine.js';
import { findOnnxFile, ModelFilesError, readModelFiles } from '../../src/router/model-files.js';
import type { TextInput } from '../../src/tei/types.js';
import { testModel } from '../helpers/models.js';
import { testRouterOptions } from '../helpers/router-options.js';
import { cosine, norm } from '../helpers/vectors.js';

const { Tokenizer } = createRequire(import.meta.url)('tokenizers') as typeof import('tokenizers');


const EMBED = { truncate: false, truncationDirection: 'right' as const, normalize: true };
const ENCODE = { truncate: false, truncationDirection: 'right' as const };
const PREDICT = { truncate: false, truncationDirection: 'right' as const, rawScores: false };



function isCode(code: string, re?: RegExp) {
  return (e: unknown) => e instanceof TeiplexError && e.code === code && (re === undefined || re.test(e.message));
}

const WORDS = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega'.split(' ');
/** A deterministic, non-periodic text of `n` words. */
function text(n: number, seed = 0): string {
  let s = (seed * 2654435761 + 1) >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return WORDS[(s >>> 8) % WORDS.length];
  }).join(' ');
}

/** Direct computation: tokenizer + ONNX Runtime on one unpadded row. */
class Direct {
  private constructor(
    readonly session: ort.InferenceSession,
    readonly tokenizer: import('tokenizers').Tokenizer,
  ) {}
  static async open(dir: string): Promise<Direct> {
    const session = await ort.InferenceSession.create(await findOnnxFile(dir), { intraOpNumThreads: 1 });
    const tokenizer = Tokenizer.fromFile(path.join(dir, 'tokenizer.json'));
    tokenizer.disablePadding();
    tokenizer.disableTruncation();
    return new Direct(session, tokenizer);
  }
  async ids(a: string, b?: string): Promise<{ ids: number[]; types: number[] }> {
    const e = await this.tokenizer.encode(a, b ?? null);
    return { ids: e.getIds(), types: e.getTypeIds() };
  }
  async run(ids: number[], types?: number[]): Promise<ort.InferenceSession.OnnxValueMapType> {
    const T = ids.length;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, T]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]),
    };
    if (this.session.inputNames.includes('token_type_ids')) {
      feeds.token_type_ids = new ort.Tensor('int64', BigInt64Array.from((types ?? new Array(T).fill(0)).map(BigInt)), [1, T]);
    }
    return this.session.run(feeds);
  }
  /** Hidden states [T, H] of one text. */
  async hidden(ids: number[]): Promise<{ data: Float32Array; T: number; H: number }> {
    const out = await this.run(ids);
    const t = (out.last_hidden_state ?? out.token_embeddings) as ort.Tensor;
    return { data: t.data as Float32Array, T: t.dims[1], H: t.dims[2] };
  }
  async meanPooled(ids: number[]): Promise<Float32Array> {
    const { data, T, H } = await this.hidden(ids);
    const out = new Float32Array(H);
    for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) out[h] += data[t * H + h] / T;
    return out;
  }
  async close(): Promise<void> {
    await this.session.release();
  }
}

describe('embedding model', () => {
  let dir: string;
  let engine: RouterEngine;
  let direct: Direct;
  const logs: string[] = [];

  before(async () => {
    dir = await testModel({ kind: 'embedding', prompts: { query: 'query: ', passage: 'passage: ' } });
    // A fixed batch overhead keeps the grouping checks independent of this machine's timings.
    engine = await createEngine(testRouterOptions({ maxConcurrentRequests: 64, autoTruncate: false }), dir, (m) => logs.push(m), { batchOverheadTokens: 16 });
    direct = await Direct.open(dir);
  });
  after(async () => {
    await engine?.close();
    await direct?.close();
  });

  test('describes the model and fills Info', () => {
    assert.equal(engine.model.kind, 'embedding');
    assert.equal(engine.model.pooling, 'mean');
    assert.ok(engine.model.hiddenSize! > 0);
    assert.ok(engine.model.maxInputLength > 0 && engine.model.maxInputLength <= 256);
    assert.deepEqual(Object.fromEntries(engine.model.prompts), { query: 'query: ', passage: 'passage: ' });
    assert.equal(engine.info.modelType, 'embedding');
    assert.equal(engine.info.modelId, 'test-model');
    assert.equal(engine.info.maxConcurrentRequests, 64);
    assert.equal(engine.info.maxInputLength, engine.model.maxInputLength);
    assert.ok(engine.info.tokenizationWorkers >= 1);
    assert.match(engine.info.version, /^\d+\.\d+\.\d+/);
    assert.ok(logs.some((l) => /model ready/.test(l)));
  });

  test('matches a direct ONNX Runtime computation (mean pooling, normalized)', async () => {
    const texts = ['hello world', text(12, 1), text(40, 2)];
    const { results, metadata } = await engine.embed(texts, EMBED);
    for (let i = 0; i < texts.length; i++) {
      const { ids } = await direct.ids(texts[i]);
      const expected = await direct.meanPooled(ids);
      assert.ok(cosine(results[i], expected) > 0.99999, `text ${i}`);
      assert.ok(Math.abs(norm(results[i]) - 1) < 1e-5);
      assert.equal(metadata[i].computeTokens, ids.length);
      assert.equal(metadata[i].computeChars, texts[i].length);
      assert.ok(metadata[i].totalTimeNs > 0n && metadata[i].inferenceTimeNs > 0n && metadata[i].tokenizationTimeNs > 0n);
      assert.ok(metadata[i].queueTimeNs >= 0n && metadata[i].totalTimeNs >= metadata[i].inferenceTimeNs);
    }
  });

  test('the same text alone and inside a padded batch gives the same embedding', async () => {
    const t = text(5, 3);
    const { results: [alone] } = await engine.embed([t], EMBED);
    const { results } = await engine.embed([text(60, 4), t, text(30, 5)], EMBED);
    assert.ok(cosine(alone, results[1]) > 0.99999, `cosine ${cosine(alone, results[1])}`);
  });

  test('results do not depend on batch order', async () => {
    const texts = [text(3, 1), text(25, 2), text(9, 3), text(50, 4)];
    const a = (await engine.embed(texts, EMBED)).results;
    const order = [2, 0, 3, 1];
    const b = (await engine.embed(order.map((i) => texts[i]), EMBED)).results;
    order.forEach((src, k) => assert.ok(cosine(a[src], b[k]) > 0.99999));
  });

  test('normalize=false keeps the scale; dimensions truncate before normalizing', async () => {
    const t = text(8, 6);
    const { results: [raw] } = await engine.embed([t], { ...EMBED, normalize: false });
    const { ids } = await direct.ids(t);
    const expected = await direct.meanPooled(ids);
    assert.ok(Math.abs(norm(raw) - norm(expected)) < 1e-4 * norm(expected));
    const { results: [d] } = await engine.embed([t], { ...EMBED, dimensions: 8 });
    assert.equal(d.length, 8);
    assert.ok(Math.abs(norm(d) - 1) < 1e-5);
    const head = raw.slice(0, 8);
    const n = norm(head);
    d.forEach((x, i) => assert.ok(Math.abs(x - head[i] / n) < 1e-5));
    const { results: [dr] } = await engine.embed([t], { ...EMBED, normalize: false, dimensions: 8 });
    assert.deepEqual(Array.from(dr), Array.from(head));
    await assert.rejects(engine.embed([t], { ...EMBED, dimensions: engine.model.hiddenSize! + 1 }), isCode('VALIDATION', /dimensions/));
    await assert.rejects(engine.embed([t], { ...EMBED, dimensions: 0 }), isCode('VALIDATION', /dimensions/));
  });

  test('prompts by name; an unknown prompt is VALIDATION listing the known ones', async () => {
    const { results: [p] } = await engine.embed(['hello'], { ...EMBED, promptName: 'query' });
    const { results: [q] } = await engine.embed(['query: hello'], EMBED);
    const { results: [plain] } = await engine.embed(['hello'], EMBED);
    assert.ok(cosine(p, q) > 0.99999);
    assert.ok(cosine(p, plain) < 0.9999);
    await assert.rejects(engine.embed(['hello'], { ...EMBED, promptName: 'nope' }), isCode('VALIDATION', /query, passage/));
    const [toks] = await engine.tokenize(['hello'], false, 'passage');
    assert.deepEqual(toks.map((x) => x.text), ['passage', ':', 'hello']);
  });

  test('truncation: too long is VALIDATION; right and left keep the expected tokens', async () => {
    const max = engine.model.maxInputLength;
    const long = `${text(max / 2 + 20, 7)} ${text(max / 2 + 20, 8)}`;
    await assert.rejects(engine.embed([long], EMBED), isCode('VALIDATION', new RegExp(`less than ${max} tokens`)));
    const [toks] = await engine.tokenize([long], false);
    const words = toks.map((x) => x.id);
    const CLS = 101;
    const SEP = 102;
    const rightIds = [CLS, ...words.slice(0, max - 2), SEP];
    const leftIds = [CLS, ...words.slice(words.length - (max - 2)), SEP];
    const r = await engine.embed([long], { ...EMBED, truncate: true, truncationDirection: 'right' });
    const l = await engine.embed([long], { ...EMBED, truncate: true, truncationDirection: 'left' });
    assert.equal(r.metadata[0].computeTokens, max);
    const { results: [rIds, lIds] } = await engine.embed([rightIds, leftIds], EMBED);
    assert.ok(cosine(r.results[0], rIds) > 0.99999, 'right truncation keeps the first tokens');
    assert.ok(cosine(l.results[0], lIds) > 0.99999, 'left truncation keeps the last tokens');
    assert.ok(cosine(r.results[0], l.results[0]) < 0.9999, 'left and right differ');
    const all = await engine.embedAll([long], { truncate: true, truncationDirection: 'left' });
    assert.equal(all.results[0].tokens, max);
  });

  test('pre-tokenized ids give the same embedding as the text', async () => {
    const t = text(10, 8);
    const { ids } = await direct.ids(t);
    const { results } = await engine.embed([t, ids] as TextInput[], EMBED);
    assert.ok(cosine(results[0], results[1]) > 0.99999);
    await assert.rejects(engine.embed([[101, 10 ** 7]], EMBED), isCode('VALIDATION', /vocabulary/));
  });

  test('embedAll returns the real tokens; their mean is the pooled embedding', async () => {
    const t = text(6, 9);
    const { ids } = await direct.ids(t);
    const { results: [all] } = await engine.embedAll([t], ENCODE);
    assert.equal(all.tokens, ids.length);
    assert.equal(all.dim, engine.model.hiddenSize);
    assert.equal(all.values.length, all.tokens * all.dim);
    const h = await direct.hidden(ids);
    for (let i = 0; i < h.data.length; i++) assert.ok(Math.abs(h.data[i] - all.values[i]) < 1e-4);
    const mean = new Float32Array(all.dim);
    for (let k = 0; k < all.tokens; k++) for (let j = 0; j < all.dim; j++) mean[j] += all.values[k * all.dim + j] / all.tokens;
    const { results: [raw] } = await engine.embed([t], { ...EMBED, normalize: false });
    assert.ok(cosine(mean, raw) > 0.99999);
  });

  test('tokenize and decode', async () => {
    const [toks] = await engine.tokenize(['Hello world'], true);
    assert.deepEqual(toks.map((x) => x.special), [true, false, false, true]);
    assert.deepEqual(toks[1], { id: 7592, text: 'Hello', special: false, start: 0, stop: 5 });
    assert.deepEqual(await engine.decode([toks.map((x) => x.id)], true), ['hello world']);
  });

  test('bad input gets its error code and the engine keeps serving', async () => {
    await assert.rejects(engine.embed([''], EMBED), isCode('VALIDATION', /`inputs` cannot be empty/));
    await assert.rejects(engine.embed([], EMBED), isCode('EMPTY'));
    await assert.rejects(engine.embed(Array.from({ length: 65 }, () => 'x'), EMBED), isCode('MODEL_OVERLOADED', /^Model is overloaded$/));
    await assert.rejects(engine.embedSparse(['x'], ENCODE), isCode('WRONG_MODEL_TYPE', /SPLADE/));
    await assert.rejects(engine.predict(['x'], PREDICT), isCode('WRONG_MODEL_TYPE', /classifier/));
    await assert.rejects(engine.rerank('q', ['x'], { ...PREDICT, returnText: false }), isCode('WRONG_MODEL_TYPE', /re-ranker/));
    await assert.rejects(engine.embed(['ok', ''], EMBED), isCode('VALIDATION', /^input 1: /));
    const { results } = await engine.embed(['still serving'], EMBED);
    assert.equal(results.length, 1);
  });

  test('concurrent single-text requests are batched and each gets its own result, in order', async () => {
    const texts = Array.from({ length: 48 }, (_, i) => text(i % 8 === 0 ? 20 + i : 2 + (i % 7), i));
    const expected: Float32Array[] = [];
    for (const t of texts) expected.push((await engine.embed([t], EMBED)).results[0]);
    const before = engine.queueStats;
    const got = await Promise.all(texts.map((t) => engine.embed([t], EMBED)));
    const after = engine.queueStats;
    got.forEach((g, i) => assert.ok(cosine(g.results[0], expected[i]) > 0.99999, `request ${i}`));
    const batches = after.batches - before.batches;
    assert.ok(batches < texts.length / 2, `${batches} batches for ${texts.length} requests`);
    // Grouping by length: far fewer padded tokens than one batch padded to the longest.
    const padded = after.paddedTokens - before.paddedTokens;
    const real = after.realTokens - before.realTokens;
    const longest = Math.max(...got.map((g) => g.metadata[0].computeTokens));
    assert.ok(padded < 0.6 * longest * texts.length, `padded ${padded}, real ${real}, one batch ${longest * texts.length}`);
    // A multi-input request still answers in input order.
    const { results } = await engine.embed(texts.slice(0, 10), EMBED);
    results.forEach((r, i) => assert.ok(cosine(r, expected[i]) > 0.99999));
  });

  test('--pooling cls overrides 1_Pooling', async () => {
    const cls = await createEngine(testRouterOptions({ pooling: 'cls' }), dir);
    try {
      assert.equal(cls.model.pooling, 'cls');
      const t = text(7, 11);
      const { results: [v] } = await cls.embed([t], { ...EMBED, normalize: false });
      const { ids } = await direct.ids(t);
      const h = await direct.hidden(ids);
      assert.ok(cosine(v, h.data.slice(0, h.H)) > 0.99999);
    } finally {
      await cls.close();
    }
  });
});

describe('engine lifecycle and loading', () => {
  test('close waits for in-flight work, then refuses with UNHEALTHY', async () => {
    const dir = await testModel({ kind: 'embedding' });
    const logs: string[] = [];
    const engine = await createEngine(testRouterOptions(), dir, (m) => logs.push(m));
    assert.ok(engine.batchOverheadTokens >= 2 && engine.batchOverheadTokens <= 4096, 'batch overhead measured at warm-up');
    assert.ok(logs.some((l) => /batch cost/.test(l)));
    const inflight = engine.embed([text(20, 1), text(3, 2)], EMBED);
    const closed = engine.close();
    const { results } = await inflight;
    assert.equal(results.length, 2);
    await closed;
    await assert.rejects(engine.embed(['x'], EMBED), isCode('UNHEALTHY'));
  });

  test('a graph with sentence_embedding: same vectors, normalize=false honoured', async () => {
    const plainDir = await testModel({ kind: 'embedding', seed: 5 });
    const seDir = await testModel({ kind: 'embedding', seed: 5, sentenceEmbedding: true });
    const a = await createEngine(testRouterOptions(), plainDir);
    const b = await createEngine(testRouterOptions(), seDir);
    try {
      const texts = [text(4, 1), text(30, 2)];
      for (const normalize of [true, false]) {
        const x = await a.embed(texts, { ...EMBED, normalize });
        const y = await b.embed(texts, { ...EMBED, normalize });
        x.results.forEach((v, i) => {
          assert.ok(cosine(v, y.results[i]) > 0.99999);
          assert.ok(Math.abs(norm(v) - norm(y.results[i])) < 1e-4 * norm(v), `normalize=${normalize}`);
        });
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('external data and onnx/ layout load; --onnx-file picks the file', async () => {
    const ext = await testModel({ kind: 'embedding', externalData: true, seed: 3 });
    const sub = await testModel({ kind: 'embedding', onnxPath: 'onnx/model.onnx', seed: 3 });
    const a = await createEngine(testRouterOptions(), ext);
    const b = await createEngine(testRouterOptions({ onnxFile: 'onnx/model.onnx' }), sub);
    try {
      const x = (await a.embed(['same weights'], EMBED)).results[0];
      const y = (await b.embed(['same weights'], EMBED)).results[0];
      assert.ok(cosine(x, y) > 0.99999);
    } finally {
      await a.close();
      await b.close();
    }
    await assert.rejects(createEngine(testRouterOptions({ onnxFile: 'nope.onnx' }), sub), /nope.onnx/);
  });

  test('startup errors: splade pooling on a non-MaskedLM model, max-batch-tokens below max input length', async () => {
    const dir = await testModel({ kind: 'embedding' });
    await assert.rejects(createEngine(testRouterOptions({ pooling: 'splade' }), dir), /ForMaskedLM/);
    await assert.rejects(createEngine(testRouterOptions({ maxBatchTokens: 16 }), dir), /--max-batch-tokens/);
    const e = await createEngine(testRouterOptions({ maxBatchTokens: 16, autoTruncate: true }), dir);
    try {
      assert.equal(e.model.maxInputLength, 16);
      const { metadata } = await e.embed([text(100, 1)], EMBED);
      assert.equal(metadata[0].computeTokens, 16);
    } finally {
      await e.close();
    }
  });

  test('token ids are bounded by the smaller of config.json vocab_size and the tokenizer; a bad id leaves the engine serving', async () => {
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'teiplex-vocab-'));
    const dir = path.join(tmp, 'model');
    await cp(await testModel({ kind: 'embedding' }), dir, { recursive: true });
    const config = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...config, vocab_size: 30000 }));
    const e = await createEngine(testRouterOptions(), dir);
    try {
      assert.equal(e.model.inputVocabSize, 30000);
      await assert.rejects(e.embed([[101, 30100, 102]], EMBED), isCode('VALIDATION', /token id 30100 at position 1 .*\(vocabulary size 30000\)/));
      await assert.rejects(e.embed(['fine', [101, -1]], EMBED), isCode('VALIDATION', /^input 1: token id -1 at position 1/));
      await assert.rejects(e.decode([[101, 30000]], true), isCode('VALIDATION', /token id 30000 .*\(vocabulary size 30000\)/));
      assert.equal((await e.embed([[101, 29999, 102]], EMBED)).results.length, 1);
    } finally {
      await e.close();
      await rm(tmp, { recursive: true, force: true });
    }
  });
});

describe('SPLADE model', () => {
  let dir: string;
  let engine: RouterEngine;
  let direct: Direct;
  before(async () => {
    dir = await testModel({ kind: 'splade' });
    engine = await createEngine(testRouterOptions({ pooling: 'splade' }), dir);
    direct = await Direct.open(dir);
  });
  after(async () => {
    await engine?.close();
    await direct?.close();
  });

  test('embedSparse matches max over tokens of log(1 + relu(logits)) from raw ONNX logits', async () => {
    assert.equal(engine.model.kind, 'splade');
    assert.equal(engine.info.modelType, 'embedding');
    const texts = [text(3, 1), text(20, 2), 'hello world'];
    const { results, metadata } = await engine.embedSparse(texts, ENCODE);
    for (let i = 0; i < texts.length; i++) {
      const { ids } = await direct.ids(texts[i]);
      const out = await direct.run(ids);
      const logits = out.logits as ort.Tensor;
      const [, T, V] = logits.dims;
      const data = logits.data as Float32Array;
      const expected = new Map<number, number>();
      for (let v = 0; v < V; v++) {
        let m = 0;
        for (let t = 0; t < T; t++) m = Math.max(m, Math.log(1 + Math.max(0, data[t * V + v])));
        if (m > 0) expected.set(v, m);
      }
      const got = results[i];
      assert.deepEqual(Array.from(got.indices), [...expected.keys()], `indices of text ${i}`);
      got.indices.forEach((v, k) => assert.ok(Math.abs(got.values[k] - expected.get(v)!) < 1e-4 * Math.max(1, expected.get(v)!)));
      for (let k = 1; k < got.indices.length; k++) assert.ok(got.indices[k] > got.indices[k - 1]);
      assert.equal(metadata[i].computeTokens, ids.length);
    }
  });

  test('the same text alone and in a padded batch gives the same sparse vector', async () => {
    const t = 'short one';
    const { results: [alone] } = await engine.embedSparse([t], ENCODE);
    const { results } = await engine.embedSparse([text(50, 3), t], ENCODE);
    assert.deepEqual(Array.from(results[1].indices), Array.from(alone.indices));
    results[1].values.forEach((v, k) => assert.ok(Math.abs(v - alone.values[k]) < 1e-4));
  });

  test('dense embed only without normalize (TEI); embedAll and heads are WRONG_MODEL_TYPE', async () => {
    await assert.rejects(engine.embed(['x'], EMBED), isCode('WRONG_MODEL_TYPE', /normalize/));
    const { results: [dense] } = await engine.embed(['hello world'], { ...EMBED, normalize: false });
    const { results: [sparse] } = await engine.embedSparse(['hello world'], ENCODE);
    assert.equal(dense.length, engine.model.vocabSize);
    sparse.indices.forEach((v, k) => assert.ok(Math.abs(dense[v] - sparse.values[k]) < 1e-6));
    await assert.rejects(engine.embedAll(['x'], ENCODE), isCode('WRONG_MODEL_TYPE'));
    await assert.rejects(engine.predict(['x'], PREDICT), isCode('WRONG_MODEL_TYPE'));
    const { results } = await engine.embedSparse(['still serving'], ENCODE);
    assert.equal(results.length, 1);
  });
});

describe('reranker model', () => {
  let engine: RouterEngine;
  let direct: Direct;
  before(async () => {
    const dir = await testModel({ kind: 'reranker' });
    engine = await createEngine(testRouterOptions(), dir);
    direct = await Direct.open(dir);
  });
  after(async () => {
    await engine?.close();
    await direct?.close();
  });

  async function directLogit(a: string, b: string): Promise<number> {
    const { ids, types } = await direct.ids(a, b);
    const out = await direct.run(ids, types);
    return (out.logits as ort.Tensor).data[0] as number;
  }

  test('rerank scores each (query, text) pair like a direct computation, sorted descending', async () => {
    assert.equal(engine.model.kind, 'reranker');
    assert.equal(engine.info.modelType, 'reranker');
    const query = 'what is the capital of france';
    const texts = ['paris is the capital', text(30, 1), 'berlin', text(5, 2), 'the capital of france is paris'];
    const { ranks, metadata } = await engine.rerank(query, texts, { ...PREDICT, returnText: true });
    assert.equal(ranks.length, texts.length);
    for (let k = 1; k < ranks.length; k++) assert.ok(ranks[k - 1].score >= ranks[k].score);
    assert.deepEqual([...ranks.map((r) => r.index)].sort(), [0, 1, 2, 3, 4]);
    for (const r of ranks) {
      assert.equal(r.text, texts[r.index]);
      const expected = 1 / (1 + Math.exp(-(await directLogit(query, texts[r.index]))));
      assert.ok(Math.abs(r.score - expected) < 1e-5, `text ${r.index}: ${r.score} vs ${expected}`);
    }
    assert.ok(metadata.computeTokens > 0 && metadata.computeChars > 0 && metadata.totalTimeNs > 0n);
    const raw = await engine.rerank(query, texts, { ...PREDICT, rawScores: true, returnText: false });
    for (const r of raw.ranks) {
      assert.equal(r.text, undefined);
      assert.ok(Math.abs(r.score - (await directLogit(query, texts[r.index]))) < 1e-4);
    }
  });

  test('predict on pairs and strings uses the single logit with sigmoid', async () => {
    const { results } = await engine.predict([['a question', 'an answer'], 'single text'], PREDICT);
    assert.equal(results[0].length, 1);
    const expected = 1 / (1 + Math.exp(-(await directLogit('a question', 'an answer'))));
    assert.ok(Math.abs(results[0][0].score - expected) < 1e-5);
  });

  test('bad input and wrong model type', async () => {
    await assert.rejects(engine.rerank('q', [], { ...PREDICT, returnText: false }), isCode('EMPTY'));
    await assert.rejects(engine.rerank('', ['x'], { ...PREDICT, returnText: false }), isCode('VALIDATION'));
    await assert.rejects(engine.embed(['x'], EMBED), isCode('WRONG_MODEL_TYPE'));
    const { ranks } = await engine.rerank('q', ['still', 'serving'], { ...PREDICT, returnText: false });
    assert.equal(ranks.length, 2);
  });
});

describe('classifier model', () => {
  let engine: RouterEngine;
  let direct: Direct;
  before(async () => {
    const dir = await testModel({ kind: 'classifier', numLabels: 3 });
    engine = await createEngine(testRouterOptions(), dir);
    direct = await Direct.open(dir);
  });
  after(async () => {
    await engine?.close();
    await direct?.close();
  });

  test('predict: softmax over labels like a direct computation, sorted descending; raw scores', async () => {
    assert.equal(engine.model.kind, 'classifier');
    assert.equal(engine.model.id2label.length, 3);
    const texts = ['i love it', text(25, 3)];
    const { results, metadata } = await engine.predict(texts, PREDICT);
    const raw = await engine.predict(texts, { ...PREDICT, rawScores: true });
    for (let i = 0; i < texts.length; i++) {
      const { ids } = await direct.ids(texts[i]);
      const logits = Array.from((await direct.run(ids)).logits.data as Float32Array);
      const m = Math.max(...logits);
      const e = logits.map((x) => Math.exp(x - m));
      const s = e.reduce((a, b) => a + b, 0);
      const probs = e.map((x) => x / s);
      assert.equal(results[i].length, 3);
      for (let k = 1; k < 3; k++) assert.ok(results[i][k - 1].score >= results[i][k].score);
      for (const p of results[i]) {
        const idx = engine.model.id2label.indexOf(p.label);
        assert.ok(Math.abs(p.score - probs[idx]) < 1e-5);
      }
      for (const p of raw.results[i]) assert.ok(Math.abs(p.score - logits[engine.model.id2label.indexOf(p.label)]) < 1e-4);
      assert.equal(metadata[i].computeTokens, ids.length);
    }
  });

  test('wrong model type for embed and rerank; keeps serving', async () => {
    await assert.rejects(engine.embed(['x'], EMBED), isCode('WRONG_MODEL_TYPE'));
    await assert.rejects(engine.rerank('q', ['x'], { ...PREDICT, returnText: false }), isCode('WRONG_MODEL_TYPE', /re-ranker/));
    const { results } = await engine.predict(['still serving'], PREDICT);
    assert.equal(results.length, 1);
  });
});

describe('a sentence-transformers Dense module (the router applies none)', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'teiplex-dense-'));
  });
  after(() => rm(tmp, { recursive: true, force: true }));

  test('is refused at load, whether modules.json names it or --dense-path does; a --dense-path naming nothing changes nothing', async () => {
    const dir = path.join(tmp, 'model');
    await cp(await testModel({ kind: 'embedding' }), dir, { recursive: true });
    await cp(path.join(dir, '1_Pooling'), path.join(dir, '2_Dense'), { recursive: true });
    await writeFile(path.join(dir, '2_Dense', 'config.json'), JSON.stringify({ in_features: 32, out_features: 8, bias: true, activation_function: 'torch.nn.modules.linear.Identity' }));
    const refused = (re: RegExp) => (e: unknown) => e instanceof ModelFilesError && /applies no Dense layers/.test(e.message) && re.test(e.message);
    await assert.rejects(createEngine(testRouterOptions({ densePath: '2_Dense/' }), dir), refused(/--dense-path "2_Dense\/" is in the model/));
    // The folder alone, not named by anything, is not a module of the model (TEI reads it only when named).
    assert.equal((await readModelFiles(dir, { densePath: '2_Dense_1024' })).dir, dir, 'a --dense-path that is not in the model is harmless');
    assert.equal((await readModelFiles(dir)).dir, dir);
    const modules = [
      { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
      { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
      { idx: 2, name: '2', path: '2_Dense', type: 'sentence_transformers.models.Dense' },
    ];
    await writeFile(path.join(dir, 'modules.json'), JSON.stringify(modules));
    await assert.rejects(createEngine(testRouterOptions(), dir), refused(/modules\.json lists sentence_transformers\.models\.Dense in "2_Dense"/));
  });
});
