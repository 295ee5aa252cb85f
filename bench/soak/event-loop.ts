/**
 * The manager's event-loop delay p99 over the last sampling interval, read from its /metrics
 * text, from the first source present:
 *
 *   1. `teiplex_event_loop_delay_seconds`: a summary (`quantile="0.99"`), a histogram (p99 of the
 *      bucket counts added since the previous scrape) or a plain gauge;
 *   2. prom-client's `nodejs_eventloop_lag_p99_seconds` (perf_hooks.monitorEventLoopDelay, reset
 *      at every scrape, so with the soak as the only scraper it covers the interval);
 *   3. none: undefined, and the caller reports the /health round trip as a proxy, labelled so.
 */
import { metricSamples } from '../lib/prometheus-text.js';

export interface LoopDelay {
  p99_ms: number;
  source: string;
}

const TEIPLEX_METRIC = 'teiplex_event_loop_delay_seconds';
const PROM_CLIENT_P99 = 'nodejs_eventloop_lag_p99_seconds';

export class EventLoopReader {
  /** Cumulative bucket counts of the histogram at the previous scrape (le -> count). */
  private lastBuckets = new Map<string, number>();

  read(text: string): LoopDelay | undefined {
    const summary = metricSamples(text, TEIPLEX_METRIC);
    const q = summary.find((s) => s.labels.quantile === '0.99');
    if (q !== undefined) return { p99_ms: q.value * 1000, source: `${TEIPLEX_METRIC}{quantile="0.99"}` };
    const buckets = metricSamples(text, `${TEIPLEX_METRIC}_bucket`);
    if (buckets.length > 0) return this.fromHistogram(buckets.map((b) => [b.labels.le ?? '+Inf', b.value] as const));
    if (summary.length === 1) return { p99_ms: summary[0]!.value * 1000, source: TEIPLEX_METRIC };
    const lag = metricSamples(text, PROM_CLIENT_P99);
    if (lag.length > 0) return { p99_ms: lag[0]!.value * 1000, source: PROM_CLIENT_P99 };
    return undefined;
  }

  /** A manager restart resets its counters: forget the previous scrape. */
  reset(): void {
    this.lastBuckets.clear();
  }

  private fromHistogram(cumulative: ReadonlyArray<readonly [string, number]>): LoopDelay | undefined {
    const delta = cumulative.map(([le, n]) => [le, n - (this.lastBuckets.get(le) ?? 0)] as const);
    this.lastBuckets = new Map(cumulative);
    const sorted = [...delta].sort((a, b) => upper(a[0]) - upper(b[0]));
    const total = sorted.at(-1)?.[1] ?? 0;
    if (total <= 0) return undefined;
    const hit = sorted.find(([, n]) => n >= 0.99 * total)!;
    const bound = upper(hit[0]);
    // Past the last finite bound, the largest finite bound is all that is known.
    const finite = Number.isFinite(bound) ? bound : upper(sorted.filter(([le]) => Number.isFinite(upper(le))).at(-1)?.[0] ?? '0');
    return { p99_ms: finite * 1000, source: `${TEIPLEX_METRIC} histogram (bucket upper bound${Number.isFinite(bound) ? '' : ', above the last bucket'})` };
  }
}

function upper(le: string): number {
  return le === '+Inf' ? Infinity : Number(le);
}
