/**
 * The multiplexer's Arrow RPCs (EmbedArrow, EmbedSparseArrow, EmbedAllArrow) end to end: a real
 * `teiplex serve` with real `teiplex router` children, two of them started with
 * TEIPLEX_ROUTER_DISABLE_BATCH=1 so they have no teiplex.v1.Batch service, as a real TEI, and the
 * multiplexer takes its tei.v1 stream fan-out path to them. Every answer row equals the child's
 * unary answer for that text, in input order, on both paths; Arrow inputs of every shape (0, 1 and
 * 10,000 rows, several record batches, LargeUtf8, LZ4 or not, written by polars) give equal
 * answers; bad inputs (null row, no string column, garbage, truncated stream, too many rows, a
 * row the child refuses) give INVALID_ARGUMENT naming the row or the problem; noop; deadlines;
 * polars reads the answers back; the rows metric.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Int32, Table, tableToIPC, Utf8, vectorFromArray, type Vector } from 'apache-arrow';
import pl from 'nodejs-polars';
import { decodeDense, decodeMultivector, decodeSparse, encodeTexts } from '../../src/arrow/embedding-batch.js';
import { PATH_HEADER } from '../../src/mux/arrow-service.js';
import { MUX_SERVICE } from '../../src/mux/protos.js';
import { serviceDefinition } from '../../src/tei/proto.js';
import { INSTANCE_HEADER } from '../../src/mux/forward.js';
import { startManager, type ManagerProcess, loopbackConfig } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { direct, grpcError, mux, rawUnary, unary, type AnyClient } from '../helpers/mux-client.js';
import { cosine } from '../helpers/vectors.js';

const { status } = grpc;
const MAX_ROWS = 20_000;

let dir: string;
let m: ManagerProcess;
let client: AnyClient;
const ports: Record<string, number> = {};
const directs: Record<string, AnyClient> = {};

/** Instances: `emb` and `splade` serve teiplex.v1.Batch; the `-stream` ones do not. */
const DENSE = ['emb', 'emb-stream'] as const;
const SPARSE = ['splade', 'splade-stream'] as const;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-mux-arrow-'));
  const embedding = await testModel({ kind: 'embedding' });
  const splade = await testModel({ kind: 'splade' });
  const noBatch = 'env = { TEIPLEX_ROUTER_DISABLE_BATCH = "1" }\n';
  const instance = (name: string, model: string, extra = '') => `[[instances]]\nname = "${name}"\nmodel_id = ${JSON.stringify(model)}\n${extra}`;
  const file = path.join(dir, 'mux.toml');
  await writeFile(
    file,
    `${loopbackConfig(dir)}startup_timeout_secs = 120
arrow_max_rows = ${MAX_ROWS}
arrow_allow_noop = true
# the paths to the children are tested here: no embedding cache (embedding-cache.test.ts tests it)
embedding_cache_mb = 0
${instance('emb', embedding)}${instance('emb-stream', embedding, noBatch)}${instance('splade', splade, 'pooling = "splade"\n')}${instance('splade-stream', splade, `pooling = "splade"\n${noBatch}`)}`,
  );
  m = await startManager(file);
  for (const name of [...DENSE, ...SPARSE]) {
    ports[name] = (await m.waitFor(name, (i) => i.status === 'running', 120_000)).port;
    directs[name] = direct(ports[name], 'tei.v1.Embed');
  }
  client = mux(Number(m.ready.grpc_port));
});

after(async () => {
  client?.close();
  for (const c of Object.values(directs)) c.close();
  if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  await rm(dir, { recursive: true, force: true });
});

const target = (instance_name: string) => ({ instance_name });

async function embedArrow(instance: string, ipc: Uint8Array, extra: Record<string, unknown> = {}, options: grpc.CallOptions = {}) {
  const { res, headers } = await unary(client, 'EmbedArrow', { target: target(instance), arrow_ipc: Buffer.from(ipc), ...extra }, options);
  assert.deepEqual(headers.get(INSTANCE_HEADER), [instance]);
  const out = decodeDense(res.arrow_ipc);
  // The Batch fast path to a child that has it, the stream fan-out to one that does not.
  const path = out.rows === 0 || extra.noop === true ? 'none' : instance.endsWith('-stream') ? 'stream' : 'batch';
  assert.deepEqual(headers.get(PATH_HEADER), [path], `${instance}: path`);
  return out;
}

function rowOf(batch: { dim: number; values: Float32Array }, i: number): Float32Array {
  return batch.values.subarray(i * batch.dim, (i + 1) * batch.dim);
}

