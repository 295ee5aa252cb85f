/**
 * The manager's embedding cache and in-request dedup, end to end: a real manager, real `teiplex
 * router` children, each child's own `teiplex_batch_items_total` (inputs it ran through the model)
 * read from its /metrics as the witness of what reached it. Dedup within a request, hits across
 * requests, bit-identical answers (compared as base64 of the float32 bytes), every answer-changing
 * option in the key, the per-model opt-out, invalidation when the model's files change, the LRU
 * bound (embedding_cache_mb), the metrics and a child's row error named by the request's row.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { assertTeiError, childBatchItems, client, instanceToml, writeConfig } from '../helpers/data-plane.js';
import { metricValue } from '../helpers/fake-child.js';
import { until } from '../helpers/wait.js';
import * as grpc from '@grpc/grpc-js';
import { decodeDense, decodeMultivector, encodeTexts } from '../../src/arrow/embedding-batch.js';
import { grpcError, mux, unary } from '../helpers/mux-client.js';

let dir: string;
let modelDir: string;
let m: ManagerProcess;
let api: ReturnType<typeof client>;

const CACHE_MB = 1;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-cache-'));
  // a copy of its own, so the test may change its files
  modelDir = path.join(dir, 'model');
  await cp(await testModel({ kind: 'embedding' }), modelDir, { recursive: true });
  const http = 'extra_args = ["--http-port", "0"]';
  const file = await writeConfig(
    dir,
    `embedding_cache_mb = ${CACHE_MB}\nmax_request_inputs = 5000`,
    instanceToml('emb', modelDir, http) + instanceToml('twin', modelDir, http) + instanceToml('nocache', modelDir, `embedding_cache = false\n${http}`),
  );
  m = await startManager(file);
  for (const name of ['emb', 'twin', 'nocache']) await m.waitFor(name, (i) => i.status === 'running', 120_000);
  api = client(m.apiPort);
});

after(async () => {
  if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  await rm(dir, { recursive: true, force: true });
});

/** Inputs the instance's child has run through its model, from the child's own metrics. */
const childItems = (instance: string): Promise<number> => childBatchItems(m, instance);

async function embed(model: string, inputs: string[], extra: Record<string, unknown> = {}) {
  const r = await api.post('/embed', { model, inputs, encoding: 'base64', ...extra });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return { rows: r.body as string[], cache: r.headers.get('x-teiplex-cache') };
}

async function managerMetric(name: string): Promise<number> {
  const value = metricValue((await m.api('GET', '/metrics')).body as string, name);
  assert.ok(value !== undefined, `${name} is exported`);
  return value;
}

describe('dedup and hits', () => {
  test('repeats within a request reach the child once; a repeated request does not reach it; answers bit-identical', async () => {
    const texts = ['alpha one', 'beta two', 'alpha one', 'alpha one', 'gamma three'];
    const before = await childItems('emb');
    const first = await embed('emb', texts);
    assert.equal(await childItems('emb'), before + 3, 'three distinct texts computed');
    assert.equal(first.cache, 'hits=2 misses=3');
    assert.equal(first.rows[0], first.rows[2]);
    assert.equal(first.rows[0], first.rows[3]);
    // the same texts, each once, from the instance that keeps nothing: the reference
    const plain = await embed('nocache', ['alpha one', 'beta two', 'gamma three']);
    assert.deepEqual([first.rows[0], first.rows[1], first.rows[4]], plain.rows, 'a deduplicated answer is what the child answers');
    const again = await embed('emb', texts);
    assert.equal(await childItems('emb'), before + 3, 'nothing reached the child');
    assert.equal(again.cache, 'hits=5 misses=0');
    assert.deepEqual(again.rows, first.rows, 'a hit is bit-identical to the miss');
    // the same model on another instance shares the cache (one model identity)
    const twinBefore = await childItems('twin');
    assert.equal((await embed('twin', ['beta two'])).cache, 'hits=1 misses=0');
    assert.equal(await childItems('twin'), twinBefore);
  });

  test('every option that changes an answer is in the key; sparse and multivector kinds apart', async () => {
    const text = ['options differ'];
    const base = await embed('emb', text);
    assert.equal(base.cache, 'hits=0 misses=1');
    for (const extra of [{ normalize: false }, { dimensions: 16 }, { truncate: true }, { truncation_direction: 'Left', truncate: true }]) {
      const r = await embed('emb', text, extra);
      assert.equal(r.cache, 'hits=0 misses=1', JSON.stringify(extra));
      assert.equal((await embed('emb', text, extra)).cache, 'hits=1 misses=0', `${JSON.stringify(extra)} again`);
    }
    const all = await api.post('/embed_all', { model: 'emb', inputs: text });
    assert.equal(all.headers.get('x-teiplex-cache'), 'hits=0 misses=1', 'multivector is another kind');
    const openai = await api.post('/v1/embeddings', { model: 'emb', input: text });
    assert.equal(openai.headers.get('x-teiplex-cache'), 'hits=1 misses=0', 'OpenAI shares the dense entry (same options)');
    const encode = await api.post('/v1/encode/emb', { items: [{ text: text[0] }, { text: text[0] }] });
    assert.equal(encode.headers.get('x-teiplex-cache'), 'hits=2 misses=0');
  });

  test('the multiplexer\'s EmbedTyped shares the entries of /embed and says so in its metadata', async () => {
    const texts = ['shared between front ends', 'shared between front ends'];
    const http = await embed('emb', [texts[0]]);
    assert.equal(http.cache, 'hits=0 misses=1');
    const client = mux(Number(m.ready.grpc_port));
    try {
      const before = await childItems('emb');
      const { res, headers } = await unary(client, 'EmbedTyped', { target: { instance_name: 'emb' }, inputs: texts });
      assert.deepEqual(headers.get('teiplex-cache'), ['hits=2 misses=0']);
      assert.equal(await childItems('emb'), before, 'nothing reached the child');
      assert.equal(res.embeddings[0].toString('base64'), http.rows[0], 'the same float32 bytes');
      assert.equal(res.embeddings[1].toString('base64'), http.rows[0]);
    } finally {
      client.close();
    }
  });

  test('opt-out: the model keeps nothing, repeats in a request are still computed once', async () => {
    const before = await childItems('nocache');
    assert.equal((await embed('nocache', ['x1', 'x1', 'x2'])).cache, 'hits=1 misses=2');
    assert.equal((await embed('nocache', ['x1', 'x1', 'x2'])).cache, 'hits=1 misses=2');
    assert.equal(await childItems('nocache'), before + 4);
  });

  test("a child's row error names the request's row", async () => {
    const r = await api.post('/embed', { model: 'emb', inputs: ['fine', 'fine', 'fine', ''] });
    assertTeiError(r, 422, 'validation');
    // the child saw ['fine', ''] and named its input 1; the request's row is 3
    assert.match(r.body.error, /^input 3: `inputs` cannot be empty/, r.body.error);
  });
});

