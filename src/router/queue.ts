/**
 * The batching queue, TEI's core/queue.rs and nothing else: admission by permits, batch formation
 * under the token and request limits, and the loop that keeps the model busy.
 *
 * - Admission: a request takes one permit per input; more than `maxConcurrentRequests` inputs in
 *   flight is MODEL_OVERLOADED ("Model is overloaded"). A permit also tells the queue how many of
 *   its inputs are still being tokenized, so an idle model can wait for inputs it knows are coming
 *   (bounded by `maxGatherMs`) instead of running a batch of one and leaving the rest for later.
 * - Batches: padded tokens (longest x count) <= `maxBatchTokens`, count <= `maxBatchRequests`.
 *   The queue takes everything waiting, sorts it by length and splits it where the padding saved
 *   is worth a batch's fixed cost (a small dynamic program), then runs the part that holds the
 *   oldest entry, so no entry starves. Every entry gets its own result.
 * - Pipeline: one batch runs while the next is prepared (tensors built). A prepared batch is
 *   re-planned when inputs arrive before it starts, so late arrivals still group by length.
 * - Every entry that enters is answered exactly once, with its result or an error.
 */
import { asTeiplexError, TeiplexError } from '../common/errors.js';

export interface QueueLimits {
  maxConcurrentRequests: number;
  maxBatchTokens: number;
  maxBatchRequests?: number;
  /** A batch's fixed cost in padded-token equivalents: how much padding a split must save to be worth it. Default 32. */
  batchOverheadTokens?: number;
  /** Attention's share: one padded token costs 1 + T / attentionScale (T = the batch's padded length). Default 1152. */
  attentionScale?: number;
  /** Longest an idle model waits for inputs still being tokenized, in ms. Default 2. */
  maxGatherMs?: number;
}

/** Anything the queue batches: it only needs the token count. */
export interface QueueItem {
  length: number;
}

/** What runs batches: the engine's bridge to the ONNX session. */
export interface BatchExecutor<I extends QueueItem, P, R> {
  /** Build a batch's inputs (synchronous and cheap: typed arrays). */
  prepare(items: readonly I[]): P;
  /**
   * Run a prepared batch; resolve with one result per item, in order. Call `free()` as soon as the
   * model can take the next batch (e.g. before post-processing); settling counts as free.
   */
  run(prepared: P, free: () => void): Promise<R[]>;
}

/** One entry's answer. */
export interface Answer<R> {
  result: R;
  queueTimeNs: bigint;
  inferenceTimeNs: bigint;
  batchSize: number;
}

export interface QueueStats {
  batches: number;
  items: number;
  /** Sum over batches of count x longest: the tokens the model computed. */
  paddedTokens: number;
  /** Sum of the entries' own lengths. */
  realTokens: number;
}

interface Entry<I, R> {
  item: I;
  seq: number;
  enqueuedAt: bigint;
  resolve: (a: Answer<R>) => void;
  reject: (e: unknown) => void;
}

interface Planned<I, P, R> {
  entries: Entry<I, R>[];
  prepared: P;
}

/** Admission refused: more inputs in flight than max_concurrent_requests. Says how many it asked for. */
export class OverloadedError extends TeiplexError {
  constructor(readonly requested: number) {
    super('MODEL_OVERLOADED', 'Model is overloaded');
  }
}

/** Admission for one request: `size` inputs, released once when the request is done. */
export class Permit {
  /** Inputs admitted but not yet enqueued (still being tokenized). */
  pending: number;
  private released = false;
  constructor(
    readonly size: number,
    private readonly onRelease: (p: Permit) => void,
  ) {
    this.pending = size;
  }
  get isReleased(): boolean {
    return this.released;
  }
  release(): void {
    if (this.released) return;
    this.released = true;
    this.onRelease(this);
  }
}

