/**
 * The manager's memory over time, for telling a leak from an allocator that levels off: its RSS
 * (/proc/<pid>/status VmRSS) and, from its /metrics (prom-client's default process metrics), the
 * V8 heap in use and allocated, and the memory held outside the heap (`external`, which includes
 * ArrayBuffers such as socket and message buffers). A figure /metrics does not give is null.
 */
import { residentMb } from '../../src/catalog/footprint.js';
import { metricSamples } from '../lib/prometheus-text.js';
import { httpCall } from './http-call.js';

export interface MemorySample {
  at_s: number;
  rss_mib: number | null;
  heap_used_mib: number | null;
  heap_total_mib: number | null;
  external_mib: number | null;
}

const MIB = 1024 * 1024;

function gauge(text: string | undefined, metric: string): number | null {
  if (text === undefined) return null;
  const s = metricSamples(text, metric);
  return s.length === 0 ? null : s.reduce((n, x) => n + x.value, 0) / MIB;
}

export async function sampleMemory(pid: number, base: string, atS: number): Promise<MemorySample> {
  const metrics = await httpCall(base, 'GET', '/metrics', undefined, 5000);
  const text = metrics.kind === 'answer' && metrics.status === 200 ? String(metrics.body) : undefined;
  const rss = await residentMb([pid]);
  return {
    at_s: atS,
    rss_mib: rss > 0 ? rss : null,
    heap_used_mib: gauge(text, 'nodejs_heap_size_used_bytes'),
    heap_total_mib: gauge(text, 'nodejs_heap_size_total_bytes'),
    external_mib: gauge(text, 'nodejs_external_memory_bytes'),
  };
}

/** First, largest and last value of one figure over the samples (null where never measured). */
export function startPeakEnd(samples: readonly MemorySample[], key: Exclude<keyof MemorySample, 'at_s'>): { start: number | null; peak: number | null; end: number | null } {
  const xs = samples.flatMap((s) => (s[key] === null ? [] : [s[key]]));
  return xs.length === 0 ? { start: null, peak: null, end: null } : { start: xs[0]!, peak: Math.max(...xs), end: xs.at(-1)! };
}

export interface MemoryMinute {
  minute: number;
  rss_max_mib: number | null;
  heap_total_max_mib: number | null;
  /** The smallest heap in use over the minute: about the live set after a garbage collection. */
  heap_used_min_mib: number | null;
  heap_used_max_mib: number | null;
  external_max_mib: number | null;
}

/**
 * The samples per minute of the run. A leak shows as a rising `heap_used_min` (what survives the
 * collections grows) or, outside the heap, a rising RSS while `heap_total` stays; V8 sizing its
 * heap to the allocation rate shows as `heap_total` and RSS rising for a while, then staying,
 * with `heap_used_min` flat.
 */
export function perMinute(samples: readonly MemorySample[]): MemoryMinute[] {
  const out: MemoryMinute[] = [];
  const pick = (xs: readonly MemorySample[], key: Exclude<keyof MemorySample, 'at_s'>, f: (...v: number[]) => number): number | null => {
    const v = xs.flatMap((s) => (s[key] === null ? [] : [s[key]]));
    return v.length === 0 ? null : f(...v);
  };
  const last = samples.at(-1)?.at_s ?? 0;
  for (let m = 0; m * 60 <= last; m++) {
    const xs = samples.filter((s) => s.at_s >= m * 60 && s.at_s < (m + 1) * 60);
    if (xs.length === 0) continue;
    out.push({
      minute: m + 1,
      rss_max_mib: pick(xs, 'rss_mib', Math.max),
      heap_total_max_mib: pick(xs, 'heap_total_mib', Math.max),
      heap_used_min_mib: pick(xs, 'heap_used_mib', Math.min),
      heap_used_max_mib: pick(xs, 'heap_used_mib', Math.max),
      external_max_mib: pick(xs, 'external_mib', Math.max),
    });
  }
  return out;
}
