/**
 * One model instance's lifecycle: spawn its child (own process group, clean environment), wait
 * for readiness, health-check it, restart it with capped exponential back-off when it dies or
 * hangs (the delay from backoff.ts, the restart window and its timer on an injectable Clock),
 * stop it gracefully. Status changes go through the StateMachine; a child's exit is seen from the
 * process itself at once. Only one child per instance is ever alive: a new one is
 * spawned only after the previous one's exit has been observed. Every child carries the marker
 * environment (process-record.ts) so a later manager finds it after a crash. Before each spawn a
 * pre-flight check (its port free, its GPUs present) may refuse the attempt: that counts as a
 * failed start (back-off, then failed), so an instance whose port is taken waits and retries.
 * Readiness is probed every READY_POLL_MS, and at once when a router child prints its ready line.
 * A catalog replica's first spawn may take a standby child over (standby.ts, `startWith`): the
 * flags go to its stdin and the process is this instance's child from then on; restarts spawn.
 * Draining: a stop or restart first leaves balancing (`stopping` cannot serve), then waits for
 * the calls in flight on the child (counted by the routing's channels, reached through the
 * `drainer` hook: the supervisor does not depend on routing) for up to the graceful period, then
 * signals the child (SIGTERM, SIGKILL after the same period again). A child that dies meanwhile
 * ends the wait.
 */
import { execa, type ResultPromise } from 'execa';
import { systemClock, type Clock, type TimerHandle } from '../common/clock.js';
import type { RestartConfig } from '../config/config.js';
import type { InstanceSpec } from '../config/instance-spec.js';
import { isDeepStrictEqual } from 'node:util';
import { buildChildCommand, handOverArgs, type RuntimeSettings } from '../runtimes/runtimes.js';
import { Backoff } from './backoff.js';
import { ChildLog } from './child-log.js';
import { HealthProbe } from './health-probe.js';
import { canServe, hasProcess, StateMachine, type InstanceState } from './instance-state.js';
import { childMarker, signalGroup } from './process-record.js';
import { stopProcess, type StandbyChild, type StandbyProcess } from './standby.js';

export interface InstanceSettings {
  healthIntervalMs: number;
  healthTimeoutMs: number;
  maxFailures: number;
  startupTimeoutMs: number;
  gracefulMs: number;
  restart: RestartConfig;
  logDir: string;
  logMaxBytes: number;
  logMaxFiles: number;
  logTailLines: number;
  logLineMaxBytes: number;
  logBufferBytes: number;
  /** Absolute path of the state file: the marker every child carries. */
  stateFile: string;
  runtime: RuntimeSettings;
  managerEnv: NodeJS.ProcessEnv;
  /** Time for the restart policy (back-off, its reset, the restart window); default the system's. */
  clock?: Clock;
}

/** The calls in flight on an instance's child, where they are made (the routing's channel pool). */
export interface CallDrainer {
  activeCalls(instance: Instance): number;
  /** Resolves true once they are done, false after `timeoutMs`. */
  whenIdle(instance: Instance, timeoutMs: number): Promise<boolean>;
}

export interface InstanceHooks {
  onTransition?(name: string, from: InstanceState, to: InstanceState, reason: string): void;
  onRestart?(name: string, reason: string): void;
  onHealthFailure?(name: string): void;
  onReady?(name: string, seconds: number): void;
  onPid?(name: string, pid: number | undefined): void;
  /** Writing the child's log failed (counted by the log; the child runs on). */
  onLogError?(name: string, err: Error): void;
  /** Before each spawn: a reason to refuse this attempt (it fails like a crash at start), or undefined. */
  preflight?(name: string): Promise<string | undefined>;
  /** What a stop drains (undefined: nothing counts calls, the child is signalled at once). */
  drainer?(): CallDrainer | undefined;
}

export interface LastExit {
  code: number | null;
  signal: string | null;
  time: string;
}

export interface Placement {
  port: number;
  prometheusPort?: number;
  gpuIds: number[];
  createdAt: string;
}

/** The reason of the transition to `stopped` when `restart_policy = "on-failure"` leaves a clean exit alone. */
export const CLEAN_EXIT_STOPPED = 'child exited with code 0; restart_policy is on-failure';

/** How often a starting child is probed for readiness. */
const READY_POLL_MS = 200;
/** Lines of the log shown with a failure. */
const FAILURE_TAIL_LINES = 20;

