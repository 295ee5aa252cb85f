/**
 * Priority lanes (issue 15): does a bulk job on a model leave interactive calls their latency?
 * One real manager, one instance of the generated model (--model, default minilm-l6), the
 * embedding cache off for it (every text is computed). Three phases of --seconds each:
 *
 * 1. interactive alone: single-text `POST /embed` (a new text each time) at a steady --rate per
 *    second, open loop (a call is sent on time whether or not the previous one answered);
 * 2. bulk alone: EmbedArrow calls of --bulk-rows rows (LZ4 Arrow IPC, bodies written before the
 *    clock starts), --bulk-inflight in flight, as fast as they are answered (Arrow calls go in the
 *    bulk lane by default);
 * 3. both at once.
 *
 * Reported: interactive p50/p99 alone and loaded (and loaded / alone; of the calls answered, and
 * how many were refused: without lanes the child answers 429 when bulk work holds all its
 * max_concurrent_requests permits), bulk rows/s alone and
 * loaded (and loaded / alone), against the goal: interactive p99 <= 3x its unloaded p99 while bulk
 * keeps >= 0.85x its solo throughput. `--label` names the run; results of other labels already
 * in bench/results/lanes.json are kept, so a run of the code before the lanes (the same script at
 * an earlier commit, which ignores the lane settings) and one after sit side by side.
 * `--bulk-chunk-rows` and `--aging-ms` set bulk_chunk_rows and priority_aging_ms (left out: the
 * defaults; leave them out on code without lanes).
 *
 *   npm run build && node --import tsx bench/lanes.ts [--label lanes] [--seconds 20] [--rate 10]
 *        [--bulk-rows 1000] [--bulk-inflight 2] [--bulk-chunk-rows N] [--aging-ms N]
 *
 * Prints the table; writes bench/results/lanes.json and lanes.md.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { encodeTexts } from '../src/arrow/embedding-batch.js';
import { projectPath } from '../src/common/paths.js';
import type { ShapeName } from '../src/testmodel/shapes.js';
import { instanceToml, writeConfig } from '../test/helpers/data-plane.js';
import { startManager, type ManagerProcess } from '../test/helpers/manager-process.js';
import { testModel } from '../test/helpers/models.js';
import { type AnyClient, mux, unary } from '../test/helpers/mux-client.js';
import { quantile } from './lib/stats.js';

const { values: args } = parseArgs({
  options: {
    label: { type: 'string', default: 'lanes' },
    model: { type: 'string', default: 'minilm-l6' },
    seconds: { type: 'string', default: '20' },
    rate: { type: 'string', default: '10' },
    'bulk-rows': { type: 'string', default: '1000' },
    'bulk-inflight': { type: 'string', default: '2' },
    'bulk-chunk-rows': { type: 'string' },
    'aging-ms': { type: 'string' },
  },
});
const SECONDS = Number(args.seconds);
const RATE = Number(args.rate);
const BULK_ROWS = Number(args['bulk-rows']);
const BULK_INFLIGHT = Number(args['bulk-inflight']);
const INSTANCE = 'm';

const WORDS = 'river market city model vector search energy water music history planet protein garden winter court film engine order invoice language'.split(' ');

/** A text of 8 to 31 words, unique by its tag. */
function text(tag: string, i: number): string {
  let s = (i * 2654435761) >>> 0 || 1;
  const rand = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  return `${tag} ${i}: ${Array.from({ length: 8 + Math.floor(rand() * 24) }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(' ')}`;
}

/** Single-text /embed at RATE per second for `seconds`, open loop: the answered calls' latencies (ms) and the refusals by status. */
async function interactive(m: ManagerProcess, seconds: number, tag: string): Promise<{ latencies: number[]; refused: Record<string, number> }> {
  const url = `http://127.0.0.1:${m.apiPort}/embed`;
  const latencies: number[] = [];
  const refused: Record<string, number> = {};
  const calls: Array<Promise<void>> = [];
  const n = Math.round(seconds * RATE);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const due = t0 + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const body = JSON.stringify({ model: INSTANCE, inputs: text(tag, i) });
    calls.push(
      (async () => {
        const started = performance.now();
        const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json', 'x-teiplex-priority': 'interactive' }, body });
        const answer = await res.body.text();
        if (res.statusCode === 200) latencies.push(performance.now() - started);
        else {
          refused[res.statusCode] = (refused[res.statusCode] ?? 0) + 1;
          if (refused[res.statusCode] === 1) console.error(`/embed: HTTP ${res.statusCode}: ${answer.slice(0, 200)}`);
        }
      })(),
    );
  }
  await Promise.all(calls);
  return { latencies, refused };
}

