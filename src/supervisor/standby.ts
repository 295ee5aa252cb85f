/**
 * Standby children: `teiplex router --standby` processes started ahead on a device, with Node,
 * the router's modules and ONNX Runtime loaded and no model, so that a cold start skips process
 * start-up and module loading. The next replica whose command a standby can run (the same
 * environment: a router spec without `env`, see runtimes.ts handOverArgs) takes one over: its
 * Instance adopts the process and writes its flags to the standby's stdin. Who keeps how many
 * standby children where is the catalog's decision (budgets); this pool only runs them.
 *
 * Every standby child carries the marker environment (process-record.ts) with the instance name
 * `standby-<device>-<n>`, so the crash scan of the next manager finds it like any child; it leads
 * its own process group, and the pool stops it (SIGTERM, then SIGKILL after the grace period) at
 * shutdown or when the catalog needs its memory.
 */
import { execa, type ResultPromise } from 'execa';
import { isDeepStrictEqual } from 'node:util';
import { standbyCommand, type RuntimeSettings } from '../runtimes/runtimes.js';
import { childMarker, signalGroup } from './process-record.js';

export type StandbyProcess = ResultPromise<{ detached: true; buffer: false; reject: false; stdin: 'pipe'; cleanup: true }>;

export interface StandbyOptions {
  stateFile: string;
  runtime: RuntimeSettings;
  managerEnv: NodeJS.ProcessEnv;
  gracefulMs: number;
  log(msg: string, fields?: Record<string, unknown>): void;
}

/** What GET /memory shows of a standby child. */
export interface StandbyInfo {
  name: string;
  device: string;
  pid: number | undefined;
  state: 'starting' | 'ready';
  started_at: string;
}

/** Lines of a standby's output kept for the log when it exits unexpectedly. */
const TAIL_LINES = 5;

export class StandbyChild {
  state: 'starting' | 'ready' = 'starting';
  readonly startedAt = new Date().toISOString();
  /** Its output so far (a standby is quiet until it is taken: a few lines at most). */
  private readonly tail: string[] = [];
  private readonly onData = (d: Buffer): void => {
    for (const line of String(d).split('\n')) {
      if (line === '') continue;
      if (line.startsWith('{"msg":"standby"')) this.state = 'ready';
      this.tail.push(line);
      if (this.tail.length > TAIL_LINES) this.tail.shift();
    }
  };
  readonly exited: Promise<void>;
  /** Taken over by an instance: the pool no longer answers for it. */
  taken = false;

  constructor(
    readonly name: string,
    readonly device: string,
    readonly env: Record<string, string>,
    readonly process: StandbyProcess,
  ) {
    process.stdout?.on('data', this.onData);
    process.stderr?.on('data', this.onData);
    // Nothing is written before the hand-over; a write to a dead standby must not throw in the manager.
    process.stdin?.on('error', () => undefined);
    this.exited = process.then(
      () => undefined,
      () => undefined,
    );
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  /** The process has not exited. */
  get alive(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  get lastOutput(): string {
    return this.tail.join(' | ');
  }

  /** Hand the process over: the pool's listeners go, the new owner attaches its own. */
  detach(): StandbyProcess {
    this.taken = true;
    this.process.stdout?.off('data', this.onData);
    this.process.stderr?.off('data', this.onData);
    return this.process;
  }

  info(): StandbyInfo {
    return { name: this.name, device: this.device, pid: this.pid, state: this.state, started_at: this.startedAt };
  }
}

export class StandbyPool {
  private readonly children = new Set<StandbyChild>();
  /** Measured footprint per standby (MiB), set by the catalog's sampler. */
  readonly footprints = new Map<string, number>();
  private seq = 0;
  private closed = false;

  constructor(private readonly o: StandbyOptions) {}

  list(device?: string): StandbyChild[] {
    return [...this.children].filter((c) => device === undefined || c.device === device);
  }

  /** Start a standby child for a device (`cpu`: no GPU; `gpu<N>`: CUDA_VISIBLE_DEVICES=N). */
  spawn(device: string): StandbyChild | undefined {
    if (this.closed) return undefined;
    const gpuIds = device === 'cpu' ? [] : [Number(device.slice(3))];
    const cmd = standbyCommand(gpuIds, this.o.managerEnv, this.o.runtime);
    const name = `standby-${device}-${++this.seq}`;
    const env = { ...cmd.env, ...childMarker(this.o.stateFile, name) };
    const proc = execa(cmd.command, cmd.args, { env, extendEnv: false, detached: true, buffer: false, reject: false, stdin: 'pipe', cleanup: true });
    const child = new StandbyChild(name, device, cmd.env, proc);
    this.children.add(child);
    this.o.log('standby child started', { name, device, pid: proc.pid });
    void child.exited.then(() => {
      if (!this.children.delete(child)) return;
      this.footprints.delete(name);
      if (!this.closed) this.o.log('standby child exited', { name, device, exit: proc.exitCode ?? proc.signalCode, last_output: child.lastOutput });
    });
    return child;
  }

  /** A ready standby on `device` whose environment is `env` (still in the pool); undefined: none. */
  find(device: string, env: Record<string, string>): StandbyChild | undefined {
    for (const c of this.children) {
      if (c.device === device && c.state === 'ready' && c.alive && isDeepStrictEqual(c.env, env)) return c;
    }
    return undefined;
  }

  /** Take `c` out of the pool for an instance; undefined when it is gone meanwhile. */
  take(c: StandbyChild): StandbyChild | undefined {
    if (!this.children.delete(c) || !c.alive) return undefined;
    this.footprints.delete(c.name);
    return c;
  }

  /** Stop one (the catalog needs its memory, or it is no longer wanted); resolves once it has exited. */
  async stop(c: StandbyChild, why: string): Promise<void> {
    if (this.children.delete(c)) this.o.log('stopping a standby child', { name: c.name, why });
    this.footprints.delete(c.name);
    await stopProcess(c, this.o.gracefulMs);
  }

  /** Manager shutdown: stop them all; none is started after this. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.children];
    this.children.clear();
    await Promise.all(all.map((c) => stopProcess(c, this.o.gracefulMs)));
  }
}

/** SIGTERM to its group, SIGKILL after `graceMs`; resolves once it has exited. */
export async function stopProcess(c: StandbyChild, graceMs: number): Promise<void> {
  const pid = c.pid;
  if (pid === undefined || !c.alive) {
    await c.exited;
    return;
  }
  signalGroup(pid, 'SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = await Promise.race([c.exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs)))]);
  clearTimeout(timer);
  if (late) {
    signalGroup(pid, 'SIGKILL');
    await c.exited;
  }
}
