/**
 * The registry of instances: create, delete, start, stop, restart; ports and GPUs assigned;
 * desired state persisted on every change; boot restores (or seeds) after stopping orphans a
 * dead manager left behind. The API and the multiplexer look instances up here.
 *
 * Crash safety: a change is acknowledged (the call resolves) only once the state file holds it;
 * a failed write rolls the in-memory change back and throws STATE_WRITE_FAILED. Children are
 * spawned only after the state that wants them is on disk, and carry the marker environment, so
 * a manager killed at any instant leaves nothing the next one cannot find (process-record.ts).
 * One manager per state file (manager-lock.ts). The desired state is written by its one owner
 * (state/desired-state.ts); instance transitions are published on `events`.
 * An instance of the state file that cannot be placed at boot (port taken, GPU gone) is kept,
 * with the reason, and retried with back-off like any failed start; it is never dropped.
 * What only the routing knows of a child (the calls in flight a stop drains, its outlier
 * ejection) reaches the supervisor through `drainer` and `outliers`, set by the wiring: the
 * supervisor does not depend on routing.
 */
import path from 'node:path';
import { TeiplexError } from '../common/errors.js';
import { reconcile, type ReconcileReport } from '../common/reconcile.js';
import { SerialQueue } from '../common/serial-queue.js';
import type { Config } from '../config/config.js';
import type { InstanceSpec } from '../config/instance-spec.js';
import { assertSpecAllowed, specRefusal } from '../config/spec-policy.js';
import { isDeepStrictEqual } from 'node:util';
import { EventEmitter } from 'node:events';
import { DesiredState } from '../state/desired-state.js';
import type { Source, StoredInstance, StoredModel } from '../state/state-store.js';
import { checkGpuIds, discoverGpus, nvidiaSmiMissing, type GpuDiscovery } from './gpus.js';
import { CLEAN_EXIT_STOPPED, Instance, type CallDrainer, type InstanceHooks, type InstanceSettings, type Placement } from './instance.js';
import { canServe, hasProcess, type InstanceState } from './instance-state.js';
import { allocatePort, portIsFree, PortRangeExhausted } from './ports.js';
import { ManagerLock } from './manager-lock.js';
import { findMarked, reapOrphans, takeLegacyRecords } from './process-record.js';
import { StandbyPool, stopProcess, type StandbyChild } from './standby.js';
import { buildChildCommand, handOverArgs, standbyCommand } from '../runtimes/runtimes.js';

/** The last GPU discovery: `run` in progress (value undefined) or done at `at`. */
interface GpuCacheEntry {
  at: number;
  value: GpuDiscovery | undefined;
  run: Promise<GpuDiscovery>;
}

