/**
 * The batch service: OpenAI's Batches API over the job store, and the scheduler that runs the
 * jobs. Jobs run in the order they were created, at most `batch_max_running_jobs` at once; each
 * is validated (its input read, its model checked for its owner), run chunk by chunk
 * (job-run.ts) on the bulk lane, then finalized: the chunks' results joined into the output file
 * and the failed rows into the error file, both files of the job's owner. At boot every job that
 * had not finished resumes from its checkpoints (a manager killed at any instant loses no row and
 * does none twice beyond the chunks that were in flight). A job past its completion window
 * expires: what ran is in its output, each row that did not in its error file (`batch_expired`).
 */
import { TeiplexError } from '../common/errors.js';
import { newId, unixSecs } from './batch-ids.js';
import { type BatchObject, type BatchStatus, isFinalBatchStatus, type RequestCounts } from '../tei/batch-objects.js';
import { BATCH_ENDPOINT, batchObject, windowSecs, type JobOptions, type JobRecord } from './batch-job.js';
import type { BatchMetrics } from './batch-metrics.js';
import type { BatchWorkers } from './batch-workers.js';
import { concatFiles } from './concat-files.js';
import type { FileStore } from './file-store.js';
import { indexJsonl, JsonlJob } from './jsonl-job.js';
import type { JobKind, JobLimits } from './job-kind.js';
import { runChunks } from './job-run.js';
import type { ChunkCounts, JobStore } from './job-store.js';
import type { JobTarget } from './job-target.js';
import { notRunLine } from './output-lines.js';
import { EXTENSION } from './table-format.js';
import { formatOf } from './file-format.js';
import { openTableJob } from './table-job.js';
import { rm, writeFile } from 'node:fs/promises';

export interface BatchSettings extends JobLimits {
  maxRunningJobs: number;
  jobsPerOwner: number;
  chunksInFlight: number;
  /** Finished jobs are deleted this long after they finished; 0: kept. */
  retentionSecs: number;
}

/** The body of POST /v1/batches (its fields' types and values checked by the route's schema). */
export interface CreateBatch extends JobOptions {
  input_file_id: string;
  endpoint: string;
  completion_window: string;
  metadata?: Record<string, string> | null;
}

/** How long a job stopped by an error not of its own (a write that failed) waits before it runs again. */
const PAUSE_MS = 30_000;

interface Running {
  ac: AbortController;
  /** Why it was aborted: the manager stopping, or the job cancelled or expired. */
  reason?: 'stop' | 'cancel' | 'expire';
}

