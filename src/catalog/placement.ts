/**
 * Where a new replica goes, and what leaves to make room: each candidate device's budget
 * (memory-budget.ts) against what is resident there (measured footprints, else estimates); the
 * choice prefers a device the model has no replica on yet, then the fewest evictions, then the
 * most room; victims there follow eviction-policy.ts (lowest reload cost, then least recently
 * used; never one in use, just loaded, pinned or kept by min_replicas). A device found over its budget (lowered by a reload, replicas grown since their
 * first sample) has replicas evicted until it fits. Decisions run one at a time (`run`).
 */
import os from 'node:os';
import { TeiplexError } from '../common/errors.js';
import { SerialQueue } from '../common/serial-queue.js';
import { replicaSpec } from '../config/model-spec.js';
import type { Instance } from '../supervisor/instance.js';
import { canServe, hasProcess } from '../supervisor/instance-state.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import type { CatalogModel } from './catalog-model.js';
import type { CatalogSettings } from './catalog-settings.js';
import { deviceBudgets, devicesOf, heldMb, planPlacement, type Budget, type Resident } from './memory-budget.js';
import type { EvictReason, Replicas, Usage } from './replicas.js';

const MIB = 1024 * 1024;
/** A standby child's footprint before its first sample (MiB): Node, the router's modules and ONNX Runtime, no model (~150 MiB RSS measured). */
export const STANDBY_ESTIMATE_MB = 160;
/** How long after a replica that took a standby over is ready the next standby starts (ms). */
const STANDBY_AFTER_READY_MS = 1000;

export interface PlacementOptions {
  supervisor: Supervisor;
  inflight: Usage;
  replicas: Replicas;
  model(name: string): CatalogModel | undefined;
  /** Every listed model (whether a standby child is of use). */
  models(): Iterable<CatalogModel>;
  settings(): CatalogSettings;
  evicted(model: string, reason: EvictReason): void;
  /** The model's recent request rate (req/s; request-rate.ts), observed now. */
  rate(m: CatalogModel): number;
  log(msg: string, fields?: Record<string, unknown>): void;
}

export class Placement {
  /** Placement decisions (choose a device, evict, create) one at a time. */
  private readonly queue = new SerialQueue();
  /** Devices found over budget with nothing to evict (logged once until that changes). */
  private readonly overBudget = new Set<string>();
  /** A standby child did not fit (logged once until one does). */
  private standbyRefused = false;

  constructor(private readonly o: PlacementOptions) {}

  run<T>(decision: () => Promise<T>): Promise<T> {
    return this.queue.run(decision);
  }

