/**
 * Failover between replicas (src/routing/failover.ts; docs/multiplexer.md and docs/data-plane.md,
 * "Failover"): a real `teiplex serve` with two replicas of one model, each the FAKE tei.v1 child
 * (test/helpers/fake-tei-child.ts). A call with a `slow:<ms>` input is in flight on one of them
 * for a known time; that child is SIGKILLed (its pid from /instances) while the call waits, and
 * the call must be answered by the other replica, naming both (`teiplex-instance`,
 * `teiplex-retried-from`). Also: an instance target stays put without the opt-in, moves with
 * `x-teiplex-failover: same-model`; a bidi stream fails naming the first unanswered message; and
 * a second manager with a zero retry budget makes no retry and counts it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { decodeDense, encodeTexts } from '../../src/arrow/embedding-batch.js';
import { fakeCalls, fakeChildScript, fakeInstanceToml } from '../helpers/fake-tei-child.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { errorCode, mux, unary, type AnyClient } from '../helpers/mux-client.js';
import { until } from '../helpers/wait.js';

const MODEL = 'fake/failover';
const REPLICAS = ['rep-a', 'rep-b'];
/** How long a `slow:` call stays in flight: long enough to find it and kill its child. */
const SLOW = 'slow:4000';

let dir: string;
let script: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-failover-'));
  script = await fakeChildScript(dir);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A manager with the two replicas (and `extra` TOML at the top level, `instanceExtra` in each replica), both running. */
async function managerWith(name: string, extra = '', instanceExtra = ''): Promise<{ m: ManagerProcess; c: AnyClient }> {
  const sub = path.join(dir, name);
  const file = path.join(dir, `${name}.toml`);
  await writeFile(
    file,
    `${loopbackConfig(sub)}startup_timeout_secs = 120\nmax_failures_before_restart = 1000\n${extra}\n[restart]\ninitial_backoff_ms = 100\nmax_restarts = 1000\n\n` +
      REPLICAS.map((r) => fakeInstanceToml(r, script, MODEL, instanceExtra)).join(''),
  );
  const m = await startManager(file);
  await bothRunning(m);
  return { m, c: mux(Number(m.ready.grpc_port)) };
}

async function bothRunning(m: ManagerProcess): Promise<void> {
  for (const r of REPLICAS) await m.waitFor(r, (i) => i.status === 'running', 120_000);
}

/** The replica with a call in flight (ListInstances' inflight_requests), once there is one. */
function busyReplica(c: AnyClient): Promise<string> {
  return until(
    'a replica with a call in flight',
    async () => {
      const { res } = await unary<{ instances: Array<{ name: string; inflight_requests: number }> }>(c, 'ListInstances', {});
      return res.instances.find((i) => i.inflight_requests > 0)?.name;
    },
    { timeoutMs: 30_000 },
  );
}

/** SIGKILL the child of the replica the call in flight went to; its name. */
async function killBusy(m: ManagerProcess, c: AnyClient): Promise<string> {
  const victim = await busyReplica(c);
  const { body } = await m.api('GET', `/instances/${victim}`);
  assert.equal(typeof body.pid, 'number', `${victim} has a child`);
  process.kill(body.pid, 'SIGKILL');
  return victim;
}

/** What the fake child of `instance` under the manager `sub` has logged so far. */
function childLog(sub: string, instance: string): string {
  try {
    return readFileSync(path.join(dir, sub, 'logs', `${instance}.log`), 'utf8');
  } catch {
    return '';
  }
}

const other = (name: string): string => REPLICAS.find((r) => r !== name)!;
const first = (md: grpc.Metadata, key: string): string | undefined => md.get(key)[0]?.toString();

