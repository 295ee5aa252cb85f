/**
 * Cold starts: a request for a model with no serving replica starts one and waits for it. Single
 * flight: concurrent first requests share one start (`startLoad`). A waiter is bounded by
 * cold_start_timeout_secs (then MODEL_LOADING with Retry-After; the start goes on),
 * cold_start_queue_size and cold_start_queue_mb (the waiters' bodies, all models together); a
 * waiter whose client goes away leaves the queue (CANCELLED); a client may ask not to wait.
 * A start that fails may be bad luck: one more try on a fresh replica, then the model is marked
 * failed — requests get that error at once, nothing is retried until an explicit load or a spec
 * change. An unload or delete cancels a start in progress (startEpoch): it settles at once,
 * without a retry.
 */
import { systemClock, type Clock, type TimerHandle } from '../common/clock.js';
import { TeiplexError } from '../common/errors.js';
import type { Instance } from '../supervisor/instance.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import type { CatalogModel } from './catalog-model.js';
import type { CatalogSettings } from './catalog-settings.js';
import { queueRefusal } from './eviction-policy.js';
import { MemoryQueue } from './memory-queue.js';
import { NoRoom, type Placement } from './placement.js';
import type { Replicas, Usage } from './replicas.js';

/** Header (HTTP) or metadata key (gRPC): a request for a model that is not loaded fails at once with Retry-After instead of waiting for its cold start. */
export const NO_WAIT_HEADER = 'x-teiplex-no-wait';

/** Does a header/metadata value ask not to wait? */
export function asksNoWait(value: unknown): boolean {
  const v = Array.isArray(value) ? value[0] : value;
  return typeof v === 'string' && /^(1|true|yes)$/i.test(v.trim());
}

/** What a request waiting for a cold start holds, and how its client's going away is seen. */
export interface ColdStartWaiter {
  /** Bytes of its body (counted against cold_start_queue_mb). */
  bytes?: number;
  /** Aborted when its client has gone away: it leaves the queue. */
  signal?: AbortSignal;
}

/** Starts of a replica that fail before it is ready, in a row, before its model is marked failed. */
const LOAD_ATTEMPTS = 2;
const MIB = 1024 * 1024;

export interface ColdStartOptions {
  supervisor: Supervisor;
  inflight: Usage;
  replicas: Replicas;
  placement: Placement;
  settings(): CatalogSettings;
  /** Is `m` still the listed model of its name (not deleted)? */
  listed(m: CatalogModel): boolean;
  closed(): boolean;
  loaded(model: string, result: 'ok' | 'failed' | 'refused', seconds: number): void;
  /** A replica just got ready: sample its footprint. */
  sample(m: CatalogModel, i: Instance): void;
  changed(m: CatalogModel): void;
  log(msg: string, fields?: Record<string, unknown>): void;
  clock?: Clock;
}

export class ColdStarts {
  /** Bytes of request bodies waiting for cold starts (cold_start_queue_mb). */
  private waitingBytes = 0;
  private readonly clock: Clock;
  /** Starts waiting for memory (memory-queue.ts). */
  readonly memory: MemoryQueue;

  constructor(private readonly o: ColdStartOptions) {
    this.clock = o.clock ?? systemClock;
    this.memory = new MemoryQueue(this.clock);
  }

