/**
 * src/catalog/placement.ts's own decisions, on a faked supervisor, replica set and standby pool
 * (no process is started; planPlacement itself has its properties in placement-properties.test.ts):
 * what holds memory on a device and why a replica is kept (docs/on-demand.md "Memory budgets":
 * in use, not serving, min_replicas / on_demand = false, outside the catalog), the standby
 * children kept within the budget (`standby_children`), an over-budget device brought back under
 * it, and a replica's name and its standby take-over at a cold start.
 */
import { heldForNow } from '../../src/catalog/eviction-policy.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Placement, STANDBY_ESTIMATE_MB } from '../../src/catalog/placement.js';

interface FakeInstance {
  name: string;
  status: string;
  gpu?: number;
  owner?: string;
  inflight?: number;
  lastUsed?: number;
  mb?: number;
}

interface FakeStandby {
  name: string;
  device: string;
}

interface World {
  instances: FakeInstance[];
  models: Map<string, { name: string; spec: Record<string, unknown>; pinned: number; expectedMb(fallback: number): number }>;
  standby: FakeStandby[];
  standbyFootprints: Map<string, number>;
  settings: Record<string, unknown>;
  usable: boolean;
  /** What happened, in order. */
  events: string[];
  logs: Array<{ msg: string; fields?: Record<string, unknown> }>;
}

function model(name: string, o: { pinned?: number; memory?: number; onDemand?: boolean; gpuIds?: number[] } = {}) {
  return {
    name,
    spec: { name, model_id: `org/${name}`, ...(o.onDemand === false ? { on_demand: false } : {}), ...(o.gpuIds !== undefined ? { gpu_ids: o.gpuIds } : {}) },
    pinned: o.pinned ?? 0,
    expectedMb: (fallback: number) => o.memory ?? fallback,
  };
}

function world(partial: Partial<World> = {}): World {
  return {
    instances: [],
    models: new Map(),
    standby: [],
    standbyFootprints: new Map(),
    settings: { default_memory_mb: 1000, standby_children: 0, cpu_memory_budget_mb: 10_000, gpu_memory_reserve_mb: 0, cpu_memory_reserve_mb: 0 },
    usable: true,
    events: [],
    logs: [],
    ...partial,
  };
}

function placementOf(w: World): Placement {
  let spawned = 0;
  const instance = (i: FakeInstance) => ({ name: i.name, status: i.status, placement: { gpuIds: i.gpu === undefined ? [] : [i.gpu] }, spec: {} });
  return new Placement({
    supervisor: {
      gpus: async () => ({ gpus: [{ index: 0, memory_total_mib: 8000 }] }),
      list: () => w.instances.map(instance),
      find: (name: string) => {
        const i = w.instances.find((x) => x.name === name);
        return i === undefined ? undefined : instance(i);
      },
      ownerOf: (name: string) => w.instances.find((i) => i.name === name)?.owner,
      standbyFor: () => w.standby.find((s) => s.device === 'cpu'),
      standbyUsable: () => w.usable,
      standby: {
        list: (device?: string) => w.standby.filter((s) => device === undefined || s.device === device),
        footprints: w.standbyFootprints,
        stop: async (c: FakeStandby, why: string) => {
          w.standby = w.standby.filter((s) => s !== c);
          w.events.push(`stop standby ${c.name}: ${why}`);
        },
        spawn: (device: string) => {
          const c = { name: `standby-${device}-${++spawned}`, device };
          w.standby.push(c);
          w.events.push(`spawn standby on ${device}`);
          return c;
        },
        take: (c: FakeStandby) => {
          w.standby = w.standby.filter((s) => s !== c);
          w.events.push(`take standby ${c.name}`);
          return c;
        },
      },
    },
    inflight: {
      get: (n: string) => w.instances.find((i) => i.name === n)?.inflight ?? 0,
      lastUsed: (n: string) => w.instances.find((i) => i.name === n)?.lastUsed,
    },
    replicas: {
      readyAt: new Map<string, number>(),
      get footprints() {
        return new Map(w.instances.filter((i) => i.mb !== undefined).map((i) => [i.name, i.mb!]));
      },
      of: (m: { name: string }) => w.instances.filter((i) => i.owner === m.name).map(instance),
      stop: async (m: { name: string }, name: string) => {
        w.instances = w.instances.filter((i) => i.name !== name);
        w.events.push(`stop ${name} of ${m.name}`);
      },
      create: async (m: { name: string }, spec: { name: string; gpu_id?: number }, standby?: FakeStandby) => {
        w.events.push(`create ${spec.name}${standby !== undefined ? ` from ${standby.name}` : ''}`);
        w.instances.push({ name: spec.name, status: 'starting', owner: m.name });
        return { instance: {}, ready: new Promise<void>(() => undefined) };
      },
    },
    model: (name: string) => w.models.get(name),
    models: () => w.models.values(),
    settings: () => w.settings,
    evicted: (m: string, reason: string) => void w.events.push(`evicted ${m} (${reason})`),
    rate: () => 0,
    log: (msg: string, fields?: Record<string, unknown>) => void w.logs.push({ msg, fields }),
  } as never);
}

