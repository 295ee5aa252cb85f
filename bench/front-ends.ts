/**
 * What the manager (`teiplex serve`) costs per forwarded call, measured with load generators
 * not written in Node (issue 12): h2load (gRPC over HTTP/2) and hey (HTTP/1.1), against
 *
 *   direct   the `teiplex router` child's own ports;
 *   floor    bench/floor-proxy.ts in front of the child's gRPC port: a bare node:http2 forwarding
 *            proxy, its own process (what Node itself costs per forwarded call; gRPC only);
 *   manager  the manager's gRPC multiplexer (`TeiMultiplexer/Embed`, Target instance_name) and its
 *            HTTP data plane (`POST /embed`, the body's `model` naming the instance).
 *
 * One real manager with two instances, generated models `tiny` and `minilm-l6` (all-MiniLM-L6-v2's
 * architecture, real compute cost). For each model and front end, rounds alternate the targets
 * (direct, floor, manager, direct, floor, manager, ...), each run `--duration` seconds:
 *
 *   gRPC   h2load -c 4 -m 8, unary `Embed` of one 86-character text (body file: 5-byte gRPC
 *          prefix + protobuf, from the repo's protos). h2load counts HTTP 200 even when the gRPC
 *          status in the trailers is an error, so before each run one call with the same bytes
 *          over node:http2 must answer grpc-status 0 with an embedding of the model's dimension,
 *          and a run whose response DATA is smaller than one embedding per call fails;
 *   HTTP   hey -c 16, `POST /embed` `{"inputs": text}` (manager: plus `"model"`);
 *   Arrow  `teiplex bench -m arrow` with --arrow-rows rows of the same text per call (a few calls
 *          per round): `EmbedArrow` through the manager against the same rows sent straight to the
 *          child's `teiplex.v1.Batch` (`--direct`, as the multiplexer chunks them).
 *
 * Per run: utime+stime from /proc/<pid>/stat of the manager, the child and the floor proxy, before
 * and after; CPU microseconds per call = delta / completed calls. Latency p50/p99/max from
 * h2load's --log-file, hey's CSV, `teiplex bench`'s report.
 *
 * A missing h2load or hey skips only its front end, naming the Debian package to install
 * (`apt-get install -y nghttp2-client hey`).
 *
 *   npm run bench:front-ends -- [--rounds 3 --duration 5 --models tiny,minilm-l6 --only grpc,http,arrow]
 *        [--h2load-clients 4 --h2load-streams 8 --hey-concurrency 16]
 *        [--arrow-rows 1000 --arrow-calls 3 --arrow-concurrency 1 --arrow-models minilm-l6]
 *
 * Prints the tables; writes bench/results/front-ends.json and front-ends.md.
 */
import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { parseArgs, promisify } from 'node:util';
import { projectPath } from '../src/common/paths.js';
import { muxPackageDefinition, serviceDefinition } from '../src/tei/proto.js';
import type { ShapeName } from '../src/testmodel/shapes.js';
import { childHttpPort } from '../test/helpers/data-plane.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../test/helpers/manager-process.js';
import { testModel } from '../test/helpers/models.js';
import { findReadyLine } from '../test/helpers/router-process.js';
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
  type CpuTicks,
  type LatencySummary,
} from './lib/load-tools.js';

const execFileP = promisify(execFile);

const { values: flags } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '5' },
    models: { type: 'string', default: 'tiny,minilm-l6' },
    only: { type: 'string', default: 'grpc,http,arrow' },
    'h2load-clients': { type: 'string', default: '4' },
    'h2load-streams': { type: 'string', default: '8' },
    'hey-concurrency': { type: 'string', default: '16' },
    'warmup-requests': { type: 'string', default: '300' },
    'arrow-rows': { type: 'string', default: '1000' },
    'arrow-calls': { type: 'string', default: '3' },
    'arrow-concurrency': { type: 'string', default: '1' },
    'arrow-models': { type: 'string', default: 'minilm-l6' },
    out: { type: 'string', default: projectPath('bench', 'results') },
  },
  strict: true,
});

