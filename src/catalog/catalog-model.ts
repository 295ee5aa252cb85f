/**
 * One catalog model at run time: its spec, where it came from, its replicas (instance names), its
 * measured footprint, a load in progress (single flight), requests waiting for it, the epoch an
 * unload or delete bumps to cancel a start in progress, and a failure
 * that stops it from being retried in a loop. Its state is derived from these and the replicas'
 * statuses.
 */
import { modelName, pinnedReplicas, type ModelSpec } from '../config/model-spec.js';
import type { Instance } from '../supervisor/instance.js';
import { canServe } from '../supervisor/instance-state.js';
import type { Source, StoredModel } from '../state/state-store.js';

export const MODEL_STATES = ['available', 'loading', 'loaded', 'unloading', 'failed'] as const;
export type ModelState = (typeof MODEL_STATES)[number];

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

  constructor(
    public spec: ModelSpec,
    readonly source: Source,
    readonly createdAt: string,
    footprintMb?: number,
  ) {
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
    if (this.failure !== undefined) return 'failed';
    if (this.unloading !== undefined) return 'unloading';
    if (replicas.some((i) => canServe(i.status))) return 'loaded';
    if (replicas.some((i) => i.status === 'stopping')) return 'unloading';
    if (this.loading !== undefined || replicas.some((i) => i.status === 'starting')) return 'loading';
    return 'available';
  }
}
