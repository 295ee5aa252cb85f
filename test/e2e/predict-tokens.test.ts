/**
 * Token classification (NER) end to end on every front end: a real `teiplex serve` with a real
 * `teiplex router` child serving a generated `BertForTokenClassification` model (`ner`, with its
 * own HTTP port) and an embedding model (`emb`, for the wrong-kind refusals). Each front end —
 * the router's HTTP `/predict_tokens`, the router's gRPC `teiplex.v1.TokenClassification`, the
 * data plane's `/predict_tokens` and `/v1/encode` (output type "tokens"), the multiplexer's
 * `PredictTokens` — is compared, for every aggregation strategy, with an independent computation
 * in this file: the ONNX model run directly with onnxruntime-node on the tokenizer's ids, softmax,
 * and transformers' TokenClassificationPipeline rules written here from its published definition
 * (subwords found by its own rule, token text vs. input span length, not by word ids). Offsets are
 * checked on multi-byte and astral text (code points); then the limits, truncation and refusals.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import * as ort from 'onnxruntime-node';
import type { Tokenizer as TkTokenizer } from 'tokenizers';
import { startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { assertErrorCode, assertTeiError, childHttpPort, client, instanceToml, writeConfig } from '../helpers/data-plane.js';
import { direct, health, mux, reflect, unary, type AnyClient } from '../helpers/mux-client.js';

const { Tokenizer } = createRequire(import.meta.url)('tokenizers') as typeof import('tokenizers');

type Strategy = 'none' | 'simple' | 'first' | 'max' | 'average';
const STRATEGIES: Strategy[] = ['none', 'simple', 'first', 'max', 'average'];

interface TokenJson {
  token: string;
  token_id: number;
  label: string;
  score: number;
  start: number;
  end: number;
}
interface EntityJson {
  entity_group: string;
  score: number;
  word: string;
  start: number;
  end: number;
}
type Answer = TokenJson[] | EntityJson[];

const MULTI_BYTE = 'Zürich 東京 🙂 Paris';
const TEXTS = [
  MULTI_BYTE,
  'Angela Merkel met Barack Obama in New York.',
  'The Washingtonian reported from São Paulo and Reykjavík on Tuesday.',
  'Microsoft bought GitHub; Satya Nadella announced it in Seattle.',
];

let dir: string;
let m: ManagerProcess;
let api: ReturnType<typeof client>;
let child: ReturnType<typeof client>;
let childGrpc: AnyClient;
let embGrpc: AnyClient;
let muxClient: AnyClient;
let nerDir: string;
let ports: { ner: number; emb: number };
let labels: string[];
let tokenizer: TkTokenizer;
let session: ort.InferenceSession;
let unkId: number;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-ner-'));
  nerDir = await testModel({ kind: 'token-classifier' });
  const emb = await testModel({ kind: 'embedding' });
  const file = await writeConfig(dir, '', instanceToml('ner', nerDir, 'extra_args = ["--http-port", "0"]') + instanceToml('emb', emb));
  m = await startManager(file);
  const ner = await m.waitFor('ner', (i) => i.status === 'running', 120_000);
  const embInstance = await m.waitFor('emb', (i) => i.status === 'running', 120_000);
  api = client(m.apiPort);
  child = client(await childHttpPort(m, 'ner'));
  ports = { ner: ner.port, emb: embInstance.port };
  childGrpc = direct(ner.port, 'teiplex.v1.TokenClassification');
  embGrpc = direct(embInstance.port, 'teiplex.v1.TokenClassification');
  muxClient = mux(Number(m.ready.grpc_port));

  const config = JSON.parse(await readFile(path.join(nerDir, 'config.json'), 'utf8')) as { id2label: Record<string, string> };
  labels = Object.keys(config.id2label).map((k) => config.id2label[k]!);
  tokenizer = Tokenizer.fromFile(path.join(nerDir, 'tokenizer.json'));
  tokenizer.disablePadding();
  tokenizer.disableTruncation();
  unkId = tokenizer.tokenToId('[UNK]')!;
  session = await ort.InferenceSession.create(path.join(nerDir, 'onnx', 'model.onnx'));
});

after(async () => {
  for (const c of [childGrpc, embGrpc, muxClient]) c?.close();
  await session?.release();
  if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  await rm(dir, { recursive: true, force: true });
});

// ---- the independent computation --------------------------------------------------------------

const codePoints = (s: string): string[] => Array.from(s);

/** One text through the ONNX model alone: per token its id, text, offsets, special mark and logits. */
async function modelTokens(text: string) {
  const e = await tokenizer.encode(text, null, {});
  const ids = e.getIds();
  const T = ids.length;
  const feeds = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, T]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]),
    token_type_ids: new ort.Tensor('int64', new BigInt64Array(T), [1, T]),
  };
  const out = await session.run(feeds);
  const logits = out.logits!.data as Float32Array;
  assert.deepEqual(out.logits!.dims, [1, T, labels.length]);
  const special = e.getSpecialTokensMask();
  const tokens = e.getTokens();
  const offsets = e.getOffsets();
  return ids.map((id, t) => ({ id, token: tokens[t]!, start: offsets[t]![0]!, end: offsets[t]![1]!, special: special[t] === 1, logits: Array.from(logits.subarray(t * labels.length, (t + 1) * labels.length)) }));
}