/** Distinct texts of mixed lengths. */
function texts(n: number, seed = 0): string[] {
  const words = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta', 'iota', 'kappa', 'lambda', 'mu'];
  return Array.from({ length: n }, (_, i) => {
    const k = 1 + ((i * 7 + seed) % 12);
    return `${i + seed} ${Array.from({ length: k }, (_, j) => words[(i + j * 5 + seed) % words.length]).join(' ')}`;
  });
}

async function unaryEmbed(instance: string, inputs: string, normalize?: boolean): Promise<number[]> {
  return (await unary(directs[instance], 'Embed', normalize === undefined ? { inputs } : { inputs, normalize })).res.embeddings as number[];
}

function assertSameRow(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  assert.ok(cosine(got, want) > 0.99999, `${what}: cosine ${cosine(got, want)}`);
}

function assertSameDense(a: { rows: number; dim: number; values: Float32Array }, b: { rows: number; dim: number; values: Float32Array }, what: string): void {
  assert.equal(a.rows, b.rows, `${what}: rows`);
  assert.equal(a.dim, b.dim, `${what}: dim`);
  for (let i = 0; i < a.rows; i++) assertSameRow(rowOf(a, i), rowOf(b, i), `${what}: row ${i}`);
}

describe('EmbedArrow (dense)', () => {
  test('TEIPLEX_ROUTER_DISABLE_BATCH=1: that child has no teiplex.v1.Batch, as a real TEI', async () => {
    const req = serviceDefinition('teiplex.v1.Batch').EmbedBatch!.requestSerialize({ inputs: ['a'] });
    await rawUnary(ports.emb!, '/teiplex.v1.Batch/EmbedBatch', req);
    await assert.rejects(rawUnary(ports['emb-stream']!, '/teiplex.v1.Batch/EmbedBatch', req), grpcError(status.UNIMPLEMENTED, null));
  });

  test('1 and 50 rows equal the child\'s unary Embed of each text, on both paths; normalize unset = true', async () => {
    const input = texts(50);
    for (const name of DENSE) {
      const one = await embedArrow(name, encodeTexts(input.slice(0, 1)));
      assert.equal(one.rows, 1);
      assertSameRow(rowOf(one, 0), await unaryEmbed(name, input[0]!), `${name} 1 row`);
      const many = await embedArrow(name, encodeTexts(input));
      assert.equal(many.rows, 50);
      assert.equal(many.dim, 32);
      for (const i of [0, 1, 17, 49]) assertSameRow(rowOf(many, i), await unaryEmbed(name, input[i]!), `${name} row ${i}`);
      // normalize: unset means true; false gives the raw vectors
      const raw = await embedArrow(name, encodeTexts(input.slice(0, 3)), { normalize: false });
      const rawWant = await unaryEmbed(name, input[1]!, false);
      assert.ok(Math.abs(Math.hypot(...rawWant) - 1) > 1e-3, 'the raw vector is not unit length');
      for (let j = 0; j < rawWant.length; j++) assert.ok(Math.abs(rowOf(raw, 1)[j]! - rawWant[j]!) < 1e-4 * Math.max(1, Math.abs(rawWant[j]!)));
      const unit = await embedArrow(name, encodeTexts(input.slice(0, 3)), { normalize: true });
      assertSameRow(rowOf(unit, 1), await unaryEmbed(name, input[1]!), `${name} normalize true`);
      assert.ok(Math.abs(Math.hypot(...rowOf(unit, 1)) - 1) < 1e-4);
    }
  });

  test('0 rows: the schema with the model\'s dimension and no record batch (empty bytes, schema only)', async () => {
    for (const name of DENSE) {
      for (const ipc of [new Uint8Array(0), encodeTexts([])]) {
        const out = await embedArrow(name, ipc);
        assert.equal(out.rows, 0);
        assert.equal(out.dim, 32);
      }
    }
  });

  test('10,000 rows: equal on the Batch and the stream path, in input order, equal to unary Embed at sampled rows', async () => {
    const input = texts(10_000, 3);
    const ipc = encodeTexts(input, { batchSize: 1_000 });
    const [fast, fanout] = await Promise.all(DENSE.map((name) => embedArrow(name, ipc)));
    assert.equal(fast!.rows, 10_000);
    assertSameDense(fast!, fanout!, 'batch vs stream');
    for (const i of [0, 1, 255, 256, 257, 5_003, 9_998, 9_999]) assertSameRow(rowOf(fast!, i), await unaryEmbed('emb', input[i]!), `row ${i}`);
    // several Arrow calls at once share the child's input budget and still all succeed
    const parallel = await Promise.all(Array.from({ length: 6 }, (_, k) => embedArrow(k % 2 === 0 ? 'emb' : 'emb-stream', encodeTexts(input.slice(k * 700, k * 700 + 700)))));
    parallel.forEach((out, k) => assertSameRow(rowOf(out, 699), rowOf(fast!, k * 700 + 699), `parallel call ${k}`));
  });

  test('several record batches, Utf8 or LargeUtf8, LZ4 or uncompressed, polars-written: equal answers', async () => {
    const input = texts(37, 11);
    const want = await embedArrow('emb', encodeTexts(input, { compress: false }));
    const variants: Array<[string, Uint8Array]> = [
      ['lz4, batches of 5', encodeTexts(input, { batchSize: 5 })],
      ['LargeUtf8, batches of 10, uncompressed', encodeTexts(input, { large: true, batchSize: 10, compress: false })],
      ['LargeUtf8 lz4', encodeTexts(input, { large: true })],
      ['polars lz4 with an id column first', pl.DataFrame({ id: input.map((_, i) => i), text: input }).writeIPCStream({ compression: 'lz4' })],
    ];
    for (const name of DENSE) for (const [what, ipc] of variants) assertSameDense(await embedArrow(name, ipc), want, `${name}: ${what}`);
  });

  test('by model_id and instance_index too', async () => {
    const ipc = encodeTexts(['routing by model']);
    const want = await embedArrow('emb', ipc);
    const byModel = await unary(client, 'EmbedArrow', { target: { model_id: await testModel({ kind: 'embedding' }) }, arrow_ipc: Buffer.from(ipc) });
    assertSameDense(decodeDense(byModel.res.arrow_ipc), want, 'model_id');
    const byIndex = await unary(client, 'EmbedArrow', { target: { instance_index: 0 }, arrow_ipc: Buffer.from(ipc) });
    assert.deepEqual(byIndex.headers.get(INSTANCE_HEADER), ['emb']);
    assertSameDense(decodeDense(byIndex.res.arrow_ipc), want, 'instance_index');
  });

  test('noop: zero vectors of the model\'s dimension, one per row', async () => {
    for (const name of DENSE) {
      const out = await embedArrow(name, encodeTexts(texts(9)), { noop: true });
      assert.equal(out.rows, 9);
      assert.equal(out.dim, 32);
      assert.ok(out.values.every((v) => v === 0));
    }
  });

  test('polars reads the answer back', async () => {
    const input = texts(20);
    const { res } = await unary(client, 'EmbedArrow', { target: target('emb'), arrow_ipc: Buffer.from(encodeTexts(input)) });
    const df = pl.readIPCStream(res.arrow_ipc as Buffer);
    assert.equal(df.height, 20);
    assert.deepEqual(df.columns, ['embeddings']);
    const rows = df.getColumn('embeddings').toArray() as unknown as number[][];
    const ours = decodeDense(res.arrow_ipc);
    rows.forEach((row, i) => assert.deepEqual(Float32Array.from(row), rowOf(ours, i)));
  });
});