export interface SupervisorOptions {
  config: Config;
  env?: NodeJS.ProcessEnv;
  hooks?: InstanceHooks;
  /** The teiplex CLI script run for router children (default: this package's bin). */
  teiplexScript?: string;
  /** The desired-state owner (default: one on config.state_file); the catalog persists its models through the same one. */
  desired?: DesiredState;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/** An instance changed status (every transition of the state machine, in order). */
export interface InstanceTransition {
  name: string;
  from: InstanceState;
  to: InstanceState;
  reason: string;
}

/** What the supervisor publishes: the catalog, the multiplexer and the log listen. */
export interface SupervisorEvents {
  transition: [InstanceTransition];
}

/** An instance's outlier ejection (the routing's outlier detection), as GET /instances shows it. */
export interface OutlierStatus {
  ejected: boolean;
  /** ISO time the ejection ends (a probe then decides), or null. */
  ejected_until: string | null;
  /** Ejections of this child so far (the next lasts longer). */
  ejections: number;
  /** Why the last ejection happened (`consecutive_failures`, `slow`), or null. */
  reason: string | null;
}

/** An instance outlier detection has not ejected (or no detection runs). */
export const NOT_EJECTED: OutlierStatus = { ejected: false, ejected_until: null, ejections: 0, reason: null };

/** Each instance's outlier status (the routing's outlier detection). */
export interface OutlierView {
  of(instance: Instance): OutlierStatus;
}

/** What a reload did to the config's instances. */
export type { ReconcileReport } from '../common/reconcile.js';

export interface BootReport {
  source: 'state' | 'config';
  restored: number;
  orphansStopped: string[];
  /** Temp files of state writes killed midway, removed. */
  staleTempsRemoved: number;
  /** Restored, but not placeable now: kept, and retried with back-off. */
  retrying: Array<{ name: string; reason: string }>;
  corruptStateMovedTo?: string;
  corruptReason?: string;
  skipped: Array<{ name: string; reason: string }>;
}

interface Entry {
  instance: Instance;
  desired: 'running' | 'stopped';
  source: Source;
  /** The catalog model this instance is a replica of: not persisted, managed through /models. */
  owner?: string;
}

export interface CreateOptions {
  source?: Source;
  /** A replica of this catalog model (see Entry.owner). */
  owner?: string;
  /** A standby child (standby.ts) the first spawn takes over when it can; stopped when it cannot or the instance is not created. */
  standby?: StandbyChild;
}

export class Supervisor {
  private readonly entries = new Map<string, Entry>();
  readonly desired: DesiredState;
  readonly events = new EventEmitter<SupervisorEvents>();
  /** Absolute path of the state file: the marker of our children. */
  readonly stateFile: string;
  private readonly lock: ManagerLock;
  private readonly settings: InstanceSettings;
  private readonly log: (msg: string, fields?: Record<string, unknown>) => void;
  private gpuCache: GpuCacheEntry | undefined;
  private closing = false;
  /** Boot: the ports the state file gives its instances, held while they are placed one by one (an allocation for one must not take a later one's port). */
  private reserved = new Set<number>();
  /** Serializes admin operations: checks and their effects never interleave. */
  private readonly queue = new SerialQueue();
  /** Set once boot has restored (or seeded) the desired state, whether or not it succeeded. */
  private restored = false;
  private markRestored: () => void = () => undefined;
  private readonly restoredP = new Promise<void>((resolve) => (this.markRestored = resolve));
  /** Standby router children started ahead (how many and where: the catalog's decision). */
  readonly standby: StandbyPool;
  /** The calls in flight on each child, which a stop drains first (set by the wiring: the routing's channels). */
  drainer: CallDrainer | undefined;
  /** Each instance's outlier ejection (set by the wiring: the routing's outlier detection). */
  outliers: OutlierView | undefined;

  constructor(private readonly o: SupervisorOptions) {
    const c = o.config;
    this.stateFile = path.resolve(c.state_file);
    this.desired = o.desired ?? new DesiredState(this.stateFile);
    this.desired.ownInstances({ snapshot: () => this.stored() });
    this.lock = new ManagerLock(this.stateFile);
    this.log = o.log ?? (() => undefined);
    this.settings = {
      healthIntervalMs: c.health_check_interval_secs * 1000,
      healthTimeoutMs: c.health_check_timeout_secs * 1000,
      maxFailures: c.max_failures_before_restart,
      startupTimeoutMs: c.startup_timeout_secs * 1000,
      gracefulMs: c.graceful_shutdown_timeout_secs * 1000,
      restart: c.restart,
      logDir: c.log_dir,
      logMaxBytes: c.log_max_bytes,
      logMaxFiles: c.log_max_files,
      logTailLines: c.log_tail_lines,
      logLineMaxBytes: c.log_line_max_bytes,
      logBufferBytes: c.log_buffer_bytes,
      stateFile: this.stateFile,
      runtime: { teiBinaryPath: c.tei_binary_path, teiplexScript: o.teiplexScript, onnxCacheDir: c.onnx_cache_dir === '' ? undefined : path.resolve(path.dirname(this.stateFile), c.onnx_cache_dir) },
      managerEnv: o.env ?? process.env,
    };
    this.standby = new StandbyPool({ stateFile: this.stateFile, runtime: this.settings.runtime, managerEnv: this.settings.managerEnv, gracefulMs: this.settings.gracefulMs, log: this.log });
  }

