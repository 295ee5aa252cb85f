/**
 * The catalog's sweep (src/catalog/sweep.ts) on a manual clock: idle replicas stopped only once
 * their idle timeout has passed, least recently used first, never below min_replicas; a model kept
 * at min_replicas, a failed start for it retried after KEEP_RETRY_MS; one replica more under
 * sustained queueing. The target is a small table of replicas; time moves by hand, nothing sleeps.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/common/manual-clock.js';
import { CatalogModel } from '../../src/catalog/catalog-model.js';
import { catalogSettings } from '../../src/catalog/reload.js';
import { KEEP_RETRY_MS, SWEEP_MS, Sweep, type SweepTarget } from '../../src/catalog/sweep.js';
import { resolveConfig } from '../../src/config/config.js';
import type { ModelSpec } from '../../src/config/model-spec.js';
import type { InstanceState } from '../../src/supervisor/instance-state.js';

const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

function world(clock: ManualClock, specs: ModelSpec[], config: Record<string, unknown> = {}) {
  const models = specs.map((s) => new CatalogModel(s, 'config', new Date(0).toISOString()));
  const replicas = new Map<string, Array<{ name: string; status: InstanceState }>>(models.map((m) => [m.name, []]));
  const inflight = new Map<string, number>();
  const lastUsed = new Map<string, number>();
  const log: string[] = [];
  const starts: string[] = [];
  let startResult: () => Promise<unknown> = async () => undefined;
  const target: SweepTarget = {
    models: () => models,
    replicas: (m) => replicas.get(m.name)!,
    inflight: (i) => inflight.get(i) ?? 0,
    lastUsed: (i) => lastUsed.get(i),
    settings: () => catalogSettings(resolveConfig({ idle_timeout_secs: 60, ...config }, {})),
    startLoad: (m) => {
      starts.push(m.name);
      const p = startResult().finally(() => (m.loading = undefined));
      m.loading = p as never;
      return p;
    },
    stopReplica: async (m, name) => {
      replicas.set(m.name, replicas.get(m.name)!.filter((r) => r.name !== name));
    },
    evicted: (model, reason) => log.push(`evict ${model} ${reason}`),
    changed: () => undefined,
    log: (msg) => log.push(msg),
  };
  const add = (model: string, name: string, status: InstanceState = 'running', usedAt = clock.now()): void => {
    replicas.get(model)!.push({ name, status });
    lastUsed.set(name, usedAt);
  };
  return { models, replicas, inflight, lastUsed, log, starts, target, add, failStarts: (f: () => Promise<unknown>) => (startResult = f) };
}

const names = (rs: Array<{ name: string }> | undefined): string[] => (rs ?? []).map((r) => r.name);

test('sweep: an idle replica is stopped once idle_timeout_secs has passed, not before; one in use never', async () => {
  const clock = new ManualClock();
  const w = world(clock, [{ model_id: 'org/a' }, { model_id: 'org/b', idle_timeout_secs: 5 }]);
  w.add('org-a', 'org-a-1');
  w.add('org-b', 'org-b-1');
  w.add('org-b', 'org-b-2');
  w.inflight.set('org-b-2', 1);
  const sweep = new Sweep(w.target, clock);
  sweep.start();
  clock.advance(4_900);
  await settle();
  assert.deepEqual(names(w.replicas.get('org-b')), ['org-b-1', 'org-b-2'], 'not idle long enough yet');
  clock.advance(SWEEP_MS);
  await settle();
  assert.deepEqual(names(w.replicas.get('org-b')), ['org-b-2'], "the model's own idle_timeout_secs (5 s); the one in use stays");
  assert.deepEqual(names(w.replicas.get('org-a')), ['org-a-1'], 'the default idle timeout (60 s) has not passed');
  clock.advance(55_000);
  await settle();
  assert.deepEqual(names(w.replicas.get('org-a')), []);
  assert.deepEqual(names(w.replicas.get('org-b')), ['org-b-2'], 'still in use: never stopped');
  assert.deepEqual(w.log.filter((l) => l.startsWith('evict')), ['evict org-b idle', 'evict org-a idle']);
  sweep.stop();
  assert.equal(clock.timers, 0, 'stop clears the timer');
  clock.advance(1e9);
});

test('sweep: min_replicas kept loaded (never stopped for idleness); a failed start waits KEEP_RETRY_MS before the next', async () => {
  const clock = new ManualClock();
  const w = world(clock, [{ model_id: 'org/p', min_replicas: 1 }]);
  w.failStarts(() => Promise.reject(new Error('no room')));
  const sweep = new Sweep(w.target, clock);
  sweep.start();
  await settle();
  assert.deepEqual(w.starts, ['org-p'], 'started at the first sweep');
  clock.advance(KEEP_RETRY_MS - SWEEP_MS);
  await settle();
  assert.deepEqual(w.starts, ['org-p'], 'not retried before KEEP_RETRY_MS');
  assert.ok(w.log.includes('could not keep min_replicas loaded'));
  clock.advance(SWEEP_MS);
  await settle();
  assert.deepEqual(w.starts, ['org-p', 'org-p']);
  // Loaded now, and idle for ever: kept.
  w.failStarts(async () => undefined);
  w.add('org-p', 'org-p-1', 'running', 0);
  clock.advance(3_600_000);
  await settle();
  assert.deepEqual(names(w.replicas.get('org-p')), ['org-p-1']);
  sweep.stop();
});

test('sweep: every replica queueing for scale_up_after_secs starts one more, up to max_replicas', async () => {
  const clock = new ManualClock();
  const w = world(clock, [{ model_id: 'org/q', max_replicas: 2 }], { scale_up_inflight: 4, scale_up_after_secs: 2 });
  w.add('org-q', 'org-q-1');
  w.inflight.set('org-q-1', 4);
  const sweep = new Sweep(w.target, clock);
  sweep.start();
  clock.advance(1_000);
  await settle();
  // The queue drains for a moment: the pressure starts again from zero.
  w.inflight.set('org-q-1', 3);
  clock.advance(SWEEP_MS);
  w.inflight.set('org-q-1', 4);
  clock.advance(1_800);
  await settle();
  assert.deepEqual(w.starts, [], 'not yet sustained for 2 s');
  clock.advance(500);
  await settle();
  assert.deepEqual(w.starts, ['org-q']);
  w.add('org-q', 'org-q-2');
  w.inflight.set('org-q-2', 9);
  clock.advance(10_000);
  await settle();
  assert.deepEqual(w.starts, ['org-q'], 'max_replicas reached');
  sweep.stop();
});

test('sweep: a pinned model (pinned = true) is never idle-stopped; an unpinned one beside it is', async () => {
  const clock = new ManualClock();
  const w = world(clock, [{ model_id: 'org/p', pinned: true, idle_timeout_secs: 5 }, { model_id: 'org/u', idle_timeout_secs: 5 }]);
  w.add('org-p', 'org-p-1');
  w.add('org-u', 'org-u-1');
  const sweep = new Sweep(w.target, clock);
  sweep.start();
  clock.advance(60_000);
  await settle();
  clock.advance(SWEEP_MS);
  await settle();
  assert.deepEqual(names(w.replicas.get('org-p')), ['org-p-1'], 'pinned: kept, idle for a minute');
  assert.deepEqual(names(w.replicas.get('org-u')), []);
  assert.deepEqual(w.log.filter((l) => l.startsWith('evict')), ['evict org-u idle']);
  assert.deepEqual(w.starts, [], 'pinned does not start anything by itself (unlike min_replicas)');
  sweep.stop();
});
