/**
 * Time as the lifecycle code sees it: the current time and one-shot timers. Production code takes
 * a `Clock` (default `systemClock`: Date.now and Node's timers); tests pass a `ManualClock` (manual-clock.ts) and move time by hand,
 * so back-off, sweeps and idle stops are tested without sleeping.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Run `fn` once after `ms`; the handle cancels it. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
}

/** An opaque timer handle (only the clock that made it can clear it). */
export interface TimerHandle {
  readonly __timer?: never;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms) as unknown as TimerHandle,
  clearTimeout: (handle) => {
    if (handle !== undefined) clearTimeout(handle as unknown as NodeJS.Timeout);
  },
};
