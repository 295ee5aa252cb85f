/**
 * Batch jobs (issue 16) against a client's own Arrow calls, and interactive latency during a job.
 * One real manager, one instance `m` of the generated model (--model, default minilm-l6), the
 * embedding cache off (every text is computed), --rows short texts (5 to 40 words, seeded, none
 * repeated):
 *
 * 1. interactive alone: a closed-loop client, --interactive-inflight calls in flight, each one
 *    short text as `POST /v1/embeddings` (no priority header: the interactive lane, the data
 *    plane's default), for --idle-seconds;
 * 2. Arrow calls: a client sends the rows as EmbedArrow calls of --arrow-rows rows (LZ4 Arrow IPC,
 *    bodies written before the clock starts), --concurrency in flight, over the gRPC multiplexer;
 *    rows/s from the first call to the last answer;
 * 3. batch jobs, one per --formats entry: the same rows uploaded as a batch input file (`jsonl`: one
 *    OpenAI `/v1/embeddings` line per text; `arrow`: an Arrow IPC stream with a `text` column, the
 *    model named in the create call; `parquet`: the same table as Parquet), `POST /v1/batches`, polled every --poll-ms until it ends.
 *    rows/s from the create call to the poll that saw `completed` (the client's clock), and from
 *    the batch's `in_progress_at` to `completed_at` (the server's, whole seconds); job / Arrow;
 * 4. interactive during a job: a --loaded-format job of the first --loaded-rows rows, and the same
 *    interactive client from the poll that sees it `in_progress` until it ends: p50 / p99 against
 *    phase 1's, and the job's rows/s under that load;
 * 5. for comparison, the same client while Arrow calls carry the first --loaded-rows rows.
 *
 * Phases 2 and 3 run --rounds times, alternating. Every result is checked: each Arrow answer has
 * its rows; a job's counts are all completed, its output has one answer per row (JSONL: every
 * custom_id once, status 200; Arrow: the rows in order), and sampled rows' vectors match the
 * Arrow calls' (max |difference| reported). The manager's and the child's CPU (utime + stime from
 * /proc/<pid>/stat) and the bench client's own are reported per row. Output files are deleted once
 * checked (they count against the key's storage).
 *
 *   npm run build && node --import tsx bench/batch.ts [--rows 100000] [--arrow-rows 1000]
 *        [--concurrency 2] [--formats jsonl,arrow] [--rounds 1] [--idle-seconds 15]
 *        [--loaded-rows 20000] [--loaded-format jsonl] [--interactive-inflight 1]
 *        [--chunk-rows N] [--chunks-in-flight N] [--encoding-format float|base64] [--poll-ms 250]
 *        [--seed 20240611] [--model minilm-l6] [--label batch]
 *
 * Prints the table; writes bench/results/batch.json and batch.md (runs of other labels kept).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { readParquet, Table, writeParquet } from 'parquet-wasm';
import { request } from 'undici';
import { decodeDense, encodeTexts } from '../src/arrow/embedding-batch.js';
import { DEFAULT_SEED, makeText } from '../src/bench/texts.js';
import { projectPath } from '../src/common/paths.js';
import { seededUniform } from '../src/testmodel/rng.js';
import type { ShapeName } from '../src/testmodel/shapes.js';
import { instanceToml, writeConfig } from '../test/helpers/data-plane.js';
import { startManager, type ManagerProcess } from '../test/helpers/manager-process.js';
import { testModel } from '../test/helpers/models.js';
import { type AnyClient, mux, unary } from '../test/helpers/mux-client.js';
import { type CpuTicks, parseProcStat } from './lib/load-tools.js';
import { numberFlag } from './lib/number-flag.js';
import { BatchApi, BatchApiError, type BatchObject, isTerminal } from './lib/openai-batch.js';
import { quantile } from './lib/stats.js';

const TOOL = 'bench/batch.ts';
const { values: args } = parseArgs({
  options: {
    label: { type: 'string', default: 'batch' },
    model: { type: 'string', default: 'minilm-l6' },
    rows: { type: 'string', default: '100000' },
    'arrow-rows': { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '2' },
    formats: { type: 'string', default: 'jsonl,arrow' },
    rounds: { type: 'string', default: '1' },
    'idle-seconds': { type: 'string', default: '15' },
    'loaded-rows': { type: 'string' },
    'loaded-format': { type: 'string', default: 'jsonl' },
    'interactive-inflight': { type: 'string', default: '1' },
    'chunk-rows': { type: 'string' },
    'chunks-in-flight': { type: 'string' },
    'encoding-format': { type: 'string', default: 'float' },
    'poll-ms': { type: 'string', default: '250' },
    seed: { type: 'string', default: String(DEFAULT_SEED) },
  },
  strict: true,
});

const ROWS = numberFlag(TOOL, args, 'rows', 1);
const ARROW_ROWS = numberFlag(TOOL, args, 'arrow-rows', 1);
const CONCURRENCY = numberFlag(TOOL, args, 'concurrency', 1);
const ROUNDS = numberFlag(TOOL, args, 'rounds', 1);
const IDLE_SECONDS = numberFlag(TOOL, args, 'idle-seconds', 1);
const LOADED_ROWS = args['loaded-rows'] === undefined ? Math.min(ROWS, 20_000) : Math.min(ROWS, numberFlag(TOOL, args, 'loaded-rows', 0));
const INFLIGHT = numberFlag(TOOL, args, 'interactive-inflight', 1);
const POLL_MS = numberFlag(TOOL, args, 'poll-ms', 10);
const SEED = numberFlag(TOOL, args, 'seed', 0);
const CHUNK_ROWS = args['chunk-rows'] === undefined ? undefined : numberFlag(TOOL, args, 'chunk-rows', 1);
const CHUNKS_IN_FLIGHT = args['chunks-in-flight'] === undefined ? undefined : numberFlag(TOOL, args, 'chunks-in-flight', 1);

type Format = 'jsonl' | 'arrow' | 'parquet';
const FORMATS = args.formats!.split(',').map((f) => f.trim()).filter((f) => f !== '');
const LOADED_FORMAT = args['loaded-format']!;
const ENCODING = args['encoding-format']!;
for (const f of [...FORMATS, LOADED_FORMAT]) {
  if (f !== 'jsonl' && f !== 'arrow' && f !== 'parquet') {
    process.stderr.write(`${TOOL}: --formats and --loaded-format take jsonl, arrow and parquet, got '${f}'\n`);
    process.exit(2);
  }
}
if (ENCODING !== 'float' && ENCODING !== 'base64') {
  process.stderr.write(`${TOOL}: --encoding-format must be float or base64, got '${ENCODING}'\n`);
  process.exit(2);
}
const INSTANCE = 'm';
/** /proc's clock ticks per second (USER_HZ, 100 on Linux). */
const TICKS = 100;
/** Rows whose vectors are compared between the Arrow calls and each job's output. */
const SAMPLES = 64;

