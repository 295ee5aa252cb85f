/**
 * The dense output matrix on every HTTP front end, table-driven: dimensions (all, 32) x output
 * type (float32, float16, int8, uint8, binary, ubinary) x encoding (JSON numbers, base64) on the
 * router's own /embed, and the manager's /embed, OpenAI /v1/embeddings, Cohere /v2/embed and typed
 * /v1/encode. Each answer is checked against the test's own computation
 * (test/helpers/quantize-reference.ts) from the same front end's float32 answer; int8/uint8 against
 * ranges the test computes itself from the float32 vectors of the calibration texts. Then binary
 * retrieval (Hamming) against float cosine on a generated corpus (recall@10), and the refusals.
 * A real manager with a real `teiplex router` child.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeDenseTyped, encodeTexts } from '../../src/arrow/embedding-batch.js';
import { CALIBRATION_TEXTS } from '../../src/tei/calibration.js';
import { type AnyClient, grpcError, mux, unary } from '../helpers/mux-client.js';
import { status } from '@grpc/grpc-js';
import { startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { assertErrorCode, assertTeiError, childHttpPort, client, instanceToml, writeConfig } from '../helpers/data-plane.js';
import { decodeBase64, refHalf, refQuantize, refRanges } from '../helpers/quantize-reference.js';

let dir: string;
let m: ManagerProcess;
let api: ReturnType<typeof client>;
let router: ReturnType<typeof client>;
let grpcMux: AnyClient;

const TYPES = ['float32', 'float16', 'int8', 'uint8', 'binary', 'ubinary'] as const;
type Type = (typeof TYPES)[number];
const TEXTS = ['The quick brown fox.', 'Zürich 東京 🙂 Paris', 'SELECT 1;', 'a', 'embeddings map text to vectors'];

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-matrix-'));
  const file = await writeConfig(
    dir,
    '',
    instanceToml('emb', await testModel({ kind: 'embedding' }), 'extra_args = ["--http-port", "0"]') +
      instanceToml('splade', await testModel({ kind: 'splade' }), 'pooling = "splade"') +
      instanceToml('minilm', await testModel({ kind: 'embedding', shape: 'minilm-l6' })),
  );
  m = await startManager(file);
  for (const name of ['emb', 'splade', 'minilm']) await m.waitFor(name, (i) => i.status === 'running', 120_000);
  api = client(m.apiPort);
  router = client(await childHttpPort(m, 'emb'));
  grpcMux = mux(Number(m.ready.grpc_port));
});

after(async () => {
  grpcMux?.close();
  if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  await rm(dir, { recursive: true, force: true });
});

/** One front end: how to ask for `texts` in a type and encoding, and how to read the rows back. */
interface FrontEnd {
  name: string;
  /** The rows as sent: number lists (JSON) or base64 strings. */
  ask(texts: string[], type: Type, base64: boolean, dims?: number): Promise<Array<number[] | string>>;
}

async function ok(a: Promise<{ status: number; body: any }>, what: string): Promise<any> {
  const r = await a;
  assert.equal(r.status, 200, `${what}: ${JSON.stringify(r.body)}`);
  return r.body;
}

const dimsField = (dims?: number) => (dims === undefined ? {} : { dimensions: dims });

