/**
 * On-demand models (src/catalog): a real `teiplex serve` whose config declares three catalog models
 * (`[[models]]`), three generated all-MiniLM-L6-v2-shaped embedding models (`minilm-l6`, the real
 * tokenizer, seeds 0, 1, 2) served by `teiplex router` children on the CPU.
 *
 *   1. Cold start, request to first answer: --cold-runs times, unload model A (POST
 *      /models/A/unload, wait for `available`, 3 s to settle), then time one POST /v1/embeddings
 *      of a short input; then --warm-per-run warm requests of the same input for comparison. The
 *      manager's own figure is teiplex_cold_start_seconds (sum / count over the same runs). Where
 *      each cold start's time went comes from the replica's log (breakdown()). Unless
 *      --no-compare, a second manager with standby_children = 0 and onnx_cache_dir = "" (a fresh
 *      child per start, the model loaded from its own file: how cold starts went before those)
 *      is timed in alternating rounds; the thrash runs on the first (defaults) only.
 *   2. Thrash: replica footprints (GET /models, RSS in MiB, after a first start and stop of each
 *      model, then warm-up batches and a fresh sample; the smallest of the three) set cpu_memory_budget_mb through a config rewrite and
 *      POST /config/reload: (a) 3.5 x footprint (all three fit), (b) 2.5 x footprint (two fit).
 *      Each workload starts from nothing loaded (every model unloaded), so both budgets start
 *      alike, then one priming request per model,
 *      then runs for --duration seconds, every request a batch of --batch texts:
 *        (i)  one sequential client cycling A, B, C, A, B, C, ...;
 *        (ii) three concurrent clients, each in a loop on its own model.
 *      Reported: requests/s and texts/s of answered requests, p50/p99/max latency of answered
 *      requests, each model's fair share (its answered / (all answered / 3)), loads per request,
 *      failures by HTTP status and error code, and replica loads / evictions (budget, preempt)
 *      from /metrics deltas. With two fitting, (ii) is the "waiting for memory, fairly" case
 *      (docs/tenancy.md): the third client's requests wait for memory, and busy models take turns
 *      by preemption after memory_wait_preempt_secs. A client pauses --fail-pause-ms after a failed request (no hot loop on
 *      503s; Retry-After is not honoured, so failures count attempts at that pace). A model
 *      found `failed` when unloading is reported, loaded again to clear it, and unloaded.
 *
 * Client, manager and children share this machine's cores: a cold start's CPU (process start,
 * model load) comes out of the serving replicas' budget.
 *
 *   npm run build && node --import tsx bench/on-demand.ts [--cold-runs 5 --warm-per-run 5 --duration 20 --batch 8 --fail-pause-ms 200 --no-compare --skip-cold --budgets a,b]
 *
 * Prints a table; writes bench/results/on-demand.json and bench/results/on-demand.md.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { projectPath } from '../src/common/paths.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../test/helpers/manager-process.js';
import { testModel } from '../test/helpers/models.js';
import { metricSum } from './lib/prometheus-text.js';
import { quantile } from './lib/stats.js';
import { makeWorkload } from './workload.js';

const { values: flags } = parseArgs({
  options: {
    'cold-runs': { type: 'string', default: '5' },
    'warm-per-run': { type: 'string', default: '5' },
    duration: { type: 'string', default: '20' },
    batch: { type: 'string', default: '8' },
    'fail-pause-ms': { type: 'string', default: '200' },
    /** Without it, cold starts are also timed on a second manager with standby_children = 0 and onnx_cache_dir = "" (alternating rounds). */
    'no-compare': { type: 'boolean', default: false },
    /** Skip the cold start section (footprints and thrash only: a shorter run). */
    'skip-cold': { type: 'boolean', default: false },
    /** Which budgets to run the thrash workloads under: a (all three fit), b (two fit), or both. */
    budgets: { type: 'string', default: 'a,b' },
    out: { type: 'string', default: projectPath('bench', 'results') },
  },
  strict: true,
});

const MODELS = ['od-a', 'od-b', 'od-c'] as const;
const SHORT_INPUT = 'How long does a cold start take?';
/** Idle stops must not interfere: far longer than the whole run. */
const IDLE_TIMEOUT_SECS = 3600;
const COLD_START_TIMEOUT_SECS = 300;
const BUDGETS = [
  { key: 'a', label: '(a) 3.5 x footprint, all three fit', factor: 3.5 },
  { key: 'b', label: '(b) 2.5 x footprint, two fit', factor: 2.5 },
] as const;

// ---- small statistics ----

interface Summary {
  n: number;
  p50_ms: number;
  min_ms: number;
  max_ms: number;
}

