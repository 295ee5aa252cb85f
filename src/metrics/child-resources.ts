/**
 * CPU time and resident memory of each instance's child process, read from /proc at scrape time:
 * the child (its process group's leader) and every process it spawned (src/catalog/footprint.ts
 * finds the tree). Linux only; elsewhere no series.
 *
 * - `teiplex_child_cpu_seconds_total{instance}`: user + system CPU seconds of the instance's
 *   children since the manager started. A child's tree is its live processes plus what the child
 *   reaped (its cutime/cstime); a restart's new child adds to the instance's total, so the counter
 *   only goes up while the instance exists (a process that exits unreaped, which a child's own
 *   descendants do not, would otherwise make it drop).
 * - `teiplex_child_resident_memory_bytes{instance}`: resident memory (VmRSS) of the tree now.
 */
import { readFile } from 'node:fs/promises';
import { processTrees, statFields, statusRssBytes } from '../catalog/footprint.js';

/**
 * /proc's clock ticks per second (USER_HZ): 100 on every Linux architecture Node runs on
 * (x86-64, arm64, ppc64le, s390x); the kernel reports CPU times in these units whatever HZ is.
 */
export const USER_HZ = 100;

/** CPU ticks in a /proc/<pid>/stat line: utime + stime, plus cutime + cstime (reaped children) when `reaped`. */
export function statCpuTicks(stat: string, reaped: boolean): number {
  // utime(14) stime(15) cutime(16) cstime(17)
  const after = statFields(stat);
  const field = (n: number): number => {
    const v = Number(after[n - 3]);
    if (!Number.isFinite(v) || v < 0) throw new Error(`/proc stat: field ${n} is not a tick count: ${JSON.stringify(after[n - 3])}`);
    return v;
  };
  return field(14) + field(15) + (reaped ? field(16) + field(17) : 0);
}

export interface TreeUsage {
  cpuSeconds: number;
  rssBytes: number;
}

/** CPU seconds and resident bytes of a process tree (the leader first); undefined when the leader is gone. */
export async function treeUsage(pids: readonly number[]): Promise<TreeUsage | undefined> {
  let ticks = 0;
  let rssBytes = 0;
  let leaderSeen = false;
  for (const [i, pid] of pids.entries()) {
    try {
      const [stat, status] = await Promise.all([readFile(`/proc/${pid}/stat`, 'latin1'), readFile(`/proc/${pid}/status`, 'latin1')]);
      ticks += statCpuTicks(stat, i === 0);
      rssBytes += statusRssBytes(status);
      if (i === 0) leaderSeen = true;
    } catch {
      /* exited meanwhile */
    }
  }
  return leaderSeen ? { cpuSeconds: ticks / USER_HZ, rssBytes } : undefined;
}

/**
 * Each instance's CPU seconds as a counter that only goes up: per instance, the seconds of its
 * earlier children (by leader pid) plus the largest value seen of the current one.
 */
export class CpuTotals {
  private readonly byInstance = new Map<string, { pid: number; current: number; earlier: number }>();

  /** The instance's total after its child `pid` was measured at `seconds`. */
  observe(instance: string, pid: number, seconds: number): number {
    const t = this.byInstance.get(instance);
    if (t === undefined) {
      this.byInstance.set(instance, { pid, current: seconds, earlier: 0 });
      return seconds;
    }
    if (t.pid !== pid) {
      t.earlier += t.current;
      t.pid = pid;
      t.current = seconds;
    } else t.current = Math.max(t.current, seconds);
    return t.earlier + t.current;
  }

  /** The instance's total so far (its child gone, or between children). */
  total(instance: string): number | undefined {
    const t = this.byInstance.get(instance);
    return t === undefined ? undefined : t.earlier + t.current;
  }

  /** Forget instances that no longer exist. */
  retain(names: ReadonlySet<string>): void {
    for (const name of this.byInstance.keys()) if (!names.has(name)) this.byInstance.delete(name);
  }
}

export interface ChildSample {
  instance: string;
  /** CPU seconds since the manager started, every child of the instance so far. */
  cpuSeconds: number;
  /** Resident bytes of the running child's tree; undefined when no child runs. */
  rssBytes: number | undefined;
}

/** One scrape's samples for `instances` (name and current child pid). */
export async function sampleChildren(instances: readonly { name: string; pid: number | undefined }[], totals: CpuTotals): Promise<ChildSample[]> {
  const leaders = instances.flatMap((i) => (i.pid === undefined ? [] : [i.pid]));
  const trees = leaders.length === 0 ? new Map<number, number[]>() : await processTrees(leaders);
  const out: ChildSample[] = [];
  for (const i of instances) {
    let usage: TreeUsage | undefined;
    if (i.pid !== undefined) {
      const tree = trees.get(i.pid) ?? [];
      // The leader first: its reaped children's CPU counts, its descendants' does not twice.
      usage = await treeUsage([i.pid, ...tree.filter((p) => p !== i.pid)]);
    }
    const cpuSeconds = usage !== undefined && i.pid !== undefined ? totals.observe(i.name, i.pid, usage.cpuSeconds) : totals.total(i.name);
    if (cpuSeconds === undefined) continue;
    out.push({ instance: i.name, cpuSeconds, rssBytes: usage?.rssBytes });
  }
  totals.retain(new Set(instances.map((i) => i.name)));
  return out;
}
