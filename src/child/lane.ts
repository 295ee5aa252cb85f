/**
 * A request's priority class (its lane): `interactive` (the default) or `bulk`. Chosen by the
 * `x-teiplex-priority` HTTP header or gRPC metadata, else the API key's `priority`, else the
 * front end's default (the Arrow RPCs: bulk; everything else: interactive). Every child call of
 * the request waits in that lane of the child's input window (input-budget.ts).
 */
import { TeiplexError } from '../common/errors.js';

export const LANES = ['interactive', 'bulk'] as const;
export type Lane = (typeof LANES)[number];

/** The header (HTTP) and metadata key (gRPC) naming a request's lane. */
export const PRIORITY_HEADER = 'x-teiplex-priority';

/**
 * The lane a header value names, else `fallback` (no header); a value that names no lane is
 * INVALID_ARGUMENT (HTTP 400) naming the allowed values.
 */
export function laneOf(value: unknown, fallback: Lane): Lane {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v === null) return fallback;
  const s = Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
  if (s === 'interactive' || s === 'bulk') return s;
  throw new TeiplexError('BAD_REQUEST', `${PRIORITY_HEADER}: '${s.slice(0, 64)}' is not a priority; use 'interactive' or 'bulk'`, { param: PRIORITY_HEADER });
}
