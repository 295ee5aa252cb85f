/**
 * A budget of units in flight shared by callers, in two lanes (lane.ts): a caller takes its share
 * before the work and gives it back after. Two budgets use it: a child's input window (its
 * max_concurrent_requests, child-info.ts), which every child call of the manager waits on (the
 * data plane's, EmbedTyped's, the Arrow RPCs' sub-batches, the multiplexer's forwarded unary
 * calls), and the manager's decoded Arrow request bytes (arrow_decode_budget_mb,
 * src/mux/arrow-service.ts), which bounds the memory every Arrow call together holds in decoded
 * texts however many clients send at once (one lane there).
 *
 * Order (the rule docs/tenancy.md states): waiters are served interactive first, each lane in
 * arrival order; a bulk waiter that has waited `agingMs` or longer is served as if interactive,
 * in arrival order (it goes before every interactive waiter that arrived after it), so bulk never
 * starves. The head of the line waits for room (no smaller share overtakes it). The bulk lane
 * holds at most `bulkLimit` units at once (one share larger than that may go alone), so the
 * child always has room for interactive calls and queues little bulk work before them.
 *
 * Cost: a share that fits when nobody waits is taken at once (no timer, no allocation but the
 * resolved promise); the clock is read only when a waiter queues and when bulk waiters are
 * weighed. Ageing needs no timer: a bulk waiter waits only while the window or the bulk lane is
 * full, and every release weighs the line again.
 *
 * A waiting call leaves the line when it is aborted (its deadline, its client gone) with the
 * abort reason. A share larger than the whole budget can never be granted: `acquire` refuses it
 * at once (RangeError), so callers check `fits` first and answer with their own error.
 */
import type { CallScope } from './call-scope.js';
import type { Lane } from './lane.js';
import { DEFAULTS } from '../config/config.js';

/** Told how long each share waited (0: granted at once) and how many wait per lane. */
export interface LaneObserver {
  waited(lane: Lane, seconds: number): void;
  queued(lane: Lane, delta: number): void;
}

export interface LaneSettings {
  /** A bulk waiter older than this (ms) is served as if interactive, in arrival order. */
  agingMs: number;
  /** Most units the bulk lane holds at once (default: the whole budget). */
  bulkLimit?: number;
  /** The clock (ms), for tests. */
  now?: () => number;
  observer?: LaneObserver;
}


interface Waiter {
  n: number;
  lane: Lane;
  at: number;
  grant: () => void;
}

export class Budget {
  private used = 0;
  private usedBulk = 0;
  private readonly interactive: Waiter[] = [];
  private readonly bulk: Waiter[] = [];
  private readonly agingMs: number;
  readonly bulkLimit: number;
  private readonly now: () => number;
  private readonly observer: LaneObserver | undefined;

  constructor(
    readonly limit: number,
    lanes: LaneSettings = { agingMs: DEFAULTS.priority_aging_ms },
  ) {
    this.agingMs = lanes.agingMs;
    this.bulkLimit = Math.max(1, Math.min(limit, lanes.bulkLimit ?? limit));
    this.now = lanes.now ?? Date.now;
    this.observer = lanes.observer;
  }

  /** Units taken now. */
  get inUse(): number {
    return this.used;
  }

  /** Units the bulk lane holds now. */
  get bulkInUse(): number {
    return this.usedBulk;
  }

  /** Waiters in a lane. */
  waiting(lane: Lane): number {
    return (lane === 'bulk' ? this.bulk : this.interactive).length;
  }

  /** Whether a share of `n` can ever be granted. */
  fits(n: number): boolean {
    return n <= this.limit;
  }

  /** Take `n` units in `lane` now if nobody waits and they fit (true), else take nothing (false). */
  tryAcquire(n: number, lane: Lane = 'interactive'): boolean {
    if (this.interactive.length === 0 && this.bulk.length === 0 && this.used + n <= this.limit && (lane === 'interactive' || this.bulkRoom(n))) {
      this.take(n, lane);
      this.observer?.waited(lane, 0);
      return true;
    }
    return false;
  }

  /** Take `n` units in `lane`; waits for room (in the order above), or rejects if the call aborts. */
  acquire(n: number, call: CallScope, lane: Lane = 'interactive'): Promise<void> {
    call.check();
    if (!this.fits(n)) return Promise.reject(new RangeError(`a share of ${n} is larger than the whole budget of ${this.limit}`));
    if (this.tryAcquire(n, lane)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const line = lane === 'bulk' ? this.bulk : this.interactive;
      const waiter: Waiter = {
        n,
        lane,
        at: this.now(),
        grant: () => {
          off();
          this.observer?.waited(lane, (this.now() - waiter.at) / 1000);
          resolve();
        },
      };
      const off = call.onAbort((err) => {
        const i = line.indexOf(waiter);
        if (i >= 0) {
          line.splice(i, 1);
          this.observer?.queued(lane, -1);
        }
        this.pump();
        reject(err);
      });
      line.push(waiter);
      this.observer?.queued(lane, 1);
      // Others wait, but perhaps only for the bulk lane's bound: this one may go now.
      this.pump();
    });
  }

  release(n: number, lane: Lane = 'interactive'): void {
    this.used -= n;
    if (lane === 'bulk') this.usedBulk -= n;
    if (this.interactive.length > 0 || this.bulk.length > 0) this.pump();
  }

  private bulkRoom(n: number): boolean {
    return this.usedBulk === 0 || this.usedBulk + n <= this.bulkLimit;
  }

  private take(n: number, lane: Lane): void {
    this.used += n;
    if (lane === 'bulk') this.usedBulk += n;
  }

  /** The next waiter by the rule above, if it may go now (undefined: the line waits). */
  private next(): Waiter | undefined {
    const i = this.interactive[0];
    const b = this.bulk[0];
    let pick: Waiter | undefined;
    if (b !== undefined && this.bulkRoom(b.n) && (i === undefined || (b.at <= i.at && this.now() - b.at >= this.agingMs))) pick = b;
    else pick = i;
    return pick !== undefined && this.used + pick.n <= this.limit ? pick : undefined;
  }

  private pump(): void {
    for (let w = this.next(); w !== undefined; w = this.next()) {
      (w.lane === 'bulk' ? this.bulk : this.interactive).shift();
      this.observer?.queued(w.lane, -1);
      this.take(w.n, w.lane);
      w.grant();
    }
  }
}