const summarize = (ms: readonly number[]): Summary => ({ n: ms.length, p50_ms: quantile(ms, 0.5), min_ms: Math.min(...ms), max_ms: Math.max(...ms) });

const fmtMs = (x: number): string => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) : '-');

// ---- the config file ----

interface Setup {
  dir: string;
  /** standby_children and onnx_cache_dir as configured (defaults: absent). */
  variant: string;
  configFile: string;
  /** The top of the config (ports, dirs, catalog settings), kept byte-identical across rewrites. */
  head: string;
  /** The [[models]] tables, kept byte-identical across rewrites (a changed spec restarts a model). */
  models: string;
}

/** `off`: no standby children, no optimized-model cache (how cold starts went before both). */
async function prepareConfig(variant: 'defaults' | 'off' = 'defaults'): Promise<Setup> {
  const dir = mkdtempSync(path.join(tmpdir(), 'teiplex-bench-on-demand-'));
  const keys = variant === 'off' ? 'standby_children = 0\nonnx_cache_dir = ""\n' : '';
  // embedding_cache_mb = 0: the workloads repeat one batch, which the embedding cache would answer without a replica.
  const head = `${loopbackConfig(dir)}idle_timeout_secs = ${IDLE_TIMEOUT_SECS}\ncold_start_timeout_secs = ${COLD_START_TIMEOUT_SECS}\nembedding_cache_mb = 0\n${keys}`;
  let models = '';
  for (const [seed, name] of MODELS.entries()) {
    const modelDir = await testModel({ kind: 'embedding', shape: 'minilm-l6', seed: seed === 0 ? undefined : seed });
    models += `\n[[models]]\nname = "${name}"\nmodel_id = ${JSON.stringify(modelDir)}\nmax_concurrent_requests = 4096\nextra_args = ["--auto-truncate"]\n`;
  }
  const setup = { dir, variant, configFile: path.join(dir, 'config.toml'), head, models };
  writeConfig(setup, undefined);
  return setup;
}

/** Write the config with `budgetMb` as cpu_memory_budget_mb (undefined: no budget key). */
function writeConfig(s: Setup, budgetMb: number | undefined): void {
  const budget = budgetMb === undefined ? '' : `cpu_memory_budget_mb = ${budgetMb.toFixed(1)}\n`;
  writeFileSync(s.configFile, s.head + budget + s.models);
}

// ---- the manager's API ----

interface ModelInfo {
  name: string;
  state: string;
  failure: { reason: string; at: string } | null;
  footprint_mb: number | null;
  replicas: Array<{ instance: string; status: string; footprint_mb: number | null; pid?: number }>;
}

