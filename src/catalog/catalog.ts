/**
 * The catalog of on-demand models (docs/on-demand.md): the registry of models (listed once, by
 * name, model_id and aliases; added, deleted, and reconciled with the config on reload) and their
 * state, with the jobs around them each in its own file:
 * - replicas.ts: replicas as processes (create, stop, stop all; a replica failing after it served),
 * - cold-start.ts: starting one on demand, single flight, bounded waiting,
 * - placement.ts: which device, memory budgets, LRU eviction (one decision at a time),
 * - sweep.ts: idle stop, min_replicas, scale-up,
 * - footprint-sampler.ts: measured footprints and device use.
 * The models are the catalog's section of the desired state (state/desired-state.ts): an add or
 * delete is acknowledged only once the state file holds it (a failed write undoes it and answers
 * STATE_WRITE_FAILED). Each model's state moves along model-state.ts's table; every change is
 * published on `events` ('model'). The catalog listens to the supervisor's instance transitions.
 */
import { EventEmitter } from 'node:events';
import { isDeepStrictEqual } from 'node:util';
import { systemClock, type Clock } from '../common/clock.js';
import { TeiplexError } from '../common/errors.js';
import { reconcile, type ReconcileReport } from '../common/reconcile.js';
import { checkModels, DuplicateModelNameError } from '../config/config.js';
import { modelName, namesOf, type ModelSpec } from '../config/model-spec.js';
import { ConfigError } from '../config/validate.js';
import { checkGpuIds } from '../supervisor/gpus.js';
import type { Instance } from '../supervisor/instance.js';
import { canServe } from '../supervisor/instance-state.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import type { DesiredState } from '../state/desired-state.js';
import type { Source, StoredModel } from '../state/state-store.js';
import { CatalogModel } from './catalog-model.js';
import type { CatalogSettings } from './catalog-settings.js';
import { ColdStarts, type ColdStartWaiter } from './cold-start.js';
import { FootprintSampler, type DeviceMemory } from './footprint-sampler.js';
import { ModelTransitionError, type ModelEvent, type ModelState } from './model-state.js';
import { Placement } from './placement.js';
import { Replicas, type EvictReason, type Usage } from './replicas.js';
import { RequestRates } from './request-rate.js';
import { Sweep } from './sweep.js';

export type { CatalogSettings } from './catalog-settings.js';
export { asksNoWait, NO_WAIT_HEADER, type ColdStartWaiter } from './cold-start.js';
export type { DeviceMemory } from './footprint-sampler.js';
export type { Usage } from './replicas.js';
export type CatalogReconcileReport = ReconcileReport;

/** A listener of starts and evictions in one object (the metrics'); `listen` subscribes it to a catalog's events. */
export interface CatalogEvents {
  load?(model: string, result: 'ok' | 'failed' | 'refused', seconds: number): void;
  evict?(model: string, reason: EvictReason): void;
}

/** A model's state changed (along model-state.ts's table). */
export interface ModelTransition {
  model: string;
  from: ModelState;
  to: ModelState;
  /** undefined: a change outside the table (logged as a bug). */
  event: ModelEvent | undefined;
}

/** What the catalog publishes: model state changes, replica starts (ok, failed, refused for room) and evictions. */
export interface CatalogEventMap {
  model: [ModelTransition];
  load: [{ model: string; result: 'ok' | 'failed' | 'refused'; seconds: number }];
  evict: [{ model: string; reason: EvictReason }];
}

export interface CatalogOptions {
  supervisor: Supervisor;
  inflight: Usage;
  settings: CatalogSettings;
  /** The desired-state owner (default: the supervisor's). */
  desired?: DesiredState;
  clock?: Clock;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

export class Catalog {
  private readonly models = new Map<string, CatalogModel>();
  /** Every name a request may use (catalog name, model_id, aliases) -> model. */
  private readonly byName = new Map<string, CatalogModel>();
  private settings: CatalogSettings;
  private closed = false;
  private readonly log: (msg: string, fields?: Record<string, unknown>) => void;
  private readonly desired: DesiredState;
  readonly events = new EventEmitter<CatalogEventMap>();
  private readonly replicaSet: Replicas;
  private readonly placement: Placement;
  private readonly coldStarts: ColdStarts;
  private readonly sweep: Sweep;
  private readonly sampler: FootprintSampler;
  /** Recent request rate and requests in all per model (request-rate.ts). */
  private readonly rates = new RequestRates();
  private readonly clock: Clock;

