/**
 * The pure parts of bench/front-ends.ts (bench/lib/load-tools.ts): h2load's summary and
 * per-request log, hey's CSV, /proc/<pid>/stat, percentiles, gRPC framing. Inputs are copies of
 * what the tools print (h2load 1.52, hey 0.1.4); neither tool is needed to run this file.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { serviceDefinition } from '../../src/tei/proto.js';
import {
  cpuUsPerCall,
  grpcFrame,
  heyBusyFraction,
  notOk,
  parseH2loadLog,
  parseH2loadSummary,
  parseHeyCsv,
  parseProcStat,
  summarizeLatency,
} from '../../bench/lib/load-tools.js';

const H2LOAD_OUT = `starting benchmark...
spawning thread #0: 2 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
Application protocol: h2c
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 2.00s, 496.00 req/s, 98.97KB/s
requests: 992 total, 1000 started, 992 done, 990 succeeded, 1 failed, 1 errored, 0 timeout
status codes: 990 2xx, 0 3xx, 1 4xx, 0 5xx
traffic: 197.94KB (202689) total, 14.66KB (15013) headers (space savings 94.09%), 154.54KB (158244) data
                     min         max         mean         sd        +/- sd
time for request:     3.96ms    175.64ms     15.98ms     19.67ms    96.37%
`;

test('h2load summary: requests, status codes, response DATA bytes, req/s', () => {
  const s = parseH2loadSummary(H2LOAD_OUT);
  assert.deepEqual(
    { total: s.total, started: s.started, done: s.done, succeeded: s.succeeded, failed: s.failed, errored: s.errored, timeout: s.timeout },
    { total: 992, started: 1000, done: 992, succeeded: 990, failed: 1, errored: 1, timeout: 0 },
  );
  assert.deepEqual(s.status, { '2xx': 990, '3xx': 0, '4xx': 1, '5xx': 0 });
  assert.equal(s.dataBytes, 158244);
  assert.equal(s.reqPerSec, 496);
  assert.throws(() => parseH2loadSummary('connect: Connection refused\n'), /no requests line/);
});

test('h2load log: tab-separated start (µs since epoch), status, duration (µs)', () => {
  const text = ['1796201051268824\t200\t1500', '1796201051269000\t200\t2500', '1796201051270000\t-1\t300', '1796201051270100\t503\t400', ''].join('\n');
  const l = parseH2loadLog(text);
  assert.deepEqual(l.okMs, [1.5, 2.5]);
  assert.deepEqual(l.byStatus, { '200': 2, '-1': 1, '503': 1 });
  assert.equal(l.spanSecs, (1796201051269000 + 2500 - 1796201051268824) / 1e6, "first start to the last end");
  assert.deepEqual(notOk(l.byStatus), { '-1': 1, '503': 1 });
  assert.throws(() => parseH2loadLog('1796201051268824 200\n'), /bad line/);
  assert.ok(Number.isNaN(parseH2loadLog('').spanSecs));
});

test('hey csv: latencies of 2xx answers in ms, statuses, time covered', () => {
  const text = [
    'response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset',
    '0.0691,0.0105,0.0000,0.0003,0.0578,0.0003,200,0.0411',
    '0.0010,0.0005,0.0000,0.0002,0.0659,0.0003,200,0.1100',
    '0.0020,0.0000,0.0000,0.0001,0.0010,0.0001,429,0.2000',
    '',
  ].join('\n');
  const r = parseHeyCsv(text);
  assert.equal(r.okMs.length, 2);
  assert.ok(Math.abs(r.okMs[0]! - 69.1) < 1e-9 && Math.abs(r.okMs[1]! - 1) < 1e-9);
  assert.deepEqual(r.byStatus, { '200': 2, '429': 1 });
  assert.deepEqual(notOk(r.byStatus), { '429': 1 });
  assert.ok(Math.abs(r.sumSecs - 0.0721) < 1e-9);
  assert.ok(Math.abs(r.spanSecs - (0.202 - 0.0411)) < 1e-9);
  assert.equal(r.lastOffsetSecs, 0.2);
  // hey leaves transport failures out: 16 workers for 5 s listing 40 s of requests is half the time.
  assert.equal(heyBusyFraction(40, 16, 5), 0.5);
  assert.throws(() => parseHeyCsv('Summary:\n  Total: 2 secs\n'), /no header line/);
  assert.throws(() => parseHeyCsv(`${text.split('\n')[0]}\nx,y\n`), /bad line/);
});

test('/proc/<pid>/stat: utime and stime, with a command name holding spaces and parentheses', () => {
  const line = '4242 (node (worker) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 731 96 0 0 20 0 11 0 12345 1000000 5000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0';
  assert.deepEqual(parseProcStat(line), { utime: 731, stime: 96 });
  // This process's own line parses, and its CPU time only grows.
  const before = parseProcStat(readFileSync('/proc/self/stat', 'utf8'));
  let x = 0;
  for (let i = 0; i < 2e7; i++) x += i % 7;
  assert.ok(x > 0);
  const after = parseProcStat(readFileSync('/proc/self/stat', 'utf8'));
  assert.ok(after.utime + after.stime >= before.utime + before.stime);
  assert.throws(() => parseProcStat('garbage'), /not a \/proc/);
  assert.throws(() => parseProcStat('1 (x) S 1 2'), /no utime/);
});

test('CPU µs per call: tick deltas at CLK_TCK', () => {
  assert.equal(cpuUsPerCall({ utime: 100, stime: 10 }, { utime: 150, stime: 20 }, 1000, 100), 600);
  assert.ok(Number.isNaN(cpuUsPerCall({ utime: 0, stime: 0 }, { utime: 1, stime: 0 }, 0, 100)));
});

test('latency summary: nearest-rank p50 / p99 and max; NaN when empty', () => {
  const ms = Array.from({ length: 100 }, (_, i) => 100 - i); // 100 .. 1, unsorted
  assert.deepEqual(summarizeLatency(ms), { n: 100, p50_ms: 51, p99_ms: 100, max_ms: 100 });
  assert.deepEqual(summarizeLatency([3]), { n: 1, p50_ms: 3, p99_ms: 3, max_ms: 3 });
  const empty = summarizeLatency([]);
  assert.ok(empty.n === 0 && Number.isNaN(empty.p50_ms) && Number.isNaN(empty.max_ms));
});

test('gRPC framing: flag byte 0, big-endian length, then the protobuf the repo protos write', () => {
  const def = serviceDefinition('tei.v1.Embed').Embed!;
  const msg = def.requestSerialize({ inputs: 'hello', truncate: true });
  const framed = grpcFrame(msg);
  assert.equal(framed[0], 0);
  assert.equal(framed.readUInt32BE(1), msg.length);
  assert.deepEqual(def.requestDeserialize(framed.subarray(5)), { inputs: 'hello', truncate: true, truncation_direction: 'TRUNCATION_DIRECTION_RIGHT' });
});