test('residents: each instance with a process on the device, its footprint (measured, else the model estimate, else 0) and why it is kept', () => {
  const w = world({
    models: new Map([
      ['a', model('a', { memory: 700 })],
      ['p', model('p', { pinned: 1 })],
      ['f', model('f', { pinned: 1, onDemand: false })],
    ]),
    instances: [
      { name: 'a-1', status: 'running', owner: 'a', lastUsed: 50 },
      { name: 'a-2', status: 'running', owner: 'a', inflight: 1, mb: 640 },
      { name: 'a-3', status: 'running', owner: 'a', inflight: 3, mb: 10 },
      { name: 'a-4', status: 'starting', owner: 'a' },
      { name: 'a-5', status: 'stopped', owner: 'a' },
      { name: 'a-6', status: 'running', owner: 'a', gpu: 0 },
      { name: 'p-1', status: 'running', owner: 'p' },
      { name: 'f-1', status: 'running', owner: 'f' },
      { name: 'static', status: 'running' },
    ],
  });
  const rs = placementOf(w).residents('cpu');
  const by = new Map(rs.map((r) => [r.instance, r]));
  assert.deepEqual([...by.keys()], ['a-1', 'a-2', 'a-3', 'a-4', 'p-1', 'f-1', 'static'], 'a stopped one and one on gpu0 hold nothing on the CPU');
  const { instance, mb, lastUsedMs, keep, inflight, starting } = by.get('a-1')!;
  assert.deepEqual({ instance, mb, lastUsedMs, keep, inflight, starting }, { instance: 'a-1', mb: 700, lastUsedMs: 50, keep: undefined, inflight: 0, starting: false });
  assert.equal(by.get('a-2')?.mb, 640, 'the measured footprint wins over the estimate');
  // In use and starting are held for now (eviction-policy.ts heldForNow), not for good.
  assert.deepEqual([by.get('a-2')?.keep, by.get('a-2')?.inflight], [undefined, 1]);
  assert.equal(heldForNow(by.get('a-2')!, 0), 'in use: 1 request in flight or waiting');
  assert.equal(heldForNow(by.get('a-3')!, 0), 'in use: 3 requests in flight or waiting');
  assert.equal(heldForNow(by.get('a-4')!, 0), 'starting', 'a replica that cannot serve yet is not evicted');
  assert.equal(by.get('a-4')?.lastUsedMs, 0, 'never used: 0');
  assert.equal(by.get('p-1')?.keep, 'min_replicas 1');
  assert.equal(by.get('f-1')?.keep, 'on_demand = false');
  assert.equal(by.get('f-1')?.mb, 1000, 'no estimate: default_memory_mb');
  assert.deepEqual([by.get('static')?.mb, by.get('static')?.keep], [0, 'an instance outside the catalog']);
  assert.deepEqual(
    placementOf(w)
      .residents('gpu0')
      .map((r) => r.instance),
    ['a-6'],
  );
});

test('residents: a pinned model above its min_replicas may lose the replicas beyond it', () => {
  const w = world({
    models: new Map([['p', model('p', { pinned: 1 })]]),
    instances: [
      { name: 'p-1', status: 'running', owner: 'p' },
      { name: 'p-2', status: 'running', owner: 'p' },
    ],
  });
  assert.deepEqual(
    placementOf(w)
      .residents('cpu')
      .map((r) => r.keep),
    [undefined, undefined],
    'two live replicas of min_replicas 1: either may go',
  );
  w.instances[1].status = 'stopped';
  assert.deepEqual(
    placementOf(w)
      .residents('cpu')
      .map((r) => r.keep),
    ['min_replicas 1'],
  );
});

