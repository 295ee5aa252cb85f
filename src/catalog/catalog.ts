/**
 * The catalog of on-demand models (docs/on-demand.md). Models are listed once; replicas (instances
 * owned by the model, not persisted themselves) are started when a request needs one and stopped
 * when idle, under a memory budget per device:
 * - Cold start: a request for a model with no serving replica starts one and waits for it
 *   (single flight: concurrent first requests share one start), bounded by
 *   cold_start_timeout_secs, cold_start_queue_size and cold_start_queue_mb (the waiters' bodies);
 *   a waiter whose client goes away leaves the queue; a client may ask not to wait.
 * - Unload and delete cancel a start in progress: its child is stopped at once, not retried.
 * - Budget: before a start that would exceed its device's budget, the least recently used idle
 *   replicas there are stopped (memory-budget.ts); in use or pinned ones never are.
 * - A replica that fails before it is ever ready marks its model `failed`: requests get that
 *   error at once, nothing is retried until an explicit load or a spec change.
 * - A sweep every SWEEP_MS stops idle replicas, keeps min_replicas loaded, starts a replica more
 *   under sustained queueing, and samples footprints.
 * Starts and evictions are serialized (one placement decision at a time); waiting for a child to
 * be ready is not.
 */
import os from 'node:os';
import { isDeepStrictEqual } from 'node:util';
import { TeiplexError } from '../common/errors.js';
import { reconcile, type ReconcileReport } from '../common/reconcile.js';
import { SerialQueue } from '../common/serial-queue.js';
import { checkModels, DuplicateModelNameError, type Config } from '../config/config.js';
import { maxReplicas, modelName, namesOf, replicaSpec, type ModelSpec } from '../config/model-spec.js';
import { ConfigError } from '../config/validate.js';
import { checkGpuIds } from '../supervisor/gpus.js';
import type { Instance } from '../supervisor/instance.js';
import { canServe, hasProcess, type InstanceState } from '../supervisor/instance-state.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import type { Source, StoredModel } from '../state/state-store.js';
import { CatalogModel, type ModelState } from './catalog-model.js';
import { gpuMemoryByPid, measureFootprint, processGroups } from './footprint.js';
import { deviceBudgets, devicesOf, heldMb, planPlacement, type Budget, type Resident } from './memory-budget.js';

/** The config keys the catalog reads; a reload replaces them. */
export type CatalogSettings = Pick<
  Config,
  | 'idle_timeout_secs'
  | 'cold_start_timeout_secs'
  | 'cold_start_queue_size'
  | 'cold_start_queue_mb'
  | 'gpu_memory_budget_mb'
  | 'gpu_memory_reserve_mb'
  | 'cpu_memory_budget_mb'
  | 'cpu_memory_reserve_mb'
  | 'default_memory_mb'
  | 'scale_up_inflight'
  | 'scale_up_after_secs'
  | 'nvidia_smi_path'
>;

export interface CatalogEvents {
  load?(model: string, result: 'ok' | 'failed' | 'refused', seconds: number): void;
  evict?(model: string, reason: 'idle' | 'budget' | 'unload'): void;
}

/** Requests in flight and last use per instance (the front ends' count, src/mux/inflight.ts). */
export interface Usage {
  get(instance: string): number;
  lastUsed(instance: string): number | undefined;
  touch(instance: string): void;
  forget(instance: string): void;
}

