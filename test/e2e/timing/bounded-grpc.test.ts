/**
 * Bounded work per request on the gRPC multiplexer and its Arrow RPCs: one caller cannot stall
 * the others. Against a real `teiplex serve` with a real `teiplex router` child:
 *
 * - an LZ4 decompression bomb (a well-formed EmbedArrow of ~4 MB inflating to 900 MiB) is refused
 *   with INVALID_ARGUMENT (VALIDATION) naming arrow_max_decompressed_mb before it is inflated: the
 *   manager's RSS stays put (the old code inflated it on the event loop: RSS grew by gigabytes);
 * - large requests under the limits are decoded off the event loop: /health, polled throughout,
 *   answers again and again while they are decoded;
 * - `noop` is refused unless arrow_allow_noop is set;
 * - grpc_max_concurrent_streams caps the calls one connection has open: a well-behaved client's
 *   next call waits, a client that opens more streams at once gets REFUSED_STREAM, and another
 *   connection is served meanwhile;
 * - a message larger than the child accepts (its --payload-limit) is refused by the manager,
 *   naming the limit, instead of being sent (forwarded calls, and Arrow rows);
 * - an answer that cannot fit grpc_max_message_size_mb is refused before the child is called;
 * - the decode budget (arrow_decode_budget_mb): a request larger than all of it is refused naming
 *   it, concurrent requests over it wait their turn and all succeed;
 * - teiplex_event_loop_delay_seconds is exported and follows a blocked loop.
 * What is asserted is what happened (codes, the order of events, how often /health answered while
 * a call was handled), not how fast: waits are bounded only to guard against a hang.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http2 from 'node:http2';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Field, makeData, RecordBatch, Schema, Struct, Utf8 } from 'apache-arrow';
import { decodeDense, encodeTexts } from '../../../src/arrow/embedding-batch.js';
import { writeStream } from '../../../src/arrow/ipc-stream.js';
import { CallScope } from '../../../src/child/call-scope.js';
import { Budget } from '../../../src/child/input-budget.js';
import { ManagerMetrics } from '../../../src/metrics/manager-metrics.js';
import { childMessageLimit, ROUTER_PAYLOAD_LIMIT, TEI_GRPC_MESSAGE_LIMIT } from '../../../src/child/child-message-limit.js';
import { muxClient, MUX_SERVICE } from '../../../src/mux/protos.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../../helpers/manager-process.js';
import { testModel } from '../../helpers/models.js';
import { grpcError, mux, unary, type AnyClient } from '../../helpers/mux-client.js';
import { elapse, until } from '../../helpers/wait.js';

const { status } = grpc;
const MAX_STREAMS = 4;

let dir: string;
/** Default limits, except grpc_max_concurrent_streams. */
let a: ManagerProcess;
/** A small decode budget, noop allowed. */
let b: ManagerProcess;
let clientA: AnyClient;
let clientB: AnyClient;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-bounded-grpc-'));
  const model = await testModel({ kind: 'embedding' });
  const instance = `[[instances]]\nname = "emb"\nmodel_id = ${JSON.stringify(model)}\n`;
  await Promise.all([mkdir(path.join(dir, 'a')), mkdir(path.join(dir, 'b'))]);
  const fileA = path.join(dir, 'a.toml');
  const fileB = path.join(dir, 'b.toml');
  await writeFile(fileA, `${loopbackConfig(path.join(dir, 'a'))}startup_timeout_secs = 120\ngrpc_max_concurrent_streams = ${MAX_STREAMS}\n${instance}`);
  await writeFile(fileB, `${loopbackConfig(path.join(dir, 'b'))}startup_timeout_secs = 120\narrow_decode_budget_mb = 1\narrow_allow_noop = true\ngrpc_max_message_size_mb = 1\n${instance}`);
  // One after the other, each kept as soon as it runs: after() stops whichever started.
  a = await startManager(fileA, {}, 120_000);
  b = await startManager(fileB, {}, 120_000);
  await Promise.all([a.waitFor('emb', (i) => i.status === 'running', 120_000), b.waitFor('emb', (i) => i.status === 'running', 120_000)]);
  clientA = mux(Number(a.ready.grpc_port));
  clientB = mux(Number(b.ready.grpc_port));
});

after(async () => {
  clientA?.close();
  clientB?.close();
  for (const m of [a, b]) if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  await rm(dir, { recursive: true, force: true });
});

const target = { instance_name: 'emb' };