async function models(m: ManagerProcess): Promise<ModelInfo[]> {
  const r = await m.api<ModelInfo[]>('GET', '/models');
  if (r.status !== 200) throw new Error(`GET /models: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

async function modelInfo(m: ManagerProcess, name: string): Promise<ModelInfo> {
  const info = (await models(m)).find((x) => x.name === name);
  if (info === undefined) throw new Error(`GET /models lists no '${name}'`);
  return info;
}

/** Poll GET /models until `name` is in `state` (or `failed`, which it stays in); the last info. */
async function waitForState(m: ManagerProcess, name: string, state: string, timeoutMs = 120_000): Promise<ModelInfo> {
  const end = Date.now() + timeoutMs;
  let last: ModelInfo | undefined;
  while (Date.now() < end) {
    last = await modelInfo(m, name);
    if (last.state === state || last.state === 'failed') return last;
    await sleep(50);
  }
  throw new Error(`model ${name}: state ${last?.state}, not ${state}, after ${timeoutMs} ms`);
}

/** Model failures seen while unloading (the bench clears them and goes on; they are reported). */
const modelFailures: Array<{ model: string; reason: string; at: string; seen_during: string }> = [];

/** Stop a model's replicas and wait until it is `available`; a `failed` model is recorded, loaded again (clears the failure) and unloaded. */
async function unload(m: ManagerProcess, name: string, during: string): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const r = await m.api('POST', `/models/${name}/unload`);
    if (r.status !== 200) throw new Error(`POST /models/${name}/unload: ${r.status} ${JSON.stringify(r.body)}`);
    const info = await waitForState(m, name, 'available');
    if (info.state === 'available') return;
    modelFailures.push({ model: name, reason: info.failure?.reason ?? '?', at: info.failure?.at ?? '?', seen_during: during });
    console.error(`model ${name} is failed (${during}): ${info.failure?.reason}; POST /models/${name}/load to clear it`);
    const load = await m.api('POST', `/models/${name}/load`);
    if (load.status !== 200) throw new Error(`POST /models/${name}/load: ${load.status} ${JSON.stringify(load.body)}`);
  }
  throw new Error(`model ${name} did not become available`);
}

async function setBudget(m: ManagerProcess, s: Setup, budgetMb: number): Promise<unknown> {
  writeConfig(s, budgetMb);
  const r = await m.api<{ restart_required: string[]; models: { unchanged: string[] } }>('POST', '/config/reload');
  if (r.status !== 200) throw new Error(`POST /config/reload: ${r.status} ${JSON.stringify(r.body)}`);
  if (r.body.restart_required.length > 0) throw new Error(`POST /config/reload: restart required for ${r.body.restart_required.join(', ')}`);
  if (r.body.models.unchanged.length !== MODELS.length) throw new Error(`POST /config/reload changed models: ${JSON.stringify(r.body.models)}`);
  return r.body;
}

interface CpuMemory {
  budget_mb: number | null;
  used_mb: number;
}

async function cpuMemory(m: ManagerProcess): Promise<CpuMemory> {
  const r = await m.api<{ devices: Array<CpuMemory & { device: string }> }>('GET', '/memory');
  const cpu = r.body.devices.find((d) => d.device === 'cpu');
  if (cpu === undefined) throw new Error(`GET /memory: no cpu device: ${JSON.stringify(r.body)}`);
  return { budget_mb: cpu.budget_mb, used_mb: cpu.used_mb };
}

// ---- /metrics ----

interface Counters {
  loads_ok: number;
  loads_refused: number;
  loads_failed: number;
  evictions_budget: number;
  evictions_preempt: number;
  evictions_idle: number;
  evictions_unload: number;
  cold_start_sum_s: number;
  cold_start_count: number;
}

async function counters(m: ManagerProcess, model?: string): Promise<Counters> {
  const text = String((await m.api('GET', '/metrics')).body);
  const only: Record<string, string> = model === undefined ? {} : { model };
  return {
    loads_ok: metricSum(text, 'teiplex_model_loads_total', { ...only, result: 'ok' }),
    loads_refused: metricSum(text, 'teiplex_model_loads_total', { ...only, result: 'refused' }),
    loads_failed: metricSum(text, 'teiplex_model_loads_total', { ...only, result: 'failed' }),
    evictions_budget: metricSum(text, 'teiplex_model_evictions_total', { ...only, reason: 'budget' }),
    evictions_preempt: metricSum(text, 'teiplex_model_evictions_total', { ...only, reason: 'preempt' }),
    evictions_idle: metricSum(text, 'teiplex_model_evictions_total', { ...only, reason: 'idle' }),
    evictions_unload: metricSum(text, 'teiplex_model_evictions_total', { ...only, reason: 'unload' }),
    cold_start_sum_s: metricSum(text, 'teiplex_cold_start_seconds_sum', only),
    cold_start_count: metricSum(text, 'teiplex_cold_start_seconds_count', only),
  };
}

function delta(after: Counters, before: Counters): Counters {
  return Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v - before[k as keyof Counters]])) as unknown as Counters;
}

// ---- one embeddings request ----

interface Outcome {
  ms: number;
  status: number;
  /** The error code of a failed request (OpenAI shape: error.code). */
  code?: string;
  message?: string;
}

async function embed(baseUrl: string, model: string, input: string | string[]): Promise<Outcome> {
  const t0 = performance.now();
  try {
    const res = await fetch(`${baseUrl}/v1/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, input }) });
    const body = (await res.json()) as { data?: unknown[]; error?: { code?: string; type?: string; message?: string } };
    const ms = performance.now() - t0;
    if (res.ok) {
      const want = Array.isArray(input) ? input.length : 1;
      if (body.data?.length !== want) return { ms, status: res.status, code: 'WRONG_ROW_COUNT', message: `${body.data?.length} rows for ${want} inputs` };
      return { ms, status: res.status };
    }
    return { ms, status: res.status, code: body.error?.code ?? body.error?.type ?? 'unknown', message: body.error?.message };
  } catch (err) {
    return { ms: performance.now() - t0, status: 0, code: 'TRANSPORT', message: (err as Error).message };
  }
}

const failed = (o: Outcome): boolean => o.status !== 200 || o.code !== undefined;

// ---- 1. cold start ----

/**
 * Where one cold start's time went, from the replica's log (the manager's `[teiplex]` lines and the
 * router's JSON lines carry wall-clock times) between the request's send and its answer (ms):
 * decide (request -> spawn or hand-over), process (-> the router's `starting`: Node start-up and
 * imports, or a standby's hand-over), listen (-> `loading model`: gRPC bind, model files),
 * load (-> ready line: tokenizer, ONNX session, warm-up), seen (-> the manager's `running`),
 * answer (-> the answer: forwarding, the first request).
 */