export interface CatalogOptions {
  supervisor: Supervisor;
  inflight: Usage;
  settings: CatalogSettings;
  events?: CatalogEvents;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** What a request waiting for a cold start holds, and how its client's going away is seen. */
export interface ColdStartWaiter {
  /** Bytes of its body (counted against cold_start_queue_mb). */
  bytes?: number;
  /** Aborted when its client has gone away: it leaves the queue. */
  signal?: AbortSignal;
}

function gone(m: CatalogModel): TeiplexError {
  return new TeiplexError('CANCELLED', `the client went away while waiting for model '${m.name}' to start`);
}

/** Header (HTTP) or metadata key (gRPC): a request for a model that is not loaded fails at once with Retry-After instead of waiting for its cold start. */
export const NO_WAIT_HEADER = 'x-teiplex-no-wait';

/** Does a header/metadata value ask not to wait? */
export function asksNoWait(value: unknown): boolean {
  const v = Array.isArray(value) ? value[0] : value;
  return typeof v === 'string' && /^(1|true|yes)$/i.test(v.trim());
}

/** How often idle replicas, pinned counts and queueing are looked at. */
const SWEEP_MS = 250;
/** Starts of a replica that fail before it is ready, in a row, before its model is marked failed. */
const LOAD_ATTEMPTS = 2;
/** After a failed start for min_replicas (no room, say), the wait before trying again. */
const KEEP_RETRY_MS = 5000;
/** How often footprints and device usage are sampled. */
const FOOTPRINT_MS = 5000;
const MIB = 1024 * 1024;

export interface DeviceMemory {
  device: string;
  budget_mb: number | null;
  budget_source: string;
  used_mb: number;
}

export type CatalogReconcileReport = ReconcileReport;

export class Catalog {
  private readonly models = new Map<string, CatalogModel>();
  /** Every name a request may use (catalog name, model_id, aliases) -> model. */
  private readonly byName = new Map<string, CatalogModel>();
  private settings: CatalogSettings;
  /** Replicas we are stopping: their transitions are ours, not failures. */
  private readonly stopping = new Set<string>();
  /** Replicas starting, with what to do when they are ready or fail first. */
  private readonly readiness = new Map<string, { resolve(): void; reject(reason: string): void }>();
  /** Bytes of request bodies waiting for cold starts (cold_start_queue_mb). */
  private waitingBytes = 0;
  /** Measured footprint per instance (MiB). */
  private readonly footprints = new Map<string, number>();
  /** Placement decisions (choose a device, evict, create) one at a time. */
  private readonly placements = new SerialQueue();
  private sweepTimer: NodeJS.Timeout | undefined;
  private footprintTimer: NodeJS.Timeout | undefined;
  private memorySnapshot: DeviceMemory[] = [];
  /** Devices found over budget with nothing to evict (logged once until that changes). */
  private readonly overBudget = new Set<string>();
  private closed = false;
  private readonly log: (msg: string, fields?: Record<string, unknown>) => void;

  constructor(private readonly o: CatalogOptions) {
    this.settings = o.settings;
    this.log = o.log ?? (() => undefined);
    o.supervisor.attachCatalog({ stored: () => this.stored(), restore: (models) => this.restore(models) });
  }

  // ---- the list ----