/** A well-formed Arrow stream: `rows` texts of 'x' adding up to `bytes`, LZ4_FRAME bodies (about 250:1). */
function lz4Bomb(bytes: number, rows: number): Uint8Array {
  const data = Buffer.alloc(bytes, 'x');
  const offsets = new Int32Array(rows + 1);
  for (let i = 0; i <= rows; i++) offsets[i] = Math.floor((bytes / rows) * i);
  const schema = new Schema([new Field('text', new Utf8(), false)]);
  const column = makeData({ type: new Utf8(), length: rows, nullCount: 0, valueOffsets: offsets, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
  return writeStream(schema, [new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: rows, nullCount: 0, children: [column] }))], { compress: true });
}

/** GET /health once. */
function healthOnce(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/health', agent: false }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`/health answered ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Poll /health back to back until `done` settles: how many times it answered before `done` settled. */
async function healthAnswersWhile(port: number, done: Promise<unknown>): Promise<number> {
  let over = false;
  void done.finally(() => (over = true)).catch(() => undefined);
  let answered = 0;
  while (!over) {
    await healthOnce(port);
    if (!over) answered++;
    await elapse(20, 'the poll rate: /health about every 20 ms, not flooded');
  }
  return answered;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) / 1024;
}

describe('Arrow requests: bounded decoding', () => {
  test('an LZ4 bomb (4 MB on the wire, 900 MiB decoded) is refused naming arrow_max_decompressed_mb before it is inflated: RSS stays put', async () => {
    const bomb = lz4Bomb(900 << 20, 900);
    assert.ok(bomb.byteLength < 6 << 20, `the bomb is ${bomb.byteLength} bytes on the wire`);
    const rssBefore = rssMb(a.proc.pid!);
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMb(a.proc.pid!))), 25);
    const call = unary(clientA, 'EmbedArrow', { target, arrow_ipc: Buffer.from(bomb) }, { deadline: Date.now() + 120_000 });
    // A failure must not leave the sampler running: the test file's process would never exit.
    await call.catch(() => undefined).finally(() => clearInterval(sampler));
    await assert.rejects(call, grpcError(status.INVALID_ARGUMENT, 'VALIDATION', /decompresses to more than 67108864 bytes \(arrow_max_decompressed_mb\)/));
    assert.ok(peak - rssBefore < 300, `manager RSS went from ${rssBefore.toFixed(0)} to ${peak.toFixed(0)} MiB`);
    await healthOnce(a.apiPort);
    // Still serving.
    assert.equal(decodeDense((await unary(clientA, 'EmbedArrow', { target, arrow_ipc: Buffer.from(encodeTexts(['fine'])) })).res.arrow_ipc).rows, 1);
  });

  test('large requests under the limits (4 at once, 56 MiB of text each) are decoded off the event loop: /health answers meanwhile', async () => {
    const row = '日本語のテキスト '.repeat(40);
    const ipc = Buffer.from(encodeTexts(Array.from({ length: 58_000 }, (_, i) => `${i} ${row}`)));
    // Without truncate the child refuses the first chunks: the cost is the manager's decoding.
    const calls = Array.from({ length: 4 }, () => unary(clientA, 'EmbedArrow', { target, arrow_ipc: ipc }, { deadline: Date.now() + 120_000 }));
    const answers = await healthAnswersWhile(a.apiPort, Promise.allSettled(calls));
    assert.ok(answers >= 3, `/health answered ${answers} times while the requests were decoded`);
    for (const call of calls) await assert.rejects(call, grpcError(status.INVALID_ARGUMENT, 'VALIDATION', /^row \d+: .*tokens/));
  });

  test('noop is refused unless arrow_allow_noop is set', async () => {
    const ipc = Buffer.from(encodeTexts(['a', 'b']));
    await assert.rejects(unary(clientA, 'EmbedArrow', { target, arrow_ipc: ipc, noop: true }), grpcError(status.FAILED_PRECONDITION, 'NOOP_DISABLED', /arrow_allow_noop/));
    await assert.rejects(unary(clientA, 'EmbedSparseArrow', { target, arrow_ipc: ipc, noop: true }), grpcError(status.FAILED_PRECONDITION, 'NOOP_DISABLED', /arrow_allow_noop/));
    const out = decodeDense((await unary(clientB, 'EmbedArrow', { target, arrow_ipc: ipc, noop: true })).res.arrow_ipc);
    assert.equal(out.rows, 2);
    assert.ok(out.values.every((v) => v === 0));
  });

  test('decode budget: a request larger than all of arrow_decode_budget_mb is refused naming it; requests over it together wait their turn', async () => {
    const big = Buffer.from(encodeTexts(Array.from({ length: 64 }, (_, i) => `${i} ${'y'.repeat(32 << 10)}`)));
    await assert.rejects(unary(clientB, 'EmbedArrow', { target, arrow_ipc: big, noop: true }), grpcError(status.RESOURCE_EXHAUSTED, 'PAYLOAD_TOO_LARGE', /arrow_decode_budget_mb/));
    // Each about 600 KiB decoded: two never fit in 1 MiB at once, so they are served one by one.
    const text = (i: number) => Array.from({ length: 6 }, (_, j) => `${i}.${j} ${'z'.repeat(100 << 10)}`);
    const calls = Array.from({ length: 6 }, (_, i) => unary(clientB, 'EmbedArrow', { target, arrow_ipc: Buffer.from(encodeTexts(text(i), { compress: false })), noop: true }));
    for (const c of await Promise.all(calls)) assert.equal(decodeDense(c.res.arrow_ipc).rows, 6);
  });

  test('an answer that cannot fit grpc_max_message_size_mb is refused before calling the model, for noop too', async () => {
    const one = decodeDense((await unary(clientB, 'EmbedArrow', { target, arrow_ipc: Buffer.from(encodeTexts(['learn the dimension'])) })).res.arrow_ipc);
    const rows = Math.ceil((1 << 20) / (one.dim * 4)) + 1;
    const ipc = Buffer.from(encodeTexts(Array.from({ length: rows }, (_, i) => `row ${i}`)));
    for (const noop of [false, true]) {
      await assert.rejects(
        unary(clientB, 'EmbedArrow', { target, arrow_ipc: ipc, noop }),
        grpcError(status.RESOURCE_EXHAUSTED, 'PAYLOAD_TOO_LARGE', new RegExp(`answer to ${rows} rows takes at least ${rows * one.dim * 4} bytes .*refused before calling the model`)),
      );
    }
  });

  test('Budget: first come first served; a waiter leaves the line when its call aborts', async () => {
    const budget = new Budget(10);
    const call = () => new CallScope(Infinity, () => new Error('deadline'));
    await budget.acquire(6, call());
    const order: string[] = [];
    const aborted = call();
    const big = budget.acquire(8, call()).then(() => order.push('big'));
    const gone = budget.acquire(4, aborted).catch((e: Error) => order.push(`gone: ${e.message}`));
    const small = budget.acquire(2, call()).then(() => order.push('small'));
    // Let the event loop turn: a waiter that could pass would have by then.
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, [], 'nothing passes the first waiter, though "small" would fit');
    aborted.abort(new Error('cancelled'));
    await gone;
    budget.release(6);
    await Promise.all([big, small]);
    assert.deepEqual(order, ['gone: cancelled', 'big', 'small']);
    assert.equal(budget.inUse, 10);
    await assert.rejects(budget.acquire(11, call()), RangeError);
  });
});