interface Breakdown {
  /** CPU time (user + system, ms, /proc) the replica's process spent from the request's send to its answer: less noisy than wall time on a shared machine. */
  child_cpu?: number;
  /** The manager's CPU time over the same span (ms). */
  manager_cpu?: number;
  decide: number;
  process: number;
  listen: number;
  load: number;
  seen: number;
  answer: number;
  standby: boolean;
}
const PHASES = ['decide', 'process', 'listen', 'load', 'seen', 'answer'] as const;

function breakdown(log: string, t0: number, t1: number): Breakdown | undefined {
  const lines = log.split('\n');
  let start = -1;
  for (let i = lines.length - 1; i >= 0 && start < 0; i--) if (lines[i].includes('stopped -> starting')) start = i;
  if (start < 0) return undefined;
  const at = (pred: (l: string) => boolean): number | undefined => {
    const l = lines.slice(start).find(pred);
    if (l === undefined) return undefined;
    const iso = l.startsWith('[teiplex] ') ? l.slice(10, 34) : (/"time":"([^"]+)"/.exec(l)?.[1] ?? '');
    const t = Date.parse(iso);
    return Number.isFinite(t) ? t : undefined;
  };
  const spawn = at((l) => l.startsWith('[teiplex] ') && l.includes(' spawn: '));
  const starting = at((l) => l.includes('"msg":"starting"'));
  const loading = at((l) => l.includes('"msg":"loading model"'));
  const ready = at((l) => l.includes('"msg":"ready"'));
  const running = at((l) => l.includes('starting -> running'));
  if ([spawn, starting, loading, ready, running].some((x) => x === undefined)) return undefined;
  return {
    decide: spawn! - t0,
    process: starting! - spawn!,
    listen: loading! - starting!,
    load: ready! - loading!,
    seen: running! - ready!,
    answer: t1 - running!,
    standby: lines.slice(start).some((l) => l.includes('taken over by standby child')),
  };
}

interface ColdStartResult {
  model: string;
  variant: string;
  cold: Summary & { runs_ms: number[] };
  warm: Summary;
  manager_cold_start_s: { sum: number; count: number; mean: number };
  /** Per run, where the time went; the median of each phase. */
  breakdown: { runs: Breakdown[]; p50_ms: Record<(typeof PHASES)[number], number>; child_cpu_p50_ms: number; manager_cpu_p50_ms: number };
  failures: Outcome[];
}

interface Target {
  m: ManagerProcess;
  setup: Setup;
  baseUrl: string;
}

/** CPU time (user + system) a process has used so far, ms (/proc/<pid>/stat, clock ticks of 10 ms); NaN when it is gone. */
function cpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

/** Until no standby child is still starting (one started after the last cold start), then 1 s more. */
async function settle(m: ManagerProcess): Promise<void> {
  const end = Date.now() + 60_000;
  while (Date.now() < end) {
    const r = await m.api<{ devices: Array<{ standby?: Array<{ state: string }> }> }>('GET', '/memory');
    if (!r.body.devices.some((d) => d.standby?.some((s) => s.state === 'starting'))) break;
    await sleep(200);
  }
  await sleep(1000);
}