// ---- the texts ----

/** `n` short texts (5 to 40 words), seeded; `tag` (when given) starts each one. */
function shortTexts(n: number, seed: number, tag = ''): string[] {
  const r = seededUniform(seed);
  return Array.from({ length: n }, (_, i) => `${tag === '' ? '' : `${tag} ${i}: `}${makeText(5 + Math.floor(r() * 36), r)}`);
}

function jsonlInput(texts: readonly string[]): Buffer {
  const lines = texts.map((t, i) => JSON.stringify({ custom_id: `r${i}`, method: 'POST', url: '/v1/embeddings', body: { model: INSTANCE, input: t, ...(ENCODING === 'float' ? {} : { encoding_format: ENCODING }) } }));
  return Buffer.from(`${lines.join('\n')}\n`);
}

// ---- CPU ----

interface Cpu {
  manager: CpuTicks;
  child: CpuTicks;
  client: NodeJS.CpuUsage;
}

const ticksOf = (pid: number): CpuTicks => parseProcStat(readFileSync(`/proc/${pid}/stat`, 'latin1'));
const cpuNow = (managerPid: number, childPid: number): Cpu => ({ manager: ticksOf(managerPid), child: ticksOf(childPid), client: process.cpuUsage() });
/** CPU µs per row of manager, child and this client between two readings. */
function cpuPerRow(a: Cpu, b: Cpu, rows: number): { manager: number; child: number; client: number } {
  const us = (x: CpuTicks, y: CpuTicks) => ((y.utime + y.stime - x.utime - x.stime) * 1e6) / TICKS / rows;
  return { manager: us(a.manager, b.manager), child: us(a.child, b.child), client: (b.client.user + b.client.system - a.client.user - a.client.system) / rows };
}

// ---- interactive ----

