/**
 * How `teiplex ctl` writes durations, memory sizes, ages and empty values in its tables: short,
 * without spaces (so `awk` and `column` split a row where the table does), the conventions of
 * kubectl (`5m12s`, `3h5m`, `2d4h`) and docker (`512MiB`, `1.5GiB`). Pure functions.
 */

/** A cell with nothing to show. */
export const NONE = '-';

/** Whole seconds as the two largest units: `42s`, `5m12s`, `3h5m`, `2d4h`; negative or not finite -> `-`. */
export function formatDuration(secs: number): string {
  if (!Number.isFinite(secs) || secs < 0) return NONE;
  const s = Math.floor(secs);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d${Math.floor((s % 86_400) / 3600)}h`;
}

/** MiB as whole `512MiB` below 1 GiB, else `1.5GiB` (one decimal); null, undefined or negative -> `-`. */
export function formatMemory(mib: number | null | undefined): string {
  if (mib === null || mib === undefined || !Number.isFinite(mib) || mib < 0) return NONE;
  if (mib < 1024) return `${Math.round(mib)}MiB`;
  const gib = Math.round((mib / 1024) * 10) / 10;
  return `${gib}GiB`;
}

/** How long ago an ISO time was, relative to `nowMs` (`42s`, `5m12s`, ...); null or unreadable -> `-`. A time in the future (clock skew) reads `0s`. */
export function formatAge(iso: string | null | undefined, nowMs: number): string {
  if (iso === null || iso === undefined) return NONE;
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return NONE;
  return formatDuration(Math.max(0, (nowMs - t) / 1000));
}

/** A list as `a,b,c`, or `-` when empty. */
export function formatList(items: readonly (string | number)[] | null | undefined): string {
  return items === null || items === undefined || items.length === 0 ? NONE : items.join(',');
}

/** A value for a table cell: null/undefined/'' -> `-`. */
export function cell(v: string | number | boolean | null | undefined): string {
  return v === null || v === undefined || v === '' ? NONE : String(v);
}
