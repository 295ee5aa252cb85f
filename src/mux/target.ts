/**
 * Target resolution: which instance serves a call.
 * - `instance_name`: that instance; `instance_index`: that position in the name-ordered list.
 * - `model_id`: the instances whose spec's `model_id` is exactly that string; among the running
 *   ones, the one with the fewest requests in flight, ties taken in turn, so replicas share load.
 *   When none is running but some are `unhealthy` (their child is up, a health check failed),
 *   those are used the same way.
 * Unknown -> NOT_FOUND naming it. Known but without a child that can answer -> UNAVAILABLE naming
 * its status. An instance named explicitly is used while `running` or `unhealthy`: the client
 * asked for it, and an unhealthy child may well still answer (it is restarted if it stays so).
 */
import { TeiplexError } from '../common/errors.js';
import type { Instance } from '../supervisor/instance.js';
import { canServe } from '../supervisor/instance-state.js';
import type { Inflight } from './inflight.js';
import type { Target } from './wrapper.js';

/** What resolution needs from the supervisor. */
export interface InstanceDirectory {
  /** Ordered by name. */
  list(): Instance[];
  find(name: string): Instance | undefined;
}


function usable(instance: Instance): Instance {
  if (canServe(instance.status)) return instance;
  throw new TeiplexError('INSTANCE_UNAVAILABLE', `instance '${instance.name}' is ${instance.status}`);
}

export class TargetResolver {
  /** Per model: turns taken among equally loaded replicas. */
  private readonly turns = new Map<string, number>();

  constructor(
    private readonly instances: InstanceDirectory,
    private readonly inflight: Inflight,
  ) {}

  resolve(target: Target): Instance {
    switch (target.kind) {
      case 'instance_name': {
        const instance = this.instances.find(target.value);
        if (instance === undefined) throw new TeiplexError('INSTANCE_NOT_FOUND', `instance '${target.value}' not found`);
        return usable(instance);
      }
      case 'instance_index': {
        const list = this.instances.list();
        const instance = list[target.value];
        if (instance === undefined) {
          throw new TeiplexError('INSTANCE_NOT_FOUND', `instance_index ${target.value} is out of range: there ${list.length === 1 ? 'is 1 instance' : `are ${list.length} instances`}`);
        }
        return usable(instance);
      }
      case 'model_id':
        return this.byModel(target.value);
    }
  }

  private byModel(modelId: string): Instance {
    const candidates = this.instances.list().filter((i) => i.spec.model_id === modelId);
    if (candidates.length === 0) throw new TeiplexError('MODEL_NOT_FOUND', `no instance serves model_id '${modelId}'`);
    const best = this.pick(modelId, candidates);
    if (best === undefined) {
      const states = candidates.map((i) => `${i.name} is ${i.status}`).join(', ');
      throw new TeiplexError('INSTANCE_UNAVAILABLE', `no running instance of model_id '${modelId}': ${states}`);
    }
    return best;
  }

  /**
   * Among replicas of one model (`key` names the group, e.g. a model_id or an alias): the running
   * one with the fewest requests in flight, ties taken in turn; unhealthy ones only when none is
   * running; undefined when none can serve.
   */
  pick(key: string, candidates: readonly Instance[]): Instance | undefined {
    if (candidates.length === 0) return undefined;
    const turn = (this.turns.get(key) ?? 0) % candidates.length;
    this.turns.set(key, (turn + 1) % candidates.length);
    let best: Instance | undefined;
    let bestScore = Infinity;
    for (let k = 0; k < candidates.length; k++) {
      const instance = candidates[(turn + k) % candidates.length];
      if (!canServe(instance.status)) continue;
      // Running ones first; unhealthy ones only when no running one exists.
      const score = this.inflight.get(instance.name) + (instance.status === 'running' ? 0 : 1e9);
      if (score < bestScore) {
        best = instance;
        bestScore = score;
      }
    }
    return best;
  }
}
