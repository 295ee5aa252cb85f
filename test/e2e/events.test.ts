/**
 * GET /events for scripts, against a real manager with a real `teiplex router` child and API keys
 * configured: a plain HTTP client reads a snapshot first, then the instance's change events
 * (a restart through the API), keep-alive comments, and with `?logs=NAME` the child's log lines;
 * without a key 401 UNAUTHENTICATED, with a key that is not an admin key 403 PERMISSION_DENIED;
 * the page's shell (/ui) served without a key, with its Content-Security-Policy; the stream cap
 * (events_max_streams) answered 503 TOO_MANY_STREAMS and freed when a stream closes; and on
 * SIGTERM the server ends the open stream itself (a clean end, not a reset) and exits 0.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openEventStream, type EventStreamClient } from '../helpers/event-stream-client.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { until } from '../helpers/wait.js';

const ADMIN_KEY = 'events-admin-key';
const TEAM_KEY = 'events-team-key';
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const admin = { authorization: `Bearer ${ADMIN_KEY}` };

let dir: string;
let m: ManagerProcess;
const open: EventStreamClient[] = [];

async function adminCall(method: string, url: string, body?: unknown): Promise<{ status: number; body: any }> {
  const headers = body === undefined ? admin : { ...admin, 'content-type': 'application/json' };
  const res = await fetch(`http://127.0.0.1:${m.apiPort}${url}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

async function stream(url = '/events', headers: Record<string, string> = admin): Promise<EventStreamClient> {
  const s = await openEventStream(m.apiPort, url, headers);
  open.push(s);
  return s;
}

const instanceEvents = (s: EventStreamClient, name: string) => s.events.filter((e) => e.event === 'instance' && e.data.name === name).map((e) => e.data);

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-events-'));
  const model = await testModel({ kind: 'embedding' });
  const reranker = await testModel({ kind: 'reranker' });
  const config = path.join(dir, 'manager.toml');
  await writeFile(
    config,
    `${loopbackConfig(dir)}events_max_streams = 3
events_keep_alive_secs = 1
graceful_shutdown_timeout_secs = 30

[[instances]]
name = "a"
model_id = ${JSON.stringify(model)}

[[models]]
name = "r"
model_id = ${JSON.stringify(reranker)}

[auth]
open_health = true

[[auth.api_keys]]
name = "ops"
key_sha256 = "${sha(ADMIN_KEY)}"
admin = true

[[auth.api_keys]]
name = "team"
key_sha256 = "${sha(TEAM_KEY)}"
`,
  );
  m = await startManager(config);
  await until('instance a running', async () => (await adminCall('GET', '/instances/a')).body.status === 'running', { timeoutMs: 120_000, everyMs: 100, context: () => m.output().slice(-3000) });
});

after(async () => {
  for (const s of open) s.close();
  if (m?.proc.exitCode === null) await m.stop('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

describe('GET /events', () => {
  test('a snapshot first, then the instance changes of a restart, and keep-alive comments', { timeout: 180_000 }, async () => {
    const s = await stream();
    assert.equal(s.status, 200);
    assert.match(String(s.headers['content-type']), /^text\/event-stream/);
    await until('the snapshot', () => s.events.length > 0);
    const first = s.events[0];
    assert.equal(first.event, 'snapshot');
    const a = first.data.instances.find((i: any) => i.name === 'a');
    assert.equal(a.status, 'running');
    assert.equal(typeof a.pid, 'number');
    assert.equal(a.restarts, 0);
    assert.deepEqual(first.data.limits, { max_streams: 3, buffer_bytes: 1024 * 1024, keep_alive_secs: 1 });
    assert.ok(Array.isArray(first.data.models) && Array.isArray(first.data.memory.devices) && Array.isArray(first.data.changes));
    assert.equal(first.data.logs, null);

    const restarted = await adminCall('POST', '/instances/a/restart');
    assert.equal(restarted.status, 200, JSON.stringify(restarted.body));
    // The child is stopped and started again: each step arrives as an instance event and a change.
    const seen = await until('instance a: not running, then running again with a new pid', () => {
      const states = instanceEvents(s, 'a');
      const down = states.findIndex((v) => v.status !== 'running');
      const up = states.findIndex((v, k) => k > down && down >= 0 && v.status === 'running');
      return up > down && down >= 0 && states[up];
    }, { timeoutMs: 120_000 });
    assert.notEqual(seen.pid, a.pid, 'a new child');
    const changes = s.events.filter((e) => e.event === 'change' && e.data.name === 'a').map((e) => e.data);
    assert.ok(changes.some((c) => c.kind === 'instance' && c.from === 'running'), JSON.stringify(changes));
    assert.ok(changes.some((c) => c.to === 'running' && typeof c.reason === 'string' && c.reason !== ''), JSON.stringify(changes));
    // The events after the snapshot are in order: the snapshot came first and only once.
    assert.equal(s.events.filter((e) => e.event === 'snapshot').length, 1);
    await until('a keep-alive comment', () => s.comments.includes('keep-alive') && true, { timeoutMs: 10_000 });
    s.close();
  });

  test('?logs=NAME: the backlog of the child log, then new lines as they are written', { timeout: 180_000 }, async () => {
    const s = await stream('/events?logs=a');
    assert.equal(s.status, 200);
    await until('the snapshot and the log backlog', () => s.events.some((e) => e.event === 'log'));
    assert.equal(s.events[0].event, 'snapshot');
    assert.equal(s.events[0].data.logs, 'a');
    const lines = () => s.events.filter((e) => e.event === 'log').map((e) => e.data);
    // The child printed its ready line; the manager's own notes are in the same log.
    assert.ok(lines().some((l) => l.instance === 'a' && l.line.includes('"msg":"ready"')), JSON.stringify(lines().slice(-5)));
    const before = lines().at(-1)!.n;
    await adminCall('POST', '/instances/a/restart');
    const fresh = await until('new log lines after the restart', () => {
      const later = lines().filter((l) => l.n > before);
      return later.some((l) => l.line.includes('"msg":"ready"')) && later;
    }, { timeoutMs: 120_000 });
    const ns = fresh.map((l) => l.n);
    assert.deepEqual(ns, [...ns].sort((x, y) => x - y), 'lines in order');
    assert.equal(new Set(ns).size, ns.length, 'no line twice');
    s.close();
    const unknown = await stream('/events?logs=nope');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.code, 'INSTANCE_NOT_FOUND');
    const bad = await stream('/events?logs=Not%20a%20name');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'BAD_REQUEST');
  });

  test('auth: no key 401 UNAUTHENTICATED, a key without admin 403 PERMISSION_DENIED; the shell needs none', { timeout: 60_000 }, async () => {
    const none = await stream('/events', {});
    assert.equal(none.status, 401);
    assert.equal(none.body.code, 'UNAUTHENTICATED');
    assert.match(String(none.headers['www-authenticate']), /^Bearer/);
    const team = await stream('/events', { authorization: `Bearer ${TEAM_KEY}` });
    assert.equal(team.status, 403);
    assert.equal(team.body.code, 'PERMISSION_DENIED');
    const wrong = await stream('/events', { authorization: 'Bearer not-a-key' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.code, 'UNAUTHENTICATED');

    const page = await fetch(`http://127.0.0.1:${m.apiPort}/ui`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
    const csp = page.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(page.headers.get('referrer-policy'), 'no-referrer');
    const html = await page.text();
    assert.match(html, /<script type="module" src="\/ui\/app.js"><\/script>/);
    assert.doesNotMatch(html, /<script>|\sstyle=|\son[a-z]+=/i, 'no inline script, style or handler');
    const script = await fetch(`http://127.0.0.1:${m.apiPort}/ui/app.js`);
    assert.equal(script.status, 200);
    assert.match(script.headers.get('content-type') ?? '', /^text\/javascript/);
    assert.doesNotMatch(await script.text(), /innerHTML|outerHTML|insertAdjacentHTML|document\.write/, 'server strings go in as text');
    const missing = await fetch(`http://127.0.0.1:${m.apiPort}/ui/secret.txt`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { code: string }).code, 'NOT_FOUND');
  });

  test('catalog and registry changes: a model load as model and change events, memory, an instance created and deleted', { timeout: 180_000 }, async () => {
    const s = await stream();
    assert.equal(s.status, 200);
    await until('the snapshot', () => s.events.length > 0);
    assert.equal(s.events[0].data.models.find((v: any) => v.name === 'r').state, 'available');
    const load = await adminCall('POST', '/models/r/load');
    assert.equal(load.status, 200, JSON.stringify(load.body));
    const states = () => s.events.filter((e) => e.event === 'model' && e.data.name === 'r').map((e) => e.data.state);
    await until('model r: loading, then loaded', () => states().includes('loading') && states().lastIndexOf('loaded') > states().indexOf('loading'), { timeoutMs: 120_000 });
    const loaded = s.events.filter((e) => e.event === 'model' && e.data.name === 'r' && e.data.state === 'loaded').at(-1)!.data;
    assert.equal(loaded.replicas.length, 1);
    const changes = s.events.filter((e) => e.event === 'change' && e.data.kind === 'model' && e.data.name === 'r').map((e) => `${e.data.from}>${e.data.to}`);
    assert.ok(changes.includes('available>loading'), changes.join(' '));
    // The replica is an instance too, named for its model.
    assert.ok(s.events.some((e) => e.event === 'instance' && e.data.model === 'r'));
    // Memory per device comes from the catalog's sampler: the cpu device, its budget and use.
    const memory = await until('a memory event with the cpu device', () => s.events.find((e) => e.event === 'memory' && e.data.devices.some((d: any) => d.device === 'cpu'))?.data, { timeoutMs: 60_000 });
    const cpu = memory.devices.find((d: any) => d.device === 'cpu');
    assert.equal(typeof cpu.used_mb, 'number');
    assert.equal(typeof cpu.budget_mb, 'number');

    // An instance created and deleted without a child: told by the refresh.
    const created = await adminCall('POST', '/instances?start=false', { name: 'tmp', model_id: 'org/tmp' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await until('instance tmp shown', () => s.events.some((e) => e.event === 'instance' && e.data.name === 'tmp' && e.data.status === 'stopped'), { timeoutMs: 30_000 });
    const deleted = await adminCall('DELETE', '/instances/tmp');
    assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
    await until('instance tmp deleted', () => s.events.some((e) => e.event === 'instance_deleted' && e.data.name === 'tmp'), { timeoutMs: 30_000 });
    const unload = await adminCall('POST', '/models/r/unload');
    assert.equal(unload.status, 200, JSON.stringify(unload.body));
    await until('model r: available again', () => states().at(-1) === 'available', { timeoutMs: 60_000 });
    s.close();
  });

  test('the stream cap: events_max_streams open, one more 503 TOO_MANY_STREAMS, a closed one frees its slot', { timeout: 60_000 }, async () => {
    for (const s of open) s.close();
    const held: EventStreamClient[] = [];
    // Earlier tests' closed streams are freed as the manager sees their sockets close.
    for (let k = 0; k < 3; k++) {
      const s = await until(`stream ${k + 1} of 3 accepted`, async () => {
        const c = await stream();
        if (c.status === 200) return c;
        assert.equal(c.body.code, 'TOO_MANY_STREAMS');
        return undefined;
      });
      held.push(s);
    }
    const over = await stream();
    assert.equal(over.status, 503);
    assert.equal(over.body.code, 'TOO_MANY_STREAMS');
    assert.match(over.body.error, /events_max_streams \(3\)/);
    assert.equal(over.headers['retry-after'], '5');
    held[0].close();
    const again = await until('a stream accepted once one closed', async () => {
      const c = await stream();
      if (c.status === 200) return c;
      assert.equal(c.body.code, 'TOO_MANY_STREAMS');
      return undefined;
    });
    await until('its snapshot', () => again.events[0]?.event === 'snapshot');
    for (const s of [...held, again]) s.close();
  });

  test('SIGTERM: the server ends an open stream itself (a clean end) and the manager exits 0', { timeout: 120_000 }, async () => {
    const s = await until('a stream accepted', async () => {
      const c = await stream();
      if (c.status === 200) return c;
      assert.equal(c.body.code, 'TOO_MANY_STREAMS');
      return undefined;
    });
    await until('its snapshot', () => s.events[0]?.event === 'snapshot');
    const code = await m.stop('SIGTERM');
    assert.equal(code, 0, m.output().slice(-3000));
    await until('the stream ended', () => s.ended);
    assert.equal(s.ended, 'end', 'ended by the server before the connections were cut, not reset');
  });
});