describe('message size: the child\'s own limit is known to the manager', () => {
  test('a forwarded request over the child\'s --payload-limit is refused by the manager, naming it', async () => {
    const inputs = 'alpha beta '.repeat(300_000); // 3.3 MB: under grpc_max_message_size_mb, over the router's 2,000,000
    await assert.rejects(
      unary(clientA, 'Embed', { target, request: { inputs, truncate: true } }),
      grpcError(status.RESOURCE_EXHAUSTED, 'PAYLOAD_TOO_LARGE', /more than the instance's child accepts \(2000000 bytes, the router's default --payload-limit\); the multiplexer did not send it/),
    );
    assert.ok((await unary(clientA, 'Embed', { target, request: { inputs: 'small' } })).res.embeddings.length > 0);
  });

  test('an Arrow row over it is refused naming the row, without being sent', async () => {
    const ipc = Buffer.from(encodeTexts(['short', 'alpha beta '.repeat(250_000), 'short']));
    await assert.rejects(unary(clientA, 'EmbedArrow', { target, arrow_ipc: ipc, truncate: true }), grpcError(status.RESOURCE_EXHAUSTED, 'PAYLOAD_TOO_LARGE', /^row 1: its text is 2750000 bytes, more than the instance accepts in one message \(2000000 bytes\)/));
  });
});

describe('childMessageLimit: what the manager knows of a child\'s limit', () => {
  test('--payload-limit in extra_args, else PAYLOAD_LIMIT in env, else the runtime\'s default; unknown for a command', () => {
    assert.equal(childMessageLimit({})?.bytes, ROUTER_PAYLOAD_LIMIT);
    assert.equal(childMessageLimit({ extra_args: ['--payload-limit', '5000000'] })?.bytes, 5_000_000);
    assert.equal(childMessageLimit({ extra_args: ['--payload-limit=123'], env: { PAYLOAD_LIMIT: '7' } })?.bytes, 123);
    assert.equal(childMessageLimit({ env: { PAYLOAD_LIMIT: '7' } })?.bytes, 7);
    assert.equal(childMessageLimit({ extra_args: ['--payload-limit', 'lots'] })?.bytes, ROUTER_PAYLOAD_LIMIT, 'not a number: the router would refuse to start; the default stands');
    assert.equal(childMessageLimit({ runtime: 'tei', extra_args: ['--payload-limit', '9'] })?.bytes, TEI_GRPC_MESSAGE_LIMIT, "TEI's --payload-limit is for HTTP");
    assert.equal(childMessageLimit({ runtime: 'command' }), undefined);
  });
});

