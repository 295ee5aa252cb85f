/**
 * API keys (`[[auth.api_keys]]`): the config holds only the hex SHA-256 of each key. A presented
 * key (`authorization: Bearer <key>`, gRPC metadata or HTTP header) is hashed and compared with
 * every configured hash in constant time (no early exit), so neither the key nor which entry it
 * matched shows in the timing.
 *
 * Missing, malformed or unknown key -> UNAUTHENTICATED (401). What a key restricted by `instances`
 * / `models` may reach is decided on the resolved target (access.ts).
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
  /** The key's default priority lane (`priority`; unset: interactive). */
  readonly priority?: 'interactive' | 'bulk';
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
      ...(k.priority !== undefined ? { priority: k.priority } : {}),
    }));
  }

  /** The grant of the key named `name`; undefined: no such key. */
  grantNamed(name: string): ApiKeyGrant | undefined {
    return this.grants.find((g) => g.name === name);
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

/** Throws PERMISSION_DENIED unless `grant` may use the admin API. */
export function authorizeAdmin(grant: ApiKeyGrant): void {
  if (!grant.admin) throw new TeiplexError('PERMISSION_DENIED', `API key '${grant.name}' may not use the admin API (it lacks admin = true)`);
}