  /**
   * Make sure a replica of `m` serves: at once when one does; else start one (or join the start
   * in progress) and wait, unless `wait` is false (then MODEL_LOADING at once, the start goes on).
   */
  async ensureServing(m: CatalogModel, wait: boolean, w: ColdStartWaiter = {}): Promise<void> {
    if (this.o.replicas.serving(m)) return;
    if (m.failure !== undefined) throw this.failedError(m);
    if (!wait) {
      this.startLoad(m).catch(() => undefined);
      throw new TeiplexError('MODEL_LOADING', `model '${m.name}' is not loaded: it is being started (you asked not to wait)`, { retryAfterSecs: this.retryAfter(m) });
    }
    const s = this.o.settings();
    const bytes = Math.max(0, w.bytes ?? 0);
    const bound = queueRefusal({ waitingForModel: m.waiters, queueSize: s.cold_start_queue_size, waitingBytes: this.waitingBytes, bytes, queueMb: s.cold_start_queue_mb });
    if (bound === 'cold_start_queue_size') {
      throw new TeiplexError('COLD_START_QUEUE_FULL', `model '${m.name}' is ${this.memory.reason(m.name) !== undefined ? 'waiting for memory' : 'starting'} and ${m.waiters} requests already wait for it (cold_start_queue_size)`, {
        retryAfterSecs: this.retryAfter(m),
      });
    }
    if (bound === 'cold_start_queue_mb') {
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
    let timer: TimerHandle | undefined;
    let onAbort: (() => void) | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = this.clock.setTimeout(() => {
          const forMemory = this.memory.reason(m.name);
          reject(
            forMemory !== undefined
              ? new TeiplexError('MEMORY_BUDGET_EXCEEDED', `model '${m.name}' waited cold_start_timeout_secs (${s.cold_start_timeout_secs} s) for memory and got none: ${forMemory}`, { retryAfterSecs: 5 })
              : new TeiplexError('MODEL_LOADING', `model '${m.name}' did not finish starting within cold_start_timeout_secs (${s.cold_start_timeout_secs} s); it goes on starting`, {
                  retryAfterSecs: this.retryAfter(m),
                }),
          );
        }, s.cold_start_timeout_secs * 1000);
      });
      const aborted = new Promise<never>((_, reject) => {
        onAbort = () => reject(gone(m));
        w.signal?.addEventListener('abort', onAbort, { once: true });
      });
      await Promise.race([this.startLoad(m), timeout, aborted]);
    } finally {
      this.clock.clearTimeout(timer);
      if (onAbort !== undefined) w.signal?.removeEventListener('abort', onAbort);
      m.waiters--;
      this.waitingBytes -= bytes;
    }
  }

  /** The start in progress, or a new one. */
  startLoad(m: CatalogModel): Promise<Instance> {
    if (m.loading !== undefined) return m.loading;
    m.loadingSince = this.clock.now();
    const p = this.loadReplica(m).finally(() => {
      m.loading = undefined;
      m.loadingSince = undefined;
      this.o.changed(m);
    });
    m.loading = p;
    this.o.changed(m);
    return p;
  }

  private async loadReplica(m: CatalogModel): Promise<Instance> {
    if (this.o.closed()) throw new TeiplexError('UNHEALTHY', 'the manager is shutting down');
    if (m.unloading !== undefined) await m.unloading;
    // Deleted while this start waited for the delete: nothing is started for it.
    if (!this.o.listed(m)) throw new TeiplexError('MODEL_NOT_FOUND', `catalog model '${m.name}' was deleted`);
    // A spec the config's [security] refuses starts nothing and evicts nothing.
    this.o.supervisor.checkSpec(m.spec, m.source);
    const epoch = m.startEpoch;
    const t0 = performance.now();
    let reason = '';
    for (let attempt = 1; attempt <= LOAD_ATTEMPTS; attempt++) {
      let instance: Instance;
      let ready: Promise<void>;
      try {
        ({ instance, ready } = await this.place(m, epoch));
      } catch (err) {
        if (m.startEpoch === epoch) this.o.loaded(m.name, 'refused', (performance.now() - t0) / 1000);
        throw err;
      }
      try {
        // An unload or delete since the placement decision: this replica goes (stopAll may not have seen it).
        if (m.startEpoch !== epoch) throw this.cancelledError(m);
        await ready;
        const secs = (performance.now() - t0) / 1000;
        m.lastLoadSecs = secs;
        this.o.loaded(m.name, 'ok', secs);
        this.o.inflight.touch(instance.name);
        this.o.sample(m, instance);
        return instance;
      } catch (why) {
        reason = String(why);
        await this.o.replicas.stop(m, instance.name);
        if (this.o.closed()) throw new TeiplexError('UNHEALTHY', 'the manager is shutting down');
        // Cancelled by an unload or delete: not a failure of the model, and not retried.
        if (m.startEpoch !== epoch) throw this.cancelledError(m);
        this.o.log('a replica failed before it was ready', { model: m.name, instance: instance.name, attempt, of: LOAD_ATTEMPTS, reason });
      }
    }
    m.failure = { reason, at: new Date().toISOString() };
    this.o.log('catalog model failed to load', { model: m.name, reason });
    this.o.loaded(m.name, 'failed', (performance.now() - t0) / 1000);
    throw this.failedError(m);
  }

  /**
   * Place a replica of `m`; with no room yet but room to come (NoRoom.wait) and requests waiting
   * for it, wait in the memory queue (memory-queue.ts) and try again until placed, cancelled, or
   * no request waits any more (each request's own wait is bounded by cold_start_timeout_secs).
   */
  private async place(m: CatalogModel, epoch: number): Promise<{ instance: Instance; ready: Promise<void> }> {
    try {
      for (;;) {
        try {
          return await this.o.placement.run(() => {
            if (m.startEpoch !== epoch) throw this.cancelledError(m);
            const s = this.o.settings();
            const waited = this.memory.waitedMs(m.name);
            const preempt = s.memory_wait_preempt_secs > 0 && waited !== undefined && waited >= s.memory_wait_preempt_secs * 1000;
            return this.o.placement.placeAndCreate(m, this.memory.mayEvict(m.name), preempt);
          });
        } catch (err) {
          if (!(err instanceof NoRoom) || !err.wait || m.waiters === 0 || this.o.closed() || m.startEpoch !== epoch) throw err;
          if (this.memory.reason(m.name) === undefined) this.o.log('waiting for memory', { model: m.name, waiters: m.waiters, reason: err.message });
          this.o.changed(m);
          await this.memory.wait(m.name, err.message);
        }
      }
    } finally {
      this.memory.leave(m.name);
    }
  }

  private cancelledError(m: CatalogModel): TeiplexError {
    return this.o.listed(m)
      ? new TeiplexError('INSTANCE_UNAVAILABLE', `model '${m.name}' was unloaded while it was starting; a new request starts it again`, { retryAfterSecs: 1 })
      : new TeiplexError('MODEL_NOT_FOUND', `catalog model '${m.name}' was deleted while it was starting`);
  }

  failedError(m: CatalogModel): TeiplexError {
    return new TeiplexError('MODEL_LOAD_FAILED', `model '${m.name}' failed to load (${m.failure!.at}): ${m.failure!.reason}; POST /models/${m.name}/load tries again`);
  }

  private retryAfter(m: CatalogModel): number {
    const total = m.lastLoadSecs ?? 5;
    const elapsed = m.loadingSince !== undefined ? (this.clock.now() - m.loadingSince) / 1000 : 0;
    return Math.max(1, Math.ceil(total - elapsed));
  }
}

function gone(m: CatalogModel): TeiplexError {
  return new TeiplexError('CANCELLED', `the client went away while waiting for model '${m.name}' to start`);
}
