/**
 * Which processes are ours. Every child the manager spawns carries two environment variables,
 * `TEIPLEX_MANAGER_STATE` (the absolute path of the manager's state file) and `TEIPLEX_INSTANCE`
 * (the instance name); its own children inherit them. After a manager crash, the next manager
 * with the same state file finds every such process in /proc, even one spawned a moment before
 * the crash, and stops it before it spawns anything, so no port or GPU is double-booked and no
 * child of a dead manager runs unowned. A process without our marker is never signalled; the
 * start time is checked again before each signal, so a recycled pid is never hit.
 * (`<state_file>.pids.json`, written by managers before the marker existed, is read once and
 * removed.)
 */
import { readdirSync, readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

export const MANAGER_STATE_ENV = 'TEIPLEX_MANAGER_STATE';
export const INSTANCE_ENV = 'TEIPLEX_INSTANCE';

/** The environment variables that mark a child of the manager whose state file is `stateFile`. */
export function childMarker(stateFile: string, instance: string): Record<string, string> {
  return { [MANAGER_STATE_ENV]: stateFile, [INSTANCE_ENV]: instance };
}

export interface ProcessRecord {
  pid: number;
  /** Start time in clock ticks since boot (/proc/<pid>/stat field 22); null where unavailable. */
  start_time: number | null;
}

/** Fields of /proc/<pid>/stat from field 3 (state) on (so field N is at N - 3), or undefined. */
export function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may hold spaces and parentheses: count fields after its closing ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** The kernel's start time of a process, or null (not running, or no /proc). */
export function processStartTime(pid: number): number | null {
  const f = statFields(pid);
  return f === undefined ? null : Number(f[22 - 3]);
}

/** Alive and not a zombie (a dead process nobody has reaped yet holds no port or memory). */
export function isAlive(pid: number): boolean {
  const f = statFields(pid);
  if (f !== undefined) return f[0] !== 'Z' && f[0] !== 'X';
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Same process as recorded (pid alive and, where known, same start time). */
export function matches(rec: ProcessRecord): boolean {
  if (!isAlive(rec.pid)) return false;
  if (rec.start_time === null) return true;
  return processStartTime(rec.pid) === rec.start_time;
}

/** Signal a child's whole process group (it leads one); falls back to the process alone. */
export function signalGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      /* already gone */
    }
  }
}

export interface MarkedProcess extends ProcessRecord {
  instance: string;
}

/** Every live process (children and their descendants) marked with `stateFile`; none without /proc. */
export function findMarked(stateFile: string): MarkedProcess[] {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return [];
  }
  const found: MarkedProcess[] = [];
  for (const p of pids) {
    const pid = Number(p);
    if (pid === process.pid) continue;
    let env: string;
    try {
      env = readFileSync(`/proc/${pid}/environ`, 'utf8'); // unreadable: another user's, not ours
    } catch {
      continue;
    }
    const vars = new Map(env.split('\0').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    if (vars.get(MANAGER_STATE_ENV) !== stateFile) continue;
    const rec = { pid, start_time: processStartTime(pid), instance: vars.get(INSTANCE_ENV) ?? '' };
    if (rec.start_time !== null && isAlive(pid)) found.push(rec);
  }
  return found;
}

/** Records of a pre-marker manager (`<state_file>.pids.json`): read, then removed. */
export async function takeLegacyRecords(file: string): Promise<MarkedProcess[]> {
  let records: Record<string, ProcessRecord>;
  try {
    records = JSON.parse(await readFile(file, 'utf8')) as Record<string, ProcessRecord>;
  } catch {
    return [];
  }
  await rm(file, { force: true });
  return Object.entries(records)
    .filter(([, r]) => typeof r?.pid === 'number' && r.start_time !== null && matches(r))
    .map(([instance, r]) => ({ instance, pid: r.pid, start_time: r.start_time }));
}

/**
 * Stop the given processes (each one's group): SIGTERM, SIGKILL after `graceMs`, then wait
 * until they are gone. Returns the instance names they belonged to.
 */
export async function reapOrphans(found: MarkedProcess[], graceMs: number): Promise<string[]> {
  const procs = found.filter(matches);
  const send = (sig: NodeJS.Signals): void => {
    for (const r of procs) if (matches(r)) signalGroup(r.pid, sig);
  };
  const waitGone = async (ms: number): Promise<void> => {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && procs.some(matches)) await sleep(20);
  };
  send('SIGTERM');
  await waitGone(graceMs);
  send('SIGKILL');
  await waitGone(5000);
  return [...new Set(procs.map((r) => r.instance))].sort();
}