const ROUNDS = Number(flags.rounds);
const DURATION = Number(flags.duration);
const H2_CLIENTS = Number(flags['h2load-clients']);
const H2_STREAMS = Number(flags['h2load-streams']);
const HEY_C = Number(flags['hey-concurrency']);
const WARMUP = Number(flags['warmup-requests']);
const ARROW_ROWS = Number(flags['arrow-rows']);
const ARROW_CALLS = Number(flags['arrow-calls']);
const ARROW_C = Number(flags['arrow-concurrency']);
const MODELS = flags.models.split(',').filter(Boolean) as ShapeName[];
const ARROW_MODELS = new Set(flags['arrow-models'].split(',').filter(Boolean));
const ONLY = new Set(flags.only.split(',').filter(Boolean));

/** The one text every call embeds: 86 characters. */
const TEXT = 'The manager forwards each embedding call to its child; what does one call cost in CPU?';
if (TEXT.length !== 86) throw new Error(`the benchmark text must have 86 characters, it has ${TEXT.length}`);

const MUX_SERVICE = 'tei_multiplexer.v1.TeiMultiplexer';
const log = (m: string): void => void process.stderr.write(`${m}\n`);

type Target = 'direct' | 'floor' | 'manager';
type FrontEnd = 'gRPC' | 'HTTP' | 'Arrow';
type Role = 'manager' | 'child' | 'floor';

interface RunResult {
  round: number;
  target: Target;
  /** Completed units: calls (gRPC, HTTP) or rows (Arrow). */
  calls: number;
  /** Units per second. */
  req_per_sec: number;
  /** Latency per call (an Arrow call carries --arrow-rows rows). */
  latency: LatencySummary;
  /** Wall-clock seconds of the measured window (the load generator's whole run). */
  wall_secs: number;
  /** CPU microseconds per completed unit of each process (the floor only where one runs). */
  cpu_us_per_call: Partial<Record<Role, number>>;
  /** CPU milliseconds per wall-clock second of each process over the window. */
  cpu_ms_per_sec: Partial<Record<Role, number>>;
  notes: string[];
}

interface Row {
  front_end: FrontEnd;
  model: string;
  tool: string;
  /** What `calls`, req/s and CPU per call count. */
  unit: 'call' | 'row';
  runs: RunResult[];
}

// ---- processes ----

const started = new Set<ChildProcess>();
const killAll = (): void => {
  for (const p of started) if (p.exitCode === null) p.kill('SIGKILL');
};
process.on('exit', killAll);
/** The manager, once started: on SIGINT / SIGTERM it is stopped with SIGTERM, so it stops its children. */
let runningManager: ManagerProcess | undefined;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    for (const p of started) if (p.exitCode === null) p.kill('SIGTERM');
    void Promise.race([runningManager?.stop(), sleep(10_000)]).finally(() => process.exit(130));
  });
}

const CLK_TCK = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

const readTicks = (pid: number): CpuTicks => parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));

/** Whether `tool` can be started; else log the Debian package to install. */
function haveTool(tool: string, pkg: string, what: string): boolean {
  const r = spawnSync(tool, tool === 'h2load' ? ['--version'] : ['-n', '0'], { stdio: 'ignore' });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
    log(`${tool} is not installed: skipping ${what} (install it with: apt-get install -y ${pkg})`);
    return false;
  }
  return true;
}

interface FloorProcess {
  port: number;
  pid: number;
  proc: ChildProcess;
}

async function startFloor(upstreamPort: number): Promise<FloorProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', projectPath('bench', 'floor-proxy.ts'), '--upstream', `127.0.0.1:${upstreamPort}`, '--port', '0'], {
    cwd: projectPath(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.add(proc);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const end = Date.now() + 30_000;
  let ready: Record<string, unknown> | undefined;
  while ((ready = findReadyLine(out)) === undefined) {
    if (proc.exitCode !== null || Date.now() > end) throw new Error(`floor proxy did not start:\n${out}`);
    await sleep(20);
  }
  return { port: Number(ready.port), pid: Number(ready.pid), proc };
}

async function stopProcess(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const gone = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGTERM');
  await Promise.race([gone, sleep(5000).then(() => p.kill('SIGKILL'))]);
  started.delete(p);
}