  /**
   * Pick a device with room (evicting if need be), create the replica; `ready` settles when it
   * serves or fails. `mayEvict` false (another model waits for memory longer): only a placement
   * that evicts no replica is taken. No room: NoRoom, saying whether waiting could help. Call inside `run`.
   */
  async placeAndCreate(m: CatalogModel, mayEvict = true, preempt = false): Promise<{ instance: Instance; ready: Promise<void> }> {
    const settings = this.o.settings();
    const need = m.expectedMb(settings.default_memory_mb);
    const what = `starting model '${m.name}'`;
    const candidates = m.spec.gpu_ids ?? [undefined];
    const placed = new Set(this.o.replicas.of(m).flatMap((i) => devicesOf(i.placement.gpuIds)));
    const budgets = await this.budgets();
    const options = candidates.map((gpu) => {
      const [device] = devicesOf(gpu === undefined ? [] : [gpu]);
      const budget = budgets.get(device) ?? { device, mb: Infinity, source: 'unknown' };
      // A standby child the replica would take over: its memory becomes the replica's (part of `need`).
      const standby = settings.standby_children > 0 && gpu === undefined ? this.o.supervisor.standbyFor(replicaSpec(m.spec, 1, gpu), []) : undefined;
      const residents = this.residents(device).filter((r) => r.instance !== standby?.name);
      return { gpu, device, standby, plan: planPlacement(what, need, budget, residents, Date.now(), preempt && mayEvict), free: budget.mb - heldMb(residents) };
    });
    // Another device than the replicas already have, then the fewest evictions, then the most room.
    options.sort((a, b) => Number(placed.has(a.device)) - Number(placed.has(b.device)) || evictions(a.plan) - evictions(b.plan) || b.free - a.free);
    const chosen = options.find((x) => x.plan.ok && (mayEvict || x.plan.evict.every((r) => r.standby === true)));
    if (chosen === undefined || !chosen.plan.ok) {
      if (options.some((x) => x.plan.ok)) throw new NoRoom(`${what}: another model has waited for memory longer and is placed first`, true);
      const reasons = options.map((x) => (x.plan.ok ? '' : x.plan.reason));
      const wait = options.some((x) => !x.plan.ok && x.plan.wait);
      this.o.log(wait ? 'no room for a replica yet' : 'no room for a replica', { model: m.name, detail: options.map((x) => (x.plan.ok ? '' : x.plan.detail)).join('; ') });
      throw new NoRoom(reasons.join('; '), wait);
    }
    for (const r of chosen.plan.evict) {
      const busy = (r.inflight ?? 0) > 0;
      await this.evict(r, busy ? `preempted for '${m.name}' on ${chosen.device} (it waited memory_wait_preempt_secs; calls in flight finish first)` : `to make room for '${m.name}' on ${chosen.device}`, busy ? 'preempt' : 'budget');
    }
    let index = 1;
    while (this.o.supervisor.find(`${m.name}-${index}`) !== undefined) index++;
    const standby = chosen.standby !== undefined ? this.o.supervisor.standby.take(chosen.standby) : undefined;
    const created = await this.o.replicas.create(m, replicaSpec(m.spec, index, chosen.gpu), standby);
    // The next standby a moment after this replica is ready (or failed): its start-up (about a
    // second of CPU) must not compete for the cores with this replica's start and first answers.
    if (standby !== undefined) {
      void created.ready
        .catch(() => undefined)
        .then(() => new Promise((r) => setTimeout(r, STANDBY_AFTER_READY_MS).unref()))
        .then(() => this.run(() => this.keepStandby()))
        .catch(() => undefined);
    }
    return created;
  }

  /**
   * Keep `standby_children` standby children on the CPU while some catalog model could take one
   * over (a router spec on the CPU), each started only if its footprint fits the budget next to
   * what is resident (nothing is evicted for a standby); extra ones are stopped. Call inside `run`.
   */
  async keepStandby(budgets?: Map<string, Budget>): Promise<void> {
    const pool = this.o.supervisor.standby;
    const settings = this.o.settings();
    const have = pool.list('cpu');
    const usable = [...this.o.models()].some((m) => m.spec.gpu_ids === undefined && this.o.supervisor.standbyUsable(replicaSpec(m.spec, 1, undefined), []));
    const want = usable ? settings.standby_children : 0;
    for (const c of have.slice(want)) await pool.stop(c, want === 0 ? 'no catalog model can use it, or standby_children = 0' : 'more than standby_children');
    if (have.length >= want) return;
    const budget = (budgets ?? (await this.budgets())).get('cpu') ?? { device: 'cpu', mb: Infinity, source: 'unknown' };
    for (let n = have.length; n < want; n++) {
      const plan = planPlacement('a standby child', this.standbyMb(), budget, this.residents('cpu'));
      if (!plan.ok || plan.evict.length > 0) {
        if (!this.standbyRefused) this.o.log('no room for a standby child in the budget: cold starts start a fresh child', { device: 'cpu', budget_mb: Math.round(budget.mb) });
        this.standbyRefused = true;
        return;
      }
      this.standbyRefused = false;
      pool.spawn('cpu');
    }
  }

  /** What a standby child is expected to hold before it is measured: the largest measured one, else STANDBY_ESTIMATE_MB. */
  private standbyMb(): number {
    const measured = [...this.o.supervisor.standby.footprints.values()];
    return measured.length > 0 ? Math.max(...measured) : STANDBY_ESTIMATE_MB;
  }

