/**
 * The pure parts of bench/front-ends.ts, kept apart so test/unit/bench-load-tools.test.ts checks
 * them without h2load or hey installed: reading h2load's summary and per-request log, hey's CSV,
 * a process's CPU time from /proc/<pid>/stat, and latency percentiles.
 */
import { quantile } from './stats.js';

// ---- latency ----

export interface LatencySummary {
  n: number;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
}

/** p50 / p99 (nearest rank, bench/lib/stats.ts) and max of latencies in milliseconds; NaN when empty. */
export function summarizeLatency(ms: readonly number[]): LatencySummary {
  let max = Number.NaN;
  for (const x of ms) if (!(x <= max)) max = x;
  return { n: ms.length, p50_ms: quantile(ms, 0.5), p99_ms: quantile(ms, 0.99), max_ms: max };
}

// ---- /proc/<pid>/stat ----

export interface CpuTicks {
  utime: number;
  stime: number;
}

/**
 * utime and stime (fields 14 and 15, clock ticks) of a /proc/<pid>/stat line. The command name
 * (field 2) is in parentheses and may hold spaces and parentheses itself, so fields are counted
 * after its last ')'.
 */
export function parseProcStat(line: string): CpuTicks {
  const close = line.lastIndexOf(')');
  if (close < 0) throw new Error(`not a /proc/<pid>/stat line: '${line.slice(0, 80)}'`);
  const rest = line
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  // rest[0] is field 3 (state), so field n is rest[n - 3].
  const utime = Number(rest[14 - 3]);
  const stime = Number(rest[15 - 3]);
  if (!Number.isInteger(utime) || !Number.isInteger(stime)) throw new Error(`/proc/<pid>/stat: no utime/stime in '${line.slice(0, 120)}'`);
  return { utime, stime };
}

/** Microseconds of CPU per call between two readings (`ticksPerSec`: `getconf CLK_TCK`). */
export function cpuUsPerCall(before: CpuTicks, after: CpuTicks, calls: number, ticksPerSec: number): number {
  const ticks = after.utime + after.stime - (before.utime + before.stime);
  return calls > 0 ? (ticks * 1e6) / ticksPerSec / calls : Number.NaN;
}

// ---- h2load ----

export interface H2loadSummary {
  total: number;
  started: number;
  done: number;
  succeeded: number;
  failed: number;
  errored: number;
  timeout: number;
  status: { '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  /** Response DATA payload bytes received (the "data" of the traffic line). */
  dataBytes: number;
  /** The "finished in" line's req/s. */
  reqPerSec: number;
}

/** h2load's summary (stdout): the requests, status codes, traffic and finished lines. */
export function parseH2loadSummary(text: string): H2loadSummary {
  const req = /requests:\s+(\d+) total,\s+(\d+) started,\s+(\d+) done,\s+(\d+) succeeded,\s+(\d+) failed,\s+(\d+) errored,\s+(\d+) timeout/.exec(text);
  if (!req) throw new Error(`h2load output has no requests line:\n${text}`);
  const codes = /status codes:\s+(\d+) 2xx,\s+(\d+) 3xx,\s+(\d+) 4xx,\s+(\d+) 5xx/.exec(text);
  const traffic = /traffic:.*?,\s+\S+ \((\d+)\) data/.exec(text);
  const finished = /finished in [^,]+,\s+([\d.]+) req\/s/.exec(text);
  const n = (m: RegExpExecArray | null, i: number): number => (m ? Number(m[i]) : 0);
  return {
    total: n(req, 1),
    started: n(req, 2),
    done: n(req, 3),
    succeeded: n(req, 4),
    failed: n(req, 5),
    errored: n(req, 6),
    timeout: n(req, 7),
    status: { '2xx': n(codes, 1), '3xx': n(codes, 2), '4xx': n(codes, 3), '5xx': n(codes, 4) },
    dataBytes: n(traffic, 1),
    reqPerSec: n(finished, 1),
  };
}

export interface RequestLog {
  /** Latency of each request with a 2xx status, ms. */
  okMs: number[];
  /** Requests by status code as written (h2load writes -1 or 0 for a stream that got no status). */
  byStatus: Record<string, number>;
  /** First start to last end, seconds (NaN when empty). */
  spanSecs: number;
}

/**
 * h2load's --log-file: one tab-separated line per request: start (microseconds since the epoch),
 * status code, microseconds until the end of the response.
 */
export function parseH2loadLog(text: string): RequestLog {
  const okMs: number[] = [];
  const byStatus: Record<string, number> = {};
  let first = Number.POSITIVE_INFINITY;
  let last = Number.NEGATIVE_INFINITY;
  let count = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    count++;
    const [start, status, dur] = line.split('\t').map(Number);
    if (start === undefined || status === undefined || dur === undefined || [start, status, dur].some(Number.isNaN)) throw new Error(`h2load log: bad line '${line}'`);
    byStatus[String(status)] = (byStatus[String(status)] ?? 0) + 1;
    if (status >= 200 && status < 300) okMs.push(dur / 1000);
    first = Math.min(first, start);
    last = Math.max(last, start + dur);
  }
  return { okMs, byStatus, spanSecs: count === 0 ? Number.NaN : (last - first) / 1e6 };
}

