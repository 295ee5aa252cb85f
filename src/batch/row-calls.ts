/**
 * A chunk's rows in as few calls as possible, each row's failure its own. The rows go in one call;
 * when it fails for a reason that is not passing (a bad input, a model that cannot do it), the
 * row named by the error's index fails alone and the others are called again, or, with no index,
 * each row is called on its own so that each gets its own answer. A passing failure (the child
 * overloaded or restarting, a cold start, a timeout) fails no row: it is thrown, and the runner
 * retries the chunk later.
 */
import { TeiplexError } from '../common/errors.js';

export type RowOutcome<R> = { ok: true; value: R } | { ok: false; error: unknown };

/** Statuses that pass: overloaded (429), cancelled (499: the job stopping), unavailable (503), timed out (504). */
const PASSING = new Set([429, 499, 503, 504]);

/** Does `err` pass (retry the chunk later) rather than belong to a row? */
export function passing(err: unknown): boolean {
  return err instanceof TeiplexError && PASSING.has(err.httpStatus);
}

/**
 * `call` on `rows`, isolating failures. `rowOfIndex` maps an error's input index (in the call's
 * inputs, for the rows given) to the position of the row holding that input.
 */
export async function callRows<T, R>(rows: readonly T[], call: (rows: readonly T[]) => Promise<R[]>, rowOfIndex: (rows: readonly T[], index: number) => number): Promise<Array<RowOutcome<R>>> {
  const out: Array<RowOutcome<R> | undefined> = new Array(rows.length);
  let pending = rows.map((_, k) => k);
  while (pending.length > 0) {
    const batch = pending.map((k) => rows[k]);
    try {
      const values = await call(batch);
      pending.forEach((k, j) => {
        out[k] = { ok: true, value: values[j] };
      });
      break;
    } catch (err) {
      if (passing(err)) throw err;
      if (pending.length === 1) {
        out[pending[0]] = { ok: false, error: err };
        break;
      }
      const index = err instanceof TeiplexError ? err.index : undefined;
      const at = index === undefined ? -1 : rowOfIndex(batch, index);
      if (at < 0 || at >= batch.length) {
        // No row named: each on its own, so each gets its own answer.
        for (const k of pending) out[k] = (await callRows([rows[k]], call, rowOfIndex))[0];
        break;
      }
      out[pending[at]] = { ok: false, error: err };
      pending = pending.filter((_, j) => j !== at);
    }
  }
  return out as Array<RowOutcome<R>>;
}
