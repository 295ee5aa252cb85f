/**
 * Outlier detection (Envoy's is the model): a replica that fails several calls in a row, or
 * answers far slower than its peers, leaves balancing for a while, so one broken or overloaded
 * child does not keep taking its share of a model's traffic until its health check gives up on it.
 *
 * - Outcomes come from where calls finish (the multiplexer's forwarder, the data plane's
 *   `onInstance`). Failures that are the replica's: gRPC UNAVAILABLE, INTERNAL, UNKNOWN, and
 *   DEADLINE_EXCEEDED when the manager's own timeout (grpc_request_timeout_secs) ran out, not the
 *   client's deadline; the data plane's errors by the gRPC status of their code, so HTTP 5xx
 *   answers such as 503/504 count. A client's error (INVALID_ARGUMENT, ...), a call the client
 *   cancelled, an overloaded child (RESOURCE_EXHAUSTED) count neither way.
 * - Ejection: `consecutive_failures` in a row; or, once the replica and a peer of the same
 *   `model_id` have `slow_min_requests` successful calls, a latency average (EWMA over about
 *   `slow_min_requests` calls) above `slow_factor` times the median of its peers'.
 * - An ejection lasts `base_ejection_secs` times the number of this child's ejections so far, at
 *   most `max_ejection_secs`; then the replica is probed (the `probe` given: a grpc.health call
 *   through its channel) and readmitted on success (its counts start afresh), else ejected again
 *   for the next interval. While ejected, calls that still end on it are not counted.
 * - Never more than `max_ejected_percent` of a model's serving replicas at once, and never the
 *   last one: the ejection waits for the next failure.
 * - State belongs to one child: a new Instance object or spawn generation starts afresh.
 * Routing (target.ts) skips ejected replicas while another one can serve.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';
import { systemClock, type Clock, type TimerHandle } from '../common/clock.js';
import { ERROR_CODES, TeiplexError } from '../common/errors.js';
import type { OutlierDetectionConfig } from '../config/config.js';
import type { Instance } from '../supervisor/instance.js';
import { canServe } from '../supervisor/instance-state.js';
import { NOT_EJECTED, type OutlierStatus, type OutlierView } from '../supervisor/supervisor.js';

/** How a finished call counts for its replica. */
export type Outcome = 'success' | 'failure' | 'ignored';

/** Why a replica was ejected: failures in a row, far slower than its peers, or its probe failed. */
export type EjectionReason = 'consecutive_failures' | 'slow' | 'probe_failed';

/** A call's gRPC status as an outcome; `ourTimeout`: a DEADLINE_EXCEEDED came from the manager's own timeout. */
export function grpcOutcome(code: GrpcStatus, ourTimeout: boolean): Outcome {
  switch (code) {
    case GrpcStatus.OK:
      return 'success';
    case GrpcStatus.UNAVAILABLE:
    case GrpcStatus.INTERNAL:
    case GrpcStatus.UNKNOWN:
      return 'failure';
    case GrpcStatus.DEADLINE_EXCEEDED:
      return ourTimeout ? 'failure' : 'ignored';
    default:
      return 'ignored';
  }
}

/** A data-plane call's error as an outcome: by the gRPC status of its code; the child's deadline there is always the manager's. */
export function errorOutcome(err: unknown): Outcome {
  if (!(err instanceof TeiplexError)) return 'ignored';
  return grpcOutcome(ERROR_CODES[err.code].grpc, err.code === 'REQUEST_TIMEOUT');
}

export interface OutlierListener {
  ejected?(instance: string, reason: EjectionReason): void;
  readmitted?(instance: string): void;
}

export interface OutlierOptions {
  settings: OutlierDetectionConfig;
  /** Every instance (a model's replicas are those of the same `model_id`). */
  instances: { list(): Instance[] };
  /** Is the ejected replica's child answering again? (false or a rejection: not yet) */
  probe(instance: Instance): Promise<boolean>;
  clock?: Clock;
}

interface Replica {
  readonly instance: Instance;
  readonly generation: number;
  /** Failures in a row. */
  failures: number;
  /** Latency average of successful calls (ms) and how many it has seen. */
  ewmaMs: number;
  samples: number;
  ejections: number;
  /** Clock time the current ejection ends; undefined: not ejected. */
  ejectedUntil: number | undefined;
  reason: EjectionReason | undefined;
  timer: TimerHandle | undefined;
}

export class OutlierDetector implements OutlierView {
  private readonly replicas = new Map<string, Replica>();
  /** The states by model_id: a success compares its replica with these, without listing every instance. */
  private readonly groups = new Map<string, Set<Replica>>();
  private readonly clock: Clock;
  private readonly alpha: number;
  private readonly listeners: OutlierListener[] = [];

  constructor(private readonly o: OutlierOptions) {
    this.clock = o.clock ?? systemClock;
    this.alpha = 2 / (o.settings.slow_min_requests + 1);
  }

  listen(l: OutlierListener): void {
    this.listeners.push(l);
  }

  /** This child's state, if it has one (a state of another Instance object or generation is stale). */
  private current(instance: Instance): Replica | undefined {
    const r = this.replicas.get(instance.name);
    return r !== undefined && r.instance === instance && r.generation === instance.spawnGeneration ? r : undefined;
  }

