/**
 * The multiplexer when children misbehave, end to end (real manager, real router children):
 * a hung child (SIGSTOP) -> DEADLINE_EXCEEDED after grpc_request_timeout_secs on unary calls and
 * streams; a child killed mid-stream -> the stream ends with UNAVAILABLE (no hang) and, once the
 * supervisor has restarted it, the next call succeeds on a new channel; a stopped instance ->
 * UNAVAILABLE naming its status, model_id routing skips it, health follows (Check and Watch).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { INSTANCE_HEADER } from '../../src/mux/forward.js';
import { startManager, type ManagerProcess, loopbackConfig } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { bidi, clientStream, errorCode, grpcError, health, mux, unary, type AnyClient } from '../helpers/mux-client.js';
import { elapse, until } from '../helpers/wait.js';

const { status } = grpc;
const TIMEOUT_SECS = 1.5;

let dir: string;
let m: ManagerProcess;
let client: AnyClient;
let model: string;
let reranker: string;

const running = (i: { status: string }): boolean => i.status === 'running';
const embed = (instance_name: string, inputs = 'hello') => unary(client, 'Embed', { target: { instance_name }, request: { inputs } });

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-mux-fail-'));
  model = await testModel({ kind: 'embedding' });
  reranker = await testModel({ kind: 'reranker' });
  const file = path.join(dir, 'mux.toml');
  await writeFile(
    file,
    `${loopbackConfig(dir)}# Health checks stay out of the way of the SIGSTOP test.
health_check_interval_secs = 60
startup_timeout_secs = 120
graceful_shutdown_timeout_secs = 5
grpc_request_timeout_secs = ${TIMEOUT_SECS}
[restart]
initial_backoff_ms = 100
max_backoff_ms = 400
[[instances]]
name = "a"
model_id = ${JSON.stringify(model)}
[[instances]]
name = "b"
model_id = ${JSON.stringify(model)}
[[instances]]
name = "r"
model_id = ${JSON.stringify(reranker)}
`,
  );
  m = await startManager(file);
  for (const name of ['a', 'b', 'r']) await m.waitFor(name, running, 120_000);
  client = mux(Number(m.ready.grpc_port));
});

after(async () => {
  client?.close();
  if (m) assert.equal(await m.stop(), 0);
  await rm(dir, { recursive: true, force: true });
});

describe('misbehaving children', () => {
  test('a hung child: DEADLINE_EXCEEDED after grpc_request_timeout_secs (unary and streams); fine again once it resumes', async () => {
    const { pid } = await m.waitFor('b', running);
    assert.ok((await embed('b')).res.embeddings.length > 0, 'the channel is up before the child hangs');
    process.kill(pid, 'SIGSTOP');
    try {
      const t0 = Date.now();
      await assert.rejects(embed('b'), grpcError(status.DEADLINE_EXCEEDED, 'REQUEST_TIMEOUT', /instance 'b' did not answer within grpc_request_timeout_secs \(1.5 s\)/));
      // Not before the timeout (a lower bound the timeout promises).
      const waited = Date.now() - t0;
      assert.ok(waited >= TIMEOUT_SECS * 1000 - 50, `${waited} ms`);
      const s = await bidi(client, 'EmbedStream', [{ target: { instance_name: 'b' }, request: { inputs: 'x' } }]);
      assert.equal(s.error?.code, status.DEADLINE_EXCEEDED, s.error?.details);
      assert.equal(errorCode(s.error), 'REQUEST_TIMEOUT');
      assert.match(s.error!.details, /did not answer within grpc_request_timeout_secs/);
      // A client's own shorter deadline wins: its own status, no code from the manager's timeout.
      await assert.rejects(unary(client, 'Embed', { target: { instance_name: 'b' }, request: { inputs: 'x' } }, { deadline: Date.now() + 200 }), grpcError(status.DEADLINE_EXCEEDED, null));
      // The other replica is unaffected meanwhile.
      assert.ok((await embed('a')).res.embeddings.length > 0);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    assert.ok((await embed('b')).res.embeddings.length > 0, 'answers again once resumed');
    assert.equal((await m.api('GET', '/instances/b')).body.pid, pid, 'no restart was needed');
  });

  test('a stream with a long exchange is not cut by the timeout while answers keep coming', async () => {
    const call = client.EmbedStream() as grpc.ClientDuplexStream<unknown, unknown>;
    let answers = 0;
    const done = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('error', () => undefined);
    call.on('data', () => answers++);
    const rounds = 8;
    for (let i = 0; i < rounds; i++) {
      call.write({ target: i === 0 ? { instance_name: 'a' } : undefined, request: { inputs: `message ${i}` } });
      await until(`answer ${i + 1}`, () => answers === i + 1, { timeoutMs: 30_000 });
      await elapse(300, 'the exchange lasts longer than grpc_request_timeout_secs (1.5 s) in all: rounds * 300 ms');
    }
    call.end();
    const st = await done;
    assert.equal(st.code, status.OK, st.details);
    assert.equal(answers, rounds);
  });

  test('a child killed mid-stream: the stream ends with UNAVAILABLE; after the restart the next call succeeds', async () => {
    const before = await m.waitFor('a', running);
    const call = client.EmbedStream() as grpc.ClientDuplexStream<unknown, unknown>;
    let answers = 0;
    const ended = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    call.on('error', () => undefined);
    const first = new Promise<void>((resolve) => call.on('data', () => ++answers === 2 && resolve()));
    call.write({ target: { instance_name: 'a' }, request: { inputs: 'one' } });
    call.write({ request: { inputs: 'two' } });
    await first;
    process.kill(before.pid, 'SIGKILL');
    const st = await ended;
    assert.equal(st.code, status.UNAVAILABLE, `${status[st.code]}: ${st.details}`);
    call.end();
    // While it restarts: UNAVAILABLE naming its status (or the answer, if it is back already).
    const during = await embed('a').then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    if (during !== undefined) {
      assert.equal(during.code, status.UNAVAILABLE, during.details);
      if (/instance 'a' is/.test(during.details)) assert.equal(errorCode(during), 'INSTANCE_UNAVAILABLE');
      assert.match(during.details, /instance 'a' is (backoff|starting)|Connection dropped|No connection/);
    }
    const after = await m.waitFor('a', (i) => running(i) && i.pid !== before.pid, 60_000);
    assert.ok(after.restarts >= 1);
    const res = await embed('a', 'after the restart');
    assert.ok(res.res.embeddings.length > 0);
    assert.deepEqual(res.headers.get(INSTANCE_HEADER), ['a']);
  });

  test('a client stream whose child dies ends with UNAVAILABLE too', async () => {
    const before = await m.waitFor('r', running);
    let settle!: (err: grpc.ServiceError | null) => void;
    const result = new Promise<grpc.ServiceError | null>((resolve) => (settle = resolve));
    const call = client.RerankStream((err: grpc.ServiceError | null) => settle(err)) as grpc.ClientWritableStream<unknown>;
    call.write({ target: { instance_name: 'r' }, request: { query: 'q', text: 'a' } });
    // A later call to r on the same connection answered: the stream's message, sent before it, reached the manager first.
    await clientStream(client, 'RerankStream', [{ target: { instance_name: 'r' }, request: { query: 'q', text: 'b' } }]);
    process.kill(before.pid, 'SIGKILL');
    const err = await result;
    assert.equal(err?.code, status.UNAVAILABLE, err?.details);
    await m.waitFor('r', (i) => running(i) && i.pid !== before.pid, 60_000);
    const ok = await clientStream(client, 'RerankStream', [{ target: { instance_name: 'r' }, request: { query: 'q', text: 'a' } }]);
    assert.equal(ok.ranks.length, 1);
  });

  test('stopped instances: UNAVAILABLE naming the status; model_id skips them; health follows', async () => {
    const h = health(Number(m.ready.grpc_port));
    const watch = h.Watch({ service: 'b' }) as grpc.ClientReadableStream<{ status: string }>;
    const seen: string[] = [];
    watch.on('data', (d: { status: string }) => seen.push(d.status));
    watch.on('error', () => undefined);
    try {
      // The Watch's first answer (the status now) before the stop: else it may already say NOT_SERVING.
      await until("the Watch's first answer", () => seen.length > 0, { timeoutMs: 10_000 });
      assert.deepEqual(seen, ['SERVING']);
      assert.equal((await m.api('POST', '/instances/b/stop')).status, 200);
      await assert.rejects(embed('b'), grpcError(status.UNAVAILABLE, 'INSTANCE_UNAVAILABLE', /instance 'b' is stopped/));
      await assert.rejects(unary(client, 'Embed', { target: { instance_index: 1 }, request: { inputs: 'x' } }), grpcError(status.UNAVAILABLE, 'INSTANCE_UNAVAILABLE', /instance 'b' is stopped/));
      const s = await bidi(client, 'EmbedStream', [{ target: { instance_name: 'b' }, request: { inputs: 'x' } }]);
      assert.equal(s.error?.code, status.UNAVAILABLE);
      assert.equal(errorCode(s.error), 'INSTANCE_UNAVAILABLE');
      for (let i = 0; i < 4; i++) {
        const r = await unary(client, 'Embed', { target: { model_id: model }, request: { inputs: 'x' } });
        assert.deepEqual(r.headers.get(INSTANCE_HEADER), ['a'], 'model_id goes to the running replica');
      }
      assert.equal((await unary(h, 'Check', { service: 'b' })).res.status, 'NOT_SERVING');
      assert.equal((await unary(h, 'Check', { service: 'a' })).res.status, 'SERVING');
      assert.equal((await m.api('POST', '/instances/a/stop')).status, 200);
      await assert.rejects(
        unary(client, 'Embed', { target: { model_id: model }, request: { inputs: 'x' } }),
        grpcError(status.UNAVAILABLE, 'INSTANCE_UNAVAILABLE', /no running instance of model_id '.*': a is stopped, b is stopped/),
      );
      assert.equal((await m.api('POST', '/instances/b/start')).status, 200);
      await m.waitFor('b', running);
      assert.ok((await embed('b')).res.embeddings.length > 0, 'served again after a start');
      await until('the Watch to say SERVING again', () => seen.includes('SERVING', 1), { timeoutMs: 10_000 });
      assert.deepEqual(seen, ['SERVING', 'NOT_SERVING', 'SERVING'], 'Watch follows the instance');
      assert.equal((await m.api('POST', '/instances/a/start')).status, 200);
      await m.waitFor('a', running);
    } finally {
      watch.cancel();
      h.close();
    }
  });
});
