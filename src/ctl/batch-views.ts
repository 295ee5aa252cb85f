/**
 * The views of `teiplex ctl batch`: the list of batches as a table, one batch in detail, and the
 * one-line progress that `batch submit --wait` prints. Each takes the manager's Batch objects
 * (OpenAI's shape, times in Unix seconds) and returns text. Pure, with the time passed in.
 */
import type { BatchObject } from '../client/batches.js';
import { cell, formatAge, formatDuration, NONE } from './format.js';
import { renderFields, renderTable } from './table.js';

export const BATCH_COLUMNS = ['ID', 'STATUS', 'MODEL', 'DONE/TOTAL', 'FAILED', 'CREATED'] as const;

/** Unix seconds as ISO text; null -> null. */
const iso = (secs: number | null | undefined): string | null => (typeof secs === 'number' && Number.isFinite(secs) ? new Date(secs * 1000).toISOString() : null);

/** `12/40`: the rows done (answered) of all the batch's rows. */
export const doneOfTotal = (b: BatchObject): string => `${b.request_counts.completed}/${b.request_counts.total}`;

/** `ctl batch status`: one row per batch, in the manager's order; CREATED is how long ago. */
export function batchesTable(batches: readonly BatchObject[], nowMs: number): string {
  if (batches.length === 0) return 'No batches.';
  return renderTable(
    BATCH_COLUMNS,
    batches.map((b) => [b.id, b.status, cell(b.model), doneOfTotal(b), String(b.request_counts.failed), formatAge(iso(b.created_at), nowMs)]),
  );
}

/** A time field: `ISO (5m12s ago)`, `ISO (in 23h59m)` for a time to come, or `-`. */
function when(secs: number | null | undefined, nowMs: number): string {
  const t = iso(secs);
  if (t === null || secs === null || secs === undefined) return NONE;
  return secs * 1000 > nowMs ? `${t} (in ${formatDuration(secs - nowMs / 1000)})` : `${t} (${formatAge(t, nowMs)} ago)`;
}

/** The batch's errors, one a line: `CODE: message (line N, param P)`. */
export function batchErrors(b: BatchObject): string[] {
  return (b.errors?.data ?? []).map((e) => {
    const where = [e.line !== null && e.line !== undefined ? `line ${e.line}` : '', e.param ? `param ${e.param}` : ''].filter((x) => x !== '');
    return `${e.code}: ${e.message}${where.length > 0 ? ` (${where.join(', ')})` : ''}`;
  });
}

/** `ctl batch status ID`: every field, one a line (the times that are set). */
export function batchDetail(b: BatchObject, nowMs: number): string {
  const times: [string, number | null][] = [
    ['In progress at', b.in_progress_at],
    ['Finalizing at', b.finalizing_at],
    ['Completed at', b.completed_at],
    ['Failed at', b.failed_at],
    ['Cancelling at', b.cancelling_at],
    ['Cancelled at', b.cancelled_at],
    ['Expired at', b.expired_at],
  ];
  const errors = batchErrors(b);
  const metadata = Object.entries(b.metadata ?? {});
  return renderFields([
    ['ID', b.id],
    ['Status', b.status],
    ['Model', cell(b.model)],
    ['Endpoint', b.endpoint],
    ['Input file', b.input_file_id],
    ['Output file', cell(b.output_file_id)],
    ['Error file', cell(b.error_file_id)],
    ['Rows', `${doneOfTotal(b)} done, ${b.request_counts.failed} failed`],
    ['Created', when(b.created_at, nowMs)],
    ...times.filter(([, t]) => t !== null && t !== undefined).map(([k, t]): [string, string] => [k, when(t, nowMs)]),
    ['Expires at', when(b.expires_at, nowMs)],
    ['Metadata', metadata.length === 0 ? NONE : metadata.map(([k, v]) => `${k}=${v}`).join(', ')],
    ['Errors', errors.length === 0 ? NONE : errors.join('; ')],
  ]);
}

/** One line of `batch submit --wait`'s progress: `batch_x: in_progress, 256/1000 rows done, 0 failed`. */
export function batchProgress(b: BatchObject): string {
  return `${b.id}: ${b.status}, ${doneOfTotal(b)} rows done, ${b.request_counts.failed} failed`;
}
