/**
 * Failover between replicas: a call whose child went away before answering is made once more on
 * another serving replica of the same model, so one child dying is not its callers' error when
 * another could answer. Every front end (the multiplexer's unary RPCs and Arrow RPCs, the HTTP
 * data plane) decides here, in one way:
 *
 * - What may be retried (`retryable`): a child call that ended UNAVAILABLE before the child sent
 *   anything (no response headers: a dropped or reset connection, a refused stream, no
 *   connection at all; child-channel.ts marks such a status `unanswered`), or an instance that
 *   was no longer serving when the call was about to be sent (`notServing`). Never a status the
 *   child sent itself, never after it sent headers or a message: the call reached its service.
 *   The Arrow RPCs, which keep the rows already answered and send only the others again, also
 *   retry a child that went away after answering some rows (`retryableRows`).
 * - Which calls may move (`mayMove`): those naming a model (`model_id`, a catalog model, an
 *   HTTP model id or alias); a call naming an instance stays there unless the caller sends
 *   `x-teiplex-failover: same-model` (then another serving instance with the same model_id may
 *   answer); `x-teiplex-failover: off` turns retries off for the call.
 * - How many (the budget, Envoy's retry budgets): retries in flight at most
 *   max(min_retry_concurrency, budget_percent % of the calls in flight across the front ends).
 *   A retry the budget refuses is not made: the call's own error goes back.
 * - Where: the resolver's balancing (target.ts `pick`), excluding the instances already tried.
 *
 * Each decision is counted: `teiplex_failover_retries_total{model_id,outcome}` with outcome
 * `retried`, `budget_exhausted` or `no_other_replica` (one counter, registered once in the
 * manager's registry by whichever front end's metrics come first).
 */
import * as grpc from '@grpc/grpc-js';
import { Counter, type Registry } from 'prom-client';
import { childStatusOf } from '../child/child-status.js';
import type { ChildStatus } from '../child/child-channel.js';
import { TeiplexError } from '../common/errors.js';
import type { FailoverConfig } from '../config/config.js';
import type { Instance } from '../supervisor/instance.js';
import type { Inflight } from './inflight.js';
import type { TargetResolver } from './target.js';

/** Request header (HTTP) and metadata key (gRPC): the caller's failover choice for the call. */
export const FAILOVER_HEADER = 'x-teiplex-failover';
/** Answer header / trailer naming the instance a retried call first went to (gRPC; HTTP adds `x-`). */
export const RETRIED_FROM_HEADER = 'teiplex-retried-from';

/** `auto`: the default (model targets move, instance targets stay); the other two as the header says. */
export type FailoverMode = 'auto' | 'same-model' | 'off';

const MODES: readonly string[] = ['same-model', 'off'];

/** The header's value as a mode; absent -> `auto`; anything else -> BAD_REQUEST naming the allowed values. */
export function parseFailoverMode(value: string | readonly string[] | Buffer | undefined): FailoverMode {
  if (value === undefined) return 'auto';
  const v = (Array.isArray(value) ? value[0] : value)?.toString().trim().toLowerCase();
  if (v !== undefined && MODES.includes(v)) return v as FailoverMode;
  throw new TeiplexError('BAD_REQUEST', `${FAILOVER_HEADER}: '${String(Array.isArray(value) ? value.join(',') : value)}' is not a failover mode; allowed: 'same-model', 'off' (or leave it out)`);
}

/** What a call named: a model (model_id, a catalog model, an alias) or one instance. */
export type TargetKind = 'model' | 'instance';

/** May a call naming `kind` be retried elsewhere under `mode`? */
export function mayMove(kind: TargetKind, mode: FailoverMode): boolean {
  if (mode === 'off') return false;
  return kind === 'model' || mode === 'same-model';
}

/** Errors of instances found not serving when a call was about to be sent. */
const notServingErrors = new WeakSet<TeiplexError>();

/** The error of a call whose instance stopped serving before the call was sent: retryable. */
export function notServing(instance: Instance): TeiplexError {
  const err = new TeiplexError('INSTANCE_UNAVAILABLE', `instance '${instance.name}' is ${instance.status}`, { retryAfterSecs: 1 });
  notServingErrors.add(err);
  return err;
}