/**
 * Cut `lengths` (ascending) into consecutive batches minimizing
 * sum(overhead + count * longest * (1 + longest / attentionScale)) under the limits.
 * Returns the cut points: batch k is [cuts[k], cuts[k+1]).
 */
export function planCuts(
  lengths: readonly number[],
  limits: { maxBatchTokens: number; maxBatchRequests?: number; batchOverheadTokens: number; attentionScale: number },
): number[] {
  const n = lengths.length;
  const best = new Float64Array(n + 1);
  const from = new Int32Array(n + 1);
  const maxReq = limits.maxBatchRequests ?? Infinity;
  for (let i = 1; i <= n; i++) {
    const longest = lengths[i - 1];
    const perRow = longest * (1 + longest / limits.attentionScale);
    best[i] = Infinity;
    for (let j = i - 1; j >= 0; j--) {
      const count = i - j;
      if (count > 1 && (count > maxReq || count * longest > limits.maxBatchTokens)) break;
      const cost = best[j] + limits.batchOverheadTokens + count * perRow;
      if (cost < best[i]) {
        best[i] = cost;
        from[i] = j;
      }
    }
  }
  const cuts: number[] = [n];
  for (let i = n; i > 0; i = from[i]) cuts.push(from[i]);
  return cuts.reverse();
}

export class BatchQueue<I extends QueueItem, P, R> {
  readonly stats: QueueStats = { batches: 0, items: 0, paddedTokens: 0, realTokens: 0 };
  private readonly limits: Required<Omit<QueueLimits, 'maxBatchRequests'>> & { maxBatchRequests?: number };
  private waiting: Entry<I, R>[] = [];
  private readonly capacityWaiters: Array<{ size: number; resolve: () => void; reject: (e: unknown) => void }> = [];
  private next: Planned<I, P, R> | null = null;
  /** Entries arrived since `next` was planned. */
  private dirty = false;
  private busy = false;
  private tickScheduled = false;
  private gatherTimer: NodeJS.Timeout | null = null;
  private seq = 0;
  private permitsInUse = 0;
  private pendingInputs = 0;
  private runningBatches = 0;
  private closed = false;
  private drainWaiters: Array<() => void> = [];

  constructor(
    limits: QueueLimits,
    private readonly executor: BatchExecutor<I, P, R>,
  ) {
    if (!(limits.maxConcurrentRequests > 0)) throw new Error('maxConcurrentRequests must be positive');
    if (!(limits.maxBatchTokens > 0)) throw new Error('maxBatchTokens must be positive');
    if (limits.maxBatchRequests !== undefined && !(limits.maxBatchRequests > 0)) throw new Error('maxBatchRequests must be positive');
    this.limits = {
      maxConcurrentRequests: limits.maxConcurrentRequests,
      maxBatchTokens: limits.maxBatchTokens,
      maxBatchRequests: limits.maxBatchRequests,
      batchOverheadTokens: limits.batchOverheadTokens ?? 32,
      attentionScale: limits.attentionScale ?? 1152,
      maxGatherMs: limits.maxGatherMs ?? 2,
    };
  }

  /** Set the fixed per-batch cost (e.g. measured at warm-up), in padded-token equivalents. */
  setBatchOverheadTokens(tokens: number): void {
    if (Number.isFinite(tokens) && tokens >= 0) this.limits.batchOverheadTokens = tokens;
  }

  get batchOverheadTokens(): number {
    return this.limits.batchOverheadTokens;
  }

  /** Inputs admitted and not yet answered. */
  get inFlight(): number {
    return this.permitsInUse;
  }

  /** Entries waiting for a batch. */
  get waitingCount(): number {
    return this.waiting.length + (this.next?.entries.length ?? 0);
  }

  /** Admit a request of `size` inputs, or throw MODEL_OVERLOADED (UNHEALTHY once closed). */
  admit(size: number): Permit {
    if (this.closed) throw new TeiplexError('UNHEALTHY', 'Model is shutting down');
    if (this.permitsInUse + size > this.limits.maxConcurrentRequests) throw new OverloadedError(size);
    this.permitsInUse += size;
    this.pendingInputs += size;
    return new Permit(size, (p) => this.onRelease(p));
  }