/** softmax as numpy computes it in the pipeline: exp(x - max) / sum. */
function softmax(x: number[]): number[] {
  const max = Math.max(...x);
  const e = x.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}
const argmax = (x: number[]): number => x.indexOf(Math.max(...x));

/** transformers' convert_tokens_to_string for a fast tokenizer: its decoder. */
const tokensToString = (tokens: string[]): string => tokenizer.getDecoder()!.decode(tokens);

/** TokenClassificationPipeline.postprocess, from its definition (ignore_labels ["O"] for entities). */
async function reference(text: string, strategy: Strategy, rawScores = false): Promise<Answer> {
  const toks = await modelTokens(text);
  const cp = codePoints(text);
  // gather_pre_entities
  const pre = toks
    .filter((t) => !t.special)
    .map((t) => {
      const wordRef = cp.slice(t.start, t.end).join('');
      let word = t.token;
      // A tokenizer with a continuing_subword_prefix ("##"): a subword when the token's text is not the span's length.
      let isSubword = codePoints(word).length !== codePoints(wordRef).length;
      if (t.id === unkId) {
        word = wordRef;
        isSubword = false;
      }
      return { word, token: t.token, id: t.id, scores: softmax(t.logits), logits: t.logits, start: t.start, end: t.end, isSubword };
    });
  if (strategy === 'none') {
    // Every token (O included: the per-token answer), the token's own text.
    return pre.map((p) => {
      const idx = argmax(p.scores);
      return { token: p.token, token_id: p.id, label: labels[idx]!, score: rawScores ? p.logits[idx]! : p.scores[idx]!, start: p.start, end: p.end };
    });
  }
  type Ent = { entity: string; score: number; word: string; start: number; end: number };
  let entities: Ent[];
  if (strategy === 'simple') {
    entities = pre.map((p) => ({ entity: labels[argmax(p.scores)]!, score: Math.max(...p.scores), word: p.word, start: p.start, end: p.end }));
  } else {
    // aggregate_words / aggregate_word
    const words: Array<typeof pre> = [];
    for (const p of pre) {
      if (words.length === 0 || !p.isSubword) words.push([p]);
      else words[words.length - 1]!.push(p);
    }
    entities = words.map((w) => {
      let scores: number[];
      if (strategy === 'first') scores = w[0]!.scores;
      else if (strategy === 'max') scores = w.reduce((best, e) => (Math.max(...e.scores) > Math.max(...best.scores) ? e : best)).scores;
      else scores = labels.map((_, k) => w.reduce((s, e) => s + e.scores[k]!, 0) / w.length);
      const idx = argmax(scores);
      return { entity: labels[idx]!, score: scores[idx]!, word: tokensToString(w.map((e) => e.word)), start: w[0]!.start, end: w[w.length - 1]!.end };
    });
  }
  // group_entities / group_sub_entities
  const tag = (e: string): [string, string] => (e.startsWith('B-') ? ['B', e.slice(2)] : e.startsWith('I-') ? ['I', e.slice(2)] : ['I', e]);
  const groups: EntityJson[] = [];
  const flush = (g: Ent[]) =>
    groups.push({
      entity_group: g[0]!.entity.split('-').slice(1).join('-') || g[0]!.entity,
      score: g.reduce((s, e) => s + e.score, 0) / g.length,
      word: tokensToString(g.map((e) => e.word)),
      start: g[0]!.start,
      end: g[g.length - 1]!.end,
    });
  let current: Ent[] = [];
  for (const e of entities) {
    if (current.length === 0) {
      current = [e];
      continue;
    }
    const [bi, t] = tag(e.entity);
    const [, lastT] = tag(current[current.length - 1]!.entity);
    if (t === lastT && bi !== 'B') current.push(e);
    else {
      flush(current);
      current = [e];
    }
  }
  if (current.length > 0) flush(current);
  return groups.filter((g) => g.entity_group !== 'O');
}

