/**
 * Batch jobs on disk: `<batch_dir>/batches/<id>/job.json` (the record, replaced atomically when
 * its status changes) and `chunks/`, one checkpoint per chunk of rows: `<n>.out` (its results),
 * `<n>.err` (its failed rows, JSONL; absent when none) and `<n>.done` (its counts). The results
 * are written and fsynced before the marker is renamed into place, so a chunk is done exactly
 * when its marker exists, and a manager killed at any instant redoes only the chunks without
 * one: no row is lost, none is written twice.
 */
import { mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../state/atomic-file.js';
import type { JobRecord } from './batch-job.js';

/** One chunk's counts (its marker). */
export interface ChunkCounts {
  completed: number;
  failed: number;
}

const BATCH_ID = /^batch_[0-9a-f]{24}$/;

export class JobStore {
  private readonly dir: string;
  private readonly records = new Map<string, JobRecord>();

  private constructor(root: string) {
    this.dir = path.join(root, 'batches');
  }

  /** The store under `root`, every job's record read (a folder without a complete record is removed). */
  static async open(root: string): Promise<JobStore> {
    const s = new JobStore(root);
    // The folder is made by the first job (save).
    const names = await readdir(s.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    for (const n of names) {
      const at = path.join(s.dir, n);
      if (!BATCH_ID.test(n)) {
        await rm(at, { recursive: true, force: true });
        continue;
      }
      try {
        const r = JSON.parse(await readFile(path.join(at, 'job.json'), 'utf8')) as JobRecord;
        if (r.id === n) {
          s.records.set(n, r);
          continue;
        }
      } catch {
        // created but killed before its record was complete: never acknowledged
      }
      await rm(at, { recursive: true, force: true });
    }
    return s;
  }

  list(): JobRecord[] {
    return [...this.records.values()].sort((a, b) => a.created_ms - b.created_ms || (a.id < b.id ? -1 : 1));
  }

  get(id: string): JobRecord | undefined {
    return this.records.get(id);
  }

  /** Write `r` (a new job: its folders first) and keep it. */
  async save(r: JobRecord): Promise<void> {
    const at = path.join(this.dir, r.id);
    if (!this.records.has(r.id)) await mkdir(path.join(at, 'chunks'), { recursive: true, mode: 0o700 });
    await writeFileAtomic(path.join(at, 'job.json'), JSON.stringify(r));
    this.records.set(r.id, r);
  }

  async remove(id: string): Promise<void> {
    this.records.delete(id);
    await rm(path.join(this.dir, id), { recursive: true, force: true });
  }

  chunkOut(id: string, n: number): string {
    return path.join(this.dir, id, 'chunks', `${n}.out`);
  }

  chunkErr(id: string, n: number): string {
    return path.join(this.dir, id, 'chunks', `${n}.err`);
  }

  /** A temp path in the job's folder (for its output files before they are adopted). */
  temp(id: string, name: string): string {
    return path.join(this.dir, id, `.${name}-${process.pid}`);
  }

  /** The chunks done, with their counts (a temp file a killed writer left is removed). */
  async doneChunks(id: string): Promise<Map<number, ChunkCounts>> {
    const dir = path.join(this.dir, id, 'chunks');
    const done = new Map<number, ChunkCounts>();
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return done;
    }
    for (const n of names) {
      if (n.startsWith('.')) {
        await rm(path.join(dir, n), { force: true });
        continue;
      }
      const m = /^(\d+)\.done$/.exec(n);
      if (m === null) continue;
      try {
        done.set(Number(m[1]), JSON.parse(await readFile(path.join(dir, n), 'utf8')) as ChunkCounts);
      } catch {
        // markers are written atomically; one that does not parse is treated as not done
      }
    }
    return done;
  }

  /** Checkpoint chunk `n`: its results (and failed rows, if any), then its marker. */
  async writeChunk(id: string, n: number, out: Uint8Array | string, err: string, counts: ChunkCounts): Promise<void> {
    await writeSynced(this.chunkOut(id, n), out);
    if (err !== '') await writeSynced(this.chunkErr(id, n), err);
    else await rm(this.chunkErr(id, n), { force: true });
    // The marker last, atomically (its rename and the directory's fsync also cover the two above).
    await writeFileAtomic(path.join(this.dir, id, 'chunks', `${n}.done`), JSON.stringify(counts));
  }
}

/** `data` at `file`: a temp file written and fsynced, renamed into place (the directory is synced by the caller's next atomic write). */
async function writeSynced(file: string, data: Uint8Array | string): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}
