/**
 * Prompts by input type, end to end on a real manager with real `teiplex router` children:
 * `e5` has E5's prompts in its own config_sentence_transformers.json (the child knows them: the
 * manager sends the prompt's name), `nomic` has none in its files but nomic's in its instance spec
 * (the manager prepends them), `plain` has none at all. Each `input_type` answer is checked
 * against the same model's answer for the prompt text written into the input by the test, on
 * every HTTP route that embeds and on the router's own /embed; then the warning (header and
 * metric) for a request without a type to an asymmetric model, and the refusals.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { metricValue } from '../helpers/fake-child.js';
import { status } from '@grpc/grpc-js';
import { assertClose, grpcError, mux, unary } from '../helpers/mux-client.js';
import { decodeDense, decodeDenseTyped, decodeMultivector, encodeTexts } from '../../src/arrow/embedding-batch.js';
import { CALIBRATION_TEXTS } from '../../src/tei/calibration.js';
import { refQuantize, refRanges } from '../helpers/quantize-reference.js';
import { assertErrorCode, assertTeiError, childHttpPort, client, instanceToml, writeConfig } from '../helpers/data-plane.js';

let dir: string;
let m: ManagerProcess;
let api: ReturnType<typeof client>;
let router: ReturnType<typeof client>;

const TEXTS = ['how do tides work?', 'Zürich 東京 🙂'];
const WARNING = 'x-teiplex-warning';

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-input-types-'));
  const e5 = await testModel({ kind: 'embedding', prompts: { query: 'query: ', passage: 'passage: ' } });
  const bare = await testModel({ kind: 'embedding' });
  const file = await writeConfig(
    dir,
    '',
    instanceToml('e5', e5, 'extra_args = ["--http-port", "0"]') +
      instanceToml('nomic', bare, 'prompts = { search_query = "search_query: ", search_document = "search_document: " }') +
      instanceToml('plain', bare),
  );
  m = await startManager(file);
  for (const name of ['e5', 'nomic', 'plain']) await m.waitFor(name, (i) => i.status === 'running', 120_000);
  api = client(m.apiPort);
  router = client(await childHttpPort(m, 'e5'));
});

after(async () => {
  if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  await rm(dir, { recursive: true, force: true });
});

async function embed(model: string, inputs: string[], extra: Record<string, unknown> = {}): Promise<{ rows: number[][]; warning: string | null }> {
  const r = await api.post('/embed', { model, inputs, ...extra });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return { rows: r.body, warning: r.headers.get(WARNING) };
}

/** The model's answer for the texts with the prompt written in by hand: the reference. */
const prefixed = async (model: string, prefix: string) => (await embed(model, TEXTS.map((t) => prefix + t), { prompt_name: null })).rows;

describe('input_type picks the model prompt on every route', () => {
  test("a model's own prompts (config_sentence_transformers.json): by name, the same vectors as the prompt typed in", async () => {
    const plainRows = (await embed('e5', TEXTS, { prompt_name: 'query' })).rows;
    for (const [type, prefix] of [
      ['query', 'query: '],
      ['search_query', 'query: '],
      ['document', 'passage: '],
      ['search_document', 'passage: '],
    ] as const) {
      const want = await prefixed('e5', prefix);
      const got = await embed('e5', TEXTS, { input_type: type });
      assert.deepEqual(got.rows, want, `/embed ${type}`);
      assert.equal(got.warning, null, 'a typed request gets no warning');
      const direct = await router.post('/embed', { inputs: TEXTS, input_type: type });
      assert.deepEqual(direct.body, want, `router /embed ${type}`);
      const openai = await api.post('/v1/embeddings', { model: 'e5', input: TEXTS, input_type: type });
      assert.deepEqual(openai.body.data.map((d: { embedding: number[] }) => d.embedding), want, `/v1/embeddings ${type}`);
    }
    assert.deepEqual(plainRows, await prefixed('e5', 'query: '), 'prompt_name keeps its meaning');
    // a type the model has no prompt for: the text as it is
    assert.deepEqual((await embed('e5', TEXTS, { input_type: 'clustering' })).rows, await prefixed('e5', ''));
  });

  test("the spec's prompts: prepended by the manager, on /embed, /v1/embeddings, /v2/embed and /v1/encode", async () => {
    const q = await prefixed('nomic', 'search_query: ');
    const d = await prefixed('nomic', 'search_document: ');
    assert.notDeepEqual(q, d);
    assert.deepEqual((await embed('nomic', TEXTS, { input_type: 'query' })).rows, q);
    assert.deepEqual((await embed('nomic', TEXTS, { input_type: 'document' })).rows, d);
    const openai = await api.post('/v1/embeddings', { model: 'nomic', input: TEXTS, input_type: 'search_document' });
    assert.deepEqual(openai.body.data.map((x: { embedding: number[] }) => x.embedding), d);
    const cohere = await api.post('/v2/embed', { model: 'nomic', texts: TEXTS, input_type: 'search_query', embedding_types: ['float'] });
    assert.equal(cohere.status, 200, JSON.stringify(cohere.body));
    assert.deepEqual(cohere.body.embeddings.float, q);
    assert.deepEqual(cohere.body.texts, TEXTS, "Cohere's answer echoes the texts as sent, not prompted");
    const encode = await api.post('/v1/encode/nomic', { items: TEXTS.map((text) => ({ text })), input_type: 'query' });
    assert.deepEqual(encode.body.items.map((x: { dense: { values: number[] } }) => x.dense.values), q);
  });
});

