/** The batch service's settings and its folder, from the config (the batch_* keys; docs/batch.md). */
import path from 'node:path';
import type { Registry } from 'prom-client';
import type { Config } from '../config/config.js';
import { BatchMetrics } from './batch-metrics.js';
import { Batches, type BatchSettings } from './batches.js';
import { BatchWorkers } from './batch-workers.js';
import { FileStore } from './file-store.js';
import { JobStore } from './job-store.js';

const MIB = 1024 * 1024;

type BatchKeys = 'state_file' | 'batch_dir' | 'batch_max_file_mb' | 'batch_storage_mb_per_key' | 'batch_files_per_key' | 'batch_retention_hours' | 'batch_max_rows' | 'batch_max_running_jobs' | 'batch_jobs_per_key' | 'batch_chunk_rows' | 'batch_chunks_in_flight' | 'max_request_inputs';

export function batchSettings(c: Pick<Config, BatchKeys>): BatchSettings {
  return {
    chunkRows: c.batch_chunk_rows,
    maxRequestInputs: c.max_request_inputs,
    maxRows: c.batch_max_rows,
    maxFileBytes: Math.floor(c.batch_max_file_mb * MIB),
    maxRunningJobs: c.batch_max_running_jobs,
    jobsPerOwner: c.batch_jobs_per_key,
    chunksInFlight: c.batch_chunks_in_flight,
    retentionSecs: c.batch_retention_hours * 3600,
  };
}

/** The batch folder: batch_dir, relative to the state file's folder. */
export function batchRoot(c: Pick<Config, 'state_file' | 'batch_dir'>): string {
  return path.resolve(path.dirname(path.resolve(c.state_file)), c.batch_dir);
}

/** The batch service on its folder (files and jobs read; nothing runs until `attach`). */
export async function openBatches(c: Pick<Config, BatchKeys>, registry?: Registry, log?: (msg: string, fields?: Record<string, unknown>) => void): Promise<Batches> {
  const root = batchRoot(c);
  const s = batchSettings(c);
  const files = await FileStore.open(root, {
    maxFileBytes: s.maxFileBytes,
    storageBytesPerOwner: Math.floor(c.batch_storage_mb_per_key * MIB),
    filesPerOwner: c.batch_files_per_key,
    retentionSecs: s.retentionSecs,
  });
  const jobs = await JobStore.open(root);
  return new Batches(files, jobs, s, new BatchWorkers(), registry === undefined ? undefined : new BatchMetrics(registry), log);
}
