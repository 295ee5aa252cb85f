/**
 * Quotas per API key (`[[auth.api_keys]]` `tokens_per_minute`, `requests_per_minute`, and
 * per-model `limits`): a token bucket per key and kind, held in memory by this manager process
 * (several managers each keep their own).
 *
 * The rule:
 * - A bucket holds at most its per-minute limit and refills continuously at limit / 60 s (a key
 *   idle for a minute has its whole limit again; there is no fixed window edge to burst across).
 * - A call is admitted while the key's tokens bucket holds more than 0 and its requests bucket at
 *   least 1. Admission takes 1 from the requests bucket; the tokens the model actually embedded
 *   (usage's prompt tokens) are taken after the answer, so one call may overdraw the tokens
 *   bucket below 0, and the next waits until the refill brings it above 0 again.
 * - A model named in `limits` has buckets of its own for this key (the entry's values, the key's
 *   values for a field it leaves out); calls to other models share the key's buckets.
 * - A refused call takes nothing. Its Retry-After is the time until it would be admitted.
 * - A reload (`configure`) keeps what each bucket has spent: a new limit L' on a bucket at level
 *   x of limit L gives x + (L' - L); a removed limit removes the bucket.
 *
 * Pure: no I/O; time comes from the injected Clock.
 */
import { type Clock, systemClock } from '../common/clock.js';
import { TeiplexError } from '../common/errors.js';
import type { ApiKeyConfig } from '../config/config.js';

export type QuotaKind = 'tokens' | 'requests';

/** Per-minute limits (undefined: unlimited). */
export interface QuotaLimits {
  readonly tokens_per_minute?: number;
  readonly requests_per_minute?: number;
}

/** One bucket's figures for the `x-ratelimit-*` headers. */
export interface BucketState {
  readonly limit: number;
  /** Whole units left now (0 when overdrawn). */
  readonly remaining: number;
  /** Milliseconds until the bucket is full again. */
  readonly resetMs: number;
}

export interface QuotaState {
  readonly tokens?: BucketState;
  readonly requests?: BucketState;
}

const MINUTE_MS = 60_000;

class Bucket {
  constructor(
    public limit: number,
    public level: number,
    public at: number,
  ) {}
  refill(now: number): void {
    if (now > this.at) this.level = Math.min(this.limit, this.level + ((now - this.at) * this.limit) / MINUTE_MS);
    this.at = Math.max(this.at, now);
  }
  /** Milliseconds until the level reaches `level`. */
  until(level: number): number {
    return this.level >= level ? 0 : ((level - this.level) * MINUTE_MS) / this.limit;
  }
  state(): BucketState {
    return { limit: this.limit, remaining: Math.max(0, Math.floor(this.level)), resetMs: Math.ceil(this.until(this.limit)) };
  }
}

/** The buckets of one scope: a key, or a key's calls to one model. */
interface Scope {
  tokens?: Bucket;
  requests?: Bucket;
}

interface KeyEntry {
  limits: QuotaLimits;
  /** Per-model limits by model name (already merged with the key's). */
  models: Map<string, QuotaLimits>;
  /** Scopes by '' (the key) or a model name. */
  scopes: Map<string, Scope>;
}

/** An admitted call: charge its tokens once answered; read its headers. */
export interface QuotaTicket {
  readonly key: string;
  /** The `limits` model the call was counted under ('' for the key's own buckets). */
  readonly model: string;
  /** Take `tokens` (the tokens the model embedded) from the tokens bucket; idempotent per ticket. */
  charge(tokens: number): void;
  /** The buckets now. */
  state(): QuotaState;
}

/** Is a key limited at all (does it get headers)? */
export function hasQuota(k: Pick<ApiKeyConfig, 'tokens_per_minute' | 'requests_per_minute' | 'limits'>): boolean {
  return k.tokens_per_minute !== undefined || k.requests_per_minute !== undefined || (k.limits?.length ?? 0) > 0;
}

export interface QuotaEvents {
  refused?(key: string, kind: QuotaKind): void;
  charged?(key: string, tokens: number): void;
}

export class Quotas {
  private keys = new Map<string, KeyEntry>();

  constructor(
    keys: readonly ApiKeyConfig[] = [],
    private readonly clock: Clock = systemClock,
    public events: QuotaEvents = {},
  ) {
    this.configure(keys);
  }

  /** Does the key named `key` have any limit? */
  limited(key: string): boolean {
    return this.keys.has(key);
  }

  /** Apply the keys' limits (at startup and on each config reload); spent amounts carry over. */
  configure(keys: readonly ApiKeyConfig[]): void {
    const now = this.clock.now();
    const next = new Map<string, KeyEntry>();
    for (const k of keys) {
      if (!hasQuota(k)) continue;
      const limits: QuotaLimits = { tokens_per_minute: k.tokens_per_minute, requests_per_minute: k.requests_per_minute };
      const models = new Map<string, QuotaLimits>();
      for (const l of k.limits ?? []) {
        models.set(l.model, { tokens_per_minute: l.tokens_per_minute ?? k.tokens_per_minute, requests_per_minute: l.requests_per_minute ?? k.requests_per_minute });
      }
      const old = this.keys.get(k.name);
      const scopes = new Map<string, Scope>();
      const carry = (scope: string, l: QuotaLimits): void => {
        const before = old?.scopes.get(scope);
        scopes.set(scope, { tokens: resized(before?.tokens, l.tokens_per_minute, now), requests: resized(before?.requests, l.requests_per_minute, now) });
      };
      carry('', limits);
      for (const [m, l] of models) carry(m, l);
      next.set(k.name, { limits, models, scopes });
    }
    this.keys = next;
  }