  constructor(private readonly o: CatalogOptions) {
    this.settings = o.settings;
    this.log = o.log ?? (() => undefined);
    this.desired = o.desired ?? o.supervisor.desired;
    const clock = o.clock ?? systemClock;
    this.clock = clock;
    const model = (name: string): CatalogModel | undefined => this.models.get(name);
    const settings = (): CatalogSettings => this.settings;
    const evicted = (name: string, reason: EvictReason): void => void this.events.emit('evict', { model: name, reason });
    const changed = (m: CatalogModel): void => this.sync(m);
    const observe = (m: CatalogModel): void => this.observe(m);
    this.replicaSet = new Replicas({ supervisor: o.supervisor, inflight: o.inflight, model, evicted, changed, beforeStop: observe, log: this.log });
    this.placement = new Placement({
      supervisor: o.supervisor,
      inflight: o.inflight,
      replicas: this.replicaSet,
      model,
      models: () => this.models.values(),
      settings,
      evicted,
      rate: (m) => {
        this.observe(m);
        return this.rates.rate(m.name, this.clock.now());
      },
      log: this.log,
    });
    this.sampler = new FootprintSampler({
      supervisor: o.supervisor,
      replicas: this.replicaSet,
      placement: this.placement,
      model,
      settings,
      persist: () => this.desired.save(),
      log: this.log,
      clock,
    });
    this.coldStarts = new ColdStarts({
      supervisor: o.supervisor,
      inflight: o.inflight,
      replicas: this.replicaSet,
      placement: this.placement,
      settings,
      listed: (m) => this.models.get(m.name) === m,
      closed: () => this.closed,
      loaded: (name, result, seconds) => void this.events.emit('load', { model: name, result, seconds }),
      sample: (m, i) => void this.sampler.sampleOne(m, i).catch(() => undefined),
      changed,
      log: this.log,
      clock,
    });
    this.sweep = new Sweep(
      {
        models: () => this.models.values(),
        replicas: (m) => this.replicaSet.of(m),
        inflight: (i) => o.inflight.get(i),
        lastUsed: (i) => o.inflight.lastUsed(i),
        settings,
        startLoad: (m) => this.coldStarts.startLoad(m),
        stopReplica: (m, i) => this.replicaSet.stop(m, i),
        evicted,
        changed,
        log: this.log,
      },
      clock,
    );
    this.desired.ownModels({ snapshot: () => this.stored(), restore: (models) => this.restore(models) });
    o.supervisor.events.on('transition', (t) => this.replicaSet.transitioned(t));
  }

  /** Subscribe a listener object (the metrics') to starts and evictions. */
  listen(l: CatalogEvents): void {
    if (l.load !== undefined) this.events.on('load', (e) => l.load!(e.model, e.result, e.seconds));
    if (l.evict !== undefined) this.events.on('evict', (e) => l.evict!(e.model, e.reason));
  }

  // ---- demand (request-rate.ts) and waiting for memory (memory-queue.ts) ----

  /** Fold the requests `m`'s replicas have begun into its rate and count. */
  private observe(m: CatalogModel): void {
    const begun = this.o.inflight.begun;
    if (begun === undefined) return;
    this.rates.observe(
      m.name,
      [...m.replicas].map((instance) => ({ instance, begun: begun.call(this.o.inflight, instance) })),
      this.clock.now(),
    );
  }

