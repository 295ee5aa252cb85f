/**
 * The JSON object `teiplex bench` prints: tei-manager's bench-client fields (mode, num_texts,
 * batch_size, num_requests, total_duration_secs, throughput_per_sec, successful, failed) plus
 * the target, load shape, per-request latency and failures by code.
 *
 * `successful`/`failed` count texts (as tei-manager's did); `num_requests`, `errors` and the
 * latency percentiles count requests. Latency is of successful requests only.
 */
import type { LatencySummary } from './histogram.js';
import { describeTarget, type BenchOptions } from './options.js';
import type { RunStats } from './runner.js';

export interface BenchReport {
  mode: string;
  sparse: boolean;
  direct: boolean;
  noop: boolean;
  target: string | null;
  endpoint: string;
  /** Texts sent in the timed run. */
  num_texts: number;
  /** Texts per request (1 in standard mode). */
  batch_size: number;
  concurrency: number;
  duration_secs: number | null;
  warmup_requests: number;
  texts_source: string;
  num_requests: number;
  total_duration_secs: number;
  /** Successful texts per second. */
  throughput_per_sec: number;
  /** Completed requests (successful or not) per second. */
  requests_per_sec: number;
  latency_ms: LatencySummary | null;
  successful: number;
  failed: number;
  successful_requests: number;
  failed_requests: number;
  errors: Record<string, number>;
  /** The first message seen for each error code. */
  error_messages: Record<string, string>;
}

const round = (x: number, digits: number): number => Number(x.toFixed(digits));

export function buildReport(opts: BenchOptions, batchSize: number, stats: RunStats): BenchReport {
  const secs = stats.durationSecs;
  const numRequests = stats.successfulRequests + stats.failedRequests;
  return {
    mode: opts.mode,
    sparse: opts.sparse,
    direct: opts.direct,
    noop: opts.noop,
    target: opts.direct ? null : describeTarget(opts.target),
    endpoint: opts.endpoint.raw,
    num_texts: stats.textsSent,
    batch_size: batchSize,
    concurrency: opts.concurrency,
    duration_secs: opts.durationSecs ?? null,
    warmup_requests: opts.warmup,
    texts_source: opts.textsSource,
    num_requests: numRequests,
    total_duration_secs: round(secs, 6),
    throughput_per_sec: secs > 0 ? round(stats.successfulTexts / secs, 3) : 0,
    requests_per_sec: secs > 0 ? round(numRequests / secs, 3) : 0,
    latency_ms: stats.latency.summary(),
    successful: stats.successfulTexts,
    failed: stats.failedTexts,
    successful_requests: stats.successfulRequests,
    failed_requests: stats.failedRequests,
    errors: stats.errors,
    error_messages: stats.errorMessages,
  };
}