/** Two answers: the same tokens/entities, labels, words and offsets, scores within float error. */
function same(got: Answer, want: Answer, what: string): void {
  assert.equal(got.length, want.length, `${what}: ${JSON.stringify(got)} vs ${JSON.stringify(want)}`);
  got.forEach((g, i) => {
    const { score, ...rest } = g as { score: number };
    const { score: ws, ...wrest } = want[i] as { score: number };
    assert.deepEqual(rest, wrest, `${what} [${i}]`);
    assert.ok(Math.abs(score - ws) < 1e-5, `${what} [${i}]: score ${score} vs ${ws}`);
  });
}

// ---- the front ends -----------------------------------------------------------------------------

type FrontEnd = (texts: string[], strategy: Strategy) => Promise<Answer[]>;

const GRPC_STRATEGY = (s: Strategy): string => `AGGREGATION_STRATEGY_${s.toUpperCase()}`;
/** A gRPC TokenPredictions as the HTTP JSON: tokens with NONE, entities otherwise. */
const fromGrpc = (p: { tokens: TokenJson[]; entities: EntityJson[] }, s: Strategy): Answer => (s === 'none' ? p.tokens : p.entities);

const FRONT_ENDS: Record<string, FrontEnd> = {
  'router HTTP /predict_tokens': async (texts, s) => {
    const r = await child.post('/predict_tokens', { inputs: texts, aggregation_strategy: s });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  },
  'router gRPC teiplex.v1.TokenClassification': async (texts, s) => {
    const r = await unary(childGrpc, 'PredictTokens', { inputs: texts, aggregation_strategy: GRPC_STRATEGY(s) });
    return r.res.predictions.map((p: never) => fromGrpc(p, s));
  },
  'data plane /predict_tokens': async (texts, s) => {
    const r = await api.post('/predict_tokens', { model: 'ner', inputs: texts, aggregation_strategy: s });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.headers.get('x-teiplex-instance'), 'ner');
    return r.body;
  },
  'data plane /v1/encode (tokens)': async (texts, s) => {
    const r = await api.post('/v1/encode/ner', { items: texts.map((text, id) => ({ id, text })), output_types: ['tokens'], aggregation_strategy: s });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.items.map((x: { id: number }) => x.id), texts.map((_, i) => i));
    return r.body.items.map((x: { tokens: Answer }) => x.tokens);
  },
  'multiplexer PredictTokens': async (texts, s) => {
    const r = await unary(muxClient, 'PredictTokens', { target: { instance_name: 'ner' }, request: { inputs: texts, aggregation_strategy: GRPC_STRATEGY(s) } });
    assert.equal(r.headers.get('teiplex-instance')[0], 'ner');
    return r.res.predictions.map((p: never) => fromGrpc(p, s));
  },
};

describe('every front end answers what the model and the pipeline rules give', () => {
  for (const [name, call] of Object.entries(FRONT_ENDS)) {
    test(name, async () => {
      for (const s of STRATEGIES) {
        const got = await call(TEXTS, s);
        assert.equal(got.length, TEXTS.length);
        for (let i = 0; i < TEXTS.length; i++) same(got[i]!, await reference(TEXTS[i]!, s), `${name}, ${s}, text ${i}`);
      }
    });
  }

  test('the generated model gives a mix of labels, and entities of several tokens', async () => {
    const tokens = (await FRONT_ENDS['router HTTP /predict_tokens']!(TEXTS, 'none')).flat() as TokenJson[];
    const seen = new Set(tokens.map((t) => t.label));
    assert.ok(seen.size >= 5, `labels seen: ${[...seen].join(', ')}`);
    assert.ok(tokens.some((t) => t.label !== 'O'));
    let multi = 0;
    for (const s of ['simple', 'first', 'max', 'average'] as const) {
      for (const row of (await FRONT_ENDS['data plane /predict_tokens']!(TEXTS, s)) as EntityJson[][]) {
        multi += row.filter((e) => e.word.includes(' ') || tokens.filter((t) => t.start >= e.start && t.end <= e.end).length > 1).length;
      }
    }
    assert.ok(multi > 0, 'some entity spans more than one token: the grouping rules are exercised');
  });
});