  /** What holds memory on a device: every instance with a process there. */
  residents(device: string): Resident[] {
    const out: Resident[] = [];
    const settings = this.o.settings();
    for (const i of this.o.supervisor.list()) {
      if (!hasProcess(i.status) || !devicesOf(i.placement.gpuIds).includes(device)) continue;
      const owner = this.o.supervisor.ownerOf(i.name);
      const m = owner !== undefined ? this.o.model(owner) : undefined;
      const mb = this.o.replicas.footprints.get(i.name) ?? m?.expectedMb(settings.default_memory_mb) ?? 0;
      out.push({
        instance: i.name,
        mb,
        lastUsedMs: this.o.inflight.lastUsed(i.name) ?? 0,
        keep: this.keepReason(m),
        // Requests waiting for its model count as in use: a replica just ready is not taken from them.
        inflight: this.o.inflight.get(i.name) + (m?.waiters ?? 0),
        waiting: m?.waiters ?? 0,
        starting: !canServe(i.status),
        loadedAtMs: this.o.replicas.readyAt.get(i.name),
        minResidentSecs: m?.spec.min_resident_secs ?? settings.min_resident_secs,
        loadSecs: m?.lastLoadSecs ?? 1,
        ratePerSec: m !== undefined ? this.o.rate(m) : 0,
      });
    }
    // Standby children hold memory too; with no model, they are the first to go (lastUsedMs -1).
    for (const c of this.o.supervisor.standby.list(device)) {
      out.push({ instance: c.name, mb: this.o.supervisor.standby.footprints.get(c.name) ?? this.standbyMb(), lastUsedMs: -1, standby: true });
    }
    return out;
  }

  /** Why a replica may never be evicted (for another model's room); undefined: it may, unless held for now (eviction-policy.ts). */
  private keepReason(m: CatalogModel | undefined): string | undefined {
    if (m === undefined) return 'an instance outside the catalog';
    if (m.spec.pinned === true) return 'pinned';
    if (m.pinned > 0 && this.o.replicas.of(m).filter((r) => hasProcess(r.status)).length <= m.pinned) {
      return m.spec.on_demand === false ? 'on_demand = false' : `min_replicas ${m.pinned}`;
    }
    return undefined;
  }

  async budgets(): Promise<Map<string, Budget>> {
    return deviceBudgets(this.o.settings(), (await this.o.supervisor.gpus()).gpus, os.totalmem() / MIB);
  }

  /** Devices over their budget: their least recently used evictable replicas are stopped until each fits. Call inside `run`. */
  async enforce(budgets: Map<string, Budget>): Promise<void> {
    for (const b of budgets.values()) {
      const plan = planPlacement(`keeping within the budget`, 0, b, this.residents(b.device));
      if (!plan.ok) {
        if (!this.overBudget.has(b.device)) this.o.log('over the memory budget, nothing can be evicted now', { device: b.device, reason: plan.reason });
        this.overBudget.add(b.device);
        continue;
      }
      this.overBudget.delete(b.device);
      for (const r of plan.evict) await this.evict(r, `${b.device} is over its budget of ${Math.round(b.mb)} MiB`);
    }
  }

  /** Stop a replica (or a standby child) for the budget (only these are ever planned for eviction). */
  private async evict(r: Resident, why: string, reason: EvictReason = 'budget'): Promise<void> {
    const instance = r.instance;
    if (r.standby === true) {
      const c = this.o.supervisor.standby.list().find((x) => x.name === instance);
      if (c !== undefined) await this.o.supervisor.standby.stop(c, why);
      return;
    }
    const owner = this.o.supervisor.ownerOf(instance);
    const victim = owner !== undefined ? this.o.model(owner) : undefined;
    if (victim === undefined) return;
    this.o.log('evicting a replica', { instance, model: victim.name, why });
    this.o.evicted(victim.name, reason);
    await this.o.replicas.stop(victim, instance);
  }
}

/** No room for a replica now; `wait`: it would fit once what is held for now (in use, starting, just loaded) is free. */
export class NoRoom extends TeiplexError {
  constructor(
    message: string,
    readonly wait: boolean,
  ) {
    super('MEMORY_BUDGET_EXCEEDED', message, { retryAfterSecs: 5 });
  }
}

function evictions(p: { ok: true; evict: Resident[] } | { ok: false }): number {
  return p.ok ? p.evict.length : Infinity;
}
