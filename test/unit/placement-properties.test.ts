/**
 * Properties of the memory-budget planner (src/catalog/memory-budget.ts planPlacement, which
 * src/catalog/placement.ts runs for every start and every over-budget check), fast-check with
 * fixed seeds and bounded runs, against what docs/on-demand.md ("Memory budgets") promises:
 * a start that fits evicts nothing; otherwise the least recently used evictable residents are
 * evicted until it fits, never one that is kept (in use, starting, min_replicas, outside the
 * catalog); standby children (lastUsedMs -1) go first; when evicting everything evictable cannot
 * make room, the plan refuses, naming the device and the budget's source, and the caller's text
 * names no other instance.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { deviceBudgets, heldMb, planPlacement, type Budget, type Resident } from '../../src/catalog/memory-budget.js';

/** MiB: any integer, or a multiple of 250 (so that exact fits, free == need, come up often). */
const mb = (max: number) =>
  fc.oneof(
    fc.integer({ min: 0, max }),
    fc.integer({ min: 0, max: max / 250 }).map((k) => k * 250),
  );
const resident = (i: number, size = mb(4000)) =>
  fc
    .record({
      mb: size,
      lastUsedMs: fc.integer({ min: -1, max: 1000 }),
      keep: fc.option(fc.constantFrom('in use: 1 request in flight', 'starting', 'min_replicas 1', 'an instance outside the catalog'), {
        nil: undefined,
        freq: 3,
      }),
    })
    .map((r): Resident => ({ instance: `secret-${i}`, ...r, ...(r.keep === undefined ? {} : { keep: r.keep }) }));
const residentsOf = (size?: fc.Arbitrary<number>) =>
  fc.integer({ min: 0, max: 8 }).chain((n) => fc.tuple(...Array.from({ length: n }, (_, i) => resident(i, size))));
const residents = residentsOf();
const budget = fc.record({
  device: fc.constantFrom('cpu', 'gpu0', 'gpu3'),
  mb: mb(16000),
  source: fc.constantFrom('gpu_memory_budget_mb', 'cpu_memory_budget_mb'),
});
const need = mb(8000);
const lru = (rs: readonly Resident[]) => rs.filter((r) => r.keep === undefined).sort((a, b) => a.lastUsedMs - b.lastUsedMs);

test('planPlacement: an ok plan fits: held - evicted + need <= budget, and evicts nothing when it fits already', () => {
  fc.assert(
    fc.property(need, budget, residents, (n, b, rs) => {
      const plan = planPlacement('starting model m', n, b, rs);
      if (!plan.ok) return;
      assert.ok(heldMb(rs) - heldMb(plan.evict) + n <= b.mb, `${heldMb(rs)} - ${heldMb(plan.evict)} + ${n} > ${b.mb}`);
      if (heldMb(rs) + n <= b.mb) assert.deepEqual(plan.evict, []);
    }),
    { seed: 9101, numRuns: 1000 },
  );
});

test('planPlacement: it evicts only evictable residents, each once, and never one with a keep reason', () => {
  fc.assert(
    fc.property(need, budget, residents, (n, b, rs) => {
      const plan = planPlacement('starting model m', n, b, rs);
      if (!plan.ok) return;
      assert.equal(new Set(plan.evict).size, plan.evict.length);
      for (const r of plan.evict) {
        assert.ok(rs.includes(r), 'a resident of the device');
        assert.equal(r.keep, undefined, `${r.instance} is kept (${r.keep})`);
      }
    }),
    { seed: 9102, numRuns: 1000 },
  );
});

