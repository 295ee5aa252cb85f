/**
 * Which child processes the manager started: pid and kernel start time per instance, written
 * beside the state file. After a manager crash, the next manager finds children still alive
 * (same pid AND same start time, so a recycled pid is never killed) and stops them before it
 * spawns anything, so no port or GPU is double-booked.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFileAtomic } from '../state/atomic-file.js';

export interface ProcessRecord {
  pid: number;
  /** Start time in clock ticks since boot (/proc/<pid>/stat field 22); null where unavailable. */
  start_time: number | null;
}

/** The kernel's start time of a process, or null (not running, or no /proc). */
export function processStartTime(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may hold spaces and parentheses: count fields after its closing ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(rest[22 - 3]);
  } catch {
    return null;
  }
}

export function isAlive(pid: number): boolean {
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

export class ProcessRecords {
  private records: Record<string, ProcessRecord> = {};
  private chain: Promise<void> = Promise.resolve();

  constructor(readonly file: string) {}

  async load(): Promise<Record<string, ProcessRecord>> {
    try {
      this.records = JSON.parse(await readFile(this.file, 'utf8')) as Record<string, ProcessRecord>;
    } catch {
      this.records = {};
    }
    return { ...this.records };
  }

  set(name: string, pid: number | undefined): Promise<void> {
    if (pid === undefined) delete this.records[name];
    else this.records[name] = { pid, start_time: processStartTime(pid) };
    const snapshot = JSON.stringify(this.records);
    this.chain = this.chain.then(() => writeFileAtomic(this.file, snapshot)).catch(() => undefined);
    return this.chain;
  }
}

/**
 * Stop every recorded process group still alive: SIGTERM, then SIGKILL after `graceMs`.
 * Returns the names it stopped.
 */
export async function reapOrphans(records: Record<string, ProcessRecord>, graceMs: number): Promise<string[]> {
  const alive = Object.entries(records).filter(([, r]) => matches(r));
  for (const [, r] of alive) signalGroup(r.pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && alive.some(([, r]) => isAlive(r.pid))) await sleep(50);
  for (const [, r] of alive) if (isAlive(r.pid)) signalGroup(r.pid, 'SIGKILL');
  return alive.map(([name]) => name);
}