const FRONT_ENDS: FrontEnd[] = [
  {
    name: 'router /embed',
    ask: (texts, type, base64, dims) => ok(router.post('/embed', { inputs: texts, embedding_type: type, encoding: base64 ? 'base64' : 'json', ...dimsField(dims) }), 'router /embed'),
  },
  {
    name: 'manager /embed',
    ask: (texts, type, base64, dims) => ok(api.post('/embed', { model: 'emb', inputs: texts, embedding_type: type, encoding: base64 ? 'base64' : 'json', ...dimsField(dims) }), 'manager /embed'),
  },
  {
    name: 'manager /v1/embeddings',
    ask: async (texts, type, base64, dims) => {
      const body = await ok(api.post('/v1/embeddings', { model: 'emb', input: texts, embedding_type: type, encoding_format: base64 ? 'base64' : 'float', ...dimsField(dims) }), 'openai');
      return body.data.map((d: { embedding: number[] | string; index: number }, i: number) => {
        assert.equal(d.index, i);
        return d.embedding;
      });
    },
  },
  {
    name: 'manager /v2/embed (Cohere)',
    ask: async (texts, type, base64, dims) => {
      // Cohere's names: float32 is "float", its base64 is the "base64" type; other types JSON only
      if (base64 && type !== 'float32') return cohereTwo(texts, type, dims);
      const name = type === 'float32' ? (base64 ? 'base64' : 'float') : type;
      const body = await ok(api.post('/v2/embed', { model: 'emb', texts, embedding_types: [name], ...(dims !== undefined ? { output_dimension: dims } : {}) }), 'cohere');
      assert.deepEqual(Object.keys(body.embeddings), [name]);
      assert.deepEqual(body.texts, texts);
      assert.ok(body.meta.billed_units.input_tokens > 0);
      return body.embeddings[name];
    },
  },
  {
    // Arrow columns of the matching type: the encoding is Arrow's, asked once per cell (base64 does not apply)
    name: 'multiplexer EmbedArrow',
    ask: async (texts, type, _base64, dims) => {
      const { res } = await unary(grpcMux, 'EmbedArrow', { target: { instance_name: 'emb' }, arrow_ipc: Buffer.from(encodeTexts(texts)), embedding_type: type === 'float32' ? '' : type, ...(dims !== undefined ? { dimensions: dims } : {}) });
      const out = decodeDenseTyped(res.arrow_ipc);
      assert.equal(out.rows, texts.length);
      if (type !== 'float32') {
        assert.equal(out.metadata.get('teiplex.embedding_type'), type);
        assert.equal(Number(out.metadata.get('teiplex.dimensions')), dims ?? 32);
      }
      const element = { float32: Float32Array, float16: Uint16Array, int8: Int8Array, binary: Int8Array, uint8: Uint8Array, ubinary: Uint8Array }[type];
      assert.ok(out.values instanceof element, `${type}: ${out.values.constructor.name}`);
      const half = type === 'float16' ? refHalf : (x: number) => x;
      return Array.from({ length: out.rows }, (_, i) => Array.from(out.values.subarray(i * out.dim, (i + 1) * out.dim), half));
    },
  },
  {
    // each row's little-endian bytes: the base64 cells of the JSON routes, here always bytes
    name: 'multiplexer EmbedTyped',
    ask: async (texts, type, _base64, dims) => {
      const { res, headers } = await unary(grpcMux, 'EmbedTyped', { target: { instance_name: 'emb' }, inputs: texts, embedding_type: type === 'float32' ? '' : type, ...(dims !== undefined ? { dimensions: dims } : {}) });
      assert.equal(res.embedding_type, type);
      assert.equal(res.dimensions, dims ?? 32);
      assert.match(String(headers.get('teiplex-cache')[0]), /^hits=\d+ misses=\d+$/);
      return res.embeddings.map((b: Buffer) => b.toString('base64'));
    },
  },
  {
    name: 'manager /v1/encode',
    ask: async (texts, type, base64, dims) => {
      const body = await ok(api.post('/v1/encode/emb', { items: texts.map((text) => ({ text })), embedding_type: type, encoding: base64 ? 'base64' : 'json', ...dimsField(dims) }), 'encode');
      return body.items.map((x: { dense: { dim: number; values: number[] | string } }) => {
        if (dims !== undefined) assert.equal(x.dense.dim, dims);
        return x.dense.values;
      });
    },
  },
];

/**
 * Cohere has no base64 of the quantized types: the same route asked for two types at once
 * instead (the type and float), both must come from the same vectors; the rows of `type` are returned
 * as JSON, so this cell checks several types in one call rather than an encoding.
 */
async function cohereTwo(texts: string[], type: Type, dims?: number): Promise<number[][]> {
  const body = await ok(api.post('/v2/embed', { model: 'emb', texts, embedding_types: [type, 'float'], ...(dims !== undefined ? { output_dimension: dims } : {}) }), 'cohere two types');
  assert.deepEqual(Object.keys(body.embeddings).sort(), [type, 'float'].sort());
  return body.embeddings[type];
}