test('planPlacement: the evicted are the least recently used evictable residents (standby children, lastUsedMs -1, first), and no more than needed', () => {
  const lruAndMinimal = (n: number, b: Budget, rs: Resident[]): void => {
    const plan = planPlacement('starting model m', n, b, rs);
    if (!plan.ok || plan.evict.length === 0) return;
    const newest = Math.max(...plan.evict.map((r) => r.lastUsedMs));
    for (const r of lru(rs)) {
      if (!plan.evict.includes(r)) assert.ok(r.lastUsedMs >= newest, `${r.instance} (last used ${r.lastUsedMs}) kept while one used at ${newest} goes`);
    }
    // Minimal: without the last one evicted, it would not fit.
    const fewer = plan.evict.slice(0, -1);
    assert.ok(heldMb(rs) - heldMb(fewer) + n > b.mb, `the last eviction was needed: ${JSON.stringify({ n, b, rs, evict: plan.evict })}`);
  };
  fc.assert(fc.property(need, budget, residents, lruAndMinimal), { seed: 9103, numRuns: 1000 });
  // Coarse sizes (steps of 500 MiB): exact fits, room == need after some evictions, come up all the time.
  const step = (max: number) => fc.integer({ min: 0, max }).map((k) => k * 500);
  fc.assert(
    fc.property(
      step(16),
      budget.chain((b) => step(32).map((m) => ({ ...b, mb: m }))),
      residentsOf(step(8)),
      lruAndMinimal,
    ),
    { seed: 9107, numRuns: 1000 },
  );
});

test('planPlacement: refuses exactly when evicting every evictable resident cannot make room; the reason names the device, budget and source but no instance', () => {
  fc.assert(
    fc.property(need, budget, residents, (n, b, rs) => {
      const plan = planPlacement("starting model 'm'", n, b, rs);
      const kept = heldMb(rs.filter((r) => r.keep !== undefined));
      assert.equal(plan.ok, kept + n <= b.mb, `kept ${kept} + need ${n} vs budget ${b.mb}`);
      if (plan.ok) return;
      assert.ok(plan.reason.includes(` on ${b.device}`) && plan.reason.includes(`(${b.source})`), plan.reason);
      assert.ok(plan.reason.includes(`${Math.round(b.mb)} MiB`), plan.reason);
      assert.doesNotMatch(plan.reason, /secret-/, 'the caller may hold a restricted key: no instance named');
      if (n <= b.mb) for (const r of rs) assert.ok(plan.detail.includes(r.instance), 'the log names every holder');
    }),
    { seed: 9104, numRuns: 1000 },
  );
});

test('planPlacement with need 0 (the over-budget check): ok with nothing to evict whenever the device is within its budget', () => {
  fc.assert(
    fc.property(budget, residents, (b, rs) => {
      const plan = planPlacement('keeping within the budget', 0, b, rs);
      if (heldMb(rs) <= b.mb) assert.deepEqual(plan, { ok: true, evict: [] });
      else if (plan.ok) assert.ok(plan.evict.length > 0);
    }),
    { seed: 9105, numRuns: 500 },
  );
});

test('deviceBudgets: a budget per device (cpu and each listed GPU); a configured budget wins, else total minus reserve, else Infinity for a GPU of unknown memory', () => {
  const settings = fc.record({
    cpu_memory_budget_mb: fc.option(fc.integer({ min: 1, max: 1e6 }), { nil: undefined }),
    cpu_memory_reserve_mb: fc.integer({ min: 0, max: 4096 }),
    gpu_memory_budget_mb: fc.option(fc.integer({ min: 1, max: 1e6 }), { nil: undefined }),
    gpu_memory_reserve_mb: fc.integer({ min: 0, max: 4096 }),
  });
  const gpus = fc.uniqueArray(
    fc.record({ index: fc.integer({ min: 0, max: 15 }), memory_total_mib: fc.option(fc.integer({ min: 1, max: 200_000 }), { nil: null }) }),
    { selector: (g) => g.index, maxLength: 8 },
  );
  fc.assert(
    fc.property(settings, gpus, fc.integer({ min: 1, max: 1e6 }), (s, gs, hostMb) => {
      const out = deviceBudgets(s, gs as never, hostMb);
      assert.deepEqual([...out.keys()].sort(), ['cpu', ...gs.map((g) => `gpu${g.index}`)].sort());
      const cpu = out.get('cpu') as Budget;
      assert.equal(cpu.mb, s.cpu_memory_budget_mb ?? hostMb - s.cpu_memory_reserve_mb);
      for (const g of gs) {
        const got = out.get(`gpu${g.index}`) as Budget;
        const want = s.gpu_memory_budget_mb ?? (g.memory_total_mib === null ? Infinity : g.memory_total_mib - s.gpu_memory_reserve_mb);
        assert.equal(got.mb, want);
      }
    }),
    { seed: 9106, numRuns: 300 },
  );
});