export class Batches {
  private target: JobTarget | undefined;
  private readonly running = new Map<string, Running>();
  private readonly done = new Map<string, Map<number, ChunkCounts>>();
  /** Jobs stopped by an error not of their own, until when they wait. */
  private readonly pausedUntil = new Map<string, number>();
  private stopped = false;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly files: FileStore,
    private readonly jobs: JobStore,
    private readonly settings: BatchSettings,
    private readonly workers: BatchWorkers,
    private readonly metrics?: BatchMetrics,
    private readonly log: (msg: string, fields?: Record<string, unknown>) => void = () => undefined,
    private readonly now: () => number = Date.now,
  ) {
    metrics?.source(() => this.stats());
  }

  /** Start running jobs (those left unfinished by the last manager first) on `target`. */
  async attach(target: JobTarget): Promise<void> {
    this.target = target;
    for (const r of this.jobs.list()) if (!isFinalBatchStatus(r.status)) this.done.set(r.id, await this.jobs.doneChunks(r.id));
    this.sweepTimer = setInterval(() => void this.sweep(), 60_000);
    this.sweepTimer.unref();
    void this.sweep();
    this.pump();
  }

  /** Stop running jobs (the manager stopping): chunks in flight are abandoned, done again at the next boot. */
  stop(): void {
    this.stopped = true;
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    for (const r of this.running.values()) {
      r.reason = 'stop';
      r.ac.abort();
    }
    void this.workers.close();
  }

  // ---- the API ----

  async create(owner: string, body: CreateBatch): Promise<BatchObject> {
    if (body.endpoint !== BATCH_ENDPOINT) throw new TeiplexError('BAD_REQUEST', `endpoint '${String(body.endpoint).slice(0, 64)}' is not served by batches; use '${BATCH_ENDPOINT}'`, { param: 'endpoint' });
    const window = windowSecs(body.completion_window);
    if (window === undefined) throw new TeiplexError('BAD_REQUEST', `completion_window '${String(body.completion_window).slice(0, 32)}' is not a window; use '24h' (or teiplex's '<n>h' / '<n>m', at most 168h)`, { param: 'completion_window' });
    const input = this.files.get(owner, body.input_file_id);
    if (input.purpose !== 'batch') throw new TeiplexError('BAD_REQUEST', `file '${input.id}' has purpose '${input.purpose}', not 'batch'`, { param: 'input_file_id' });
    const unfinished = this.jobs.list().filter((r) => r.owner === owner && !isFinalBatchStatus(r.status)).length;
    if (unfinished >= this.settings.jobsPerOwner) {
      throw new TeiplexError('BATCH_LIMIT_EXCEEDED', `this API key has ${unfinished} unfinished batches, the most batch_jobs_per_key (${this.settings.jobsPerOwner}) allows; wait for one to finish or cancel one`);
    }
    const ms = this.now();
    const options: JobOptions = {};
    for (const k of ['model', 'text_column', 'id_column', 'output', 'embedding_type', 'dimensions', 'input_type'] as const) if (body[k] !== undefined && body[k] !== null) (options as Record<string, unknown>)[k] = body[k];
    const r: JobRecord = {
      id: newId('batch_'),
      owner,
      endpoint: body.endpoint,
      input_file_id: input.id,
      completion_window: body.completion_window,
      metadata: body.metadata ?? null,
      options,
      status: 'validating',
      errors: null,
      created_at: unixSecs(ms),
      created_ms: ms,
      in_progress_at: null,
      expires_at: unixSecs(ms) + window,
      finalizing_at: null,
      completed_at: null,
      failed_at: null,
      expired_at: null,
      cancelling_at: null,
      cancelled_at: null,
      output_id: newId('file-'),
      error_id: newId('file-'),
      output_file_id: null,
      error_file_id: null,
      total: 0,
      model: null,
    };
    await this.jobs.save(r);
    this.done.set(r.id, new Map());
    this.pump();
    return this.object(r);
  }

  get(owner: string, id: string): BatchObject {
    return this.object(this.owned(owner, id));
  }

  /** `owner`'s batches, newest first, after the batch `after` (OpenAI's cursor), at most `limit`. */
  list(owner: string, limit: number, after?: string): { data: BatchObject[]; has_more: boolean } {
    const all = this.jobs.list().filter((r) => r.owner === owner).reverse();
    const from = after === undefined ? 0 : all.findIndex((r) => r.id === after) + 1;
    const page = all.slice(from, from + limit);
    return { data: page.map((r) => this.object(r)), has_more: from + limit < all.length };
  }

  async cancel(owner: string, id: string): Promise<BatchObject> {
    const r = this.owned(owner, id);
    if (r.status === 'cancelling' || r.status === 'cancelled') return this.object(r);
    if (isFinalBatchStatus(r.status)) throw new TeiplexError('BAD_REQUEST', `batch '${id}' is ${r.status}: only a batch that has not finished can be cancelled`, { param: 'batch_id' });
    await this.setStatus(r, 'cancelling');
    const run = this.running.get(id);
    if (run !== undefined) {
      run.reason = 'cancel';
      run.ac.abort();
    } else this.pump();
    return this.object(r);
  }

  /** The unfinished batch whose input `fileId` is, if any (such a file is not deleted). */
  inputOf(fileId: string): string | undefined {
    return this.jobs.list().find((r) => r.input_file_id === fileId && !isFinalBatchStatus(r.status))?.id;
  }

  /** A job's counts: rows done and failed from its checkpoints. */
  private counts(r: JobRecord): RequestCounts {
    let completed = 0;
    let failed = 0;
    for (const c of this.done.get(r.id)?.values() ?? []) {
      completed += c.completed;
      failed += c.failed;
    }
    return { total: r.total, completed, failed };
  }

  private object(r: JobRecord): BatchObject {
    return batchObject(r, r.final_counts ?? this.counts(r));
  }

  private owned(owner: string, id: string): JobRecord {
    const r = this.jobs.get(id);
    if (r === undefined || r.owner !== owner) throw new TeiplexError('NOT_FOUND', `no batch '${String(id).slice(0, 64)}'`, { param: 'batch_id' });
    return r;
  }

  // ---- running ----

  /** Start queued jobs while there is room. */
  private pump(): void {
    if (this.stopped || this.target === undefined) return;
    const now = this.now();
    for (const r of this.jobs.list()) {
      if (this.running.size >= this.settings.maxRunningJobs) return;
      if (isFinalBatchStatus(r.status) || this.running.has(r.id) || (this.pausedUntil.get(r.id) ?? 0) > now) continue;
      const run: Running = { ac: new AbortController() };
      this.running.set(r.id, run);
      void this.runJob(r, run)
        .catch((err) => {
          // Not the job's fault (the disk full, say): it waits and runs again, not in a tight loop.
          this.log('batch job stopped by an error; it runs again later', { batch: r.id, error: String(err), retry_secs: PAUSE_MS / 1000 });
          this.pausedUntil.set(r.id, this.now() + PAUSE_MS);
          setTimeout(() => this.pump(), PAUSE_MS).unref();
        })
        .finally(() => {
          this.running.delete(r.id);
          this.pump();
        });
    }
  }

  private async runJob(r: JobRecord, run: Running): Promise<void> {
    const target = this.target as JobTarget;
    if (r.status === 'cancelling') {
      // Cancelled while it waited (its turn, or a restart): what it had done still goes out.
      const k = await this.prepare(r, target).catch(() => undefined);
      return this.finish(r, 'cancelled', k);
    }
    let kind: JobKind;
    try {
      kind = await this.prepare(r, target);
    } catch (err) {
      if (run.ac.signal.aborted && run.reason === 'stop') return;
      return this.fail(r, err);
    }
    if (r.status === 'validating') {
      r.in_progress_at = unixSecs(this.now());
      await this.setStatus(r, 'in_progress');
    }
    const done = this.done.get(r.id) ?? new Map<number, ChunkCounts>();
    this.done.set(r.id, done);
    const untilExpiry = r.expires_at * 1000 - this.now();
    const expiry = setTimeout(
      () => {
        run.reason ??= 'expire';
        run.ac.abort();
      },
      Math.max(0, Math.min(untilExpiry, 2 ** 31 - 1)),
    );
    try {
      if (untilExpiry > 0) {
        await runChunks(r.id, kind, done, this.jobs, this.settings.chunksInFlight, run.ac.signal, {
          chunkDone: (c) => this.metrics?.rows(c),
          chunkRetry: (err, ms) => this.log('batch chunk will be retried', { batch: r.id, error: err instanceof Error ? err.message : String(err), retry_ms: ms }),
        });
      } else run.reason = 'expire';
    } catch (err) {
      return this.fail(r, err);
    } finally {
      clearTimeout(expiry);
    }
    if (run.reason === 'stop') return;
    if (run.reason === 'cancel' || (r.status as BatchStatus) === 'cancelling') return this.finish(r, 'cancelled', kind);
    if (run.reason === 'expire') return this.finish(r, 'expired', kind);
    r.finalizing_at = unixSecs(this.now());
    await this.setStatus(r, 'finalizing');
    return this.finish(r, 'completed', kind);
  }

  /** Read the input and check the model: the job's kind. Throws what makes the job fail. */
  private async prepare(r: JobRecord, target: JobTarget): Promise<JobKind> {
    const file = this.files.dataPath(r.input_file_id);
    try {
      this.files.get(r.owner, r.input_file_id);
    } catch {
      throw new TeiplexError('NOT_FOUND', `the input file '${r.input_file_id}' no longer exists`, { param: 'input_file_id' });
    }
    const format = await formatOf(file);
    let kind: JobKind;
    let model: string | null;
    if (format === 'jsonl') {
      const index = await indexJsonl(file, this.settings.chunkRows, this.settings.maxRows);
      model = r.options.model ?? index.firstModel;
      kind = new JsonlJob(file, index, r.owner, target, this.settings, r.options.model, this.workers);
      r.total = index.rows;
    } else {
      if (r.options.model === undefined) throw new TeiplexError('BAD_REQUEST', 'an Arrow or Parquet input needs the batch\'s `model` (its rows carry no body)', { param: 'model' });
      model = r.options.model;
      const t = await openTableJob(file, format, r, target, this.settings, this.workers);
      kind = t;
      r.total = t.rows;
    }
    if (model !== null) {
      const natural = await target.check(r.owner, model);
      // A table's rows are embedded as the model embeds by default: sparse for SPLADE.
      if (format !== 'jsonl' && r.options.output === undefined) r.options.output = natural;
    }
    r.model = model;
    return kind;
  }

  private async fail(r: JobRecord, err: unknown): Promise<void> {
    const e = err instanceof TeiplexError ? err : new TeiplexError('BACKEND', err instanceof Error ? err.message : String(err));
    r.errors = [{ code: e.code.toLowerCase(), message: e.message, param: e.param ?? null, line: null }];
    r.failed_at = unixSecs(this.now());
    this.log('batch failed', { batch: r.id, error: e.message });
    await this.setStatus(r, 'failed');
  }

  /** Write the output and error files, then the final status (again after a restart: the same file ids, replaced). */
  private async finish(r: JobRecord, status: 'completed' | 'cancelled' | 'expired', kind: JobKind | undefined): Promise<void> {
    const done = this.done.get(r.id) ?? new Map<number, ChunkCounts>();
    if (kind !== undefined) {
      const n = kind.chunks;
      const outs = Array.from({ length: n }, (_, k) => (done.has(k) ? this.jobs.chunkOut(r.id, k) : undefined));
      const tmpOut = this.jobs.temp(r.id, 'output');
      const wrote = await kind.writeOutput(outs, tmpOut).catch(async (err) => {
        await rm(tmpOut, { force: true });
        throw err;
      });
      if (wrote) {
        await this.files.adopt(r.owner, tmpOut, `${r.id}_output${EXTENSION[kind.outputFormat]}`, 'batch_output', r.output_id);
        r.output_file_id = r.output_id;
      }
      const errs = Array.from({ length: n }, (_, k) => (done.get(k)?.failed ? this.jobs.chunkErr(r.id, k) : undefined));
      const notRun = this.jobs.temp(r.id, 'not-run');
      let missing = '';
      if (status !== 'completed') {
        const code = status === 'expired' ? 'batch_expired' : 'batch_cancelled';
        const why = status === 'expired' ? 'the batch expired before this request ran' : 'the batch was cancelled before this request ran';
        for (let k = 0; k < n; k++) if (!done.has(k)) for (const id of await kind.chunkIds(k)) missing += notRunLine(id, code, why);
      }
      if (missing !== '') await writeFile(notRun, missing, { mode: 0o600 });
      const tmpErr = this.jobs.temp(r.id, 'errors');
      if (await concatFiles([...errs, missing !== '' ? notRun : undefined], tmpErr)) {
        await this.files.adopt(r.owner, tmpErr, `${r.id}_error.jsonl`, 'batch_output', r.error_id);
        r.error_file_id = r.error_id;
      }
    }
    const at = unixSecs(this.now());
    if (status === 'completed') r.completed_at = at;
    else if (status === 'cancelled') r.cancelled_at = at;
    else r.expired_at = at;
    r.final_counts = this.counts(r);
    await this.setStatus(r, status);
  }

  private async setStatus(r: JobRecord, status: BatchStatus): Promise<void> {
    r.status = status;
    if (status === 'cancelling') r.cancelling_at = unixSecs(this.now());
    await this.jobs.save(r);
    if (isFinalBatchStatus(status)) this.done.delete(r.id);
  }

  /** Delete expired files, and finished jobs past retention. */
  private async sweep(): Promise<void> {
    try {
      await this.files.sweep();
      if (this.settings.retentionSecs <= 0) return;
      const limit = unixSecs(this.now()) - this.settings.retentionSecs;
      for (const r of this.jobs.list()) {
        const ended = r.completed_at ?? r.failed_at ?? r.expired_at ?? r.cancelled_at;
        if (isFinalBatchStatus(r.status) && ended !== null && ended <= limit) await this.jobs.remove(r.id);
      }
    } catch (err) {
      this.log('batch sweep failed', { error: String(err) });
    }
  }

  /** What the metrics report. */
  private stats(): { byStatus: Map<BatchStatus, number>; pendingRows: number } {
    const byStatus = new Map<BatchStatus, number>();
    let pendingRows = 0;
    for (const r of this.jobs.list()) {
      byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
      if (!isFinalBatchStatus(r.status)) {
        const c = this.counts(r);
        pendingRows += Math.max(0, r.total - c.completed - c.failed);
      }
    }
    return { byStatus, pendingRows };
  }
}
