/**
 * AdminClient (src/client/admin.ts) against a real manager with real router children: every call
 * of the REST admin API, the server's codes as typed errors, a GET retried on connection failure
 * and a non-idempotent POST answered 503 with Retry-After tried exactly once (the manager counts
 * the refused load) while the same 503 on an idempotent call is retried, and the package's own
 * `teiplex/client` export.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AdminClient } from '../../src/client/admin.js';
import { ConflictError, ConnectionError, InvalidRequestError, NotFoundError, UnavailableError } from '../../src/client/errors.js';
import type { RetryEvent } from '../../src/client/options.js';
import { TeiplexClient } from '../../src/client/teiplex-client.js';
import { expectClientError } from '../helpers/client-errors.js';
import { freePort, loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { until } from '../helpers/wait.js';

/** A counter's value in the manager's /metrics text (0 when the series does not exist yet). */
function counter(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const inside = line.slice(line.indexOf('{') + 1, line.indexOf('}'));
    if (want.every((w) => inside.split(',').includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

describe('AdminClient against a real manager', () => {
  let dir: string;
  let m: ManagerProcess;
  let admin: AdminClient;
  let model: string;
  const retries: RetryEvent[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-client-admin-'));
    model = await testModel({ kind: 'embedding', seed: 301 });
    const catalogModel = await testModel({ kind: 'embedding', seed: 302 });
    const file = path.join(dir, 'manager.toml');
    await writeFile(
      file,
      `${loopbackConfig(dir)}health_check_interval_secs = 5
startup_timeout_secs = 120
cpu_memory_budget_mb = 4000
[[instances]]
name = "seeded"
model_id = ${JSON.stringify(model)}
[[models]]
name = "cat"
model_id = ${JSON.stringify(catalogModel)}
aliases = ["cat-alias"]
[[models]]
name = "huge"
model_id = "huge/never-fits"
memory_mb = 100000
`,
    );
    m = await startManager(file);
    admin = new AdminClient({ url: `http://127.0.0.1:${m.apiPort}`, onRetry: (e) => retries.push(e), retry: { baseDelayMs: 10 } });
  });

  after(async () => {
    await admin?.close();
    await m?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('health, instances, instance: the wire shapes', async () => {
    assert.deepEqual(await admin.health(), { status: 'ok' });
    const seeded = await until('seeded running', async () => {
      const i = await admin.instance('seeded');
      return i.status === 'running' && i;
    }, { timeoutMs: 120_000 });
    assert.equal(seeded.model_id, model);
    assert.equal(seeded.runtime, 'router');
    assert.equal(typeof seeded.pid, 'number');
    assert.equal(seeded.model, null);
    assert.equal(seeded.outlier.ejected, false);
    const list = await admin.instances();
    assert.deepEqual(list.map((i) => i.name), ['seeded']);
    const all = await admin.healthAll();
    assert.equal(all.status, 'healthy');
    assert.equal((await admin.instanceHealth('seeded')).healthy, true);
  });

  test('create (stopped), start, stop, restart, logs, delete; their refusals as typed errors', async () => {
    const created = await admin.createInstance({ name: 'c1', model_id: model, max_batch_tokens: 4096 }, { start: false });
    assert.equal(created.name, 'c1');
    assert.equal(created.desired_state, 'stopped');
    await expectClientError(admin.createInstance({ name: 'c1', model_id: model }), ConflictError, { code: 'INSTANCE_EXISTS', status: 409 });
    await expectClientError(admin.stopInstance('c1'), ConflictError, { code: 'NOT_RUNNING', status: 409 });
    const started = await admin.startInstance('c1');
    assert.equal(started.desired_state, 'running');
    await until('c1 running', async () => (await admin.instance('c1')).status === 'running', { timeoutMs: 120_000 });
    await expectClientError(admin.startInstance('c1'), ConflictError, { code: 'ALREADY_RUNNING', status: 409 });
    const restarted = await admin.restartInstance('c1');
    assert.equal(restarted.name, 'c1');
    await until('c1 running after restart', async () => (await admin.instance('c1')).status === 'running', { timeoutMs: 120_000 });
    const logs = await admin.logs('c1');
    assert.ok(logs.lines.length > 0, 'the child logged');
    assert.equal(logs.total_lines >= logs.lines.length, true);
    const page = await admin.logs('c1', { start: logs.end - 1, end: logs.end });
    assert.equal(page.lines.length, 1);
    assert.equal(page.lines[0], logs.lines.at(-1));
    const stopped = await admin.stopInstance('c1');
    assert.equal(stopped.desired_state, 'stopped');
    const deleted = await admin.deleteInstance('c1');
    assert.equal(deleted.desired_state, 'deleted');
    await expectClientError(admin.instance('c1'), NotFoundError, { code: 'INSTANCE_NOT_FOUND', status: 404, message: /c1/ });
    await expectClientError(admin.createInstance({ name: 'Bad Name', model_id: model }), InvalidRequestError, { code: 'BAD_REQUEST', status: 400 });
    assert.throws(() => admin.instance(''), /name: must be a non-empty string/);
  });

  test('catalog: models, model by alias, load, unload; memory, gpus, reload, metrics', async () => {
    const models = await admin.models();
    assert.deepEqual(models.map((x) => x.name).sort(), ['cat', 'huge']);
    const cat = await admin.model('cat-alias');
    assert.equal(cat.name, 'cat');
    assert.equal(cat.state, 'available');
    const loaded = await admin.loadModel('cat');
    assert.equal(loaded.state, 'loaded');
    assert.equal(loaded.replicas.length, 1);
    const unloaded = await admin.unloadModel('cat');
    assert.ok(['unloading', 'available'].includes(unloaded.state), unloaded.state);
    await expectClientError(admin.model('nope'), NotFoundError, { code: 'MODEL_NOT_FOUND', status: 404 });
    const memory = await admin.memory();
    assert.equal(memory.devices.find((d) => d.device === 'cpu')?.budget_mb, 4000);
    const gpus = await admin.gpus();
    assert.ok(Array.isArray(gpus.gpus));
    // A host without GPUs says why the list is empty.
    if (gpus.gpus.length === 0) assert.equal(typeof gpus.error, 'string');
    else assert.equal(typeof gpus.gpus[0]?.uuid, 'string');
    const report = await admin.reload();
    assert.deepEqual(report.instances.unchanged, ['seeded']);
    assert.deepEqual([...report.models.unchanged].sort(), ['cat', 'huge']);
    assert.deepEqual(report.restart_required, []);
    assert.match(await admin.metrics(), /teiplex_instances/);
  });

  test('a non-idempotent POST answered 503 with Retry-After is tried exactly once', async () => {
    const before = counter(await admin.metrics(), 'teiplex_model_loads_total', { model: 'huge', result: 'refused' });
    retries.length = 0;
    const e = await expectClientError(admin.loadModel('huge'), UnavailableError, { code: 'MEMORY_BUDGET_EXCEEDED', status: 503, message: /budget/ });
    assert.ok(e.retryAfterMs !== undefined && e.retryAfterMs > 0, `Retry-After read: ${e.retryAfterMs}`);
    assert.deepEqual(retries, [], 'no retry of POST /models/huge/load');
    const afterCount = counter(await admin.metrics(), 'teiplex_model_loads_total', { model: 'huge', result: 'refused' });
    assert.equal(afterCount - before, 1, 'exactly one load request reached the manager');
  });

  test('the same 503 on an idempotent call (an embedding of that model) is retried after its Retry-After', async () => {
    const events: RetryEvent[] = [];
    const c = new TeiplexClient({ url: `http://127.0.0.1:${m.apiPort}`, transport: 'http', retry: { attempts: 2 }, onRetry: (e) => events.push(e) });
    try {
      const before = counter(await admin.metrics(), 'teiplex_model_loads_total', { model: 'huge', result: 'refused' });
      const e = await expectClientError(c.embed('huge', 'x'), UnavailableError, { code: 'MEMORY_BUDGET_EXCEEDED', status: 503 });
      assert.deepEqual(events.map((ev) => [ev.attempt, ev.operation, ev.delayMs]), [[1, 'POST /v1/encode/huge', e.retryAfterMs]]);
      const afterCount = counter(await admin.metrics(), 'teiplex_model_loads_total', { model: 'huge', result: 'refused' });
      assert.equal(afterCount - before, 2, 'two requests reached the manager');
    } finally {
      await c.close();
    }
  });

  test('a GET is retried on connection failure (bounded), a POST never', async () => {
    const port = await freePort();
    const events: RetryEvent[] = [];
    const dead = new AdminClient({ url: `http://127.0.0.1:${port}`, retry: { attempts: 3, baseDelayMs: 1 }, onRetry: (ev) => events.push(ev) });
    try {
      await expectClientError(dead.instances(), ConnectionError, { code: 'CONNECTION_FAILED', message: /ECONNREFUSED/ });
      assert.deepEqual(events.map((ev) => [ev.attempt, ev.operation, (ev.error as ConnectionError).code]), [
        [1, 'GET /instances', 'CONNECTION_FAILED'],
        [2, 'GET /instances', 'CONNECTION_FAILED'],
      ]);
      events.length = 0;
      await expectClientError(dead.reload(), ConnectionError, { code: 'CONNECTION_FAILED' });
      assert.deepEqual(events, []);
    } finally {
      await dead.close();
    }
  });

  test("the package exports 'teiplex/client' (dist, with types)", async () => {
    const mod = (await import('teiplex/client' as string)) as typeof import('../../src/client/index.js');
    const c = new mod.AdminClient({ url: `http://127.0.0.1:${m.apiPort}` });
    try {
      assert.deepEqual(await c.health(), { status: 'ok' });
      // dist's classes, not src's: checked by hand.
      const e = await c.instance('missing').then(
        () => assert.fail('an answer for a missing instance'),
        (x: unknown) => x,
      );
      assert.ok(e instanceof mod.NotFoundError && e instanceof mod.TeiplexClientError, String(e));
      assert.deepEqual([e.code, e.status], ['INSTANCE_NOT_FOUND', 404]);
    } finally {
      await c.close();
    }
  });
});
