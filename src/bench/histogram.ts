/**
 * Per-request latency: an HdrHistogram (hdr-histogram-js, pure JS, 3 significant digits) of
 * microseconds, summarized in milliseconds.
 */
import { build, type Histogram } from 'hdr-histogram-js';

export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Milliseconds with microsecond resolution. */
const ms = (us: number): number => Math.round(us) / 1000;

export class LatencyHistogram {
  private readonly h: Histogram;

  constructor() {
    // autoResize (the default) grows the range past any expected latency.
    this.h = build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3, useWebAssembly: false });
  }

  /** Record one request's latency in milliseconds (e.g. a difference of performance.now()). */
  recordMs(latencyMs: number): void {
    this.h.recordValue(Math.max(1, Math.round(latencyMs * 1000)));
  }

  get count(): number {
    return this.h.totalCount;
  }

  /** Percentiles, max and mean in ms; null when nothing was recorded. */
  summary(): LatencySummary | null {
    if (this.h.totalCount === 0) return null;
    const max = this.h.maxValue;
    // A percentile is its bucket's highest equivalent value, which can exceed the largest recorded.
    const at = (p: number): number => ms(Math.min(this.h.getValueAtPercentile(p), max));
    return { p50: at(50), p90: at(90), p99: at(99), max: ms(max), mean: ms(this.h.mean) };
  }
}
