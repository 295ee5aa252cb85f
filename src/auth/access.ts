/**
 * Authorization on what a call actually reaches: one decision per call, the same on every gRPC
 * RPC (forwarded, Arrow, ListInstances, health) and every HTTP data-plane route.
 *
 * A front end resolves the name a call gives (an instance name or index, a model_id, an alias, a
 * catalog model's name) to what it could reach: the instances behind it and the catalog model
 * that would be started when none of them serves (a `Reach`). `decide` keeps what the call's API
 * key may use, before anything is done on the caller's behalf: balancing then picks only among the
 * allowed instances, and only an allowed catalog model is started (or evicts for its start).
 *
 * - An instance is allowed when its name is in the key's `instances` (if set) and its model_id in
 *   its `models` (if set). A catalog model is allowed as its first replica `<name>-1` would be.
 * - What a restricted key may not use looks to it exactly like what does not exist: both are
 *   PERMISSION_DENIED "... does not exist or is not one this key may use", and the hints in that
 *   message list only what the key may use. Front ends build every other message (unavailable
 *   statuses, capabilities) from the decided Reach, so nothing outside the grant is named.
 * - No key, or an unrestricted key: everything is allowed; a name that matches nothing is the
 *   front end's own NOT_FOUND with every choice.
 *
 * Pure: no I/O, no clock; the grant and the candidates come in, the allowed ones go out.
 */
import { TeiplexError } from '../common/errors.js';
import type { ApiKeyGrant, AuthTarget } from './api-keys.js';

/** A grant with `instances` or `models` restrictions (undefined: no key, or an unrestricted one). */
export function restrictedGrant(grant: ApiKeyGrant | undefined): ApiKeyGrant | undefined {
  return grant?.restricted === true ? grant : undefined;
}

/** May `grant` use `instance`? */
export function mayUse(grant: ApiKeyGrant | undefined, instance: AuthTarget): boolean {
  if (grant === undefined || !grant.restricted) return true;
  return (grant.instances === undefined || grant.instances.has(instance.name)) && (grant.models === undefined || grant.models.has(instance.spec.model_id));
}

/** May `grant` start (and use) catalog model `model` (`name` is its catalog name)? As its first replica. */
export function mayStart(grant: ApiKeyGrant | undefined, model: AuthTarget): boolean {
  return mayUse(grant, { name: `${model.name}-1`, spec: model.spec });
}

/** What a call's target could reach, before authorization. */
export interface Reach<I extends AuthTarget, C extends AuthTarget = AuthTarget> {
  /** The name as the call gave it, for messages: `instance 'a'`, `model_id 'x'`, `instance_index 3`. */
  readonly asked: string;
  /** The instances behind it (one for an instance name), whatever their status. */
  readonly instances: readonly I[];
  /** The catalog model to start when none of `instances` serves (its `name` is the catalog name). */
  readonly catalog?: C;
}

/** How a front end words a refusal. */
export interface Refusal {
  /** For a caller that may see everything, when the target names nothing (NOT_FOUND listing the choices). */
  notFound(): TeiplexError;
  /** What a restricted key may use, for its refusal: e.g. `instances 'a'; models 'org/x'`. */
  hints(visible: (instance: AuthTarget) => boolean, startable: (model: AuthTarget) => boolean): string;
}

/** A restricted key's refusal: the same whether the target does not exist or is outside the grant. */
export function denied(grant: ApiKeyGrant, asked: string, hints: string): TeiplexError {
  return new TeiplexError(
    'PERMISSION_DENIED',
    `API key '${grant.name}' cannot use ${asked}: it does not exist or is not one this key may use${hints === '' ? '' : `; it may use ${hints}`}`,
  );
}

/**
 * The one decision: `reach` narrowed to what `grant` may use. Throws `refusal.notFound()` when an
 * unrestricted caller's target names nothing, and `denied(...)` when a restricted key may use none
 * of it (or it names nothing).
 */
export function decide<I extends AuthTarget, C extends AuthTarget, R extends Reach<I, C>>(grant: ApiKeyGrant | undefined, reach: R, refusal: Refusal): R {
  const g = restrictedGrant(grant);
  if (g === undefined) {
    if (reach.instances.length === 0 && reach.catalog === undefined) throw refusal.notFound();
    return reach;
  }
  const instances = reach.instances.filter((i) => mayUse(g, i));
  const catalog = reach.catalog !== undefined && mayStart(g, reach.catalog) ? reach.catalog : undefined;
  if (instances.length === 0 && catalog === undefined) {
    throw denied(
      g,
      reach.asked,
      refusal.hints(
        (i) => mayUse(g, i),
        (m) => mayStart(g, m),
      ),
    );
  }
  return { ...reach, instances, catalog };
}

/** `'a', 'b'` (or `(none)`). */
export function quoted(names: Iterable<string>): string {
  const out = [...new Set(names)].map((n) => `'${n}'`).join(', ');
  return out === '' ? '(none)' : out;
}