describe('the Arrow RPCs', () => {
  /** An Arrow RPC's answer, its response headers and trailers. */
  function arrow(method: string, instance: string, texts: string[], extra: Record<string, unknown> = {}): Promise<{ ipc: Uint8Array; headers: grpc.Metadata; trailers: grpc.Metadata }> {
    const client = mux(Number(m.ready.grpc_port));
    return new Promise((resolve, reject) => {
      let headers = new grpc.Metadata();
      let ipc: Uint8Array | undefined;
      const call = client[method]({ target: { instance_name: instance }, arrow_ipc: Buffer.from(encodeTexts(texts)), ...extra }, (err: grpc.ServiceError | null, res: { arrow_ipc: Buffer }) => {
        if (err) {
          client.close();
          reject(err);
        } else ipc = res.arrow_ipc;
      });
      call.on('metadata', (md: grpc.Metadata) => (headers = md));
      call.on('status', (st: grpc.StatusObject) => {
        client.close();
        if (ipc !== undefined) resolve({ ipc, headers, trailers: st.metadata });
      });
    });
  }
  const cacheOf = (md: grpc.Metadata): string => String(md.get('teiplex-cache')[0]);
  const denseRows = (ipc: Uint8Array): string[] => {
    const { dim, rows, values } = decodeDense(ipc);
    return Array.from({ length: rows }, (_, i) => Buffer.from(values.buffer, values.byteOffset + i * dim * 4, dim * 4).toString('base64'));
  };

  test('EmbedArrow: repeats reach the child once, a repeated request not at all, answers bit-identical; headers and trailers say so', async () => {
    const texts = ['arrow one', 'arrow two', 'arrow one', 'arrow one'];
    const before = await childItems('emb');
    const first = await arrow('EmbedArrow', 'emb', texts);
    assert.equal(await childItems('emb'), before + 2, 'two distinct texts computed');
    assert.equal(cacheOf(first.headers), 'hits=2 misses=2');
    assert.equal(cacheOf(first.trailers), 'hits=2 misses=2');
    const rows = denseRows(first.ipc);
    assert.equal(rows.length, 4);
    assert.equal(rows[0], rows[2]);
    assert.equal(rows[0], rows[3]);
    // the reference: each text once, through /embed of the instance that keeps nothing
    assert.deepEqual([rows[0], rows[1]], (await embed('nocache', ['arrow one', 'arrow two'])).rows);
    const again = await arrow('EmbedArrow', 'emb', texts);
    assert.equal(await childItems('emb'), before + 2, 'nothing reached the child');
    assert.equal(cacheOf(again.trailers), 'hits=4 misses=0');
    assert.deepEqual(again.headers.get('teiplex-arrow-path'), ['cache'], 'no child call made');
    assert.deepEqual(denseRows(again.ipc), rows, 'a hit is bit-identical to the miss');
    // some rows new: only they go to the child, the answer keeps the request's order
    const mixed = await arrow('EmbedArrow', 'emb', ['arrow three', 'arrow two', 'arrow three']);
    assert.equal(await childItems('emb'), before + 3);
    assert.equal(cacheOf(mixed.trailers), 'hits=2 misses=1');
    const mixedRows = denseRows(mixed.ipc);
    assert.equal(mixedRows[1], rows[1]);
    assert.equal(mixedRows[0], mixedRows[2]);
    assert.deepEqual([mixedRows[0]], (await embed('nocache', ['arrow three'])).rows);
  });

  test('options and prompts are in the key; EmbedAllArrow is a kind of its own', async () => {
    const texts = ['arrow options'];
    assert.equal(cacheOf((await arrow('EmbedArrow', 'emb', texts)).trailers), 'hits=0 misses=1');
    for (const extra of [{ normalize: false }, { dimensions: 16 }, { truncate: true }, { embedding_type: 'int8' }]) {
      const r = await arrow('EmbedArrow', 'emb', texts, extra);
      // int8 is computed from the same float32 rows: a hit
      assert.equal(cacheOf(r.trailers), 'embedding_type' in extra ? 'hits=1 misses=0' : 'hits=0 misses=1', JSON.stringify(extra));
    }
    const all = await arrow('EmbedAllArrow', 'emb', ['arrow all', 'arrow all']);
    assert.equal(cacheOf(all.trailers), 'hits=1 misses=1', 'multivector: dedup within the request');
    const tokens = decodeMultivector(all.ipc);
    assert.ok(tokens[0]!.tokens > 0);
    assert.deepEqual(tokens[1], tokens[0]);
    assert.equal(cacheOf((await arrow('EmbedAllArrow', 'emb', ['arrow all'])).trailers), 'hits=1 misses=0');
  });

  test('opt-out: nothing kept, repeats still computed once', async () => {
    const before = await childItems('nocache');
    assert.equal(cacheOf((await arrow('EmbedArrow', 'nocache', ['a1', 'a1', 'a2'])).trailers), 'hits=1 misses=2');
    assert.equal(cacheOf((await arrow('EmbedArrow', 'nocache', ['a1', 'a1', 'a2'])).trailers), 'hits=1 misses=2');
    assert.equal(await childItems('nocache'), before + 4);
  });

  test("a child's row error names the request's row", async () => {
    await assert.rejects(arrow('EmbedArrow', 'emb', ['fine arrow', 'fine arrow', 'fine arrow', '']), grpcError(grpc.status.INVALID_ARGUMENT, /^row 3: /));
  });
});

