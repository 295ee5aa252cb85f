/**
 * A budget of units in flight shared by callers, served first come first served: a caller takes
 * its share before the work and gives it back after. Two budgets use it: a child's inputs in
 * fan-out calls (its max_concurrent_requests, child-client.ts) and the manager's decoded Arrow
 * request bytes (arrow_decode_budget_mb, src/mux/arrow-service.ts), which bounds the memory every
 * Arrow call together holds in decoded texts however many clients send at once.
 *
 * A waiting call leaves the line when it is aborted (its deadline, its client gone) with the
 * abort reason. A share larger than the whole budget can never be granted: `acquire` refuses it
 * at once (RangeError), so callers check `fits` first and answer with their own error.
 */
import type { CallScope } from './call-scope.js';

export class Budget {
  private used = 0;
  private readonly waiters: Array<{ n: number; grant: () => void }> = [];

  constructor(readonly limit: number) {}

  /** Units taken now. */
  get inUse(): number {
    return this.used;
  }

  /** Whether a share of `n` can ever be granted. */
  fits(n: number): boolean {
    return n <= this.limit;
  }

  /** Take `n` units; waits for room (in order), or rejects if the call aborts. */
  acquire(n: number, call: CallScope): Promise<void> {
    call.check();
    if (!this.fits(n)) return Promise.reject(new RangeError(`a share of ${n} is larger than the whole budget of ${this.limit}`));
    if (this.waiters.length === 0 && this.used + n <= this.limit) {
      this.used += n;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        n,
        grant: () => {
          off();
          resolve();
        },
      };
      const off = call.onAbort((err) => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        this.pump();
        reject(err);
      });
      this.waiters.push(waiter);
    });
  }

  release(n: number): void {
    this.used -= n;
    this.pump();
  }

  private pump(): void {
    while (this.waiters.length > 0 && this.used + this.waiters[0]!.n <= this.limit) {
      const w = this.waiters.shift()!;
      this.used += w.n;
      w.grant();
    }
  }
}