  /**
   * Resolves once `size` permits are free (waiters are served in arrival order), for callers that
   * wait for admission instead of failing (TEI's gRPC streams). Admission itself is still `admit`,
   * which may lose a race and throw again: wait again then.
   */
  whenCapacity(size: number): Promise<void> {
    if (this.closed) return Promise.reject(new TeiplexError('UNHEALTHY', 'Model is shutting down'));
    if (size > this.limits.maxConcurrentRequests) return Promise.reject(new OverloadedError(size));
    if (this.capacityWaiters.length === 0 && this.permitsInUse + size <= this.limits.maxConcurrentRequests) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.capacityWaiters.push({ size, resolve, reject }));
  }

  private wakeCapacityWaiters(): void {
    let free = this.limits.maxConcurrentRequests - this.permitsInUse;
    while (this.capacityWaiters.length > 0 && this.capacityWaiters[0].size <= free) {
      const w = this.capacityWaiters.shift()!;
      free -= w.size;
      w.resolve();
    }
  }

  private onRelease(p: Permit): void {
    this.permitsInUse -= p.size;
    this.wakeCapacityWaiters();
    if (p.pending > 0) {
      this.pendingInputs -= p.pending;
      p.pending = 0;
      // Something may have been held back for these inputs: look again.
      if (this.waiting.length > 0) this.schedule();
    }
    if (this.permitsInUse === 0 && this.runningBatches === 0) this.notifyDrain();
  }

  /** Queue a request's inputs (all of them at once, so they are planned together); one answer per item. */
  enqueue(permit: Permit, items: readonly I[]): Promise<Answer<R>>[] {
    if (permit.isReleased) throw new Error('enqueue on a released permit');
    const take = Math.min(items.length, permit.pending);
    permit.pending -= take;
    this.pendingInputs -= take;
    const now = process.hrtime.bigint();
    const promises = items.map(
      (item) =>
        new Promise<Answer<R>>((resolve, reject) => {
          this.waiting.push({ item, seq: this.seq++, enqueuedAt: now, resolve, reject });
        }),
    );
    if (items.length > 0) {
      this.dirty = true;
      this.schedule();
    }
    return promises;
  }

  /** Stop admitting and wait until every admitted request has been answered. */
  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.capacityWaiters.splice(0)) w.reject(new TeiplexError('UNHEALTHY', 'Model is shutting down'));
    if (this.permitsInUse === 0 && this.runningBatches === 0) return;
    await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
  }

  private notifyDrain(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }

  private schedule(): void {
    if (this.tickScheduled) return;
    this.tickScheduled = true;
    // One turn of the event loop lets inputs that finished tokenizing together arrive together.
    setImmediate(() => {
      this.tickScheduled = false;
      this.tick();
    });
  }

  private tick(): void {
    if (!this.busy) {
      this.dispatch(true);
      return;
    }
    // The model is busy: (re)plan the next batch now so it is ready when the model frees.
    if (this.next === null || this.dirty) this.planNext();
  }

  /** Put the planned batch back and plan again from everything waiting. */
  private planNext(): void {
    if (this.next !== null) {
      for (const e of this.next.entries) this.waiting.push(e);
      this.next = null;
    }
    this.dirty = false;
    if (this.waiting.length === 0) return;
    const entries = this.takeGroup();
    try {
      this.next = { entries, prepared: this.executor.prepare(entries.map((e) => e.item)) };
    } catch (err) {
      this.fail(entries, err);
    }
  }

  /** Remove and return the batch that holds the oldest waiting entry, from a length-sorted split of the queue. */
  private takeGroup(): Entry<I, R>[] {
    const sorted = this.waiting.slice().sort((a, b) => a.item.length - b.item.length || a.seq - b.seq);
    const cuts = planCuts(
      sorted.map((e) => e.item.length),
      this.limits,
    );
    let oldest = 0;
    for (let i = 1; i < sorted.length; i++) if (sorted[i].seq < sorted[oldest].seq) oldest = i;
    let k = 0;
    while (cuts[k + 1] <= oldest) k++;
    const group = sorted.slice(cuts[k], cuts[k + 1]);
    const taken = new Set(group);
    this.waiting = this.waiting.filter((e) => !taken.has(e));
    return group;
  }

  /**
   * Start the next batch if the model is free. `mayGather`: the model has been idle (an arrival woke
   * it), so it may wait briefly for inputs still being tokenized; when a batch has just finished and
   * work is waiting, it never waits.
   */
  private dispatch(mayGather: boolean): void {
    if (this.busy) return;
    if (this.gatherTimer !== null) {
      clearTimeout(this.gatherTimer);
      this.gatherTimer = null;
    }
    if (this.next === null || this.dirty) {
      if (this.next === null && this.waiting.length === 0) return;
      if (mayGather && this.next === null && this.shouldGather()) return;
      this.planNext();
      if (this.next === null) {
        if (this.waiting.length > 0) this.schedule();
        return;
      }
    }
    const planned = this.next!;
    this.next = null;
    this.start(planned);
    // Prepare the following batch while this one runs.
    if (this.waiting.length > 0) this.schedule();
  }

  /** Hold an idle model back while admitted inputs are still being tokenized, up to maxGatherMs after the oldest arrival. */
  private shouldGather(): boolean {
    if (this.pendingInputs <= 0 || this.limits.maxGatherMs <= 0) return false;
    let oldest = this.waiting[0].enqueuedAt;
    for (const e of this.waiting) if (e.enqueuedAt < oldest) oldest = e.enqueuedAt;
    const left = this.limits.maxGatherMs - Number(process.hrtime.bigint() - oldest) / 1e6;
    if (left <= 0) return false;
    this.gatherTimer = setTimeout(() => {
      this.gatherTimer = null;
      this.dispatch(false);
    }, Math.ceil(left));
    return true;
  }

  private start(planned: Planned<I, P, R>): void {
    const { entries, prepared } = planned;
    this.busy = true;
    this.runningBatches++;
    let freed = false;
    const free = (): void => {
      if (freed) return;
      freed = true;
      this.busy = false;
      this.dispatch(false);
    };
    const startedAt = process.hrtime.bigint();
    let longest = 0;
    let real = 0;
    for (const e of entries) {
      if (e.item.length > longest) longest = e.item.length;
      real += e.item.length;
    }
    this.stats.batches++;
    this.stats.items += entries.length;
    this.stats.paddedTokens += longest * entries.length;
    this.stats.realTokens += real;

    let run: Promise<R[]>;
    try {
      run = this.executor.run(prepared, free);
    } catch (err) {
      run = Promise.reject(err);
    }
    run.then(
      (results) => {
        const inferenceTimeNs = process.hrtime.bigint() - startedAt;
        if (!Array.isArray(results) || results.length !== entries.length) {
          this.fail(entries, new TeiplexError('BACKEND', `backend returned ${Array.isArray(results) ? results.length : 'no'} results for a batch of ${entries.length}`));
        } else {
          for (let i = 0; i < entries.length; i++) {
            entries[i].resolve({ result: results[i], queueTimeNs: startedAt - entries[i].enqueuedAt, inferenceTimeNs, batchSize: entries.length });
          }
        }
      },
      (err) => this.fail(entries, err),
    ).finally(() => {
      this.runningBatches--;
      free();
      if (this.permitsInUse === 0 && this.runningBatches === 0) this.notifyDrain();
    });
  }

  private fail(entries: Entry<I, R>[], err: unknown): void {
    const e = asTeiplexError(err);
    for (const entry of entries) entry.reject(e);
  }
}