/** Cold starts on each target in alternating rounds (noise on a shared machine hits both alike). */
async function coldStarts(targets: Target[], model: string, runs: number, warmPerRun: number): Promise<ColdStartResult[]> {
  const state = await Promise.all(
    targets.map(async (t) => ({ t, before: await counters(t.m, model), cold: [] as number[], warm: [] as number[], failures: [] as Outcome[], phases: [] as Breakdown[] })),
  );
  for (let i = 0; i < runs; i++) {
    for (const s of state) {
      const { m, baseUrl, setup } = s.t;
      await unload(m, model, 'cold start');
      await settle(m);
      // CPU so far of every standby child (one of them becomes the replica) and of the manager.
      const standbyPids = (await m.api<{ devices: Array<{ standby?: Array<{ pid: number }> }> }>('GET', '/memory')).body.devices.flatMap((d) => d.standby?.map((x) => x.pid) ?? []);
      const cpuBefore = new Map(standbyPids.map((pid) => [pid, cpuMs(pid)]));
      const managerBefore = cpuMs(m.proc.pid!);
      const t0 = Date.now();
      const c = await embed(baseUrl, model, SHORT_INPUT);
      const t1 = Date.now();
      const replicaPid = (await modelInfo(m, model)).replicas[0]?.pid;
      const childCpu = replicaPid !== undefined ? cpuMs(replicaPid) - (cpuBefore.get(replicaPid) ?? 0) : undefined;
      const managerCpu = cpuMs(m.proc.pid!) - managerBefore;
      if (failed(c)) s.failures.push(c);
      else s.cold.push(c.ms);
      const b = breakdown(readFileSync(path.join(setup.dir, 'logs', `${model}-1.log`), 'utf8'), t0, t1);
      if (b !== undefined) {
        if (childCpu !== undefined && Number.isFinite(childCpu)) b.child_cpu = childCpu;
        if (Number.isFinite(managerCpu)) b.manager_cpu = managerCpu;
        s.phases.push(b);
      }
      for (let j = 0; j < warmPerRun; j++) {
        const w = await embed(baseUrl, model, SHORT_INPUT);
        if (failed(w)) s.failures.push(w);
        else s.warm.push(w.ms);
      }
      const where = b === undefined ? '' : ` (${PHASES.map((p) => `${p} ${b[p]}`).join(', ')}${b.standby ? ', standby' : ''}; cpu: child ${b.child_cpu}, manager ${b.manager_cpu})`;
      console.error(`cold start ${i + 1}/${runs} [${setup.variant}]: ${fmtMs(c.ms)} ms${failed(c) ? ` (failed: ${c.status} ${c.code})` : ''}${where}`);
    }
  }
  return Promise.all(
    state.map(async (s) => {
      const d = delta(await counters(s.t.m, model), s.before);
      return {
        model,
        variant: s.t.setup.variant,
        cold: { ...summarize(s.cold), runs_ms: s.cold },
        warm: summarize(s.warm),
        manager_cold_start_s: { sum: d.cold_start_sum_s, count: d.cold_start_count, mean: d.cold_start_sum_s / d.cold_start_count },
        breakdown: {
          runs: s.phases,
          p50_ms: Object.fromEntries(PHASES.map((p) => [p, quantile(s.phases.map((b) => b[p]), 0.5)])) as Record<(typeof PHASES)[number], number>,
          child_cpu_p50_ms: quantile(s.phases.flatMap((b) => (b.child_cpu !== undefined ? [b.child_cpu] : [])), 0.5),
          manager_cpu_p50_ms: quantile(s.phases.flatMap((b) => (b.manager_cpu !== undefined ? [b.manager_cpu] : [])), 0.5),
        },
        failures: s.failures,
      };
    }),
  );
}

// ---- 2. footprint ----

interface Footprints {
  /** Model A's footprint as first measured after its cold starts (MiB). */
  a_after_cold_starts_mb: number | null;
  /** Each model's footprint after warm-up batches and a fresh sample (MiB). */
  after_warmup_mb: Record<string, number | null>;
  /** What the budgets are computed from: the largest footprint after warm-up (identical shapes still differ by ~10% in RSS). */
  basis_mb: number;
}

/**
 * With no budget: load every model, send each a few batches, have the manager sample now (GET
 * /memory), read the footprints. The budgets' basis is the largest of the three, so that (a)
 * holds all three and (b) any two.
 */
async function measureFootprints(m: ManagerProcess, baseUrl: string, batch: string[]): Promise<Footprints> {
  const first = (await modelInfo(m, MODELS[0])).footprint_mb;
  // Each model started once and stopped first: a start that writes the optimized-model cache
  // holds more memory than the later ones, which load from it; the thrash runs on those.
  for (const name of MODELS.slice(1)) {
    const o = await embed(baseUrl, name, SHORT_INPUT);
    if (failed(o)) throw new Error(`first start of ${name}: ${o.status} ${o.code}: ${o.message}`);
    await unload(m, name, 'footprints');
  }
  for (const name of MODELS) {
    for (let i = 0; i < 5; i++) {
      const o = await embed(baseUrl, name, batch);
      if (failed(o)) throw new Error(`warm-up of ${name}: ${o.status} ${o.code}: ${o.message}`);
    }
  }
  // The catalog samples footprints every 5 s; GET /memory samples at once.
  await cpuMemory(m);
  const infos = await models(m);
  const after = Object.fromEntries(MODELS.map((n) => [n, infos.find((x) => x.name === n)?.footprint_mb ?? null]));
  const measured = Object.values(after);
  if (measured.some((mb) => mb === null || !(mb > 0))) throw new Error(`a footprint is missing: ${JSON.stringify(infos)}`);
  // The smallest: (b) 2.5 x it then holds two replicas of any of the models but never three
  // (the first model's first start, which writes its cache entry, holds more than the others).
  return { a_after_cold_starts_mb: first, after_warmup_mb: after, basis_mb: Math.min(...(measured as number[])) };
}

// ---- 3. thrash ----

interface ClientLog {
  model: string;
  outcomes: Outcome[];
}

interface WorkloadResult {
  workload: string;
  duration_s: number;
  requests_per_s: number;
  texts_per_s: number;
  answered: number;
  p50_ms: number;
  p99_ms: number;
  answered_per_model: Record<string, number>;
  /** Per model: answered / (answered by all / 3), the share of an equal split; and the smallest. */
  fair_share: Record<string, number>;
  min_fair_share: number;
  /** Replica loads per request sent (answered or not): 1 = every request a cold start. */
  loads_per_request: number;
  /** The longest an answered request took (waiting for memory included). */
  max_ms: number;
  failures: Record<string, number>;
  failure_examples: Record<string, string>;
  metrics: Counters;
}

