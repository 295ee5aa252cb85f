/**
 * Target resolution: which instance serves a call, among those the call's API key may use.
 * - `reach` resolves a target to what it could reach and makes the authorization decision on it
 *   (src/auth/access.ts), before anything is done for the caller:
 *   `instance_name`: that instance; `instance_index`: that position in the name-ordered list (for a
 *   key restricted by `instances`/`models`, the list of the instances it may use: the list
 *   ListInstances shows it); `model_id`: the instances whose spec's `model_id` is exactly that
 *   string, and when it names a catalog model (its name, model_id or an alias), that model's
 *   instances and the model itself (to start when none serves).
 * - `choose` picks among the allowed instances: for a model, the running one with the fewest
 *   requests in flight, ties taken in turn, so replicas share load; when none is running but some
 *   are `unhealthy` (their child is up, a health check failed), those are used the same way. An
 *   instance named explicitly is used while `running` or `unhealthy`: the client asked for it,
 *   and an unhealthy child may well still answer (it is restarted if it stays so). A replica
 *   that outlier detection ejected (outlier.ts) is skipped while another one can serve.
 * Unknown -> NOT_FOUND naming it (PERMISSION_DENIED "does not exist or is not one this key may
 * use" for a restricted key, which sees only its own instances in the hints). Known but without a
 * child that can answer -> UNAVAILABLE naming the allowed instances' statuses (`unavailable`).
 */
import { decide, mayUse, quoted, restrictedGrant, type Reach } from '../auth/access.js';
import type { ApiKeyGrant, AuthTarget } from '../auth/api-keys.js';
import { TeiplexError } from '../common/errors.js';
import type { Instance } from '../supervisor/instance.js';
import { canServe } from '../supervisor/instance-state.js';
import type { Inflight } from './inflight.js';

/** What a call names (tei_multiplexer.v1's Target oneof; the HTTP data plane's `model` is a model_id or instance name). */
export type Target =
  | { kind: 'instance_name'; value: string }
  | { kind: 'model_id'; value: string }
  | { kind: 'instance_index'; value: number };

export function sameTarget(a: Target, b: Target): boolean {
  return a.kind === b.kind && a.value === b.value;
}

/** A target for messages: `instance_name 'bge'`, `model_id 'BAAI/bge'`, `instance_index 2`. */
export function describeTarget(t: Target): string {
  return t.kind === 'instance_index' ? `instance_index ${t.value}` : `${t.kind} '${t.value}'`;
}

/** What resolution needs from the supervisor. */
export interface InstanceDirectory {
  /** Ordered by name. */
  list(): Instance[];
  find(name: string): Instance | undefined;
  /** While the manager restores its instances at boot: a promise settling when it has (Supervisor.whenRestored). */
  whenRestored?(timeoutMs: number): Promise<void> | undefined;
}

/** The catalog's names (src/catalog's Catalog fits): a model by catalog name, model_id or alias. */
export interface CatalogNames<M extends AuthTarget> {
  lookup(name: string): M | undefined;
  list(): readonly M[];
}

/** A target's decided reach: only what the call may use; `key` names its balancing group. */
export interface TargetReach<M extends AuthTarget = AuthTarget> extends Reach<Instance, M> {
  readonly key: string;
  readonly kind: Target['kind'];
}

/** `instances 'a', 'b'; model_ids 'x', 'y'`: what a caller may name. */
export function choicesOf(instances: readonly AuthTarget[], catalog: readonly AuthTarget[] = []): string {
  return `instances ${quoted(instances.map((i) => i.name))}; model_ids ${quoted([...instances.map((i) => i.spec.model_id), ...catalog.map((m) => m.spec.model_id)])}`;
}

/** No allowed instance of a decided reach can serve now: its statuses. */
export function unavailable(r: TargetReach): TeiplexError {
  if (r.kind !== 'model_id') return new TeiplexError('INSTANCE_UNAVAILABLE', `instance '${r.instances[0]?.name}' is ${r.instances[0]?.status}`);
  const states = r.instances.map((i) => `${i.name} is ${i.status}`).join(', ');
  return new TeiplexError('INSTANCE_UNAVAILABLE', `no running instance of ${r.asked}${states === '' ? '' : `: ${states}`}`);
}