/** POST to the data plane (the admin listener). */
async function post(m: ManagerProcess, route: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`http://127.0.0.1:${m.apiPort}${route}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
}

describe('failover with the default budget (fake children, one SIGKILLed mid-call)', () => {
  let m: ManagerProcess;
  let c: AnyClient;

  before(async () => {
    ({ m, c } = await managerWith('default'));
  });

  after(async () => {
    c?.close();
    if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  });

  test('unary by model_id through the multiplexer: answered by the other replica', async () => {
    await bothRunning(m);
    const call = unary(c, 'Embed', { target: { model_id: MODEL }, request: { inputs: SLOW } });
    const victim = await killBusy(m, c);
    const { res, headers } = await call;
    assert.deepEqual(res.embeddings, [SLOW.length, 1, 0, 0]);
    assert.equal(first(headers, 'teiplex-instance'), other(victim));
    assert.equal(first(headers, 'teiplex-retried-from'), victim);
  });

  test('HTTP /v1/embeddings and /embed by model: answered by the other replica', async () => {
    for (const [route, body] of [
      ['/v1/embeddings', { model: MODEL, input: SLOW }],
      ['/embed', { model: MODEL, inputs: SLOW, normalize: false }],
    ] as const) {
      await bothRunning(m);
      const answer = post(m, route, body);
      const victim = await killBusy(m, c);
      const res = await answer;
      const text = await res.text();
      assert.equal(res.status, 200, `${route}: ${text}`);
      assert.equal(res.headers.get('x-teiplex-instance'), other(victim), route);
      assert.equal(res.headers.get('x-teiplex-retried-from'), victim, route);
      const vector = route === '/embed' ? JSON.parse(text)[0] : JSON.parse(text).data[0].embedding;
      assert.equal(vector.length, 4, route);
    }
  });

  test('HTTP /v1/embeddings of several inputs (a tei.v1 stream to the child) whose child dies before answering: answered by the other replica', async () => {
    await bothRunning(m);
    // not SLOW itself: the test before left its embedding in the manager's cache
    const slow = 'slow:4001';
    const answer = post(m, '/v1/embeddings', { model: MODEL, input: [slow, 'bb'] });
    const victim = await killBusy(m, c);
    const res = await answer;
    const text = await res.text();
    assert.equal(res.status, 200, text);
    assert.equal(res.headers.get('x-teiplex-instance'), other(victim));
    assert.equal(res.headers.get('x-teiplex-retried-from'), victim);
    assert.deepEqual(
      (JSON.parse(text) as { data: Array<{ embedding: number[] }> }).data.map((d) => d.embedding[0]),
      [slow.length, 2],
    );
  });

  test('EmbedArrow whose child dies mid-call (the stream fan-out): every row, in input order, the rest from the other replica', async () => {
    await bothRunning(m);
    const texts = ['a', SLOW, 'ccc', 'dddd', 'eeeee'];
    const call = unary(c, 'EmbedArrow', { target: { model_id: MODEL }, arrow_ipc: Buffer.from(encodeTexts(texts)), normalize: false });
    const victim = await killBusy(m, c);
    const { res, headers } = await call;
    const out = decodeDense(res.arrow_ipc);
    assert.equal(out.rows, texts.length);
    assert.deepEqual(
      Array.from({ length: out.rows }, (_, i) => out.values[i * out.dim]),
      texts.map((t) => t.length),
      'one row per text, in input order',
    );
    assert.equal(first(headers, 'teiplex-instance'), other(victim));
    assert.equal(first(headers, 'teiplex-retried-from'), victim);
  });

  test('by instance_name without the opt-in: UNAVAILABLE; with x-teiplex-failover: same-model: answered', async () => {
    await bothRunning(m);
    const stays = unary(c, 'Embed', { target: { instance_name: 'rep-a' }, request: { inputs: SLOW } }).then(
      () => assert.fail('the call to the killed instance was answered'),
      (err: grpc.ServiceError) => err,
    );
    assert.equal(await killBusy(m, c), 'rep-a');
    const err = await stays;
    assert.equal(err.code, grpc.status.UNAVAILABLE, err.message);
    assert.match(err.details, /Connection dropped|cannot reach/);
    assert.equal(first(err.metadata, 'teiplex-retried-from'), undefined);

    await bothRunning(m);
    const md = new grpc.Metadata();
    md.set('x-teiplex-failover', 'same-model');
    const moves = unary(c, 'Embed', { target: { instance_name: 'rep-a' }, request: { inputs: SLOW } }, {}, md);
    assert.equal(await killBusy(m, c), 'rep-a');
    const { res, headers } = await moves;
    assert.equal(res.embeddings.length, 4);
    assert.equal(first(headers, 'teiplex-instance'), 'rep-b');
    assert.equal(first(headers, 'teiplex-retried-from'), 'rep-a');
  });

  test('an invalid x-teiplex-failover: INVALID_ARGUMENT (gRPC) and 400 (HTTP) naming the allowed values', async () => {
    await bothRunning(m);
    const md = new grpc.Metadata();
    md.set('x-teiplex-failover', 'always');
    const err = await unary(c, 'Embed', { target: { model_id: MODEL }, request: { inputs: 'x' } }, {}, md).then(
      () => assert.fail('answered'),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(errorCode(err), 'BAD_REQUEST');
    assert.match(err.details, /x-teiplex-failover: 'always' is not a failover mode; allowed: 'same-model', 'off'/);
    const res = await post(m, '/v1/embeddings', { model: MODEL, input: 'x' }, { 'x-teiplex-failover': 'always' });
    const body = (await res.json()) as { error: { message: string; code: string } };
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.equal(body.error.code, 'bad_request');
    assert.match(body.error.message, /allowed: 'same-model', 'off'/);
  });

  test('a bidi stream whose child dies: UNAVAILABLE naming the first unanswered message, and its trailer', async () => {
    await bothRunning(m);
    const stream = c.EmbedStream(new grpc.Metadata(), {}) as grpc.ClientDuplexStream<unknown, { embeddings: number[] }>;
    const responses: Array<{ embeddings: number[] }> = [];
    const ended = new Promise<grpc.ServiceError | undefined>((resolve) => {
      let error: grpc.ServiceError | undefined;
      stream.on('data', (d: { embeddings: number[] }) => responses.push(d));
      stream.on('error', (e: grpc.ServiceError) => (error = e));
      stream.on('status', () => setImmediate(() => resolve(error)));
    });
    for (const inputs of ['a', 'bb', SLOW, 'dddd']) stream.write({ target: { model_id: MODEL }, request: { inputs } });
    stream.end();
    await until('the two answers before the slow one', () => responses.length === 2, { timeoutMs: 30_000 });
    await killBusy(m, c);
    const error = await ended;
    assert.equal(responses.length, 2, 'nothing more was answered');
    assert.equal(error?.code, grpc.status.UNAVAILABLE, error?.message);
    assert.match(error!.details, /instance 'rep-[ab]' went away; messages 1\.\.2 were answered, message 3 and later were not: resume from it/);
    assert.equal(first(error!.metadata, 'teiplex-first-unanswered'), '3');
  });
});

describe('failover with a zero retry budget', () => {
  let m: ManagerProcess;
  let c: AnyClient;

  before(async () => {
    ({ m, c } = await managerWith('no-budget', '[failover]\nbudget_percent = 0\nmin_retry_concurrency = 0\n'));
  });

  after(async () => {
    c?.close();
    if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  });

  test('no retry is made: the error goes back, and the metric counts budget_exhausted', async () => {
    const call = unary(c, 'Embed', { target: { model_id: MODEL }, request: { inputs: SLOW } }).then(
      () => assert.fail('answered although no retry was allowed'),
      (err: grpc.ServiceError) => err,
    );
    await killBusy(m, c);
    const err = await call;
    assert.equal(err.code, grpc.status.UNAVAILABLE, err.message);
    assert.equal(first(err.metadata, 'teiplex-retried-from'), undefined);
    const metrics = await fetch(`http://127.0.0.1:${m.apiPort}/metrics`).then((r) => r.text());
    assert.match(metrics, new RegExp(`teiplex_failover_retries_total\\{model_id="${MODEL}",outcome="budget_exhausted"\\} 1\\b`));
    assert.doesNotMatch(metrics, /outcome="retried"/);
  });
});