type Child = ResultPromise<{ detached: true; buffer: false; reject: false; stdin: 'ignore' }> | StandbyProcess;

/**
 * Does this piece of a router child's stdout hold its ready line (router-log.ts)? Plain output
 * starts the line with `{"msg":"ready"`, `--json-output` (what the manager runs routers with) has
 * pino's level and time first: both have `"msg":"ready"`. Seen, the child is probed at once.
 */
export function hasReadyLine(out: Buffer): boolean {
  return out.includes('"msg":"ready"');
}

export class Instance {
  private readonly machine: StateMachine;
  readonly log: ChildLog;
  private child: Child | undefined;
  private childExited: Promise<void> | undefined;
  private generation = 0;
  private probe: HealthProbe | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  private backoffTimer: TimerHandle | undefined;
  private restartAfterStop = false;
  private killReason: string | undefined;
  /** A drain under way (a second stop waits on the same one). */
  private draining: Promise<void> | undefined;

  restarts = 0;
  /** The restart delay: grows with failures, reset by a child that ran reset_after_secs since ready. */
  private readonly backoff: Backoff;
  private readonly clock: Clock;
  private restartTimes: number[] = [];
  lastExit: LastExit | undefined;
  lastError: string | undefined;
  healthFailures = 0;
  lastHealthCheck: string | undefined;
  private spawnedAt = 0;
  private readyAt: number | undefined;
  /** A pre-flight check is running for this generation (no child yet). */
  private preflighting = false;
  /** A standby child the next spawn takes over (once), if its command allows. */
  private standby: StandbyChild | undefined;
  /** Wakes the readiness loop (the child printed its ready line). */
  private readyKick: (() => void) | undefined;
  /** The child printed its ready line since the readiness loop last looked. */
  private readyLineSeen = false;

  /** `freshLog`: a new instance, not a restored one: an old log of the same name is removed first. */
  constructor(
    readonly spec: InstanceSpec,
    readonly placement: Placement,
    private readonly settings: InstanceSettings,
    private readonly hooks: InstanceHooks = {},
    freshLog = false,
  ) {
    this.clock = settings.clock ?? systemClock;
    this.backoff = new Backoff({
      initialMs: settings.restart.initial_backoff_ms,
      factor: settings.restart.backoff_factor,
      maxMs: settings.restart.max_backoff_ms,
      resetAfterMs: settings.restart.reset_after_secs * 1000,
      clock: this.clock,
    });
    this.machine = new StateMachine('stopped', (from, to, reason) => {
      this.log.note(`${from} -> ${to}: ${reason}`);
      this.hooks.onTransition?.(spec.name, from, to, reason);
    });
    this.log = new ChildLog({
      dir: settings.logDir,
      name: spec.name,
      maxBytes: settings.logMaxBytes,
      maxFiles: settings.logMaxFiles,
      tailLines: settings.logTailLines,
      maxLineBytes: settings.logLineMaxBytes,
      bufferBytes: settings.logBufferBytes,
      fresh: freshLog,
      onError: (err) => {
        this.lastError = `writing the log ${this.log.file} failed: ${err.message}`;
        this.hooks.onLogError?.(spec.name, err);
      },
    });
  }

  get name(): string {
    return this.spec.name;
  }
  get status(): InstanceState {
    return this.machine.state;
  }
  get pid(): number | undefined {
    return this.child?.pid;
  }
  /** Increments at every spawn: a client holding a channel to an older child rebuilds it. */
  get spawnGeneration(): number {
    return this.generation;
  }
  get uptimeSecs(): number {
    return this.readyAt !== undefined && canServe(this.status) ? (Date.now() - this.readyAt) / 1000 : 0;
  }

  /**
   * Start with a standby child (standby.ts) taken over by the first spawn, when its command can
   * run there (the same environment, a router); else the standby is stopped and a child spawned.
   */
  startWith(standby: StandbyChild | undefined): void {
    this.dropStandby();
    this.standby = standby;
    this.start();
  }

  /** A standby child given to this instance and not taken over: stopped. */
  private dropStandby(): void {
    const sb = this.standby;
    this.standby = undefined;
    if (sb !== undefined) void stopProcess(sb, this.settings.gracefulMs);
  }

  /** Start from stopped or failed (a user action: crash-loop counters start afresh). */
  start(): void {
    this.backoff.reset();
    this.restartTimes = [];
    if (this.status === 'backoff') this.clearBackoff();
    this.spawnChild('start requested');
  }