/** One client: send batches in a loop until `deadline`, to the models `pick(i)` names. */
async function client(baseUrl: string, pick: (i: number) => string, batch: string[], deadline: number, failPauseMs: number): Promise<ClientLog[]> {
  const logs = new Map<string, ClientLog>();
  for (let i = 0; performance.now() < deadline; i++) {
    const model = pick(i);
    const o = await embed(baseUrl, model, batch);
    if (!logs.has(model)) logs.set(model, { model, outcomes: [] });
    logs.get(model)!.outcomes.push(o);
    if (failed(o)) await sleep(failPauseMs);
  }
  return [...logs.values()];
}

const sequential = (baseUrl: string, batch: string[], deadline: number, pause: number): Promise<ClientLog[]> =>
  client(baseUrl, (i) => MODELS[i % MODELS.length], batch, deadline, pause);

const concurrent = async (baseUrl: string, batch: string[], deadline: number, pause: number): Promise<ClientLog[]> =>
  (await Promise.all(MODELS.map((name) => client(baseUrl, () => name, batch, deadline, pause)))).flat();

/** One request per model in order, not timed, so a workload starts from a settled set of loaded replicas. */
async function prime(baseUrl: string, batch: string[]): Promise<void> {
  for (const name of MODELS) await embed(baseUrl, name, batch);
}

async function runWorkload(
  m: ManagerProcess,
  baseUrl: string,
  workload: string,
  drive: typeof sequential,
  batch: string[],
  durationS: number,
  pause: number,
): Promise<WorkloadResult> {
  await prime(baseUrl, batch);
  const before = await counters(m);
  const t0 = performance.now();
  const logs = await drive(baseUrl, batch, t0 + durationS * 1000, pause);
  const elapsed = (performance.now() - t0) / 1000;
  const metrics = delta(await counters(m), before);
  const all = logs.flatMap((l) => l.outcomes);
  const ok = all.filter((o) => !failed(o)).map((o) => o.ms);
  const failures: Record<string, number> = {};
  const examples: Record<string, string> = {};
  for (const o of all.filter(failed)) {
    const key = `${o.status} ${o.code}`;
    failures[key] = (failures[key] ?? 0) + 1;
    examples[key] ??= o.message ?? '';
  }
  const perModel: Record<string, number> = {};
  for (const l of logs) perModel[l.model] = (perModel[l.model] ?? 0) + l.outcomes.filter((o) => !failed(o)).length;
  const fair = ok.length / MODELS.length;
  const fairShare = Object.fromEntries(MODELS.map((n) => [n, fair > 0 ? (perModel[n] ?? 0) / fair : 0]));
  return {
    workload,
    duration_s: elapsed,
    requests_per_s: ok.length / elapsed,
    texts_per_s: (ok.length * batch.length) / elapsed,
    answered: ok.length,
    p50_ms: quantile(ok, 0.5),
    p99_ms: quantile(ok, 0.99),
    answered_per_model: perModel,
    fair_share: fairShare,
    min_fair_share: Math.min(...Object.values(fairShare)),
    loads_per_request: all.length > 0 ? metrics.loads_ok / all.length : 0,
    max_ms: ok.length > 0 ? Math.max(...ok) : 0,
    failures,
    failure_examples: examples,
    metrics,
  };
}

interface BudgetResult {
  key: string;
  label: string;
  budget_mb: number;
  reload: unknown;
  /** Right after the reload, before anything is unloaded: is the lower budget enforced on what runs? */
  after_reload: { loaded: number; cpu: CpuMemory };
  workloads: WorkloadResult[];
}

async function underBudget(m: ManagerProcess, s: Setup, baseUrl: string, b: (typeof BUDGETS)[number], footprintMb: number, batch: string[]): Promise<BudgetResult> {
  const budgetMb = b.factor * footprintMb;
  const reload = await setBudget(m, s, budgetMb);
  await sleep(1000);
  const after_reload = { loaded: (await models(m)).filter((x) => x.state === 'loaded').length, cpu: await cpuMemory(m) };
  const workloads: WorkloadResult[] = [];
  const durationS = Number(flags.duration);
  const pause = Number(flags['fail-pause-ms']);
  for (const [name, drive] of [
    ['(i) sequential A,B,C', sequential],
    ['(ii) 3 concurrent, one model each', concurrent],
  ] as const) {
    for (const model of MODELS) await unload(m, model, `before ${b.key} ${name}`);
    const r = await runWorkload(m, baseUrl, name, drive, batch, durationS, pause);
    console.error(`${b.key} ${name}: ${r.requests_per_s.toFixed(2)} req/s, p50 ${fmtMs(r.p50_ms)} ms, loads ${r.metrics.loads_ok}, evictions ${r.metrics.evictions_budget}, failures ${JSON.stringify(r.failure_examples)}`);
    workloads.push(r);
  }
  return { key: b.key, label: b.label, budget_mb: budgetMb, reload, after_reload, workloads };
}