  /** Per model: requests begun in all, and the recent request rate (req/s). */
  demand(m: CatalogModel): { requests: number; ratePerSec: number } {
    this.observe(m);
    return { requests: this.rates.requests(m.name), ratePerSec: this.rates.rate(m.name, this.clock.now()) };
  }

  /** Models whose start waits for memory, longest first, with the requests waiting for each. */
  memoryWaiters(): Array<{ model: string; requests: number; since_ms: number; reason: string }> {
    return this.coldStarts.memory.list().map((w) => ({ model: w.model, requests: this.models.get(w.model)?.waiters ?? 0, since_ms: w.sinceMs, reason: w.reason }));
  }

  // ---- the registry ----

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
    return this.replicaSet.of(m);
  }

  state(m: CatalogModel): ModelState {
    this.sync(m);
    return m.machine.state;
  }

  /** Move `m`'s machine to the state its activity and replicas make (model-state.ts); a change the table refuses is a bug: logged, and the machine follows anyway. */
  private sync(m: CatalogModel): void {
    const to = m.state(this.replicaSet.of(m));
    try {
      m.machine.transition(to);
    } catch (err) {
      if (!(err instanceof ModelTransitionError)) throw err;
      this.log('catalog model state change outside the transition table', { model: m.name, from: err.from, to: err.to });
      m.machine.force(to);
    }
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
    return this.replicaSet.serving(m);
  }

  /** Requests in flight and last use per instance. */
  get usage(): Usage {
    return this.o.inflight;
  }

  footprintOf(instance: string): number | undefined {
    return this.replicaSet.footprints.get(instance);
  }

  /** Budget and use per device, as last sampled. */
  memory(): DeviceMemory[] {
    return this.sampler.memory;
  }

  /** Budget and use per device, sampled now. */
  async measureMemory(): Promise<DeviceMemory[]> {
    await this.sampler.sampleAll();
    return this.sampler.memory;
  }

  /** The catalog's section of the desired state. */
  private stored(): StoredModel[] {
    return this.list().map((m) => m.stored());
  }

  private restore(models: StoredModel[]): void {
    for (const s of models) {
      try {
        this.insert(this.track(CatalogModel.fromStored(s)));
      } catch (err) {
        this.log('catalog model not restored', { model: s.name ?? s.model_id, reason: (err as Error).message });
      }
    }
  }

  private create(spec: ModelSpec, source: Source): CatalogModel {
    return this.track(new CatalogModel(spec, source, new Date().toISOString()));
  }

  /** Publish `m`'s state changes. */
  private track(m: CatalogModel): CatalogModel {
    m.machine.onChange = (from, to, event) => this.events.emit('model', { model: m.name, from, to, event });
    return m;
  }

  /** The catalog's models would be these specs: names unique, settings valid (MODEL_EXISTS, BAD_REQUEST naming `m`). */
  private check(m: CatalogModel, specs: ModelSpec[]): void {
    try {
      checkModels({ models: specs }, 'models');
    } catch (err) {
      if (err instanceof ConfigError) throw new TeiplexError(err instanceof DuplicateModelNameError ? 'MODEL_EXISTS' : 'BAD_REQUEST', err.message.replace(/^models: models\[\d+\]: /, `model '${m.name}': `));
      throw err;
    }
  }

  private insert(m: CatalogModel): void {
    this.check(m, [...this.list().map((x) => x.spec), { ...m.spec, name: m.name }]);
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
    const m = this.create(spec, source);
    if (this.models.has(m.name)) throw new TeiplexError('MODEL_EXISTS', `catalog model '${m.name}' exists`);
    if (spec.gpu_ids !== undefined) checkGpuIds(spec.gpu_ids, await this.o.supervisor.gpus(), 'gpu_ids');
    await this.desired.commit(
      () => this.insert(m),
      () => this.unindex(m),
    );
    return m;
  }

