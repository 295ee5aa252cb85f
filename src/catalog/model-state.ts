/**
 * The catalog model state machine: the states a model shows (GET /models `state`), the events
 * that move it, and every transition allowed, in one table. A model's state is a function of what
 * it is doing (a start, an unload, a failure) and of its replicas' statuses (`deriveModelState`);
 * the catalog moves each model's `ModelStateMachine` to that state at every change, and the
 * machine refuses a change the table does not list (such a change is a bug, and is logged).
 * No state is terminal: a failed model leaves `failed` on an explicit load (or a spec change,
 * which makes a new model).
 */
import { canServe, type InstanceState } from '../supervisor/instance-state.js';

export const MODEL_STATES = ['available', 'loading', 'loaded', 'unloading', 'failed'] as const;
export type ModelState = (typeof MODEL_STATES)[number];

export const MODEL_EVENTS = ['start', 'ready', 'down', 'unload', 'unloaded', 'fail', 'load'] as const;
/**
 * start: a replica start begins, or a replica restarts; ready: a replica serves; down: no replica
 * serves or starts any more (refused for room, died and backing off); unload: an unload or delete
 * begins, or a replica is being stopped (idle, budget) with none serving; unloaded: those stops
 * are done; fail: the start ran out of attempts, a replica ran out of restarts, its spec is
 * refused; load: POST /models/{name}/load clears a failure.
 */
export type ModelEvent = (typeof MODEL_EVENTS)[number];

/** from -> to -> the event that makes that change. Anything not listed is refused. */
const TRANSITIONS: Record<ModelState, Partial<Record<ModelState, ModelEvent>>> = {
  // a request or min_replicas starts one | an unload of nothing serving | a replica backing off ran out of restarts
  available: { loading: 'start', unloading: 'unload', failed: 'fail' },
  // a replica serves | refused (no room) or died before ready, backing off | unloaded or deleted meanwhile | out of attempts
  loading: { loaded: 'ready', available: 'down', unloading: 'unload', failed: 'fail' },
  // the serving replica died and restarts | died, backing off | unload, idle stop, eviction | out of restarts
  loaded: { loading: 'start', available: 'down', unloading: 'unload', failed: 'fail' },
  // stops done | a start after them | another replica serves | a replica not being stopped ran out of restarts
  unloading: { available: 'unloaded', loading: 'start', loaded: 'ready', failed: 'fail' },
  // an explicit load clears the failure: what the replicas then make it
  failed: { available: 'load', loading: 'load', loaded: 'load', unloading: 'load' },
};

export function canTransition(from: ModelState, to: ModelState): boolean {
  return TRANSITIONS[from][to] !== undefined;
}

/** The event that moves `from` to `to`, or undefined when the table has no such change. */
export function eventOf(from: ModelState, to: ModelState): ModelEvent | undefined {
  return TRANSITIONS[from][to];
}

/** What a model is doing, besides its replicas. */
export interface ModelActivity {
  failed: boolean;
  unloading: boolean;
  loading: boolean;
}

/** The state a model shows: failed, unloading, loaded, loading, available, in that order of precedence. */
export function deriveModelState(a: ModelActivity, replicas: readonly InstanceState[]): ModelState {
  if (a.failed) return 'failed';
  if (a.unloading) return 'unloading';
  if (replicas.some(canServe)) return 'loaded';
  if (replicas.some((s) => s === 'stopping')) return 'unloading';
  if (a.loading || replicas.some((s) => s === 'starting')) return 'loading';
  return 'available';
}

export class ModelTransitionError extends Error {
  constructor(
    readonly from: ModelState,
    readonly to: ModelState,
  ) {
    super(`a catalog model cannot go from ${from} to ${to}`);
    this.name = 'ModelTransitionError';
  }
}

export class ModelStateMachine {
  private current: ModelState = 'available';

  /** Called after every change (the catalog publishes it). */
  constructor(public onChange: (from: ModelState, to: ModelState, event: ModelEvent | undefined) => void = () => undefined) {}

  get state(): ModelState {
    return this.current;
  }

  /** Move to `to` (no-op when already there); throws ModelTransitionError, state unchanged, when the table has no such change. */
  transition(to: ModelState): void {
    const from = this.current;
    if (from === to) return;
    const event = eventOf(from, to);
    if (event === undefined) throw new ModelTransitionError(from, to);
    this.current = to;
    this.onChange(from, to, event);
  }

  /** Take `to` whatever the table says (after a refused transition has been reported: the state shown must stay true). */
  force(to: ModelState): void {
    const from = this.current;
    if (from === to) return;
    this.current = to;
    this.onChange(from, to, undefined);
  }
}
