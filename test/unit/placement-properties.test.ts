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

/**
 * Placement (src/catalog/placement.ts) composes planPlacement per device. Faked here: the
 * supervisor, the replicas and the usage counters (in-memory objects with just what placement
 * reads), the GPUs (a list instead of nvidia-smi). Property: the device chosen is one where the
 * plan fits, a device the model has no replica on yet when such a one fits, then the fewest
 * evictions; exactly that plan's residents are stopped; nothing fits: MEMORY_BUDGET_EXCEEDED.
 */
test('Placement.placeAndCreate (faked supervisor, replicas and GPUs): a fitting device, new devices first, then fewest evictions; evicts exactly its plan; none fits: MEMORY_BUDGET_EXCEEDED', async () => {
  const { Placement } = await import('../../src/catalog/placement.js');
  const holder = fc.record({
    gpu: fc.integer({ min: 0, max: 2 }),
    mb: fc.integer({ min: 0, max: 8 }).map((k) => k * 500),
    lastUsed: fc.integer({ min: 0, max: 100 }),
    owner: fc.constantFrom('m', 'other', 'pinned', undefined),
    inflight: fc.constantFrom(0, 0, 1),
  });
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.integer({ min: 1, max: 8 }).map((k) => k * 500),
        { minLength: 1, maxLength: 3 },
      ),
      fc.array(holder, { maxLength: 6 }),
      fc.integer({ min: 1, max: 6 }).map((k) => k * 500),
      async (totals, holders, need) => {
        const gpus = totals.map((t, index) => ({
          index,
          uuid: `u${index}`,
          name: 'fake',
          memory_total_mib: t,
          memory_used_mib: null,
          utilization_percent: null,
        }));
        const instances = holders
          .filter((h) => h.gpu < totals.length)
          .map((h, i) => ({ ...h, name: `${h.owner ?? 'outside'}-${i + 1}`, status: 'running', placement: { gpuIds: [h.gpu] } }));
        const settings = { default_memory_mb: need, standby_children: 0, gpu_memory_reserve_mb: 0, cpu_memory_reserve_mb: 0, cpu_memory_budget_mb: 1e9 };
        const models = new Map(
          ['m', 'other', 'pinned'].map((name) => [
            name,
            { name, pinned: name === 'pinned' ? 99 : 0, spec: { model_id: name, gpu_ids: gpus.map((g) => g.index) }, expectedMb: () => need },
          ]),
        );
        const stopped: string[] = [];
        let createdOn: number | undefined;
        const placement = new Placement({
          supervisor: {
            gpus: async () => ({ gpus }),
            list: () => instances,
            find: (name: string) => instances.find((i) => i.name === name),
            ownerOf: (name: string) => instances.find((i) => i.name === name)?.owner,
            standby: { list: () => [], footprints: new Map() },
            standbyFor: () => undefined,
          },
          inflight: {
            get: (n: string) => instances.find((i) => i.name === n)?.inflight ?? 0,
            lastUsed: (n: string) => instances.find((i) => i.name === n)?.lastUsed,
          },
          replicas: {
            readyAt: new Map(),
            footprints: new Map(instances.map((i) => [i.name, i.mb])),
            of: (m: { name: string }) => instances.filter((i) => i.owner === m.name),
            stop: async (_m: unknown, name: string) => void stopped.push(name),
            create: async (_m: unknown, spec: { gpu_id?: number }) => {
              createdOn = spec.gpu_id;
              return { instance: {}, ready: Promise.resolve() };
            },
          },
          model: (name: string) => models.get(name),
          models: () => models.values(),
          settings: () => settings,
          evicted: () => undefined,
          rate: () => 0,
          log: () => undefined,
        } as never);
        // The oracle: each device's plan on its own (planPlacement, checked above).
        const plans = gpus.map((g) => {
          const residents = instances
            .filter((i) => i.gpu === g.index)
            .map((i) => ({
              instance: i.name,
              mb: i.mb,
              lastUsedMs: i.lastUsed,
              keep: i.owner === undefined || i.owner === 'pinned' || i.inflight > 0 ? 'kept' : undefined,
            }));
          return {
            gpu: g.index,
            hasReplica: instances.some((i) => i.owner === 'm' && i.gpu === g.index),
            plan: planPlacement('x', need, { device: `gpu${g.index}`, mb: g.memory_total_mib, source: 's' }, residents),
          };
        });
        const fitting = plans.filter((p) => p.plan.ok);
        let outcome: unknown;
        try {
          await placement.placeAndCreate(models.get('m') as never);
        } catch (err) {
          outcome = err;
        }
        if (fitting.length === 0) {
          assert.equal((outcome as { code?: string })?.code, 'MEMORY_BUDGET_EXCEEDED', String(outcome));
          assert.deepEqual(stopped, []);
          return;
        }
        assert.equal(outcome, undefined, String(outcome));
        const chosen = plans.find((p) => p.gpu === createdOn);
        assert.ok(chosen?.plan.ok, `created on gpu${createdOn}, where the plan does not fit`);
        if (fitting.some((p) => !p.hasReplica)) assert.equal(chosen.hasReplica, false, 'a device without a replica of the model fits: it is preferred');
        const evictions = (p: (typeof plans)[number]) => (p.plan.ok ? p.plan.evict.length : Infinity);
        const sameTier = fitting.filter((p) => p.hasReplica === chosen.hasReplica);
        assert.equal(evictions(chosen), Math.min(...sameTier.map(evictions)), 'then the fewest evictions');
        assert.deepEqual([...stopped].sort(), chosen.plan.ok ? chosen.plan.evict.map((r) => r.instance).sort() : [], 'exactly the plan is evicted');
      },
    ),
    { seed: 9108, numRuns: 300 },
  );
});