  list(): CatalogModel[] {
    return [...this.models.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** A model by catalog name, model_id or alias. */
  lookup(name: string): CatalogModel | undefined {
    return this.byName.get(name);
  }

  get(name: string): CatalogModel {
    const m = this.lookup(name);
    if (m === undefined) throw new TeiplexError('MODEL_NOT_FOUND', `no catalog model is named '${name}'${this.models.size > 0 ? `; the catalog has ${this.list().map((x) => `'${x.name}'`).join(', ')}` : ' (the catalog is empty)'}`);
    return m;
  }

  replicas(m: CatalogModel): Instance[] {
    return [...m.replicas].map((n) => this.o.supervisor.find(n)).filter((i): i is Instance => i !== undefined);
  }

  state(m: CatalogModel): ModelState {
    return m.state(this.replicas(m));
  }

  /**
   * For a request naming `name` (its catalog name, model_id or alias): the catalog model that must
   * be started before it can be served, or undefined (not a catalog model, or something serves:
   * a replica, or an instance outside the catalog with the model's model_id).
   */
  coldStartFor(name: string): CatalogModel | undefined {
    const m = this.byName.get(name);
    if (m === undefined || this.serving(m)) return undefined;
    const id = m.spec.model_id;
    return this.o.supervisor.list().some((i) => i.spec.model_id === id && canServe(i.status)) ? undefined : m;
  }

  /** Does a replica of `m` serve now? */
  serving(m: CatalogModel): boolean {
    for (const n of m.replicas) {
      const s = this.o.supervisor.find(n)?.status;
      if (s !== undefined && canServe(s)) return true;
    }
    return false;
  }

  /** Requests in flight and last use per instance. */
  get usage(): Usage {
    return this.o.inflight;
  }

  footprintOf(instance: string): number | undefined {
    return this.footprints.get(instance);
  }

  /** Budget and use per device, as last sampled. */
  memory(): DeviceMemory[] {
    return this.memorySnapshot;
  }

  /** Budget and use per device, sampled now. */
  async measureMemory(): Promise<DeviceMemory[]> {
    await this.sampleAll();
    return this.memorySnapshot;
  }

  private stored(): StoredModel[] {
    return this.list().map((m) => m.stored());
  }

  private restore(models: StoredModel[]): void {
    for (const s of models) {
      try {
        this.insert(CatalogModel.fromStored(s));
      } catch (err) {
        this.log('catalog model not restored', { model: s.name ?? s.model_id, reason: (err as Error).message });
      }
    }
  }

  private insert(m: CatalogModel): void {
    const specs = [...this.list().map((x) => x.spec), { ...m.spec, name: m.name }];
    try {
      checkModels({ models: specs }, 'models');
    } catch (err) {
      if (err instanceof ConfigError) throw new TeiplexError(err instanceof DuplicateModelNameError ? 'MODEL_EXISTS' : 'BAD_REQUEST', err.message.replace(/^models: models\[\d+\]: /, `model '${m.name}': `));
      throw err;
    }
    this.models.set(m.name, m);
    for (const n of namesOf(m.spec)) this.byName.set(n, m);
    this.byName.set(m.name, m);
  }

  private unindex(m: CatalogModel): void {
    this.models.delete(m.name);
    for (const [n, x] of [...this.byName]) if (x === m) this.byName.delete(n);
  }

  /** POST /models: add a model (persisted); nothing starts until a request, unless pinned. */
  async add(spec: ModelSpec, source: Source = 'api'): Promise<CatalogModel> {
    const m = new CatalogModel(spec, source, new Date().toISOString());
    if (this.models.has(m.name)) throw new TeiplexError('MODEL_EXISTS', `catalog model '${m.name}' exists`);
    if (spec.gpu_ids !== undefined) checkGpuIds(spec.gpu_ids, await this.o.supervisor.gpus(), 'gpu_ids');
    this.insert(m);
    try {
      await this.o.supervisor.persistState();
    } catch (err) {
      this.unindex(m);
      throw err;
    }
    return m;
  }

  /**
   * DELETE /models/{name}: forget it (requests naming it from now on: 404) and save the state
   * without it (a failed write puts it back and throws: nothing changed), then stop its replicas;
   * a start in progress is cancelled (its child gets SIGTERM, nothing is retried).
   */
  async remove(name: string): Promise<CatalogModel> {
    const m = this.get(name);
    this.unindex(m);
    try {
      await this.o.supervisor.persistState();
    } catch (err) {
      this.insert(m);
      throw err;
    }
    await this.stopAll(m, 'unload');
    return m;
  }

  /** Config reload: the catalog models that came from the config, brought in line with `specs`. */
  async reconcile(specs: readonly ModelSpec[], settings: CatalogSettings): Promise<CatalogReconcileReport> {
    this.settings = settings;
    const report = await reconcile(specs, {
      nameOf: modelName,
      owned: () => this.list().filter((m) => m.source === 'config').map((m) => [m.name, m.spec]),
      same: (want, have) => isDeepStrictEqual({ ...want, name: modelName(have) }, { ...have, name: modelName(have) }),
      delete: async (name) => {
        const m = this.models.get(name)!;
        await this.stopAll(m, 'unload');
        this.unindex(m);
      },
      create: async (spec) => this.insert(new CatalogModel(spec, 'config', new Date().toISOString())),
    });
    await this.o.supervisor.persistState();
    return report;
  }

  // ---- serving ----

  /**
   * Make sure a replica of `m` serves: at once when one does; else start one (or join the start
   * in progress) and wait, unless `wait` is false (then MODEL_LOADING at once, the start goes on).
   * A waiter holds `w.bytes` (its request body) against cold_start_queue_mb, all models
   * together; it leaves the queue when its client goes away (`w.signal`: CANCELLED).
   */
  async ensureServing(m: CatalogModel, wait: boolean, w: ColdStartWaiter = {}): Promise<void> {
    if (this.serving(m)) return;
    if (m.failure !== undefined) throw this.failedError(m);
    if (!wait) {
      this.startLoad(m).catch(() => undefined);
      throw new TeiplexError('MODEL_LOADING', `model '${m.name}' is not loaded: it is being started (you asked not to wait)`, { retryAfterSecs: this.retryAfter(m) });
    }
    const s = this.settings;
    if (m.waiters >= s.cold_start_queue_size) {
      throw new TeiplexError('COLD_START_QUEUE_FULL', `model '${m.name}' is starting and ${m.waiters} requests already wait for it (cold_start_queue_size)`, { retryAfterSecs: this.retryAfter(m) });
    }
    const bytes = Math.max(0, w.bytes ?? 0);
    if (bytes > 0 && this.waitingBytes + bytes > s.cold_start_queue_mb * MIB) {
      // The model is still wanted: its start goes on (or begins) for the requests to come.
      this.startLoad(m).catch(() => undefined);
      throw new TeiplexError(
        'COLD_START_QUEUE_FULL',
        `model '${m.name}' is starting and the requests waiting for cold starts hold ${(this.waitingBytes / MIB).toFixed(1)} MiB; this one's ${bytes} bytes would exceed cold_start_queue_mb (${s.cold_start_queue_mb})`,
        { retryAfterSecs: this.retryAfter(m) },
      );
    }
    if (w.signal?.aborted) throw gone(m);
    m.waiters++;
    this.waitingBytes += bytes;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new TeiplexError('MODEL_LOADING', `model '${m.name}' did not finish starting within cold_start_timeout_secs (${s.cold_start_timeout_secs} s); it goes on starting`, {
                retryAfterSecs: this.retryAfter(m),
              }),
            ),
          s.cold_start_timeout_secs * 1000,
        );
      });
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(gone(m));
        w.signal?.addEventListener('abort', onAbort, { once: true });
      });
      await Promise.race([this.startLoad(m), timeout, aborted]);
    } finally {
      clearTimeout(timer);
      if (onAbort !== undefined) w.signal?.removeEventListener('abort', onAbort);
      m.waiters--;
      this.waitingBytes -= bytes;
    }
  }

  /** POST /models/{name}/load: clear a failure and make sure a replica serves. */
  async load(name: string): Promise<CatalogModel> {
    const m = this.get(name);
    m.failure = undefined;
    await this.ensureServing(m, true);
    return m;
  }

  /** POST /models/{name}/unload: stop every replica (refused while min_replicas keeps some). */
  async unload(name: string): Promise<CatalogModel> {
    const m = this.get(name);
    if (m.pinned > 0) {
      throw new TeiplexError('MODEL_BUSY', `model '${m.name}' keeps ${m.pinned} replica(s) loaded (${m.spec.on_demand === false ? 'on_demand = false' : 'min_replicas'}): change its spec to unload it`);
    }
    await this.stopAll(m, 'unload');
    return m;
  }

  private cancelledError(m: CatalogModel): TeiplexError {
    return this.models.get(m.name) === m
      ? new TeiplexError('INSTANCE_UNAVAILABLE', `model '${m.name}' was unloaded while it was starting; a new request starts it again`, { retryAfterSecs: 1 })
      : new TeiplexError('MODEL_NOT_FOUND', `catalog model '${m.name}' was deleted while it was starting`);
  }

  private failedError(m: CatalogModel): TeiplexError {
    return new TeiplexError('MODEL_LOAD_FAILED', `model '${m.name}' failed to load (${m.failure!.at}): ${m.failure!.reason}; POST /models/${m.name}/load tries again`);
  }

  private retryAfter(m: CatalogModel): number {
    const total = m.lastLoadSecs ?? 5;
    const elapsed = m.loadingSince !== undefined ? (Date.now() - m.loadingSince) / 1000 : 0;
    return Math.max(1, Math.ceil(total - elapsed));
  }

  /** The start in progress, or a new one. */
  private startLoad(m: CatalogModel): Promise<Instance> {
    if (m.loading !== undefined) return m.loading;
    m.loadingSince = Date.now();
    const p = this.loadReplica(m).finally(() => {
      m.loading = undefined;
      m.loadingSince = undefined;
    });
    m.loading = p;
    return p;
  }

  private async loadReplica(m: CatalogModel): Promise<Instance> {
    if (this.closed) throw new TeiplexError('UNHEALTHY', 'the manager is shutting down');
    if (m.unloading !== undefined) await m.unloading;
    // Deleted while this start waited for the delete: nothing is started for it.
    if (this.models.get(m.name) !== m) throw new TeiplexError('MODEL_NOT_FOUND', `catalog model '${m.name}' was deleted`);
    // A spec the config's [security] refuses starts nothing and evicts nothing.
    this.o.supervisor.checkSpec(m.spec, m.source);
    const epoch = m.startEpoch;
    const t0 = performance.now();
    let reason = '';
    // A start that fails may be bad luck (a port taken between the check and the bind, a
    // starved CPU): one more try, on a fresh replica, before the model is marked failed.
    for (let attempt = 1; attempt <= LOAD_ATTEMPTS; attempt++) {
      let instance: Instance;
      let ready: Promise<void>;
      try {
        ({ instance, ready } = await this.placements.run(() => {
          if (m.startEpoch !== epoch) throw this.cancelledError(m);
          return this.placeAndCreate(m);
        }));
      } catch (err) {
        if (m.startEpoch === epoch) this.o.events?.load?.(m.name, 'refused', (performance.now() - t0) / 1000);
        throw err;
      }
      try {
        // An unload or delete since the placement decision: this replica goes (stopAll may not have seen it).
        if (m.startEpoch !== epoch) throw this.cancelledError(m);
        await ready;
        const secs = (performance.now() - t0) / 1000;
        m.lastLoadSecs = secs;
        this.o.events?.load?.(m.name, 'ok', secs);
        this.o.inflight.touch(instance.name);
        void this.sampleOne(m, instance).catch(() => undefined);
        return instance;
      } catch (why) {
        reason = String(why);
        await this.stopReplica(m, instance.name);
        if (this.closed) throw new TeiplexError('UNHEALTHY', 'the manager is shutting down');
        // Cancelled by an unload or delete: not a failure of the model, and not retried.
        if (m.startEpoch !== epoch) throw this.cancelledError(m);
        this.log('a replica failed before it was ready', { model: m.name, instance: instance.name, attempt, of: LOAD_ATTEMPTS, reason });
      }
    }
    m.failure = { reason, at: new Date().toISOString() };
    this.log('catalog model failed to load', { model: m.name, reason });
    this.o.events?.load?.(m.name, 'failed', (performance.now() - t0) / 1000);
    throw this.failedError(m);
  }

  /** Pick a device with room (evicting if need be), create the replica; `ready` settles when it serves or fails. */
  private async placeAndCreate(m: CatalogModel): Promise<{ instance: Instance; ready: Promise<void> }> {
    const need = m.expectedMb(this.settings.default_memory_mb);
    const what = `starting model '${m.name}'`;
    const candidates = m.spec.gpu_ids ?? [undefined];
    const placed = new Set(this.replicas(m).flatMap((i) => devicesOf(i.placement.gpuIds)));
    const budgets = await this.budgets();
    const options = candidates.map((gpu) => {
      const [device] = devicesOf(gpu === undefined ? [] : [gpu]);
      const budget = budgets.get(device) ?? { device, mb: Infinity, source: 'unknown' };
      const residents = this.residents(device);
      return { gpu, device, plan: planPlacement(what, need, budget, residents), free: budget.mb - heldMb(residents) };
    });
    // Another device than the replicas already have, then the fewest evictions, then the most room.
    options.sort((a, b) => Number(placed.has(a.device)) - Number(placed.has(b.device)) || evictions(a.plan) - evictions(b.plan) || b.free - a.free);
    const chosen = options.find((x) => x.plan.ok);
    if (chosen === undefined || !chosen.plan.ok) {
      const reasons = options.map((x) => (x.plan.ok ? '' : x.plan.reason));
      this.log('no room for a replica', { model: m.name, detail: options.map((x) => (x.plan.ok ? '' : x.plan.detail)).join('; ') });
      throw new TeiplexError('MEMORY_BUDGET_EXCEEDED', reasons.join('; '), { retryAfterSecs: 5 });
    }
    for (const r of chosen.plan.evict) await this.evict(r.instance, `to make room for '${m.name}' on ${chosen.device}`);
    let index = 1;
    while (this.o.supervisor.find(`${m.name}-${index}`) !== undefined) index++;
    const spec = replicaSpec(m.spec, index, chosen.gpu);
    const ready = new Promise<void>((resolve, reject) => this.readiness.set(spec.name, { resolve, reject }));
    ready.catch(() => undefined);
    m.replicas.add(spec.name);
    try {
      const instance = await this.o.supervisor.create(spec, true, { owner: m.name, source: m.source });
      return { instance, ready };
    } catch (err) {
      m.replicas.delete(spec.name);
      this.readiness.delete(spec.name);
      throw err;
    }
  }

  /** What holds memory on a device: every instance with a process there. */
  private residents(device: string): Resident[] {
    const out: Resident[] = [];
    for (const i of this.o.supervisor.list()) {
      if (!hasProcess(i.status) || !devicesOf(i.placement.gpuIds).includes(device)) continue;
      const owner = this.o.supervisor.ownerOf(i.name);
      const m = owner !== undefined ? this.models.get(owner) : undefined;
      const mb = this.footprints.get(i.name) ?? m?.expectedMb(this.settings.default_memory_mb) ?? 0;
      out.push({ instance: i.name, mb, lastUsedMs: this.o.inflight.lastUsed(i.name) ?? 0, keep: this.keepReason(i, m) });
    }
    return out;
  }

  /** Why a replica may not be evicted now; undefined: it may. */
  private keepReason(i: Instance, m: CatalogModel | undefined): string | undefined {
    if (m === undefined) return 'an instance outside the catalog';
    const n = this.o.inflight.get(i.name);
    if (n > 0) return `in use: ${n} request${n === 1 ? '' : 's'} in flight`;
    if (!canServe(i.status)) return i.status;
    if (m.pinned > 0 && this.replicas(m).filter((r) => hasProcess(r.status)).length <= m.pinned) {
      return m.spec.on_demand === false ? 'on_demand = false' : `min_replicas ${m.pinned}`;
    }
    return undefined;
  }

  private async budgets(): Promise<Map<string, Budget>> {
    return deviceBudgets(this.settings, (await this.o.supervisor.gpus()).gpus, os.totalmem() / MIB);
  }

  /** Stop and delete one replica (eviction, idle, unload, failure). */
  private async stopReplica(m: CatalogModel, name: string): Promise<void> {
    this.stopping.add(name);
    this.readiness.get(name)?.reject('stopped before it was ready');
    this.readiness.delete(name);
    try {
      if (this.o.supervisor.find(name) !== undefined) await this.o.supervisor.delete(name);
    } catch (err) {
      if (!(err instanceof TeiplexError && err.code === 'INSTANCE_NOT_FOUND')) throw err;
    } finally {
      this.stopping.delete(name);
      m.lastUsedMs = Math.max(m.lastUsedMs ?? 0, this.o.inflight.lastUsed(name) ?? 0) || undefined;
      m.replicas.delete(name);
      this.footprints.delete(name);
      this.o.inflight.forget(name);
    }
  }

  /**
   * Stop every replica of `m`, a starting one included (SIGTERM now, not after its start): the
   * start in progress is cancelled (startEpoch) and settles at once without a retry.
   */
  private async stopAll(m: CatalogModel, reason: 'unload'): Promise<void> {
    if (m.unloading !== undefined) return m.unloading;
    m.startEpoch++;
    const work = (async () => {
      const names = [...m.replicas];
      await Promise.all(names.map((n) => this.stopReplica(m, n)));
      // The cancelled start stops what it created past the snapshot above before it settles.
      if (m.loading !== undefined) await m.loading.catch(() => undefined);
      if (names.length > 0) this.o.events?.evict?.(m.name, reason);
    })();
    m.unloading = work.finally(() => (m.unloading = undefined));
    return m.unloading;
  }

  /** Every instance transition (serve.ts wires the supervisor's hook here). */
  instanceChanged(name: string, _from: InstanceState, to: InstanceState): void {
    const owner = this.o.supervisor.ownerOf(name);
    if (owner === undefined || this.stopping.has(name) || this.closed) return;
    const m = this.models.get(owner);
    const waiting = this.readiness.get(name);
    if (waiting !== undefined) {
      if (to === 'running') {
        this.readiness.delete(name);
        waiting.resolve();
      } else if (to === 'backoff' || to === 'failed' || to === 'stopped') {
        this.readiness.delete(name);
        waiting.reject(this.whyFailed(name));
      }
      return;
    }
    // Died after serving, and its restarts ran out: the model is failed until loaded again.
    if (to === 'failed' && m !== undefined) {
      m.failure = { reason: this.whyFailed(name), at: new Date().toISOString() };
      this.log('catalog model failed', { model: m.name, instance: name, reason: m.failure.reason });
      void this.stopReplica(m, name).catch(() => undefined);
    }
  }

  private whyFailed(name: string): string {
    const i = this.o.supervisor.find(name);
    if (i === undefined) return 'the replica disappeared';
    const tail = i.log
      .tail(40)
      .filter((l) => !l.startsWith('[teiplex]'))
      .slice(-3);
    const base = i.lastError ?? `exited (${i.lastExit?.code ?? i.lastExit?.signal ?? 'unknown'})`;
    return tail.length > 0 && !base.includes('last output') ? `${base}; last output: ${tail.join(' | ')}` : base;
  }

  // ---- the sweep ----

  start(): void {
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweepTimer.unref();
    const sample = (): void => void this.sampleAll().catch((err: Error) => this.log('footprint sample failed', { reason: err.message }));
    this.footprintTimer = setInterval(sample, FOOTPRINT_MS);
    this.footprintTimer.unref();
    this.sweep();
    sample();
  }

  private sweep(): void {
    if (this.closed) return;
    const now = Date.now();
    const s = this.settings;
    for (const m of this.models.values()) {
      if (m.unloading !== undefined) continue;
      const replicas = this.replicas(m);
      const live = replicas.filter((i) => hasProcess(i.status));
      const serving = live.filter((i) => canServe(i.status));
      if (m.failure === undefined && m.loading === undefined && live.length < m.pinned) {
        if (now < m.keepRetryAt) continue;
        this.startLoad(m).catch((err: Error) => {
          if (err instanceof TeiplexError && err.code === 'FORBIDDEN_SETTING') {
            // Not a passing condition: failed (once) until it is loaded again or its spec changes.
            m.failure = { reason: err.message, at: new Date().toISOString() };
            this.log('catalog model not kept loaded: its spec is not allowed by this config', { model: m.name, reason: err.message });
            return;
          }
          m.keepRetryAt = Date.now() + KEEP_RETRY_MS;
          this.log('could not keep min_replicas loaded', { model: m.name, reason: err.message, retry_in_secs: KEEP_RETRY_MS / 1000 });
        });
        continue;
      }
      // Idle replicas beyond those pinned, least recently used first.
      if (m.spec.on_demand !== false && m.loading === undefined) {
        const idleMs = (m.spec.idle_timeout_secs ?? s.idle_timeout_secs) * 1000;
        let keep = live.length;
        for (const i of [...serving].sort((a, b) => (this.o.inflight.lastUsed(a.name) ?? 0) - (this.o.inflight.lastUsed(b.name) ?? 0))) {
          if (keep <= m.pinned) break;
          if (this.o.inflight.get(i.name) > 0 || now - (this.o.inflight.lastUsed(i.name) ?? 0) < idleMs) continue;
          keep--;
          this.log('stopping an idle replica', { instance: i.name, model: m.name, idle_secs: idleMs / 1000 });
          this.o.events?.evict?.(m.name, 'idle');
          void this.stopReplica(m, i.name).catch((err: Error) => this.log('idle stop failed', { instance: i.name, reason: err.message }));
        }
      }
      // Sustained queueing on every replica: one more, up to max_replicas.
      if (m.failure === undefined && m.loading === undefined && serving.length > 0 && live.length < maxReplicas(m.spec)) {
        if (serving.every((i) => this.o.inflight.get(i.name) >= s.scale_up_inflight)) {
          m.pressureSince ??= now;
          if (now - m.pressureSince >= s.scale_up_after_secs * 1000) {
            m.pressureSince = undefined;
            this.log('starting another replica: every replica is queueing', { model: m.name, replicas: serving.length });
            this.startLoad(m).catch((err: Error) => this.log('could not start another replica', { model: m.name, reason: err.message }));
          }
        } else {
          m.pressureSince = undefined;
        }
      }
    }
  }

  private async sampleOne(m: CatalogModel, i: Instance, gpuByPid?: Map<number, number>, groups?: Map<number, number[]>): Promise<void> {
    const pid = i.pid;
    if (pid === undefined) return;
    const onGpu = i.placement.gpuIds.length > 0;
    const f = await measureFootprint(pid, onGpu ? (gpuByPid ?? (await gpuMemoryByPid(this.settings.nvidia_smi_path))) : undefined, groups);
    if (f === undefined || i.pid !== pid) return;
    // The peak of this replica's samples: what the next replica of the model is expected to need.
    const peak = Math.max(f.mb, this.footprints.get(i.name) ?? 0);
    this.footprints.set(i.name, peak);
    const before = m.footprintMb;
    m.footprintMb = peak;
    m.footprintKind = f.kind;
    // Persist the first measurement and real changes, not every sample.
    if (before === undefined || Math.abs(peak - before) > 0.1 * before) void this.o.supervisor.persistState().catch(() => undefined);
  }

  private async sampleAll(): Promise<void> {
    if (this.closed) return;
    const all = this.o.supervisor.list().filter((i) => i.pid !== undefined && canServe(i.status));
    const gpuByPid = all.some((i) => i.placement.gpuIds.length > 0) ? await gpuMemoryByPid(this.settings.nvidia_smi_path) : undefined;
    const groups = all.length > 0 ? await processGroups() : undefined;
    for (const i of all) {
      const owner = this.o.supervisor.ownerOf(i.name);
      const m = owner !== undefined ? this.models.get(owner) : undefined;
      if (m !== undefined) await this.sampleOne(m, i, gpuByPid, groups);
      else {
        const f = await measureFootprint(i.pid!, gpuByPid, groups);
        if (f !== undefined) this.footprints.set(i.name, f.mb);
      }
    }
    const budgets = await this.budgets();
    await this.placements.run(() => this.enforceBudgets(budgets));
    this.memorySnapshot = [...budgets.values()].map((b) => ({
      device: b.device,
      budget_mb: Number.isFinite(b.mb) ? b.mb : null,
      budget_source: b.source,
      used_mb: heldMb(this.residents(b.device)),
    }));
  }

  /**
   * A device over its budget (a budget lowered by a reload, replicas grown since their first
   * sample): its least recently used evictable replicas are stopped until it fits.
   */
  private async enforceBudgets(budgets: Map<string, Budget>): Promise<void> {
    for (const b of budgets.values()) {
      const plan = planPlacement(`keeping within the budget`, 0, b, this.residents(b.device));
      if (!plan.ok) {
        if (!this.overBudget.has(b.device)) this.log('over the memory budget, nothing can be evicted now', { device: b.device, reason: plan.reason });
        this.overBudget.add(b.device);
        continue;
      }
      this.overBudget.delete(b.device);
      for (const r of plan.evict) await this.evict(r.instance, `${b.device} is over its budget of ${Math.round(b.mb)} MiB`);
    }
  }

  /** Stop a replica for the budget (only replicas are ever planned for eviction). */
  private async evict(instance: string, why: string): Promise<void> {
    const owner = this.o.supervisor.ownerOf(instance);
    const victim = owner !== undefined ? this.models.get(owner) : undefined;
    if (victim === undefined) return;
    this.log('evicting a replica', { instance, model: victim.name, why });
    this.o.events?.evict?.(victim.name, 'budget');
    await this.stopReplica(victim, instance);
  }

  /** Manager shutdown: no more starts or sweeps (the supervisor stops the children). */
  close(): void {
    this.closed = true;
    for (const [name, w] of [...this.readiness]) {
      this.readiness.delete(name);
      w.reject('the manager is shutting down');
    }
    clearInterval(this.sweepTimer);
    clearInterval(this.footprintTimer);
  }
}

function evictions(p: { ok: true; evict: Resident[] } | { ok: false }): number {
  return p.ok ? p.evict.length : Infinity;
}