  /**
   * Stop: out of balancing, the calls in flight drained (up to the grace period), then SIGTERM to
   * the process group, SIGKILL after the grace period; resolves once stopped.
   */
  async stop(reason = 'stop requested'): Promise<void> {
    this.restartAfterStop = false;
    if (this.status === 'backoff' || this.status === 'failed') {
      this.clearBackoff();
      this.machine.transition('stopped', reason);
      return;
    }
    if (this.status === 'stopped') return;
    if (this.preflighting) {
      this.abandonPreflight();
      this.dropStandby();
      this.machine.transition('stopped', reason);
      return;
    }
    if (this.status !== 'stopping') this.machine.transition('stopping', reason);
    await this.drainThenTerminate();
  }

  /** Restart: stop the live child (if any), then start a new one. */
  async restart(): Promise<void> {
    if (this.preflighting) {
      this.abandonPreflight();
      this.machine.transition('stopping', 'restart requested');
      this.restarts++;
      this.hooks.onRestart?.(this.name, 'manual');
      this.spawnChild('restart');
      return;
    }
    if (!hasProcess(this.status) || this.status === 'stopping') {
      if (this.status === 'stopping') await this.childExited;
      if (this.status === 'backoff') this.clearBackoff();
      if (this.status === 'stopped' || this.status === 'failed' || this.status === 'backoff') this.start();
      return;
    }
    this.restartAfterStop = true;
    this.machine.transition('stopping', 'restart requested');
    this.restarts++;
    this.hooks.onRestart?.(this.name, 'manual');
    await this.drainThenTerminate();
  }

  /** Forget a pre-flight check in progress (its result is ignored: the generation moved on). */
  private abandonPreflight(): void {
    this.preflighting = false;
    this.generation++;
  }

  private clearBackoff(): void {
    this.clock.clearTimeout(this.backoffTimer);
    this.backoffTimer = undefined;
  }

  private signal(sig: NodeJS.Signals): void {
    if (this.child?.pid !== undefined) signalGroup(this.child.pid, sig);
  }


  /** Drain the child's calls, then signal it, unless it exited meanwhile (a restart may have spawned the next one). */
  private async drainThenTerminate(): Promise<void> {
    const exited = this.childExited;
    if (exited === undefined) return;
    this.draining ??= this.drain(exited).finally(() => (this.draining = undefined));
    await this.draining;
    if (this.childExited !== exited) return;
    await this.terminate(exited);
  }

  /**
   * Wait for the calls in flight on the child (it is out of balancing already) to finish: at
   * most the grace period, or until the child exits by itself. The child's log says how it went.
   */
  private async drain(exited: Promise<void>): Promise<void> {
    const d = this.hooks.drainer?.();
    const n = d?.activeCalls(this) ?? 0;
    if (d === undefined || n === 0) return;
    const ms = this.settings.gracefulMs;
    this.log.note(`draining ${plural(n, 'call')} in flight before signalling the child (at most ${ms} ms, graceful_shutdown_timeout_secs)`);
    const t0 = performance.now();
    const idle = await Promise.race([d.whenIdle(this, ms), exited.then(() => 'exited' as const)]);
    const took = Math.round(performance.now() - t0);
    if (idle === true) this.log.note(`drained in ${took} ms`);
    else if (idle === false) this.log.note(`drain timed out after ${took} ms with ${plural(d.activeCalls(this), 'call')} in flight: signalling the child`);
  }

