/**
 * On-demand models end to end (real manager, real router children, real gRPC and HTTP): a cold
 * model answers its first request after a cold start; 20 concurrent first requests start one
 * child; an idle replica is stopped after its timeout; a client that asks not to wait gets 503 at
 * once; a model with broken files ends `failed` and later requests get that error at once; a
 * budget that fits two of three models evicts the least recently used idle one and never one in
 * use, and a request for a third model while both are busy waits for memory (one load for all its
 * waiters) then succeeds, bounded by cold_start_timeout_secs (GPU budget with canned nvidia-smi
 * output: no GPU here); a reload adds and removes models
 * without touching the others, and the catalog survives a manager restart.
 */
import assert from 'node:assert/strict';
import { chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { client, type Answer } from '../helpers/data-plane.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { decodeDense, encodeTexts } from '../../src/arrow/embedding-batch.js';
import { bidi, errorCode, mux, unary, type AnyClient } from '../helpers/mux-client.js';
import { elapse, until } from '../helpers/wait.js';

const { status } = grpc;

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-on-demand-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A model entry of the catalog, TOML. */
function modelToml(name: string, modelId: string, extra = ''): string {
  return `[[models]]\nname = "${name}"\nmodel_id = ${JSON.stringify(modelId)}\n${extra}\n`;
}

/** Config headers by file: a rewrite (for a reload) keeps the same ports. */
const headers = new Map<string, string>();

async function writeManagerConfig(file: string, top: string, body: string): Promise<string> {
  if (!headers.has(file)) headers.set(file, `${loopbackConfig(path.dirname(file))}health_check_interval_secs = 5\nstartup_timeout_secs = 60\n`);
  await writeFile(file, `${headers.get(file)}${top}\n${body}`);
  return file;
}

/** A counter's value in the manager's /metrics (0 when the series does not exist yet). */
async function metric(m: ManagerProcess, name: string, labels: Record<string, string>): Promise<number> {
  const text = String((await m.api('GET', '/metrics')).body);
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const inside = line.slice(line.indexOf('{') + 1, line.indexOf('}'));
    if (want.every((w) => inside.split(',').includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

async function model(m: ManagerProcess, name: string): Promise<any> {
  const r = await m.api('GET', `/models/${encodeURIComponent(name)}`);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

async function waitModel(m: ManagerProcess, name: string, pred: (x: any) => boolean, timeoutMs = 30_000): Promise<any> {
  let last: unknown;
  return until(
    `model ${name} to match`,
    async () => {
      const x = await model(m, name);
      last = x;
      return pred(x) ? x : undefined;
    },
    { timeoutMs, everyMs: 50, context: () => `last: ${JSON.stringify(last)}` },
  );
}

const embedBody = (model: string, input: string | string[] = 'hello world') => ({ model, input });

/** An open EmbedStream through the multiplexer: one exchange done, the call kept in flight. */
async function openStream(c: AnyClient, modelId: string): Promise<{ close(): Promise<void> }> {
  const call = c.EmbedStream() as grpc.ClientDuplexStream<unknown, unknown>;
  const first = new Promise<void>((resolve, reject) => {
    call.once('data', () => resolve());
    call.once('error', reject);
  });
  call.on('error', () => undefined);
  call.write({ target: { model_id: modelId }, request: { inputs: 'keep me busy' } });
  await first;
  return {
    close: () =>
      new Promise<void>((resolve) => {
        call.on('status', () => resolve());
        call.end();
      }),
  };
}

describe('cold start, single flight, idle stop, no-wait, broken files', () => {
  let m: ManagerProcess;
  let http: ReturnType<typeof client>;
  let grpcClient: AnyClient;
  let modelA: string;
  let modelB: string;
  let modelC: string;
  let modelD: string;
  let modelP: string;
  let modelS: string;
  let broken: string;

  before(async () => {
    modelA = await testModel({ kind: 'embedding', seed: 101 });
    modelB = await testModel({ kind: 'embedding', seed: 102 });
    modelC = await testModel({ kind: 'embedding', seed: 103 });
    modelD = await testModel({ kind: 'embedding', seed: 104 });
    modelP = await testModel({ kind: 'embedding', seed: 105 });
    modelS = await testModel({ kind: 'embedding', seed: 106 });
    // A model directory whose ONNX file is garbage: the child cannot load it.
    broken = path.join(dir, 'broken-model');
    await cp(modelA, broken, { recursive: true });
    await writeFile(path.join(broken, 'onnx', 'model.onnx'), 'this is not an ONNX file');
    const sub = path.join(dir, 'cold');
    await mkdir(sub);
    const file = await writeManagerConfig(
      path.join(sub, 'manager.toml'),
      'idle_timeout_secs = 600\nscale_up_inflight = 1\nscale_up_after_secs = 0.3\n[restart]\ninitial_backoff_ms = 100\nmax_backoff_ms = 200',
      modelToml('tiny-a', modelA, 'aliases = ["alias-a"]') +
        modelToml('tiny-b', modelB, 'idle_timeout_secs = 1.5') +
        modelToml('tiny-c', modelC) +
        modelToml('tiny-d', modelD, 'max_replicas = 2\nidle_timeout_secs = 1') +
        modelToml('tiny-p', modelP, 'on_demand = false\nidle_timeout_secs = 0.5') +
        modelToml('tiny-s', modelS) +
        modelToml('broken', broken),
    );
    m = await startManager(file);
    http = client(m.apiPort);
    grpcClient = mux(Number(m.ready.grpc_port));
  });
  after(async () => {
    grpcClient?.close();
    await m?.stop();
  });

  test('the catalog lists every model; only the one kept loaded (on_demand = false) starts at boot', async () => {
    const list = (await m.api('GET', '/models')).body;
    assert.deepEqual(
      list.filter((x: any) => x.name !== 'tiny-p').map((x: any) => [x.name, x.state, x.replicas.length]),
      [
        ['broken', 'available', 0],
        ['tiny-a', 'available', 0],
        ['tiny-b', 'available', 0],
        ['tiny-c', 'available', 0],
        ['tiny-d', 'available', 0],
        ['tiny-s', 'available', 0],
      ],
    );
    const p = await waitModel(m, 'tiny-p', (y) => y.state === 'loaded');
    assert.deepEqual(p.replicas.map((r: any) => r.instance), ['tiny-p-1']);
    assert.deepEqual((await m.api('GET', '/instances')).body.map((i: any) => i.name), ['tiny-p-1']);
    // /v1/models lists catalog models (not loaded) for clients to choose from.
    const ids = (await http.get('/v1/models')).body.data.map((x: any) => x.id);
    for (const id of ['tiny-a', 'alias-a', modelA, 'tiny-b']) assert.ok(ids.includes(id), `${id} in ${ids}`);
  });

  test('first request to a cold model succeeds after a cold start (HTTP, by alias)', async () => {
    const r = await http.post('/v1/embeddings', embedBody('alias-a'));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.data[0].embedding.length, 32);
    assert.equal(r.headers.get('x-teiplex-instance'), 'tiny-a-1');
    // Measured just after the start, without holding up the first answer.
    const x = await waitModel(m, 'tiny-a', (y) => y.footprint_mb !== null, 5000);
    assert.equal(typeof x.replicas[0].pid, 'number');
    assert.equal(x.state, 'loaded');
    assert.deepEqual(
      x.replicas.map((r: any) => [r.instance, r.status, r.device]),
      [['tiny-a-1', 'running', 'cpu']],
    );
    // Measured after the start (resident memory: no GPU).
    assert.ok(x.footprint_mb > 10 && x.footprint_mb < 4096, `footprint ${x.footprint_mb}`);
    assert.equal(x.footprint_kind, 'rss');
    assert.equal(await metric(m, 'teiplex_model_loads_total', { model: 'tiny-a', result: 'ok' }), 1);
    assert.equal(await metric(m, 'teiplex_cold_start_seconds_count', { model: 'tiny-a' }), 1);
    assert.equal(await metric(m, 'teiplex_model_loaded', { model: 'tiny-a' }), 1);
    // The replica is an instance, managed through /models only.
    const stop = await m.api('POST', '/instances/tiny-a-1/stop');
    assert.equal(stop.status, 409);
    assert.equal(stop.body.code, 'INSTANCE_MANAGED');
    assert.equal((await m.api('GET', '/instances/tiny-a-1')).body.model, 'tiny-a');
    // A warm request is served by the running child: no cold start, no new child.
    const warm = await http.post('/v1/embeddings', embedBody('tiny-a'));
    assert.equal(warm.status, 200, JSON.stringify(warm.body));
    assert.equal(warm.headers.get('x-teiplex-instance'), 'tiny-a-1');
    assert.equal((await model(m, 'tiny-a')).replicas[0].pid, x.replicas[0].pid, 'the same child answered');
    assert.equal(await metric(m, 'teiplex_cold_start_seconds_count', { model: 'tiny-a' }), 1, 'no second cold start');
    assert.equal(await metric(m, 'teiplex_model_loads_total', { model: 'tiny-a', result: 'ok' }), 1, 'no second load');
  });

  test('20 concurrent first requests (HTTP and gRPC by model_id) start exactly one child', async () => {
    const calls: Array<Promise<unknown>> = [];
    for (let i = 0; i < 10; i++) {
      calls.push(http.post('/v1/embeddings', embedBody('tiny-b', `text ${i}`)).then((r) => assert.equal(r.status, 200, JSON.stringify(r.body))));
      calls.push(unary(grpcClient, 'Embed', { target: { model_id: modelB }, request: { inputs: `text ${i}` } }).then((r) => assert.equal(r.res.embeddings.length, 32)));
    }
    await Promise.all(calls);
    assert.equal(await metric(m, 'teiplex_model_loads_total', { model: 'tiny-b', result: 'ok' }), 1);
    const names = (await m.api('GET', '/instances')).body.map((i: any) => i.name).filter((n: string) => n.startsWith('tiny-b'));
    assert.deepEqual(names, ['tiny-b-1']);
  });

  test('an idle replica is stopped after idle_timeout_secs; the model stays in the catalog', async () => {
    const usedAt = Date.now();
    assert.equal((await http.post('/v1/embeddings', embedBody('tiny-b'))).status, 200);
    await elapse(700, "less than tiny-b's idle_timeout_secs (1.5 s) since its last use: it must stay loaded");
    assert.equal((await model(m, 'tiny-b')).state, 'loaded', 'not stopped before its timeout');
    const x = await waitModel(m, 'tiny-b', (y) => y.state === 'available' && y.replicas.length === 0, 10_000);
    const idleMs = Date.now() - usedAt;
    assert.ok(idleMs >= 1500, `stopped after ${idleMs} ms`);
    assert.deepEqual(x.replicas, []);
    const gone = await m.api('GET', '/instances/tiny-b-1');
    assert.equal(gone.status, 404);
    assert.equal(gone.body.code, 'INSTANCE_NOT_FOUND');
    assert.equal(await metric(m, 'teiplex_model_evictions_total', { model: 'tiny-b', reason: 'idle' }), 1);
    // tiny-a (idle timeout 600 s) is untouched.
    assert.equal((await model(m, 'tiny-a')).state, 'loaded');
  });

  test('a client that asks not to wait gets 503 with Retry-After at once; the start goes on', async () => {
    const r = await http.post('/v1/embeddings', embedBody('tiny-c'), { 'x-teiplex-no-wait': '1' });
    assert.equal(r.status, 503);
    assert.equal(r.body.error.code, 'model_loading');
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    // Answered before the start it set off was done: the model is still loading.
    assert.equal((await model(m, 'tiny-c')).state, 'loading', 'the answer did not wait for the start');
    await waitModel(m, 'tiny-c', (y) => y.state === 'loaded');
    assert.equal((await http.post('/v1/embeddings', embedBody('tiny-c'), { 'x-teiplex-no-wait': '1' })).status, 200);
  });

  test('gRPC no-wait metadata: UNAVAILABLE with a retry-after trailer', async () => {
    await m.api('POST', '/models/tiny-c/unload');
    await waitModel(m, 'tiny-c', (y) => y.state === 'available' && y.replicas.length === 0);
    const md = new grpc.Metadata();
    md.set('x-teiplex-no-wait', 'true');
    const err = await new Promise<grpc.ServiceError>((resolve) => grpcClient.Embed({ target: { model_id: modelC }, request: { inputs: 'x' } }, md, (e: grpc.ServiceError) => resolve(e)));
    assert.equal(err.code, status.UNAVAILABLE);
    assert.equal(errorCode(err), 'MODEL_LOADING');
    assert.match(err.details, /tiny-c.*being started/);
    assert.ok(Number(err.metadata.get('retry-after')[0]) >= 1);
  });

  test('a stream and an Arrow call to a cold model wait for its start, then are served in full', async () => {
    const s = await bidi(grpcClient, 'EmbedStream', ['one', 'two', 'three'].map((inputs) => ({ target: { model_id: modelS }, request: { inputs } })));
    assert.equal(s.error, undefined, s.error?.details);
    assert.equal(s.responses.length, 3);
    assert.deepEqual(s.headers.get('teiplex-instance'), ['tiny-s-1']);
    assert.equal((await m.api('POST', '/models/tiny-s/unload')).status, 200);
    await waitModel(m, 'tiny-s', (y) => y.state === 'available' && y.replicas.length === 0);
    const r = await unary(grpcClient, 'EmbedArrow', { target: { model_id: 'tiny-s' }, arrow_ipc: Buffer.from(encodeTexts(['a', 'b', 'c', 'd'])) });
    const dense = decodeDense(r.res.arrow_ipc);
    assert.deepEqual([dense.rows, dense.dim], [4, 32]);
    assert.equal(await metric(m, 'teiplex_model_loads_total', { model: 'tiny-s', result: 'ok' }), 2);
  });

  test('a model kept loaded is never idle-stopped and refuses unload', async () => {
    await elapse(1000, "twice tiny-p's idle_timeout_secs (0.5 s): a model kept loaded must outlive it");
    assert.equal((await model(m, 'tiny-p')).state, 'loaded');
    const r = await m.api('POST', '/models/tiny-p/unload');
    assert.equal(r.status, 409);
    assert.equal(r.body.code, 'MODEL_BUSY');
  });

  test('sustained queueing on every replica starts another, up to max_replicas; idle replicas then stop', async () => {
    assert.equal((await http.post('/v1/embeddings', embedBody('tiny-d'))).status, 200);
    const busy = await openStream(grpcClient, modelD); // 1 in flight = scale_up_inflight, held > scale_up_after_secs
    try {
      const two = await waitModel(m, 'tiny-d', (y) => y.replicas.filter((r: any) => r.status === 'running').length === 2, 15_000);
      assert.deepEqual(two.replicas.map((r: any) => r.instance).sort(), ['tiny-d-1', 'tiny-d-2']);
      // Balancing: with tiny-d-1 busy, a model_id call goes to the idle replica.
      const r = await unary(grpcClient, 'Embed', { target: { model_id: modelD }, request: { inputs: 'x' } });
      assert.equal(r.headers.get('teiplex-instance')[0], 'tiny-d-2');
      await elapse(600, 'twice scale_up_after_secs (0.3 s) with tiny-d-1 still busy: a third replica would be started now (and less than tiny-d\'s idle_timeout_secs, 1 s, after tiny-d-2 answered, so it is not yet idle-stopped)');
      assert.equal((await model(m, 'tiny-d')).replicas.length, 2, 'no third replica: max_replicas = 2');
    } finally {
      await busy.close();
    }
    await waitModel(m, 'tiny-d', (y) => y.replicas.length === 0, 10_000);
  });

  test('a model with broken files ends failed; the next request gets the error at once, nothing respawns', async () => {
    const first = await http.post('/v1/embeddings', embedBody('broken'));
    assert.equal(first.status, 503, JSON.stringify(first.body));
    assert.equal(first.body.error.code, 'model_load_failed');
    assert.match(first.body.error.message, /model 'broken' failed to load/);
    const x = await model(m, 'broken');
    assert.equal(x.state, 'failed');
    assert.match(x.failure.reason, /exit|ONNX|onnx|load/i);
    assert.deepEqual(x.replicas, []);
    // Refused without trying again: no second load is attempted.
    const again = await http.post('/v1/embeddings', embedBody('broken'));
    assert.equal(again.status, 503);
    assert.equal(again.body.error.code, 'model_load_failed');
    assert.equal((await model(m, 'broken')).state, 'failed');
    const viaGrpc = await new Promise<grpc.ServiceError>((resolve) =>
      grpcClient.Embed({ target: { model_id: broken }, request: { inputs: 'x' } }, (e: grpc.ServiceError) => resolve(e)),
    );
    assert.equal(viaGrpc.code, status.FAILED_PRECONDITION);
    assert.equal(errorCode(viaGrpc), 'MODEL_LOAD_FAILED');
    await elapse(500, 'room for a respawn that must not come');
    assert.equal(await metric(m, 'teiplex_model_loads_total', { model: 'broken', result: 'failed' }), 1);
    assert.equal((await m.api('GET', '/instances')).body.filter((i: any) => i.name.startsWith('broken')).length, 0);
    // An explicit load tries again (and fails again, clearly).
    const load = await m.api('POST', '/models/broken/load');
    assert.equal(load.status, 503);
    assert.equal(load.body.code, 'MODEL_LOAD_FAILED');
    assert.equal(await metric(m, 'teiplex_model_loads_total', { model: 'broken', result: 'failed' }), 2);
  });
});

describe('memory budget: least recently used idle model evicted, never one in use (canned nvidia-smi output, no GPU here)', () => {
  let m: ManagerProcess;
  let http: ReturnType<typeof client>;
  let grpcClient: AnyClient;
  const ids: Record<string, string> = {};
  let file: string;
  let smi: string;
  const config = (budgetMb: number, extra = '') =>
    writeManagerConfig(
      file,
      // min_resident_secs = 0: these tests evict a model right after its load.
      `nvidia_smi_path = ${JSON.stringify(smi)}\ngpu_memory_budget_mb = ${budgetMb}\nidle_timeout_secs = 600\nmin_resident_secs = 0\n${extra}`,
      // The GPU is fake: the routers run on the CPU.
      ['a', 'b', 'c'].map((k) => modelToml(`m-${k}`, ids[k], 'gpu_ids = [0]\nmemory_mb = 1000\nextra_args = ["--device", "cpu"]')).join(''),
    );

  before(async () => {
    const sub = path.join(dir, 'budget');
    await mkdir(sub);
    // One fake GPU of 10000 MiB; every router child uses 1000 MiB "on it".
    smi = path.join(sub, 'nvidia-smi');
    await writeFile(
      smi,
      `#!/bin/sh
case "$1" in
  --query-compute-apps*) for p in $(pgrep -f "teiplex.js router"); do echo "$p, 1000"; done ;;
  *) echo "0, GPU-aaaa, Fake GPU A, 10000, 10, 0" ;;
esac
`,
    );
    await chmod(smi, 0o755);
    for (const [k, seed] of [['a', 201], ['b', 202], ['c', 203]] as const) ids[k] = await testModel({ kind: 'embedding', seed });
    file = path.join(sub, 'manager.toml');
    await config(2500);
    m = await startManager(file);
    http = client(m.apiPort);
    grpcClient = mux(Number(m.ready.grpc_port));
  });
  after(async () => {
    grpcClient?.close();
    await m?.stop();
  });

  const states = async (): Promise<string[]> => (await m.api('GET', '/models')).body.map((x: any) => `${x.name}:${x.state}`);
  const ok = async (name: string): Promise<Answer> => {
    const r = await http.post('/v1/embeddings', embedBody(name));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r;
  };

  test('a third model evicts the cheaper to reload of two: the one with fewer recent requests', async () => {
    await ok('m-a');
    // m-b: six requests to m-a's one, so its reload cost (load time x recent rate) is higher
    // unless its load was six times as quick (eviction-policy.ts).
    for (let i = 0; i < 6; i++) await ok('m-b');
    assert.deepEqual(await states(), ['m-a:loaded', 'm-b:loaded', 'm-c:available']);
    const mem = (await m.api('GET', '/memory')).body.devices.find((d: any) => d.device === 'gpu0');
    assert.deepEqual([mem.budget_mb, mem.used_mb, mem.budget_source], [2500, 2000, 'gpu_memory_budget_mb']);
    assert.equal((await model(m, 'm-a')).footprint_kind, 'gpu');
    await ok('m-c');
    assert.deepEqual(await states(), ['m-a:available', 'm-b:loaded', 'm-c:loaded']);
    assert.equal(await metric(m, 'teiplex_model_evictions_total', { model: 'm-a', reason: 'budget' }), 1);
    const placed = (await m.api('GET', '/instances/m-c-1')).body;
    assert.deepEqual(placed.gpu_ids, [0]);
  });

  test('a replica in use is never evicted, even when it is the least recently used', async () => {
    const busy = await openStream(grpcClient, ids.b); // m-b in flight from now on
    try {
      await elapse(20, 'a later last-use time (ms resolution) for m-c than for m-b');
      await ok('m-c'); // m-c used after m-b began
      await ok('m-a'); // needs room: m-b is older but in use, so m-c goes
      assert.deepEqual(await states(), ['m-a:loaded', 'm-b:loaded', 'm-c:available']);
    } finally {
      await busy.close();
    }
  });

  test('memory wait then success (canned nvidia-smi, no GPU): a third model waits while both others are busy, then one load serves all its waiters once a call ends', async () => {
    const busyA = await openStream(grpcClient, ids.a);
    const busyB = await openStream(grpcClient, ids.b);
    const loads = async (result: string) => metric(m, 'teiplex_model_loads_total', { model: 'm-c', result });
    const [okBefore, refusedBefore] = [await loads('ok'), await loads('refused')];
    const evictedBefore = await metric(m, 'teiplex_model_evictions_total', { model: 'm-a', reason: 'budget' });
    let answers: Promise<Answer[]> | undefined;
    let aClosed = false;
    try {
      // Four HTTP requests and one gRPC call for m-c: no refusal, they wait for memory together.
      answers = Promise.all(Array.from({ length: 4 }, (_, i) => http.post('/v1/embeddings', embedBody('m-c', `waiter ${i}`))));
      const viaGrpc = new Promise<{ err: grpc.ServiceError | null }>((resolve) => grpcClient.Embed({ target: { model_id: ids.c }, request: { inputs: 'x' } }, (err: grpc.ServiceError | null) => resolve({ err })));
      await until('five requests waiting for memory for m-c', async () => (await metric(m, 'teiplex_catalog_memory_waiters', { model: 'm-c' })) === 5);
      assert.equal((await model(m, 'm-c')).waiting_requests, 5);
      assert.deepEqual(await states(), ['m-a:loaded', 'm-b:loaded', 'm-c:loading']);
      await busyA.close(); // m-a is idle now: the waiting start evicts it
      aClosed = true;
      const g = await viaGrpc;
      assert.equal(g.err, null, String(g.err));
      for (const a of await answers) assert.equal(a.status, 200, JSON.stringify(a.body));
      answers = undefined;
    } finally {
      if (!aClosed) await busyA.close();
      await answers?.catch(() => undefined);
    }
    try {
      assert.deepEqual(await states(), ['m-a:available', 'm-b:loaded', 'm-c:loaded']);
      assert.equal((await loads('ok')) - okBefore, 1, 'one load served all five waiters');
      assert.equal((await loads('refused')) - refusedBefore, 0, 'nothing was refused');
      assert.equal((await metric(m, 'teiplex_model_evictions_total', { model: 'm-a', reason: 'budget' })) - evictedBefore, 1);
      assert.equal(await metric(m, 'teiplex_catalog_memory_waiters', { model: 'm-c' }), 0);
      assert.ok((await metric(m, 'teiplex_model_requests_total', { model: 'm-c' })) >= 5);
      assert.ok((await metric(m, 'teiplex_model_thrash_ratio', { model: 'm-c' })) > 0);
    } finally {
      await busyB.close();
    }
  });

  test('waiting for memory is bounded by cold_start_timeout_secs: then 503 / RESOURCE_EXHAUSTED memory_budget_exceeded naming the limit and the budget', async () => {
    await config(2500, 'cold_start_timeout_secs = 1');
    assert.equal((await m.api('POST', '/config/reload')).status, 200);
    // m-b and m-c are loaded now; both busy: m-a cannot get room within 1 s.
    const busyB = await openStream(grpcClient, ids.b);
    const busyC = await openStream(grpcClient, ids.c);
    try {
      const r = await http.post('/v1/embeddings', embedBody('m-a'));
      assert.equal(r.status, 503, JSON.stringify(r.body));
      assert.equal(r.body.error.code, 'memory_budget_exceeded');
      assert.match(r.body.error.message, /waited cold_start_timeout_secs \(1 s\) for memory.*gpu0.*2500 MiB \(gpu_memory_budget_mb\).*in use/);
      assert.ok(r.headers.get('retry-after'));
      const e = await new Promise<grpc.ServiceError>((resolve) => grpcClient.Embed({ target: { model_id: ids.a }, request: { inputs: 'x' } }, (err: grpc.ServiceError) => resolve(err)));
      assert.equal(e.code, status.RESOURCE_EXHAUSTED);
      assert.equal(errorCode(e), 'MEMORY_BUDGET_EXCEEDED');
      assert.match(e.details, /cold_start_timeout_secs/);
      // No request waits any more: the start gives up (nothing evicted for nobody).
      await until('m-a no longer waiting for memory', async () => (await model(m, 'm-a')).state === 'available');
      assert.deepEqual(await states(), ['m-a:available', 'm-b:loaded', 'm-c:loaded']);
    } finally {
      await busyB.close();
      await busyC.close();
    }
  });

  test('a budget lowered by a reload evicts one idle replica (the lower reload cost: eviction-policy.ts)', async () => {
    const budgetEvictions = async () =>
      (await metric(m, 'teiplex_model_evictions_total', { model: 'm-b', reason: 'budget' })) + (await metric(m, 'teiplex_model_evictions_total', { model: 'm-c', reason: 'budget' }));
    const before = await budgetEvictions();
    await config(1500);
    const r = await m.api('POST', '/config/reload');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.models.unchanged, ['m-a', 'm-b', 'm-c']);
    const mem = (await m.api('GET', '/memory')).body.devices.find((d: any) => d.device === 'gpu0'); // samples, and enforces
    assert.equal(mem.budget_mb, 1500);
    const now = await states();
    assert.equal(now[0], 'm-a:available');
    assert.equal(now.filter((x) => x.endsWith(':loaded')).length, 1, now.join(' '));
    assert.equal((await budgetEvictions()) - before, 1);
  });

  test('cold start limits (changed by a reload): a full wait queue and a start past the timeout get 503 with Retry-After', async () => {
    await config(1500, 'cold_start_queue_size = 3\ncold_start_timeout_secs = 0.3');
    const r = await m.api('POST', '/config/reload');
    assert.deepEqual([r.status, r.body.restart_required], [200, []]);
    const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => http.post('/v1/embeddings', embedBody('m-a', `t${i}`))));
    const codes = answers.map((a) => `${a.status} ${a.body.error?.code}`).sort();
    assert.deepEqual(codes, ['503 cold_start_queue_full', '503 cold_start_queue_full', '503 cold_start_queue_full', '503 model_loading', '503 model_loading', '503 model_loading']);
    for (const a of answers) assert.ok(Number(a.headers.get('retry-after')) >= 1);
    assert.match(answers.find((a) => a.body.error.code === 'model_loading')!.body.error.message, /cold_start_timeout_secs \(0\.3 s\); it goes on starting/);
    // The start went on: m-a serves (m-b, idle, made room).
    await waitModel(m, 'm-a', (y) => y.state === 'loaded');
    assert.deepEqual(await states(), ['m-a:loaded', 'm-b:available', 'm-c:available']);
  });
  test('a pinned model is never evicted: the other two take turns beside it (canned nvidia-smi, no GPU)', async () => {
    const spec = (extra: string) => `gpu_ids = [0]\nmemory_mb = 1000\nextra_args = ["--device", "cpu"]\n${extra}`;
    await writeManagerConfig(
      file,
      `nvidia_smi_path = ${JSON.stringify(smi)}\ngpu_memory_budget_mb = 2500\nidle_timeout_secs = 600\nmin_resident_secs = 0\n`,
      modelToml('m-a', ids.a, spec('pinned = true')) + modelToml('m-b', ids.b, spec('')) + modelToml('m-c', ids.c, spec('')),
    );
    const r = await m.api('POST', '/config/reload');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.models.changed, ['m-a']);
    const evictions = async () => metric(m, 'teiplex_model_evictions_total', { model: 'm-a', reason: 'budget' });
    await ok('m-a'); // loaded now, and from here on the least recently used
    const before = await evictions();
    for (const name of ['m-b', 'm-c', 'm-b', 'm-c']) {
      await ok(name);
      assert.equal((await states())[0], 'm-a:loaded', `after ${name}`);
    }
    assert.equal((await evictions()) - before, 0, 'the pinned model was never evicted');
    assert.ok((await metric(m, 'teiplex_model_evictions_total', { model: 'm-b', reason: 'budget' })) >= 1, 'the others took turns');
  });
});