describe('concurrent streams per connection (grpc_max_concurrent_streams)', () => {
  test('a connection holding the limit waits for its next call; another connection is served', async () => {
    // Each held stream has had an answer: the manager holds MAX_STREAMS streams of this connection open.
    let answered = 0;
    const held = Array.from({ length: MAX_STREAMS }, () => {
      const s = clientA.EmbedStream() as grpc.ClientDuplexStream<unknown, unknown>;
      s.on('error', () => undefined);
      s.once('data', () => answered++);
      s.write({ target, request: { inputs: 'hold' } });
      return s;
    });
    try {
      await until('an answer on every held stream', () => answered === MAX_STREAMS, { timeoutMs: 30_000 });
      // The next call of the connection waits until its deadline (the client's own: no code from the server).
      await assert.rejects(unary(clientA, 'Embed', { target, request: { inputs: 'waits' } }, { deadline: Date.now() + 1500 }), grpcError(status.DEADLINE_EXCEEDED, null));
      // A connection of its own (grpc-js shares one between clients of the same address otherwise).
      const Client = muxClient();
      const other = new Client(`127.0.0.1:${Number(a.ready.grpc_port)}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as AnyClient;
      try {
        assert.ok((await unary(other, 'Embed', { target, request: { inputs: 'served' } }, { deadline: Date.now() + 10_000 })).res.embeddings.length > 0);
      } finally {
        other.close();
      }
    } finally {
      for (const s of held) s.end();
    }
    assert.ok((await unary(clientA, 'Embed', { target, request: { inputs: 'served after' } }, { deadline: Date.now() + 10_000 })).res.embeddings.length > 0);
  });

  test('streams opened past the limit at once are refused (REFUSED_STREAM)', async () => {
    const session = http2.connect(`http://127.0.0.1:${Number(a.ready.grpc_port)}`);
    session.on('error', () => undefined);
    const streams = Array.from({ length: 3 * MAX_STREAMS }, () => {
      const s = session.request({ ':method': 'POST', ':path': `/${MUX_SERVICE}/EmbedStream`, 'content-type': 'application/grpc', te: 'trailers' });
      s.on('error', () => undefined);
      return s;
    });
    try {
      const refusedNow = () => streams.filter((s) => s.closed && s.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM).length;
      await until('the streams past the limit refused', () => refusedNow() >= 2 * MAX_STREAMS, { timeoutMs: 30_000, context: () => `${refusedNow()} of ${streams.length} refused` });
      const refused = refusedNow();
      const open = streams.filter((s) => !s.closed).length;
      assert.ok(open <= MAX_STREAMS, `${open} streams open on one connection`);
      assert.ok(refused >= 2 * MAX_STREAMS, `${refused} of ${streams.length} refused`);
    } finally {
      session.destroy();
    }
  });
});

describe('teiplex_event_loop_delay_seconds', () => {
  test('exported by the manager with p50, p90, p99 and max', async () => {
    const text = (await a.api('GET', '/metrics')).body as string;
    for (const q of ['0.5', '0.9', '0.99', '1']) assert.match(text, new RegExp(`^teiplex_event_loop_delay_seconds\\{quantile="${q}"\\} [0-9.e-]+$`, 'm'), q);
  });

  test('follows a blocked loop: the max shows a 300 ms stall, the next scrape forgets it', async () => {
    const metrics = new ManagerMetrics(() => undefined);
    const max = async (): Promise<number> => (await metrics.registry.getSingleMetric('teiplex_event_loop_delay_seconds')!.get()).values.find((v) => v.labels.quantile === '1')!.value;
    await max();
    await elapse(50, 'the delay monitor samples an unblocked loop');
    const t = Date.now();
    while (Date.now() - t < 300); // block the loop
    await elapse(50, 'the delay monitor samples after the stall');
    const stalled = await max();
    assert.ok(stalled >= 0.25, `max ${stalled} s after a 300 ms stall`);
    await elapse(200, 'a stretch without a stall for the next scrape');
    const calm = await max();
    assert.ok(calm < stalled, `max ${calm} s after a scrape and no stall: the stall of the previous scrape was not forgotten`);
  });
});
