/**
 * A batch job as stored (`<batch_dir>/batches/<id>/job.json`) and as OpenAI's Batch object shows
 * it. Its statuses are OpenAI's: `validating` (waiting to run, or reading its input) ->
 * `in_progress` -> `finalizing` (writing the output and error files) -> `completed`; `failed` (it
 * cannot run at all: unreadable input, unknown model; the reason in `errors`); `expired` (its
 * completion window ended first); `cancelling` -> `cancelled`. Progress is not in this record:
 * the chunks' markers on disk are the truth (job-store.ts), so the record is written only when the
 * status changes.
 */
import type { BatchError, BatchObject, BatchStatus, RequestCounts } from '../tei/batch-objects.js';
import type { OutputType } from '../tei/embedding-types.js';
import type { InputType } from '../tei/input-types.js';

/** The only endpoint batch jobs serve. */
export const BATCH_ENDPOINT = '/v1/embeddings';

/** What a table (Arrow, Parquet) input's rows are embedded as. */
export type TableOutput = 'dense' | 'sparse' | 'multivector';

/** teiplex's fields of a batch, beside OpenAI's (tables carry no per-row body, so these say what to do). */
export interface JobOptions {
  model?: string;
  text_column?: string;
  id_column?: string;
  output?: TableOutput;
  embedding_type?: OutputType;
  dimensions?: number;
  input_type?: InputType;
}

export interface JobRecord {
  id: string;
  owner: string;
  endpoint: string;
  input_file_id: string;
  completion_window: string;
  metadata: Record<string, string> | null;
  options: JobOptions;
  status: BatchStatus;
  errors: BatchError[] | null;
  created_at: number;
  /** ms; the order jobs run in. */
  created_ms: number;
  in_progress_at: number | null;
  expires_at: number;
  finalizing_at: number | null;
  completed_at: number | null;
  failed_at: number | null;
  expired_at: number | null;
  cancelling_at: number | null;
  cancelled_at: number | null;
  /** The ids the results get (reserved at creation: finalizing twice writes the same files). */
  output_id: string;
  error_id: string;
  /** Set once written. */
  output_file_id: string | null;
  error_file_id: string | null;
  /** Rows, known once validated. */
  total: number;
  /** The model the job's rows name (JSONL: the first line's), once validated. */
  model: string | null;
  /** The counts when it finished (its checkpoints are no longer read then). */
  final_counts?: RequestCounts;
}

/** OpenAI's Batch object (plus `model`), for a record and its counts. */
export function batchObject(r: JobRecord, counts: RequestCounts): BatchObject {
  return {
    id: r.id,
    object: 'batch',
    endpoint: r.endpoint,
    model: r.model ?? r.options.model ?? null,
    errors: r.errors === null ? null : { object: 'list', data: r.errors },
    input_file_id: r.input_file_id,
    completion_window: r.completion_window,
    status: r.status,
    output_file_id: r.output_file_id,
    error_file_id: r.error_file_id,
    created_at: r.created_at,
    in_progress_at: r.in_progress_at,
    expires_at: r.expires_at,
    finalizing_at: r.finalizing_at,
    completed_at: r.completed_at,
    failed_at: r.failed_at,
    expired_at: r.expired_at,
    cancelling_at: r.cancelling_at,
    cancelled_at: r.cancelled_at,
    request_counts: counts,
    metadata: r.metadata,
  };
}

/** A completion window (`24h`, or teiplex's `<n>h` / `<n>m`) in seconds; undefined: not one. */
export function windowSecs(w: string): number | undefined {
  const m = /^([1-9][0-9]{0,4})(h|m)$/.exec(w);
  if (m === null) return undefined;
  const secs = Number(m[1]) * (m[2] === 'h' ? 3600 : 60);
  return secs <= 7 * 24 * 3600 ? secs : undefined;
}
