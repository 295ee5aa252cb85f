/**
 * Bounded waiting for tests. Tests synchronize on what happened (a state, a metric, a log line,
 * an event), never on a fixed sleep: `until` polls a probe until it yields a value and fails with
 * the last value seen when its bound runs out. `elapse` is the one place a test lets time pass on
 * purpose (the subject of the test is the passage of time, e.g. "nothing was spawned while the
 * idle timeout had not run out"); every call names why.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface UntilOptions {
  /** Give up after this long (default 30 s). */
  timeoutMs?: number;
  /** Poll interval (default 20 ms). */
  everyMs?: number;
  /** Appended to the error when the bound runs out (e.g. a process's output). */
  context?: () => string;
}

/**
 * Polls `probe` until it returns something other than `undefined` or `false`, and returns that.
 * Throws `timed out waiting for <what>` with the last value seen after `timeoutMs`.
 */
export async function until<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, opts: UntilOptions = {}): Promise<T> {
  const end = Date.now() + (opts.timeoutMs ?? 30_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
      last = v;
    } catch (e) {
      last = e instanceof Error ? e.message : e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})${opts.context ? `\n${opts.context()}` : ''}`);
    await sleep(opts.everyMs ?? 20);
  }
}

/** Lets `ms` pass on purpose; `why` says what the passage of time is for. */
export async function elapse(ms: number, why: string): Promise<void> {
  if (why.trim() === '') throw new Error('elapse needs a reason');
  await sleep(ms);
}
