/**
 * Draining (docs/manager.md#draining): a stop, restart or delete takes the replica out of
 * balancing at once, lets the calls in flight on its child finish (bounded by
 * graceful_shutdown_timeout_secs), and only then signals the child. A real `teiplex serve` with
 * two replicas of one model, each the FAKE tei.v1 child (test/helpers/fake-tei-child.ts) run with
 * `--fake-sigterm exit`: it exits at SIGTERM at once, cutting its calls, so a call survives a stop
 * only if the manager waited for it. Calls in flight are `slow:<ms>` inputs sent to rep-a by name;
 * the calls made meanwhile by model_id must all go to rep-b.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { fakeCallsOf, fakeChildScript, fakeInstanceToml } from '../helpers/fake-tei-child.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { mux, unary, type AnyClient, type Unary } from '../helpers/mux-client.js';
import { until } from '../helpers/wait.js';

const MODEL = 'fake/drained';
const GRACE_SECS = 8;
const EXTRA = 'extra_args = ["--fake-sigterm", "exit"]';

let dir: string;
let logDir: string;
let m: ManagerProcess;
let c: AnyClient;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-drain-'));
  logDir = path.join(dir, 'logs');
  const script = await fakeChildScript(dir);
  const file = path.join(dir, 'manager.toml');
  await writeFile(
    file,
    `${loopbackConfig(dir)}startup_timeout_secs = 120\ngraceful_shutdown_timeout_secs = ${GRACE_SECS}\nhealth_check_interval_secs = 1\nhealth_check_timeout_secs = 2\n` +
      fakeInstanceToml('rep-a', script, MODEL, EXTRA) +
      fakeInstanceToml('rep-b', script, MODEL, EXTRA),
  );
  m = await startManager(file);
  for (const name of ['rep-a', 'rep-b']) await m.waitFor(name, (i) => i.status === 'running', 120_000);
  c = mux(Number(m.ready.grpc_port));
});

after(async () => {
  c?.close();
  if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  await rm(dir, { recursive: true, force: true });
});

/** A call to rep-a by name that takes `ms` in its child; resolves once the child has it (the call is wrapped: awaiting it here would wait for its answer). */
async function slowCallOnA(ms: number): Promise<{ inFlight: Promise<Unary<any>> }> {
  const call = unary(c, 'Embed', { target: { instance_name: 'rep-a' }, request: { inputs: `slow:${ms}` } });
  // Settled either way later; a failure is asserted by the caller.
  call.catch(() => undefined);
  await until(`rep-a's child received slow:${ms}`, () => fakeCallsOf(logDir, 'rep-a').some((f) => f.inputs[0] === `slow:${ms}`), { timeoutMs: 30_000 });
  return { inFlight: call };
}

/** The instances that answered `n` sequential model_id calls. */
async function answeredBy(n: number): Promise<string[]> {
  const by: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await unary(c, 'Embed', { target: { model_id: MODEL }, request: { inputs: `during ${i}` } });
    by.push(String(r.headers.get('teiplex-instance')[0]));
  }
  return by;
}

async function logOf(name: string): Promise<string> {
  return readFile(path.join(logDir, `${name}.log`), 'utf8').catch(() => '');
}

/** Wait for the line in the instance's log (the manager writes its notes there). */
async function logHas(name: string, text: string): Promise<void> {
  let log = '';
  await until(
    `'${text}' in ${name}'s log`,
    async () => {
      log = await logOf(name);
      return log.includes(text);
    },
    { timeoutMs: 30_000, context: () => `--- ${name}'s log ---\n${log.slice(-3000)}` },
  );
}

