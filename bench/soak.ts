/**
 * The soak (issue 10): a real `teiplex serve` on loopback under mixed traffic and chaos for
 * --duration-secs (default 600), counting what must never happen.
 *
 * Setup: two static instances (`s-a`, `s-b`, tiny generated embedding models, `[[instances]]`),
 * one catalog model (`od-a`, `[[models]]`, idle timeout --idle-timeout-secs so it is stopped and
 * cold-started again and again) and churn instances (`c-0`..`c-3`, created and deleted through
 * the REST API). The API and gRPC ports are fixed for the whole run, so clients reconnect to the
 * restarted manager as they would in production.
 *
 * Running together:
 *   - traffic (bench/soak/traffic.ts): gRPC unary, bidi stream and Arrow through the multiplexer,
 *     HTTP /v1/embeddings and /embed through the data plane, every request with a deadline
 *     (--deadline-secs);
 *   - admin changes (bench/soak/admin.ts) every ~--admin-every-secs, each acknowledged one
 *     recorded in the expected state (bench/soak/expected-state.ts);
 *   - kill -9 of a random child every ~--child-kill-every-secs;
 *   - SIGKILL of the manager every --manager-kill-min-secs..--manager-kill-max-secs (the first by
 *     half-time at the latest, so a short run has one too), in turn right
 *     after an acknowledged change, in the middle of a change, and at an idle moment; the state
 *     file is checked against the expected state at once, the manager is restarted with the same
 *     config, and once it is ready (plus --orphan-grace-secs) processes carrying our marker that
 *     do not descend from it are counted as orphans (and killed), and GET /instances, GET /models
 *     and the state file are checked against the expected state;
 *   - every 5 s: the manager's RSS, its event-loop delay p99 (bench/soak/event-loop.ts; the
 *     /health round trip where no metric exists) and the counts so far.
 * At the end: traffic stops, a last check, SIGTERM to the manager, a check of the state file it
 * left, and every process still carrying our marker after the grace period is an orphan.
 *
 *   npm run build && node --import tsx bench/soak.ts [--duration-secs 600] [--deadline-secs 30]
 *
 * Prints a per-minute table with totals; writes bench/results/soak-<timestamp>.json and .md, and
 * keeps every manager process's output and the children's logs in soak-<timestamp>-logs/.
 * Exit code 1 when any request was never answered or answered with missing results, any
 * acknowledged change was lost, or any orphan was found; 0 otherwise.
 */
import { randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { residentMb } from '../src/catalog/footprint.js';
import { projectPath } from '../src/common/paths.js';
import { freePort, loopbackConfig, startManager, type ManagerProcess } from '../test/helpers/manager-process.js';
import { testModel } from '../test/helpers/models.js';
import { metricSum } from './lib/prometheus-text.js';
import { Admin, observeApi, observeStateFile } from './soak/admin.js';
import { EventLoopReader } from './soak/event-loop.js';
import { ExpectedState, type Desired } from './soak/expected-state.js';
import { httpCall } from './soak/http-call.js';
import { childrenOf, markedProcesses, orphansOf, RUN_ID_VAR, type Marker } from './soak/processes.js';
import { Recorder } from './soak/recorder.js';
import { byKind, childCounters, failuresByCode, markdown, rows, verdict } from './soak/report.js';
import { Traffic } from './soak/traffic.js';
import { makeWorkload } from './workload.js';
import { numberFlag } from './lib/number-flag.js';

const { values: flags } = parseArgs({
  options: {
    'duration-secs': { type: 'string', default: '600' },
    'deadline-secs': { type: 'string', default: '30' },
    'margin-secs': { type: 'string', default: '5' },
    'per-kind': { type: 'string', default: '1' },
    'admin-every-secs': { type: 'string', default: '3' },
    'child-kill-every-secs': { type: 'string', default: '20' },
    'manager-kill-min-secs': { type: 'string', default: '60' },
    'manager-kill-max-secs': { type: 'string', default: '90' },
    'idle-timeout-secs': { type: 'string', default: '8' },
    'orphan-grace-secs': { type: 'string', default: '5' },
    out: { type: 'string', default: projectPath('bench', 'results') },
  },
  strict: true,
});

const num = (name: keyof typeof flags, min: number): number => numberFlag('soak', flags, name, min);

const DURATION_S = num('duration-secs', 1);
const DEADLINE_MS = num('deadline-secs', 1) * 1000;
const MARGIN_MS = num('margin-secs', 0) * 1000;
const PER_KIND = num('per-kind', 1);
const ADMIN_EVERY_MS = num('admin-every-secs', 0.1) * 1000;
const CHILD_KILL_EVERY_MS = num('child-kill-every-secs', 1) * 1000;
const MANAGER_KILL_MIN_MS = num('manager-kill-min-secs', 1) * 1000;
const MANAGER_KILL_MAX_MS = Math.max(MANAGER_KILL_MIN_MS, num('manager-kill-max-secs', 1) * 1000);
const IDLE_TIMEOUT_S = num('idle-timeout-secs', 1);
const ORPHAN_GRACE_MS = num('orphan-grace-secs', 0) * 1000;

const SAMPLE_EVERY_MS = 5000;
/** Longest wait for the manager's ready line after a (re)start. */
const MANAGER_READY_MS = 90_000;
/** The catalog's cold-start wait must end before a request's deadline, so it answers in time. */
const COLD_START_TIMEOUT_S = Math.max(1, Math.floor((DEADLINE_MS * 2) / 3 / 1000));
const STATIC = ['s-a', 's-b'] as const;
const CATALOG = 'od-a';
const CHURN = ['c-0', 'c-1', 'c-2', 'c-3'];
const KILL_MODES = ['after-ack', 'mid-call', 'idle'] as const;

const jitter = (ms: number): number => ms * (0.5 + Math.random());

/** The manager under test: started, SIGKILLed and restarted with the same config and ports. */
class Manager {
  current: ManagerProcess | undefined;
  /** Set while the bench itself kills or stops it (any other exit is unexpected). */
  private expectingExit = false;
  private started = 0;

  constructor(
    private readonly configFile: string,
    private readonly env: Record<string, string>,
    /** Where each manager process's output is written when it has exited. */
    private readonly logDir: string,
  ) {}

  /** Keep the output of the manager that just exited (numbered in start order). */
  saveOutput(): void {
    const m = this.current;
    if (m === undefined) return;
    mkdirSync(this.logDir, { recursive: true });
    writeFileSync(path.join(this.logDir, `manager-${this.started}-pid${m.proc.pid}.log`), m.output());
  }

  get pid(): number | undefined {
    return this.current?.proc.pid;
  }

  /** The pid of the manager if it is running (not while it is dead and not yet restarted). */
  get livePid(): number | undefined {
    const p = this.current?.proc;
    return p !== undefined && p.exitCode === null && p.signalCode === null ? p.pid : undefined;
  }

  exitedUnexpectedly(): boolean {
    const p = this.current?.proc;
    if (p === undefined || this.expectingExit) return false;
    return p.exitCode !== null || p.signalCode !== null;
  }

  /**
   * Start it and wait for the ready line: the time that took (ms), when its API first answered
   * /health (it listens before it boots: stopping a previous manager's children and restoring
   * the state come after), and the children its boot stopped.
   */
  async start(base: string): Promise<{ readyMs: number; listeningMs: number | null; orphansStopped: unknown }> {
    const t0 = performance.now();
    let listeningMs: number | null = null;
    let starting = true;
    const poll = (async () => {
      while (starting && listeningMs === null) {
        const r = await httpCall(base, 'GET', '/health', undefined, 1000);
        if (r.kind === 'answer' && r.status === 200) listeningMs = performance.now() - t0;
        else await sleep(25);
      }
    })();
    try {
      this.started++;
      this.current = await startManager(this.configFile, this.env, MANAGER_READY_MS);
    } finally {
      starting = false;
      await poll;
    }
    this.expectingExit = false;
    return { readyMs: performance.now() - t0, listeningMs, orphansStopped: this.current.ready.orphansStopped };
  }

  async kill(): Promise<void> {
    this.expectingExit = true;
    if (this.current === undefined || this.current.proc.exitCode !== null || this.current.proc.signalCode !== null) return;
    await this.current.stop('SIGKILL');
    this.saveOutput();
  }

  async terminate(timeoutMs: number): Promise<number | null | 'timeout'> {
    this.expectingExit = true;
    const m = this.current;
    if (m === undefined) return null;
    const code = await Promise.race([m.stop('SIGTERM'), sleep(timeoutMs).then(() => 'timeout' as const)]);
    if (code !== 'timeout') this.saveOutput();
    return code;
  }
}

async function main(): Promise<number> {
  const dir = mkdtempSync(path.join(tmpdir(), 'teiplex-soak-'));
  const stateFile = path.join(dir, 'state.toml');
  const runId = randomBytes(8).toString('hex');
  const marker: Marker = { stateFile, runId };
  const envToml = `env = { ${RUN_ID_VAR} = "${runId}" }`;
  const staticModels = await Promise.all(STATIC.map((_, seed) => testModel({ kind: 'embedding', seed: seed === 0 ? undefined : seed })));
  const catalogModel = await testModel({ kind: 'embedding', seed: 7 });
  const configFile = path.join(dir, 'config.toml');
  writeFileSync(
    configFile,
    loopbackConfig(dir) +
      [
        'health_check_interval_secs = 2',
        'graceful_shutdown_timeout_secs = 10',
        `idle_timeout_secs = ${IDLE_TIMEOUT_S}`,
        `cold_start_timeout_secs = ${COLD_START_TIMEOUT_S}`,
        '[restart]',
        'initial_backoff_ms = 200',
        'max_restarts = 1000',
        // The bench's own child marker in API-created specs: an explicit opt-in for that one name.
        '[security]',
        `api_env = ["${RUN_ID_VAR}"]`,
        ...STATIC.flatMap((name, i) => ['[[instances]]', `name = "${name}"`, `model_id = ${JSON.stringify(staticModels[i])}`, envToml, 'extra_args = ["--auto-truncate"]']),
        '[[models]]',
        `name = "${CATALOG}"`,
        `model_id = ${JSON.stringify(catalogModel)}`,
        envToml,
        'extra_args = ["--auto-truncate"]',
        '',
      ].join('\n'),
  );
  const apiPort = await freePort();
  const grpcPort = await freePort();
  const base = `http://127.0.0.1:${apiPort}`;
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const logDir = path.join(flags.out, `soak-${stamp}-logs`);
  const mgr = new Manager(configFile, { TEIPLEX_API_PORT: String(apiPort), TEIPLEX_GRPC_PORT: String(grpcPort) }, logDir);
  const rec = new Recorder();
  const expected = new ExpectedState({
    ...Object.fromEntries(STATIC.map((n) => [n, 'running' as Desired])),
    [`model:${CATALOG}`]: 'running',
    ...Object.fromEntries(CHURN.map((n) => [n, 'absent' as Desired])),
  });
  const admin = new Admin({ base, churnNames: CHURN, modelId: staticModels[0]!, runId, deadlineMs: DEADLINE_MS }, expected, rec);
  const loop = new EventLoopReader();

  // Whatever happens, leave no process of ours behind (found by our run id, never by name).
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
    void mgr.kill().finally(() => {
      killMarked();
      process.exit(130);
    });
  });

  const log = (msg: string): void => console.error(`[soak ${rec.now().toFixed(0).padStart(4)} s] ${msg}`);

  // ---- checks ----

  const checkStateFile = (where: string): void => {
    try {
      const observed = observeStateFile(stateFile);
      const found = expected.check(observed, `state file, ${where}`, rec.now());
      rec.check(`state file, ${where}`, observed.size, found);
      if (found.length > 0) log(`LOST CHANGES (state file, ${where}): ${JSON.stringify(found)}`);
    } catch (err) {
      // A state file that does not parse loses every change in it: one mismatch per expected name.
      log(`state file unreadable (${where}): ${(err as Error).message}`);
      rec.check(`state file, ${where}`, 0, [{ name: '*', expected: [], observed: 'absent', where: `state file unreadable, ${where}: ${(err as Error).message}`, at_s: rec.now() }]);
    }
  };
  const checkApi = async (where: string): Promise<void> => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const observed = await observeApi(base, DEADLINE_MS);
      if (observed !== undefined) {
        const found = expected.check(observed, `GET /instances, ${where}`, rec.now());
        rec.check(`GET /instances, ${where}`, observed.size, found);
        if (found.length > 0) log(`LOST CHANGES (GET /instances, ${where}): ${JSON.stringify(found)}`);
        return;
      }
      await sleep(1000);
    }
    log(`GET /instances did not answer (${where})`);
    rec.check(`GET /instances, ${where}`, 0, [{ name: '*', expected: [], observed: 'absent', where: `GET /instances did not answer, ${where}`, at_s: rec.now() }]);
  };
  const checkOrphans = (where: string, managerPid: number | undefined): void => {
    const fresh = rec.orphan(orphansOf(marker, managerPid), where);
    for (const p of fresh) {
      log(`ORPHAN (${where}): pid ${p.pid} ${p.instance ?? '?'} ppid ${p.ppid} ${p.cmd.slice(0, 100)}`);
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };

  /** Start the manager again after it died, then look for orphans and check the state it restored. */
  const restart = async (where: string): Promise<void> => {
    rec.beginRestart();
    const { readyMs, listeningMs, orphansStopped } = await mgr.start(base);
    // Its first event-loop window would cover its own start-up: scrape once to start a fresh one.
    await httpCall(base, 'GET', '/metrics', undefined, 5000);
    loop.reset();
    rec.event('manager-restart', { ready_ms: readyMs, listening_ms: listeningMs, orphans_stopped_at_boot: orphansStopped, pid: mgr.pid, where });
    log(`manager restarted (${where}): API answering after ${listeningMs?.toFixed(0) ?? '?'} ms, ready after ${readyMs.toFixed(0)} ms (its boot stopped ${JSON.stringify(orphansStopped)}), pid ${mgr.pid}`);
    await sleep(ORPHAN_GRACE_MS);
    rec.endRestart();
    checkOrphans(`after restart, ${where}`, mgr.pid);
    await checkApi(`after restart, ${where}`);
    checkStateFile(`after restart, ${where}`);
  };

  // ---- chaos ----

  const killChild = async (): Promise<void> => {
    const pid = mgr.pid;
    if (pid === undefined) return;
    const kids = childrenOf(marker, pid).filter((p) => p.ppid === pid);
    if (kids.length === 0) return;
    const victim = kids[Math.floor(Math.random() * kids.length)]!;
    let name = victim.instance;
    if (name === undefined) {
      const r = await httpCall(base, 'GET', '/instances', undefined, 5000);
      if (r.kind === 'answer' && Array.isArray(r.body)) name = (r.body as Array<{ name: string; pid: number | null }>).find((i) => i.pid === victim.pid)?.name;
    }
    try {
      process.kill(victim.pid, 'SIGKILL');
      rec.event('child-kill', { pid: victim.pid, instance: name ?? '?' });
      log(`kill -9 child ${name ?? '?'} (pid ${victim.pid})`);
    } catch {
      /* exited meanwhile */
    }
  };

  let managerKills = 0;
  const killManager = async (mode: (typeof KILL_MODES)[number]): Promise<void> => {
    const n = ++managerKills;
    const pid = mgr.pid;
    let after: string | undefined;
    // Requests failing from here on (the connections the kill resets included) count as during a restart.
    const sigkill = (): Promise<void> => {
      rec.beginRestart();
      return mgr.kill();
    };
    if (mode === 'after-ack') {
      for (let i = 0; i < 10 && after === undefined; i++) if ((await admin.change()) === 'acknowledged') after = rec.admin.at(-1)!.op;
      await sigkill();
    } else if (mode === 'mid-call') {
      const change = admin.change();
      await sleep(Math.random() * 30);
      await sigkill();
      after = `${(await change) ?? 'nothing'} (${rec.admin.at(-1)?.op})`;
    } else {
      await sigkill();
    }
    rec.event('manager-kill', { n, mode, pid, after });
    log(`SIGKILL manager #${n} (${mode}${after ? `, change: ${after}` : ''})`);
    checkStateFile(`after manager SIGKILL #${n}`);
    await sleep(Math.random() * 2000); // clients see the manager down
    await restart(`manager SIGKILL #${n}`);
  };

  // ---- sampling ----

  let sampling = false;
  const sample = async (): Promise<void> => {
    if (sampling) return;
    sampling = true;
    try {
      const phase = rec.phaseOf(rec.phaseToken());
      const pid = phase === 'up' ? mgr.livePid : undefined;
      const t0 = performance.now();
      const health = await httpCall(base, 'GET', '/health', undefined, 5000);
      const rtt = health.kind === 'answer' ? performance.now() - t0 : null;
      const metrics = await httpCall(base, 'GET', '/metrics', undefined, 5000);
      const text = metrics.kind === 'answer' && metrics.status === 200 ? String(metrics.body) : undefined;
      const delay = text === undefined ? undefined : loop.read(text);
      const restarts = text === undefined ? null : Object.fromEntries(['crash', 'unhealthy', 'manual'].map((reason) => [reason, metricSum(text, 'teiplex_instance_restarts_total', { reason })]));
      rec.samples.push({
        at_s: rec.now(),
        phase,
        manager_pid: pid ?? null,
        rss_mib: pid === undefined ? null : await residentMb([pid]),
        event_loop_p99_ms: delay?.p99_ms ?? rtt,
        event_loop_source: delay?.source ?? (rtt === null ? 'none (manager down)' : 'proxy: GET /health round trip'),
        health_rtt_ms: rtt,
        children: pid === undefined ? 0 : childrenOf(marker, pid).length,
        instance_restarts: restarts,
        model_loads: text === undefined ? null : metricSum(text, 'teiplex_model_loads_total', { result: 'ok' }),
        requests: { ...rec.counts },
      });
    } finally {
      sampling = false;
    }
  };

  // ---- report ----

  /** Print the table, write the JSON and Markdown; the exit code (0: every must-be-zero figure is 0). */
  const report = (aborted: string | undefined): number => {
    const v = verdict(rec);
    const machine = { cpus: availableParallelism(), cpu_model: cpus()[0]?.model, node: process.version };
    const heading = `# teiplex soak\n\n${machine.cpus} cores (${machine.cpu_model}), Node ${machine.node}; ${DURATION_S} s; ${STATIC.length} static instances, catalog model ${CATALOG} (idle timeout ${IDLE_TIMEOUT_S} s), churn instances ${CHURN.join(', ')}; ${PER_KIND} worker(s) per request kind; deadline ${DEADLINE_MS / 1000} s.${aborted === undefined ? '' : `\n\n**The run was ${aborted}** (figures up to then).`}`;
    const md = markdown(rec, DURATION_S, heading);
    console.log(md);
    mkdirSync(flags.out, { recursive: true });
    const json = path.join(flags.out, `soak-${stamp}.json`);
    const { perMinute, total } = rows(rec, DURATION_S);
    writeFileSync(
      json,
      JSON.stringify(
        {
          machine,
          flags,
          aborted: aborted ?? null,
          verdict: v,
          child_counters: childCounters(rec),
          totals: total,
          per_minute: perMinute,
          by_kind: byKind(rec.outcomes),
          failures_by_code: failuresByCode(rec.outcomes),
          failures: rec.outcomes.filter((o) => o.result !== 'ok'),
          lost_changes: rec.mismatches,
          orphans: rec.orphans,
          checks: rec.checks,
          chaos: rec.chaos,
          admin: rec.admin,
          samples: rec.samples,
        },
        null,
        2,
      ) + '\n',
    );
    writeFileSync(json.replace(/\.json$/, '.md'), md);
    console.log(`wrote ${json} and ${path.basename(json.replace(/\.json$/, '.md'))}`);
    return v.pass && aborted === undefined ? 0 : 1;
  };

  // ---- the run ----

  let exitCode = 1;
  try {
    const { readyMs } = await mgr.start(base);
    log(`manager ready in ${readyMs.toFixed(0)} ms (api ${apiPort}, grpc ${grpcPort}, state ${stateFile})`);
    for (const name of STATIC) await mgr.current!.waitFor(name, (i) => i.status === 'running', MANAGER_READY_MS);
    rec.event('manager-start', { ready_ms: readyMs, pid: mgr.pid });

    const traffic = new Traffic(
      {
        grpcAddress: `127.0.0.1:${grpcPort}`,
        httpBase: base,
        targets: [...STATIC.map((name) => ({ name, catalog: false })), { name: CATALOG, catalog: true }],
        texts: makeWorkload({ count: 512, shortMax: 30, longShare: 0.05 }),
        deadlineMs: DEADLINE_MS,
        marginMs: MARGIN_MS,
        perKind: PER_KIND,
      },
      rec,
    );
    traffic.start();
    const sampler = setInterval(() => void sample(), SAMPLE_EVERY_MS);
    const endAt = Date.now() + DURATION_S * 1000;
    let nextChildKill = Date.now() + jitter(CHILD_KILL_EVERY_MS);
    // The first SIGKILL comes by half-time at the latest, so a short run restarts the manager too.
    let nextManagerKill = Date.now() + Math.min(MANAGER_KILL_MIN_MS + Math.random() * (MANAGER_KILL_MAX_MS - MANAGER_KILL_MIN_MS), (DURATION_S * 1000) / 2);
    let mode = 0;
    let lastMinute = 0;
    while (Date.now() < endAt) {
      if (mgr.exitedUnexpectedly()) {
        rec.beginRestart();
        rec.event('manager-unexpected-exit', { pid: mgr.pid, code: mgr.current?.proc.exitCode, signal: mgr.current?.proc.signalCode, output_tail: mgr.current?.output().slice(-2000) });
        log(`manager exited by itself (code ${mgr.current?.proc.exitCode}, signal ${mgr.current?.proc.signalCode})`);
        mgr.saveOutput();
        checkStateFile('after an unexpected manager exit');
        await restart('unexpected exit');
      } else if (Date.now() >= nextManagerKill) {
        await killManager(KILL_MODES[mode++ % KILL_MODES.length]!);
        nextManagerKill = Date.now() + MANAGER_KILL_MIN_MS + Math.random() * (MANAGER_KILL_MAX_MS - MANAGER_KILL_MIN_MS);
      } else {
        if (Date.now() >= nextChildKill) {
          await killChild();
          nextChildKill = Date.now() + jitter(CHILD_KILL_EVERY_MS);
        }
        await admin.change();
        await sleep(Math.min(jitter(ADMIN_EVERY_MS), Math.max(0, endAt - Date.now())));
      }
      const minute = Math.floor(rec.now() / 60);
      if (minute > lastMinute) {
        lastMinute = minute;
        const c = rec.counts;
        log(`minute ${minute}: ok ${c.ok}, error ${c.error}, never ${c.never}, wrong ${c.wrong}; lost changes ${rec.mismatches.length}; orphans ${rec.orphans.length}`);
      }
    }

    log('stopping traffic (requests in flight finish or time out)');
    await traffic.stop();
    clearInterval(sampler);
    await sample();
    if (mgr.exitedUnexpectedly()) await restart('unexpected exit at the end');
    await checkApi('end of run');
    checkStateFile('end of run');
    const stopPid = mgr.pid;
    const code = await mgr.terminate(60_000);
    rec.event('manager-stop', { pid: stopPid, exit: code });
    log(`SIGTERM manager: exit ${code}`);
    if (code === 'timeout') await mgr.kill();
    checkStateFile('after SIGTERM');
    await sleep(ORPHAN_GRACE_MS);
    checkOrphans('after SIGTERM of the manager', undefined);

    exitCode = report(undefined);
  } catch (err) {
    console.error(`soak aborted: ${(err as Error).stack}`);
    console.error(`--- manager output (tail) ---\n${mgr.current?.output().slice(-6000)}`);
    report(`aborted: ${(err as Error).message}`);
    exitCode = 1;
  } finally {
    await mgr.kill();
    killMarked();
    // The children's logs (log_dir) go with the managers' output, for reading a failure.
    if (existsSync(path.join(dir, 'logs'))) cpSync(path.join(dir, 'logs'), path.join(logDir, 'children'), { recursive: true });
    rmSync(dir, { recursive: true, force: true });
  }
  return exitCode;
}

// Exit explicitly: idle keep-alive sockets of the clients would hold the process a while.
process.exit(await main());
