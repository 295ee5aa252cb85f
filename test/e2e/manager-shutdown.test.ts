/**
 * The manager's shutdown order (docs/manager.md "Shutdown"), end to end against a real
 * `teiplex serve` whose child is the FAKE tei.v1 child (test/helpers/fake-tei-child.ts: answers
 * `slow:<ms>` after that long, never answers `hang`):
 *
 * - calls in flight at SIGTERM finish: a gRPC unary call, an open bidirectional stream (which
 *   still gets an answer to a message written after the signal) and an HTTP data-plane request;
 * - at once, both front ends refuse new calls with the documented code (gRPC UNAVAILABLE with
 *   `teiplex-error-code: UNHEALTHY`, HTTP 503 `unhealthy`) while gRPC health answers NOT_SERVING;
 * - the child is stopped only after the front ends are done; exit code 0;
 * - a call that never ends is cut when the one window (graceful_shutdown_timeout_secs) runs out,
 *   and the manager still exits 0, within 2 x that timeout.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { client, instanceToml, writeConfig } from '../helpers/data-plane.js';
import { fakeCalls, fakeChildScript } from '../helpers/fake-tei-child.js';
import { startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { health, mux, unary, type AnyClient } from '../helpers/mux-client.js';
import { until } from '../helpers/wait.js';

const GRACE_SECS = 8;
const SLOW_MS = 2500;

let dir: string;
let script: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-shutdown-'));
  script = await fakeChildScript(dir);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function startWithFake(sub: string): Promise<ManagerProcess> {
  const d = path.join(dir, sub);
  await mkdir(d);
  const file = await writeConfig(d, `graceful_shutdown_timeout_secs = ${GRACE_SECS}`, instanceToml('fake', 'fake/model', `runtime = "command"\ncommand = ${JSON.stringify(script)}`));
  const m = await startManager(file);
  await m.waitFor('fake', (i) => i.status === 'running', 120_000);
  return m;
}

function childLog(sub: string): string {
  try {
    return readFileSync(path.join(dir, sub, 'logs', 'fake.log'), 'utf8');
  } catch {
    return '';
  }
}

/** The manager's log lines (pino JSON) with `msg`. */
function logLines(m: ManagerProcess, msg: string): Array<Record<string, unknown>> {
  return m
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === msg);
}

const target = { instance_name: 'fake' };

/**
 * The manager's exit code, waited for at most 2 x graceful_shutdown_timeout_secs (the documented
 * bound) plus 3 s for the process to start and reap its child on a loaded machine.
 */
async function exitCode(m: ManagerProcess): Promise<number | string> {
  const { code } = await until('the manager exited', () => (m.proc.exitCode !== null || m.proc.signalCode !== null ? { code: m.proc.exitCode ?? m.proc.signalCode! } : undefined), {
    timeoutMs: 2 * GRACE_SECS * 1000 + 3000,
    context: () => m.output().slice(-3000),
  });
  return code;
}