// ---- hey ----

/**
 * hey's `-o csv`: a header line, then per request `response-time,DNS+dialup,DNS,Request-write,
 * Response-delay,Response-read,status-code,offset` (times in seconds). hey leaves requests that
 * failed at the transport (refused, reset, timed out) out of the CSV: see `heyBusyFraction`.
 */
export function parseHeyCsv(text: string): RequestLog & { lastOffsetSecs: number; sumSecs: number } {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const header = lines.shift();
  if (header === undefined || !header.startsWith('response-time')) throw new Error(`hey csv: no header line (got '${header ?? ''}')`);
  const cols = header.split(',');
  const iTime = cols.indexOf('response-time');
  const iStatus = cols.indexOf('status-code');
  const iOffset = cols.indexOf('offset');
  if (iTime < 0 || iStatus < 0 || iOffset < 0) throw new Error(`hey csv: unexpected header '${header}'`);
  const okMs: number[] = [];
  const byStatus: Record<string, number> = {};
  let first = Number.POSITIVE_INFINITY;
  let last = Number.NEGATIVE_INFINITY;
  let lastOffset = 0;
  let sum = 0;
  for (const line of lines) {
    const f = line.split(',');
    const t = Number(f[iTime]);
    const status = Number(f[iStatus]);
    const offset = Number(f[iOffset]);
    if ([t, status, offset].some(Number.isNaN)) throw new Error(`hey csv: bad line '${line}'`);
    byStatus[String(status)] = (byStatus[String(status)] ?? 0) + 1;
    if (status >= 200 && status < 300) okMs.push(t * 1000);
    sum += t;
    first = Math.min(first, offset);
    last = Math.max(last, offset + t);
    lastOffset = Math.max(lastOffset, offset);
  }
  return { okMs, byStatus, spanSecs: lines.length === 0 ? Number.NaN : last - first, lastOffsetSecs: lastOffset, sumSecs: sum };
}

/**
 * The share of the workers' time spent in requests the CSV lists: hey's workers are closed
 * loops, so with every request listed, sum(response times) is close to concurrency x duration.
 * Well below 1 means requests are missing (transport failures, which hey leaves out of its CSV)
 * or the client itself was starved of CPU.
 */
export function heyBusyFraction(sumSecs: number, concurrency: number, durationSecs: number): number {
  return sumSecs / (concurrency * durationSecs);
}

/** Non-2xx entries of a by-status count (what a run must not have). */
export function notOk(byStatus: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(byStatus).filter(([s]) => !(Number(s) >= 200 && Number(s) < 300)));
}

// ---- gRPC framing ----

/** A gRPC message as sent on the wire (the manager's own framing). */
export { frame as grpcFrame } from '../../src/child/child-channel.js';