test("int8 for a spec's prompt: the ranges are calibrated on the prompted calibration texts (/embed and EmbedArrow)", async () => {
  // the reference: the same model without prompts ('plain'), the prompt written into every text
  const floats = async (texts: readonly string[]): Promise<number[][]> => {
    const rows: number[][] = [];
    for (let i = 0; i < texts.length; i += 32) rows.push(...(await embed('plain', texts.slice(i, i + 32), { truncate: true })).rows);
    return rows;
  };
  const prompted = refRanges(await floats(CALIBRATION_TEXTS.map((t) => `search_query: ${t}`)));
  const unprompted = refRanges(await floats(CALIBRATION_TEXTS));
  const vectors = await floats(TEXTS.map((t) => `search_query: ${t}`));
  const want = vectors.map((v) => refQuantize(v, 'int8', prompted));
  assert.notDeepEqual(want, vectors.map((v) => refQuantize(v, 'int8', unprompted)), 'the prompt changes the ranges (the check can fail)');
  const http = await embed('nomic', TEXTS, { input_type: 'query', embedding_type: 'int8' });
  assert.deepEqual(http.rows, want, '/embed');
  const client = mux(Number(m.ready.grpc_port));
  try {
    const arrow = await unary(client, 'EmbedArrow', { target: { instance_name: 'nomic' }, arrow_ipc: Buffer.from(encodeTexts(TEXTS)), input_type: 'query', embedding_type: 'int8' });
    const out = decodeDenseTyped(arrow.res.arrow_ipc);
    const rows = Array.from({ length: out.rows }, (_, i) => Array.from(out.values.subarray(i * out.dim, (i + 1) * out.dim)));
    assert.deepEqual(rows, want, 'EmbedArrow');
  } finally {
    client.close();
  }
});

