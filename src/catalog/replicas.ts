/**
 * A catalog model's replicas as processes: creating one through the supervisor with a promise
 * that settles when it first serves (or fails first), stopping one (idle, eviction, unload,
 * failure), stopping all of a model's at once (an unload or delete cancels a start in progress:
 * its child gets SIGTERM now, nothing is retried), and what a replica's transitions mean for its
 * model: a replica that fails after it served, restarts spent, marks its model failed. Replicas
 * are not persisted: they follow their model. Each replica's measured footprint is kept here.
 */
import { TeiplexError } from '../common/errors.js';
import type { InstanceSpec } from '../config/instance-spec.js';
import type { Instance } from '../supervisor/instance.js';
import { canServe } from '../supervisor/instance-state.js';
import type { StandbyChild } from '../supervisor/standby.js';
import type { InstanceTransition, Supervisor } from '../supervisor/supervisor.js';
import type { CatalogModel } from './catalog-model.js';

/** Requests in flight and last use per instance (the front ends' count, src/routing). */
export interface Usage {
  get(instance: string): number;
  lastUsed(instance: string): number | undefined;
  touch(instance: string): void;
  forget(instance: string): void;
  /** Requests begun on the instance, in all (request rates); absent: not counted. */
  begun?(instance: string): number;
}

export type EvictReason = 'idle' | 'budget' | 'preempt' | 'unload';

export interface ReplicasOptions {
  supervisor: Supervisor;
  inflight: Usage;
  /** The listed model of that name (undefined once deleted). */
  model(name: string): CatalogModel | undefined;
  evicted(model: string, reason: EvictReason): void;
  /** A model's state may have changed. */
  changed(m: CatalogModel): void;
  /** A replica of `m` is about to be forgotten (its request count folded into the model's rate first). */
  beforeStop?(m: CatalogModel): void;
  log(msg: string, fields?: Record<string, unknown>): void;
}

export class Replicas {
  /** Replicas we are stopping: their transitions are ours, not failures. */
  private readonly stopping = new Set<string>();
  /** Replicas starting, with what to do when they are ready or fail first. */
  private readonly readiness = new Map<string, { resolve(): void; reject(reason: string): void }>();
  /** Measured footprint per instance (MiB): the peak of its samples. */
  readonly footprints = new Map<string, number>();
  /** When each replica first served (ms since the epoch): min_resident_secs counts from it. */
  readonly readyAt = new Map<string, number>();
  private closed = false;

  constructor(private readonly o: ReplicasOptions) {}

  of(m: CatalogModel): Instance[] {
    return [...m.replicas].map((n) => this.o.supervisor.find(n)).filter((i): i is Instance => i !== undefined);
  }

  /** Does a replica of `m` serve now? */
  serving(m: CatalogModel): boolean {
    return this.of(m).some((i) => canServe(i.status));
  }

  /** Create and start a replica of `m`; `ready` settles when it first serves, or rejects when it fails or is stopped first. */
  async create(m: CatalogModel, spec: InstanceSpec, standby?: StandbyChild): Promise<{ instance: Instance; ready: Promise<void> }> {
    const ready = new Promise<void>((resolve, reject) => this.readiness.set(spec.name, { resolve, reject }));
    ready.catch(() => undefined);
    m.replicas.add(spec.name);
    try {
      const instance = await this.o.supervisor.create(spec, true, { owner: m.name, source: m.source, standby });
      return { instance, ready };
    } catch (err) {
      m.replicas.delete(spec.name);
      this.readiness.delete(spec.name);
      throw err;
    }
  }

  /** Stop and delete one replica (eviction, idle, unload, failure). */
  async stop(m: CatalogModel, name: string): Promise<void> {
    this.stopping.add(name);
    this.readiness.get(name)?.reject('stopped before it was ready');
    this.readiness.delete(name);
    try {
      if (this.o.supervisor.find(name) !== undefined) await this.o.supervisor.delete(name);
    } catch (err) {
      if (!(err instanceof TeiplexError && err.code === 'INSTANCE_NOT_FOUND')) throw err;
    } finally {
      this.stopping.delete(name);
      this.o.beforeStop?.(m);
      this.readyAt.delete(name);
      m.lastUsedMs = Math.max(m.lastUsedMs ?? 0, this.o.inflight.lastUsed(name) ?? 0) || undefined;
      m.replicas.delete(name);
      this.footprints.delete(name);
      this.o.inflight.forget(name);
      this.o.changed(m);
    }
  }

  /**
   * Stop every replica of `m`, a starting one included (SIGTERM now, not after its start): the
   * start in progress is cancelled (startEpoch) and settles at once without a retry.
   */
  stopAll(m: CatalogModel, reason: 'unload'): Promise<void> {
    if (m.unloading !== undefined) return m.unloading;
    m.startEpoch++;
    const work = (async () => {
      const names = [...m.replicas];
      await Promise.all(names.map((n) => this.stop(m, n)));
      // The cancelled start stops what it created past the snapshot above before it settles.
      if (m.loading !== undefined) await m.loading.catch(() => undefined);
      if (names.length > 0) this.o.evicted(m.name, reason);
    })();
    m.unloading = work.finally(() => {
      m.unloading = undefined;
      this.o.changed(m);
    });
    this.o.changed(m);
    return m.unloading;
  }

  /** Every instance transition (the supervisor's `transition` event). */
  transitioned(t: InstanceTransition): void {
    const owner = this.o.supervisor.ownerOf(t.name);
    if (owner === undefined || this.stopping.has(t.name) || this.closed) return;
    const m = this.o.model(owner);
    const waiting = this.readiness.get(t.name);
    if (waiting !== undefined) {
      if (t.to === 'running') {
        this.readiness.delete(t.name);
        this.readyAt.set(t.name, Date.now());
        waiting.resolve();
      } else if (t.to === 'backoff' || t.to === 'failed' || t.to === 'stopped') {
        this.readiness.delete(t.name);
        waiting.reject(this.whyFailed(t.name));
      }
    } else if (t.to === 'failed' && m !== undefined) {
      // Died after serving, and its restarts ran out: the model is failed until loaded again.
      m.failure = { reason: this.whyFailed(t.name), at: new Date().toISOString() };
      this.o.log('catalog model failed', { model: m.name, instance: t.name, reason: m.failure.reason });
      void this.stop(m, t.name).catch(() => undefined);
    }
    if (m !== undefined) this.o.changed(m);
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

  /** Manager shutdown: every start waiting for readiness fails now (the supervisor stops the children). */
  close(): void {
    this.closed = true;
    for (const [name, w] of [...this.readiness]) {
      this.readiness.delete(name);
      w.reject('the manager is shutting down');
    }
  }
}