// ---- one call with a real client, to check what h2load / hey send gets a real answer ----

/** POST `body` (gRPC-framed) over node:http2; grpc-status and the answer's message bytes. */
function http2GrpcCall(port: number, route: string, body: Buffer): Promise<{ grpcStatus: string; grpcMessage: string; message: Buffer }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({ ':method': 'POST', ':path': route, 'content-type': 'application/grpc', te: 'trailers' });
    const chunks: Buffer[] = [];
    let status: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (status = h));
    req.on('trailers', (t) => (status = { ...status, ...t }));
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('error', reject);
    req.on('end', () => {
      session.close();
      const data = Buffer.concat(chunks);
      resolve({ grpcStatus: String(status['grpc-status'] ?? 'none'), grpcMessage: String(status['grpc-message'] ?? ''), message: data.subarray(5) });
    });
    req.end(body);
  });
}

const embedResponse = serviceDefinition('tei.v1.Embed').Embed!;

/** One gRPC call with the run's body; throws unless OK with an embedding of `dim` (any length > 0 when undefined). */
async function verifyGrpc(port: number, route: string, body: Buffer, dim: number | undefined, what: string): Promise<number> {
  const r = await http2GrpcCall(port, route, body);
  if (r.grpcStatus !== '0') throw new Error(`${what}: grpc-status ${r.grpcStatus} (${decodeURIComponent(r.grpcMessage)}), not OK`);
  const res = embedResponse.responseDeserialize(r.message) as { embeddings?: number[] };
  const n = res.embeddings?.length ?? 0;
  if (n === 0 || (dim !== undefined && n !== dim)) throw new Error(`${what}: an embedding of ${n} values, expected ${dim ?? '> 0'}`);
  return n;
}