/** A child call's status (child-channel.ts), or a call's error (child-status.ts): may it be made again elsewhere? */
export function retryable(failure: ChildStatus | unknown): boolean {
  if (failure instanceof TeiplexError) return notServingErrors.has(failure) || childStatusOf(failure)?.unanswered === true;
  return typeof failure === 'object' && failure !== null && (failure as ChildStatus).unanswered === true;
}

/**
 * For sub-batches whose answered rows are kept (the Arrow RPCs' fan-out): the child went away
 * (UNAVAILABLE from the transport, not a status the child sent), before or after answering some
 * of the rows; only the rows not answered are sent again. Also everything `retryable`.
 */
export function retryableRows(failure: unknown): boolean {
  if (retryable(failure)) return true;
  const s = childStatusOf(failure);
  return s !== undefined && s.code === grpc.status.UNAVAILABLE && s.trailers === undefined;
}

/** The budget's bound on retries in flight, with `inflight` calls in flight. */
export function retryLimit(c: Pick<FailoverConfig, 'budget_percent' | 'min_retry_concurrency'>, inflight: number): number {
  return Math.max(c.min_retry_concurrency, Math.floor((c.budget_percent * inflight) / 100));
}

export type RetryOutcome = 'retried' | 'budget_exhausted' | 'no_other_replica';

/** A retry granted: the instance to call, and the budget's slot to give back once it is over. */
export interface Retry {
  readonly instance: Instance;
  /** Give the budget's slot back (once; later calls do nothing). */
  done(): void;
}

export class Failover {
  private retriesInFlight = 0;
  private readonly counts = new Map<string, { labels: { model_id: string; outcome: RetryOutcome }; n: number }>();

  constructor(
    readonly settings: FailoverConfig,
    private readonly resolver: TargetResolver,
    private readonly inflight: Inflight,
  ) {}

  /** May a call naming `kind` be retried elsewhere under `mode` (and failover enabled)? */
  allows(kind: TargetKind, mode: FailoverMode): boolean {
    return this.settings.enabled && mayMove(kind, mode);
  }

  /** Retries in flight now. */
  get active(): number {
    return this.retriesInFlight;
  }

  /**
   * After a retryable failure of a call on `tried` (the instances it went to, the failed one
   * last): another serving instance among `candidates` (balanced as target.ts picks, `key` its
   * group) and a slot of the budget, or undefined when there is no other replica or the budget
   * refuses (counted either way).
   */
  reroute(key: string, candidates: readonly Instance[], tried: readonly Instance[]): Retry | undefined {
    const failed = tried[tried.length - 1];
    const modelId = failed.spec.model_id;
    const same = candidates.filter((i) => i.spec.model_id === modelId);
    const other = this.resolver.pick(key, same, new Set(tried.map((i) => i.name)));
    if (other === undefined) {
      this.count(modelId, 'no_other_replica');
      return undefined;
    }
    if (this.retriesInFlight >= retryLimit(this.settings, this.inflight.total())) {
      this.count(modelId, 'budget_exhausted');
      return undefined;
    }
    this.count(modelId, 'retried');
    this.retriesInFlight++;
    let released = false;
    return {
      instance: other,
      done: () => {
        if (released) return;
        released = true;
        this.retriesInFlight--;
      },
    };
  }

  private count(model_id: string, outcome: RetryOutcome): void {
    const key = `${model_id}\n${outcome}`;
    const c = this.counts.get(key);
    if (c !== undefined) c.n++;
    else this.counts.set(key, { labels: { model_id, outcome }, n: 1 });
  }

  /** Decisions so far (tests, the metric). */
  outcomes(): Array<{ model_id: string; outcome: RetryOutcome; n: number }> {
    return [...this.counts.values()].map((c) => ({ ...c.labels, n: c.n }));
  }

  /** Register `teiplex_failover_retries_total` in `registry`, unless a front end already has. */
  register(registry: Registry): void {
    const name = 'teiplex_failover_retries_total';
    if (registry.getSingleMetric(name) !== undefined) return;
    const self = this;
    new Counter({
      name,
      help: 'Failover decisions after a child went away before answering, by model_id and outcome (retried, budget_exhausted, no_other_replica)',
      labelNames: ['model_id', 'outcome'],
      registers: [registry],
      collect() {
        this.reset();
        for (const c of self.outcomes()) this.inc({ model_id: c.model_id, outcome: c.outcome }, c.n);
      },
    });
  }
}
