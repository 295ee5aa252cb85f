/**
 * Footprint sampling, every FOOTPRINT_MS on an injectable Clock, and once when a replica gets
 * ready: each serving child's memory (footprint.ts: GPU memory from nvidia-smi, else resident
 * memory of its process group); a replica keeps the peak of its samples, which is what the next
 * replica of its model is expected to need (persisted with the model on the first measurement and
 * on real changes, not every sample). Each pass then enforces the device budgets and keeps the
 * per-device use snapshot that GET /memory shows.
 */
import { systemClock, type Clock, type TimerHandle } from '../common/clock.js';
import type { Instance } from '../supervisor/instance.js';
import { canServe } from '../supervisor/instance-state.js';
import type { StandbyInfo } from '../supervisor/standby.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import type { CatalogModel } from './catalog-model.js';
import type { CatalogSettings } from './catalog-settings.js';
import { gpuMemoryByPid, measureFootprint, processTrees } from './footprint.js';
import { heldMb } from './memory-budget.js';
import type { Placement } from './placement.js';
import type { Replicas } from './replicas.js';

/** How often footprints and device usage are sampled. */
export const FOOTPRINT_MS = 5000;

export interface DeviceMemory {
  device: string;
  budget_mb: number | null;
  budget_source: string;
  used_mb: number;
  /** Standby children on this device (counted in used_mb). */
  standby: Array<StandbyInfo & { footprint_mb: number | null }>;
}

export interface FootprintSamplerOptions {
  supervisor: Supervisor;
  replicas: Replicas;
  placement: Placement;
  model(name: string): CatalogModel | undefined;
  settings(): CatalogSettings;
  /** A model's footprint changed enough to be saved. */
  persist(): Promise<void>;
  log(msg: string, fields?: Record<string, unknown>): void;
  clock?: Clock;
}

export class FootprintSampler {
  private snapshot: DeviceMemory[] = [];
  private timer: TimerHandle | undefined;
  private closed = false;
  private readonly clock: Clock;

  constructor(private readonly o: FootprintSamplerOptions) {
    this.clock = o.clock ?? systemClock;
  }

  /** Budget and use per device, as last sampled. */
  get memory(): DeviceMemory[] {
    return this.snapshot;
  }

  /** Sample now, then every FOOTPRINT_MS until `stop`. */
  start(): void {
    this.tick();
  }

  /** No more samples (manager shutdown). */
  stop(): void {
    this.closed = true;
    this.clock.clearTimeout(this.timer);
  }

  private tick(): void {
    if (this.closed) return;
    void this.sampleAll().catch((err: Error) => this.o.log('footprint sample failed', { reason: err.message }));
    this.timer = this.clock.setTimeout(() => this.tick(), FOOTPRINT_MS);
  }

  async sampleOne(m: CatalogModel, i: Instance, gpuByPid?: Map<number, number>, groups?: Map<number, number[]>): Promise<void> {
    const pid = i.pid;
    if (pid === undefined) return;
    const onGpu = i.placement.gpuIds.length > 0;
    const f = await measureFootprint(pid, onGpu ? (gpuByPid ?? (await gpuMemoryByPid(this.o.settings().nvidia_smi_path))) : undefined, groups);
    if (f === undefined || i.pid !== pid) return;
    // The peak of this replica's samples: what the next replica of the model is expected to need.
    const peak = Math.max(f.mb, this.o.replicas.footprints.get(i.name) ?? 0);
    this.o.replicas.footprints.set(i.name, peak);
    const before = m.footprintMb;
    m.footprintMb = peak;
    m.footprintKind = f.kind;
    // Persist the first measurement and real changes, not every sample.
    if (before === undefined || Math.abs(peak - before) > 0.1 * before) void this.o.persist().catch(() => undefined);
  }

  /** Sample every serving child, enforce the budgets, refresh the snapshot. */
  async sampleAll(): Promise<void> {
    if (this.closed) return;
    const all = this.o.supervisor.list().filter((i) => i.pid !== undefined && canServe(i.status));
    const gpuByPid = all.some((i) => i.placement.gpuIds.length > 0) ? await gpuMemoryByPid(this.o.settings().nvidia_smi_path) : undefined;
    const standby = this.o.supervisor.standby;
    const leaders = [...all.map((i) => i.pid!), ...standby.list().flatMap((c) => (c.pid !== undefined ? [c.pid] : []))];
    const groups = leaders.length > 0 ? await processTrees(leaders) : undefined;
    for (const c of standby.list()) {
      const f = c.pid !== undefined ? await measureFootprint(c.pid, undefined, groups) : undefined;
      if (f !== undefined) standby.footprints.set(c.name, Math.max(f.mb, standby.footprints.get(c.name) ?? 0));
    }
    for (const i of all) {
      const owner = this.o.supervisor.ownerOf(i.name);
      const m = owner !== undefined ? this.o.model(owner) : undefined;
      if (m !== undefined) await this.sampleOne(m, i, gpuByPid, groups);
      else {
        const f = await measureFootprint(i.pid!, gpuByPid, groups);
        if (f !== undefined) this.o.replicas.footprints.set(i.name, f.mb);
      }
    }
    const budgets = await this.o.placement.budgets();
    await this.o.placement.run(async () => {
      await this.o.placement.enforce(budgets);
      if (!this.closed) await this.o.placement.keepStandby(budgets);
    });
    this.snapshot = [...budgets.values()].map((b) => ({
      device: b.device,
      budget_mb: Number.isFinite(b.mb) ? b.mb : null,
      budget_source: b.source,
      used_mb: heldMb(this.o.placement.residents(b.device)),
      standby: standby.list(b.device).map((c) => ({ ...c.info(), footprint_mb: standby.footprints.get(c.name) ?? null })),
    }));
  }
}
