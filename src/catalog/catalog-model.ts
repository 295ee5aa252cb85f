/**
 * One catalog model at run time: its spec, where it came from, its replicas (instance names), its
 * measured footprint, a load in progress (single flight), requests waiting for it, the epoch an
 * unload or delete bumps to cancel a start in progress, and a failure
 * that stops it from being retried in a loop. The state it shows is derived from these and the
 * replicas' statuses (model-state.ts); `machine` follows it through the transition table.
 */
import { modelName, pinnedReplicas, type ModelSpec } from '../config/model-spec.js';
import type { Instance } from '../supervisor/instance.js';
import type { Source, StoredModel } from '../state/state-store.js';
import { deriveModelState, ModelStateMachine, type ModelState } from './model-state.js';

export { MODEL_STATES, type ModelState } from './model-state.js';

export interface ModelFailure {
  reason: string;
  at: string;
}

export class CatalogModel {
  readonly name: string;
  /** Measured footprint of one replica (MiB), and what was measured. */
  footprintMb: number | undefined;
  footprintKind: 'gpu' | 'rss' | undefined;
  failure: ModelFailure | undefined;
  /** The replica start in progress (at most one at a time). */
  loading: Promise<Instance> | undefined;
  loadingSince: number | undefined;
  /** Seconds the last successful start took (request to ready): the Retry-After estimate. */
  lastLoadSecs: number | undefined;
  /** An unload in progress. */
  unloading: Promise<void> | undefined;
  /** Requests waiting for a cold start. */
  waiters = 0;
  /** Bumped by every unload or delete: a start begun under an older value is cancelled. */
  startEpoch = 0;
  /** A start for min_replicas failed (no room, say): not tried again before this time. */
  keepRetryAt = 0;
  /** Since when every replica has had scale_up_inflight requests in flight. */
  pressureSince: number | undefined;
  /** When a replica since stopped was last used (ms since the epoch). */
  lastUsedMs: number | undefined;
  /** Instance names of the replicas. */
  readonly replicas = new Set<string>();
  /** The state last shown, moved only along model-state.ts's table (the catalog syncs it). */
  readonly machine: ModelStateMachine;

  constructor(
    public spec: ModelSpec,
    readonly source: Source,
    readonly createdAt: string,
    footprintMb?: number,
  ) {
    this.machine = new ModelStateMachine();
    this.name = modelName(spec);
    this.footprintMb = footprintMb;
  }

  static fromStored(m: StoredModel): CatalogModel {
    const { source, created_at, footprint_mb, ...spec } = m;
    return new CatalogModel(spec, source, created_at, footprint_mb);
  }

  stored(): StoredModel {
    return { ...this.spec, name: this.name, source: this.source, created_at: this.createdAt, footprint_mb: this.footprintMb };
  }

  get pinned(): number {
    return pinnedReplicas(this.spec);
  }

  /** MiB one more replica is expected to take: measured, else the spec's estimate, else `fallback`. */
  expectedMb(fallback: number): number {
    return this.footprintMb ?? this.spec.memory_mb ?? fallback;
  }

  state(replicas: readonly Instance[]): ModelState {
    return deriveModelState(
      { failed: this.failure !== undefined, unloading: this.unloading !== undefined, loading: this.loading !== undefined },
      replicas.map((i) => i.status),
    );
  }
}