describe('config reload and restart', () => {
  let m: ManagerProcess;
  let file: string;
  let x: string;
  let y: string;
  let z: string;
  let s: string;
  const top = 'idle_timeout_secs = 600';

  before(async () => {
    const sub = path.join(dir, 'reload');
    await mkdir(sub);
    x = await testModel({ kind: 'embedding', seed: 301 });
    y = await testModel({ kind: 'embedding', seed: 302 });
    z = await testModel({ kind: 'embedding', seed: 303 });
    s = await testModel({ kind: 'embedding', seed: 304 });
    file = path.join(sub, 'manager.toml');
    await writeManagerConfig(file, top, `[[instances]]\nname = "static"\nmodel_id = ${JSON.stringify(s)}\n` + modelToml('x', x) + modelToml('y', y));
    m = await startManager(file);
    await m.waitFor('static', (i) => i.status === 'running');
  });
  after(async () => {
    await m?.stop();
  });

  test('POST /config/reload adds and removes models without touching the others', async () => {
    assert.equal((await client(m.apiPort).post('/v1/embeddings', embedBody('x'))).status, 200);
    const before = { x: (await model(m, 'x')).replicas[0].pid, static: (await m.api('GET', '/instances/static')).body.pid };
    await writeManagerConfig(file, top, `[[instances]]\nname = "static"\nmodel_id = ${JSON.stringify(s)}\n` + modelToml('x', x) + modelToml('z', z, 'idle_timeout_secs = 300'));
    const r = await m.api('POST', '/config/reload');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.models, { added: ['z'], removed: ['y'], changed: [], unchanged: ['x'], skipped: [] });
    assert.deepEqual(r.body.instances.unchanged, ['static']);
    assert.deepEqual(r.body.restart_required, []);
    assert.deepEqual((await m.api('GET', '/models')).body.map((v: any) => v.name), ['x', 'z']);
    const xs = await model(m, 'x');
    assert.equal(xs.state, 'loaded');
    assert.equal(xs.replicas[0].pid, before.x, 'x kept its child');
    assert.equal((await m.api('GET', '/instances/static')).body.pid, before.static, 'the static instance kept its child');
    const removed = await m.api('GET', '/models/y');
    assert.equal(removed.status, 404);
    assert.equal(removed.body.code, 'MODEL_NOT_FOUND');
  });

  test('an invalid config is refused whole (422), and SIGHUP reloads too', async () => {
    await writeFile(file, `${await readFile(file, 'utf8')}\n[[models]]\nmodel_id = ""\n`);
    const bad = await m.api('POST', '/config/reload');
    assert.equal(bad.status, 422);
    assert.equal(bad.body.code, 'CONFIG_INVALID');
    assert.match(bad.body.error, /models/);
    assert.deepEqual((await m.api('GET', '/models')).body.map((v: any) => v.name), ['x', 'z']);
    await writeManagerConfig(file, top, `[[instances]]\nname = "static"\nmodel_id = ${JSON.stringify(s)}\n` + modelToml('x', x) + modelToml('y', y));
    m.proc.kill('SIGHUP');
    await until('the SIGHUP reload applied', async () => (await m.api('GET', '/models')).body.some((v: any) => v.name === 'y'), { timeoutMs: 10_000, everyMs: 50 });
    assert.deepEqual((await m.api('GET', '/models')).body.map((v: any) => v.name), ['x', 'y']);
    assert.equal((await model(m, 'x')).state, 'loaded');
  });

  test('models added through the API and measured footprints survive a manager restart', async () => {
    const added = await m.api('POST', '/models', { model_id: z, aliases: ['zed'] });
    assert.equal(added.status, 201, JSON.stringify(added.body));
    const name = added.body.name;
    assert.equal(name, z.toLowerCase().replace(/[^a-z0-9._-]+/g, '-').replace(/^[^a-z0-9]+/, '').slice(0, 56).replace(/[-.]+$/, ''));
    const dup = await m.api('POST', '/models', { model_id: z });
    assert.equal(dup.status, 409);
    assert.equal(dup.body.code, 'MODEL_EXISTS');
    const footprint = (await model(m, 'x')).footprint_mb;
    assert.ok(footprint > 0);
    assert.equal(await m.stop('SIGTERM'), 0);
    m = await startManager(file);
    const list = (await m.api('GET', '/models')).body;
    assert.deepEqual(
      list.map((v: any) => [v.name, v.source, v.state]),
      [
        [name, 'api', 'available'],
        ['x', 'config', 'available'],
        ['y', 'config', 'available'],
      ],
    );
    assert.equal(list.find((v: any) => v.name === 'x').footprint_mb, footprint);
    // By its alias, on the restarted manager: a cold start.
    assert.equal((await client(m.apiPort).post('/v1/embeddings', embedBody('zed'))).status, 200);
    const del = await m.api('DELETE', `/models/${encodeURIComponent(z)}`);
    assert.equal(del.status, 200, JSON.stringify(del.body));
    assert.equal((await m.api('GET', '/instances')).body.filter((i: any) => i.model !== null).length, 0);
  });
});