describe('manager shutdown (fake child)', () => {
  test('SIGTERM: calls in flight finish (unary, open stream, HTTP), new calls refused with UNHEALTHY, health NOT_SERVING, exit 0', async (t) => {
    const m = await startWithFake('a');
    const grpcPort = Number(m.ready.grpc_port);
    const c: AnyClient = mux(grpcPort);
    const h = health(grpcPort);
    const api = client(m.apiPort);
    try {
      // An open stream: one answer in, the stream left open.
      const stream = c.EmbedStream(new grpc.Metadata()) as grpc.ClientDuplexStream<unknown, { embeddings: number[] }>;
      const answers: number[][] = [];
      let streamStatus: grpc.StatusObject | undefined;
      stream.on('data', (d: { embeddings: number[] }) => answers.push(d.embeddings));
      stream.on('status', (s: grpc.StatusObject) => (streamStatus = s));
      stream.on('error', () => undefined);
      stream.write({ target, request: { inputs: 'one' } });
      await until('the stream answered its first message', () => answers.length === 1);

      // A unary call and an HTTP request, both in flight at the child.
      const events: string[] = [];
      const unaryCall = unary(c, 'Embed', { target, request: { inputs: `slow:${SLOW_MS}` } }).then(
        (r) => (events.push('unary done'), r),
        (e: grpc.ServiceError) => (events.push('unary failed'), e),
      );
      const httpCall = api.post('/embed', { model: 'fake', inputs: `slow:${SLOW_MS}` }).then((r) => (events.push('http done'), r));
      await until('both slow calls reached the child', () => fakeCalls(childLog('a')).filter((f) => f.inputs[0] === `slow:${SLOW_MS}`).length === 2, { context: () => childLog('a') });

      const t0 = performance.now();
      m.proc.kill('SIGTERM');
      await until('health NOT_SERVING', async () => (await unary(h, 'Check', { service: '' })).res.status === 'NOT_SERVING', { timeoutMs: 10_000 });
      const tNotServing = performance.now() - t0;
      assert.deepEqual(events, [], 'health turned NOT_SERVING while both calls were still in flight');

      // New calls, while those are in flight: refused, with the documented code.
      const refused = await unary(c, 'Embed', { target, request: { inputs: 'new' } }).then(
        () => assert.fail('a new gRPC call was served during shutdown'),
        (e: grpc.ServiceError) => e,
      );
      assert.equal(refused.code, grpc.status.UNAVAILABLE, `${grpc.status[refused.code]}: ${refused.details}`);
      assert.deepEqual(refused.metadata.get('teiplex-error-code'), ['UNHEALTHY']);
      const refusedStream = c.EmbedStream(new grpc.Metadata()) as grpc.ClientDuplexStream<unknown, unknown>;
      const refusedStreamStatus = await new Promise<grpc.StatusObject>((r) => {
        refusedStream.on('status', r);
        refusedStream.on('error', () => undefined);
        refusedStream.write({ target, request: { inputs: 'new' } });
        refusedStream.end();
      });
      assert.equal(refusedStreamStatus.code, grpc.status.UNAVAILABLE, refusedStreamStatus.details);
      assert.deepEqual(refusedStreamStatus.metadata.get('teiplex-error-code'), ['UNHEALTHY']);
      const refusedHttp = await api.post('/embed', { model: 'fake', inputs: 'new' });
      assert.equal(refusedHttp.status, 503, JSON.stringify(refusedHttp.body));
      assert.equal(refusedHttp.body.error_type, 'unhealthy');
      const refusedOpenAi = await api.post('/v1/embeddings', { model: 'fake', input: 'new' });
      assert.equal(refusedOpenAi.status, 503, JSON.stringify(refusedOpenAi.body));
      assert.equal(refusedOpenAi.body.error.type, 'server_error');
      assert.deepEqual(events, [], 'the refusals came while both calls were still in flight');
      assert.ok(!fakeCalls(childLog('a')).some((f) => f.inputs.includes('new')), 'no refused call reached the child');

      // The open stream is still served: a message written after SIGTERM gets its answer.
      stream.write({ target, request: { inputs: 'three' } });
      await until('the stream answered a message written after SIGTERM', () => answers.length === 2);
      assert.deepEqual(answers[1], [5, 1, 0, 0]);
      stream.end();
      await until('the stream ended', () => streamStatus);
      assert.equal(streamStatus!.code, grpc.status.OK, streamStatus!.details);

      const u = await unaryCall;
      assert.ok(!(u instanceof Error), `the unary call in flight failed: ${(u as grpc.ServiceError).details}`);
      assert.deepEqual(u.res.embeddings, [`slow:${SLOW_MS}`.length, 1, 0, 0]);
      const r = await httpCall;
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body, [[`slow:${SLOW_MS}`.length, 1, 0, 0]]);
      const tInFlightDone = performance.now() - t0;

      const code = await exitCode(m);
      const tExit = performance.now() - t0;
      assert.equal(code, 0, m.output().slice(-3000));
      const closed = logLines(m, 'front ends closed: stopping children');
      assert.equal(closed.length, 1, 'the front ends were closed once, before the children were stopped');
      t.diagnostic(
        `timeline (ms after SIGTERM): health NOT_SERVING seen ${Math.round(tNotServing)}, calls in flight done ${Math.round(tInFlightDone)}, ` +
          `front ends closed ${closed[0].after_ms} (manager), stopped ${logLines(m, 'stopped')[0]?.after_ms} (manager), exit seen ${Math.round(tExit)}`,
      );
    } finally {
      c.close();
      h.close();
      await m.stop('SIGKILL');
    }
  });

  test('SIGTERM: a call that never ends is cut when graceful_shutdown_timeout_secs runs out; exit 0 within 2 x the timeout', async (t) => {
    const m = await startWithFake('b');
    const c: AnyClient = mux(Number(m.ready.grpc_port));
    const api = client(m.apiPort);
    try {
      const hung = unary(c, 'Embed', { target, request: { inputs: 'hang' } }).then(
        () => assert.fail('a call the child never answers was answered'),
        (e: grpc.ServiceError) => e,
      );
      const hungHttp = api.post('/embed', { model: 'fake', inputs: 'hang' }).then(
        (r) => r,
        (e: Error) => e,
      );
      await until('both hanging calls reached the child', () => fakeCalls(childLog('b')).filter((f) => f.inputs[0] === 'hang').length === 2, { context: () => childLog('b') });
      const t0 = performance.now();
      m.proc.kill('SIGTERM');
      const code = await exitCode(m);
      const tExit = performance.now() - t0;
      assert.equal(code, 0, m.output().slice(-3000));
      const err = await hung;
      assert.equal(err.code, grpc.status.UNAVAILABLE, `${grpc.status[err.code]}: ${err.details}`);
      const httpOutcome = await hungHttp;
      assert.ok(httpOutcome instanceof Error, `the hanging HTTP request was cut, not answered: ${JSON.stringify(httpOutcome)}`);
      const closed = logLines(m, 'front ends closed: stopping children');
      assert.equal(closed.length, 1);
      // The window is one graceful_shutdown_timeout_secs for both front ends (not one each).
      assert.ok(Number(closed[0].after_ms) >= GRACE_SECS * 1000, `front ends closed after ${closed[0].after_ms} ms: before the window ran out`);
      t.diagnostic(`timeline (ms after SIGTERM): front ends closed ${closed[0].after_ms} (manager), stopped ${logLines(m, 'stopped')[0]?.after_ms} (manager), exit seen ${Math.round(tExit)}`);
    } finally {
      c.close();
      await m.stop('SIGKILL');
    }
  });
});