describe('draining before a child is signalled (fake children that exit at SIGTERM)', () => {
  test('stop: the call in flight completes, new calls go to the other replica meanwhile', async () => {
    const { inFlight } = await slowCallOnA(2001);
    const stopped = m.api('POST', '/instances/rep-a/stop');
    await m.waitFor('rep-a', (i) => i.status === 'stopping', 10_000);
    assert.deepEqual(await answeredBy(4), ['rep-b', 'rep-b', 'rep-b', 'rep-b']);
    const r = await inFlight;
    assert.deepEqual(r.res.embeddings, [9, 1, 0, 0], 'the answer of slow:2001 (its length, 1, 0, 0)');
    assert.equal(String(r.headers.get('teiplex-instance')[0]), 'rep-a');
    const s = await stopped;
    assert.equal(s.status, 200, JSON.stringify(s.body));
    await m.waitFor('rep-a', (i) => i.status === 'stopped', 30_000);
    await logHas('rep-a', 'draining 1 call in flight');
    await logHas('rep-a', 'drained in');
    const start = await m.api('POST', '/instances/rep-a/start');
    assert.equal(start.status, 200, JSON.stringify(start.body));
    await m.waitFor('rep-a', (i) => i.status === 'running', 120_000);
  });

  test('restart: the call in flight completes on the old child; a new child serves after', async () => {
    const before = await m.waitFor('rep-a', (i) => i.status === 'running');
    const { inFlight } = await slowCallOnA(2002);
    const restarted = m.api('POST', '/instances/rep-a/restart');
    await m.waitFor('rep-a', (i) => i.status === 'stopping', 10_000);
    assert.deepEqual(await answeredBy(2), ['rep-b', 'rep-b']);
    const r = await inFlight;
    assert.equal(r.res.embeddings.length, 4);
    assert.equal((await restarted).status, 200);
    const after = await m.waitFor('rep-a', (i) => i.status === 'running' && i.pid !== before.pid, 120_000);
    assert.notEqual(after.pid, before.pid);
    const again = await unary(c, 'Embed', { target: { instance_name: 'rep-a' }, request: { inputs: 'after restart' } });
    assert.equal(again.res.embeddings.length, 4);
  });

  test('a restart of one of two replicas under continuous load (4 clients by model_id): 0 errors', async () => {
    const errors: string[] = [];
    const answered: Record<string, number> = {};
    let stop = false;
    let sinceRestart = 0;
    let restartedAt: number | undefined;
    const client = async (k: number): Promise<void> => {
      for (let n = 0; !stop && n < 100_000; n++) {
        try {
          const r = await unary(c, 'Embed', { target: { model_id: MODEL }, request: { inputs: n % 3 === 0 ? 'slow:150' : `client ${k} call ${n}` } });
          const by = String(r.headers.get('teiplex-instance')[0]);
          answered[by] = (answered[by] ?? 0) + 1;
          if (restartedAt !== undefined && by === 'rep-a') sinceRestart++;
        } catch (err) {
          errors.push(`${(err as grpc.ServiceError).code} ${(err as Error).message}`);
        }
      }
    };
    const clients = [0, 1, 2, 3].map((k) => client(k));
    try {
      await until('both replicas answered under load', () => (answered['rep-a'] ?? 0) > 5 && (answered['rep-b'] ?? 0) > 5, { timeoutMs: 60_000 });
      const pid = (await m.waitFor('rep-a', () => true)).pid;
      const r = await m.api('POST', '/instances/rep-a/restart');
      assert.equal(r.status, 200, JSON.stringify(r.body));
      await m.waitFor('rep-a', (i) => i.status === 'running' && i.pid !== pid, 120_000);
      restartedAt = Date.now();
      await until('the new rep-a child answered calls under load', () => sinceRestart >= 5, { timeoutMs: 60_000 });
    } finally {
      stop = true;
      await Promise.all(clients);
    }
    assert.deepEqual(errors, []);
    assert.ok((await logOf('rep-a')).includes('drained in'), 'the restart drained calls in flight');
  });

  test('a call longer than graceful_shutdown_timeout_secs is cut when the drain times out', async () => {
    const { inFlight } = await slowCallOnA(60_000);
    const stopped = await m.api('POST', '/instances/rep-a/stop');
    assert.equal(stopped.status, 200);
    await assert.rejects(inFlight, (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.UNAVAILABLE, err.message);
      return true;
    });
    await logHas('rep-a', `drain timed out after`);
    assert.match(await logOf('rep-a'), /drain timed out after \d+ ms with 1 call in flight/);
    const start = await m.api('POST', '/instances/rep-a/start');
    assert.equal(start.status, 200, JSON.stringify(start.body));
    await m.waitFor('rep-a', (i) => i.status === 'running', 120_000);
  });

  test('delete: the call in flight completes before the child is stopped', async () => {
    const { inFlight } = await slowCallOnA(2003);
    const deleted = m.api('DELETE', '/instances/rep-a');
    const r = await inFlight;
    assert.equal(r.res.embeddings.length, 4);
    assert.equal((await deleted).status, 200);
    assert.deepEqual(await answeredBy(2), ['rep-b', 'rep-b']);
  });
});