test('residents: standby children hold their measured footprint, else the largest measured one, else STANDBY_ESTIMATE_MB, and go first (lastUsedMs -1)', () => {
  const w = world({ standby: [{ name: 'sb-1', device: 'cpu' }] });
  assert.deepEqual(placementOf(w).residents('cpu'), [{ instance: 'sb-1', mb: STANDBY_ESTIMATE_MB, lastUsedMs: -1, standby: true }]);
  w.standby.push({ name: 'sb-2', device: 'cpu' });
  w.standbyFootprints.set('sb-2', 210).set('sb-old', 180);
  assert.deepEqual(
    placementOf(w)
      .residents('cpu')
      .map((r) => [r.instance, r.mb]),
    [
      ['sb-1', 210],
      ['sb-2', 210],
    ],
  );
  assert.deepEqual(placementOf(w).residents('gpu0'), [], 'a CPU standby holds nothing on a GPU');
});

test('keepStandby: starts standby_children while a catalog model can use one, within the budget, and stops the extra ones', async () => {
  const w = world({ models: new Map([['a', model('a')]]) });
  w.settings.standby_children = 2;
  const p = placementOf(w);
  await p.keepStandby();
  assert.deepEqual(w.events, ['spawn standby on cpu', 'spawn standby on cpu']);
  await p.keepStandby();
  assert.equal(w.events.length, 2, 'already there: nothing more');
  w.settings.standby_children = 1;
  await p.keepStandby();
  assert.deepEqual(w.events.slice(2), ['stop standby standby-cpu-2: more than standby_children']);
  w.usable = false;
  await p.keepStandby();
  assert.deepEqual(w.events.slice(3), ['stop standby standby-cpu-1: no catalog model can use it, or standby_children = 0']);
  assert.deepEqual(w.standby, []);
});

test('keepStandby: no catalog model on the CPU (only GPU ones), or no model at all: none is kept', async () => {
  const w = world({ models: new Map([['g', model('g', { gpuIds: [0] })]]), standby: [{ name: 'sb', device: 'cpu' }] });
  w.settings.standby_children = 1;
  await placementOf(w).keepStandby();
  assert.deepEqual(w.events, ['stop standby sb: no catalog model can use it, or standby_children = 0']);
  const empty = world();
  empty.settings.standby_children = 1;
  await placementOf(empty).keepStandby();
  assert.deepEqual(empty.events, []);
});

test('keepStandby: a standby that does not fit next to the residents, or would need an eviction, is not started; refused once in the log until one fits', async () => {
  const w = world({
    models: new Map([['a', model('a', { memory: 900 })]]),
    instances: [{ name: 'a-1', status: 'running', owner: 'a', lastUsed: 1 }],
  });
  w.settings.standby_children = 1;
  // 900 held + 160 for the standby > 1000: it would need a-1 evicted, which a standby never does.
  w.settings.cpu_memory_budget_mb = 1000;
  const p = placementOf(w);
  await p.keepStandby();
  await p.keepStandby();
  assert.deepEqual(w.events, [], 'nothing evicted, nothing started');
  const refusals = w.logs.filter((l) => l.msg.startsWith('no room for a standby child'));
  assert.equal(refusals.length, 1, 'logged once');
  assert.deepEqual(refusals[0].fields, { device: 'cpu', budget_mb: 1000 });
  w.settings.cpu_memory_budget_mb = 900 + STANDBY_ESTIMATE_MB;
  await p.keepStandby();
  assert.deepEqual(w.events, ['spawn standby on cpu'], 'an exact fit is room');
  w.standby.length = 0;
  w.settings.cpu_memory_budget_mb = 1000;
  await p.keepStandby();
  assert.equal(w.logs.filter((l) => l.msg.startsWith('no room for a standby child')).length, 2, 'refused again after one fitted: logged again');
});

test('keepStandby: the budgets given by the caller are used (no second nvidia-smi / budget read)', async () => {
  const w = world({ models: new Map([['a', model('a')]]) });
  w.settings.standby_children = 1;
  await placementOf(w).keepStandby(new Map([['cpu', { device: 'cpu', mb: 100, source: 'test' }]]));
  assert.deepEqual(w.events, [], `100 MiB < ${STANDBY_ESTIMATE_MB}`);
  assert.equal(w.logs[0]?.fields?.budget_mb, 100);
});