  private async terminate(exited: Promise<void>): Promise<void> {
    this.signal('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), this.settings.gracefulMs)));
    const late = await Promise.race([exited.then(() => false), timedOut]);
    clearTimeout(timer);
    if (late) {
      this.log.note(`no exit ${this.settings.gracefulMs} ms after SIGTERM: SIGKILL`);
      this.signal('SIGKILL');
      await exited;
    }
  }

  private spawnChild(reason: string): void {
    if (this.child !== undefined) throw new Error(`instance ${this.name}: a child is still alive (pid ${this.child.pid})`);
    this.machine.transition('starting', reason);
    const gen = ++this.generation;
    this.healthFailures = 0;
    this.readyAt = undefined;
    this.readyLineSeen = false;
    this.killReason = undefined;
    // Quiet (for the back-off's reset) only from readiness on.
    this.backoff.quietFrom('', null);
    this.spawnedAt = Date.now();
    const preflight = this.hooks.preflight;
    if (preflight === undefined) {
      this.launch(gen);
      return;
    }
    this.preflighting = true;
    void preflight(this.name)
      .catch((err: Error) => `pre-flight check failed: ${err.message}`)
      .then((problem) => {
        if (gen !== this.generation || !this.preflighting) return;
        this.preflighting = false;
        if (problem === undefined) this.launch(gen);
        else {
          this.dropStandby();
          this.attemptFailed(problem, problem, false);
        }
      });
  }

  private launch(gen: number): void {
    const cmd = buildChildCommand(this.spec.runtime ?? 'router', {
      spec: this.spec,
      port: this.placement.port,
      prometheusPort: this.placement.prometheusPort,
      gpuIds: this.placement.gpuIds,
      managerEnv: this.settings.managerEnv,
    }, this.settings.runtime);
    const sb = this.standby;
    this.standby = undefined;
    const argv = sb !== undefined ? handOverArgs(cmd, this.settings.runtime) : undefined;
    let child: Child;
    if (sb !== undefined && argv !== undefined && sb.alive && isDeepStrictEqual(sb.env, cmd.env)) {
      // A standby router takes the flags on stdin; it keeps its own marker (crash scan) and process group.
      this.log.note(`${cmd.logLine} (taken over by standby child ${sb.name}, pid ${sb.pid})`);
      child = sb.detach();
      // A standby that died just now: EPIPE here, and its exit is seen below like any child's.
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(`${JSON.stringify({ argv })}\n`);
    } else {
      if (sb !== undefined) void stopProcess(sb, this.settings.gracefulMs);
      this.log.note(cmd.logLine);
      const env = { ...cmd.env, ...childMarker(this.settings.stateFile, this.name) };
      child = execa(cmd.command, cmd.args, { env, extendEnv: false, detached: true, buffer: false, reject: false, stdin: 'ignore', cleanup: true });
    }
    this.child = child;
    child.stdout?.on('data', (d: Buffer) => {
      this.log.write(d);
      if (this.status === 'starting' && hasReadyLine(d)) {
        this.readyLineSeen = true;
        this.readyKick?.();
      }
    });
    child.stderr?.on('data', (d: Buffer) => this.log.write(d));
    this.hooks.onPid?.(this.name, child.pid);
    this.childExited = child.then(
      (r) => this.onExit(gen, r.exitCode ?? null, r.signal ?? null, r.failed && r.exitCode === undefined && r.signal === undefined ? r.message : undefined),
      (err: Error) => this.onExit(gen, null, null, err.message),
    );
    void this.awaitReady(gen);
  }

  private async awaitReady(gen: number): Promise<void> {
    const timeoutMs = this.spec.startup_timeout_secs !== undefined ? this.spec.startup_timeout_secs * 1000 : this.settings.startupTimeoutMs;
    const deadline = this.spawnedAt + timeoutMs;
    this.probe?.close();
    const probe = (this.probe = new HealthProbe(this.placement.port));
    let last = 'no answer yet';
    while (gen === this.generation && this.status === 'starting') {
      const r = await probe.check(Math.min(this.settings.healthTimeoutMs, Math.max(50, deadline - Date.now())));
      if (gen !== this.generation || this.status !== 'starting') return;
      if (r.ok) {
        this.readyAt = Date.now();
        this.backoff.quietFrom('', this.clock.now());
        this.machine.transition('running', `ready after ${((this.readyAt - this.spawnedAt) / 1000).toFixed(2)} s`);
        this.hooks.onReady?.(this.name, (this.readyAt - this.spawnedAt) / 1000);
        this.scheduleHealth(gen);
        return;
      }
      last = r.reason;
      if (Date.now() >= deadline) {
        this.killReason = `not ready within ${timeoutMs / 1000} s (${last})`;
        this.lastError = this.killReason;
        this.signal('SIGKILL');
        return;
      }
      // The next probe after READY_POLL_MS, or at once when the child prints its ready line
      // (now, or while the probe that just failed was under way).
      if (this.readyLineSeen) {
        this.readyLineSeen = false;
        continue;
      }
      await new Promise<void>((r2) => {
        const timer = setTimeout(() => {
          this.readyKick = undefined;
          r2();
        }, READY_POLL_MS);
        this.readyKick = () => {
          this.readyKick = undefined;
          clearTimeout(timer);
          r2();
        };
      });
    }
  }

  private scheduleHealth(gen: number): void {
    this.healthTimer = setTimeout(() => void this.healthCheck(gen), this.settings.healthIntervalMs);
  }

  private async healthCheck(gen: number): Promise<void> {
    if (gen !== this.generation || !canServe(this.status) || this.probe === undefined) return;
    const r = await this.probe.check(this.settings.healthTimeoutMs);
    if (gen !== this.generation || !canServe(this.status)) return;
    this.lastHealthCheck = new Date().toISOString();
    if (r.ok) {
      this.healthFailures = 0;
      if (this.status === 'unhealthy') this.machine.transition('running', 'health check passed');
    } else {
      this.healthFailures++;
      this.lastError = `health check failed: ${r.reason}`;
      this.hooks.onHealthFailure?.(this.name);
      if (this.status === 'running') this.machine.transition('unhealthy', this.lastError);
      if (this.healthFailures >= this.settings.maxFailures) {
        this.killReason = `${this.healthFailures} health checks failed in a row (${r.reason})`;
        this.log.note(`${this.killReason}: SIGKILL`);
        this.signal('SIGKILL');
        return; // the exit handler restarts it
      }
    }
    this.scheduleHealth(gen);
  }

  private onExit(gen: number, code: number | null, signal: string | null, spawnError?: string): void {
    if (gen !== this.generation) return;
    this.log.flush();
    clearTimeout(this.healthTimer);
    this.probe?.close();
    this.probe = undefined;
    this.child = undefined;
    this.hooks.onPid?.(this.name, undefined);
    this.lastExit = { code, signal, time: new Date().toISOString() };
    const how = spawnError ?? (signal !== null ? `killed by ${signal}` : `exit code ${code}`);
    this.log.note(`child exited: ${how}`);

    if (this.status === 'stopping') {
      if (this.restartAfterStop) {
        this.restartAfterStop = false;
        this.spawnChild('restart');
      } else {
        this.machine.transition('stopped', `child exited (${how})`);
      }
      return;
    }

    // An exit nobody asked for: died, or killed by us for a hang / startup timeout.
    const cause = this.killReason ?? `child exited unexpectedly (${how})`;
    this.attemptFailed(cause, this.killReason ?? (spawnError ? `spawn failed: ${spawnError}` : cause), code === 0 && this.killReason === undefined);
  }

  /** A start attempt or a child ended without being asked to: restart after back-off, or fail. */
  private attemptFailed(cause: string, lastError: string, cleanExit: boolean): void {
    this.lastError = lastError;
    const policy = this.spec.restart_policy ?? 'always';
    if (policy === 'on-failure' && cleanExit) {
      this.machine.transition('stopped', CLEAN_EXIT_STOPPED);
      return;
    }
    if (policy === 'never') {
      this.fail(`${cause}; restart_policy is never`);
      return;
    }
    const r = this.settings.restart;
    const now = this.clock.now();
    this.restartTimes = this.restartTimes.filter((t) => now - t < r.window_secs * 1000);
    if (this.restartTimes.length >= r.max_restarts) {
      this.fail(`${cause}; ${this.restartTimes.length} restarts within ${r.window_secs} s`);
      return;
    }
    const delay = this.backoff.next();
    this.machine.transition('backoff', `${cause}; restarting in ${delay} ms`);
    this.backoffTimer = this.clock.setTimeout(() => {
      this.backoffTimer = undefined;
      if (this.status !== 'backoff') return;
      this.restartTimes.push(this.clock.now());
      this.restarts++;
      this.hooks.onRestart?.(this.name, this.killReason !== undefined ? 'unhealthy' : 'crash');
      this.spawnChild(`restart ${this.restarts} after: ${cause}`);
    }, delay);
  }

  private fail(reason: string): void {
    const tail = this.log.tail(FAILURE_TAIL_LINES).filter((l) => !l.startsWith('[teiplex]')).slice(-5);
    this.lastError = tail.length > 0 ? `${reason}; last output: ${tail.join(' | ')}` : reason;
    this.machine.transition('failed', reason);
  }

  /** Forget timers (manager shutdown after stop). */
  dispose(): void {
    this.dropStandby();
    this.clearBackoff();
    clearTimeout(this.healthTimer);
    this.probe?.close();
  }
}

function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}
