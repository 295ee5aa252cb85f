/**
 * The maintenance soak (issue 17): does one child dying, or one replica being restarted, stay
 * invisible to clients while another replica of the same model can answer? And does the
 * manager's memory stay flat under that load?
 *
 * Setup: a real `teiplex serve` on loopback with two `[[instances]]` (`r-a`, `r-b`, real
 * `teiplex router` children) of one generated embedding model; closed-loop clients name the
 * model, never an instance: --grpc-clients gRPC clients (tei_multiplexer.v1 Embed with target
 * `model_id`, one channel each) and --http-clients HTTP clients (POST /v1/embeddings with
 * `model`), every request with a deadline (--deadline-secs).
 *
 *   phase `kills`     (--duration-secs): SIGKILL one child every --kill-every-secs, r-a and r-b
 *                     in turn (the supervisor restarts it); then wait until both serve again;
 *   phase `restarts`  (--restarts times): POST /instances/{name}/restart, r-a and r-b in turn,
 *                     each time waiting until that instance runs a new child (and --settle-secs).
 *
 * A request belongs to the phase it was sent in and ends ok, as an error (gRPC status, HTTP
 * status + error code, transport failure), or unanswered (no answer by its deadline, or nothing
 * settled by deadline + 5 s). Every --sample-every-secs: the manager's RSS and, from its
 * /metrics, V8 heap used/total and external memory. --heap-snapshots-at 30,150 makes the manager
 * write V8 heap snapshots at those seconds (into the run's logs directory; compare two with
 * bench/lib/heap-diff.ts; a snapshot stops the manager for a while, so calls slow down then);
 * --node-options passes more flags to the manager (e.g. --trace-gc; its output is kept).
 *
 *   npm run build && node --import tsx bench/failover-soak.ts [--duration-secs 180] [--kill-every-secs 10] [--restarts 3]
 *
 * Prints a table per phase and the memory figures; writes bench/results/failover-soak-<stamp>.json
 * and .md, and the manager's output and the children's logs to failover-soak-<stamp>-logs/.
 * Exit code 1 when the kills phase has more than 0.1 % errors, the restarts phase any error, or
 * any request went unanswered (or the run could not be carried out); 0 otherwise.
 */
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { benchServiceDefinition, MUX_SERVICE, unaryCall, type AnyClient } from '../src/bench/grpc-client.js';
import { projectPath } from '../src/common/paths.js';
import { freePort, loopbackConfig, startManager, type ManagerProcess } from '../test/helpers/manager-process.js';
import { testModel } from '../test/helpers/models.js';
import { errorCode, httpCall } from './soak/http-call.js';
import { perMinute, sampleMemory, startPeakEnd, type MemorySample } from './soak/memory-sampler.js';
import { PhaseTally, pct, type PhaseName } from './soak/phase-tally.js';
import { childrenOf, markedProcesses, RUN_ID_VAR, type Marker } from './soak/processes.js';
import { makeWorkload } from './workload.js';
import { numberFlag } from './lib/number-flag.js';

const { values: flags } = parseArgs({
  options: {
    'duration-secs': { type: 'string', default: '180' },
    'kill-every-secs': { type: 'string', default: '10' },
    restarts: { type: 'string', default: '3' },
    'settle-secs': { type: 'string', default: '3' },
    'deadline-secs': { type: 'string', default: '10' },
    'grpc-clients': { type: 'string', default: '4' },
    'http-clients': { type: 'string', default: '4' },
    'sample-every-secs': { type: 'string', default: '5' },
    'heap-snapshots-at': { type: 'string', default: '' },
    'node-options': { type: 'string', default: '' },
    out: { type: 'string', default: projectPath('bench', 'results') },
  },
  strict: true,
});

const num = (name: keyof typeof flags, min: number): number => numberFlag('failover-soak', flags, name, min);

