/**
 * What the manager learns about one child by talking to it, once per child (a ChildClient lives
 * as long as one spawn of one child, routing/channels.ts), shared by the multiplexer's Arrow RPCs
 * and the data plane:
 *
 * - its tei.v1 Info (max_client_batch_size, max_concurrent_requests, model type, ...): fetched by
 *   the first caller that needs it, with that caller's deadline but not its cancellation (the
 *   answer is shared); concurrent callers wait for the same fetch, each until its own deadline or
 *   cancellation; a failed fetch is not kept, the next caller asks again;
 * - whether it serves `teiplex.v1.Batch` (a `teiplex router` does, a real TEI does not): unknown
 *   until a Batch call is answered; UNIMPLEMENTED means no, any other answer from the Batch service
 *   means yes;
 * - its input window: max_concurrent_requests as a Budget (input-budget.ts) in two lanes, shared
 *   by every call to it, so the manager never has more inputs in flight to it than it admits and
 *   interactive calls go before bulk ones;
 * - its embedding dimensions (dense, and per token), from any answer or from a probe of one short
 *   text (ChildClient), for requests that do not otherwise call it (Arrow's noop and empty input).
 */
import type { PbInfoResponse } from '../tei/proto.js';
import { CallScope } from './call-scope.js';
import type { ChildChannel } from './child-channel.js';
import { decodeAnswer, TEI } from './codec.js';
import { Budget, type LaneObserver } from './input-budget.js';
import { DEFAULTS } from '../config/config.js';
import { TeiplexError } from '../common/errors.js';

/** TEI's default max_concurrent_requests, for a child whose Info does not say. */
export const DEFAULT_MAX_CONCURRENT = 512;

export type BatchSupport = 'unknown' | 'yes' | 'no';

/** How a child's input window serves its lanes (input-budget.ts, docs/tenancy.md). */
export interface ChildLanes {
  /** priority_aging_ms: a bulk waiter older than this goes as if interactive. */
  agingMs: number;
  /** bulk_chunk_rows: most inputs in one bulk sub-batch; the bulk lane holds at most two. */
  bulkChunkRows: number;
  observer?: LaneObserver;
}

/** The config's defaults (priority_aging_ms, bulk_chunk_rows: measured with bench/lanes.ts, docs/tenancy.md). */
export const DEFAULT_LANES: ChildLanes = { agingMs: DEFAULTS.priority_aging_ms, bulkChunkRows: DEFAULTS.bulk_chunk_rows };

export class ChildInfo {
  batch: BatchSupport;
  denseDim: number | undefined;
  tokenDim: number | undefined;
  private fetching: Promise<PbInfoResponse> | undefined;
  private budget: Budget | undefined;

  constructor(
    private readonly channel: ChildChannel,
    private readonly who: string,
    batch: BatchSupport = 'unknown',
    readonly lanes: ChildLanes = DEFAULT_LANES,
  ) {
    this.batch = batch;
  }

  /** The child's Info (see above). */
  async get(scope: CallScope): Promise<PbInfoResponse> {
    for (;;) {
      let p = this.fetching;
      if (p === undefined) {
        const own = new CallScope(scope.deadlineMs, () => new TeiplexError('REQUEST_TIMEOUT', `${this.who} did not answer Info in time`));
        p = this.fetching = own.unary(this.channel, TEI.Info.path, TEI.Info.encode({}), this.who).then(
          (bytes) => {
            own.finish();
            return decodeAnswer(TEI.Info, bytes, this.who);
          },
          (err: unknown) => {
            own.finish();
            throw err;
          },
        );
        p.catch(() => {
          if (this.fetching === p) this.fetching = undefined;
        });
      }
      try {
        return await scope.wait(p);
      } catch (err) {
        scope.check();
        // Another caller's fetch that ran out of that caller's (shorter) time: ask again.
        if (err instanceof TeiplexError && err.code === 'REQUEST_TIMEOUT' && Date.now() < scope.deadlineMs) continue;
        throw err;
      }
    }
  }

  /** Inputs the child admits at once: its max_concurrent_requests. */
  async maxConcurrent(scope: CallScope): Promise<number> {
    const i = await this.get(scope);
    return i.max_concurrent_requests > 0 ? i.max_concurrent_requests : DEFAULT_MAX_CONCURRENT;
  }

  /** The input window, once sized (after the child's Info). */
  get window(): Budget | undefined {
    return this.budget;
  }

  /**
   * The input window if the child's Info is known; else undefined, and the Info is asked for in
   * the background (once at a time) so later calls find it. For callers that must not wait for
   * Info on their fast path (the multiplexer's forwarded unary calls).
   */
  windowNow(timeoutMs: number): Budget | undefined {
    if (this.budget === undefined && this.fetching === undefined) {
      const scope = new CallScope(Date.now() + timeoutMs);
      this.inputBudget(scope).then(
        () => scope.finish(),
        () => scope.finish(),
      );
    }
    return this.budget;
  }

  /**
   * The child's input window (max_concurrent_requests), shared by every call to it, in two lanes:
   * the bulk lane holds at most two bulk sub-batches (2 x bulk_chunk_rows inputs).
   */
  async inputBudget(scope: CallScope): Promise<Budget> {
    if (this.budget !== undefined) return this.budget;
    const limit = await this.maxConcurrent(scope);
    this.budget ??= new Budget(limit, { agingMs: this.lanes.agingMs, bulkLimit: 2 * this.lanes.bulkChunkRows, ...(this.lanes.observer !== undefined ? { observer: this.lanes.observer } : {}) });
    return this.budget;
  }
}
