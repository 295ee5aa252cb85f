/**
 * Batch jobs' metrics (docs/batch.md, docs/manager.md): jobs by status, rows done and failed,
 * the rows per second of the last ten seconds, and the rows of unfinished jobs not yet done.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { BATCH_STATUSES, type BatchStatus } from '../tei/batch-objects.js';
import type { ChunkCounts } from './job-store.js';

const WINDOW_MS = 10_000;

export interface BatchStats {
  byStatus: Map<BatchStatus, number>;
  pendingRows: number;
}

export class BatchMetrics {
  private read: (() => BatchStats) | undefined;
  private readonly rowsTotal: Counter<'outcome'>;
  /** (time, rows) of the chunks done in the last WINDOW_MS. */
  private recent: Array<[number, number]> = [];

  constructor(registry: Registry, private readonly now: () => number = Date.now) {
    const self = this;
    new Gauge({
      name: 'teiplex_batch_jobs',
      help: 'Batch jobs by status',
      labelNames: ['status'] as const,
      registers: [registry],
      collect() {
        const s = self.read?.();
        for (const st of BATCH_STATUSES) this.labels(st).set(s?.byStatus.get(st) ?? 0);
      },
    });
    new Gauge({
      name: 'teiplex_batch_pending_rows',
      help: 'Rows of unfinished batch jobs not yet done',
      registers: [registry],
      collect() {
        this.set(self.read?.().pendingRows ?? 0);
      },
    });
    new Gauge({
      name: 'teiplex_batch_rows_per_second',
      help: 'Batch rows done (completed or failed) per second over the last 10 seconds',
      registers: [registry],
      collect() {
        this.set(self.rate());
      },
    });
    this.rowsTotal = new Counter({ name: 'teiplex_batch_rows_total', help: 'Batch rows done, by outcome (completed, failed)', labelNames: ['outcome'] as const, registers: [registry] });
    this.rowsTotal.labels('completed').inc(0);
    this.rowsTotal.labels('failed').inc(0);
  }

  /** Where the job counts come from (the batch service). */
  source(read: () => BatchStats): void {
    this.read = read;
  }

  rows(c: ChunkCounts): void {
    this.rowsTotal.labels('completed').inc(c.completed);
    this.rowsTotal.labels('failed').inc(c.failed);
    this.recent.push([this.now(), c.completed + c.failed]);
  }

  private rate(): number {
    const from = this.now() - WINDOW_MS;
    this.recent = this.recent.filter(([t]) => t > from);
    return this.recent.reduce((s, [, n]) => s + n, 0) / (WINDOW_MS / 1000);
  }
}