describe('invalidation and bounds', () => {
  test('a restart with the same files keeps the entries; changed files make a new model identity', async () => {
    const texts = ['kept across a restart'];
    assert.equal((await embed('emb', texts)).cache, 'hits=0 misses=1');
    const restart = async () => {
      const pid = (await m.api('GET', '/instances/emb')).body.pid;
      assert.equal((await m.api('POST', '/instances/emb/restart')).status, 200);
      await until('emb restarted and running', async () => {
        const i = (await m.api('GET', '/instances/emb')).body;
        return i.status === 'running' && i.pid !== pid ? i : undefined;
      }, { timeoutMs: 120_000 });
    };
    await restart();
    assert.equal((await embed('emb', texts)).cache, 'hits=1 misses=0', 'same model, same files: the entry still answers');
    // the model's files change (a new revision written in place): nothing cached before is used
    const onnx = path.join(modelDir, 'onnx', 'model.onnx');
    const later = new Date(Date.now() + 60_000);
    await utimes(onnx, later, later);
    await restart();
    const before = await childItems('emb');
    assert.equal((await embed('emb', texts)).cache, 'hits=0 misses=1');
    assert.equal(await childItems('emb'), before + 1);
  });

  test('the LRU stays within embedding_cache_mb, evicting the least recently used; metrics say so', async () => {
    const evictionsBefore = await managerMetric('teiplex_embedding_cache_evictions_total');
    const first = ['the very first of many'];
    await embed('emb', first);
    const many = Array.from({ length: 2500 }, (_, i) => `filler text number ${i} ${'x'.repeat(i % 50)}`);
    for (let i = 0; i < many.length; i += 500) await embed('emb', many.slice(i, i + 500));
    const bytes = await managerMetric('teiplex_embedding_cache_bytes');
    assert.ok(bytes > 0 && bytes <= CACHE_MB * 1024 * 1024, `bytes ${bytes}`);
    assert.ok((await managerMetric('teiplex_embedding_cache_evictions_total')) > evictionsBefore, 'entries were evicted');
    assert.ok((await managerMetric('teiplex_embedding_cache_entries')) > 0);
    assert.equal((await embed('emb', first)).cache, 'hits=0 misses=1', 'the oldest entry was the one evicted');
    assert.equal((await embed('emb', many.slice(-3))).cache, 'hits=3 misses=0', 'the newest are kept');
    assert.ok((await managerMetric('teiplex_embedding_cache_hits_total')) > 0);
    assert.ok((await managerMetric('teiplex_embedding_cache_misses_total')) > 2500);
  });
});
