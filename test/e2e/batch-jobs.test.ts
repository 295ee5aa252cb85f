/**
 * Batch jobs (docs/batch.md) against a real manager with a real router child:
 * - the official `openai` client's whole flow (files.create, batches.create, batches.retrieve,
 *   files.content), every custom_id answered once with what /v1/embeddings answers for it;
 * - per-row failures in the error file, with the status the endpoint would answer, the job completed;
 * - a job that cannot run (unknown model, unreadable input) is failed with the reason;
 * - cancel: the rows that ran are in the output, each that did not in the error file;
 * - files and batches belong to the API key that created them: another key gets 404;
 * - upload limits: too large 413, too many files 429, wrong purpose 400;
 * - the manager killed with SIGKILL in the middle of a job, started again: the job completes with
 *   every row exactly once, and the child embedded fewer inputs than the rows plus one chunk.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pl from 'nodejs-polars';
import OpenAI, { toFile } from 'openai';
import { sha256Hex } from '../../src/auth/api-keys.js';
import { assertErrorCode, childHttpPort, client, close, instanceToml, writeConfig } from '../helpers/data-plane.js';
import { startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { until } from '../helpers/wait.js';
import { batchLine, outputLines } from '../helpers/batch-lines.js';

const KEYS = { alice: 'batch-alice-key-1', bob: 'batch-bob-key-2', carol: 'batch-carol-key-3' } as const;
const keysToml = Object.entries(KEYS)
  .map(([name, key]) => `[[auth.api_keys]]\nname = "${name}"\nkey_sha256 = "${sha256Hex(key)}"\n${name === 'carol' ? 'tokens_per_minute = 1000\nrequests_per_minute = 1\n' : ''}`)
  .join('\n');

const line = batchLine;
const jsonl = (lines: string[]) => Buffer.from(`${lines.join('\n')}\n`);

/** Upload `bytes` (purpose batch) with `key`; the answer. */
async function upload(base: string, key: string | undefined, bytes: Buffer, name = 'in.jsonl', purpose = 'batch') {
  const form = new FormData();
  form.append('purpose', purpose);
  form.append('file', new Blob([bytes]), name);
  const res = await fetch(`${base}/v1/files`, { method: 'POST', body: form, headers: key === undefined ? {} : { authorization: `Bearer ${key}` } });
  return { status: res.status, body: (await res.json()) as any };
}

const lines = outputLines;

