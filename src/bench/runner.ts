/**
 * The closed loop: `concurrency` callers, each sending its next request as soon as its previous
 * one is answered. A run either sends every prepared request once (--num-texts), or cycles
 * through them until the duration is up (--duration: no request starts after it; those in flight
 * finish and count). Warm-up requests go first through the same loop and are not counted.
 *
 * Per request: latency into the histogram when it succeeds; the failure's code counted when it
 * fails (with the first message seen for each code). Texts are counted as successful or failed
 * with their request.
 */
import { performance } from 'node:perf_hooks';
import { errorCode, errorMessage } from './errors.js';
import { LatencyHistogram } from './histogram.js';
import type { BenchMode } from './mode.js';

export interface PreparedRequest<P = unknown> {
  payload: P;
  /** Texts it carries. */
  texts: number;
}

export interface RunPlan<P = unknown> {
  requests: readonly PreparedRequest<P>[];
  concurrency: number;
  /** Cycle through `requests` for this long instead of sending each once. */
  durationMs?: number;
  /** Requests sent (cycling from the first) before the clock starts, not counted. */
  warmup?: number;
}

/** Told how far the run is (the progress bar). */
export interface ProgressSink {
  begin(goal: { texts?: number; durationMs?: number }): void;
  tick(state: { successfulTexts: number; failedTexts: number }): void;
  end(): void;
}

export interface RunStats {
  durationSecs: number;
  textsSent: number;
  successfulTexts: number;
  failedTexts: number;
  successfulRequests: number;
  failedRequests: number;
  /** Failed requests by code. */
  errors: Record<string, number>;
  /** The first message seen for each code. */
  errorMessages: Record<string, string>;
  latency: LatencyHistogram;
}

/** Run `count` requests (or until `deadline`) over `concurrency` callers; `onDone` sees each outcome. */
async function loop<P>(
  mode: BenchMode<P>,
  requests: readonly PreparedRequest<P>[],
  concurrency: number,
  limit: { count: number } | { deadline: number },
  onDone: (req: PreparedRequest<P>, latencyMs: number, err: unknown) => void,
): Promise<void> {
  let next = 0;
  const take = (): PreparedRequest<P> | undefined => {
    if ('count' in limit ? next >= limit.count : performance.now() >= limit.deadline) return undefined;
    return requests[next++ % requests.length];
  };
  const caller = async (): Promise<void> => {
    for (let req = take(); req !== undefined; req = take()) {
      const t0 = performance.now();
      let failure: unknown = null;
      try {
        await mode.send(req.payload);
      } catch (err) {
        failure = err ?? new Error('failed without an error');
      }
      onDone(req, performance.now() - t0, failure);
    }
  };
  const callers = 'count' in limit ? Math.min(concurrency, limit.count) : concurrency;
  await Promise.all(Array.from({ length: callers }, caller));
}

export async function runLoad<P>(mode: BenchMode<P>, plan: RunPlan<P>, progress?: ProgressSink): Promise<RunStats> {
  if (plan.requests.length === 0) throw new RangeError('runLoad: no requests to send');
  if (plan.warmup) await loop(mode, plan.requests, plan.concurrency, { count: plan.warmup }, () => {});

  const stats: RunStats = {
    durationSecs: 0,
    textsSent: 0,
    successfulTexts: 0,
    failedTexts: 0,
    successfulRequests: 0,
    failedRequests: 0,
    errors: {},
    errorMessages: {},
    latency: new LatencyHistogram(),
  };
  progress?.begin(plan.durationMs !== undefined ? { durationMs: plan.durationMs } : { texts: plan.requests.reduce((n, r) => n + r.texts, 0) });
  const start = performance.now();
  const limit = plan.durationMs !== undefined ? { deadline: start + plan.durationMs } : { count: plan.requests.length };
  await loop(mode, plan.requests, plan.concurrency, limit, (req, latencyMs, err) => {
    stats.textsSent += req.texts;
    if (err === null) {
      stats.successfulRequests++;
      stats.successfulTexts += req.texts;
      stats.latency.recordMs(latencyMs);
    } else {
      const code = errorCode(err);
      stats.failedRequests++;
      stats.failedTexts += req.texts;
      stats.errors[code] = (stats.errors[code] ?? 0) + 1;
      stats.errorMessages[code] ??= errorMessage(err);
    }
    progress?.tick(stats);
  });
  stats.durationSecs = (performance.now() - start) / 1000;
  progress?.end();
  return stats;
}