const DURATION_MS = num('duration-secs', 1) * 1000;
const KILL_EVERY_MS = num('kill-every-secs', 0.5) * 1000;
const RESTARTS = num('restarts', 0);
const SETTLE_MS = num('settle-secs', 0) * 1000;
const DEADLINE_MS = num('deadline-secs', 1) * 1000;
const GRPC_CLIENTS = num('grpc-clients', 0);
const HTTP_CLIENTS = num('http-clients', 0);
const SAMPLE_EVERY_MS = num('sample-every-secs', 0.5) * 1000;
const SNAPSHOTS_AT_S = flags['heap-snapshots-at'] === '' ? [] : flags['heap-snapshots-at'].split(',').map(Number);
if (SNAPSHOTS_AT_S.some((s) => !Number.isFinite(s) || s < 0)) {
  process.stderr.write(`failover-soak: --heap-snapshots-at must be seconds separated by commas, got '${flags['heap-snapshots-at']}'\n`);
  process.exit(2);
}

/** Settled later than the deadline by this much: nothing answered (the client library did not either). */
const MARGIN_MS = 5000;
/** Longest wait for the manager's ready line, and for a replica to run again. */
const READY_MS = 90_000;
const REPLICAS = ['r-a', 'r-b'] as const;
const ERROR_PAUSE_MS = 50;