interface Interactive {
  latencies: number[];
  refused: Record<string, number>;
}

/** Single-text `POST /v1/embeddings`, INFLIGHT callers in a closed loop, until `stop()` says so. */
async function interactive(m: ManagerProcess, tag: string, stop: () => boolean): Promise<Interactive> {
  const url = `http://127.0.0.1:${m.apiPort}/v1/embeddings`;
  const texts = shortTexts(4096, SEED + 7, tag);
  const latencies: number[] = [];
  const refused: Record<string, number> = {};
  let k = 0;
  await Promise.all(
    Array.from({ length: INFLIGHT }, async () => {
      while (!stop()) {
        const body = JSON.stringify({ model: INSTANCE, input: texts[k++ % texts.length] });
        const started = performance.now();
        const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
        const answer = await res.body.text();
        if (res.statusCode === 200) latencies.push(performance.now() - started);
        else {
          refused[res.statusCode] = (refused[res.statusCode] ?? 0) + 1;
          if (refused[res.statusCode] === 1) console.error(`/v1/embeddings: HTTP ${res.statusCode}: ${answer.slice(0, 200)}`);
        }
      }
    }),
  );
  return { latencies, refused };
}

// ---- the Arrow client ----

interface ArrowRun {
  rows: number;
  seconds: number;
  cpu: { manager: number; child: number; client: number };
  dim: number;
}