describe('batch jobs: the OpenAI flow, row errors, cancel, ownership, limits', () => {
  let dir: string;
  let m: ManagerProcess;
  let base: string;
  let alice: OpenAI;
  let bob: OpenAI;
  const as = (key: string) => client(m.apiPort, { authorization: `Bearer ${key}` });

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-batch-'));
    const model = await testModel({ kind: 'embedding', seed: 1601 });
    const model2 = await testModel({ kind: 'embedding', seed: 1603 });
    const splade = await testModel({ kind: 'splade', seed: 1604 });
    const model3 = await testModel({ kind: 'embedding', seed: 1605 });
    const file = await writeConfig(dir, `batch_chunk_rows = 8\nstandby_children = 0\nbatch_max_file_mb = 1\nbatch_files_per_key = 40\n\n[auth]\nadmin_requires_key = false\n\n${keysToml}`, instanceToml('emb', model) + instanceToml('emb2', model2) + instanceToml('splade', splade, 'pooling = "splade"') + `[[models]]\nname = "lazy"\nmodel_id = ${JSON.stringify(model3)}\n`);
    m = await startManager(file);
    base = `http://127.0.0.1:${m.apiPort}`;
    alice = new OpenAI({ baseURL: `${base}/v1`, apiKey: KEYS.alice, maxRetries: 0 });
    bob = new OpenAI({ baseURL: `${base}/v1`, apiKey: KEYS.bob, maxRetries: 0 });
    for (const name of ['emb', 'emb2', 'splade']) await m.waitFor(name, (i) => i.status === 'running', 120_000);
  });

  after(async () => {
    if (m) assert.equal(await m.stop(), 0);
    await rm(dir, { recursive: true, force: true });
  });

  const finished = (client: OpenAI, id: string) =>
    until(`batch ${id} finished`, async () => {
      const b = await client.batches.retrieve(id);
      return ['completed', 'failed', 'expired', 'cancelled'].includes(b.status) && b;
    }, { timeoutMs: 120_000, everyMs: 100 });

  test('the openai client: files.create, batches.create, batches.retrieve, files.content; each row once, as /v1/embeddings answers it', async () => {
    const texts = Array.from({ length: 30 }, (_, i) => `batch text number ${i} ${'word '.repeat(i % 7)}`.trim());
    const input = jsonl(texts.map((t, i) => line(`row-${i}`, { model: 'emb', input: t, ...(i % 3 === 1 ? { encoding_format: 'base64' } : {}), ...(i % 5 === 2 ? { dimensions: 8 } : {}) })));
    const f = await alice.files.create({ file: await toFile(input, 'corpus.jsonl'), purpose: 'batch' });
    assert.equal(f.purpose, 'batch');
    assert.equal(f.bytes, input.length);
    const created = await alice.batches.create({ input_file_id: f.id, endpoint: '/v1/embeddings', completion_window: '24h', metadata: { run: 'one' } });
    assert.match(created.id, /^batch_[0-9a-f]{24}$/);
    assert.deepEqual(created.metadata, { run: 'one' });
    const done = await finished(alice, created.id);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.deepEqual(done.request_counts, { total: 30, completed: 30, failed: 0 });
    assert.equal(done.error_file_id, null);
    const out = lines(await (await alice.files.content(done.output_file_id as string)).text());
    assert.deepEqual(
      out.map((l) => l.custom_id).sort(),
      texts.map((_, i) => `row-${i}`).sort(),
      'every custom_id exactly once',
    );
    const http = as(KEYS.alice);
    for (const l of out) {
      const i = Number(l.custom_id.slice(4));
      assert.equal(l.response?.status_code, 200);
      const body = l.response?.body;
      assert.equal(body.model, 'emb');
      assert.ok(body.usage.prompt_tokens > 0, 'usage per line');
      const direct = await http.post('/v1/embeddings', { model: 'emb', input: texts[i], ...(i % 5 === 2 ? { dimensions: 8 } : {}) });
      assert.equal(direct.status, 200);
      assert.equal(body.usage.prompt_tokens, direct.body.usage.prompt_tokens, `${l.custom_id}: its own tokens, as the endpoint counts them`);
      const got = i % 3 === 1 ? Array.from(new Float32Array(new Uint8Array(Buffer.from(body.data[0].embedding, 'base64')).buffer)) : body.data[0].embedding;
      assert.equal(got.length, i % 5 === 2 ? 8 : direct.body.data[0].embedding.length);
      close(got, direct.body.data[0].embedding, 1e-4, l.custom_id);
    }
    const listed = await alice.batches.list();
    assert.ok(listed.data.some((b) => b.id === created.id));
    const one = await alice.batches.list({ limit: 1 });
    assert.equal(one.data.length, 1);
    assert.equal((await alice.files.list({ limit: 1 })).data.length, 1);
    assertErrorCode(await as(KEYS.alice).get('/v1/batches?limit=0'), 422, 'VALIDATION', 'limit 0');
    assertErrorCode(await as(KEYS.alice).get('/v1/files?limit=ten'), 422, 'VALIDATION', 'limit ten');
  });

  test('an on-demand model not loaded is started by the job; the metrics count jobs and rows', async () => {
    assert.notEqual((await m.api('GET', '/models/lazy')).body.state, 'loaded');
    const f = await alice.files.create({ file: await toFile(jsonl(Array.from({ length: 20 }, (_, i) => line(`l-${i}`, { model: 'lazy', input: `cold ${i}` }))), 'lazy.jsonl'), purpose: 'batch' });
    const b = await finished(alice, (await alice.batches.create({ input_file_id: f.id, endpoint: '/v1/embeddings', completion_window: '24h' })).id);
    assert.equal(b.status, 'completed', JSON.stringify(b));
    assert.deepEqual(b.request_counts, { total: 20, completed: 20, failed: 0 });
    assert.equal((await m.api('GET', '/models/lazy')).body.state, 'loaded');
    const metrics = await (await fetch(`${base}/metrics`)).text();
    const value = (series: string) => Number(new RegExp(`^${series.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(metrics)?.[1] ?? Number.NaN);
    assert.ok(value('teiplex_batch_jobs{status="completed"}') >= 2, metrics);
    assert.ok(value('teiplex_batch_rows_total{outcome="completed"}') >= 50);
    assert.equal(value('teiplex_batch_pending_rows'), 0);
    assert.ok(value('teiplex_batch_rows_per_second') >= 0);
  });

  test("quotas: a job is charged to its key's tokens_per_minute and waits past it; the batch routes are not requests", async () => {
    const carol = new OpenAI({ baseURL: `${base}/v1`, apiKey: KEYS.carol, maxRetries: 0 });
    // requests_per_minute = 1: none of these calls may count, or the second would be refused.
    const f = await carol.files.create({ file: await toFile(jsonl(Array.from({ length: 120 }, (_, i) => line(`q-${i}`, { model: 'emb', input: `quota row ${i} with a few more words` }))), 'q.jsonl'), purpose: 'batch' });
    const created = await carol.batches.create({ input_file_id: f.id, endpoint: '/v1/embeddings', completion_window: '24h' });
    const b = await until('the job completed past the quota', async () => {
      const r = await carol.batches.retrieve(created.id);
      return r.status === 'completed' && r;
    }, { timeoutMs: 180_000, everyMs: 250 });
    const out = lines(await (await carol.files.content(b.output_file_id as string)).text());
    const tokens = out.reduce((n, l) => n + (l.response?.body.usage.prompt_tokens as number), 0);
    assert.ok(tokens > 1000, `the job took ${tokens} tokens, more than the minute's 1000: it waited for the bucket`);
    const after = await as(KEYS.carol).post('/v1/embeddings', { model: 'emb', input: 'one more' });
    assertErrorCode(after, 429, 'RATE_LIMIT_EXCEEDED', 'the job spent the key\'s tokens');
    assert.match(after.body.error.message, /tokens_per_minute \(1000\)/);
  });

  test('per-row failures go to the error file with their custom_id and status; the job completes', async () => {
    const input = jsonl([
      line('ok-1', { model: 'emb', input: 'fine' }),
      'this is not json',
      line('bad-url', { model: 'emb', input: 'x' }, { url: '/v1/chat/completions' }),
      line('empty', { model: 'emb', input: [] }),
      line('bad-field', { model: 'emb', input: 'x', dimensions: -3 }),
      line('no-model', { model: 'no-such-model', input: 'x' }),
      line('ok-1', { model: 'emb', input: 'repeated id' }),
      line('ok-2', { model: 'emb', input: ['two', 'inputs'] }),
    ]);
    const f = await alice.files.create({ file: await toFile(input, 'mixed.jsonl'), purpose: 'batch' });
    const b = await finished(alice, (await alice.batches.create({ input_file_id: f.id, endpoint: '/v1/embeddings', completion_window: '24h' })).id);
    assert.equal(b.status, 'completed', JSON.stringify(b));
    assert.deepEqual(b.request_counts, { total: 8, completed: 2, failed: 6 });
    const ok = lines(await (await alice.files.content(b.output_file_id as string)).text());
    assert.deepEqual(ok.map((l) => l.custom_id), ['ok-1', 'ok-2']);
    assert.equal(ok[1].response?.body.data.length, 2);
    const errs = new Map(lines(await (await alice.files.content(b.error_file_id as string)).text()).map((l) => [l.custom_id, l]));
    const status = (id: string) => errs.get(id)?.response?.status_code;
    const code = (id: string) => errs.get(id)?.response?.body.error.code;
    assert.equal(status('line-2'), 400, 'a line that is not JSON is named by its line number');
    assert.match(errs.get('line-2')?.response?.body.error.message, /line 2: not JSON/);
    assert.equal(status('bad-url'), 400);
    assert.equal(code('empty'), 'empty');
    assert.equal(status('bad-field'), 400);
    assert.match(errs.get('bad-field')?.response?.body.error.message, /dimensions/);
    assert.equal(status('no-model'), 404);
    assert.equal(code('no-model'), 'model_not_found');
    assert.match(errs.get('ok-1')?.response?.body.error.message, /used by an earlier line/);
  });

  test('a job that cannot run fails with the reason: an unknown model, an unreadable table', async () => {
    const f = await alice.files.create({ file: await toFile(jsonl([line('a', { model: 'nope', input: 'x' })]), 'unknown.jsonl'), purpose: 'batch' });
    const b = await finished(alice, (await alice.batches.create({ input_file_id: f.id, endpoint: '/v1/embeddings', completion_window: '24h' })).id);
    assert.equal(b.status, 'failed');
    assert.equal(b.errors?.data?.[0]?.code, 'model_not_found', JSON.stringify(b.errors));
    const garbage = Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from('definitely not an arrow stream')]);
    const g = await upload(base, KEYS.alice, garbage, 'broken.arrows');
    assert.equal(g.status, 200, JSON.stringify(g.body));
    const gb = await as(KEYS.alice).post('/v1/batches', { input_file_id: g.body.id, endpoint: '/v1/embeddings', completion_window: '24h', model: 'emb' });
    assert.equal(gb.status, 200, JSON.stringify(gb.body));
    const failed = await finished(alice, gb.body.id);
    assert.equal(failed.status, 'failed');
    assert.ok((failed.errors?.data?.[0]?.message ?? '').length > 0, 'the reason is given');
    const noModel = await upload(base, KEYS.alice, garbage, 'broken2.arrows');
    const nm = await finished(alice, (await as(KEYS.alice).post('/v1/batches', { input_file_id: noModel.body.id, endpoint: '/v1/embeddings', completion_window: '24h' })).body.id);
    assert.equal(nm.status, 'failed');
    assert.match(nm.errors?.data?.[0]?.message ?? '', /needs the batch's `model`/);
  });

  test('cancel: what ran is in the output, every row that did not is in the error file, each row once', async () => {
    const row = (i: number) => line(`c-${i}`, { model: 'emb2', input: `cancel me ${i} ${'lorem ipsum '.repeat(8)}` });
    assertErrorCode(await upload(base, KEYS.alice, Buffer.alloc(0)), 400, 'BAD_REQUEST', 'an empty file is not an upload');
    assertErrorCode(await upload(base, KEYS.alice, jsonl(Array.from({ length: 6000 }, (_, i) => row(i)))), 413, 'PAYLOAD_TOO_LARGE', 'over batch_max_file_mb');
    const N = 3000;
    const f = await upload(base, KEYS.alice, jsonl(Array.from({ length: N }, (_, i) => row(i))));
    assert.equal(f.status, 200, JSON.stringify(f.body));
    const created = await alice.batches.create({ input_file_id: f.body.id, endpoint: '/v1/embeddings', completion_window: '24h' });
    await until('the job has started', async () => ((await alice.batches.retrieve(created.id)).request_counts?.completed ?? 0) > 0, { timeoutMs: 60_000, everyMs: 2 });
    // The model stops serving: the job waits (its chunks are retried), it does not fail.
    assert.equal((await m.api('POST', '/instances/emb2/stop')).status, 200);
    const waiting = await alice.batches.retrieve(created.id);
    assert.equal(waiting.status, 'in_progress', 'a model that stopped serving does not fail the job');
    const del = await fetch(`${base}/v1/files/${f.body.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${KEYS.alice}` } });
    assertErrorCode({ status: del.status, body: await del.json() }, 400, 'BAD_REQUEST', 'the input of an unfinished batch is not deleted');
    const cancelling = await alice.batches.cancel(created.id);
    assert.ok(['cancelling', 'cancelled'].includes(cancelling.status), cancelling.status);
    const b = await finished(alice, created.id);
    assert.equal(b.status, 'cancelled');
    assert.ok(b.cancelled_at !== null && b.cancelling_at !== null);
    assert.ok(b.output_file_id !== null && b.error_file_id !== null, JSON.stringify(b));
    const ran = lines(await (await alice.files.content(b.output_file_id as string)).text());
    assert.ok(ran.length > 0 && ran.length < N, `${ran.length} rows ran before the cancel`);
    const notRun = lines(await (await alice.files.content(b.error_file_id as string)).text());
    assert.ok(notRun.every((l) => l.response === null && l.error?.code === 'batch_cancelled'));
    const all = [...ran, ...notRun].map((l) => l.custom_id);
    assert.equal(new Set(all).size, N, 'each row once, in the output or the error file');
    assert.equal(all.length, N);
    assert.equal(b.request_counts?.completed, ran.length);
    const again = await as(KEYS.alice).post(`/v1/batches/${created.id}/cancel`, {});
    assert.equal(again.status, 200, 'cancelling a cancelled batch is a no-op');
    assert.equal(again.body.status, 'cancelled');
  });

  for (const [format, write, read, opts] of [
    ['Arrow IPC stream', (df: pl.DataFrame) => df.writeIPCStream({ compression: 'lz4' as never }), (b: Buffer) => pl.readIPCStream(b), {}],
    ['Parquet', (df: pl.DataFrame) => df.writeParquet({ compression: 'zstd' }), (b: Buffer) => pl.readParquet(b), { embedding_type: 'int8', dimensions: 16 }],
    ['Arrow IPC file (a SPLADE model: sparse by default)', (df: pl.DataFrame) => df.writeIPC(), (b: Buffer) => pl.readIPC(b), { model: 'splade' }],
  ] as const) {
    test(`${format} in and out: the same format back, row-aligned, with the id column; polars reads it`, async () => {
      const texts = Array.from({ length: 50 }, (_, i) => (i === 7 ? null : `table row ${i} ${'text '.repeat(i % 5)}`));
      const df = pl.DataFrame([pl.Series('doc_id', texts.map((_, i) => 1000 + i), pl.Int64), pl.Series('body', texts, pl.Utf8)]);
      const up = await upload(base, KEYS.alice, Buffer.from(write(df)), `corpus.${format.startsWith('Parquet') ? 'parquet' : 'arrow'}`);
      assert.equal(up.status, 200, JSON.stringify(up.body));
      const created = await as(KEYS.alice).post('/v1/batches', { input_file_id: up.body.id, endpoint: '/v1/embeddings', completion_window: '24h', model: 'emb', text_column: 'body', id_column: 'doc_id', ...opts });
      assert.equal(created.status, 200, JSON.stringify(created.body));
      const b = await finished(alice, created.body.id);
      assert.equal(b.status, 'completed', JSON.stringify(b));
      assert.deepEqual(b.request_counts, { total: 50, completed: 49, failed: 1 });
      const res = await fetch(`${base}/v1/files/${b.output_file_id}/content`, { headers: { authorization: `Bearer ${KEYS.alice}` } });
      const out = read(Buffer.from(await res.arrayBuffer()));
      assert.deepEqual(out.getColumn('id').toArray(), texts.map((_, i) => String(1000 + i)), 'row-aligned ids');
      const sparse = 'model' in opts;
      const column = sparse ? 'sparse_embeddings' : 'embeddings';
      const vectors = out.getColumn(column).toArray() as unknown[];
      assert.equal(vectors[7], null, 'the null text is a null embedding');
      const errs = lines(await (await alice.files.content(b.error_file_id as string)).text());
      assert.deepEqual(errs.map((l) => l.custom_id), ['1007']);
      const http = as(KEYS.alice);
      if (sparse) {
        const direct = await http.post('/embed_sparse', { model: 'splade', inputs: texts[3] });
        const got = vectors[3] as Array<{ index: number; value: number }>;
        assert.deepEqual(got.map((e) => e.index), direct.body[0].map((e: { index: number }) => e.index));
        close(got.map((e) => e.value), direct.body[0].map((e: { value: number }) => e.value));
      } else {
        const direct = await http.post('/v1/embeddings', { model: 'emb', input: texts[3], ...('dimensions' in opts ? { dimensions: 16, embedding_type: 'int8' } : {}) });
        const got = Array.from(vectors[3] as ArrayLike<number>);
        close(got, direct.body.data[0].embedding);
      }
    });
  }

  test('another API key sees none of them: 404 on files, contents, batches and cancel; its lists are empty', async () => {
    const f = await alice.files.create({ file: await toFile(jsonl([line('x', { model: 'emb', input: 'mine' })]), 'mine.jsonl'), purpose: 'batch' });
    const b = await alice.batches.create({ input_file_id: f.id, endpoint: '/v1/embeddings', completion_window: '24h' });
    const theirs = as(KEYS.bob);
    assertErrorCode(await theirs.get(`/v1/files/${f.id}`), 404, 'NOT_FOUND', 'file');
    assertErrorCode(await theirs.get(`/v1/files/${f.id}/content`), 404, 'NOT_FOUND', 'content');
    assertErrorCode(await theirs.get(`/v1/batches/${b.id}`), 404, 'NOT_FOUND', 'batch');
    assertErrorCode(await theirs.post(`/v1/batches/${b.id}/cancel`, {}), 404, 'NOT_FOUND', 'cancel');
    assertErrorCode(await theirs.post('/v1/batches', { input_file_id: f.id, endpoint: '/v1/embeddings', completion_window: '24h' }), 404, 'NOT_FOUND', 'a batch on their file');
    const del = await fetch(`${base}/v1/files/${f.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${KEYS.bob}` } });
    assert.equal(del.status, 404);
    assert.equal((await bob.batches.list()).data.length, 0);
    assert.equal((await bob.files.list()).data.length, 0);
    assertErrorCode(await client(m.apiPort).get(`/v1/batches/${b.id}`), 401, 'UNAUTHENTICATED', 'no key');
    const mine = await finished(alice, b.id);
    assert.equal(mine.status, 'completed');
  });

  test('upload limits and bad requests: purpose, endpoint, completion window, files per key', async () => {
    assertErrorCode(await upload(base, KEYS.bob, jsonl([line('a', { input: 'x' })]), 'x.jsonl', 'fine-tune'), 400, 'BAD_REQUEST', 'purpose');
    const f = await upload(base, KEYS.bob, jsonl([line('a', { model: 'emb', input: 'x' })]));
    assert.equal(f.status, 200);
    const http = as(KEYS.bob);
    assertErrorCode(await http.post('/v1/batches', { input_file_id: f.body.id, endpoint: '/v1/chat/completions', completion_window: '24h' }), 400, 'BAD_REQUEST', 'endpoint');
    assertErrorCode(await http.post('/v1/batches', { input_file_id: f.body.id, endpoint: '/v1/embeddings', completion_window: 'forever' }), 400, 'BAD_REQUEST', 'window');
    assertErrorCode(await http.post('/v1/batches', { input_file_id: 'file-000000000000000000000000', endpoint: '/v1/embeddings', completion_window: '24h' }), 404, 'NOT_FOUND', 'no such file');
    for (let i = 1; i < 40; i++) assert.equal((await upload(base, KEYS.bob, jsonl([line(`a${i}`, { model: 'emb', input: 'x' })]))).status, 200);
    const over = await upload(base, KEYS.bob, jsonl([line('z', { model: 'emb', input: 'x' })]));
    assertErrorCode(over, 429, 'BATCH_LIMIT_EXCEEDED', 'the 41st file');
    const del = await fetch(`${base}/v1/files/${f.body.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${KEYS.bob}` } });
    assert.deepEqual(await del.json(), { id: f.body.id, object: 'file', deleted: true });
    assert.equal((await upload(base, KEYS.bob, jsonl([line('z', { model: 'emb', input: 'x' })]))).status, 200, 'room again after a delete');
  });
});