test('the multiplexer\'s EmbedTyped and EmbedArrow: input_type as on HTTP, the warning as metadata', async () => {
  const client = mux(Number(m.ready.grpc_port));
  try {
    for (const [model, type] of [['e5', 'query'], ['nomic', 'search_document']] as const) {
      const http = await api.post('/embed', { model, inputs: TEXTS, input_type: type, encoding: 'base64' });
      const { res, headers } = await unary(client, 'EmbedTyped', { target: { instance_name: model }, inputs: TEXTS, input_type: type });
      assert.deepEqual(res.embeddings.map((b: Buffer) => b.toString('base64')), http.body, `${model} ${type}`);
      assert.deepEqual(headers.get('x-teiplex-warning'), []);
      assert.deepEqual(headers.get('teiplex-warning'), []);
    }
    const { headers } = await unary(client, 'EmbedTyped', { target: { instance_name: 'e5' }, inputs: TEXTS });
    assert.match(String(headers.get('teiplex-warning')[0]), /different prompts for queries/);
    // EmbedArrow: by name (e5's own prompts) and prepended by an Arrow worker (nomic's spec prompts)
    for (const [model, type] of [['e5', 'document'], ['nomic', 'query']] as const) {
      const http = await api.post('/embed', { model, inputs: TEXTS, input_type: type, encoding: 'base64' });
      const arrow = await unary(client, 'EmbedArrow', { target: { instance_name: model }, arrow_ipc: Buffer.from(encodeTexts(TEXTS)), input_type: type });
      const out = decodeDense(arrow.res.arrow_ipc);
      const rows = Array.from({ length: out.rows }, (_, i) => Buffer.from(out.values.slice(i * out.dim, (i + 1) * out.dim).buffer).toString('base64'));
      assert.deepEqual(rows, http.body, `EmbedArrow ${model} ${type}`);
      assert.deepEqual(arrow.headers.get('teiplex-warning'), []);
    }
    // EmbedAllArrow (and EmbedSparseArrow, the same code): the per-token vectors of the prompted texts, as /embed_all's
    for (const [model, type] of [['e5', 'query'], ['nomic', 'document']] as const) {
      const http = await api.post('/embed_all', { model, inputs: TEXTS, input_type: type });
      assert.equal(http.status, 200, JSON.stringify(http.body));
      const arrow = await unary(client, 'EmbedAllArrow', { target: { instance_name: model }, arrow_ipc: Buffer.from(encodeTexts(TEXTS)), input_type: type });
      const tokens = decodeMultivector(arrow.res.arrow_ipc).map((r) => Array.from({ length: r.tokens }, (_, t) => Array.from(r.values.subarray(t * r.dim, (t + 1) * r.dim))));
      assertClose(tokens, http.body, `EmbedAllArrow ${model} ${type}`);
    }
    const untypedAll = await unary(client, 'EmbedAllArrow', { target: { instance_name: 'e5' }, arrow_ipc: Buffer.from(encodeTexts(TEXTS)) });
    assert.match(String(untypedAll.headers.get('teiplex-warning')[0]), /different prompts for queries/);
    const untypedArrow = await unary(client, 'EmbedArrow', { target: { instance_name: 'e5' }, arrow_ipc: Buffer.from(encodeTexts(TEXTS)) });
    assert.match(String(untypedArrow.headers.get('teiplex-warning')[0]), /different prompts for queries/);
    await assert.rejects(unary(client, 'EmbedArrow', { target: { instance_name: 'e5' }, arrow_ipc: Buffer.from(encodeTexts(TEXTS)), input_type: 'questions' }), grpcError(status.INVALID_ARGUMENT, 'VALIDATION', /`input_type` must be one of/));
    await assert.rejects(unary(client, 'EmbedTyped', { target: { instance_name: 'e5' }, inputs: TEXTS, input_type: 'query', prompt_name: 'query' }), grpcError(status.INVALID_ARGUMENT, 'VALIDATION', /give `input_type` or `prompt_name`, not both/));
    await assert.rejects(unary(client, 'EmbedTyped', { target: { instance_name: 'e5' }, inputs: TEXTS, input_type: 'questions' }), grpcError(status.INVALID_ARGUMENT, 'VALIDATION', /`input_type` must be one of/));
  } finally {
    client.close();
  }
});

describe('a request without a type to an asymmetric model is never silent', () => {
  test('the warning header names the prompts, and teiplex_input_type_missing_total counts it per instance', async () => {
    const count = async (instance: string) => metricValue((await m.api('GET', '/metrics')).body as string, 'teiplex_input_type_missing_total', { instance }) ?? 0;
    const before = await count('e5');
    const untyped = await embed('e5', TEXTS);
    assert.match(untyped.warning ?? '', /^no input_type: model "e5" has different prompts for queries \("query: "\) and documents \("passage: "\); set input_type$/);
    const openai = await api.post('/v1/embeddings', { model: 'e5', input: TEXTS });
    assert.match(openai.headers.get(WARNING) ?? '', /different prompts/);
    assert.equal(await count('e5'), before + 2);
    const direct = await router.post('/embed', { inputs: TEXTS });
    assert.match(direct.headers.get(WARNING) ?? '', /different prompts/, 'the router warns for itself');
    assert.match((await embed('nomic', TEXTS)).warning ?? '', /"search_query: "/);
    // named prompt, a symmetric model: no warning, nothing counted
    assert.equal((await embed('e5', TEXTS, { prompt_name: 'passage' })).warning, null);
    assert.equal((await embed('plain', TEXTS)).warning, null);
    assert.equal((await embed('plain', TEXTS, { input_type: 'query' })).warning, null);
    assert.deepEqual((await embed('plain', TEXTS, { input_type: 'query' })).rows, (await embed('plain', TEXTS)).rows, 'no prompts: the type changes nothing');
    assert.equal(await count('e5'), before + 2);
    assert.equal(await count('plain'), 0);
  });

  test('refusals: input_type with prompt_name, an unknown type, token ids that a spec prompt cannot prefix', async () => {
    const both = await api.post('/embed', { model: 'e5', inputs: TEXTS, input_type: 'query', prompt_name: 'query' });
    assertTeiError(both, 422, 'validation');
    assert.match(both.body.error, /give `input_type` or `prompt_name`, not both/);
    const unknown = await api.post('/v1/embeddings', { model: 'e5', input: TEXTS, input_type: 'questions' });
    assertErrorCode(unknown, 422, 'VALIDATION');
    assert.match(unknown.body.error.message, /`input_type` must be "query", "document"/);
    const ids = await api.post('/embed', { model: 'nomic', inputs: [[101, 2054, 102]], input_type: 'query' });
    assertTeiError(ids, 422, 'validation');
    assert.match(ids.body.error, /cannot prefix token-id inputs/);
  });
});