// ---- report ----

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const line = (r: string[]) => `| ${r.map((x, c) => x.padEnd(widths[c])).join(' | ')} |`;
  return [line(rows[0]), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.slice(1).map(line)].join('\n');
}

const VARIANT_LABEL: Record<string, string> = {
  defaults: 'defaults (standby_children = 1, optimized-model cache)',
  off: 'standby_children = 0, onnx_cache_dir = ""',
};

function coldStartTable(cs: ColdStartResult[]): string {
  const rows = [['config', 'request', 'n', 'p50 ms', 'min ms', 'max ms']];
  for (const c of cs) {
    const v = VARIANT_LABEL[c.variant] ?? c.variant;
    rows.push([v, 'cold (unloaded -> first answer)', String(c.cold.n), fmtMs(c.cold.p50_ms), fmtMs(c.cold.min_ms), fmtMs(c.cold.max_ms)]);
    rows.push([v, 'warm (replica loaded)', String(c.warm.n), fmtMs(c.warm.p50_ms), fmtMs(c.warm.min_ms), fmtMs(c.warm.max_ms)]);
    rows.push([v, 'manager teiplex_cold_start_seconds (mean)', String(c.manager_cold_start_s.count), fmtMs(c.manager_cold_start_s.mean * 1000), '', `sum ${c.manager_cold_start_s.sum.toFixed(2)} s`]);
  }
  return table(rows);
}

function breakdownTable(cs: ColdStartResult[]): string {
  const rows = [['config', 'n', ...PHASES.map((p) => `${p} ms`), 'standby used', 'child CPU ms', 'manager CPU ms']];
  for (const c of cs) {
    const b = c.breakdown;
    rows.push([VARIANT_LABEL[c.variant] ?? c.variant, String(b.runs.length), ...PHASES.map((p) => fmtMs(b.p50_ms[p])), `${b.runs.filter((x) => x.standby).length}/${b.runs.length}`, fmtMs(b.child_cpu_p50_ms), fmtMs(b.manager_cpu_p50_ms)]);
  }
  return table(rows);
}

function thrashTable(results: BudgetResult[]): string {
  const rows = [['budget', 'workload', 'req/s', 'texts/s', 'ratio b/a', 'p50 ms', 'p99 ms', 'max ms', 'answered per model', 'fair share per model (min)', 'failures', 'loads ok/refused', 'loads per request', 'evictions budget/preempt']];
  for (const r of results) {
    for (const [i, w] of r.workloads.entries()) {
      const base = results[0].workloads[i];
      rows.push([
        `${r.label} = ${r.budget_mb.toFixed(0)} MiB`,
        w.workload,
        w.requests_per_s.toFixed(2),
        w.texts_per_s.toFixed(1),
        r === results[0] ? '' : `${(w.requests_per_s / base.requests_per_s).toFixed(2)}x`,
        fmtMs(w.p50_ms),
        fmtMs(w.p99_ms),
        fmtMs(w.max_ms),
        MODELS.map((n) => w.answered_per_model[n] ?? 0).join('/'),
        `${MODELS.map((n) => (w.fair_share[n] ?? 0).toFixed(2)).join('/')} (${w.min_fair_share.toFixed(2)})`,
        Object.entries(w.failures)
          .map(([k, v]) => `${k} x${v}`)
          .join(', ') || '0',
        `${w.metrics.loads_ok}/${w.metrics.loads_refused}`,
        w.loads_per_request.toFixed(2),
        `${w.metrics.evictions_budget}/${w.metrics.evictions_preempt}`,
      ]);
    }
  }
  return table(rows);
}

