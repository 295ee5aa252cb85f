/**
 * A `Clock` whose time moves only when told (`advance`, `set`): timers due by then run in due
 * order, each seeing `now()` at its own due time. For tests of back-off, sweeps and idle stops
 * without sleeping.
 */
import type { Clock, TimerHandle } from './clock.js';

interface Pending extends TimerHandle {
  due: number;
  seq: number;
  fn: () => void;
}

export class ManualClock implements Clock {
  private t: number;
  private seq = 0;
  private readonly pending = new Set<Pending>();

  constructor(start = 1_000_000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const p: Pending = { due: this.t + Math.max(0, ms), seq: this.seq++, fn };
    this.pending.add(p);
    return p;
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle !== undefined) this.pending.delete(handle as Pending);
  }

  /** Timers not yet run. */
  get timers(): number {
    return this.pending.size;
  }

  /** Move time forward by `ms`, running every timer that falls due on the way. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: Pending | undefined;
      for (const p of this.pending) if (p.due <= end && (next === undefined || p.due < next.due || (p.due === next.due && p.seq < next.seq))) next = p;
      if (next === undefined) break;
      this.pending.delete(next);
      this.t = Math.max(this.t, next.due);
      next.fn();
    }
    this.t = end;
  }
}