async function main(): Promise<number> {
  const dir = mkdtempSync(path.join(tmpdir(), 'teiplex-failover-soak-'));
  const stateFile = path.join(dir, 'state.toml');
  const runId = randomBytes(8).toString('hex');
  const marker: Marker = { stateFile, runId };
  const modelId = await testModel({ kind: 'embedding' });
  const configFile = path.join(dir, 'config.toml');
  writeFileSync(
    configFile,
    loopbackConfig(dir) +
      [
        'health_check_interval_secs = 2',
        'graceful_shutdown_timeout_secs = 10',
        '[restart]',
        // A killed child comes back within a second every time: kills must not pile up back-off.
        'initial_backoff_ms = 200',
        'max_backoff_ms = 1000',
        'reset_after_secs = 5',
        'max_restarts = 100000',
        ...REPLICAS.flatMap((name) => ['[[instances]]', `name = "${name}"`, `model_id = ${JSON.stringify(modelId)}`, `env = { ${RUN_ID_VAR} = "${runId}" }`, 'extra_args = ["--auto-truncate"]']),
        '',
      ].join('\n'),
  );
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const logDir = path.join(flags.out, `failover-soak-${stamp}-logs`);
  mkdirSync(logDir, { recursive: true });
  const nodeOptions = [flags['node-options'], ...(SNAPSHOTS_AT_S.length > 0 ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${logDir}`] : [])].filter((o) => o !== '').join(' ');
  const apiPort = await freePort();
  const grpcPort = await freePort();
  const base = `http://127.0.0.1:${apiPort}`;
  const t0 = Date.now();
  const now = (): number => (Date.now() - t0) / 1000;
  const log = (msg: string): void => console.error(`[failover-soak ${now().toFixed(0).padStart(4)} s] ${msg}`);

  const tally = new PhaseTally();
  const memory: MemorySample[] = [];
  const events: Array<{ at_s: number; what: string; detail: Record<string, unknown> }> = [];
  let phase: PhaseName = 'kills';
  let stopped = false;
  let mgr: ManagerProcess | undefined;
  const killMarked = (): void => {
    for (const p of markedProcesses(marker)) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };
  process.once('SIGINT', () => {
    mgr?.proc.kill('SIGKILL');
    killMarked();
    process.exit(130);
  });

  // ---- clients ----

  /** One closed-loop client: `send` resolves to undefined (ok) or an error code; a watchdog catches what never settles. */
  const client = async (name: string, send: (deadline: number) => Promise<string | undefined>): Promise<void> => {
    while (!stopped) {
      const p = phase;
      const sentS = now();
      const start = performance.now();
      let watchdog: NodeJS.Timeout | undefined;
      const never = new Promise<'unanswered'>((resolve) => {
        watchdog = setTimeout(() => resolve('unanswered'), DEADLINE_MS + MARGIN_MS);
      });
      const r = await Promise.race([send(Date.now() + DEADLINE_MS), never]);
      clearTimeout(watchdog);
      const ms = performance.now() - start;
      if (r === undefined) tally.ok(p, sentS);
      else if (r === 'unanswered') tally.unanswered(p, sentS, name, ms);
      else tally.error(p, sentS, name, r, ms);
      if (r !== undefined) await sleep(ERROR_PAUSE_MS);
    }
  };
  const texts = makeWorkload({ count: 512, shortMax: 30, longShare: 0.05 });
  let seq = 0;
  const text = (): string => texts[seq++ % texts.length]!;
  const Ctor = grpc.makeClientConstructor(benchServiceDefinition(MUX_SERVICE), MUX_SERVICE);
  const channels: AnyClient[] = [];
  const grpcSend = (c: AnyClient) => async (deadline: number): Promise<string | undefined> => {
    try {
      const res = await unaryCall<{ embeddings?: number[] }>(c, 'Embed', { target: { model_id: modelId }, request: { inputs: text(), truncate: true } }, new grpc.Metadata(), { deadline });
      return res.embeddings !== undefined && res.embeddings.length > 0 ? undefined : 'wrong:no embedding';
    } catch (err) {
      const e = err as grpc.ServiceError;
      if (typeof e.code !== 'number') return `client:${(err as Error).message.slice(0, 60)}`;
      // The client library's own deadline: nothing answered in time.
      if (e.code === grpc.status.DEADLINE_EXCEEDED && Date.now() >= deadline - 50) return 'unanswered';
      return `grpc:${grpc.status[e.code] ?? e.code}`;
    }
  };
  const httpSend = async (deadline: number): Promise<string | undefined> => {
    const r = await httpCall(base, 'POST', '/v1/embeddings', { model: modelId, input: [text()] }, Math.max(1, deadline - Date.now()));
    if (r.kind === 'timeout') return 'unanswered';
    if (r.kind === 'failed') return `transport:${r.code}`;
    if (r.status >= 400) return `http:${r.status}:${errorCode(r.body) ?? '?'}`;
    const data = (r.body as { data?: unknown[] } | null)?.data;
    return Array.isArray(data) && data.length === 1 ? undefined : 'wrong:bad body';
  };

  // ---- sampling ----

  let sampling = false;
  const sample = async (): Promise<void> => {
    if (sampling || mgr?.proc.pid === undefined) return;
    sampling = true;
    try {
      memory.push(await sampleMemory(mgr.proc.pid, base, now()));
    } finally {
      sampling = false;
    }
  };

  const waitServing = async (name: string, notPid?: number): Promise<{ pid: number }> =>
    mgr!.waitFor(name, (i) => i.status === 'running' && typeof i.pid === 'number' && i.pid !== notPid, READY_MS);

  let exitCode = 1;
  let aborted: string | undefined;
  const kills: number[] = [];
  const workers: Array<Promise<void>> = [];
  let sampler: NodeJS.Timeout | undefined;
  const snapshotTimers: NodeJS.Timeout[] = [];
  try {
    mgr = await startManager(configFile, { TEIPLEX_API_PORT: String(apiPort), TEIPLEX_GRPC_PORT: String(grpcPort), ...(nodeOptions === '' ? {} : { NODE_OPTIONS: nodeOptions }) }, READY_MS);
    for (const name of REPLICAS) await waitServing(name);
    log(`manager pid ${mgr.proc.pid} ready (api ${apiPort}, grpc ${grpcPort}); ${REPLICAS.join(', ')} running ${modelId}`);
    await sample();
    for (let i = 0; i < GRPC_CLIENTS; i++) {
      const c = new Ctor(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure(), { 'grpc.initial_reconnect_backoff_ms': 200, 'grpc.max_reconnect_backoff_ms': 1000 }) as AnyClient;
      channels.push(c);
      workers.push(client(`grpc-${i}`, grpcSend(c)));
    }
    for (let i = 0; i < HTTP_CLIENTS; i++) workers.push(client(`http-${i}`, httpSend));
    sampler = setInterval(() => void sample(), SAMPLE_EVERY_MS);
    for (const at of SNAPSHOTS_AT_S)
      snapshotTimers.push(
        setTimeout(() => {
          mgr?.proc.kill('SIGUSR2');
          events.push({ at_s: now(), what: 'heap-snapshot', detail: { dir: logDir } });
          log('heap snapshot requested');
        }, at * 1000),
      );

    // Phase 1: one child SIGKILLed every KILL_EVERY_MS, the replicas in turn.
    const endKills = Date.now() + DURATION_MS;
    for (let k = 0; Date.now() + KILL_EVERY_MS <= endKills; k++) {
      await sleep(KILL_EVERY_MS);
      const name = REPLICAS[k % REPLICAS.length]!;
      const victim = childrenOf(marker, mgr.proc.pid!).find((p) => p.ppid === mgr!.proc.pid && p.instance === name);
      if (victim === undefined) {
        log(`no child of ${name} to kill (still restarting)`);
        continue;
      }
      try {
        process.kill(victim.pid, 'SIGKILL');
      } catch {
        continue; // exited meanwhile
      }
      kills.push(now());
      tally.event('kills');
      events.push({ at_s: now(), what: 'child-kill', detail: { instance: name, pid: victim.pid } });
      log(`kill -9 ${name} (pid ${victim.pid})`);
    }
    await sleep(Math.max(0, endKills - Date.now()));
    for (const name of REPLICAS) await waitServing(name);
    log(`kills phase over: ${JSON.stringify(tally.phases.kills.by_code)}; both replicas running`);

    // Phase 2: restarts through the API, each waited for.
    phase = 'restarts';
    for (let k = 0; k < RESTARTS; k++) {
      const name = REPLICAS[k % REPLICAS.length]!;
      const before = await waitServing(name);
      const r = await mgr.api('POST', `/instances/${name}/restart`);
      if (r.status !== 200) throw new Error(`POST /instances/${name}/restart answered ${r.status}: ${JSON.stringify(r.body)}`);
      const at = now();
      tally.event('restarts');
      const after = await waitServing(name, before.pid);
      events.push({ at_s: at, what: 'api-restart', detail: { instance: name, old_pid: before.pid, new_pid: after.pid, running_again_after_s: now() - at } });
      log(`restarted ${name} through the API: pid ${before.pid} -> ${after.pid} in ${(now() - at).toFixed(1)} s`);
      await sleep(SETTLE_MS);
    }
  } catch (err) {
    aborted = (err as Error).message;
    log(`aborted: ${(err as Error).stack}`);
  } finally {
    stopped = true;
    await Promise.all(workers);
    clearInterval(sampler);
    for (const t of snapshotTimers) clearTimeout(t);
    await sample();
    for (const c of channels) c.close();
    if (mgr !== undefined) {
      const code = await Promise.race([mgr.stop('SIGTERM'), sleep(30_000).then(() => 'timeout' as const)]);
      if (code === 'timeout') await mgr.stop('SIGKILL');
      writeFileSync(path.join(logDir, 'manager.log'), mgr.output());
    }
    killMarked();
    if (existsSync(path.join(dir, 'logs'))) cpSync(path.join(dir, 'logs'), path.join(logDir, 'children'), { recursive: true });
    rmSync(dir, { recursive: true, force: true });
  }

  // ---- report ----

  const verdict = tally.verdict();
  if (aborted !== undefined) verdict.reasons.unshift(`the run was aborted: ${aborted}`);
  const pass = verdict.pass && aborted === undefined;
  const machine = { cpus: availableParallelism(), cpu_model: cpus()[0]?.model, node: process.version };
  const f = (x: number | null): string => (x === null ? '-' : x.toFixed(1));
  const rss = startPeakEnd(memory, 'rss_mib');
  const heap = startPeakEnd(memory, 'heap_used_mib');
  const external = startPeakEnd(memory, 'external_mib');
  const perKill = tally.perKill(kills);
  const minutes = perMinute(memory);
  const row = (name: PhaseName, what: string): string => {
    const p = tally.phases[name];
    const codes = Object.entries(p.by_code).sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(', ');
    return `| ${name} | ${p.requests} | ${p.ok} | ${p.errors} | ${pct(p.errors, p.requests)} | ${p.unanswered} | ${p.events} ${what} | ${p.events === 0 ? '-' : (p.errors / p.events).toFixed(1)} | ${codes || '-'} |`;
  };
  const md = [
    '# teiplex failover soak',
    '',
    `${machine.cpus} cores (${machine.cpu_model}), Node ${machine.node}; two replicas (${REPLICAS.join(', ')}) of one generated model; ${GRPC_CLIENTS} gRPC (multiplexer Embed by model_id) + ${HTTP_CLIENTS} HTTP (/v1/embeddings by model) closed-loop clients, deadline ${DEADLINE_MS / 1000} s; kills phase ${DURATION_MS / 1000} s, one SIGKILL every ${KILL_EVERY_MS / 1000} s; ${RESTARTS} restarts through the API.`,
    ...(aborted === undefined ? [] : ['', `**The run was aborted: ${aborted}** (figures up to then).`]),
    '',
    '| phase | requests | ok | errors | error % | unanswered | events | errors per event | errors by code |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---|',
    row('kills', 'kills'),
    row('restarts', 'restarts'),
    '',
    `Errors after each kill (until the next): ${perKill.map((k) => k.errors).join(', ') || '-'}.`,
    `Manager memory (MiB, start / peak / end, every ${SAMPLE_EVERY_MS / 1000} s): RSS ${f(rss.start)} / ${f(rss.peak)} / ${f(rss.end)}; V8 heap used ${f(heap.start)} / ${f(heap.peak)} / ${f(heap.end)}; external ${f(external.start)} / ${f(external.peak)} / ${f(external.end)}.`,
    `RSS series: ${memory.map((m) => f(m.rss_mib)).join(' ')}.`,
    '',
    'Manager memory per minute (MiB; heap used min: about the live set after a collection):',
    '',
    '| min | RSS max | heap total max | heap used min | heap used max | external max |',
    '|---:|---:|---:|---:|---:|---:|',
    ...minutes.map((m) => `| ${m.minute} | ${f(m.rss_max_mib)} | ${f(m.heap_total_max_mib)} | ${f(m.heap_used_min_mib)} | ${f(m.heap_used_max_mib)} | ${f(m.external_max_mib)} |`),
    '',
    `**${pass ? 'PASS' : 'FAIL'}**${verdict.reasons.map((r) => `\n- ${r}`).join('')}`,
    '',
  ].join('\n');
  console.log(md);
  mkdirSync(flags.out, { recursive: true });
  const json = path.join(flags.out, `failover-soak-${stamp}.json`);
  writeFileSync(
    json,
    JSON.stringify({ machine, flags, model_id: modelId, aborted: aborted ?? null, pass, reasons: verdict.reasons, phases: tally.phases, per_kill: perKill, memory_per_minute: minutes, memory, events, failures: tally.failures }, null, 2) + '\n',
  );
  writeFileSync(json.replace(/\.json$/, '.md'), md);
  console.log(`wrote ${json} and ${path.basename(json.replace(/\.json$/, '.md'))}; logs in ${path.basename(logDir)}/`);
  exitCode = pass ? 0 : 1;
  return exitCode;
}

// Exit explicitly: idle keep-alive sockets of the clients would hold the process a while.
process.exit(await main());
