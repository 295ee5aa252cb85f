/**
 * Aligned text tables, as kubectl and docker print them: a header row of upper-case names, every
 * column left-aligned and padded to its widest cell, three spaces between columns, no padding
 * after the last one. Width is counted in code points (names and paths are mostly ASCII; no
 * attempt is made at East Asian widths). Pure.
 */

export const COLUMN_GAP = '   ';

/** The table as lines (no trailing newline); a row shorter than the header is padded with empty cells. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows].map((r) => header.map((_, c) => r[c] ?? ''));
  const width = header.map((_, c) => Math.max(...all.map((r) => [...r[c]].length)));
  return all
    .map((r) =>
      r
        .map((v, c) => (c === r.length - 1 ? v : v + ' '.repeat(width[c] - [...v].length)))
        .join(COLUMN_GAP)
        .trimEnd(),
    )
    .join('\n');
}

/** `Key:   value` lines, the values aligned (a `get` view). */
export function renderFields(fields: readonly (readonly [string, string])[]): string {
  const width = Math.max(0, ...fields.map(([k]) => k.length + 1));
  return fields.map(([k, v]) => `${`${k}:`.padEnd(width)}  ${v}`).join('\n');
}
