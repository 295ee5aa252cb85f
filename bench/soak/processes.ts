/**
 * The soak's view of processes, from /proc: which processes belong to the manager under test
 * (found by a marker in their environment, never by process name), which of them descend from
 * the current manager, and which are orphans.
 *
 * Markers (either one makes a process ours):
 *   - the shared contract: every child the manager spawns carries
 *     `TEIPLEX_MANAGER_STATE=<absolute state file path>` and `TEIPLEX_INSTANCE=<name>`;
 *   - the bench's own `SOAK_RUN_ID=<run id>`, put in the `env` of every instance and catalog
 *     model it declares (the spec's `env` reaches the child). This finds children on a manager
 *     that does not set the contract's variables yet, and, unlike the pids recorded in
 *     `<state>.pids.json`, also children the manager spawned but never recorded.
 * A child's descendants inherit its environment, so they carry the marker too.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { INSTANCE_ENV, MANAGER_STATE_ENV, matches, processStartTime, statFields } from '../../src/supervisor/process-record.js';

export const RUN_ID_VAR = 'SOAK_RUN_ID';

export interface Marker {
  /** Absolute path of the manager's state file (TEIPLEX_MANAGER_STATE). */
  stateFile: string;
  /** This run's SOAK_RUN_ID. */
  runId: string;
}

export interface MarkedProcess {
  pid: number;
  ppid: number;
  /** Kernel start time (clock ticks since boot): a pid with another start time is another process. */
  startTime: number;
  /** TEIPLEX_INSTANCE, when the manager sets it. */
  instance: string | undefined;
  /** Which marker matched: the shared contract's, or only the bench's own. */
  via: 'contract' | 'run-id';
  /** The first words of the command line. */
  cmd: string;
}

/** ppid and state of /proc/<pid>/stat, or undefined (gone, or not readable). */
function stat(pid: number): { ppid: number; state: string } | undefined {
  const f = statFields(pid);
  return f === undefined ? undefined : { state: f[0]!, ppid: Number(f[1]) };
}

/** Every live (not zombie) process carrying one of the markers. */
export function markedProcesses(marker: Marker): MarkedProcess[] {
  const out: MarkedProcess[] = [];
  const stateVar = `${MANAGER_STATE_ENV}=${marker.stateFile}`;
  const runVar = `${RUN_ID_VAR}=${marker.runId}`;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let env: string[];
    try {
      env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    } catch {
      continue; // gone, or another user's
    }
    const contract = env.includes(stateVar);
    if (!contract && !env.includes(runVar)) continue;
    const st = stat(pid);
    const startTime = processStartTime(pid);
    if (st === undefined || st.state === 'Z' || startTime === null) continue;
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, 4).join(' ');
    } catch {
      /* gone */
    }
    const instance = env.find((e) => e.startsWith(`${INSTANCE_ENV}=`))?.slice(INSTANCE_ENV.length + 1);
    out.push({ pid, ppid: st.ppid, startTime, instance, via: contract ? 'contract' : 'run-id', cmd });
  }
  return out;
}

/** Whether `pid` has `ancestor` among its ancestors (parent, grandparent, ...). */
export function descendsFrom(pid: number, ancestor: number): boolean {
  let cur = pid;
  for (let depth = 0; depth < 64; depth++) {
    const st = stat(cur);
    if (st === undefined || st.ppid <= 1) return false;
    if (st.ppid === ancestor) return true;
    cur = st.ppid;
  }
  return false;
}

/** Same process as seen before (alive, same start time). */
export function stillAlive(p: Pick<MarkedProcess, 'pid' | 'startTime'>): boolean {
  return matches({ pid: p.pid, start_time: p.startTime });
}

/** Marked processes that do not descend from `managerPid` (undefined: no manager runs, so every marked process). */
export function orphansOf(marker: Marker, managerPid: number | undefined): MarkedProcess[] {
  return markedProcesses(marker).filter((p) => managerPid === undefined || !descendsFrom(p.pid, managerPid));
}

/** The children the manager `managerPid` owns right now (marked, descending from it). */
export function childrenOf(marker: Marker, managerPid: number): MarkedProcess[] {
  return markedProcesses(marker).filter((p) => descendsFrom(p.pid, managerPid));
}