describe('failover before any row: a child dies while the manager asks its Info', () => {
  let m: ManagerProcess;
  let c: AnyClient;

  before(async () => {
    // Both replicas answer tei.v1 Info after 3 s, so a call's first moments are spent waiting for it.
    ({ m, c } = await managerWith('slow-info', '', 'extra_args = ["--fake-info-delay", "3000"]'));
  });

  after(async () => {
    c?.close();
    if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  });

  test('EmbedArrow: the whole call moves to the other replica', async () => {
    const texts = ['a', 'bb', 'ccc'];
    const call = unary(c, 'EmbedArrow', { target: { model_id: MODEL }, arrow_ipc: Buffer.from(encodeTexts(texts)), normalize: false });
    const victim = await killBusy(m, c);
    const { res, headers } = await call;
    const out = decodeDense(res.arrow_ipc);
    assert.deepEqual(
      Array.from({ length: out.rows }, (_, i) => out.values[i * out.dim]),
      texts.map((t) => t.length),
    );
    assert.equal(first(headers, 'teiplex-instance'), other(victim));
    assert.equal(first(headers, 'teiplex-retried-from'), victim);
  });

  test('HTTP /v1/embeddings: a replica that dies while the manager asks its Info (which outputs it can make) is left out; the other answers', async () => {
    // new children for both, so neither's Info is known yet
    const pids = new Map<string, number>();
    for (const r of REPLICAS) {
      pids.set(r, (await m.api('GET', `/instances/${r}`)).body.pid as number);
      assert.equal((await m.api('POST', `/instances/${r}/restart`)).status, 200);
    }
    for (const r of REPLICAS) await m.waitFor(r, (i) => i.status === 'running' && i.pid !== pids.get(r), 120_000);
    const infoCalls = (): number => fakeCalls(childLog('slow-info', 'rep-a')).filter((f) => f.method === 'Info').length;
    const before = infoCalls();
    const answer = post(m, '/v1/embeddings', { model: MODEL, input: ['a', 'bb'] });
    await until("rep-a's Info asked", () => infoCalls() > before, { timeoutMs: 30_000 });
    process.kill((await m.api('GET', '/instances/rep-a')).body.pid as number, 'SIGKILL');
    const res = await answer;
    const text = await res.text();
    assert.equal(res.status, 200, text);
    assert.equal(res.headers.get('x-teiplex-instance'), 'rep-b');
    assert.deepEqual(
      (JSON.parse(text) as { data: Array<{ embedding: number[] }> }).data.map((d) => d.embedding.length),
      [4, 4],
    );
  });
});
