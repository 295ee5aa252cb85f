/**
 * Restart back-off per key, after client-go's util/flowcontrol Backoff: `next(key)` gives the
 * delay before the next try — `initialMs`, then multiplied by `factor` at each failure, capped at
 * `maxMs` — and a key that stayed quiet (no failure) for `resetAfterMs` starts again at
 * `initialMs`. The quiet stretch counts from the last failure, or from where `quietFrom` puts it
 * (an instance counts it from readiness: a child that never got ready was never quiet). Time
 * comes from an injectable `Clock`.
 */
import { systemClock, type Clock } from '../common/clock.js';

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** Growth per failure (default 2). */
  factor?: number;
  /** A quiet stretch this long resets the key (default: never). */
  resetAfterMs?: number;
  clock?: Clock;
}

interface Entry {
  /** Failures counted since the last reset. */
  failures: number;
  /** Start of the current quiet stretch; undefined: none in progress. */
  quietSince: number | undefined;
}

export class Backoff {
  private readonly entries = new Map<string, Entry>();
  private readonly factor: number;
  private readonly resetAfterMs: number;
  private readonly clock: Clock;

  constructor(private readonly o: BackoffOptions) {
    if (!(o.initialMs >= 0) || !(o.maxMs >= 0)) throw new RangeError('Backoff: initialMs and maxMs must be >= 0');
    this.factor = o.factor ?? 2;
    if (!(this.factor >= 1)) throw new RangeError('Backoff: factor must be >= 1');
    this.resetAfterMs = o.resetAfterMs ?? Infinity;
    this.clock = o.clock ?? systemClock;
  }

  /** A failure of `key`: the delay before its next try. */
  next(key = ''): number {
    const now = this.clock.now();
    let e = this.entries.get(key);
    if (e !== undefined && e.quietSince !== undefined && now - e.quietSince >= this.resetAfterMs) e = undefined;
    if (e === undefined) {
      e = { failures: 0, quietSince: undefined };
      this.entries.set(key, e);
    }
    const delay = Math.min(this.o.initialMs * this.factor ** e.failures, this.o.maxMs);
    e.failures++;
    e.quietSince = now;
    return delay;
  }

  /** Where `key`'s quiet stretch starts (default: now; `null`: none in progress until the next call). */
  quietFrom(key = '', at: number | null = this.clock.now()): void {
    const e = this.entries.get(key);
    if (e !== undefined) e.quietSince = at ?? undefined;
  }

  /** Failures counted for `key` since its last reset. */
  failures(key = ''): number {
    return this.entries.get(key)?.failures ?? 0;
  }

  /** Forget `key`: its next failure waits `initialMs`. */
  reset(key = ''): void {
    this.entries.delete(key);
  }
}
