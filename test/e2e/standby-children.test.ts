/**
 * Standby children of the manager (standby_children, docs/on-demand.md), real processes: a
 * standby router is started ahead, shown in GET /memory and teiplex_standby_children, and counted
 * in the CPU's used memory; the next cold start takes it over (the replica IS the standby process,
 * its answers equal a fresh replica's) and a new standby follows; a budget with no room for a
 * standby next to the replica keeps none, and one with no room for a replica beside an unused
 * standby stops the standby first; the manager's stop leaves no child, nor does its SIGKILL (the
 * standby's stdin closes); the crash scan (process-record.ts) finds a standby child by its marker.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { findMarked, isAlive, reapOrphans } from '../../src/supervisor/process-record.js';
import { StandbyPool } from '../../src/supervisor/standby.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { until as poll } from '../helpers/wait.js';

let dir: string;
let model: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-standby-'));
  model = await testModel({ kind: 'embedding', shape: 'tiny' });
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Standby {
  name: string;
  pid: number;
  state: string;
  footprint_mb: number | null;
}

async function cpu(m: ManagerProcess): Promise<{ used_mb: number; budget_mb: number | null; standby: Standby[] }> {
  const r = await m.api('GET', '/memory');
  assert.equal(r.status, 200);
  return r.body.devices.find((d: { device: string }) => d.device === 'cpu');
}

const until = <T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> => poll(what, probe, { timeoutMs: ms, everyMs: 100 });

const readyStandby = (m: ManagerProcess): Promise<Standby> =>
  until('a ready standby child', async () => (await cpu(m)).standby.find((s) => s.state === 'ready' && s.footprint_mb !== null));

async function embed(m: ManagerProcess, name: string): Promise<number[]> {
  const res = await fetch(`http://127.0.0.1:${m.apiPort}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: name, input: 'standby' }) });
  const body = (await res.json()) as { data: Array<{ embedding: number[] }> };
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.data[0].embedding;
}

async function config(name: string, extra: string, models: string): Promise<string> {
  const sub = await mkdtemp(path.join(dir, `${name}-`));
  const file = path.join(sub, 'config.toml');
  await writeFile(file, `${loopbackConfig(sub)}${extra}\n${models}`);
  return file;
}

/** Sizes measured on this machine by the budget test (MiB). */
let sizes: { standbyMb: number; replicaMb: number } | undefined;

/** The same weights under another model_id (a model_id names one catalog model). */
async function copyOfModel(): Promise<string> {
  const copy = path.join(dir, 'model-copy');
  await cp(model, copy, { recursive: true, force: true });
  return copy;
}

const modelToml = (name: string, extra = '', id = model): string => `[[models]]\nname = "${name}"\nmodel_id = ${JSON.stringify(id)}\n${extra}\n`;

test('a standby child is started ahead, counted and shown; the next cold start takes it over and answers like a fresh child; a new standby follows; stop leaves no child', async () => {
  // Model "plain" can take a standby over; "own-env" (an env of its own) cannot: it gets a fresh child.
  const file = await config('takeover', 'standby_children = 1', modelToml('plain') + modelToml('own-env', 'env = { TEIPLEX_TEST_MARK = "1" }', await copyOfModel()));
  const m = await startManager(file);
  const pids: number[] = [];
  try {
    const sb = await readyStandby(m);
    pids.push(sb.pid);
    assert.match(sb.name, /^standby-cpu-\d+$/);
    const mem = await cpu(m);
    assert.ok(mem.used_mb >= sb.footprint_mb!, `the standby's ${sb.footprint_mb} MiB counted in used ${mem.used_mb}`);
    const metrics = String((await m.api('GET', '/metrics')).body);
    assert.match(metrics, /teiplex_standby_children\{device="cpu"\} 1/);

    const viaStandby = await embed(m, 'plain');
    const plain = (await m.api('GET', '/models/plain')).body;
    assert.equal(plain.replicas[0].pid, sb.pid, 'the replica is the standby process');
    assert.match(await readFile(path.join(path.dirname(file), 'logs', 'plain-1.log'), 'utf8'), /taken over by standby child standby-cpu-\d+/);

    // A fresh child of another model with the same weights answers the same.
    const fresh = await embed(m, 'own-env');
    const own = (await m.api('GET', '/models/own-env')).body;
    assert.notEqual(own.replicas[0].pid, sb.pid);
    pids.push(own.replicas[0].pid);
    assert.equal(viaStandby.length, fresh.length);
    for (let k = 0; k < fresh.length; k++) assert.ok(Math.abs(viaStandby[k] - fresh[k]) < 1e-5, `dim ${k}`);

    const next = await until('a new standby child', async () => (await cpu(m)).standby.find((s) => s.pid !== sb.pid));
    pids.push(next.pid);
  } finally {
    assert.equal(await m.stop(), 0);
  }
  for (const pid of pids) assert.equal(isAlive(pid), false, `pid ${pid} is gone after the manager's stop`);
});