export class TargetResolver {
  /** Per model: turns taken among equally loaded replicas. */
  private readonly turns = new Map<string, number>();

  /** @param ejected is the replica out of balancing (outlier.ts)? */
  constructor(
    private readonly instances: InstanceDirectory,
    private readonly inflight: Inflight,
    private readonly ejected: (i: Instance) => boolean = () => false,
  ) {}

  /** What `target` reaches that `grant` may use (see the file comment); throws NOT_FOUND / PERMISSION_DENIED. */
  reach<M extends AuthTarget>(target: Target, grant: ApiKeyGrant | undefined, catalog?: CatalogNames<M>): TargetReach<M> {
    const all = this.instances.list();
    const hints = {
      hints: (visible: (i: AuthTarget) => boolean, startable: (m: AuthTarget) => boolean) => choicesOf(all.filter(visible), catalog?.list().filter(startable)),
    };
    switch (target.kind) {
      case 'instance_name': {
        const found = this.instances.find(target.value);
        const r = { kind: target.kind, key: `instance:${target.value}`, asked: `instance '${target.value}'`, instances: found === undefined ? [] : [found] };
        return decide(grant, r, { ...hints, notFound: () => new TeiplexError('INSTANCE_NOT_FOUND', `instance '${target.value}' not found`) });
      }
      case 'instance_index': {
        const g = restrictedGrant(grant);
        const list = g === undefined ? all : all.filter((i) => mayUse(g, i));
        const found = list[target.value];
        const r = { kind: target.kind, key: `index:${target.value}`, asked: `instance_index ${target.value}`, instances: found === undefined ? [] : [found] };
        return decide(grant, r, {
          ...hints,
          notFound: () => new TeiplexError('INSTANCE_NOT_FOUND', `instance_index ${target.value} is out of range: there ${list.length === 1 ? 'is 1 instance' : `are ${list.length} instances`}`),
        });
      }
      case 'model_id': {
        const m = catalog?.lookup(target.value);
        const id = m?.spec.model_id ?? target.value;
        const r = { kind: target.kind, key: `model_id:${id}`, asked: `model_id '${target.value}'`, instances: all.filter((i) => i.spec.model_id === id), catalog: m };
        return decide(grant, r, { ...hints, notFound: () => new TeiplexError('MODEL_NOT_FOUND', `no instance serves model_id '${target.value}'`) });
      }
    }
  }

  /** The allowed instance to call now, balanced among a model's; undefined when none can serve. `exclude`: names already tried (failover.ts). */
  choose(r: TargetReach, exclude?: ReadonlySet<string>): Instance | undefined {
    if (r.instances.length === 1) return canServe(r.instances[0].status) && exclude?.has(r.instances[0].name) !== true ? r.instances[0] : undefined;
    return this.pick(r.key, r.instances, exclude);
  }

  /**
   * Among replicas of one model (`key` names the group, e.g. a model_id or an alias): the running
   * one with the fewest requests in flight, ties taken in turn; unhealthy ones only when none is
   * running; ejected ones only when no other can serve; undefined when none can serve. `exclude`:
   * names not to pick (already tried by a call that fails over, failover.ts).
   */
  pick(key: string, candidates: readonly Instance[], exclude?: ReadonlySet<string>): Instance | undefined {
    if (candidates.length === 0) return undefined;
    const turn = (this.turns.get(key) ?? 0) % candidates.length;
    this.turns.set(key, (turn + 1) % candidates.length);
    let best: Instance | undefined;
    let bestScore = Infinity;
    for (let k = 0; k < candidates.length; k++) {
      const instance = candidates[(turn + k) % candidates.length];
      if (!canServe(instance.status) || exclude?.has(instance.name) === true) continue;
      // Running ones first; unhealthy ones only when no running one exists; ejected ones last.
      const score = this.inflight.get(instance.name) + (instance.status === 'running' ? 0 : 1e9) + (this.ejected(instance) ? 1e12 : 0);
      if (score < bestScore) {
        best = instance;
        bestScore = score;
      }
    }
    return best;
  }
}