describe('EmbedSparseArrow (SPLADE) and EmbedAllArrow (multivector)', () => {
  test('sparse rows equal the child\'s unary EmbedSparse, on both paths; noop gives empty rows', async () => {
    const input = texts(300, 5);
    const ipc = Buffer.from(encodeTexts(input, { batchSize: 100 }));
    const answers = await Promise.all(
      SPARSE.map(async (name) => {
        const { res, headers } = await unary(client, 'EmbedSparseArrow', { target: target(name), arrow_ipc: ipc });
        assert.deepEqual(headers.get(PATH_HEADER), [name.endsWith('-stream') ? 'stream' : 'batch']);
        return decodeSparse(res.arrow_ipc);
      }),
    );
    for (const [k, rows] of answers.entries()) {
      assert.equal(rows.length, 300);
      for (const i of [0, 1, 150, 299]) {
        const want = (await unary(directs[SPARSE[k]!], 'EmbedSparse', { inputs: input[i] })).res.sparse_embeddings as Array<{ index: number; value: number }>;
        assert.ok(want.length > 0);
        assert.deepEqual([...rows[i]!.indices], want.map((e) => e.index), `${SPARSE[k]} row ${i} indices`);
        want.forEach((e, j) => assert.ok(Math.abs(rows[i]!.values[j]! - e.value) <= 1e-5 * Math.max(1, e.value), `${SPARSE[k]} row ${i} value ${j}`));
      }
    }
    assert.deepEqual(answers[0], answers[1], 'Batch and stream paths agree');
    const noop = decodeSparse((await unary(client, 'EmbedSparseArrow', { target: target('splade'), arrow_ipc: ipc, noop: true })).res.arrow_ipc);
    assert.equal(noop.length, 300);
    assert.ok(noop.every((r) => r.indices.length === 0));
    const empty = decodeSparse((await unary(client, 'EmbedSparseArrow', { target: target('splade-stream'), arrow_ipc: Buffer.alloc(0) })).res.arrow_ipc);
    assert.deepEqual(empty, []);
    const df = pl.readIPCStream((await unary(client, 'EmbedSparseArrow', { target: target('splade'), arrow_ipc: ipc })).res.arrow_ipc as Buffer);
    assert.equal(df.height, 300);
  });

  test('multivector rows equal the child\'s unary EmbedAll, on both paths', async () => {
    const input = texts(40, 2);
    const ipc = Buffer.from(encodeTexts(input));
    for (const name of DENSE) {
      const rows = decodeMultivector((await unary(client, 'EmbedAllArrow', { target: target(name), arrow_ipc: ipc })).res.arrow_ipc);
      assert.equal(rows.length, 40);
      for (const i of [0, 21, 39]) {
        const want = (await unary(directs[name], 'EmbedAll', { inputs: input[i] })).res.token_embeddings as Array<{ embeddings: number[] }>;
        assert.equal(rows[i]!.tokens, want.length, `${name} row ${i} tokens`);
        want.forEach((t, j) => assertSameRow(rows[i]!.values.subarray(j * rows[i]!.dim, (j + 1) * rows[i]!.dim), t.embeddings, `${name} row ${i} token ${j}`));
      }
      const empty = decodeMultivector((await unary(client, 'EmbedAllArrow', { target: target(name), arrow_ipc: Buffer.alloc(0) })).res.arrow_ipc);
      assert.deepEqual(empty, []);
    }
  });
});