describe('batch jobs: the manager killed with SIGKILL in the middle of a job', () => {
  let dir: string;
  let m: ManagerProcess | undefined;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-batch-kill-'));
  });
  after(async () => {
    if (m) await m.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('started again, the job completes with every row exactly once, the child embedded fewer than rows + one chunk', async () => {
    const model = await testModel({ kind: 'embedding', seed: 1602 });
    const CHUNK = 16;
    const ROWS = 1200;
    const file = await writeConfig(dir, `batch_chunk_rows = ${CHUNK}\nbatch_chunks_in_flight = 1\nembedding_cache_mb = 0`, instanceToml('emb', model, 'extra_args = ["--http-port", "0"]'));
    m = await startManager(file);
    await m.waitFor('emb', (i) => i.status === 'running', 120_000);
    const base = `http://127.0.0.1:${m.apiPort}`;
    const f = await upload(base, undefined, jsonl(Array.from({ length: ROWS }, (_, i) => line(`k-${i}`, { model: 'emb', input: `row ${i} ${'of a corpus that is embedded offline '.repeat(3)}` }))));
    assert.equal(f.status, 200, JSON.stringify(f.body));
    const http = client(m.apiPort);
    const created = await http.post('/v1/batches', { input_file_id: f.body.id, endpoint: '/v1/embeddings', completion_window: '24h' });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const id = created.body.id as string;
    const childPort = await childHttpPort(m, 'emb');
    /** Inputs a router child has run through its model (its own teiplex_batch_items_total), by its HTTP port. */
    const childItems = async (port: number) => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const hit = /^teiplex_batch_items_total(?:\{[^}]*\})? ([0-9.e+]+)$/m.exec(text);
      return hit === null ? 0 : Number(hit[1]);
    };
    await until('a third of the rows done', async () => (await http.get(`/v1/batches/${id}`)).body.request_counts.completed >= ROWS / 3, { timeoutMs: 120_000, everyMs: 10 });
    await m.stop('SIGKILL');
    // The old child outlives the manager until the next one reaps it: what it computed, counted now.
    const before = await childItems(childPort);
    assert.ok(before >= ROWS / 3, `the first child embedded ${before} inputs`);
    m = await startManager(file);
    const c2 = client(m.apiPort);
    const done = await until('the job completed after the restart', async () => {
      const b = (await c2.get(`/v1/batches/${id}`)).body;
      return ['completed', 'failed'].includes(b.status) && b;
    }, { timeoutMs: 180_000, everyMs: 100 });
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.deepEqual(done.request_counts, { total: ROWS, completed: ROWS, failed: 0 });
    const text = await (await fetch(`http://127.0.0.1:${m.apiPort}/v1/files/${done.output_file_id}/content`)).text();
    const ids = lines(text).map((l) => l.custom_id);
    assert.equal(ids.length, ROWS, 'no row twice');
    assert.equal(new Set(ids).size, ROWS, 'no row lost');
    await m.waitFor('emb', (i) => i.status === 'running');
    const afterPort = await childHttpPort(m, 'emb');
    const afterItems = await childItems(afterPort);
    const total = afterPort === childPort ? afterItems : before + afterItems;
    assert.ok(total <= ROWS + CHUNK, `the children embedded ${total} inputs for ${ROWS} rows (chunks of ${CHUNK}): at most the one chunk in flight again`);
    assert.ok(total >= ROWS, `${total} inputs embedded for ${ROWS} rows`);
  });
});