  /** The buckets of key `key` (for `models`) now, admitting nothing: the headers of an answer given before admission (a malformed request). */
  peek(key: string, models: readonly string[] = []): QuotaState | undefined {
    const entry = this.keys.get(key);
    if (entry === undefined) return undefined;
    const scope = entry.scopes.get(models.find((m) => entry.models.has(m)) ?? '') ?? {};
    const now = this.clock.now();
    scope.tokens?.refill(now);
    scope.requests?.refill(now);
    return { ...(scope.tokens ? { tokens: scope.tokens.state() } : {}), ...(scope.requests ? { requests: scope.requests.state() } : {}) };
  }

  /**
   * Admit a call of key `key` to a model known by any of `models` (the name the call gave, the
   * model_id it resolves to, ...): undefined when the key has no limit; throws RATE_LIMIT_EXCEEDED
   * (with retryAfterSecs, and the state for the headers in `quotaStateOf(err)`) when over.
   * `countRequest` false: the call is not a request of the key's (a batch job's chunk: its tokens
   * count, its calls do not), so only the tokens bucket decides.
   */
  admit(key: string, models: readonly string[] = [], countRequest = true): QuotaTicket | undefined {
    const entry = this.keys.get(key);
    if (entry === undefined) return undefined;
    const model = models.find((m) => entry.models.has(m)) ?? '';
    const scope = entry.scopes.get(model) ?? {};
    const now = this.clock.now();
    scope.tokens?.refill(now);
    scope.requests?.refill(now);
    const state = (): QuotaState => {
      const t = this.clock.now();
      scope.tokens?.refill(t);
      scope.requests?.refill(t);
      return { ...(scope.tokens ? { tokens: scope.tokens.state() } : {}), ...(scope.requests ? { requests: scope.requests.state() } : {}) };
    };
    const waits: Array<[QuotaKind, number]> = [];
    if (countRequest && scope.requests !== undefined && scope.requests.level < 1) waits.push(['requests', scope.requests.until(1)]);
    // Above 0: a refill of the smallest step past 0 (1 ms of refill).
    if (scope.tokens !== undefined && scope.tokens.level <= 0) waits.push(['tokens', scope.tokens.until(0) + 1]);
    if (waits.length > 0) {
      const [kind, ms] = waits.reduce((a, b) => (b[1] > a[1] ? b : a));
      this.events.refused?.(key, kind);
      const per = kind === 'tokens' ? 'tokens_per_minute' : 'requests_per_minute';
      const limit = kind === 'tokens' ? scope.tokens?.limit : scope.requests?.limit;
      const where = model === '' ? '' : ` for model '${model}'`;
      const err = new TeiplexError('RATE_LIMIT_EXCEEDED', `API key '${key}' is over its ${per} (${limit})${where}: retry in ${formatReset(ms)}`, {
        retryAfterSecs: Math.max(1, Math.ceil(ms / 1000)),
      });
      refusedStates.set(err, state());
      throw err;
    }
    if (countRequest && scope.requests !== undefined) scope.requests.level -= 1;
    let charged = false;
    return {
      key,
      model,
      charge: (tokens: number) => {
        if (charged || !(tokens > 0)) return;
        charged = true;
        if (scope.tokens !== undefined) {
          scope.tokens.refill(this.clock.now());
          scope.tokens.level -= tokens;
        }
        this.events.charged?.(key, tokens);
      },
      state,
    };
  }
}

function resized(old: Bucket | undefined, limit: number | undefined, now: number): Bucket | undefined {
  if (limit === undefined) return undefined;
  if (old === undefined) return new Bucket(limit, limit, now);
  old.refill(now);
  return new Bucket(limit, Math.min(limit, old.level + (limit - old.limit)), now);
}

const refusedStates = new WeakMap<object, QuotaState>();

/** The quota state a RATE_LIMIT_EXCEEDED error was thrown with (for its headers). */
export function quotaStateOf(err: unknown): QuotaState | undefined {
  return typeof err === 'object' && err !== null ? refusedStates.get(err) : undefined;
}

/** OpenAI's duration format: `6m0s`, `1s`, `120ms`, `1h2m3s`. */
export function formatReset(ms: number): string {
  const total = Math.max(0, Math.ceil(ms));
  if (total < 1000) return `${total}ms`;
  const secs = Math.ceil(total / 1000);
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

/** The `x-ratelimit-*` headers (gRPC: metadata) of a state: limit, remaining and reset per kind. */
export function quotaHeaders(state: QuotaState): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const kind of ['requests', 'tokens'] as const) {
    const b = state[kind];
    if (b === undefined) continue;
    out.push([`x-ratelimit-limit-${kind}`, String(b.limit)], [`x-ratelimit-remaining-${kind}`, String(b.remaining)], [`x-ratelimit-reset-${kind}`, formatReset(b.resetMs)]);
  }
  return out;
}