describe('discovery', () => {
  test("server reflection: the router lists teiplex.v1.TokenClassification; the multiplexer's descriptors hold teiplex.v1's messages", async () => {
    const router = await reflect(ports.ner, 'v1', 'teiplex.v1.TokenClassification');
    assert.ok(router.services.includes('teiplex.v1.TokenClassification'), router.services.join(', '));
    const muxFiles = (await reflect(Number(m.ready.grpc_port), 'v1', 'tei_multiplexer.v1.TeiMultiplexer')).files;
    // protobufjs names the descriptors by package: grpcurl resolves PredictTokensResponse from it.
    assert.ok(muxFiles.some((f) => f.startsWith('teiplex')), muxFiles.join(', '));
  });
});

describe('offsets on multi-byte and astral text', () => {
  test('start/end are code points of the input (Python str indices): 🙂 counts one, Paris starts at 12', async () => {
    const r = await api.post('/predict_tokens', { model: 'ner', inputs: MULTI_BYTE });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const spans = (r.body as TokenJson[]).map((t) => [t.token, t.start, t.end]);
    assert.deepEqual(spans, [
      ['zurich', 0, 6],
      ['東', 7, 8],
      ['京', 8, 9],
      ['[UNK]', 10, 11],
      ['paris', 12, 17],
    ]);
    const cp = codePoints(MULTI_BYTE);
    assert.deepEqual(
      (r.body as TokenJson[]).map((t) => cp.slice(t.start, t.end).join('')),
      ['Zürich', '東', '京', '🙂', 'Paris'],
    );
    // In UTF-16 units Paris would start at 13: the offsets are not JavaScript string indices.
    assert.equal(MULTI_BYTE.indexOf('Paris'), 13);
    // An entity over the unknown token carries the input's text, not [UNK].
    const words = ((await FRONT_ENDS['multiplexer PredictTokens']!([MULTI_BYTE], 'first'))[0] as EntityJson[]).map((e) => e.word);
    const unk = (r.body as TokenJson[])[3]!;
    if (unk.label !== 'O') assert.ok(words.some((w) => w.includes('🙂')), JSON.stringify(words));
  });

  test('raw_scores: the per-token score is the logit of the chosen label', async () => {
    const r = await api.post('/predict_tokens', { model: 'ner', inputs: [MULTI_BYTE], raw_scores: true });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    same(r.body[0], await reference(MULTI_BYTE, 'none', true), 'raw scores');
  });
});