/** EmbedArrow calls of ARROW_ROWS rows, CONCURRENCY in flight, over the first `rows` rows once; `samples` gets the sampled rows' vectors. */
async function arrowCalls(client: AnyClient, bodies: readonly Buffer[], rows: number, pids: () => Promise<[number, number]>, samples: Map<number, Float32Array>): Promise<ArrowRun> {
  const calls = Math.ceil(rows / ARROW_ROWS);
  const [mp, cp] = await pids();
  let next = 0;
  let dim = 0;
  const before = cpuNow(mp, cp);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let k = next++; k < calls; k = next++) {
        const { res } = await unary<{ arrow_ipc: Buffer }>(client, 'EmbedArrow', { target: { instance_name: INSTANCE }, arrow_ipc: bodies[k], truncate: true });
        const d = decodeDense(res.arrow_ipc);
        const want = Math.min(ARROW_ROWS, ROWS - k * ARROW_ROWS);
        if (d.rows !== want) throw new Error(`EmbedArrow call ${k}: ${d.rows} rows answered, ${want} sent`);
        dim = d.dim;
        for (let i = 0; i < d.rows; i++) {
          const row = k * ARROW_ROWS + i;
          if (isSample(row)) samples.set(row, d.values.slice(i * d.dim, (i + 1) * d.dim));
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const sent = Math.min(calls * ARROW_ROWS, ROWS);
  return { rows: sent, seconds, cpu: cpuPerRow(before, cpuNow(mp, cp), sent), dim };
}

const SAMPLE_STEP = Math.max(1, Math.floor(ROWS / SAMPLES));
const isSample = (row: number): boolean => row % SAMPLE_STEP === 0;

// ---- batch jobs ----

interface JobRun {
  format: Format;
  rows: number;
  /** POST /v1/batches sent -> the poll that saw it completed (client clock). */
  seconds: number;
  /** completed_at - in_progress_at (the Batch object's whole seconds). */
  server_seconds: number | null;
  /** POST /v1/batches sent -> the poll that saw it in_progress. */
  queued_seconds: number;
  cpu: { manager: number; child: number; client: number };
  check: string;
  interactive?: Interactive;
}

const EXTENSION: Record<Format, string> = { jsonl: 'jsonl', arrow: 'arrows', parquet: 'parquet' };
const CONTENT_TYPE: Record<Format, string> = { jsonl: 'application/jsonl', arrow: 'application/vnd.apache.arrow.stream', parquet: 'application/vnd.apache.parquet' };

/** The rows as a table with a `text` column: an Arrow IPC stream (uncompressed, batches of 4096 rows), or Parquet written from it. */
function tableInput(format: 'arrow' | 'parquet', texts: readonly string[]): Buffer {
  const ipc = encodeTexts(texts, { compress: false, batchSize: 4096 });
  return Buffer.from(format === 'arrow' ? ipc : writeParquet(Table.fromIPCStream(ipc)));
}

interface Uploaded {
  format: Format;
  fileId: string;
  rows: number;
  uploadSeconds: number;
  bytes: number;
}

async function upload(api: BatchApi, format: Format, texts: readonly string[]): Promise<Uploaded> {
  const bytes = format === 'jsonl' ? jsonlInput(texts) : tableInput(format, texts);
  const t0 = performance.now();
  const file = await api.upload(bytes, `bench.${EXTENSION[format]}`, CONTENT_TYPE[format]);
  return { format, fileId: file.id, rows: texts.length, uploadSeconds: (performance.now() - t0) / 1000, bytes: bytes.length };
}

/** Sampled rows' vectors against the Arrow calls': the largest absolute difference of any element. */
function maxDiff(got: Map<number, Float32Array>, want: Map<number, Float32Array>): number {
  let worst = 0;
  for (const [row, v] of got) {
    const w = want.get(row);
    if (w === undefined) continue;
    if (w.length !== v.length) return Number.POSITIVE_INFINITY;
    for (let i = 0; i < v.length; i++) worst = Math.max(worst, Math.abs(v[i]! - w[i]!));
  }
  return worst;
}

/** The embedding of one /v1/embeddings answer (float list or base64 of little-endian float32). */
function vectorOf(e: number[] | string): Float32Array {
  if (typeof e !== 'string') return Float32Array.from(e);
  const b = Buffer.from(e, 'base64');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** Reads the job's output, checks one answer per row, compares sampled vectors; deletes the output and error files. */
async function checkOutput(api: BatchApi, b: BatchObject, format: Format, rows: number, dim: number, arrowSamples: Map<number, Float32Array>): Promise<string> {
  const problems: string[] = [];
  if (b.request_counts.completed !== rows || b.request_counts.failed !== 0) problems.push(`request_counts ${JSON.stringify(b.request_counts)}`);
  if (b.output_file_id === null) return [...problems, 'no output file'].join('; ');
  const got = new Map<number, Float32Array>();
  if (format === 'jsonl') {
    const seen = new Uint8Array(rows);
    let bad = 0;
    let firstBad = '';
    const lines = await api.lines(b.output_file_id, (line) => {
      const o = JSON.parse(line) as { custom_id: string; response: { status_code: number; body: { data: Array<{ embedding: number[] | string }> } } | null };
      const row = Number(/^r(\d+)$/.exec(o.custom_id)?.[1] ?? -1);
      const emb = o.response?.status_code === 200 ? o.response.body.data[0]?.embedding : undefined;
      if (row < 0 || row >= rows || seen[row] === 1 || emb === undefined) {
        bad++;
        firstBad ||= line.slice(0, 200);
        return;
      }
      seen[row] = 1;
      const v = vectorOf(emb);
      if (v.length !== dim) {
        bad++;
        firstBad ||= `${o.custom_id}: ${v.length} dimensions`;
      }
      if (isSample(row)) got.set(row, v);
    });
    if (lines !== rows) problems.push(`${lines} output lines for ${rows} rows`);
    if (bad > 0) problems.push(`${bad} bad output lines (first: ${firstBad})`);
  } else {
    try {
      const bytes = await api.content(b.output_file_id);
      const d = decodeDense(format === 'parquet' ? readParquet(bytes).intoIPCStream() : bytes);
      if (d.rows !== rows) problems.push(`${d.rows} output rows for ${rows}`);
      if (d.dim !== dim) problems.push(`${d.dim} dimensions, the Arrow calls answered ${dim}`);
      for (let row = 0; row < Math.min(rows, d.rows); row += SAMPLE_STEP) got.set(row, d.values.slice(row * d.dim, (row + 1) * d.dim));
    } catch (e) {
      problems.push(`output not readable as ${format === 'parquet' ? 'Parquet' : 'an Arrow IPC stream'} with an embeddings column: ${(e as Error).message}`);
    }
  }
  const diff = maxDiff(got, arrowSamples);
  if (!(diff <= 1e-4)) problems.push(`sampled vectors differ from the Arrow calls' by up to ${diff}`);
  await api.remove(b.output_file_id);
  if (b.error_file_id !== null) await api.remove(b.error_file_id);
  return problems.length === 0 ? `ok: ${rows} rows, ${got.size} sampled vectors within ${diff.toExponential(1)}` : problems.join('; ');
}

/** A job that ended other than completed. */
class JobEnded extends Error {
  constructor(
    readonly batch: BatchObject,
    format: Format,
  ) {
    super(`batch ${batch.id} (${format} input) ended ${batch.status}: ${batch.errors?.data.map((e) => `${e.code}: ${e.message}`).join('; ') ?? 'no errors listed'} ${JSON.stringify(batch.request_counts)}`);
  }
}

/** One job over an uploaded file: created, polled until it ends, its output checked; with `load`, the interactive client runs while it is in progress. */
async function job(api: BatchApi, m: ManagerProcess, up: Uploaded, pids: () => Promise<[number, number]>, dim: number, arrowSamples: Map<number, Float32Array>, load = false): Promise<JobRun> {
  const [mp, cp] = await pids();
  const timeoutMs = (120 + up.rows / 10) * 1000;
  const before = cpuNow(mp, cp);
  const t0 = performance.now();
  const created = await api.create(up.fileId, up.format === 'jsonl' ? {} : { model: INSTANCE });
  const started = await api.poll(created.id, (b) => b.status !== 'validating', POLL_MS, timeoutMs);
  let inter: Promise<Interactive> | undefined;
  let done = false;
  if (load) inter = interactive(m, 'loaded', () => done);
  let end: { batch: BatchObject; at: number };
  try {
    end = await api.poll(created.id, isTerminal, POLL_MS, timeoutMs);
  } finally {
    done = true;
  }
  const cpu = cpuPerRow(before, cpuNow(mp, cp), up.rows);
  const b = end.batch;
  if (b.status !== 'completed') throw new JobEnded(b, up.format);
  const interactiveRun = inter === undefined ? undefined : await inter;
  const check = await checkOutput(api, b, up.format, up.rows, dim, arrowSamples);
  return {
    format: up.format,
    rows: up.rows,
    seconds: (end.at - t0) / 1000,
    server_seconds: b.in_progress_at !== null && b.completed_at !== null ? b.completed_at - b.in_progress_at : null,
    queued_seconds: (started.at - t0) / 1000,
    cpu,
    check,
    ...(interactiveRun === undefined ? {} : { interactive: interactiveRun }),
  };
}

// ---- the report ----

interface Row {
  phase: string;
  rows: number | null;
  seconds: number | null;
  rows_per_s: number | null;
  /** Job rows/s / the Arrow calls' rows/s. */
  vs_arrow: number | null;
  /** rows / (completed_at - in_progress_at). */
  server_rows_per_s: number | null;
  manager_cpu_us_per_row: number | null;
  child_cpu_us_per_row: number | null;
  client_cpu_us_per_row: number | null;
  interactive_p50_ms: number | null;
  interactive_p99_ms: number | null;
  interactive_calls: number | null;
  interactive_refused: Record<string, number> | null;
  check: string;
}

interface Result {
  label: string;
  model: string;
  rows: number;
  arrow_rows: number;
  concurrency: number;
  rounds: number;
  formats: string[];
  loaded_rows: number;
  loaded_format: string;
  interactive_inflight: number;
  chunk_rows: string;
  chunks_in_flight: string;
  encoding_format: string;
  uploads: Array<{ format: string; rows: number; bytes: number; seconds: number }>;
  table: Row[];
  /** Every round's raw figures. */
  arrow_runs: ArrowRun[];
  job_runs: Array<Omit<JobRun, 'interactive'>>;
  /** Each job format's rows/s / the Arrow calls' (>= 0.9 is the goal). */
  ratios: Record<string, number>;
  interactive_p99_ratio: number;
  /** The same client's p99 while Arrow calls of loaded_rows rows run / alone (for comparison). */
  interactive_p99_ratio_beside_arrow: number;
  goal_met: boolean;
}

const r1 = (x: number): number => Math.round(x * 10) / 10;
const r2 = (x: number): number => Math.round(x * 100) / 100;
const empty = { rows: null, seconds: null, rows_per_s: null, vs_arrow: null, server_rows_per_s: null, manager_cpu_us_per_row: null, child_cpu_us_per_row: null, client_cpu_us_per_row: null, interactive_p50_ms: null, interactive_p99_ms: null, interactive_calls: null, interactive_refused: null };

function interactiveCells(i: Interactive): Pick<Row, 'interactive_p50_ms' | 'interactive_p99_ms' | 'interactive_calls' | 'interactive_refused'> {
  return { interactive_p50_ms: r1(quantile(i.latencies, 0.5)), interactive_p99_ms: r1(quantile(i.latencies, 0.99)), interactive_calls: i.latencies.length + Object.values(i.refused).reduce((a, b) => a + b, 0), interactive_refused: i.refused };
}

/** Rows/s and CPU per row over several rounds: total rows / total seconds, CPU weighted by rows. */
function pooled<T extends { rows: number; seconds: number; cpu: { manager: number; child: number; client: number } }>(runs: readonly T[]) {
  const rows = runs.reduce((n, r) => n + r.rows, 0);
  const seconds = runs.reduce((n, r) => n + r.seconds, 0);
  const cpu = (k: 'manager' | 'child' | 'client') => Math.round(runs.reduce((n, r) => n + r.cpu[k] * r.rows, 0) / rows);
  return { rows, seconds: r1(seconds), rows_per_s: r1(rows / seconds), manager_cpu_us_per_row: cpu('manager'), child_cpu_us_per_row: cpu('child'), client_cpu_us_per_row: cpu('client') };
}

const cell = (x: number | null, suffix = ''): string => (x === null || !Number.isFinite(x) ? '-' : suffix === 'x' ? `${x.toFixed(2)}x` : `${x}${suffix}`);

function markdown(r: Result): string {
  const refused = (x: Record<string, number> | null) => (x === null ? '' : Object.keys(x).length === 0 ? ', 0 refused' : `, refused ${Object.entries(x).map(([s, k]) => `${k} x HTTP ${s}`).join(', ')}`);
  const lines = [
    `| phase | rows | seconds | rows/s | job / Arrow calls | rows/s in_progress -> completed | CPU µs per row: manager / child / bench client | interactive p50 / p99 ms (calls) | check |`,
    `| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |`,
    ...r.table.map(
      (t) =>
        `| ${t.phase} | ${cell(t.rows)} | ${cell(t.seconds)} | ${cell(t.rows_per_s)} | ${cell(t.vs_arrow, 'x')} | ${cell(t.server_rows_per_s)} | ${t.manager_cpu_us_per_row === null ? '-' : `${t.manager_cpu_us_per_row} / ${t.child_cpu_us_per_row} / ${t.client_cpu_us_per_row}`} | ${t.interactive_p99_ms === null ? '-' : `${t.interactive_p50_ms} / ${t.interactive_p99_ms} (${t.interactive_calls}${refused(t.interactive_refused)})`} | ${t.check} |`,
    ),
  ];
  const ratios = Object.entries(r.ratios).map(([f, x]) => `${f} ${x.toFixed(2)}x`).join(', ');
  return [
    `### ${r.label}`,
    '',
    `${r.model}, ${r.rows} rows, Arrow calls of ${r.arrow_rows} rows x ${r.concurrency} in flight, ${r.rounds} round(s); batch_chunk_rows ${r.chunk_rows}, batch_chunks_in_flight ${r.chunks_in_flight}; JSONL encoding_format ${r.encoding_format}; interactive: ${r.interactive_inflight} in flight, during a ${r.loaded_format} job of ${r.loaded_rows} rows`,
    '',
    lines.join('\n'),
    '',
    `job / Arrow calls: ${ratios} (goal >= 0.9x: ${r.goal_met ? 'met' : 'not met'}); interactive p99 during a job / alone: ${r.interactive_p99_ratio.toFixed(2)}x (during Arrow calls / alone: ${r.interactive_p99_ratio_beside_arrow?.toFixed(2) ?? '-'}x)`,
    '',
  ].join('\n');
}

// ---- main ----

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'teiplex-bench-batch-'));
  const model = await testModel({ kind: 'embedding', shape: args.model as ShapeName });
  const extra = [
    'embedding_cache_mb = 0',
    'grpc_request_timeout_secs = 300',
    'batch_storage_mb_per_key = 65536',
    'batch_max_file_mb = 4096',
    `batch_max_rows = ${Math.max(1_000_000, ROWS)}`,
    ...(CHUNK_ROWS !== undefined ? [`batch_chunk_rows = ${CHUNK_ROWS}`] : []),
    ...(CHUNKS_IN_FLIGHT !== undefined ? [`batch_chunks_in_flight = ${CHUNKS_IN_FLIGHT}`] : []),
  ].join('\n');
  const file = await writeConfig(dir, extra, instanceToml(INSTANCE, model, 'embedding_cache = false'));
  const m = await startManager(file);
  const grpcClient = mux(Number(m.ready.grpc_port));
  const api = new BatchApi(m.apiPort);
  const pids = async (): Promise<[number, number]> => {
    const info = await m.waitFor(INSTANCE, (i) => i.status === 'running' && Number(i.pid) > 0, 180_000);
    return [m.proc.pid!, Number(info.pid)];
  };
  let result: Result;
  try {
    await pids();
    console.error(`${ROWS} texts, Arrow bodies and input files`);
    const texts = shortTexts(ROWS, SEED);
    const bodies: Buffer[] = [];
    for (let i = 0; i < ROWS; i += ARROW_ROWS) bodies.push(Buffer.from(encodeTexts(texts.slice(i, i + ARROW_ROWS))));
    const uploads = new Map<Format, Uploaded>();
    /** Formats the server refused (an Arrow input file, on a server without table input): the refusal. */
    const unsupported = new Map<Format, string>();
    for (const f of FORMATS as Format[]) {
      try {
        uploads.set(f, await upload(api, f, texts));
        console.error(`uploaded ${f}: ${uploads.get(f)!.bytes} bytes in ${uploads.get(f)!.uploadSeconds.toFixed(2)} s`);
      } catch (e) {
        if (!(e instanceof BatchApiError) || f === 'jsonl') throw e;
        unsupported.set(f, e.message);
      }
    }
    const loadedUpload = await upload(api, LOADED_FORMAT as Format, texts.slice(0, LOADED_ROWS));

    // Warm the child, both front ends, the batch path and the manager's first-call costs.
    await unary(grpcClient, 'EmbedArrow', { target: { instance_name: INSTANCE }, arrow_ipc: Buffer.from(encodeTexts(shortTexts(64, SEED + 3, 'warm'))), truncate: true });
    const warmStop = performance.now() + 2000;
    await interactive(m, 'warm', () => performance.now() >= warmStop);
    const warmJob = await upload(api, 'jsonl', shortTexts(32, SEED + 5, 'warm'));
    const warmBatch = await api.create(warmJob.fileId);
    await api.poll(warmBatch.id, isTerminal, POLL_MS, 120_000);

    console.error(`interactive alone, ${IDLE_SECONDS} s, ${INFLIGHT} in flight`);
    const idleEnd = performance.now() + IDLE_SECONDS * 1000;
    const idle = await interactive(m, 'idle', () => performance.now() >= idleEnd);
    if (Object.keys(idle.refused).length > 0) throw new Error(`interactive calls refused with nothing else running: ${JSON.stringify(idle.refused)}`);

    const arrowRuns: ArrowRun[] = [];
    const jobRuns: JobRun[] = [];
    const arrowSamples = new Map<number, Float32Array>();
    let dim = 0;
    for (let round = 0; round < ROUNDS; round++) {
      console.error(`round ${round + 1}: Arrow calls, ${ROWS} rows`);
      const a = await arrowCalls(grpcClient, bodies, ROWS, pids, arrowSamples);
      dim = a.dim;
      arrowRuns.push(a);
      console.error(`  ${(a.rows / a.seconds).toFixed(1)} rows/s`);
      for (const f of FORMATS as Format[]) {
        if (unsupported.has(f)) continue;
        console.error(`round ${round + 1}: ${f} batch job, ${ROWS} rows`);
        let j: JobRun;
        try {
          j = await job(api, m, uploads.get(f)!, pids, dim, arrowSamples);
        } catch (e) {
          // A server without table input refuses the create call (400) or fails the job before any
          // row; JSONL is the baseline and must work.
          const refused = e instanceof BatchApiError || (e instanceof JobEnded && e.batch.status === 'failed' && e.batch.request_counts.completed === 0);
          if (!refused || f === 'jsonl' || round > 0) throw e;
          unsupported.set(f, (e as Error).message);
          console.error(`  refused: ${(e as Error).message}`);
          continue;
        }
        jobRuns.push(j);
        console.error(`  ${(j.rows / j.seconds).toFixed(1)} rows/s; ${j.check}`);
      }
    }
    console.error(`interactive during a ${LOADED_FORMAT} job of ${LOADED_ROWS} rows`);
    const loaded = await job(api, m, loadedUpload, pids, dim, arrowSamples, true);
    console.error(`interactive during Arrow calls of ${LOADED_ROWS} rows`);
    let arrowDone = false;
    const besideArrow = interactive(m, 'beside-arrow', () => arrowDone);
    let loadedArrow: ArrowRun;
    try {
      loadedArrow = await arrowCalls(grpcClient, bodies, LOADED_ROWS, pids, new Map());
    } finally {
      arrowDone = true;
    }
    const arrowInteractive = await besideArrow;

    const arrow = pooled(arrowRuns);
    const table: Row[] = [
      { phase: 'interactive alone', ...empty, ...interactiveCells(idle), check: '' },
      { phase: `Arrow calls (${ARROW_ROWS} rows x ${CONCURRENCY})`, ...empty, ...arrow, check: 'every answer has its rows' },
    ];
    const ratios: Record<string, number> = {};
    for (const f of FORMATS as Format[]) {
      if (unsupported.has(f)) {
        table.push({ phase: `batch job, ${f} input`, ...empty, check: `not supported by this server: ${unsupported.get(f)}` });
        continue;
      }
      const runs = jobRuns.filter((j) => j.format === f);
      const p = pooled(runs);
      const serverSecs = runs.every((j) => j.server_seconds !== null) ? runs.reduce((n, j) => n + j.server_seconds!, 0) : null;
      ratios[f] = r2(p.rows_per_s / arrow.rows_per_s);
      table.push({ phase: `batch job, ${f} input`, ...empty, ...p, vs_arrow: ratios[f], server_rows_per_s: serverSecs === null || serverSecs === 0 ? null : r1(p.rows / serverSecs), check: [...new Set(runs.map((j) => j.check))].join('; ') });
    }
    const lp = pooled([loaded]);
    table.push({
      phase: `batch job, ${LOADED_FORMAT} input, with the interactive client`,
      ...lp,
      vs_arrow: r2(lp.rows_per_s / arrow.rows_per_s),
      server_rows_per_s: loaded.server_seconds ? r1(loaded.rows / loaded.server_seconds) : null,
      ...interactiveCells(loaded.interactive!),
      check: loaded.check,
    });
    const la = pooled([loadedArrow]);
    table.push({
      phase: `Arrow calls, with the interactive client`,
      ...la,
      vs_arrow: null,
      server_rows_per_s: null,
      ...interactiveCells(arrowInteractive),
      check: 'every answer has its rows',
    });
    const checksOk = [...jobRuns, loaded].every((j) => j.check.startsWith('ok'));
    result = {
      label: args.label!,
      model: args.model!,
      rows: ROWS,
      arrow_rows: ARROW_ROWS,
      concurrency: CONCURRENCY,
      rounds: ROUNDS,
      formats: FORMATS,
      loaded_rows: LOADED_ROWS,
      loaded_format: LOADED_FORMAT,
      interactive_inflight: INFLIGHT,
      chunk_rows: CHUNK_ROWS === undefined ? 'default' : String(CHUNK_ROWS),
      chunks_in_flight: CHUNKS_IN_FLIGHT === undefined ? 'default' : String(CHUNKS_IN_FLIGHT),
      encoding_format: ENCODING,
      uploads: [...uploads.values(), loadedUpload].map((u) => ({ format: u.format, rows: u.rows, bytes: u.bytes, seconds: r2(u.uploadSeconds) })),
      table,
      arrow_runs: arrowRuns,
      job_runs: [...jobRuns, loaded].map(({ interactive: _i, ...j }) => j),
      ratios,
      interactive_p99_ratio: r2(quantile(loaded.interactive!.latencies, 0.99) / quantile(idle.latencies, 0.99)),
      interactive_p99_ratio_beside_arrow: r2(quantile(arrowInteractive.latencies, 0.99) / quantile(idle.latencies, 0.99)),
      goal_met: checksOk && Object.values(ratios).every((x) => x >= 0.9),
    };
  } finally {
    grpcClient.close();
    await m.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const out = projectPath('bench', 'results');
  mkdirSync(out, { recursive: true });
  const jsonFile = path.join(out, 'batch.json');
  const previous: Result[] = existsSync(jsonFile) ? (JSON.parse(readFileSync(jsonFile, 'utf8')) as { runs: Result[] }).runs : [];
  const runs = [...previous.filter((r) => r.label !== result.label), result];
  console.log(`\nbatch jobs vs Arrow calls\n\n${markdown(result)}`);
  writeFileSync(jsonFile, JSON.stringify({ runs }, null, 2));
  writeFileSync(path.join(out, 'batch.md'), runs.map(markdown).join('\n'));
}

await main();