  private replica(instance: Instance): Replica {
    const r = this.current(instance);
    if (r !== undefined) return r;
    this.forget(instance.name);
    const created: Replica = { instance, generation: instance.spawnGeneration, failures: 0, ewmaMs: 0, samples: 0, ejections: 0, ejectedUntil: undefined, reason: undefined, timer: undefined };
    this.replicas.set(instance.name, created);
    const model = instance.spec.model_id;
    let group = this.groups.get(model);
    if (group === undefined) this.groups.set(model, (group = new Set()));
    group.add(created);
    return created;
  }

  /** Drop a name's state (its timer too). */
  private forget(name: string): void {
    const old = this.replicas.get(name);
    if (old === undefined) return;
    this.clock.clearTimeout(old.timer);
    this.replicas.delete(name);
    const group = this.groups.get(old.instance.spec.model_id);
    group?.delete(old);
    if (group?.size === 0) this.groups.delete(old.instance.spec.model_id);
  }

  /** Out of balancing now. */
  isEjected(instance: Instance): boolean {
    return this.current(instance)?.ejectedUntil !== undefined;
  }

  /** What GET /instances shows. */
  of(instance: Instance): OutlierStatus {
    const r = this.current(instance);
    if (r === undefined) return NOT_EJECTED;
    return { ejected: r.ejectedUntil !== undefined, ejected_until: r.ejectedUntil === undefined ? null : new Date(r.ejectedUntil).toISOString(), ejections: r.ejections, reason: r.reason ?? null };
  }

  /** A call on `instance`'s child finished: how it counts, and how long it took. */
  record(instance: Instance, outcome: Outcome, durationMs: number): void {
    if (outcome === 'ignored') return;
    const r = this.replica(instance);
    if (r.ejectedUntil !== undefined) return;
    if (outcome === 'failure') {
      r.failures++;
      if (r.failures >= this.o.settings.consecutive_failures && this.mayEject(r)) this.eject(r, 'consecutive_failures');
      return;
    }
    r.failures = 0;
    r.ewmaMs = r.samples === 0 ? durationMs : r.ewmaMs + this.alpha * (durationMs - r.ewmaMs);
    r.samples++;
    if (this.isSlow(r) && this.mayEject(r)) this.eject(r, 'slow');
  }

  /** Far slower than the median of its peers (serving, not ejected, enough samples each)? */
  private isSlow(r: Replica): boolean {
    const s = this.o.settings;
    if (r.samples < s.slow_min_requests) return false;
    const peers: number[] = [];
    for (const p of this.groups.get(r.instance.spec.model_id) ?? []) {
      if (p === r || p.ejectedUntil !== undefined || p.samples < s.slow_min_requests || !canServe(p.instance.status) || this.current(p.instance) !== p) continue;
      peers.push(p.ewmaMs);
    }
    if (peers.length === 0) return false;
    peers.sort((a, b) => a - b);
    const mid = peers.length >> 1;
    const median = peers.length % 2 === 1 ? peers[mid] : (peers[mid - 1] + peers[mid]) / 2;
    return r.ewmaMs > s.slow_factor * median;
  }

  /** Within max_ejected_percent of the model's serving replicas, and not the last one serving. */
  private mayEject(r: Replica): boolean {
    const group = this.o.instances.list().filter((i) => i.spec.model_id === r.instance.spec.model_id && canServe(i.status) && i !== r.instance);
    const total = group.length + 1;
    const ejected = group.filter((i) => this.isEjected(i)).length;
    return total - ejected - 1 >= 1 && (ejected + 1) * 100 <= this.o.settings.max_ejected_percent * total;
  }

  private eject(r: Replica, reason: EjectionReason): void {
    const s = this.o.settings;
    r.ejections++;
    const ms = Math.min(s.base_ejection_secs * r.ejections, s.max_ejection_secs) * 1000;
    r.ejectedUntil = this.clock.now() + ms;
    r.reason = reason;
    r.failures = 0;
    r.timer = this.clock.setTimeout(() => this.probe(r), ms);
    for (const l of this.listeners) l.ejected?.(r.instance.name, reason);
  }

  /** The ejection ran out: readmit on a passing probe, else eject again for the next interval. */
  private probe(r: Replica): void {
    r.timer = undefined;
    const stale = (): boolean => this.replicas.get(r.instance.name) !== r || this.current(r.instance) !== r;
    if (stale()) return;
    if (!canServe(r.instance.status)) {
      // Stopping or gone: whatever comes next is another child, with a state of its own.
      this.forget(r.instance.name);
      return;
    }
    void this.o
      .probe(r.instance)
      .catch(() => false)
      .then((ok) => {
        if (stale()) return;
        if (!ok) {
          this.eject(r, 'probe_failed');
          return;
        }
        r.ejectedUntil = undefined;
        r.failures = 0;
        r.samples = 0;
        r.ewmaMs = 0;
        for (const l of this.listeners) l.readmitted?.(r.instance.name);
      });
  }

  /** Forget every timer (manager shutdown). */
  close(): void {
    for (const name of [...this.replicas.keys()]) this.forget(name);
  }
}