describe('limits and truncation, as for /predict', () => {
  const long = `${'Berlin and Hamburg are cities. '.repeat(40)}Ende`;

  test('an input over the max input length is refused without truncate, cut with it (offsets still into the whole input)', async () => {
    assertTeiError(await api.post('/predict_tokens', { model: 'ner', inputs: long }), 422, 'validation', 'data plane, no truncate');
    assertTeiError(await child.post('/predict_tokens', { inputs: long, truncate: false }), 422, 'validation', 'router, no truncate');
    const right = await api.post('/predict_tokens', { model: 'ner', inputs: long, truncate: true });
    assert.equal(right.status, 200, JSON.stringify(right.body));
    assert.equal(right.body.length, 128 - 2, 'the max input length less [CLS] and [SEP]');
    assert.equal(right.body[0].start, 0);
    const left = await api.post('/predict_tokens', { model: 'ner', inputs: long, truncate: true, truncation_direction: 'Left' });
    assert.equal(left.status, 200, JSON.stringify(left.body));
    assert.equal(left.body.length, 128 - 2);
    // The head was dropped: the tokens kept end at the input's end and start well inside it.
    assert.equal((left.body[left.body.length - 1] as TokenJson).end, long.length);
    assert.ok((left.body[0] as TokenJson).start > 0);
    for (const t of left.body as TokenJson[]) assert.equal(codePoints(long).slice(t.start, t.end).join('').toLowerCase(), t.token.replace(/^##/, ''));
  });

  test('more inputs than max_client_batch_size (32): the router refuses, the data plane splits and keeps the order', async () => {
    const many = Array.from({ length: 40 }, (_, i) => `${TEXTS[i % TEXTS.length]} ${i}`);
    assertTeiError(await child.post('/predict_tokens', { inputs: many }), 422, 'validation', 'router: batch size');
    await assert.rejects(unary(childGrpc, 'PredictTokens', { inputs: many }), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && e.metadata.get('teiplex-error-code')[0] === 'VALIDATION');
    const r = await api.post('/predict_tokens', { model: 'ner', inputs: many, aggregation_strategy: 'simple' });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.length, 40);
    for (const i of [0, 33, 39]) same(r.body[i], await reference(many[i]!, 'simple'), `input ${i}`);
  });

  test('bad bodies: an unknown strategy, raw_scores with aggregation, an empty input', async () => {
    assertTeiError(await api.post('/predict_tokens', { model: 'ner', inputs: 'x', aggregation_strategy: 'exact' }), 422, 'validation', 'unknown strategy');
    const raw = await api.post('/predict_tokens', { model: 'ner', inputs: 'x', aggregation_strategy: 'simple', raw_scores: true });
    assertTeiError(raw, 422, 'validation', 'raw_scores with aggregation');
    assert.match(raw.body.error, /raw_scores/);
    assertTeiError(await child.post('/predict_tokens', { inputs: [''] }), 422, 'validation', 'empty input');
    await assert.rejects(
      unary(muxClient, 'PredictTokens', { target: { instance_name: 'ner' }, request: { inputs: ['x'], raw_scores: true, aggregation_strategy: 'AGGREGATION_STRATEGY_MAX' } }),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && e.metadata.get('teiplex-error-code')[0] === 'VALIDATION',
    );
  });
});

describe('the wrong model kind is refused on every route', () => {
  const wrongType = (e: grpc.ServiceError) => e.code === grpc.status.FAILED_PRECONDITION && e.metadata.get('teiplex-error-code')[0] === 'WRONG_MODEL_TYPE';

  test('token classification on an embedding model', async () => {
    const r = await api.post('/predict_tokens', { model: 'emb', inputs: 'hello' });
    assertTeiError(r, 400, 'validation', 'data plane /predict_tokens on emb');
    assert.match(r.body.error, /not a token classification model/);
    await assert.rejects(unary(embGrpc, 'PredictTokens', { inputs: ['hello'] }), wrongType, 'router gRPC');
    await assert.rejects(unary(muxClient, 'PredictTokens', { target: { instance_name: 'emb' }, request: { inputs: ['hello'] } }), wrongType, 'multiplexer');
    // The typed route knows an embedding model's capabilities from its Info.
    assertErrorCode(await api.post('/v1/encode/emb', { items: [{ text: 'hello' }], output_types: ['tokens'] }), 422, 'OUTPUT_TYPE_UNSUPPORTED', '/v1/encode tokens on emb');
  });

  test('other kinds of call on the token classifier', async () => {
    for (const [route, body] of [
      ['/embed', { inputs: 'hello' }],
      ['/predict', { inputs: 'hello' }],
      ['/rerank', { query: 'q', texts: ['a'] }],
    ] as const) {
      const viaManager = await api.post(route, { ...body, model: 'ner' });
      assertTeiError(viaManager, 400, 'validation', `data plane ${route} on ner`);
      assertTeiError(await child.post(route, body), 400, 'validation', `router ${route}`);
    }
    assertErrorCode(await api.post('/v1/encode/ner', { items: [{ text: 'hello' }], output_types: ['dense'] }), 422, 'OUTPUT_TYPE_UNSUPPORTED', '/v1/encode dense on ner');
    await assert.rejects(unary(muxClient, 'Predict', { target: { instance_name: 'ner' }, request: { inputs: 'hello' } }), wrongType, 'multiplexer Predict');
    // gRPC health: the service is SERVING on the token classifier's child only.
    for (const [name, want] of [['ner', 'SERVING'], ['emb', 'NOT_SERVING']] as const) {
      const h = health(ports[name]);
      try {
        assert.equal((await unary(h, 'Check', { service: 'teiplex.v1.TokenClassification' })).res.status, want, name);
      } finally {
        h.close();
      }
    }
    // Its /info names it, and its natural route (POST /) is /predict_tokens.
    const info = await child.get('/info');
    assert.deepEqual(Object.keys(info.body.model_type), ['token_classifier']);
    assert.equal(info.body.model_type.token_classifier.id2label['1'], 'B-PER');
    const natural = await child.post('/', { inputs: MULTI_BYTE });
    assert.equal(natural.status, 200, JSON.stringify(natural.body));
    same(natural.body, await reference(MULTI_BYTE, 'none'), 'POST /');
  });
});