test('enforce: a device over its budget loses its least recently used evictable replicas until it fits; each eviction is logged and counted for its model', async () => {
  const w = world({
    models: new Map([
      ['a', model('a', { memory: 400 })],
      ['b', model('b', { memory: 400 })],
    ]),
    instances: [
      { name: 'a-1', status: 'running', owner: 'a', lastUsed: 30 },
      { name: 'b-1', status: 'running', owner: 'b', lastUsed: 10 },
      { name: 'b-2', status: 'running', owner: 'b', lastUsed: 20, inflight: 1 },
    ],
  });
  const p = placementOf(w);
  await p.enforce(new Map([['cpu', { device: 'cpu', mb: 800, source: 'cpu_memory_budget_mb' }]]));
  assert.deepEqual(w.events, ['evicted b (budget)', 'stop b-1 of b'], 'b-1 is the oldest; b-2 is in use');
  const eviction = w.logs.find((l) => l.msg === 'evicting a replica');
  assert.deepEqual(eviction?.fields, { instance: 'b-1', model: 'b', why: 'cpu is over its budget of 800 MiB' });
  await p.enforce(new Map([['cpu', { device: 'cpu', mb: 800, source: 'cpu_memory_budget_mb' }]]));
  assert.equal(w.events.length, 2, 'within the budget now: nothing more');
});

test('enforce: over budget with nothing evictable is logged once per device until the device fits again', async () => {
  const w = world({
    models: new Map([['a', model('a', { memory: 600 })]]),
    instances: [{ name: 'a-1', status: 'running', owner: 'a', inflight: 2 }],
  });
  const p = placementOf(w);
  const tight = new Map([['cpu', { device: 'cpu', mb: 500, source: 'cpu_memory_budget_mb' }]]);
  await p.enforce(tight);
  await p.enforce(tight);
  const over = () => w.logs.filter((l) => l.msg === 'over the memory budget, nothing can be evicted now');
  assert.equal(over().length, 1);
  assert.equal(over()[0].fields?.device, 'cpu');
  assert.match(String(over()[0].fields?.reason), /500 MiB/);
  assert.deepEqual(w.events, []);
  await p.enforce(new Map([['cpu', { device: 'cpu', mb: 700, source: 'cpu_memory_budget_mb' }]]));
  await p.enforce(tight);
  assert.equal(over().length, 2, 'fitted in between: logged again');
});

test('enforce: standby children are evicted first, through the standby pool, and no model is charged for them', async () => {
  const w = world({
    models: new Map([['a', model('a', { memory: 400 })]]),
    instances: [{ name: 'a-1', status: 'running', owner: 'a', lastUsed: 5 }],
    standby: [{ name: 'sb', device: 'cpu' }],
  });
  await placementOf(w).enforce(new Map([['cpu', { device: 'cpu', mb: 450, source: 'cpu_memory_budget_mb' }]]));
  assert.deepEqual(w.events, ['stop standby sb: cpu is over its budget of 450 MiB']);
});

test('placeAndCreate: the replica takes the first free index of the model, evicts what its plan says, and takes a standby child over', async () => {
  const w = world({
    models: new Map([
      ['m', model('m', { memory: 500 })],
      ['old', model('old', { memory: 500 })],
    ]),
    instances: [
      { name: 'm-1', status: 'running', owner: 'm', inflight: 1 },
      { name: 'm-3', status: 'running', owner: 'm', inflight: 1 },
      { name: 'old-1', status: 'running', owner: 'old', lastUsed: 1 },
    ],
    standby: [{ name: 'sb', device: 'cpu' }],
  });
  w.settings.standby_children = 1;
  w.settings.cpu_memory_budget_mb = 1600;
  // 1500 held (+160 standby, taken over: part of the need) + 500 > 1600: old-1 goes.
  await placementOf(w).placeAndCreate(w.models.get('m') as never);
  assert.deepEqual(w.events, ['evicted old (budget)', 'stop old-1 of old', 'take standby sb', 'create m-2 from sb']);
  assert.equal(w.logs.find((l) => l.msg === 'evicting a replica')?.fields?.why, "to make room for 'm' on cpu");
});

test('placeAndCreate: no device fits -> MEMORY_BUDGET_EXCEEDED (retry after 5 s) with the refusal text, nothing evicted or created', async () => {
  const w = world({
    models: new Map([['m', model('m', { memory: 500 })]]),
    instances: [{ name: 'x', status: 'running' }],
  });
  w.settings.cpu_memory_budget_mb = 400;
  await assert.rejects(placementOf(w).placeAndCreate(w.models.get('m') as never), (err: Error & { code?: string; retryAfterSecs?: number }) => {
    assert.equal(err.code, 'MEMORY_BUDGET_EXCEEDED');
    assert.equal(err.retryAfterSecs, 5);
    assert.match(err.message, /starting model 'm'/);
    assert.match(err.message, /cpu_memory_budget_mb/);
    return true;
  });
  assert.deepEqual(w.events, []);
  assert.equal(w.logs[0]?.msg, 'no room for a replica');
});
