/**
 * The Files and Batches API's objects on the wire (docs/batch.md): OpenAI's File, Batch and list
 * page, with teiplex's `model` on a Batch. One definition for what the manager sends (src/batch,
 * src/http/data-plane/batch-routes.ts) and what the client reads (src/client/batches.ts).
 */

/** A batch's life: validating, in_progress, finalizing, then one of the final four. */
export const BATCH_STATUSES = ['validating', 'in_progress', 'finalizing', 'completed', 'failed', 'expired', 'cancelling', 'cancelled'] as const;
export type BatchStatus = (typeof BATCH_STATUSES)[number];

/** The statuses a batch does not leave. */
export const FINAL_BATCH_STATUSES: readonly BatchStatus[] = ['completed', 'failed', 'expired', 'cancelled'];

/** Whether a batch has ended (its files will not change). */
export const isFinalBatchStatus = (s: string): boolean => (FINAL_BATCH_STATUSES as readonly string[]).includes(s);

/** `batch` (uploaded), `batch_output` (a batch's output or error file). */
export type FilePurpose = 'batch' | 'batch_output';

/** OpenAI's File object. */
export interface FileObject {
  id: string;
  object: 'file';
  bytes: number;
  /** Unix seconds. */
  created_at: number;
  expires_at: number | null;
  filename: string;
  purpose: FilePurpose;
  status: 'processed';
  status_details: null;
}

/** OpenAI's list page. */
export interface ListPage<T> {
  object: 'list';
  data: T[];
  first_id: string | null;
  last_id: string | null;
  has_more: boolean;
}

/** One of a batch's errors (a bad input line, a refused request). */
export interface BatchError {
  code: string;
  message: string;
  param: string | null;
  line: number | null;
}

/** The counts a Batch reports. */
export interface RequestCounts {
  total: number;
  completed: number;
  failed: number;
}

/** OpenAI's Batch object, plus `model` (null until the manager knows it). */
export interface BatchObject {
  id: string;
  object: 'batch';
  endpoint: string;
  model: string | null;
  errors: { object: 'list'; data: BatchError[] } | null;
  input_file_id: string;
  completion_window: string;
  status: BatchStatus;
  output_file_id: string | null;
  error_file_id: string | null;
  /** Unix seconds, as every `*_at`. */
  created_at: number;
  in_progress_at: number | null;
  expires_at: number | null;
  finalizing_at: number | null;
  completed_at: number | null;
  failed_at: number | null;
  expired_at: number | null;
  cancelling_at: number | null;
  cancelled_at: number | null;
  request_counts: RequestCounts;
  metadata: Record<string, string> | null;
}