  /** Instances ordered by name (the order `instance_index` refers to). */
  list(): Instance[] {
    return [...this.entries.values()].map((e) => e.instance).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  get(name: string): Instance {
    const e = this.entries.get(name);
    if (!e) throw new TeiplexError('INSTANCE_NOT_FOUND', `instance '${name}' not found`);
    return e.instance;
  }

  find(name: string): Instance | undefined {
    return this.entries.get(name)?.instance;
  }

  desiredState(name: string): 'running' | 'stopped' | undefined {
    return this.entries.get(name)?.desired;
  }

  /** The catalog model an instance is a replica of. */
  ownerOf(name: string): string | undefined {
    return this.entries.get(name)?.owner;
  }

  /**
   * A ready standby child (standby.ts) that a child of `spec` on `gpuIds` could take over: a
   * router whose command has the standby's environment (runtimes.ts handOverArgs); undefined: none.
   */
  standbyFor(spec: InstanceSpec, gpuIds: number[]): StandbyChild | undefined {
    const env = this.standbyEnv(spec, gpuIds);
    return env === undefined ? undefined : this.standby.find(gpuIds.length === 0 ? 'cpu' : `gpu${gpuIds[0]}`, env);
  }

  /** Could a child of `spec` on `gpuIds` take over a standby child (whether one is there now or not)? */
  standbyUsable(spec: InstanceSpec, gpuIds: number[]): boolean {
    const env = this.standbyEnv(spec, gpuIds);
    return env !== undefined && isDeepStrictEqual(env, standbyCommand(gpuIds, this.settings.managerEnv, this.settings.runtime).env);
  }

  /** The environment of a child of `spec`, when a standby could run its command (a router). */
  private standbyEnv(spec: InstanceSpec, gpuIds: number[]): Record<string, string> | undefined {
    const cmd = buildChildCommand(spec.runtime ?? 'router', { spec, port: 0, gpuIds, managerEnv: this.settings.managerEnv }, this.settings.runtime);
    return handOverArgs(cmd, this.settings.runtime) === undefined ? undefined : cmd.env;
  }

  /** Admin operations on an instance go through /models when a catalog model owns it. */
  assertUnmanaged(name: string): void {
    const owner = this.ownerOf(name);
    if (owner !== undefined) throw new TeiplexError('INSTANCE_MANAGED', `instance '${name}' is a replica of catalog model '${owner}': use /models/${owner}/load, /unload or DELETE /models/${owner}`);
  }

  gpus(): Promise<GpuDiscovery> {
    // Fresh within 2 s (GPU memory in use moves); a host without nvidia-smi is asked again
    // after a minute, not on every budget check (spawning a process costs the manager ms of
    // CPU). Callers at the same time share one run.
    const c = this.gpuCache;
    if (c !== undefined && (c.value === undefined || Date.now() - c.at <= (nvidiaSmiMissing(c.value) ? 60_000 : 2000))) return c.run;
    const entry: GpuCacheEntry = { at: Date.now(), value: undefined, run: discoverGpus(this.o.config.nvidia_smi_path) };
    entry.run.then((v) => {
      entry.at = Date.now();
      entry.value = v;
    });
    this.gpuCache = entry;
    return entry.run;
  }

  private heldPorts(except?: string): Set<number> {
    const held = new Set<number>([this.o.config.api_port, this.o.config.grpc_port]);
    for (const [name, e] of this.entries) {
      if (name === except) continue;
      held.add(e.instance.placement.port);
      if (e.instance.placement.prometheusPort !== undefined) held.add(e.instance.placement.prometheusPort);
    }
    for (const c of this.candidates.values()) for (const p of [c.placement.port, c.placement.prometheusPort]) if (p !== undefined) held.add(p);
    return held;
  }

  private async place(spec: InstanceSpec): Promise<{ port: number; prometheusPort?: number; gpuIds: number[] }> {
    const c = this.o.config;
    const held = this.heldPorts();
    for (const p of this.reserved) if (p !== spec.port) held.add(p);
    let port = spec.port;
    if (port !== undefined) {
      if (held.has(port)) throw new TeiplexError('PORT_CONFLICT', `port ${port} is already used by another instance or the manager`);
      if (!(await portIsFree(port))) throw new TeiplexError('PORT_CONFLICT', `port ${port} is in use by another process`);
    }
    try {
      port ??= await allocatePort(c.instance_port_start, c.instance_port_end, held);
      held.add(port);
      let prometheusPort = spec.prometheus_port;
      if (prometheusPort !== undefined && held.has(prometheusPort)) throw new TeiplexError('PORT_CONFLICT', `prometheus_port ${prometheusPort} is already used`);
      // TEI's gRPC build binds a Prometheus port (default 9000, the manager's API port): give it its own.
      if (prometheusPort === undefined && spec.runtime === 'tei') prometheusPort = await allocatePort(c.instance_port_start, c.instance_port_end, held);
      const gpuIds = gpuIdsOf(spec);
      if (gpuIds.length > 0) checkGpuIds(gpuIds, await this.gpus());
      return { port, prometheusPort, gpuIds };
    } catch (err) {
      if (err instanceof PortRangeExhausted) throw new TeiplexError('PORT_CONFLICT', `${err.message} (instance_port_start..instance_port_end)`);
      throw err;
    }
  }

  /** The supervisor's section of the desired state: every instance but replicas (they follow their model). */
  private stored(): StoredInstance[] {
    const instances: StoredInstance[] = [];
    for (const i of this.list()) {
      const e = this.entries.get(i.name)!;
      if (e.owner !== undefined) continue;
      instances.push({ ...i.spec, port: i.placement.port, desired_state: e.desired, created_at: i.placement.createdAt, source: e.source });
    }
    return instances;
  }

  private persist(): Promise<void> {
    return this.desired.save();
  }

  private commit(change: () => void, undo: () => void): Promise<void> {
    return this.desired.commit(change, undo);
  }

  /** Before each spawn: the instance's ports are free and its GPUs present. */
  private async preflight(i: Instance): Promise<string | undefined> {
    for (const port of [i.placement.port, i.placement.prometheusPort]) {
      if (port !== undefined && !(await portIsFree(port))) return `port ${port} is in use by another process`;
    }
    if (i.placement.gpuIds.length > 0) {
      try {
        checkGpuIds(i.placement.gpuIds, await this.gpus());
      } catch (err) {
        return (err as Error).message;
      }
    }
    return undefined;
  }

  /**
   * The hooks of the instance `self()` returns: published under its name, except while it is
   * muted (a swap's candidate before the flip, the instance it replaced after it), when its
   * transitions go to the swap's listener only.
   */
  private hooks(self: () => Instance): InstanceHooks {
    const h = this.o.hooks ?? {};
    const live = (): boolean => !this.muted.has(self());
    return {
      ...h,
      onRestart: (name, reason) => {
        if (live()) h.onRestart?.(name, reason);
      },
      onHealthFailure: (name) => {
        if (live()) h.onHealthFailure?.(name);
      },
      onReady: (name, seconds) => {
        if (live()) h.onReady?.(name, seconds);
      },
      onPid: (name, pid) => {
        if (live()) h.onPid?.(name, pid);
      },
      onTransition: (name, from, to, reason) => {
        if (!live()) {
          this.swapListeners.get(self())?.(to, reason);
          return;
        }
        h.onTransition?.(name, from, to, reason);
        this.events.emit('transition', { name, from, to, reason });
        if (to === 'stopped' && reason === CLEAN_EXIT_STOPPED) this.keepStopped(name);
      },
      preflight: () => this.preflight(self()),
      drainer: () => this.drainer,
      onLogError: (name, err) => {
        this.log('writing a child log failed; the child runs on', { instance: name, error: err.message });
        h.onLogError?.(name, err);
      },
    };
  }

  private async add(spec: InstanceSpec, desired: 'running' | 'stopped', createdAt: string, opts: CreateOptions & { freshLog?: boolean } = {}): Promise<Instance> {
    const c = this.o.config;
    if (this.entries.has(spec.name)) throw new TeiplexError('INSTANCE_EXISTS', `instance '${spec.name}' already exists`);
    if (c.max_instances !== undefined && this.entries.size >= c.max_instances) {
      throw new TeiplexError('MAX_INSTANCES_REACHED', `max_instances (${c.max_instances}) reached`);
    }
    if ((spec.runtime ?? 'router') === 'command' && spec.command === undefined) {
      throw new TeiplexError('BAD_REQUEST', `runtime 'command' needs the field 'command'`);
    }
    const placement = await this.place(spec);
    return this.register(spec, { ...placement, createdAt }, desired, opts);
  }

  /** Boot: where a stored instance that cannot be placed now still belongs: its own port, its GPUs, a Prometheus port for a tei child if one is free. */
  private async fallbackPlacement(spec: InstanceSpec, port: number, createdAt: string): Promise<Placement> {
    const c = this.o.config;
    const held = this.heldPorts();
    for (const p of this.reserved) held.add(p);
    let prometheusPort = spec.prometheus_port;
    if (prometheusPort === undefined && spec.runtime === 'tei') prometheusPort = await allocatePort(c.instance_port_start, c.instance_port_end, held).catch(() => undefined);
    const gpuIds = gpuIdsOf(spec);
    return { port, prometheusPort, gpuIds, createdAt };
  }

  private register(spec: InstanceSpec, placement: Placement, desired: 'running' | 'stopped', opts: CreateOptions & { freshLog?: boolean }): Instance {
    const instance: Instance = new Instance(spec, placement, this.settings, this.hooks(() => instance), opts.freshLog);
    this.entries.set(spec.name, { instance, desired, source: opts.source ?? 'api', owner: opts.owner });
    return instance;
  }

  /** Create an instance (and start it unless `start` is false). */
  create(spec: InstanceSpec, start = true, opts: CreateOptions = {}): Promise<Instance> {
    const created = this.queue.run(async () => {
      this.assertOpen();
      if ((opts.source ?? 'api') === 'api') assertSpecAllowed(spec, 'api', this.o.config.security);
      const instance = await this.add(spec, start ? 'running' : 'stopped', new Date().toISOString(), { ...opts, freshLog: true });
      if (opts.owner === undefined) {
        try {
          await this.persist();
        } catch (err) {
          this.entries.delete(spec.name);
          instance.dispose();
          throw err;
        }
      }
      if (start) instance.startWith(opts.standby);
      else if (opts.standby !== undefined) void stopProcess(opts.standby, this.settings.gracefulMs);
      return instance;
    });
    // Not created: a standby handed to it is stopped, not leaked.
    if (opts.standby !== undefined) created.catch(() => void stopProcess(opts.standby!, this.settings.gracefulMs));
    return created;
  }

  /**
   * Config reload: bring the instances that came from the config in line with `specs`. Those
   * whose spec is unchanged are not touched; changed ones are replaced (stopped, created anew);
   * removed ones are deleted; instances created through the API are left alone.
   */
  reconcile(specs: readonly InstanceSpec[]): Promise<ReconcileReport> {
    return this.queue.run(async () => {
      this.assertOpen();
      const report = await reconcile(specs, {
        nameOf: (spec) => spec.name,
        owned: () => [...this.entries].filter(([, e]) => e.source === 'config' && e.owner === undefined).map(([name, e]) => [name, e.instance.spec]),
        same: sameSpec,
        conflict: (name) => {
          const e = this.entries.get(name);
          if (e === undefined) return undefined;
          return e.owner !== undefined ? `a replica of catalog model '${e.owner}' has that name` : 'an instance created through the API has that name';
        },
        delete: async (name, why) => {
          const e = this.entries.get(name)!;
          await e.instance.stop(why === 'removed' ? 'removed from the config' : 'spec changed in the config');
          e.instance.dispose();
          await e.instance.log.close();
          this.entries.delete(name);
        },
        create: async (spec) => {
          const instance = await this.add(spec, 'running', new Date().toISOString(), { source: 'config' });
          instance.start();
        },
      });
      await this.persist();
      return report;
    });
  }

  /** Delete: the state without it is saved first; then its child is stopped and its log removed. */
  delete(name: string): Promise<Instance> {
    return this.queue.run(async () => {
      const instance = this.get(name);
      const entry = this.entries.get(name)!;
      await this.commit(
        () => this.entries.delete(name),
        () => this.entries.set(name, entry),
      );
      await instance.stop('instance deleted');
      instance.dispose();
      await instance.log.remove();
      return instance;
    });
  }

  start(name: string): Promise<Instance> {
    return this.queue.run(async () => {
      this.assertOpen();
      const instance = this.get(name);
      this.admit(name);
      if (instance.status !== 'stopped' && instance.status !== 'failed') {
        throw new TeiplexError('ALREADY_RUNNING', `instance '${name}' is ${instance.status}`);
      }
      await this.setDesired(name, 'running');
      instance.start();
      return instance;
    });
  }

  stop(name: string): Promise<Instance> {
    return this.queue.run(async () => {
      const instance = this.get(name);
      if (instance.status === 'stopped' || (instance.status === 'failed' && this.entries.get(name)!.desired === 'stopped')) {
        throw new TeiplexError('NOT_RUNNING', `instance '${name}' is ${instance.status}`);
      }
      await this.setDesired(name, 'stopped');
      await instance.stop();
      return instance;
    });
  }

  restart(name: string): Promise<Instance> {
    return this.queue.run(async () => {
      this.assertOpen();
      const instance = this.get(name);
      this.admit(name);
      await this.setDesired(name, 'running');
      await instance.restart();
      return instance;
    });
  }

  /**
   * A child that exited 0 under `restart_policy = "on-failure"` stays stopped: its desired state
   * becomes `stopped` and is written, so a manager restart does not start it again and
   * /health/all does not count it as down (a start through the API wants it running again).
   */
  private keepStopped(name: string): void {
    this.queue
      .run(async () => {
        const e = this.entries.get(name);
        if (this.closing || e === undefined || e.owner !== undefined || e.desired !== 'running' || e.instance.status !== 'stopped') return;
        await this.setDesired(name, 'stopped');
      })
      .catch((err: Error) => this.log('desired state of an instance that exited 0 (restart_policy on-failure) not saved', { instance: name, error: err.message }));
  }

  /** An API-created spec (one restored from the state file too) runs only while the config's [security] allows it. */
  private admit(name: string): void {
    const e = this.entries.get(name);
    if (e !== undefined) this.checkSpec(e.instance.spec, e.source);
  }

  /** Throws FORBIDDEN_SETTING when the config's [security] does not let a spec of this source run (the catalog asks before placing a replica). */
  checkSpec(spec: Parameters<typeof assertSpecAllowed>[0], source: Source): void {
    if (source === 'api') assertSpecAllowed(spec, 'api', this.o.config.security);
  }

  /**
   * Start, stop and restart write the state file before they act, even when `desired_state` does
   * not change (a restart of a running instance, a start of a failed one): every change is
   * answered only once the file holds the state it acts on, and a write that fails refuses it.
   */
  private async setDesired(name: string, desired: 'running' | 'stopped'): Promise<void> {
    const e = this.entries.get(name)!;
    const before = e.desired;
    await this.commit(
      () => (e.desired = desired),
      () => (e.desired = before),
    );
  }

  private assertOpen(): void {
    if (this.closing) throw new TeiplexError('UNHEALTHY', 'the manager is shutting down');
  }

  /**
   * Stop orphans, then restore the state file (auto_restore) or seed from the config. Admin
   * operations that arrive meanwhile (the API already listens) wait: none may spawn a child or
   * write the state before the orphans are gone and the state file is read.
   */
  boot(): Promise<BootReport> {
    return this.queue.run(() => this.restore()).finally(() => {
      this.restored = true;
      this.markRestored();
      this.desired.opened();
    });
  }

  /**
   * Undefined once boot has restored the desired state. Before, a promise that resolves when it
   * has, or rejects UNHEALTHY after `timeoutMs`: a call arriving while the manager restores its
   * instances waits for them instead of being told they don't exist.
   */
  whenRestored(timeoutMs: number): Promise<void> | undefined {
    if (this.restored) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new TeiplexError('UNHEALTHY', `the manager is still restoring its instances (${timeoutMs / 1000} s); retry`, { retryAfterSecs: 1 })),
        timeoutMs,
      );
    });
    return Promise.race([this.restoredP, late]).finally(() => clearTimeout(timer));
  }

  private async restore(): Promise<BootReport> {
    const c = this.o.config;
    await this.lock.acquire(); // before any file or process is touched
    const staleTemps = await this.desired.prepare();
    if (staleTemps.length > 0) this.log('removed temp files of interrupted state writes', { files: staleTemps });
    const orphans = [...(await takeLegacyRecords(`${this.stateFile}.pids.json`)), ...findMarked(this.stateFile)];
    const orphansStopped = await reapOrphans(orphans, this.settings.gracefulMs);
    if (orphansStopped.length > 0) this.log('stopped children left by a previous manager', { instances: orphansStopped, pids: orphans.map((o) => o.pid) });
    const report: BootReport = { source: 'config', restored: 0, orphansStopped, staleTempsRemoved: staleTemps.length, retrying: [], skipped: [] };
    let items: Array<{ spec: InstanceSpec; desired: 'running' | 'stopped'; createdAt: string; source: Source }> = [];
    const loaded = await this.desired.load();
    if (loaded.kind === 'corrupt') {
      report.corruptStateMovedTo = loaded.movedTo;
      report.corruptReason = loaded.reason;
      this.log('state file is corrupt: moved aside, seeding from the config', { moved_to: loaded.movedTo, reason: loaded.reason });
    }
    let models: StoredModel[];
    if (loaded.kind === 'ok' && c.auto_restore) {
      report.source = 'state';
      items = loaded.state.instances.map(({ desired_state, created_at, source, ...spec }) => ({ spec, desired: desired_state, createdAt: created_at, source }));
      models = loaded.state.models;
    } else {
      const now = new Date().toISOString();
      items = c.instances.map((spec) => ({ spec, desired: 'running' as const, createdAt: now, source: 'config' as const }));
      models = seedModels(c);
    }
    this.desired.restoreModels(models);
    const refused = new Set<string>();
    this.reserved = new Set(items.flatMap((it) => [it.spec.port, it.spec.prometheus_port]).filter((p): p is number => p !== undefined));
    for (const it of items) {
      try {
        await this.add(it.spec, it.desired, it.createdAt, { source: it.source });
        report.restored++;
      } catch (err) {
        const reason = (err as Error).message;
        if (report.source === 'state' && it.spec.port !== undefined && !this.entries.has(it.spec.name) && (err as TeiplexError).code !== 'MAX_INSTANCES_REACHED') {
          // In the desired state with its port: keep it; its starts fail (and back off) until the port or GPU is there.
          const instance = this.register(it.spec, await this.fallbackPlacement(it.spec, it.spec.port, it.createdAt), it.desired, { source: it.source });
          instance.lastError = `not placeable at boot: ${reason}`;
          report.retrying.push({ name: it.spec.name, reason });
          this.log('instance restored, but not placeable now: retrying with back-off', { instance: it.spec.name, reason });
        } else {
          report.skipped.push({ name: it.spec.name, reason });
          this.log('instance not restored', { instance: it.spec.name, reason });
          continue;
        }
      }
      // Written by a manager that allowed more: kept (desired state and all), not started.
      const refusal = specRefusal(it.spec, it.source, c.security);
      if (refusal !== undefined) {
        this.entries.get(it.spec.name)!.instance.lastError = `not started: ${refusal.message}`;
        refused.add(it.spec.name);
        this.log('instance not started: its spec is not allowed by this config', { instance: it.spec.name, reason: refusal.message });
      }
    }
    this.reserved.clear();
    await this.desired.bootSave();
    for (const e of this.entries.values()) if (e.desired === 'running' && !refused.has(e.instance.name)) e.instance.start();
    return report;
  }

  // ---- rolling swap (src/swap/swap.ts): a candidate beside the running child, then the flip ----

  /** Swap candidates by instance name (one per name at a time): placed, neither in the registry nor in the state file. */
  private readonly candidates = new Map<string, Instance>();
  /** Instances whose hooks publish nothing under their name: a candidate until the flip, the instance it replaced after it. */
  private readonly muted = new WeakSet<Instance>();
  /** A muted instance's transitions go here (the swap waiting for its candidate). */
  private readonly swapListeners = new WeakMap<Instance, (to: InstanceState, reason: string) => void>();
  /** Replaced instances still stopping: shutdown waits for them. */
  private readonly retiring = new Set<Promise<void>>();

  /**
   * A candidate for swapping instance `name` to `spec`: placed beside the running child (a port of
   * its own unless the spec names one, the spec's GPUs), its log the one of `<log_dir>/<name>.log`
   * and `<log_dir>/swap/<name>.log` that the running child does not write (an earlier one removed),
   * its transitions told to `onTransition` and published nowhere; not started. Refused: no such
   * instance, a catalog replica (unless `replica`: the catalog swaps its models' replicas), a swap
   * of it in progress, not running, a spec the config's [security] does not allow (`source`
   * 'api', the default; a config reload's swap is 'config'), no free port.
   */
  prepareSwap(name: string, spec: InstanceSpec, o: { replica?: boolean; source?: Source; onTransition: (to: InstanceState, reason: string) => void }): Promise<Instance> {
    return this.queue.run(async () => {
      this.assertOpen();
      const old = this.get(name);
      const e = this.entries.get(name)!;
      if (o.replica !== true) this.assertUnmanaged(name);
      if (spec.name !== name) throw new TeiplexError('BAD_REQUEST', `a swap keeps the instance's name '${name}' (got '${spec.name}')`);
      if (this.candidates.has(name)) throw new TeiplexError('SWAP_IN_PROGRESS', `a swap of instance '${name}' is already in progress`);
      if (e.desired !== 'running' || old.status !== 'running') {
        throw new TeiplexError('NOT_RUNNING', `instance '${name}' is ${old.status} (desired ${e.desired}): only a running instance is swapped`);
      }
      this.checkSpec(spec, o.source ?? 'api');
      if ((spec.runtime ?? 'router') === 'command' && spec.command === undefined) throw new TeiplexError('BAD_REQUEST', `runtime 'command' needs the field 'command'`);
      const placement = await this.place(spec);
      // The log directory the running child does not write to: its live log is never removed.
      const swapDir = path.join(this.settings.logDir, 'swap');
      const settings = { ...this.settings, logDir: path.dirname(old.log.file) === swapDir ? this.settings.logDir : swapDir };
      const candidate: Instance = new Instance(spec, { ...placement, createdAt: old.placement.createdAt }, settings, this.hooks(() => candidate), true);
      this.muted.add(candidate);
      this.swapListeners.set(candidate, o.onTransition);
      this.candidates.set(name, candidate);
      return candidate;
    });
  }

  /** Where an instance came from (the config, the API); undefined: no such instance. */
  sourceOf(name: string): Source | undefined {
    return this.entries.get(name)?.source;
  }

  /** A refused or failed swap: its candidate stopped and forgotten (its log file is kept). */
  async abandonSwap(candidate: Instance, reason: string): Promise<void> {
    await candidate.stop(reason);
    candidate.dispose();
    await candidate.log.close();
    if (this.candidates.get(candidate.name) === candidate) this.candidates.delete(candidate.name);
    this.swapListeners.delete(candidate);
  }

  /**
   * The flip. The state file gets the candidate's spec first (a failed write changes nothing:
   * STATE_WRITE_FAILED); then the registry entry of the name is the candidate, whose transitions
   * are published from now on, and `old` is muted and returned for the caller to retire. Refused
   * when the instance changed meanwhile (deleted, stopped, created anew) or the candidate is not running.
   */
  completeSwap(old: Instance, candidate: Instance, reason: string): Promise<Instance> {
    return this.queue.run(async () => {
      this.assertOpen();
      const name = candidate.name;
      const e = this.entries.get(name);
      if (this.candidates.get(name) !== candidate) throw new TeiplexError('SWAP_FAILED', `the swap candidate of instance '${name}' is gone`);
      if (e === undefined || e.instance !== old || e.desired !== 'running' || !canServe(old.status)) {
        throw new TeiplexError('NOT_RUNNING', `instance '${name}' changed during the swap (${e === undefined ? 'deleted' : e.instance !== old ? 'created anew' : `${old.status}, desired ${e.desired}`})`);
      }
      if (candidate.status !== 'running') throw new TeiplexError('SWAP_FAILED', `the new version of instance '${name}' is ${candidate.status}${candidate.lastError ? `: ${candidate.lastError}` : ''}`);
      await this.commit(
        () => (e.instance = candidate),
        () => (e.instance = old),
      );
      this.candidates.delete(name);
      this.swapListeners.delete(candidate);
      this.muted.delete(candidate);
      this.muted.add(old);
      this.o.hooks?.onPid?.(name, candidate.pid);
      this.o.hooks?.onTransition?.(name, old.status, candidate.status, reason);
      this.events.emit('transition', { name, from: old.status, to: candidate.status, reason });
      return old;
    });
  }

  /** Stop an instance a swap replaced (as any stop: its calls in flight drain first), forget it; shutdown waits for it. */
  retire(old: Instance, reason: string): Promise<void> {
    const stopped = (async () => {
      await old.stop(reason);
      old.dispose();
      await old.log.close();
    })();
    this.retiring.add(stopped);
    const done = (): void => void this.retiring.delete(stopped);
    stopped.then(done, done);
    return stopped;
  }

  /** Shutdown: candidates stopped, replaced instances' stops awaited. */
  private async stopSwaps(): Promise<void> {
    await Promise.all([...[...this.candidates.values()].map((c) => this.abandonSwap(c, 'manager shutting down')), ...this.retiring]);
  }

  /** Manager shutdown: stop every child in parallel, save the state, forget timers. */
  async shutdown(): Promise<void> {
    this.closing = true;
    await this.queue.idle;
    await Promise.all([
      this.standby.close(),
      this.stopSwaps(),
      ...[...this.entries.values()].map(async (e) => {
        if (hasProcess(e.instance.status) || e.instance.status === 'backoff') await e.instance.stop('manager shutting down');
        e.instance.dispose();
        await e.instance.log.close();
      }),
    ]);
    await this.persist().catch((err: Error) => this.log('state not saved at shutdown', { error: err.message }));
    await this.lock.release().catch(() => undefined);
  }
}

/** A config spec against a running instance's: a port the config leaves open is whatever was allocated. */
function sameSpec(config: InstanceSpec, current: InstanceSpec): boolean {
  if (config.port !== undefined) return isDeepStrictEqual(config, current);
  const { port: _p, ...rest } = current;
  return isDeepStrictEqual(config, rest);
}

/** The GPUs a spec asks for (`gpu_ids`, or the single `gpu_id`); none: CPU. */
function gpuIdsOf(spec: InstanceSpec): number[] {
  return spec.gpu_ids ?? (spec.gpu_id !== undefined ? [spec.gpu_id] : []);
}

/** The config's catalog models as a boot seed. */
function seedModels(c: Config): StoredModel[] {
  const now = new Date().toISOString();
  return c.models.map((spec) => ({ ...spec, source: 'config' as const, created_at: now }));
}
