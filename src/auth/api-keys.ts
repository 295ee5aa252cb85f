/**
 * API keys (`[[auth.api_keys]]`): the config holds only the hex SHA-256 of each key. A presented
 * key (`authorization: Bearer <key>`, gRPC metadata or HTTP header) is hashed and compared with
 * every configured hash in constant time (no early exit), so neither the key nor which entry it
 * matched shows in the timing.
 *
 * Missing, malformed or unknown key -> UNAUTHENTICATED (401). A known key used on an instance or
 * model outside its `instances` / `models` restrictions -> PERMISSION_DENIED (403): callers check
 * after target resolution (`authorizeInstance`), against the instance that would serve the call.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { TeiplexError } from '../common/errors.js';
import type { ApiKeyConfig } from '../config/config.js';

/** What a key may do. */
export interface ApiKeyGrant {
  /** The key's `name` (never the key). */
  readonly name: string;
  /** Data plane: only these instance names (undefined: any). */
  readonly instances?: ReadonlySet<string>;
  /** Data plane: only instances of these model ids (undefined: any). */
  readonly models?: ReadonlySet<string>;
  /** May use the REST admin API. */
  readonly admin: boolean;
  /** Has `instances` or `models`. */
  readonly restricted: boolean;
}

/** The part of an instance a restriction looks at (the supervisor's Instance fits). */
export interface AuthTarget {
  readonly name: string;
  readonly spec: { readonly model_id: string };
}

export function sha256Hex(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

const BEARER = /^Bearer +([^\s]+) *$/i;

export class ApiKeys {
  private readonly hashes: Buffer[];
  private readonly grants: ApiKeyGrant[];

  constructor(keys: readonly ApiKeyConfig[]) {
    this.hashes = keys.map((k) => Buffer.from(k.key_sha256, 'hex'));
    this.grants = keys.map((k) => ({
      name: k.name,
      instances: k.instances === undefined ? undefined : new Set(k.instances),
      models: k.models === undefined ? undefined : new Set(k.models),
      admin: k.admin === true,
      restricted: k.instances !== undefined || k.models !== undefined,
    }));
  }

  /** Keys are configured: data-plane calls need one. */
  get enabled(): boolean {
    return this.hashes.length > 0;
  }

  get hasAdminKey(): boolean {
    return this.grants.some((g) => g.admin);
  }

  /** The grant of a raw `authorization` value; throws UNAUTHENTICATED. */
  authenticate(authorization: string | undefined): ApiKeyGrant {
    if (authorization === undefined || authorization === '') {
      throw new TeiplexError('UNAUTHENTICATED', `missing API key: send the header 'authorization: Bearer <key>'`);
    }
    const m = BEARER.exec(authorization);
    if (m === null) throw new TeiplexError('UNAUTHENTICATED', `malformed authorization: expected 'Bearer <key>'`);
    const digest = createHash('sha256').update(m[1], 'utf8').digest();
    let found = -1;
    for (let i = 0; i < this.hashes.length; i++) {
      // Every entry is compared, whatever matched before.
      if (timingSafeEqual(digest, this.hashes[i]) && found < 0) found = i;
    }
    if (found < 0) throw new TeiplexError('UNAUTHENTICATED', 'unknown API key');
    return this.grants[found];
  }
}

function list(set: ReadonlySet<string>): string {
  return [...set].map((s) => `'${s}'`).join(', ');
}

/** Throws PERMISSION_DENIED when `grant` may not use `instance` (data plane). */
export function authorizeInstance(grant: ApiKeyGrant | undefined, instance: AuthTarget): void {
  if (grant === undefined || !grant.restricted) return;
  const byName = grant.instances === undefined || grant.instances.has(instance.name);
  const byModel = grant.models === undefined || grant.models.has(instance.spec.model_id);
  if (byName && byModel) return;
  const limits = [grant.instances && `instances ${list(grant.instances)}`, grant.models && `models ${list(grant.models)}`].filter(Boolean).join(' and ');
  throw new TeiplexError(
    'PERMISSION_DENIED',
    `API key '${grant.name}' may not use instance '${instance.name}' (model_id '${instance.spec.model_id}'): it is limited to ${limits}`,
  );
}

/** A call's target before resolution (the multiplexer's Target). */
export type RouteTarget =
  | { readonly kind: 'instance_name'; readonly value: string }
  | { readonly kind: 'model_id'; readonly value: string }
  | { readonly kind: 'instance_index'; readonly value: number };

/** The instances a target may resolve to (the supervisor fits). */
export interface AuthDirectory {
  /** Ordered by name (instance_index counts in this order). */
  list(): readonly AuthTarget[];
  find(name: string): AuthTarget | undefined;
}

/**
 * Before resolution, deterministically: throws PERMISSION_DENIED when `grant` may not use what
 * `target` names. A `model_id` target needs every instance of that model allowed (which replica
 * serves depends on load). A target naming nothing is let through (resolution answers NOT_FOUND).
 */
export function authorizeRoute(grant: ApiKeyGrant | undefined, target: RouteTarget, instances: AuthDirectory): void {
  if (grant === undefined || !grant.restricted) return;
  switch (target.kind) {
    case 'instance_name': {
      if (grant.instances !== undefined && !grant.instances.has(target.value)) {
        throw new TeiplexError('PERMISSION_DENIED', `API key '${grant.name}' may not use instance '${target.value}': it is limited to instances ${list(grant.instances)}`);
      }
      const instance = instances.find(target.value);
      if (instance !== undefined) authorizeInstance(grant, instance);
      return;
    }
    case 'instance_index': {
      const instance = instances.list()[target.value];
      if (instance !== undefined) authorizeInstance(grant, instance);
      return;
    }
    case 'model_id': {
      if (grant.models !== undefined && !grant.models.has(target.value)) {
        throw new TeiplexError('PERMISSION_DENIED', `API key '${grant.name}' may not use model_id '${target.value}': it is limited to models ${list(grant.models)}`);
      }
      const allowed = grant.instances;
      if (allowed === undefined) return;
      const outside = instances.list().filter((i) => i.spec.model_id === target.value && !allowed.has(i.name));
      if (outside.length > 0) {
        throw new TeiplexError(
          'PERMISSION_DENIED',
          `API key '${grant.name}' may not route by model_id '${target.value}': it is also served by ${outside.map((i) => `'${i.name}'`).join(', ')}, outside its instances ${list(allowed)}; name the instance instead`,
        );
      }
      return;
    }
  }
}

/** Throws PERMISSION_DENIED unless `grant` may use the admin API. */
export function authorizeAdmin(grant: ApiKeyGrant): void {
  if (!grant.admin) throw new TeiplexError('PERMISSION_DENIED', `API key '${grant.name}' may not use the admin API (it lacks admin = true)`);
}
