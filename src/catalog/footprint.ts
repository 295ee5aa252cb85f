/**
 * A child's memory footprint: GPU memory from nvidia-smi's per-process query for a child on a
 * GPU, else the resident memory of the child and everything it spawned, from /proc. Linux only for RSS; elsewhere the footprint is unknown and the estimate stays in use.
 */
import { execFile } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const MIB = 1024 * 1024;

export const NVIDIA_SMI_APPS_QUERY = ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'];

/** Parse `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits`: MiB per pid. */
export function parseComputeApps(csv: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const raw of csv.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || /no running/i.test(line)) continue;
    const [pidText, memText] = line.split(',').map((x) => x.trim());
    const pid = Number(pidText);
    const mib = Number(memText);
    // "[N/A]" memory (some drivers in containers): unknown, not zero.
    if (!Number.isInteger(pid) || pid <= 0 || memText === undefined || memText === '' || !Number.isFinite(mib)) continue;
    out.set(pid, (out.get(pid) ?? 0) + mib);
  }
  return out;
}

/** GPU memory per pid, all GPUs together; empty when nvidia-smi is missing or fails. */
export async function gpuMemoryByPid(nvidiaSmi: string, timeoutMs = 5000): Promise<Map<number, number>> {
  try {
    const { stdout } = await promisify(execFile)(nvidiaSmi, NVIDIA_SMI_APPS_QUERY, { timeout: timeoutMs });
    return parseComputeApps(stdout);
  } catch {
    return new Map();
  }
}

/**
 * The fields of a /proc/<pid>/stat line from field 3 (state) on: field n is at index n - 3. The
 * command (field 2) may hold spaces and parentheses, so the fields are those after its last ')'.
 */
export function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** Resident memory in bytes from a /proc/<pid>/status text (VmRSS, kB); 0 for a process without one (a zombie). */
export function statusRssBytes(status: string): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** Every process group on the host: pgid -> its pids (one scan of /proc; empty off Linux). */
async function processGroups(): Promise<Map<number, number[]>> {
  const out = new Map<number, number[]>();
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return out;
  }
  await Promise.all(
    names.map(async (n) => {
      if (!/^\d+$/.test(n)) return;
      try {
        const stat = await readFile(`/proc/${n}/stat`, 'utf8');
        const pgid = Number(statFields(stat)[5 - 3]); // field 5: pgrp
        const list = out.get(pgid);
        if (list === undefined) out.set(pgid, [Number(n)]);
        else list.push(Number(n));
      } catch {
        /* exited meanwhile */
      }
    }),
  );
  return out;
}

const scratch = Buffer.allocUnsafe(64 * 1024);

/** A small /proc file's text, read at once (no thread pool hop: /proc answers from memory). */
function readProcFile(file: string): string {
  const fd = openSync(file, 'r');
  try {
    let n = 0;
    for (let got = 1; got > 0 && n < scratch.length; n += got) got = readSync(fd, scratch, n, scratch.length - n, null);
    return scratch.toString('latin1', 0, n);
  } finally {
    closeSync(fd);
  }
}

/** The pid and its descendants, from /proc/<pid>/task/<tid>/children; undefined where the kernel has no such file. */
function descendants(pid: number): number[] | undefined {
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.pop()!;
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      continue; // exited meanwhile
    }
    out.push(p);
    for (const t of tasks) {
      let children: string;
      try {
        children = readProcFile(`/proc/${p}/task/${t}/children`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' && existsSync(`/proc/${p}/task/${t}`)) return undefined;
        continue;
      }
      for (const c of children.split(' ')) if (c !== '' && c !== '\n') queue.push(Number(c));
    }
  }
  return out;
}

/**
 * The processes of each child (`leaders`: the pids of children spawned as their group's
 * leader): the child and its descendants, read from the children files of its threads, a few
 * small reads per child. Where the kernel lacks those files (CONFIG_PROC_CHILDREN), every
 * process group on the host from one scan of /proc. Empty entries: gone; empty off Linux.
 */
export async function processTrees(leaders: readonly number[]): Promise<Map<number, number[]>> {
  const out = new Map<number, number[]>();
  for (const leader of leaders) {
    const tree = descendants(leader);
    if (tree === undefined) return processGroups();
    out.set(leader, tree);
  }
  return out;
}

/** The processes of the child `pgid` (see processTrees). */
export async function groupMembers(pgid: number): Promise<number[]> {
  return (await processTrees([pgid])).get(pgid) ?? [];
}

/** Resident memory of the pids (MiB), from /proc/<pid>/status VmRSS. */
export async function residentMb(pids: readonly number[]): Promise<number> {
  let bytes = 0;
  for (const pid of pids) {
    try {
      bytes += statusRssBytes(await readFile(`/proc/${pid}/status`, 'utf8'));
    } catch {
      /* exited meanwhile */
    }
  }
  return bytes / MIB;
}

export interface Footprint {
  mb: number;
  /** What was measured. */
  kind: 'gpu' | 'rss';
}

/**
 * The footprint of the child whose process group is `pgid`: on a GPU, the group's GPU memory
 * when nvidia-smi reports any (`gpuByPid`), else its resident memory; undefined when neither
 * can be read. `groups` (from processTrees) saves reading the tree again.
 */
export async function measureFootprint(pgid: number, gpuByPid: Map<number, number> | undefined, groups?: Map<number, number[]>): Promise<Footprint | undefined> {
  const pids = groups !== undefined ? (groups.get(pgid) ?? []) : await groupMembers(pgid);
  if (pids.length === 0) return undefined;
  if (gpuByPid !== undefined) {
    let mb = 0;
    for (const pid of pids) mb += gpuByPid.get(pid) ?? 0;
    if (mb > 0) return { mb, kind: 'gpu' };
  }
  const mb = await residentMb(pids);
  return mb > 0 ? { mb, kind: 'rss' } : undefined;
}
