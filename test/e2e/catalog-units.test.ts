/**
 * The on-demand catalog's pure parts: memory budgets and eviction plans, nvidia-smi's per-process
 * query (canned output: no GPU here), footprints from this machine's /proc (real child
 * processes), model specs and replica specs, `[[models]]` in the config, a model's derived state,
 * the no-wait header, and models in the state file.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Value } from '@sinclair/typebox/value';
import { deviceBudgets, devicesOf, planPlacement, type Budget, type Resident } from '../../src/catalog/memory-budget.js';
import { parseNvidiaSmi } from '../../src/supervisor/gpus.js';
import { groupMembers, measureFootprint, parseComputeApps, residentMb } from '../../src/catalog/footprint.js';
import { MODEL_NAME_PATTERN, ModelSpecSchema, maxReplicas, modelName, namesOf, pinnedReplicas, replicaSpec, type ModelSpec } from '../../src/config/model-spec.js';
import { InstanceSpecSchema } from '../../src/config/instance-spec.js';
import { DEFAULTS, loadConfig, resolveConfig } from '../../src/config/config.js';
import { ConfigError } from '../../src/config/validate.js';
import { asksNoWait } from '../../src/catalog/catalog.js';
import { CatalogModel } from '../../src/catalog/catalog-model.js';
import { parseState, serializeState, type State, type StoredModel } from '../../src/state/state-store.js';
import type { Instance } from '../../src/supervisor/instance.js';
import { until } from '../helpers/wait.js';

// ---------------------------------------------------------------------------------------------
// planPlacement

const gpu0: Budget = { device: 'gpu0', mb: 10_000, source: 'gpu_memory_budget_mb' };
const r = (instance: string, mb: number, lastUsedMs: number, keep?: string): Resident => ({ instance, mb, lastUsedMs, ...(keep !== undefined ? { keep } : {}) });

test('planPlacement: fits without eviction, up to the budget exactly', () => {
  const residents = [r('a-1', 2000, 1), r('b-1', 3000, 2)];
  assert.deepEqual(planPlacement('m', 4000, gpu0, residents), { ok: true, evict: [] });
  assert.deepEqual(planPlacement('m', 5000, gpu0, residents), { ok: true, evict: [] });
  assert.deepEqual(planPlacement('m', 10_000, gpu0, []), { ok: true, evict: [] });
  // One MiB more than is free needs an eviction.
  const plan = planPlacement('m', 5001, gpu0, residents);
  assert.equal(plan.ok, true);
  assert.deepEqual(plan.ok && plan.evict.map((x) => x.instance), ['a-1']);
});

test('planPlacement: evicts least recently used first, and only as many as needed', () => {
  const residents = [r('a-1', 3000, 300), r('b-1', 3000, 100), r('c-1', 3000, 200)];
  const before = residents.map((x) => x.instance);
  // 1000 free: one eviction (the oldest, b-1) makes room for 3000.
  const one = planPlacement('m', 3000, gpu0, residents);
  assert.deepEqual(one.ok && one.evict.map((x) => x.instance), ['b-1']);
  // 5000 needs two: b-1 then c-1; a-1 (the most recent) stays.
  const two = planPlacement('m', 5000, gpu0, residents);
  assert.deepEqual(two.ok && two.evict.map((x) => x.instance), ['b-1', 'c-1']);
  // All three for 10000.
  const all = planPlacement('m', 10_000, gpu0, residents);
  assert.deepEqual(all.ok && all.evict.map((x) => x.instance), ['b-1', 'c-1', 'a-1']);
  // The caller's array is left in its order.
  assert.deepEqual(residents.map((x) => x.instance), before);
});

test('planPlacement: never evicts a resident with keep, even the least recently used', () => {
  const residents = [r('kept-1', 4000, 0, 'in use (2 in flight)'), r('b-1', 4000, 100), r('c-1', 1000, 50)];
  // 1000 free, need 5000: c-1 (oldest evictable) then b-1; kept-1 is older than both but kept.
  const plan = planPlacement('m', 5000, gpu0, residents);
  assert.equal(plan.ok, true);
  assert.deepEqual(plan.ok && plan.evict.map((x) => x.instance), ['c-1', 'b-1']);
  assert.ok(plan.ok && plan.evict.every((x) => x.keep === undefined));
});

test('planPlacement: fails naming the device, the budget and its source; the caller gets counts, the log the residents with their keep reasons', () => {
  const residents = [r('pinned-1', 4000, 0, 'min_replicas 1'), r('busy-1', 4000, 10, 'in use'), r('idle-1', 1000, 20)];
  // 1000 free; evicting idle-1 gives 2000, short of 5000.
  const plan = planPlacement('model rr', 5000, gpu0, residents);
  assert.equal(plan.ok, false);
  const { reason, detail } = plan.ok ? { reason: '', detail: '' } : plan;
  for (const text of [reason, detail]) {
    assert.match(text, /model rr/);
    assert.match(text, /5000 MiB/);
    assert.match(text, /gpu0/);
    assert.match(text, /10000 MiB \(gpu_memory_budget_mb\)/);
    assert.match(text, /9000 MiB are held/);
  }
  // The caller may hold a restricted API key: no other instance is named to it.
  assert.match(reason, /held by 3 instances \(1 min_replicas 1, 1 in use\)/);
  for (const name of ['pinned-1', 'busy-1', 'idle-1']) assert.ok(!reason.includes(name), reason);
  assert.match(detail, /pinned-1 \(4000 MiB, min_replicas 1\)/);
  assert.match(detail, /busy-1 \(4000 MiB, in use\)/);
  assert.match(detail, /idle-1 \(1000 MiB\)/);
});

test('planPlacement: fails when the need alone exceeds the budget, residents or not', () => {
  const cpu: Budget = { device: 'cpu', mb: 8192, source: 'host memory minus cpu_memory_reserve_mb' };
  for (const residents of [[], [r('a-1', 100, 1)]]) {
    const plan = planPlacement('big', 9000, cpu, residents);
    assert.equal(plan.ok, false);
    const reason = plan.ok ? '' : plan.reason;
    assert.match(reason, /big/);
    assert.match(reason, /9000 MiB/);
    assert.match(reason, /\bcpu\b/);
    assert.match(reason, /8192 MiB/);
    assert.match(reason, /host memory minus cpu_memory_reserve_mb/);
  }
});

test('planPlacement: an Infinity budget always fits, evicting nothing', () => {
  const none: Budget = { device: 'cpu', mb: Infinity, source: 'no limit known' };
  const residents = [r('a-1', 1e9, 0, 'min_replicas 1'), r('b-1', 1e9, 1)];
  assert.deepEqual(planPlacement('m', 1e12, none, residents), { ok: true, evict: [] });
  assert.deepEqual(planPlacement('m', 0, none, []), { ok: true, evict: [] });
});

// ---------------------------------------------------------------------------------------------
// nvidia-smi --query-compute-apps

test('parseComputeApps: pids summed, [N/A] skipped, blank lines (canned nvidia-smi output, no GPU here)', () => {
  const canned = ['12345, 1024', '', '12346, 2048', '12345, 512', '12347, [N/A]', '   ', '12348, 0', ''].join('\n');
  const m = parseComputeApps(canned);
  assert.deepEqual([...m.entries()].sort((a, b) => a[0] - b[0]), [
    [12345, 1536],
    [12346, 2048],
    [12348, 0],
  ]);
  assert.equal(m.has(12347), false);
  // Windows line ends and no spaces after the comma.
  assert.deepEqual([...parseComputeApps('7,100\r\n8,200\r\n').entries()], [
    [7, 100],
    [8, 200],
  ]);
});

test('parseComputeApps: "No running processes found" and empty output give no pids (canned nvidia-smi output, no GPU here)', () => {
  assert.equal(parseComputeApps('No running processes found\n').size, 0);
  assert.equal(parseComputeApps('').size, 0);
  assert.equal(parseComputeApps('\n\n').size, 0);
});

// ---------------------------------------------------------------------------------------------
// Footprints from /proc (real processes)

async function spawned(cmd: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(cmd, args, { detached: true, stdio: 'ignore' });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', reject);
  });
  return child;
}

async function killGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    child.kill('SIGKILL');
  }
  await exited;
}

test('footprint: a detached child leads its own process group; RSS from /proc, GPU memory when nvidia-smi reports its pid', { skip: process.platform !== 'linux' && 'needs /proc' }, async () => {
  const child = await spawned(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
  const pid = child.pid!;
  try {
    const members = await until(`the child leads group ${pid}`, async () => {
      const g = await groupMembers(pid);
      return g.includes(pid) && g;
    });
    assert.ok(!members.includes(process.pid), 'the test process is in another group');
    const rss = await residentMb([pid]);
    assert.ok(rss > 0 && rss < 2048, `rss ${rss} MiB`);
    const fp = await measureFootprint(pid, undefined);
    assert.equal(fp?.kind, 'rss');
    assert.ok(fp !== undefined && fp.mb > 0 && fp.mb < 2048, `footprint ${JSON.stringify(fp)}`);
    assert.deepEqual(await measureFootprint(pid, new Map([[pid, 1234]])), { mb: 1234, kind: 'gpu' });
    // nvidia-smi reporting only other pids (or 0 MiB for this one): the resident memory instead.
    assert.equal((await measureFootprint(pid, new Map([[process.pid, 999]])))?.kind, 'rss');
    assert.equal((await measureFootprint(pid, new Map([[pid, 0]])))?.kind, 'rss');
  } finally {
    await killGroup(child);
  }
  // Gone (and reaped): nothing to measure.
  assert.deepEqual(await groupMembers(pid), []);
  assert.equal(await measureFootprint(pid, undefined), undefined);
});

test('footprint: the group includes what the child spawned, and sums their memory', { skip: process.platform !== 'linux' && 'needs /proc' }, async () => {
  const child = await spawned('sh', ['-c', 'sleep 30 & wait']);
  const pid = child.pid!;
  try {
    // sh, and the sleep it started in the background: once that child has exec'd sleep (a forked
    // sh not yet replaced by sleep changes its memory between the reads below)
    const members = await until(`two processes in group ${pid}, the second one sleep`, async () => {
      const g = await groupMembers(pid);
      if (g.length < 2) return false;
      const comms = await Promise.all(g.filter((p) => p !== pid).map((p) => readFile(`/proc/${p}/comm`, 'utf8').catch(() => '')));
      return comms.every((c) => c.trim() === 'sleep') && g;
    });
    assert.equal(members.length, 2, `group ${pid}: ${members.join(',')}`);
    assert.ok(members.includes(pid));
    const [other] = members.filter((p) => p !== pid);
    // sleep's resident memory grows for a moment after its exec (the loader maps its libraries): read
    // the three figures again until they are taken at a steady moment
    let last = '';
    await until('the group\'s resident memory is the sum of its members\'', async () => {
      const whole = await residentMb(members);
      const shOnly = await residentMb([pid]);
      const sleepOnly = await residentMb([other]);
      last = `${whole} vs ${shOnly} + ${sleepOnly}`;
      return shOnly > 0 && sleepOnly > 0 && Math.abs(whole - (shOnly + sleepOnly)) < 1;
    }).catch((err: Error) => assert.fail(`${err.message}: ${last}`));
    assert.deepEqual(await measureFootprint(pid, new Map([[pid, 100], [other, 50]])), { mb: 150, kind: 'gpu' });
  } finally {
    await killGroup(child);
  }
});

// ---------------------------------------------------------------------------------------------
// Model specs

const nameRe = new RegExp(MODEL_NAME_PATTERN);

test('modelName: model_id slugged, explicit name wins, long ids trimmed to a valid name', () => {
  assert.equal(modelName({ model_id: 'BAAI/bge-reranker-base' }), 'baai-bge-reranker-base');
  assert.equal(modelName({ model_id: 'BAAI/bge-m3' }), 'baai-bge-m3');
  assert.equal(modelName({ name: 'rr', model_id: 'BAAI/bge-reranker-base' }), 'rr');
  assert.equal(modelName({ model_id: '/models/My Model v1.5' }), 'models-my-model-v1.5');
  assert.equal(modelName({ model_id: '///' }), 'model');
  for (const id of ['Org/' + 'a'.repeat(100), 'x'.repeat(55) + '/yyyy', 'x'.repeat(54) + '..zz', '__Weird__/Name__', 'a/b'.repeat(40)]) {
    const n = modelName({ model_id: id });
    assert.ok(n.length <= 56, `${id} -> ${n} (${n.length})`);
    assert.match(n, nameRe, `${id} -> ${n}`);
    assert.doesNotMatch(n, /[-.]$/, `${id} -> ${n}`);
    // A replica name stays a valid instance name.
    assert.ok(Value.Check(InstanceSpecSchema, { name: `${n}-64`, model_id: id }), `${n}-64`);
  }
  assert.equal(modelName({ model_id: 'x'.repeat(55) + '/yyyy' }), 'x'.repeat(55));
});

const fullSpec: ModelSpec = {
  model_id: 'BAAI/bge-reranker-base',
  runtime: 'router',
  max_batch_tokens: 4096,
  max_concurrent_requests: 64,
  extra_args: ['--auto-truncate'],
  env: { RUST_LOG: 'info' },
  aliases: ['reranker'],
  on_demand: true,
  min_replicas: 0,
  max_replicas: 3,
  memory_mb: 900,
  idle_timeout_secs: 60,
  gpu_ids: [0, 1],
};

test('replicaSpec: <name>-<k>, instance settings carried, catalog-only fields dropped, gpu_id set, catalog name an alias', () => {
  const rs = replicaSpec(fullSpec, 2, 1);
  assert.deepEqual(rs, {
    name: 'baai-bge-reranker-base-2',
    model_id: 'BAAI/bge-reranker-base',
    runtime: 'router',
    max_batch_tokens: 4096,
    max_concurrent_requests: 64,
    extra_args: ['--auto-truncate'],
    env: { RUST_LOG: 'info' },
    aliases: ['reranker', 'baai-bge-reranker-base'],
    gpu_id: 1,
  });
  for (const k of ['on_demand', 'min_replicas', 'max_replicas', 'memory_mb', 'idle_timeout_secs', 'gpu_ids']) assert.equal(k in rs, false, k);
  assert.ok(Value.Check(InstanceSpecSchema, rs), 'a valid instance spec');
  // On the CPU: no gpu_id key at all.
  const cpu = replicaSpec(fullSpec, 1, undefined);
  assert.equal(cpu.name, 'baai-bge-reranker-base-1');
  assert.equal('gpu_id' in cpu, false);
  assert.ok(Value.Check(InstanceSpecSchema, cpu));
  // gpu_id 0 is a GPU, not "none".
  assert.equal(replicaSpec(fullSpec, 1, 0).gpu_id, 0);
  // An explicit name: replicas named after it, the name an alias once.
  const named = replicaSpec({ name: 'rr', model_id: 'BAAI/bge-reranker-base', aliases: ['rr', 'x'] }, 3, undefined);
  assert.equal(named.name, 'rr-3');
  assert.deepEqual(named.aliases, ['rr', 'x']);
  // The spec itself is left alone.
  assert.deepEqual(fullSpec.gpu_ids, [0, 1]);
  assert.equal(fullSpec.name, undefined);
});

test('pinnedReplicas / maxReplicas: on_demand=false keeps at least one; max never below pinned', () => {
  const cases: Array<[Partial<ModelSpec>, number, number]> = [
    [{}, 0, 1],
    [{ on_demand: true }, 0, 1],
    [{ on_demand: false }, 1, 1],
    [{ on_demand: false, min_replicas: 0 }, 1, 1],
    [{ on_demand: false, min_replicas: 2 }, 2, 2],
    [{ on_demand: false, max_replicas: 4 }, 1, 4],
    [{ min_replicas: 2 }, 2, 2],
    [{ max_replicas: 4 }, 0, 4],
    [{ min_replicas: 3, max_replicas: 1 }, 3, 3],
  ];
  for (const [extra, pinned, max] of cases) {
    const spec: ModelSpec = { model_id: 'org/m', ...extra };
    assert.equal(pinnedReplicas(spec), pinned, JSON.stringify(extra));
    assert.equal(maxReplicas(spec), max, JSON.stringify(extra));
  }
});

test('namesOf and ModelSpecSchema: catalog name, model_id, aliases; per-replica fields refused in a model', () => {
  assert.deepEqual(namesOf(fullSpec), ['baai-bge-reranker-base', 'BAAI/bge-reranker-base', 'reranker']);
  assert.deepEqual(namesOf({ name: 'm', model_id: 'm', aliases: ['m', 'n'] }), ['m', 'n']);
  assert.ok(Value.Check(ModelSpecSchema, fullSpec));
  assert.ok(Value.Check(ModelSpecSchema, { model_id: 'org/m' }));
  for (const bad of [
    { model_id: 'org/m', port: 8080 },
    { model_id: 'org/m', gpu_id: 0 },
    { model_id: 'org/m', prometheus_port: 9100 },
    { model_id: 'org/m', replicas: 2 },
    { model_id: 'org/m', name: 'Bad Name' },
    { model_id: 'org/m', name: 'x'.repeat(57) },
    { model_id: 'org/m', max_replicas: 0 },
    { model_id: 'org/m', memory_mb: 0 },
    { model_id: 'org/m', gpu_ids: [] },
  ]) {
    assert.equal(Value.Check(ModelSpecSchema, bad), false, JSON.stringify(bad));
  }
});

// ---------------------------------------------------------------------------------------------
// Config

const configError = (re: RegExp) => (e: unknown) => {
  assert.ok(e instanceof ConfigError, `not a ConfigError: ${String(e)}`);
  assert.match(e.message, re);
  return true;
};

test('config: [[models]] accepted, catalog defaults at the top level', () => {
  const models = [{ model_id: 'BAAI/bge-m3' }, { name: 'rr', model_id: 'BAAI/bge-reranker-base', on_demand: false, max_replicas: 2, memory_mb: 1500, gpu_ids: [0] }];
  const c = resolveConfig({ models }, {});
  assert.deepEqual(c.models, models);
  assert.equal(c.cold_start_timeout_secs, 300);
  assert.equal(c.idle_timeout_secs, 600);
  assert.equal(c.cold_start_queue_size, 1024);
  assert.equal(c.gpu_memory_reserve_mb, 1024);
  assert.equal(c.cpu_memory_reserve_mb, 2048);
  assert.equal(c.default_memory_mb, 1024);
  assert.equal(c.scale_up_inflight, 8);
  assert.equal(c.scale_up_after_secs, 5);
  assert.equal(c.gpu_memory_budget_mb, undefined);
  assert.equal(c.cpu_memory_budget_mb, undefined);
  assert.equal(DEFAULTS.cold_start_timeout_secs, 300);
  // No models: an empty catalog.
  assert.deepEqual(resolveConfig({}, {}).models, []);
  // File values win over the defaults.
  const d = resolveConfig({ idle_timeout_secs: 0.5, cold_start_queue_size: 4, gpu_memory_budget_mb: 20_000 }, {});
  assert.equal(d.idle_timeout_secs, 0.5);
  assert.equal(d.cold_start_queue_size, 4);
  assert.equal(d.gpu_memory_budget_mb, 20_000);
});

test('config: [[models]] in a TOML file', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'teiplex-catalog-units-'));
  try {
    const f = path.join(dir, 'c.toml');
    await writeFile(
      f,
      `
idle_timeout_secs = 120
cpu_memory_budget_mb = 8192
[[models]]
model_id = "BAAI/bge-m3"
max_replicas = 2
extra_args = ["--auto-truncate"]
env = { RUST_LOG = "info" }
[[models]]
name = "rr"
model_id = "BAAI/bge-reranker-base"
on_demand = false
`,
    );
    const c = await loadConfig(f, {});
    assert.equal(c.idle_timeout_secs, 120);
    assert.equal(c.cpu_memory_budget_mb, 8192);
    assert.equal(c.cold_start_timeout_secs, 300);
    assert.deepEqual(c.models, [
      { model_id: 'BAAI/bge-m3', max_replicas: 2, extra_args: ['--auto-truncate'], env: { RUST_LOG: 'info' } },
      { name: 'rr', model_id: 'BAAI/bge-reranker-base', on_demand: false },
    ]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('config: two models sharing a name, or a model_id that is another model\'s alias, are refused naming models[i]', () => {
  assert.throws(
    () => resolveConfig({ models: [{ name: 'm', model_id: 'org/a' }, { name: 'm', model_id: 'org/b' }] }, {}),
    configError(/models\[1\].*'m'.*models\[0\]/),
  );
  // Derived names collide too (BAAI/bge-m3 and baai/bge-m3 both slug to baai-bge-m3).
  assert.throws(() => resolveConfig({ models: [{ model_id: 'BAAI/bge-m3' }, { model_id: 'baai/bge-m3' }] }, {}), configError(/models\[1\].*baai-bge-m3/));
  assert.throws(
    () => resolveConfig({ models: [{ model_id: 'org/a', aliases: ['Org/Shared-Model'] }, { model_id: 'Org/Shared-Model' }] }, {}),
    configError(/models\[1\].*'Org\/Shared-Model'.*models\[0\]/),
  );
  // A model's own names may coincide (name == model_id == alias).
  assert.equal(resolveConfig({ models: [{ name: 'm', model_id: 'm', aliases: ['m'] }] }, {}).models.length, 1);
});

test('config: min_replicas above max_replicas refused; min_replicas alone is fine', () => {
  assert.throws(() => resolveConfig({ models: [{ model_id: 'org/a' }, { model_id: 'org/b', min_replicas: 3, max_replicas: 2 }] }, {}), configError(/models\[1\].*min_replicas.*max_replicas/));
  assert.equal(resolveConfig({ models: [{ model_id: 'org/a', min_replicas: 3 }] }, {}).models[0].min_replicas, 3);
  assert.equal(resolveConfig({ models: [{ model_id: 'org/a', min_replicas: 2, max_replicas: 2 }] }, {}).models[0].max_replicas, 2);
});

test('config: unknown or per-replica fields in a model refused naming models[i]', () => {
  assert.throws(() => resolveConfig({ models: [{ model_id: 'org/a', replicas: 2 }] }, {}), configError(/models\[0\]\.replicas: Unexpected property/));
  assert.throws(() => resolveConfig({ models: [{ model_id: 'org/a' }, { model_id: 'org/b', port: 8080 }] }, {}), configError(/models\[1\]\.port: Unexpected property/));
  assert.throws(() => resolveConfig({ models: [{ model_id: 'org/a', name: 'Bad Name' }] }, {}), configError(/models\[0\]\.name/));
  assert.throws(() => resolveConfig({ models: [{ model_id: 'org/a', runtime: 'command' }] }, {}), configError(/models\[0\].*command/));
  assert.throws(() => resolveConfig({ models: [{ name: 'x' }] }, {}), configError(/models\[0\]/));
  assert.throws(() => resolveConfig({ gpu_memory_budget_mb: 0 }, {}), configError(/gpu_memory_budget_mb/));
  assert.throws(() => resolveConfig({ cold_start_queue_size: 0 }, {}), configError(/cold_start_queue_size/));
});

test('config: TEIPLEX_CPU_MEMORY_BUDGET_MB and friends from the environment, as numbers', () => {
  const c = resolveConfig({ cpu_memory_budget_mb: 1000 }, { TEIPLEX_CPU_MEMORY_BUDGET_MB: '4096', TEIPLEX_IDLE_TIMEOUT_SECS: '30', TEIPLEX_GPU_MEMORY_BUDGET_MB: '20000.5' });
  assert.equal(c.cpu_memory_budget_mb, 4096);
  assert.equal(typeof c.cpu_memory_budget_mb, 'number');
  assert.equal(c.idle_timeout_secs, 30);
  assert.equal(c.gpu_memory_budget_mb, 20000.5);
  assert.throws(() => resolveConfig({}, { TEIPLEX_CPU_MEMORY_BUDGET_MB: 'lots' }), configError(/TEIPLEX_CPU_MEMORY_BUDGET_MB.*cpu_memory_budget_mb/));
  assert.throws(() => resolveConfig({}, { TEIPLEX_CPU_MEMORY_BUDGET_MB: '' }), configError(/TEIPLEX_CPU_MEMORY_BUDGET_MB/));
});

// ---------------------------------------------------------------------------------------------
// CatalogModel

const fakes = (...statuses: string[]): Instance[] => statuses.map((status) => ({ status }) as unknown as Instance);
const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

test('CatalogModel.state: failed, unloading, loaded, loading, available in that order of precedence (fake replicas: only status is read)', () => {
  const m = new CatalogModel({ model_id: 'BAAI/bge-m3' }, 'api', '2026-01-01T00:00:00.000Z');
  assert.equal(m.name, 'baai-bge-m3');
  assert.equal(m.state([]), 'available');
  assert.equal(m.state(fakes('stopped', 'failed', 'backoff')), 'available');
  // A replica being stopped (idle stop, eviction) with none serving: unloading; one still serving: loaded.
  assert.equal(m.state(fakes('stopping')), 'unloading');
  assert.equal(m.state(fakes('stopped', 'stopping')), 'unloading');
  assert.equal(m.state(fakes('stopping', 'running')), 'loaded');
  assert.equal(m.state(fakes('starting')), 'loading');
  assert.equal(m.state(fakes('stopped', 'starting')), 'loading');
  m.loading = never<Instance>();
  assert.equal(m.state([]), 'loading');
  assert.equal(m.state(fakes('starting', 'running')), 'loaded');
  assert.equal(m.state(fakes('unhealthy')), 'loaded');
  m.loading = undefined;
  assert.equal(m.state(fakes('running')), 'loaded');
  m.unloading = never<void>();
  assert.equal(m.state(fakes('running')), 'unloading');
  assert.equal(m.state([]), 'unloading');
  m.failure = { reason: 'does not fit', at: '2026-01-01T00:00:01.000Z' };
  assert.equal(m.state(fakes('running')), 'failed');
  m.unloading = undefined;
  assert.equal(m.state([]), 'failed');
  m.failure = undefined;
  assert.equal(m.state([]), 'available');
});

test('CatalogModel: expectedMb prefers the measured footprint, then memory_mb, then the fallback; stored/fromStored round trip', () => {
  const m = new CatalogModel({ model_id: 'org/m' }, 'config', '2026-01-01T00:00:00.000Z');
  assert.equal(m.expectedMb(1024), 1024);
  m.spec = { ...m.spec, memory_mb: 700 };
  assert.equal(m.expectedMb(1024), 700);
  m.footprintMb = 812.5;
  assert.equal(m.expectedMb(1024), 812.5);
  assert.equal(new CatalogModel({ model_id: 'org/m', on_demand: false, min_replicas: 2 }, 'api', 'now').pinned, 2);

  const stored: StoredModel = { model_id: 'BAAI/bge-m3', name: 'm3', max_replicas: 2, gpu_ids: [0], source: 'api', created_at: '2026-01-02T00:00:00.000Z', footprint_mb: 1536 };
  const back = CatalogModel.fromStored(stored);
  assert.equal(back.name, 'm3');
  assert.equal(back.source, 'api');
  assert.equal(back.createdAt, '2026-01-02T00:00:00.000Z');
  assert.equal(back.footprintMb, 1536);
  assert.deepEqual(back.spec, { model_id: 'BAAI/bge-m3', name: 'm3', max_replicas: 2, gpu_ids: [0] });
  assert.ok(Value.Check(ModelSpecSchema, back.spec), 'the spec part is a valid model spec');
  assert.deepEqual(back.stored(), stored);
  // No name in the spec: stored() records the derived one.
  assert.equal(CatalogModel.fromStored({ model_id: 'BAAI/bge-m3', source: 'config', created_at: 'x' }).stored().name, 'baai-bge-m3');
});

// ---------------------------------------------------------------------------------------------
// No-wait header

test('asksNoWait: 1/true/yes in any case (first value of a repeated header); anything else is no', () => {
  for (const v of ['1', 'true', 'TRUE', 'YES', 'yes', ' true ', ['true'], ['Yes', '0']]) assert.equal(asksNoWait(v), true, JSON.stringify(v));
  for (const v of ['0', '', 'false', 'no', 'on', 'truthy', '11', undefined, null, 1, true, [], ['0', 'true'], ['']]) assert.equal(asksNoWait(v), false, JSON.stringify(v));
});

// ---------------------------------------------------------------------------------------------
// State file

test('state file: models (source, created_at, footprint_mb) round trip through TOML; an old state without models still parses', () => {
  const state: State = {
    version: 1,
    instances: [
      { name: 'a', model_id: 'org/a', gpu_id: 0, desired_state: 'running', created_at: '2026-01-01T00:00:00.000Z', source: 'config' },
      { name: 'b', model_id: 'org/b', desired_state: 'stopped', created_at: '2026-01-01T00:00:00.000Z', source: 'api' },
    ],
    models: [
      {
        model_id: 'BAAI/bge-m3',
        name: 'm3',
        source: 'config',
        created_at: '2026-01-01T00:00:00.000Z',
        footprint_mb: 1536.5,
        on_demand: false,
        min_replicas: 1,
        max_replicas: 2,
        idle_timeout_secs: 30,
        memory_mb: 2000,
        gpu_ids: [0, 1],
        extra_args: ['--auto-truncate'],
        env: { RUST_LOG: 'info' },
        aliases: ['bge-m3'],
      },
      { model_id: 'org/cpu-model', source: 'api', created_at: '2026-01-02T00:00:00.000Z', footprint_mb: 300 },
      { model_id: 'org/never-ran', source: 'api', created_at: '2026-01-03T00:00:00.000Z' },
    ],
  };
  const text = serializeState(state);
  assert.match(text, /\[\[models\]\]/);
  assert.deepEqual(parseState(text, 'rt'), state);
  // An undefined footprint is dropped, not written as anything.
  const withUndefined: State = { version: 1, instances: [], models: [{ model_id: 'org/x', source: 'api', created_at: 't', footprint_mb: undefined }] };
  assert.deepEqual(parseState(serializeState(withUndefined), 'rt'), { version: 1, instances: [], models: [{ model_id: 'org/x', source: 'api', created_at: 't' }] });

  // The one format ever written has a source on every instance and a models list (empty or not).
  const instance = `version = 1
models = []
[[instances]]
name = "a"
model_id = "org/a"
desired_state = "running"
created_at = "2026-01-01T00:00:00.000Z"
`;
  assert.equal(parseState(instance.replace('desired_state', 'source = "api"\ndesired_state'), 'ok').instances[0].source, 'api');
  assert.throws(() => parseState(instance, 'no source'), ConfigError);
  assert.throws(() => parseState('version = 1\ninstances = []\n', 'no models'), ConfigError);
  assert.deepEqual(parseState(serializeState({ version: 1, instances: [], models: [] }), 'empty'), { version: 1, instances: [], models: [] });
  // A model with a source other than config/api, or no created_at, is refused.
  assert.throws(() => parseState('version = 1\ninstances = []\n[[models]]\nmodel_id = "org/a"\nsource = "other"\ncreated_at = "t"\n', 'bad'), ConfigError);
  assert.throws(() => parseState('version = 1\ninstances = []\n[[models]]\nmodel_id = "org/a"\nsource = "api"\n', 'bad'), ConfigError);
});

test('deviceBudgets: explicit budgets, totals minus reserves, unknown GPU memory unlimited (canned nvidia-smi output, no GPU here)', () => {
  const gpus = parseNvidiaSmi('0, GPU-a, Fake A, 81559, 10, 0\n1, GPU-b, Fake B, [N/A], 0, 0\n');
  const reserves = { cpu_memory_budget_mb: undefined, cpu_memory_reserve_mb: 2048, gpu_memory_budget_mb: undefined, gpu_memory_reserve_mb: 1024 };
  const derived = deviceBudgets(reserves, gpus, 24_000);
  assert.deepEqual([...derived.values()].map((b) => [b.device, b.mb, b.source]), [
    ['cpu', 24_000 - 2048, 'host memory minus cpu_memory_reserve_mb'],
    ['gpu0', 81559 - 1024, 'GPU memory minus gpu_memory_reserve_mb'],
    ['gpu1', Infinity, 'GPU memory unknown'],
  ]);
  const explicit = deviceBudgets({ ...reserves, cpu_memory_budget_mb: 4096, gpu_memory_budget_mb: 30_000 }, gpus, 24_000);
  assert.deepEqual([...explicit.values()].map((b) => [b.device, b.mb, b.source]), [
    ['cpu', 4096, 'cpu_memory_budget_mb'],
    ['gpu0', 30_000, 'gpu_memory_budget_mb'],
    ['gpu1', 30_000, 'gpu_memory_budget_mb'],
  ]);
  assert.deepEqual(devicesOf([]), ['cpu']);
  assert.deepEqual(devicesOf([0, 2]), ['gpu0', 'gpu2']);
});