test('a budget with no room for a standby next to the replica keeps none while the replica runs; unloading it makes room again', async () => {
  // Learn the sizes first: a standby's and a replica's footprint on this machine.
  const probe = await startManager(await config('sizes', 'standby_children = 1', modelToml('m')));
  let standbyMb: number;
  let replicaMb: number;
  try {
    standbyMb = (await readyStandby(probe)).footprint_mb!;
    await embed(probe, 'm');
    replicaMb = await until('a replica footprint', async () => (await probe.api('GET', '/models/m')).body.replicas[0]?.footprint_mb ?? undefined);
  } finally {
    await probe.stop();
  }
  sizes = { standbyMb, replicaMb };
  // Room for the replica (or a standby) alone, not for both.
  const budget = Math.max(standbyMb, replicaMb) * 1.4;
  const m = await startManager(await config('budget', `standby_children = 1\ncpu_memory_budget_mb = ${budget.toFixed(0)}`, modelToml('m', `memory_mb = ${Math.ceil(replicaMb)}`)));
  try {
    const sb = await readyStandby(m);
    await embed(m, 'm');
    assert.equal((await m.api('GET', '/models/m')).body.replicas[0].pid, sb.pid, 'the cold start took the standby over');
    // The replica holds the memory now: no standby is started next to it.
    // At the next footprint sample (every 5 s) the standbys are topped up: this one is refused.
    await until('a standby top-up refused for room', async () => (/no room for a standby child/.test(m.output()) ? true : undefined), 20_000);
    assert.deepEqual((await cpu(m)).standby, [], 'no standby beside the replica');
    assert.match(String((await m.api('GET', '/metrics')).body), /teiplex_standby_children\{device="cpu"\} 0/);
    assert.equal((await m.api('POST', '/models/m/unload')).status, 200);
    await until('a standby child again', async () => (await cpu(m)).standby[0], 20_000);
  } finally {
    await m.stop();
  }
});

test('a model that cannot take the standby over and has no room beside it: the standby is stopped first (no budget eviction counted)', async () => {
  assert.ok(sizes !== undefined, 'needs the sizes measured by the test before');
  const { standbyMb, replicaMb } = sizes;
  const budget = Math.max(standbyMb, replicaMb) * 1.4;
  // An env of its own: a fresh child, which needs the room the standby holds.
  const m = await startManager(await config('evict', `standby_children = 1\ncpu_memory_budget_mb = ${budget.toFixed(0)}`, modelToml('plain') + modelToml('own', `memory_mb = ${Math.ceil(replicaMb)}\nenv = { TEIPLEX_TEST_MARK = "1" }`, await copyOfModel())));
  try {
    const sb = await readyStandby(m);
    await embed(m, 'own');
    const own = (await m.api('GET', '/models/own')).body;
    assert.notEqual(own.replicas[0].pid, sb.pid, 'a fresh child');
    await until('the standby stopped', async () => (isAlive(sb.pid) ? undefined : true), 20_000);
    assert.match(m.output(), /stopping a standby child/);
    assert.doesNotMatch(String((await m.api('GET', '/metrics')).body), /teiplex_model_evictions_total\{[^}]*reason="budget"[^}]*\} [1-9]/);
  } finally {
    await m.stop();
  }
});

test('a manager killed (SIGKILL) leaves no standby child: its stdin closes and it exits by itself', async () => {
  const m = await startManager(await config('killed', 'standby_children = 1', modelToml('m')));
  const sb = await readyStandby(m);
  await m.stop('SIGKILL');
  await until('the standby gone', async () => (isAlive(sb.pid) ? undefined : true), 20_000);
});

test('the crash scan finds a standby child by its marker (instance standby-cpu-N) and stops it', async () => {
  const stateFile = path.join(dir, 'crash-state.toml');
  const pool = new StandbyPool({ stateFile, runtime: { teiBinaryPath: 'unused' }, managerEnv: process.env, gracefulMs: 5000, log: () => undefined });
  const c = pool.spawn('cpu')!;
  try {
    await until('the standby line', async () => (c.state === 'ready' ? true : undefined));
    // As a manager booting on the same state file sees it after a crash of the one that started it.
    const found = findMarked(stateFile);
    assert.deepEqual(
      found.map((f) => [f.pid, f.instance]),
      [[c.pid, c.name]],
    );
    assert.deepEqual(await reapOrphans(found, 5000), [c.name]);
    await c.exited;
  } finally {
    await pool.close();
  }
});
