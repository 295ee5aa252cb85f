/**
 * The sweep, every SWEEP_MS on an injectable Clock: for each catalog model, keep min_replicas
 * loaded (a failed start for it — no room, say — waits KEEP_RETRY_MS before the next try; a spec
 * the config refuses marks the model failed, once); stop replicas idle past their idle timeout,
 * least recently used first, never below the pinned count; start one replica more, up to
 * max_replicas, when every serving replica has had scale_up_inflight requests in flight for
 * scale_up_after_secs. Models being unloaded are left alone.
 */
import { systemClock, type Clock, type TimerHandle } from '../common/clock.js';
import { TeiplexError } from '../common/errors.js';
import { maxReplicas } from '../config/model-spec.js';
import { canServe, hasProcess, type InstanceState } from '../supervisor/instance-state.js';
import type { CatalogModel } from './catalog-model.js';
import type { CatalogSettings } from './catalog-settings.js';
import type { EvictReason } from './replicas.js';

/** How often idle replicas, pinned counts and queueing are looked at. */
export const SWEEP_MS = 250;
/** After a failed start for min_replicas (no room, say), the wait before trying again. */
export const KEEP_RETRY_MS = 5000;

/** What the sweep reads and does (the catalog; a test gives its own). */
export interface SweepTarget {
  models(): Iterable<CatalogModel>;
  replicas(m: CatalogModel): ReadonlyArray<{ readonly name: string; readonly status: InstanceState }>;
  /** Requests in flight, and last use (ms since the epoch, on the sweep's clock), per instance. */
  inflight(instance: string): number;
  lastUsed(instance: string): number | undefined;
  settings(): CatalogSettings;
  startLoad(m: CatalogModel): Promise<unknown>;
  stopReplica(m: CatalogModel, instance: string): Promise<void>;
  evicted(model: string, reason: EvictReason): void;
  changed(m: CatalogModel): void;
  log(msg: string, fields?: Record<string, unknown>): void;
}

export class Sweep {
  private timer: TimerHandle | undefined;
  private running = false;

  constructor(
    private readonly t: SweepTarget,
    private readonly clock: Clock = systemClock,
    private readonly everyMs = SWEEP_MS,
  ) {}

  /** Sweep now, then every `everyMs` until `stop`. */
  start(): void {
    this.running = true;
    this.tick();
  }

  stop(): void {
    this.running = false;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    if (!this.running) return;
    try {
      this.once();
    } finally {
      this.timer = this.clock.setTimeout(() => this.tick(), this.everyMs);
    }
  }

  /** One pass over every model. */
  once(): void {
    const now = this.clock.now();
    const s = this.t.settings();
    for (const m of this.t.models()) {
      if (m.unloading !== undefined) continue;
      const replicas = this.t.replicas(m);
      const live = replicas.filter((i) => hasProcess(i.status));
      const serving = live.filter((i) => canServe(i.status));
      if (m.failure === undefined && m.loading === undefined && live.length < m.pinned) {
        if (now < m.keepRetryAt) continue;
        this.t.startLoad(m).catch((err: Error) => {
          if (err instanceof TeiplexError && err.code === 'FORBIDDEN_SETTING') {
            // Not a passing condition: failed (once) until it is loaded again or its spec changes.
            m.failure = { reason: err.message, at: new Date(this.clock.now()).toISOString() };
            this.t.log('catalog model not kept loaded: its spec is not allowed by this config', { model: m.name, reason: err.message });
            this.t.changed(m);
            return;
          }
          m.keepRetryAt = this.clock.now() + KEEP_RETRY_MS;
          this.t.log('could not keep min_replicas loaded', { model: m.name, reason: err.message, retry_in_secs: KEEP_RETRY_MS / 1000 });
        });
        continue;
      }
      // Idle replicas beyond those kept (min_replicas; none of a `pinned` model), least recently used first.
      if (m.spec.on_demand !== false && m.spec.pinned !== true && m.loading === undefined) {
        const idleMs = (m.spec.idle_timeout_secs ?? s.idle_timeout_secs) * 1000;
        let keep = live.length;
        for (const i of [...serving].sort((a, b) => (this.t.lastUsed(a.name) ?? 0) - (this.t.lastUsed(b.name) ?? 0))) {
          if (keep <= m.pinned) break;
          if (this.t.inflight(i.name) > 0 || now - (this.t.lastUsed(i.name) ?? 0) < idleMs) continue;
          keep--;
          this.t.log('stopping an idle replica', { instance: i.name, model: m.name, idle_secs: idleMs / 1000 });
          this.t.evicted(m.name, 'idle');
          void this.t.stopReplica(m, i.name).catch((err: Error) => this.t.log('idle stop failed', { instance: i.name, reason: err.message }));
        }
      }
      // Sustained queueing on every replica: one more, up to max_replicas.
      if (m.failure === undefined && m.loading === undefined && serving.length > 0 && live.length < maxReplicas(m.spec)) {
        if (serving.every((i) => this.t.inflight(i.name) >= s.scale_up_inflight)) {
          m.pressureSince ??= now;
          if (now - m.pressureSince >= s.scale_up_after_secs * 1000) {
            m.pressureSince = undefined;
            this.t.log('starting another replica: every replica is queueing', { model: m.name, replicas: serving.length });
            this.t.startLoad(m).catch((err: Error) => this.t.log('could not start another replica', { model: m.name, reason: err.message }));
          }
        } else {
          m.pressureSince = undefined;
        }
      }
    }
  }
}
