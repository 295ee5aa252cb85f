/**
 * TeiplexClient (src/client/teiplex-client.ts) against a real manager with real router children
 * (embedding, SPLADE, reranker, classifier test models, and catalog models started on demand):
 * every method on both transports (the gRPC multiplexer and the HTTP data plane) answering the
 * same, embedArrow in batches and in order (rows and a Table), the server's codes as typed errors,
 * a deadline passed while the manager waits for a cold start (TIMEOUT), and a catalog model's cold
 * start answered 503 / UNAVAILABLE MODEL_LOADING with Retry-After that the client waits out before
 * it gets its answer.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { tableFromArrays, type Table } from 'apache-arrow';
import { CancelledError, ConnectionError, InvalidRequestError, NotFoundError, TimeoutError } from '../../src/client/errors.js';
import type { Transport } from '../../src/client/inference-types.js';
import type { RetryEvent } from '../../src/client/options.js';
import { TeiplexClient } from '../../src/client/teiplex-client.js';
import { expectClientError } from '../helpers/client-errors.js';
import { freePort, loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { until } from '../helpers/wait.js';

const TRANSPORTS: Transport[] = ['grpc', 'http'];

function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, what: string, tol = 1e-5): void {
  assert.equal(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

const norm = (v: ArrayLike<number>): number => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));

describe('TeiplexClient against a real manager', () => {
  let dir: string;
  let m: ManagerProcess;
  let client: TeiplexClient;
  let models: { embedding: string; splade: string; reranker: string; classifier: string };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-client-dp-'));
    models = {
      embedding: await testModel({ kind: 'embedding', seed: 311 }),
      splade: await testModel({ kind: 'splade', seed: 312 }),
      reranker: await testModel({ kind: 'reranker', seed: 313 }),
      classifier: await testModel({ kind: 'classifier', seed: 314, numLabels: 3 }),
    };
    const coldA = await testModel({ kind: 'embedding', seed: 321 });
    const coldB = await testModel({ kind: 'embedding', seed: 322 });
    const slow = await testModel({ kind: 'embedding', seed: 323 });
    const inst = (name: string, model: string, extra = '') => `[[instances]]\nname = "${name}"\nmodel_id = ${JSON.stringify(model)}\n${extra}\n`;
    const cat = (name: string, model: string) => `[[models]]\nname = "${name}"\nmodel_id = ${JSON.stringify(model)}\n`;
    const file = path.join(dir, 'manager.toml');
    await writeFile(
      file,
      `${loopbackConfig(dir)}health_check_interval_secs = 5\nstartup_timeout_secs = 120\nstandby_children = 0\n` +
        inst('emb', models.embedding, 'aliases = ["minilm", "family"]') +
        inst('sparse', models.splade, 'pooling = "splade"\naliases = ["family"]') +
        inst('rerank', models.reranker) +
        inst('cls', models.classifier) +
        cat('cold-grpc', coldA) +
        cat('cold-http', coldB) +
        cat('slow', slow),
    );
    m = await startManager(file);
    client = new TeiplexClient({ url: `http://127.0.0.1:${m.apiPort}`, grpcUrl: `127.0.0.1:${m.ready.grpc_port}` });
    for (const name of ['emb', 'sparse', 'rerank', 'cls']) await m.waitFor(name, (i) => i.status === 'running', 120_000);
  });

  after(async () => {
    await client?.close();
    await m?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('embed: one text and a list, both transports the same; options reach the model', async () => {
    const texts = ['hello world', 'a second, longer text about embeddings', 'três'];
    const byTransport: Record<string, Float32Array[]> = {};
    for (const transport of TRANSPORTS) {
      const one = await client.embed('emb', 'hello world', { transport });
      assert.ok(one instanceof Float32Array);
      assert.ok(Math.abs(norm(one) - 1) < 1e-4, `${transport}: normalized by default`);
      const many = await client.embed('emb', texts, { transport });
      assert.equal(many.length, 3);
      assertClose(many[0]!, one, `${transport}: list row 0 = single`);
      byTransport[transport] = many;
      const short = await client.embed('emb', texts, { transport, dimensions: 4 });
      assert.deepEqual(short.map((v) => v.length), [4, 4, 4]);
      const raw = await client.embed('emb', texts[1]!, { transport, normalize: false });
      assert.ok(Math.abs(norm(raw) - 1) > 1e-3, `${transport}: normalize false is raw`);
      assert.deepEqual(await client.embed('emb', [], { transport }), []);
    }
    for (let i = 0; i < texts.length; i++) assertClose(byTransport.grpc![i]!, byTransport.http![i]!, `grpc vs http row ${i}`);
    // The model by its model_id (a path with slashes), by alias, and one instance by name.
    const byId = await client.embed(models.embedding, 'hello world', { transport: 'http' });
    assertClose(byId, byTransport.grpc![0]!, 'http by model_id');
    assertClose(await client.embed(models.embedding, 'hello world'), byId, 'grpc by model_id');
    assertClose(await client.embed('minilm', 'hello world', { transport: 'http' }), byId, 'http by alias');
    assertClose(await client.embed('minilm', 'hello world'), byId, 'grpc by alias (resolved through /v1/models)');
    assertClose(await client.embed('emb', 'hello world'), byId, 'grpc by instance name');
    assertClose(await client.embed({ instance: 'emb' }, 'hello world'), byId, 'grpc by { instance }');
  });

  test('embedSparse and embedAll, both transports the same', async () => {
    const texts = ['sparse vectors here', 'and another'];
    const sparse = { grpc: await client.embedSparse('sparse', texts), http: await client.embedSparse('sparse', texts, { transport: 'http' }) };
    for (const [t, rows] of Object.entries(sparse)) {
      assert.equal(rows.length, 2, t);
      assert.ok(rows[0]!.indices instanceof Uint32Array && rows[0]!.values instanceof Float32Array, t);
      assert.ok(rows[0]!.indices.length > 0, `${t}: non-zero entries`);
      assert.equal(rows[0]!.indices.length, rows[0]!.values.length, t);
    }
    assert.deepEqual(Array.from(sparse.grpc[1]!.indices), Array.from(sparse.http[1]!.indices));
    assertClose(sparse.grpc[1]!.values, sparse.http[1]!.values, 'sparse values');
    const one = await client.embedSparse('sparse', 'sparse vectors here');
    assert.deepEqual(Array.from(one.indices), Array.from(sparse.grpc[0]!.indices));

    const multi = { grpc: await client.embedAll('emb', texts), http: await client.embedAll('emb', texts, { transport: 'http' }) };
    for (const [t, rows] of Object.entries(multi)) {
      assert.equal(rows.length, 2, t);
      assert.ok(rows[0]!.tokens > 2 && rows[0]!.dim > 0, `${t}: ${rows[0]!.tokens} x ${rows[0]!.dim}`);
      assert.equal(rows[0]!.values.length, rows[0]!.tokens * rows[0]!.dim, t);
    }
    assert.deepEqual([multi.grpc[0]!.tokens, multi.grpc[0]!.dim], [multi.http[0]!.tokens, multi.http[0]!.dim]);
    assertClose(multi.grpc[0]!.values, multi.http[0]!.values, 'multivector values', 1e-4);
    assert.equal((await client.embedAll('emb', 'one text')).values.length > 0, true);
  });

  test('rerank: best first, chunked over gRPC, topN and texts; the same over HTTP', async () => {
    const docs = Array.from({ length: 40 }, (_, i) => `document number ${i} about ${i % 3 === 0 ? 'deep learning' : 'cheese'}`);
    const grpcRanks = await client.rerank('rerank', 'what is deep learning', docs, { returnText: true, chunkSize: 16 });
    const httpRanks = await client.rerank('rerank', 'what is deep learning', docs, { returnText: true, transport: 'http' });
    for (const [t, ranks] of [['grpc', grpcRanks], ['http', httpRanks]] as const) {
      assert.equal(ranks.length, 40, t);
      assert.deepEqual([...ranks.map((r) => r.index)].sort((a, b) => a - b), docs.map((_, i) => i), `${t}: every text once`);
      for (let i = 1; i < ranks.length; i++) assert.ok(ranks[i - 1]!.score >= ranks[i]!.score, `${t}: best first`);
      for (const r of ranks) assert.equal(r.text, docs[r.index], `${t}: text of ${r.index}`);
    }
    const score = (ranks: typeof grpcRanks, i: number) => ranks.find((r) => r.index === i)!.score;
    for (let i = 0; i < docs.length; i++) assert.ok(Math.abs(score(grpcRanks, i) - score(httpRanks, i)) < 1e-5, `score of ${i}`);
    const top = await client.rerank('rerank', 'what is deep learning', docs, { topN: 3 });
    assert.deepEqual(top.map((r) => r.index), grpcRanks.slice(0, 3).map((r) => r.index));
    assert.equal(top[0]!.text, undefined);
  });

  test('predict (texts and pairs, mixed in a batch), tokenize and decode, both transports the same', async () => {
    for (const transport of TRANSPORTS) {
      const p = await client.predict('cls', 'a sentence to classify', { transport });
      assert.equal(p.length, 3, `${transport}: one score per label`);
      assert.ok(Math.abs(p.reduce((s, x) => s + x.score, 0) - 1) < 1e-4, `${transport}: softmax`);
      const batch = await client.predictBatch('cls', ['a sentence to classify', ['first of a pair', 'second of a pair'], 'x'], { transport });
      assert.equal(batch.length, 3);
      assert.deepEqual(batch[0], p);
      const pair = await client.predict('cls', ['first of a pair', 'second of a pair'], { transport });
      assert.deepEqual(batch[1], pair);
    }
    const g = await client.predictBatch('cls', ['a sentence to classify', ['first of a pair', 'second of a pair']]);
    const h = await client.predictBatch('cls', ['a sentence to classify', ['first of a pair', 'second of a pair']], { transport: 'http' });
    for (let i = 0; i < 2; i++) {
      const byLabel = (ps: typeof g[0]) => Object.fromEntries(ps.map((x) => [x.label, x.score]));
      const a = byLabel(g[i]!);
      const b = byLabel(h[i]!);
      assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
      for (const k of Object.keys(a)) assert.ok(Math.abs(a[k]! - b[k]!) < 1e-5, `predict ${i} ${k}`);
    }

    const tg = await client.tokenize('emb', 'hello world');
    const th = await client.tokenize('emb', 'hello world', { transport: 'http' });
    assert.deepEqual(tg, th);
    assert.equal(tg[0]!.special, true, '[CLS] first');
    assert.ok(tg.some((t) => t.text === 'hello' && t.start === 0 && t.stop === 5), JSON.stringify(tg));
    const plain = await client.tokenize('emb', ['hello world', 'again'], { addSpecialTokens: false });
    assert.equal(plain.length, 2);
    assert.ok(plain[0]!.every((t) => !t.special));
    assert.deepEqual(plain, await client.tokenize('emb', ['hello world', 'again'], { addSpecialTokens: false, transport: 'http' }));
    for (const transport of TRANSPORTS) {
      assert.equal(await client.decode('emb', tg.map((t) => t.id), { transport }), 'hello world', transport);
      assert.deepEqual(await client.decode('emb', plain.map((ts) => ts.map((t) => t.id)), { transport }), ['hello world', 'again'], transport);
      assert.match(await client.decode('emb', tg.map((t) => t.id), { transport, skipSpecialTokens: false }), /^\[CLS\] hello world \[SEP\]$/, transport);
    }
  });

  test('embedArrow: strings and a Table in, rows or a Table out, split into batches, in order', async () => {
    const texts = Array.from({ length: 150 }, (_, i) => `arrow row ${i} ${'word '.repeat(i % 7)}`);
    const reference = await client.embed('emb', texts.slice(0, 5).concat(texts.slice(145)));
    const rows = await client.embedArrow('emb', texts, { batchSize: 32, concurrency: 3 });
    assert.equal(rows.length, 150);
    for (let i = 0; i < 5; i++) assertClose(rows[i]!, reference[i]!, `arrow row ${i}`);
    for (let i = 0; i < 5; i++) assertClose(rows[145 + i]!, reference[5 + i]!, `arrow row ${145 + i}`);
    const input = tableFromArrays({ id: Int32Array.from(texts, (_, i) => i), text: texts });
    const table: Table = await client.embedArrow('emb', input, { output: 'table', batchSize: 64 });
    assert.equal(table.numRows, 150);
    const col = table.getChild('embeddings')!;
    for (const i of [0, 63, 64, 149]) assertClose(col.get(i)!.toArray() as Float32Array, rows[i]!, `table row ${i}`);
    const uncompressed = await client.embedArrow('emb', texts.slice(0, 3), { compress: false });
    assertClose(uncompressed[2]!, rows[2]!, 'uncompressed request');
    assert.deepEqual(await client.embedArrow('emb', []), []);
    await assert.rejects(client.embedArrow('emb', tableFromArrays({ n: Int32Array.of(1, 2) })), /the table has no string column/);
  });

  test('embedSparseArrow and embedAllArrow: the same rows as embedSparse and embedAll, in order', async () => {
    const texts = Array.from({ length: 40 }, (_, i) => `row ${i} ${'more '.repeat(i % 5)}`);
    const sparse = await client.embedSparseArrow('sparse', texts, { batchSize: 16 });
    const sparseRef = await client.embedSparse('sparse', [texts[0]!, texts[17]!, texts[39]!]);
    assert.equal(sparse.length, 40);
    for (const [k, i] of [0, 17, 39].entries()) {
      assert.deepEqual(Array.from(sparse[i]!.indices), Array.from(sparseRef[k]!.indices), `sparse row ${i}`);
      assertClose(sparse[i]!.values, sparseRef[k]!.values, `sparse row ${i}`);
    }
    const sparseTable = await client.embedSparseArrow('sparse', texts, { batchSize: 16, output: 'table' });
    assert.deepEqual([sparseTable.numRows, sparseTable.schema.fields.map((f) => f.name)], [40, ['sparse_embeddings']]);

    const multi = await client.embedAllArrow('emb', texts, { batchSize: 16, concurrency: 2 });
    const multiRef = await client.embedAll('emb', [texts[3]!, texts[38]!]);
    assert.equal(multi.length, 40);
    for (const [k, i] of [3, 38].entries()) {
      assert.deepEqual([multi[i]!.tokens, multi[i]!.dim], [multiRef[k]!.tokens, multiRef[k]!.dim], `multivector row ${i}`);
      assertClose(multi[i]!.values, multiRef[k]!.values, `multivector row ${i}`, 1e-4);
    }
    const multiTable = await client.embedAllArrow('emb', tableFromArrays({ text: texts }), { output: 'table' });
    assert.equal(multiTable.numRows, 40);
    await expectClientError(client.embedSparseArrow('emb', ['x']), InvalidRequestError, { code: 'WRONG_MODEL_TYPE' });
  });

  test('models, instances, info', async () => {
    const list = await client.models();
    const ids = list.map((x) => x.id);
    for (const id of ['minilm', models.embedding, 'cold-grpc']) assert.ok(ids.includes(id), `${id} in ${ids.join(', ')}`);
    assert.deepEqual(list.find((x) => x.id === 'minilm')!.instances, ['emb']);
    const inst = await client.instances();
    assert.deepEqual(inst.map((i) => i.name), ['cls', 'emb', 'rerank', 'sparse']);
    assert.deepEqual(list.find((x) => x.id === 'family')!.instances.sort(), ['emb', 'sparse']);
    assert.equal(inst.find((i) => i.name === 'emb')!.serving, true);
    const info = await client.info('rerank');
    assert.equal(info.model_type, 'MODEL_TYPE_RERANKER');
    assert.ok(info.max_client_batch_size > 0);
    assert.equal((await client.admin.instance('emb')).status, 'running');
  });

  test("the server's codes as typed errors, on both transports", async () => {
    for (const transport of TRANSPORTS) {
      await expectClientError(client.embed('nope', 'x', { transport }), NotFoundError, { code: 'MODEL_NOT_FOUND', message: /nope/ });
    }
    await expectClientError(client.embed({ instance: 'nope' }, 'x'), NotFoundError, { code: 'INSTANCE_NOT_FOUND', grpcCode: 5 });
    await expectClientError(client.rerank('emb', 'q', ['a']), InvalidRequestError, { code: 'WRONG_MODEL_TYPE', grpcCode: 9 });
    await expectClientError(client.embedSparse('emb', 'x', { transport: 'http' }), InvalidRequestError, { code: 'OUTPUT_TYPE_UNSUPPORTED', status: 422 });
    await expectClientError(client.embed('emb', '', { transport: 'http' }), InvalidRequestError, { code: 'VALIDATION', status: 422 });
    await expectClientError(client.embed('emb', ''), InvalidRequestError, { code: 'VALIDATION', grpcCode: 3 });
    // An alias over a dense and a SPLADE model: HTTP picks by what the call needs; gRPC cannot.
    assert.equal((await client.embed('family', 'x', { transport: 'http' })).length, (await client.embed('emb', 'x')).length);
    assert.ok((await client.embedSparse('family', 'x', { transport: 'http' })).indices.length > 0);
    await expectClientError(client.embed('family', 'x'), InvalidRequestError, { code: 'MODEL_AMBIGUOUS', message: /emb, sparse|sparse, emb/ });
    await assert.rejects(client.embed('', 'x'), /model: must be a non-empty string/);
    await assert.rejects(client.embed('emb', [1 as unknown as string]), /input\[0\]: must be a string/);
  });

  test('no multiplexer there: CONNECTION_FAILED after the bounded retries', async () => {
    const port = await freePort();
    const events: RetryEvent[] = [];
    const dead = new TeiplexClient({ url: `http://127.0.0.1:${port}`, retry: { attempts: 2, baseDelayMs: 1 }, onRetry: (e) => events.push(e) });
    try {
      await expectClientError(dead.embed('emb', 'x'), ConnectionError, { code: 'CONNECTION_FAILED', grpcCode: 14 });
      assert.deepEqual(events.map((e) => [e.attempt, e.operation]), [[1, 'gRPC Embed']]);
      events.length = 0;
      await expectClientError(dead.embed('emb', 'x', { transport: 'http' }), ConnectionError, { code: 'CONNECTION_FAILED' });
      assert.deepEqual(events.map((e) => [e.attempt, e.operation]), [[1, 'POST /v1/encode/emb']]);
      // An AbortSignal ends a call before it starts, on either transport.
      const gone = new AbortController();
      gone.abort();
      for (const transport of TRANSPORTS) await expectClientError(client.embed('emb', 'x', { transport, signal: gone.signal }), CancelledError, { code: 'CANCELLED' });
    } finally {
      await dead.close();
    }
  });

  test('a deadline passed while the manager waits for a cold start is a TIMEOUT', async () => {
    for (const transport of TRANSPORTS) {
      // cold again (the first transport's call started it, and the start went on without it): a fresh
      // spawn (standby_children = 0) takes longer than the deadline, however fast the machine
      await until('slow unloaded', async () => {
        const r = await m.api('POST', '/models/slow/unload');
        return r.status === 200 && (await m.api('GET', '/models/slow')).body.replicas.length === 0;
      });
      const e = await expectClientError(client.embed('slow', 'x', { transport, timeoutMs: 150 }), TimeoutError, { code: 'TIMEOUT', message: /150|Deadline/ });
      assert.equal(e.status, undefined, 'no answer came');
    }
  });

  for (const transport of TRANSPORTS) {
    test(`${transport}: a cold start's 503 / UNAVAILABLE MODEL_LOADING with Retry-After is waited out, then answered`, async () => {
      const model = `cold-${transport}`;
      const events: RetryEvent[] = [];
      const c = new TeiplexClient({
        url: `http://127.0.0.1:${m.apiPort}`,
        grpcUrl: `127.0.0.1:${m.ready.grpc_port}`,
        transport,
        retry: { attempts: 20 },
        onRetry: (e) => events.push(e),
      });
      try {
        assert.equal((await c.admin.model(model)).state, 'available', 'not loaded before');
        const v = await c.embed(model, 'wake up', { noWait: true });
        assert.ok(v.length > 0);
        assert.ok(events.length >= 1, 'at least one refusal was seen');
        const first = events[0]!;
        const err = first.error as InstanceType<typeof import('../../src/client/errors.js').UnavailableError>;
        assert.equal(err.code, 'MODEL_LOADING', err.message);
        if (transport === 'http') assert.equal(err.status, 503, err.message);
        else assert.equal(err.grpcCode, 14, err.message);
        assert.ok(err.retryAfterMs !== undefined && err.retryAfterMs >= 1000, `Retry-After read: ${err.retryAfterMs}`);
        assert.equal(first.delayMs, err.retryAfterMs, 'the client waited what the server said');
        assert.ok(events.every((e) => (e.error as typeof err).code === 'MODEL_LOADING'), JSON.stringify(events.map((e) => e.error.message)));
        assert.equal((await c.admin.model(model)).state, 'loaded');
      } finally {
        await c.close();
      }
    });
  }
});