/** Rows as numbers: base64 decoded by type, JSON as they are. */
const values = (rows: Array<number[] | string>, type: Type): number[][] => rows.map((r) => (typeof r === 'string' ? decodeBase64(r, type) : r));

describe('every front end answers every dimension x type x encoding as the reference computes it', () => {
  for (const fe of FRONT_ENDS) {
    for (const dims of [undefined, 32]) {
      test(`${fe.name}, dimensions ${dims ?? 'all'}`, async () => {
        const floats = values(await fe.ask(TEXTS, 'float32', false, dims), 'float32');
        // the calibration vectors, asked in the server's own batches of 32 so their floats are the server's
        const calibration: number[][] = [];
        for (let i = 0; i < CALIBRATION_TEXTS.length; i += 32) calibration.push(...values(await fe.ask(CALIBRATION_TEXTS.slice(i, i + 32), 'float32', false, dims), 'float32'));
        const ranges = refRanges(calibration);
        assert.equal(floats[0].length, dims ?? floats[0].length);
        for (const type of TYPES) {
          for (const base64 of [false, true]) {
            const got = values(await fe.ask(TEXTS, type, base64, dims), type);
            const want = floats.map((v) => refQuantize(v, type, ranges));
            assert.deepEqual(got, want, `${fe.name} ${type} ${base64 ? 'base64' : 'json'} dims ${dims ?? 'all'}`);
          }
        }
      });
    }
  }
});

test('binary vectors rank a generated corpus close to float cosine (recall@10 of Hamming vs cosine, minilm-l6 shape)', async () => {
  // 400 texts of 5 to 24 words drawn (seeded) from 120 words; 40 of them as queries
  const words = CALIBRATION_TEXTS.join(' ').split(/\s+/).filter((w, i, all) => all.indexOf(w) === i).slice(0, 120);
  let s = 7;
  const next = (n: number) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s % n;
  };
  const corpus = Array.from({ length: 400 }, () => Array.from({ length: 5 + next(20) }, () => words[next(words.length)]).join(' '));
  const queries = corpus.filter((_, i) => i % 10 === 0);
  const embed = async (texts: string[], type: Type) => {
    const out: Array<number[]> = [];
    for (let i = 0; i < texts.length; i += 32) out.push(...((await ok(api.post('/embed', { model: 'minilm', inputs: texts.slice(i, i + 32), embedding_type: type }), 'corpus')) as number[][]));
    return out;
  };
  const [cf, cb, qf, qb] = [await embed(corpus, 'float32'), await embed(corpus, 'ubinary'), await embed(queries, 'float32'), await embed(queries, 'ubinary')];
  assert.equal(cb[0].length, 384 / 8, 'ubinary packs 8 dimensions per byte');
  const dot = (a: number[], b: number[]) => a.reduce((t, x, i) => t + x * b[i], 0);
  const popcount = (x: number) => x.toString(2).replace(/0/g, '').length;
  const hamming = (a: number[], b: number[]) => a.reduce((t, x, i) => t + popcount(x ^ b[i]), 0);
  let found = 0;
  for (let q = 0; q < queries.length; q++) {
    const byCos = cf.map((v, i) => ({ i, s: dot(qf[q], v) })).sort((x, y) => y.s - x.s).slice(0, 10).map((x) => x.i);
    const byHam = cb.map((v, i) => ({ i, s: hamming(qb[q], v) })).sort((x, y) => x.s - y.s || x.i - y.i).slice(0, 10).map((x) => x.i);
    found += byHam.filter((i) => byCos.includes(i)).length;
  }
  const recall = found / (queries.length * 10);
  console.log(`binary recall@10 against float cosine: ${recall.toFixed(3)} over ${queries.length} queries, ${corpus.length} texts`);
  // chance would be 10 / 400 = 0.025; this random-weight model measures 0.557 (deterministic: seeded weights and corpus)
  assert.ok(recall >= 0.5, `recall@10 ${recall}`);
});