async function verifyHttp(url: string, body: string, dim: number | undefined, what: string): Promise<void> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${what}: HTTP ${res.status}: ${text.slice(0, 300)}`);
  const v = JSON.parse(text) as number[][];
  if (!Array.isArray(v) || v.length !== 1 || !Array.isArray(v[0]) || v[0].length === 0 || (dim !== undefined && v[0].length !== dim)) {
    throw new Error(`${what}: not one embedding of ${dim ?? '> 0'} values: ${text.slice(0, 200)}`);
  }
}

// ---- one measured run ----

type Pids = Partial<Record<Role, number>>;

type Measured<T> = T & { wall_secs: number; cpu_us_per_call: Partial<Record<Role, number>>; cpu_ms_per_sec: Partial<Record<Role, number>> };

/** Run `run` between two readings of each process's CPU time. */
async function measured<T extends { calls: number }>(pids: Pids, run: () => Promise<T>): Promise<Measured<T>> {
  const before = Object.fromEntries(Object.entries(pids).map(([r, pid]) => [r, readTicks(pid!)])) as Record<Role, CpuTicks>;
  const t0 = performance.now();
  const result = await run();
  const wall = (performance.now() - t0) / 1000;
  const perCall: Partial<Record<Role, number>> = {};
  const perSec: Partial<Record<Role, number>> = {};
  for (const [role, pid] of Object.entries(pids) as Array<[Role, number]>) {
    const after = readTicks(pid);
    perCall[role] = cpuUsPerCall(before[role], after, result.calls, CLK_TCK);
    perSec[role] = cpuUsPerCall(before[role], after, 1, CLK_TCK) / 1000 / wall;
  }
  return { ...result, wall_secs: wall, cpu_us_per_call: perCall, cpu_ms_per_sec: perSec };
}

async function h2load(url: string, bodyFile: string, logFile: string, opts: { durationSecs?: number; requests?: number }, minDataPerCall: number) {
  const amount = opts.durationSecs !== undefined ? ['-D', String(opts.durationSecs)] : ['-n', String(opts.requests)];
  const args = [...amount, '-c', String(H2_CLIENTS), '-m', String(H2_STREAMS), '-d', bodyFile, '-H', 'content-type: application/grpc', '-H', 'te: trailers', '--log-file', logFile, url];
  const { stdout } = await execFileP('h2load', args, { maxBuffer: 16 * 1024 * 1024 });
  const s = parseH2loadSummary(stdout);
  const bad = s.failed + s.errored + s.timeout + s.status['3xx'] + s.status['4xx'] + s.status['5xx'];
  if (bad > 0 || s.succeeded === 0) throw new Error(`h2load ${url}: ${s.succeeded} succeeded, ${s.failed} failed, ${s.errored} errored, ${s.timeout} timeout, non-2xx ${bad}:\n${stdout}`);
  // A gRPC error is HTTP 200 with no DATA: every answer must carry at least one embedding's bytes.
  if (s.dataBytes < s.succeeded * minDataPerCall) {
    throw new Error(`h2load ${url}: ${s.dataBytes} response bytes for ${s.succeeded} calls, less than an embedding (${minDataPerCall} bytes) each: gRPC errors in the trailers?\n${stdout}`);
  }
  const l = parseH2loadLog(readFileSync(logFile, 'utf8'));
  const nonOk = notOk(l.byStatus);
  if (Object.keys(nonOk).length > 0) throw new Error(`h2load ${url}: non-2xx requests in its log: ${JSON.stringify(nonOk)}`);
  return { calls: s.succeeded, req_per_sec: s.reqPerSec, latency: summarizeLatency(l.okMs), notes: [] as string[] };
}

async function hey(url: string, bodyFile: string, opts: { durationSecs?: number; requests?: number }) {
  const amount = opts.durationSecs !== undefined ? ['-z', `${opts.durationSecs}s`] : ['-n', String(opts.requests)];
  const { stdout } = await execFileP('hey', [...amount, '-c', String(HEY_C), '-m', 'POST', '-T', 'application/json', '-D', bodyFile, '-o', 'csv', url], { maxBuffer: 256 * 1024 * 1024 });
  const r = parseHeyCsv(stdout);
  const nonOk = notOk(r.byStatus);
  if (Object.keys(nonOk).length > 0 || r.okMs.length === 0) throw new Error(`hey ${url}: ${r.okMs.length} OK, non-2xx ${JSON.stringify(nonOk)}`);
  const notes: string[] = [];
  if (opts.durationSecs !== undefined) {
    const busy = heyBusyFraction(r.sumSecs, HEY_C, opts.durationSecs);
    // hey leaves transport failures out of its CSV: workers idle for that time.
    if (busy < 0.8) notes.push(`hey's listed requests cover ${(busy * 100).toFixed(0)}% of its workers' time: requests failed at the transport, or the client was starved`);
  }
  return { calls: r.okMs.length, req_per_sec: r.okMs.length / (opts.durationSecs ?? r.spanSecs), latency: summarizeLatency(r.okMs), notes };
}

interface BenchReport {
  successful_requests: number;
  failed_requests: number;
  requests_per_sec: number;
  throughput_per_sec: number;
  latency_ms: { p50: number; p99: number; max: number } | null;
  errors: Record<string, number>;
  error_messages: Record<string, string>;
}

async function teiplexBench(args: string[], textsFile: string, calls: number) {
  const { stdout } = await execFileP(
    process.execPath,
    [projectPath('bin', 'teiplex.js'), 'bench', '--no-progress', '-m', 'arrow', '-b', String(ARROW_ROWS), '-n', String(ARROW_ROWS * calls), '-c', String(ARROW_C), '--texts', textsFile, ...args],
    { maxBuffer: 16 * 1024 * 1024 },
  );
  const r = JSON.parse(stdout) as BenchReport;
  if (r.failed_requests > 0 || r.successful_requests === 0 || r.latency_ms === null) {
    throw new Error(`teiplex bench ${args.join(' ')}: ${r.successful_requests} OK, ${r.failed_requests} failed: ${JSON.stringify(r.error_messages)}`);
  }
  // Counted in rows: rows/s, CPU per row.
  return {
    calls: r.successful_requests * ARROW_ROWS,
    req_per_sec: r.throughput_per_sec,
    latency: { n: r.successful_requests, p50_ms: r.latency_ms.p50, p99_ms: r.latency_ms.p99, max_ms: r.latency_ms.max },
    notes: [] as string[],
  };
}

// ---- the report ----

const median = (xs: readonly number[]): number => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

interface Summary {
  front_end: FrontEnd;
  model: string;
  tool: string;
  unit: 'call' | 'row';
  req_per_sec: Partial<Record<Target, number>>;
  /** Median of the per-round ratios manager / direct. */
  manager_over_direct: number;
  cpu_us_per_call: { manager: number; floor: number; child: Partial<Record<Target, number>> };
  /** The manager's CPU while it forwards nothing (ms per second, median of the direct runs). */
  manager_idle_ms_per_sec: number;
  /** Manager CPU per call less its idle CPU over the same time (the same round's direct run's rate). */
  manager_net_us_per_call: number;
  /** Manager CPU per call (manager runs) / floor CPU per call (floor runs). */
  manager_cpu_over_floor: number;
  /** The same with the manager's idle CPU taken out. */
  manager_net_cpu_over_floor: number;
  latency_ms: Partial<Record<Target, { p50: number; p99: number; max: number }>>;
  notes: string[];
}

function summarize(row: Row): Summary {
  const of = (t: Target): RunResult[] => row.runs.filter((r) => r.target === t);
  const targets = (['direct', 'floor', 'manager'] as const).filter((t) => of(t).length > 0);
  const ratios: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const d = row.runs.find((r) => r.round === round && r.target === 'direct');
    const m = row.runs.find((r) => r.round === round && r.target === 'manager');
    if (d && m) ratios.push(m.req_per_sec / d.req_per_sec);
  }
  const managerCpu = median(of('manager').map((r) => r.cpu_us_per_call.manager ?? Number.NaN));
  const floorCpu = median(of('floor').map((r) => r.cpu_us_per_call.floor ?? Number.NaN));
  const net: number[] = [];
  for (const m of of('manager')) {
    const idle = of('direct').find((r) => r.round === m.round)?.cpu_ms_per_sec.manager;
    if (idle !== undefined && m.cpu_us_per_call.manager !== undefined) net.push(m.cpu_us_per_call.manager - (idle * 1000 * m.wall_secs) / m.calls);
  }
  const managerNet = median(net);
  return {
    front_end: row.front_end,
    model: row.model,
    tool: row.tool,
    unit: row.unit,
    req_per_sec: Object.fromEntries(targets.map((t) => [t, median(of(t).map((r) => r.req_per_sec))])),
    manager_over_direct: median(ratios),
    manager_idle_ms_per_sec: median(of('direct').map((r) => r.cpu_ms_per_sec.manager ?? Number.NaN)),
    manager_net_us_per_call: managerNet,
    manager_net_cpu_over_floor: managerNet / floorCpu,
    cpu_us_per_call: {
      manager: managerCpu,
      floor: floorCpu,
      child: Object.fromEntries(targets.map((t) => [t, median(of(t).map((r) => r.cpu_us_per_call.child ?? Number.NaN))])),
    },
    manager_cpu_over_floor: managerCpu / floorCpu,
    latency_ms: Object.fromEntries(
      targets.map((t) => [t, { p50: median(of(t).map((r) => r.latency.p50_ms)), p99: median(of(t).map((r) => r.latency.p99_ms)), max: Math.max(...of(t).map((r) => r.latency.max_ms)) }]),
    ),
    notes: [...new Set(row.runs.flatMap((r) => r.notes.map((n) => `${r.target}: ${n}`)))],
  };
}

const f0 = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? '-' : x >= 100 ? x.toFixed(0) : x.toFixed(1));
const f2 = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(2));
const lat = (l: { p50: number; p99: number; max: number } | undefined): string => (l === undefined ? '-' : `${f2(l.p50)} / ${f2(l.p99)} / ${f2(l.max)}`);

function markdown(summaries: Summary[], machine: Record<string, unknown>): string {
  const lines = [
    '# teiplex front ends: cost per forwarded call (h2load, hey)',
    '',
    `${machine.cpus} cores (${machine.cpu_model}), Node ${machine.node}; ${ROUNDS} rounds of ${DURATION} s per target, targets alternating; medians over rounds. ` +
      `gRPC: h2load -c ${H2_CLIENTS} -m ${H2_STREAMS}, unary Embed of one ${TEXT.length}-character text; HTTP: hey -c ${HEY_C}, POST /embed; ` +
      `Arrow: teiplex bench, ${ARROW_ROWS}-row calls of the same text, ${ARROW_CALLS} per round, concurrency ${ARROW_C}, counted per row. Load generator, manager, child and floor proxy share the cores.`,
    '',
    'Per call (gRPC, HTTP) or per row (Arrow). CPU: utime+stime from /proc/<pid>/stat over each run / completed calls. ' +
      "Net: less the manager's idle CPU (its CPU per second during the same round's direct run, when it forwards nothing).",
    '',
    '| front end | model | per | /s direct | /s floor | /s manager | manager / direct | CPU µs manager | net | CPU µs floor | manager ÷ floor CPU (net) | child CPU µs (direct / floor / manager) | manager idle CPU ms/s |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |',
    ...summaries.map(
      (s) =>
        `| ${s.front_end} | ${s.model} | ${s.unit} | ${f0(s.req_per_sec.direct)} | ${f0(s.req_per_sec.floor)} | ${f0(s.req_per_sec.manager)} | ${f2(s.manager_over_direct)} | ` +
        `${f0(s.cpu_us_per_call.manager)} | ${f0(s.manager_net_us_per_call)} | ${f0(s.cpu_us_per_call.floor)} | ${f2(s.manager_cpu_over_floor)} (${f2(s.manager_net_cpu_over_floor)}) | ` +
        `${f0(s.cpu_us_per_call.child.direct)} / ${f0(s.cpu_us_per_call.child.floor)} / ${f0(s.cpu_us_per_call.child.manager)} | ${f0(s.manager_idle_ms_per_sec)} |`,
    ),
    '',
    '| front end | model | latency ms per call, p50 / p99 / max: direct | floor | manager |',
    '| --- | --- | --- | --- | --- |',
    ...summaries.map((s) => `| ${s.front_end} | ${s.model} | ${lat(s.latency_ms.direct)} | ${lat(s.latency_ms.floor)} | ${lat(s.latency_ms.manager)} |`),
    '',
  ];
  const notes = summaries.flatMap((s) => s.notes.map((n) => `- ${s.front_end} ${s.model}: ${n}`));
  if (notes.length > 0) lines.push('Notes:', '', ...notes, '');
  return lines.join('\n');
}

// ---- main ----

async function main(): Promise<void> {
  const useGrpc = ONLY.has('grpc') && haveTool('h2load', 'nghttp2-client', 'the gRPC front end');
  const useHttp = ONLY.has('http') && haveTool('hey', 'hey', 'the HTTP front end');
  const useArrow = ONLY.has('arrow');

  const dir = mkdtempSync(path.join(tmpdir(), 'teiplex-front-ends-'));
  let manager: ManagerProcess | undefined;
  const floors: FloorProcess[] = [];
  const rows: Row[] = [];
  try {
    let toml = loopbackConfig(dir);
    for (const shape of MODELS) {
      const model = await testModel({ kind: 'embedding', shape });
      toml += `\n[[instances]]\nname = "${shape}"\nmodel_id = ${JSON.stringify(model)}\nmax_concurrent_requests = 4096\nextra_args = ["--http-port", "0", "--auto-truncate"]\n`;
    }
    const configFile = path.join(dir, 'manager.toml');
    writeFileSync(configFile, toml);
    manager = await startManager(configFile, {}, 60_000);
    runningManager = manager;
    const managerPid = manager.proc.pid!;
    const muxPort = Number(manager.ready.grpc_port);
    const textsFile = path.join(dir, 'texts.txt');
    writeFileSync(textsFile, `${TEXT}\n`);
    const muxEmbed = (muxPackageDefinition()[MUX_SERVICE] as Record<string, { requestSerialize(v: unknown): Buffer }>).Embed!;
    const teiEmbed = serviceDefinition('tei.v1.Embed').Embed!;
    const directBody = path.join(dir, 'direct.grpc');
    writeFileSync(directBody, grpcFrame(teiEmbed.requestSerialize({ inputs: TEXT, truncate: true })));

    for (const shape of MODELS) {
      const info = await manager.waitFor(shape, (i) => i.status === 'running', 300_000);
      const childPort = Number(info.port);
      const childPid = Number(info.pid);
      if (!readFileSync(`/proc/${childPid}/cmdline`, 'utf8').includes('router')) throw new Error(`instance ${shape}: pid ${childPid} is not a teiplex router`);
      const childHttp = await childHttpPort(manager, shape);
      log(`${shape}: child pid ${childPid}, gRPC ${childPort}, HTTP ${childHttp}; manager pid ${managerPid}, gRPC ${muxPort}, HTTP ${manager.apiPort}`);

      if (useGrpc) {
        const floor = await startFloor(childPort);
        floors.push(floor);
        const managerBody = path.join(dir, `manager-${shape}.grpc`);
        writeFileSync(managerBody, grpcFrame(muxEmbed.requestSerialize({ target: { instance_name: shape }, request: { inputs: TEXT, truncate: true } })));
        const dim = await verifyGrpc(childPort, '/tei.v1.Embed/Embed', readFileSync(directBody), undefined, `${shape} direct`);
        const plan: Record<Target, { port: number; route: string; body: string }> = {
          direct: { port: childPort, route: '/tei.v1.Embed/Embed', body: directBody },
          floor: { port: floor.port, route: '/tei.v1.Embed/Embed', body: directBody },
          manager: { port: muxPort, route: `/${MUX_SERVICE}/Embed`, body: managerBody },
        };
        const pids: Pids = { manager: managerPid, child: childPid, floor: floor.pid };
        const row: Row = { front_end: 'gRPC', model: shape, tool: `h2load -c ${H2_CLIENTS} -m ${H2_STREAMS}`, unit: 'call', runs: [] };
        const minData = 4 * dim;
        for (const t of ['direct', 'floor', 'manager'] as const) {
          const p = plan[t];
          await verifyGrpc(p.port, p.route, readFileSync(p.body), dim, `${shape} ${t}`);
          await h2load(`http://127.0.0.1:${p.port}${p.route}`, p.body, path.join(dir, 'warmup.log'), { requests: WARMUP }, minData);
        }
        for (let round = 1; round <= ROUNDS; round++) {
          for (const t of ['direct', 'floor', 'manager'] as const) {
            const p = plan[t];
            await verifyGrpc(p.port, p.route, readFileSync(p.body), dim, `${shape} ${t}`);
            const r = await measured(pids, () => h2load(`http://127.0.0.1:${p.port}${p.route}`, p.body, path.join(dir, `h2load-${shape}-${t}-${round}.log`), { durationSecs: DURATION }, minData));
            row.runs.push({ round, target: t, ...r });
            log(`gRPC ${shape} round ${round} ${t}: ${r.req_per_sec.toFixed(0)} req/s, p50 ${r.latency.p50_ms.toFixed(2)} ms, CPU µs/call ${JSON.stringify(Object.fromEntries(Object.entries(r.cpu_us_per_call).map(([k, v]) => [k, Math.round(v)])))}`);
          }
        }
        rows.push(row);
      }

      if (useHttp) {
        const directJson = path.join(dir, 'direct.json');
        const managerJson = path.join(dir, `manager-${shape}.json`);
        writeFileSync(directJson, JSON.stringify({ inputs: TEXT }));
        writeFileSync(managerJson, JSON.stringify({ inputs: TEXT, model: shape }));
        const plan: Partial<Record<Target, { url: string; body: string }>> = {
          direct: { url: `http://127.0.0.1:${childHttp}/embed`, body: directJson },
          manager: { url: `http://127.0.0.1:${manager.apiPort}/embed`, body: managerJson },
        };
        const pids: Pids = { manager: managerPid, child: childPid };
        const row: Row = { front_end: 'HTTP', model: shape, tool: `hey -c ${HEY_C}`, unit: 'call', runs: [] };
        for (const t of ['direct', 'manager'] as const) {
          await verifyHttp(plan[t]!.url, readFileSync(plan[t]!.body, 'utf8'), undefined, `${shape} HTTP ${t}`);
          await hey(plan[t]!.url, plan[t]!.body, { requests: WARMUP });
        }
        for (let round = 1; round <= ROUNDS; round++) {
          for (const t of ['direct', 'manager'] as const) {
            const p = plan[t]!;
            await verifyHttp(p.url, readFileSync(p.body, 'utf8'), undefined, `${shape} HTTP ${t}`);
            const r = await measured(pids, () => hey(p.url, p.body, { durationSecs: DURATION }));
            row.runs.push({ round, target: t, ...r });
            log(`HTTP ${shape} round ${round} ${t}: ${r.req_per_sec.toFixed(0)} req/s, p50 ${r.latency.p50_ms.toFixed(2)} ms, CPU µs/call ${JSON.stringify(Object.fromEntries(Object.entries(r.cpu_us_per_call).map(([k, v]) => [k, Math.round(v)])))}`);
          }
        }
        rows.push(row);
      }

      if (useArrow && ARROW_MODELS.has(shape)) {
        const plan: Partial<Record<Target, string[]>> = {
          direct: ['-e', `127.0.0.1:${childPort}`, '--direct'],
          manager: ['-e', `127.0.0.1:${muxPort}`, '-i', shape],
        };
        const pids: Pids = { manager: managerPid, child: childPid };
        const row: Row = { front_end: 'Arrow', model: shape, tool: `teiplex bench -m arrow -b ${ARROW_ROWS} -c ${ARROW_C}`, unit: 'row', runs: [] };
        for (const t of ['direct', 'manager'] as const) await teiplexBench(plan[t]!, textsFile, 1);
        for (let round = 1; round <= ROUNDS; round++) {
          for (const t of ['direct', 'manager'] as const) {
            const r = await measured(pids, () => teiplexBench(plan[t]!, textsFile, ARROW_CALLS));
            row.runs.push({ round, target: t, ...r });
            log(`Arrow ${shape} round ${round} ${t}: ${r.req_per_sec.toFixed(0)} rows/s, p50 ${r.latency.p50_ms.toFixed(0)} ms per call, CPU µs/row ${JSON.stringify(Object.fromEntries(Object.entries(r.cpu_us_per_call).map(([k, v]) => [k, Math.round(v)])))}`);
          }
        }
        rows.push(row);
      }
    }
  } finally {
    for (const f of floors) await stopProcess(f.proc);
    const code = await manager?.stop();
    if (code !== undefined && code !== 0) log(`manager exited with ${code}`);
    rmSync(dir, { recursive: true, force: true });
  }

  const summaries = rows.map(summarize);
  const machine = { cpus: availableParallelism(), cpu_model: cpus()[0]?.model, node: process.version, clk_tck: CLK_TCK };
  const md = markdown(summaries, machine);
  process.stdout.write(`${md}\n`);
  mkdirSync(flags.out, { recursive: true });
  const config = {
    rounds: ROUNDS,
    duration_secs: DURATION,
    models: MODELS,
    text: TEXT,
    h2load: { clients: H2_CLIENTS, streams_per_client: H2_STREAMS },
    hey: { concurrency: HEY_C },
    arrow: { rows: ARROW_ROWS, calls_per_round: ARROW_CALLS, concurrency: ARROW_C, models: [...ARROW_MODELS] },
    warmup_requests: WARMUP,
    skipped: [...(ONLY.has('grpc') && !useGrpc ? ['gRPC (no h2load)'] : []), ...(ONLY.has('http') && !useHttp ? ['HTTP (no hey)'] : [])],
  };
  writeFileSync(path.join(flags.out, 'front-ends.json'), `${JSON.stringify({ date: new Date().toISOString(), machine, config, summaries, rows }, null, 2)}\n`);
  writeFileSync(path.join(flags.out, 'front-ends.md'), md);
  log(`wrote ${path.relative(process.cwd(), path.join(flags.out, 'front-ends.json'))} and front-ends.md`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
