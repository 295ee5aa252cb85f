/**
 * The memory-budget planner's exact texts and boundaries (src/catalog/memory-budget.ts): the
 * refusal a caller reads (counts and MiB, never another instance's name), the one the log gets
 * (the holders named), a need that fits exactly, the budget sources, and the devices of GPU ids.
 * The properties of the plans themselves are in placement-properties.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deviceBudgets, devicesOf, planPlacement, type Resident } from '../../src/catalog/memory-budget.js';

const budget = { device: 'cpu', mb: 1000, source: 'cpu_memory_budget_mb' };
const r = (instance: string, mb: number, lastUsedMs: number, keep?: string): Resident => ({ instance, mb, lastUsedMs, keep });

test('planPlacement: a need that fits exactly, with or without evicting, is placed', () => {
  assert.deepEqual(planPlacement('m', 400, budget, [r('a', 600, 1)]), { ok: true, evict: [] });
  // 900 held, 100 free: evicting a (300) leaves exactly 400.
  const plan = planPlacement('m', 400, budget, [r('a', 300, 1), r('b', 600, 2, 'in use')]);
  assert.deepEqual(plan, { ok: true, evict: [r('a', 300, 1)] });
});

test('planPlacement: the refusal names counts and MiB for the caller, the holders for the log', () => {
  const plan = planPlacement('model m', 500, budget, [r('a', 300, 1, 'in use'), r('b', 300, 2, 'in use'), r('c', 300, 3, 'min_replicas')]);
  assert.equal(plan.ok, false);
  if (plan.ok) return;
  const head = 'model m needs ~500 MiB on cpu: the budget is 1000 MiB (cpu_memory_budget_mb) and 900 MiB are held by';
  assert.equal(plan.reason, `${head} 3 instances (2 in use, 1 min_replicas); nothing more can be evicted`);
  assert.equal(plan.detail, `${head} a (300 MiB, in use), b (300 MiB, in use), c (300 MiB, min_replicas); nothing more can be evicted`);
  for (const name of ['a (', 'b (', 'c (']) assert.ok(!plan.reason.includes(name), 'the caller is not told other instances');
  // One holder, kept: singular.
  const one = planPlacement('m', 980, budget, [r('x', 50, 1, 'in use')]);
  assert.equal(one.ok, false);
  if (!one.ok) assert.equal(one.reason, 'm needs ~980 MiB on cpu: the budget is 1000 MiB (cpu_memory_budget_mb) and 50 MiB are held by 1 instance (1 in use); nothing more can be evicted');
  // Evicting the evictable one is not enough: plural, the kept one counted.
  const small = { ...budget, mb: 100 };
  const none = planPlacement('m', 100, small, [r('y', 60, 1, 'in use'), r('z', 30, 2)]);
  assert.equal(none.ok, false);
  if (!none.ok) assert.match(none.reason, /held by 2 instances \(1 in use\); nothing more can be evicted$/);
  // More than the whole budget: said at once, whatever is held.
  const whole = planPlacement('m', 1001, budget, []);
  assert.deepEqual(whole, {
    ok: false,
    wait: false,
    reason: 'm needs ~1001 MiB on cpu, more than its whole budget of 1000 MiB (cpu_memory_budget_mb)',
    detail: 'm needs ~1001 MiB on cpu, more than its whole budget of 1000 MiB (cpu_memory_budget_mb)',
  });
});

test('deviceBudgets: the configured budget, else total minus reserve, else unknown; sources named', () => {
  const unset = { cpu_memory_budget_mb: undefined, cpu_memory_reserve_mb: 512, gpu_memory_budget_mb: undefined, gpu_memory_reserve_mb: 1024 };
  const gpus = [
    { index: 0, memory_total_mib: 81920 },
    { index: 1, memory_total_mib: null },
  ] as never;
  assert.deepEqual(
    [...deviceBudgets(unset, gpus, 16384).values()],
    [
      { device: 'cpu', mb: 15872, source: 'host memory minus cpu_memory_reserve_mb' },
      { device: 'gpu0', mb: 80896, source: 'GPU memory minus gpu_memory_reserve_mb' },
      { device: 'gpu1', mb: Infinity, source: 'GPU memory unknown' },
    ],
  );
  const set = { ...unset, cpu_memory_budget_mb: 2000, gpu_memory_budget_mb: 3000 };
  assert.deepEqual(
    [...deviceBudgets(set, gpus, 16384).values()],
    [
      { device: 'cpu', mb: 2000, source: 'cpu_memory_budget_mb' },
      { device: 'gpu0', mb: 3000, source: 'gpu_memory_budget_mb' },
      { device: 'gpu1', mb: 3000, source: 'gpu_memory_budget_mb' },
    ],
  );
});

test('devicesOf: no GPU ids is the CPU; each GPU id its own device', () => {
  assert.deepEqual(devicesOf([]), ['cpu']);
  assert.deepEqual(devicesOf([0, 3]), ['gpu0', 'gpu3']);
});