describe('requests the model cannot honour are refused the same way on every route', () => {
  test('dimensions larger than the model: 422 with the same text everywhere', async () => {
    const messages: string[] = [];
    const teiEmbed = await api.post('/embed', { model: 'emb', inputs: ['x'], dimensions: 100_000, embedding_type: 'int8' });
    assertTeiError(teiEmbed, 422, 'validation');
    messages.push(teiEmbed.body.error);
    const routerEmbed = await router.post('/embed', { inputs: ['x'], dimensions: 100_000 });
    assertTeiError(routerEmbed, 422, 'validation');
    messages.push(routerEmbed.body.error);
    for (const [route, body] of [
      ['/v1/embeddings', { model: 'emb', input: ['x'], dimensions: 100_000 }],
      ['/v2/embed', { model: 'emb', texts: ['x'], output_dimension: 100_000, embedding_types: ['binary'] }],
      ['/v1/encode/emb', { items: [{ text: 'x' }], dimensions: 100_000 }],
    ] as const) {
      const r = await api.post(route, body);
      if (route === '/v2/embed') assertTeiError(r, 422, 'validation');
      else assertErrorCode(r, 422, 'VALIDATION', route);
      messages.push(route === '/v2/embed' ? r.body.error : r.body.error.message);
    }
    assert.match(messages[0], /cannot be larger than the model's embedding size/);
    assert.deepEqual(new Set(messages).size, 1, messages.join(' | '));
  });

  test('EmbedArrow: an unknown embedding_type is INVALID_ARGUMENT, dimensions over the model the same text as HTTP', async () => {
    const ipc = Buffer.from(encodeTexts(['x']));
    await assert.rejects(unary(grpcMux, 'EmbedArrow', { target: { instance_name: 'emb' }, arrow_ipc: ipc, embedding_type: 'int4' }), grpcError(status.INVALID_ARGUMENT, 'VALIDATION', /`embedding_type` must be one of "float32", "float16"/));
    const http = await api.post('/embed', { model: 'emb', inputs: ['x'], dimensions: 100_000 });
    await assert.rejects(unary(grpcMux, 'EmbedArrow', { target: { instance_name: 'emb' }, arrow_ipc: ipc, dimensions: 100_000, embedding_type: 'binary' }), (err: any) => {
      assert.ok(err.message.includes(http.body.error), `${err.message} vs ${http.body.error}`);
      return grpcError(status.INVALID_ARGUMENT, 'VALIDATION')(err);
    });
  });

  test('an output type on a sparse model, and an unknown type or encoding', async () => {
    const onSparse = await api.post('/v1/encode/splade', { items: [{ text: 'x' }], output_types: ['sparse'], embedding_type: 'int8' });
    assertErrorCode(onSparse, 422, 'VALIDATION');
    assert.match(onSparse.body.error.message, /apply to dense outputs/);
    const sparseEmbed = await api.post('/embed_sparse', { model: 'splade', inputs: ['x'], embedding_type: 'binary' });
    assertTeiError(sparseEmbed, 422, 'validation');
    assert.match(sparseEmbed.body.error, /`embedding_type` is not a known field/);
    const cohereSparse = await api.post('/v2/embed', { model: 'splade', texts: ['x'], embedding_types: ['int8'] });
    assert.equal(cohereSparse.status >= 400 && cohereSparse.status < 500, true, JSON.stringify(cohereSparse.body));
    for (const [route, body, field] of [
      ['/embed', { model: 'emb', inputs: ['x'], embedding_type: 'int4' }, 'embedding_type'],
      ['/embed', { model: 'emb', inputs: ['x'], encoding: 'hex' }, 'encoding'],
      ['/v2/embed', { model: 'emb', texts: ['x'], embedding_types: [] }, 'embedding_types'],
      ['/v2/embed', { model: 'emb', texts: ['x'], truncate: 'MIDDLE' }, 'truncate'],
    ] as const) {
      const r = await api.post(route, body);
      assertTeiError(r, 422, 'validation', route);
      assert.match(r.body.error, new RegExp(`\`${field}`), route);
    }
  });
});