  /**
   * DELETE /models/{name}: forget it (requests naming it from now on: 404) and save the state
   * without it (a failed write puts it back and throws: nothing changed), then stop its replicas;
   * a start in progress is cancelled (its child gets SIGTERM, nothing is retried).
   */
  async remove(name: string): Promise<CatalogModel> {
    const m = this.get(name);
    await this.desired.commit(
      () => this.unindex(m),
      () => this.insert(m),
    );
    await this.replicaSet.stopAll(m, 'unload');
    return m;
  }

  /** Config reload: the catalog models that came from the config, brought in line with `specs` (common/reconcile.ts). */
  async reconcile(specs: readonly ModelSpec[], settings: CatalogSettings): Promise<CatalogReconcileReport> {
    this.settings = settings;
    const report = await reconcile(specs, {
      nameOf: modelName,
      owned: () => this.list().filter((m) => m.source === 'config').map((m) => [m.name, m.spec]),
      same: (want, have) => isDeepStrictEqual({ ...want, name: modelName(have) }, { ...have, name: modelName(have) }),
      delete: async (name) => {
        const m = this.models.get(name)!;
        await this.replicaSet.stopAll(m, 'unload');
        this.unindex(m);
      },
      create: async (spec) => this.insert(this.create(spec, 'config')),
    });
    await this.desired.save();
    return report;
  }

  // ---- serving ----

  /** See cold-start.ts: a replica serves, or one is started and waited for (bounded). */
  ensureServing(m: CatalogModel, wait: boolean, w: ColdStartWaiter = {}): Promise<void> {
    return this.coldStarts.ensureServing(m, wait, w);
  }

  /** POST /models/{name}/load: clear a failure and make sure a replica serves. */
  async load(name: string): Promise<CatalogModel> {
    const m = this.get(name);
    m.failure = undefined;
    this.sync(m);
    await this.ensureServing(m, true);
    return m;
  }

  /** POST /models/{name}/unload: stop every replica (refused while min_replicas keeps some). */
  async unload(name: string): Promise<CatalogModel> {
    const m = this.get(name);
    if (m.pinned > 0) {
      throw new TeiplexError('MODEL_BUSY', `model '${m.name}' keeps ${m.pinned} replica(s) loaded (${m.spec.on_demand === false ? 'on_demand = false' : 'min_replicas'}): change its spec to unload it`);
    }
    await this.replicaSet.stopAll(m, 'unload');
    return m;
  }

  // ---- rolling swaps (src/swap/model-swap.ts) ----

  /**
   * A swap of `m`'s replicas to `next` passed its checks: the model's spec becomes `next` (its
   * names indexed anew), persisted before the first replica switches (a failed write changes
   * nothing: STATE_WRITE_FAILED). Refused first (nothing changed) when `next` clashes with
   * another model's names. Resolves with what puts the old spec back.
   */
  async respec(m: CatalogModel, next: ModelSpec): Promise<() => Promise<void>> {
    const before = m.spec;
    this.checkRespec(m, next);
    const use = (spec: ModelSpec) => (): void => {
      this.unindex(m);
      m.spec = spec;
      this.insert(m);
    };
    await this.desired.commit(use(next), use(before));
    return () => this.desired.commit(use(before), use(next));
  }

  /** Would `m` with the spec `next` fit the catalog (names unique, settings valid)? Throws MODEL_EXISTS or BAD_REQUEST. */
  checkRespec(m: CatalogModel, next: ModelSpec): void {
    this.check(m, [...this.list().filter((x) => x !== m).map((x) => x.spec), { ...next, name: m.name }]);
  }

  /** Stop one replica of `m` (a swap that could not bring it to the model's new spec). */
  stopReplica(m: CatalogModel, name: string): Promise<void> {
    return this.replicaSet.stop(m, name);
  }

  // ---- timers ----

  /** Boot done: the sweep and the footprint sampling begin. */
  start(): void {
    this.sweep.start();
    this.sampler.start();
  }

  /** Manager shutdown: no more starts or sweeps (the supervisor stops the children). */
  close(): void {
    this.closed = true;
    this.replicaSet.close();
    this.sweep.stop();
    this.sampler.stop();
  }
}