/** EmbedArrow calls of BULK_ROWS rows, BULK_INFLIGHT in flight, until `stop()` says so: rows answered and seconds. */
async function bulk(client: AnyClient, bodies: readonly Buffer[], stop: () => boolean): Promise<{ rows: number; seconds: number }> {
  let rows = 0;
  let k = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: BULK_INFLIGHT }, async () => {
      while (!stop()) {
        const body = bodies[k++ % bodies.length]!;
        await unary(client, 'EmbedArrow', { target: { instance_name: INSTANCE }, arrow_ipc: body });
        rows += BULK_ROWS;
      }
    }),
  );
  return { rows, seconds: (performance.now() - t0) / 1000 };
}

interface Result {
  label: string;
  model: string;
  seconds: number;
  rate: number;
  bulk_rows: number;
  bulk_inflight: number;
  bulk_chunk_rows: string;
  aging_ms: string;
  interactive_alone_p50_ms: number;
  interactive_alone_p99_ms: number;
  interactive_loaded_p50_ms: number;
  interactive_loaded_p99_ms: number;
  /** Interactive calls sent while loaded, and those refused (by HTTP status). */
  interactive_loaded_calls: number;
  interactive_loaded_refused: Record<string, number>;
  p99_ratio: number;
  bulk_alone_rows_per_s: number;
  bulk_loaded_rows_per_s: number;
  bulk_ratio: number;
  goal_met: boolean;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'teiplex-bench-lanes-'));
  const model = await testModel({ kind: 'embedding', shape: args.model as ShapeName });
  const extra = [
    `max_request_inputs = 256`,
    `grpc_request_timeout_secs = 120`,
    ...(args['bulk-chunk-rows'] !== undefined ? [`bulk_chunk_rows = ${Number(args['bulk-chunk-rows'])}`] : []),
    ...(args['aging-ms'] !== undefined ? [`priority_aging_ms = ${Number(args['aging-ms'])}`] : []),
  ].join('\n');
  const file = await writeConfig(dir, extra, instanceToml(INSTANCE, model, 'embedding_cache = false'));
  const m = await startManager(file);
  const grpcClient = mux(Number(m.ready.grpc_port));
  let result: Result;
  try {
    await m.waitFor(INSTANCE, (i) => i.status === 'running', 180_000);
    const bodies = Array.from({ length: 4 }, (_, b) => Buffer.from(encodeTexts(Array.from({ length: BULK_ROWS }, (_, i) => text(`bulk${b}`, i)))));
    // Warm the child, both front ends and the manager's first-call costs.
    await interactive(m, 2, 'warm');
    await bulk(grpcClient, bodies, (() => {
      let n = 0;
      return () => n++ >= BULK_INFLIGHT;
    })());

    console.error(`interactive alone, ${SECONDS} s at ${RATE}/s`);
    const aloneRun = await interactive(m, SECONDS, 'alone');
    const alone = aloneRun.latencies;
    if (Object.keys(aloneRun.refused).length > 0) throw new Error(`interactive calls refused with nothing else running: ${JSON.stringify(aloneRun.refused)}`);
    console.error(`bulk alone, ${SECONDS} s`);
    const soloEnd = performance.now() + SECONDS * 1000;
    const solo = await bulk(grpcClient, bodies, () => performance.now() >= soloEnd);
    console.error(`both, ${SECONDS} s`);
    let stopBulk = false;
    const loadedBulk = bulk(grpcClient, bodies, () => stopBulk);
    // Let the bulk job fill the child first.
    await new Promise((r) => setTimeout(r, 1000));
    const loadedRun = await interactive(m, SECONDS, 'loaded');
    const loaded = loadedRun.latencies;
    stopBulk = true;
    const both = await loadedBulk;

    const q = (xs: number[], p: number) => Math.round(quantile(xs, p) * 10) / 10;
    const soloRate = solo.rows / solo.seconds;
    const loadedRate = both.rows / both.seconds;
    const p99Ratio = quantile(loaded, 0.99) / quantile(alone, 0.99);
    const bulkRatio = loadedRate / soloRate;
    result = {
      label: args.label!,
      model: args.model!,
      seconds: SECONDS,
      rate: RATE,
      bulk_rows: BULK_ROWS,
      bulk_inflight: BULK_INFLIGHT,
      bulk_chunk_rows: args['bulk-chunk-rows'] ?? 'default',
      aging_ms: args['aging-ms'] ?? 'default',
      interactive_alone_p50_ms: q(alone, 0.5),
      interactive_alone_p99_ms: q(alone, 0.99),
      interactive_loaded_p50_ms: q(loaded, 0.5),
      interactive_loaded_p99_ms: q(loaded, 0.99),
      interactive_loaded_calls: Math.round(SECONDS * RATE),
      interactive_loaded_refused: loadedRun.refused,
      p99_ratio: Math.round(p99Ratio * 100) / 100,
      bulk_alone_rows_per_s: Math.round(soloRate),
      bulk_loaded_rows_per_s: Math.round(loadedRate),
      bulk_ratio: Math.round(bulkRatio * 100) / 100,
      goal_met: p99Ratio <= 3 && bulkRatio >= 0.85 && Object.keys(loadedRun.refused).length === 0,
    };
  } finally {
    grpcClient.close();
    await m.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const refusals = (r: Result): string => {
    const n = Object.values(r.interactive_loaded_refused ?? {}).reduce((a, b) => a + b, 0);
    return n === 0 ? `0 of ${r.interactive_loaded_calls}` : `${n} of ${r.interactive_loaded_calls} (${Object.entries(r.interactive_loaded_refused).map(([st, k]) => `${k} x HTTP ${st}`).join(', ')})`;
  };
  const out = projectPath('bench', 'results');
  mkdirSync(out, { recursive: true });
  const jsonFile = path.join(out, 'lanes.json');
  const previous: Result[] = existsSync(jsonFile) ? (JSON.parse(readFileSync(jsonFile, 'utf8')) as { runs: Result[] }).runs : [];
  const runs = [...previous.filter((r) => r.label !== result.label), result];
  const lines = [
    `| run | bulk_chunk_rows | aging ms | interactive p50 alone / loaded (ms) | interactive p99 alone / loaded (ms) | p99 loaded / alone | interactive refused when loaded | bulk rows/s alone / loaded | bulk loaded / alone | goal (p99 <= 3x, bulk >= 0.85x, none refused) |`,
    `| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |`,
    ...runs.map(
      (r) =>
        `| ${r.label} | ${r.bulk_chunk_rows} | ${r.aging_ms} | ${r.interactive_alone_p50_ms} / ${r.interactive_loaded_p50_ms} | ${r.interactive_alone_p99_ms} / ${r.interactive_loaded_p99_ms} | ${r.p99_ratio.toFixed(2)}x | ${refusals(r)} | ${r.bulk_alone_rows_per_s} / ${r.bulk_loaded_rows_per_s} | ${r.bulk_ratio.toFixed(2)}x | ${r.goal_met ? 'met' : 'not met'} |`,
    ),
  ];
  const table = lines.join('\n');
  console.log(`\npriority lanes, ${args.model}, ${SECONDS} s per phase, interactive /embed at ${RATE}/s, bulk EmbedArrow of ${BULK_ROWS} rows x ${BULK_INFLIGHT} in flight\n\n${table}\n`);
  writeFileSync(jsonFile, JSON.stringify({ runs }, null, 2));
  writeFileSync(path.join(out, 'lanes.md'), `${table}\n`);
}

await main();
