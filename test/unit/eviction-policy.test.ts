/**
 * Waiting for memory, fairly: the pure planner (src/catalog/eviction-policy.ts, used by
 * memory-budget.ts planPlacement), the request rate behind the cost (request-rate.ts) and the
 * memory queue's order (memory-queue.ts, on a manual clock). No processes: every input is a value.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { heldForNow, nextWaiter, queueRefusal, reloadCost, victimOrder, worthWaiting, type Holder } from '../../src/catalog/eviction-policy.js';
import { planPlacement } from '../../src/catalog/memory-budget.js';
import { MemoryQueue } from '../../src/catalog/memory-queue.js';
import { decayedRate, RATE_TAU_SECS, RequestRates } from '../../src/catalog/request-rate.js';
import type { Clock, TimerHandle } from '../../src/common/clock.js';

const budget = { device: 'gpu0', mb: 2000, source: 'gpu_memory_budget_mb' };
const NOW = 1_000_000;
const h = (instance: string, more: Partial<Holder> = {}): Holder => ({ instance, mb: 1000, lastUsedMs: 0, loadSecs: 1, ratePerSec: 0, ...more });

test('cost-weighted victim: the lowest load time x request rate goes, even when it is the most recently used', () => {
  // a: slow to load and busy (cost 8 x 0.5 = 4); b: quick and rarely used (cost 1 x 0.1 = 0.1), used last.
  const a = h('a', { loadSecs: 8, ratePerSec: 0.5, lastUsedMs: 10 });
  const b = h('b', { loadSecs: 1, ratePerSec: 0.1, lastUsedMs: 20 });
  assert.equal(reloadCost(a), 4);
  assert.deepEqual(victimOrder([a, b], NOW).map((x) => x.instance), ['b', 'a']);
  const plan = planPlacement('starting model c', 1000, budget, [a, b], NOW);
  assert.deepEqual(plan.ok && plan.evict.map((x) => x.instance), ['b']);
  // Same load time, the busier model stays.
  const quiet = h('quiet', { loadSecs: 2, ratePerSec: 0.01, lastUsedMs: 30 });
  const busy = h('busy', { loadSecs: 2, ratePerSec: 3, lastUsedMs: 1 });
  assert.deepEqual(victimOrder([busy, quiet], NOW).map((x) => x.instance), ['quiet', 'busy']);
});

test('equal costs: least recently used first; standby children before any replica', () => {
  const older = h('older', { lastUsedMs: 5 });
  const newer = h('newer', { lastUsedMs: 9 });
  const standby = h('standby-cpu-1', { standby: true, lastUsedMs: -1, loadSecs: undefined });
  // busy: a small cost (0.01), but more than the others' (no recent requests): after them.
  const busy = h('busy', { loadSecs: 0.1, ratePerSec: 0.1, lastUsedMs: 1 });
  assert.deepEqual(victimOrder([newer, older, busy, standby], NOW).map((x) => x.instance), ['standby-cpu-1', 'older', 'newer', 'busy']);
});

test('minimum residency: a replica loaded less than min_resident_secs ago is not a victim; after it, it is', () => {
  const fresh = h('fresh', { loadedAtMs: NOW - 3000, minResidentSecs: 5 });
  assert.match(heldForNow(fresh, NOW) ?? '', /loaded 3\.0 s ago \(min_resident_secs 5\)/);
  const plan = planPlacement('starting model c', 1500, budget, [fresh, h('other', { inflight: 1 })], NOW);
  assert.equal(plan.ok, false);
  assert.ok(!plan.ok && plan.wait, 'room comes once the residency ends: wait');
  assert.ok(!plan.ok && /1 loaded 3\.0 s ago \(min_resident_secs 5\)/.test(plan.reason), !plan.ok ? plan.reason : '');
  // Two seconds later (5 s since its load) it may go.
  const later = planPlacement('starting model c', 1000, budget, [fresh, h('other', { inflight: 1 })], NOW + 2000);
  assert.deepEqual(later.ok && later.evict.map((x) => x.instance), ['fresh']);
  // min_resident_secs 0: no residency at all.
  assert.equal(heldForNow(h('x', { loadedAtMs: NOW, minResidentSecs: 0 }), NOW), undefined);
});

test('pinned (and anything kept for good): never a victim, counts against the budget, and a start that needs its room is refused at once', () => {
  const pinned = h('pinned', { keep: 'pinned', lastUsedMs: 0 });
  const idle = h('idle', { lastUsedMs: 100 });
  assert.deepEqual(victimOrder([pinned, idle], NOW).map((x) => x.instance), ['idle']);
  const plan = planPlacement('starting model c', 1000, budget, [pinned, idle], NOW);
  assert.deepEqual(plan.ok && plan.evict.map((x) => x.instance), ['idle']);
  // 1500 needed, 1000 held for good by the pinned model: never fits, do not wait.
  const refused = planPlacement('starting model c', 1500, budget, [pinned, idle], NOW);
  assert.ok(!refused.ok && !refused.wait);
  assert.ok(!refused.ok && /1 pinned/.test(refused.reason));
  assert.equal(worthWaiting(1500, 2000, [pinned, idle]), false);
  assert.equal(worthWaiting(1000, 2000, [pinned, idle]), true);
});

test('in use or starting: held for now, so a start that needs the room waits (does not fail)', () => {
  const inUse = h('a', { inflight: 2 });
  const starting = h('b', { starting: true });
  assert.match(heldForNow(inUse, NOW) ?? '', /in use: 2 requests/);
  assert.equal(heldForNow(starting, NOW), 'starting');
  const plan = planPlacement('starting model c', 1000, budget, [inUse, starting], NOW);
  assert.ok(!plan.ok && plan.wait);
  // More than the whole budget: refused, never waits.
  const huge = planPlacement('starting model c', 2500, budget, [inUse], NOW);
  assert.ok(!huge.ok && !huge.wait && /more than its whole budget/.test(huge.reason));
});

test('longest waiter first: the model waiting longest is placed next, ties by name', () => {
  assert.equal(nextWaiter([]), undefined);
  const ws = [
    { model: 'c', sinceMs: 30 },
    { model: 'b', sinceMs: 10 },
    { model: 'a', sinceMs: 20 },
  ];
  assert.equal(nextWaiter(ws)?.model, 'b');
  assert.equal(nextWaiter([{ model: 'z', sinceMs: 5 }, { model: 'y', sinceMs: 5 }])?.model, 'y');
});

test('memory queue: only the longest-waiting model may evict; a newcomer waits behind it; leaving hands the turn on', async () => {
  let now = 0;
  const timers: Array<() => void> = [];
  const clock: Clock = { now: () => now, setTimeout: (fn) => (timers.push(fn), timers.length as unknown as TimerHandle), clearTimeout: () => undefined } as Clock;
  const q = new MemoryQueue(clock);
  assert.equal(q.mayEvict('a'), true, 'nobody waits: anyone may evict');
  void q.wait('a', 'no room for a');
  now = 10;
  void q.wait('b', 'no room for b');
  assert.equal(q.mayEvict('a'), true);
  assert.equal(q.mayEvict('b'), false);
  assert.equal(q.mayEvict('c'), false, 'a model not yet waiting is behind those that do');
  // a waits again (a retry): it keeps its place.
  now = 20;
  void q.wait('a', 'still no room for a');
  assert.deepEqual(q.list().map((w) => [w.model, w.sinceMs, w.reason]), [['a', 0, 'still no room for a'], ['b', 10, 'no room for b']]);
  q.leave('a');
  assert.equal(q.mayEvict('b'), true);
  assert.equal(q.reason('a'), undefined);
  assert.equal(timers.length, 3, 'each wait is one retry tick');
});

test('queue bound: requests per model (cold_start_queue_size) and waiting bytes (cold_start_queue_mb) name the key passed', () => {
  const base = { waitingForModel: 0, queueSize: 3, waitingBytes: 0, bytes: 100, queueMb: 1 };
  assert.equal(queueRefusal(base), undefined);
  assert.equal(queueRefusal({ ...base, waitingForModel: 3 }), 'cold_start_queue_size');
  assert.equal(queueRefusal({ ...base, waitingBytes: 1024 * 1024 - 100 }), undefined, 'exactly at the bound fits');
  assert.equal(queueRefusal({ ...base, waitingBytes: 1024 * 1024 - 99 }), 'cold_start_queue_mb');
  assert.equal(queueRefusal({ ...base, bytes: 0, waitingBytes: 5 * 1024 * 1024 }), undefined, 'a request without a body is bounded by count only');
});

test('recent request rate: decays with a 60 s time constant; a reused replica name counts from zero', () => {
  assert.equal(RATE_TAU_SECS, 60);
  assert.ok(Math.abs(decayedRate(1, 60, 0) - 1 / Math.E) < 1e-12);
  const r = new RequestRates();
  r.observe('m', [{ instance: 'm-1', begun: 0 }], 0);
  r.observe('m', [{ instance: 'm-1', begun: 60 }], 1000);
  assert.ok(Math.abs(r.rate('m', 1000) - 1) < 1e-3, String(r.rate('m', 1000)));
  assert.ok(Math.abs(r.rate('m', 61_000) - Math.exp(-1)) < 1e-3);
  // m-1 stopped and a new m-1 began 5 requests: 5 more, not -55.
  r.observe('m', [{ instance: 'm-1', begun: 5 }], 61_000);
  assert.equal(r.requests('m'), 65);
  assert.equal(r.rate('never', 0), 0);
});

test('preemption (memory_wait_preempt_secs passed): a busy replica past its residency may go, after every idle one; never one requests wait for, one just loaded, or a pinned one', () => {
  const idle = h('idle', { lastUsedMs: 1 });
  const busyCheap = h('busy-cheap', { inflight: 1, loadSecs: 1, ratePerSec: 0.5 });
  const busyDear = h('busy-dear', { inflight: 1, loadSecs: 4, ratePerSec: 2 });
  const awaited = h('awaited', { inflight: 3, waiting: 3 });
  const fresh = h('fresh', { inflight: 1, loadedAtMs: NOW - 1000, minResidentSecs: 5 });
  const pinned = h('pinned', { inflight: 1, keep: 'pinned' });
  const all = [busyDear, awaited, fresh, pinned, busyCheap, idle];
  assert.deepEqual(victimOrder(all, NOW).map((x) => x.instance), ['idle'], 'without preemption: idle ones only');
  assert.deepEqual(victimOrder(all, NOW, true).map((x) => x.instance), ['idle', 'busy-cheap', 'busy-dear']);
  const plan = planPlacement('starting model c', 1000, { ...budget, mb: 6000 }, all, NOW, true);
  assert.deepEqual(plan.ok && plan.evict.map((x) => x.instance), ['idle']);
  const two = planPlacement('starting model c', 2000, { ...budget, mb: 6000 }, all, NOW, true);
  assert.deepEqual(two.ok && two.evict.map((x) => x.instance), ['idle', 'busy-cheap']);
  const none = planPlacement('starting model c', 2000, { ...budget, mb: 6000 }, all, NOW, false);
  assert.ok(!none.ok && none.wait, 'without preemption the start waits');
});