async function main(): Promise<void> {
  const setup = await prepareConfig();
  const m = await startManager(setup.configFile);
  const baseUrl = `http://127.0.0.1:${m.apiPort}`;
  const batch = makeWorkload({ count: Number(flags.batch) });
  const compare = !flags['no-compare'];
  const offSetup = compare ? await prepareConfig('off') : undefined;
  const off = offSetup !== undefined ? await startManager(offSetup.configFile) : undefined;
  try {
    const targets: Target[] = [{ m, setup, baseUrl }];
    if (off !== undefined) targets.unshift({ m: off, setup: offSetup!, baseUrl: `http://127.0.0.1:${off.apiPort}` });
    const colds = flags['skip-cold'] ? [] : await coldStarts(targets, MODELS[0], Number(flags['cold-runs']), Number(flags['warm-per-run']));
    await off?.stop();
    const cold = colds[colds.length - 1] as ColdStartResult | undefined;
    const footprints = await measureFootprints(m, baseUrl, batch);
    console.error(`footprints (MiB): ${JSON.stringify(footprints)}`);
    const budgets: BudgetResult[] = [];
    const wanted = new Set(flags.budgets.split(',').map((x) => x.trim()));
    for (const b of BUDGETS) if (wanted.has(b.key)) budgets.push(await underBudget(m, setup, baseUrl, b, footprints.basis_mb, batch));

    const machine = { cpus: availableParallelism(), cpu_model: cpus()[0]?.model, node: process.version };
    const md = [
      '# teiplex on-demand models',
      '',
      `${machine.cpus} cores (${machine.cpu_model}), Node ${machine.node}; three generated minilm-l6 embedding models (seeds 0, 1, 2), CPU children; client, manager and children share the cores.`,
      '',
      ...(cold === undefined ? ['Cold starts not measured (--skip-cold).', ''] : [`## Cold start of ${cold.model}, short input ("${SHORT_INPUT}")`,
      '',
      coldStartTable(colds),
      ...colds.flatMap((c) => (c.failures.length > 0 ? ['', `${c.variant}: ${c.failures.length} failed: ${JSON.stringify(c.failures)}`] : [])),
      '',
      'Where the time of a cold start goes (p50 of each phase, ms; from the replica log): decide = request -> spawn or hand-over; process = -> the router starts (Node start-up and imports, or a standby hand-over); listen = -> its model files are read (gRPC bind); load = -> ready line (tokenizer, ONNX session, warm-up); seen = -> the manager sees it serving; answer = -> the answer (forwarding, first request). CPU: user + system time of the replica\'s process (a standby\'s counted from the request on) and of the manager over the same span (/proc, 10 ms ticks): less noisy than wall time on a shared machine.',
      '',
      breakdownTable(colds),
      '']),
      `## Thrash: round-robin over three models, batches of ${batch.length} texts, ${flags.duration} s per workload`,
      '',
      `Footprint (RSS, MiB): ${MODELS[0]} after its cold starts ${footprints.a_after_cold_starts_mb ?? '-'}; after warm-up batches ${MODELS.map((n) => `${n} ${footprints.after_warmup_mb[n] ?? '-'}`).join(', ')}. Budgets from the smallest, ${footprints.basis_mb} MiB (the three together: ${Object.values(footprints.after_warmup_mb).reduce((a: number, x) => a + (x ?? 0), 0).toFixed(0)} MiB). A client pauses ${flags['fail-pause-ms']} ms after a failure.`,
      '',
      thrashTable(budgets),
      '',
      'Fair share: a model\'s answered requests / (all answered / 3); 1.00 each is an equal split. Loads per request: teiplex_model_loads_total{result="ok"} over the requests sent (1: every request a cold start). Evictions: budget = an idle replica evicted for another model, preempt = a busy one taken by a model that waited memory_wait_preempt_secs (docs/tenancy.md).',
      '',
      ...budgets.map(
        (b) =>
          `After the reload to ${b.key} (${b.budget_mb.toFixed(0)} MiB), before unloading: ${b.after_reload.loaded} loaded, cpu used ${b.after_reload.cpu.used_mb.toFixed(0)} MiB of budget ${b.after_reload.cpu.budget_mb?.toFixed(0) ?? '-'} MiB.`,
      ),
      '',
      modelFailures.length === 0 ? 'No model was marked failed.' : `Models marked failed (found when unloading; cleared with POST /models/{name}/load):`,
      ...modelFailures.map((f) => `- ${f.model} (${f.seen_during}, at ${f.at}): ${f.reason}`),
      '',
    ].join('\n');
    console.log(md);
    mkdirSync(flags.out, { recursive: true });
    writeFileSync(
      path.join(flags.out, 'on-demand.json'),
      JSON.stringify({ machine, flags, cold_start: cold, cold_starts: colds, footprints, budgets, model_failures: modelFailures }, null, 2) + '\n',
    );
    writeFileSync(path.join(flags.out, 'on-demand.md'), md);
    console.log(`wrote ${path.join(flags.out, 'on-demand.json')} and on-demand.md`);
  } catch (err) {
    console.error(`--- manager output (tail) ---\n${m.output().slice(-8000)}`);
    throw err;
  } finally {
    await off?.stop();
    await m.stop();
    rmSync(setup.dir, { recursive: true, force: true });
    if (offSetup !== undefined) rmSync(offSetup.dir, { recursive: true, force: true });
  }
}

await main();