/** An IPC stream of one record batch built column by column (for inputs encodeTexts cannot make). */
function ipcOf(columns: Record<string, Vector>): Uint8Array {
  return tableToIPC(new Table(columns), 'stream');
}

describe('bad requests: a clear status, never a crash', () => {
  const arrow = (instance: string, ipc: Uint8Array | Buffer, method = 'EmbedArrow', extra: Record<string, unknown> = {}) =>
    unary(client, method, { target: target(instance), arrow_ipc: Buffer.from(ipc), ...extra });

  test('Arrow input errors name the row or what is wrong', async () => {
    const good = encodeTexts(texts(30), { batchSize: 10 });
    const withNull = ipcOf({ text: vectorFromArray(['a', 'b', null, 'd'], new Utf8()) });
    const numbersOnly = ipcOf({ id: vectorFromArray([1, 2, 3], new Int32()) });
    const textNotString = ipcOf({ text: vectorFromArray([1, 2], new Int32()), other: vectorFromArray(['x', 'y'], new Utf8()) });
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ['null row', withNull, /row 2: column "text" is null/],
      ['no string column', numbersOnly, /no string column.*"id" \(Int32\)/],
      ['text column of another type', textNotString, /column "text" has type Int32/],
      ['text bytes', Buffer.from('this is not arrow at all, just some bytes'), /not an Arrow IPC stream|truncated/],
      ['garbage after a continuation marker', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0, ...Array.from({ length: 16 }, (_, i) => (i * 37 + 11) & 0xff)]), /not an Arrow IPC stream/],
      ['truncated', good.subarray(0, good.length - 100), /truncated/],
      ['cut at a message boundary (no end-of-stream marker)', good.subarray(0, good.length - 8), /truncated/],
      ['the IPC file format', pl.DataFrame({ text: ['a'] }).writeIPC(), /stream format/],
    ];
    for (const name of ['emb', 'emb-stream']) {
      for (const [what, ipc, re] of cases) {
        await assert.rejects(arrow(name, ipc), grpcError(status.INVALID_ARGUMENT, 'VALIDATION', re), `${name}: ${what}`);
        await assert.rejects(arrow(name, ipc, 'EmbedSparseArrow'), grpcError(status.INVALID_ARGUMENT, 'VALIDATION', re), `${name} sparse: ${what}`);
      }
    }
    const tooMany = encodeTexts(Array.from({ length: MAX_ROWS + 1 }, () => 'x'));
    await assert.rejects(arrow('emb', tooMany), grpcError(status.INVALID_ARGUMENT, 'VALIDATION', new RegExp(`more than ${MAX_ROWS} rows`)));
    // the multiplexer still answers
    assert.equal((await embedArrow('emb', good)).rows, 30);
  });

  test('a row the child refuses: INVALID_ARGUMENT naming the row across the whole input, on both paths; truncate makes it pass', async () => {
    const input = texts(600);
    const long = Array.from({ length: 400 }, (_, i) => `word${i}`).join(' ');
    input[517] = long;
    for (const name of DENSE) {
      await assert.rejects(embedArrow(name, encodeTexts(input, { batchSize: 100 })), grpcError(status.INVALID_ARGUMENT, 'VALIDATION', /^row 517: .*must have less than 128 tokens/), name);
      const cut = await embedArrow(name, encodeTexts(input, { batchSize: 100 }), { truncate: true });
      assert.equal(cut.rows, 600);
      const empty = [...input.slice(0, 40), '', ...input.slice(41, 60)];
      await assert.rejects(embedArrow(name, encodeTexts(empty)), grpcError(status.INVALID_ARGUMENT, 'VALIDATION', /^row 40: .*cannot be empty/), `${name} empty text`);
    }
    await assert.rejects(arrow('splade-stream', encodeTexts(['ok', long]), 'EmbedSparseArrow'), grpcError(status.INVALID_ARGUMENT, 'VALIDATION', /^row 1: /));
  });

  test('target and message errors, as on forwarded calls; the child\'s own status passes through', async () => {
    const ipc = Buffer.from(encodeTexts(['a']));
    await assert.rejects(unary(client, 'EmbedArrow', { arrow_ipc: ipc }), grpcError(status.INVALID_ARGUMENT, 'BAD_REQUEST', /'target' is required/));
    await assert.rejects(unary(client, 'EmbedArrow', { target: target('nope'), arrow_ipc: ipc }), grpcError(status.NOT_FOUND, 'INSTANCE_NOT_FOUND', /instance 'nope' not found/));
    await assert.rejects(unary(client, 'EmbedArrow', { target: { instance_index: 9 }, arrow_ipc: ipc }), grpcError(status.NOT_FOUND, 'INSTANCE_NOT_FOUND', /out of range/));
    // bytes that are not a protobuf message (field 2 claims more bytes than there are)
    await assert.rejects(rawUnary(Number(m.ready.grpc_port), `/${MUX_SERVICE}/EmbedArrow`, Buffer.from([0x12, 0x40, 0x01])), grpcError(status.INVALID_ARGUMENT, 'BAD_REQUEST', /malformed message/));
    // EmbedSparseArrow on a dense model: the child says why, on both paths
    for (const name of DENSE) await assert.rejects(arrow(name, ipc, 'EmbedSparseArrow'), grpcError(status.FAILED_PRECONDITION, 'WRONG_MODEL_TYPE'), name);
  });

  test('deadlines: a client deadline shorter than the work ends the call with DEADLINE_EXCEEDED; the next call succeeds', async () => {
    const ipc = encodeTexts(texts(10_000, 9));
    for (const name of DENSE) {
      await assert.rejects(embedArrow(name, ipc, {}, { deadline: Date.now() + 150 }), grpcError(status.DEADLINE_EXCEEDED, null), name);
      assert.equal((await embedArrow(name, encodeTexts(['after the deadline']))).rows, 1);
    }
  });

  test('metrics: teiplex_arrow_rows_total by instance and kind, and the calls by method and code', async () => {
    const text = (await m.api('GET', '/metrics')).body as string;
    for (const [instance, kind] of [['emb', 'dense'], ['emb-stream', 'dense'], ['splade', 'sparse'], ['emb', 'multivector']]) {
      const line = new RegExp(`^teiplex_arrow_rows_total\\{instance="${instance}",kind="${kind}"\\} (\\d+)`, 'm').exec(text);
      assert.ok(line !== null && Number(line[1]) > 0, `${instance} ${kind}`);
    }
    assert.match(text, /teiplex_requests_total\{instance="emb",model="[^"]+",method="EmbedArrow",code="OK"\} \d+/);
    assert.match(text, /teiplex_requests_total\{instance="",model="",method="EmbedArrow",code="INVALID_ARGUMENT"\} \d+/);
  });
});
