/**
 * The three kinds of Arrow answers: the rows each gets from a child (src/child/row-kinds.ts: the
 * Batch and tei.v1 methods, their messages and rows, the bytes a row takes), what the answer
 * needs to know about the child (its dimension, learned from rows or probed once), and the Arrow
 * IPC the rows become: packed here (one copy of the values), written by a worker thread
 * (src/arrow/arrow-workers.ts), off the event loop.
 *
 * - dense (EmbedArrow): a row is a Float32Array of `dim` values.
 * - sparse (EmbedSparseArrow): a row is indices + values.
 * - multivector (EmbedAllArrow): a row is tokens x dim values.
 */
import type { ArrowWorkers } from '../arrow/arrow-workers.js';
import { packMultivector, packSparse, type MultivectorRow, type SparseRow } from '../arrow/embedding-batch.js';
import { TeiplexError } from '../common/errors.js';
import type { CallScope } from '../child/call-scope.js';
import type { ChildClient } from '../child/child-client.js';
import { DENSE as DENSE_ROWS, MULTIVECTOR as MULTIVECTOR_ROWS, SPARSE as SPARSE_ROWS, type RowKind, type RowKindName, type RowOptions } from '../child/row-kinds.js';

export type ArrowKindName = RowKindName;

/** Request options passed on to the child. `normalize` unset: the child's default (true). */
export type EmbedFlags = Pick<RowOptions, 'truncate' | 'normalize' | 'dimensions' | 'promptName'>;

export interface ArrowKind<Row> {
  readonly name: ArrowKindName;
  /** How the rows come from a child. */
  readonly rows: RowKind<Row>;
  /** The dimension the schema needs when there are no rows to tell it (noop, empty input). */
  dimension(child: ChildClient, scope: CallScope): Promise<number>;
  /** Remember what rows tell about the child (its dimension). */
  learn(child: ChildClient, rows: Row[]): void;
  /** Fewest bytes any row of this child's answer takes (0: not known yet), to refuse early. */
  minRowBytes(child: ChildClient): number;
  /** The Arrow IPC answer; `dim` is used when there are no rows. */
  encode(rows: Row[], dim: number, workers: ArrowWorkers): Promise<Uint8Array>;
  /** `n` rows of zeros: zero vectors (dense), no entries (sparse), no tokens (multivector). */
  zeros(n: number, dim: number, workers: ArrowWorkers): Promise<Uint8Array>;
}

function malformed(what: string): TeiplexError {
  return new TeiplexError('BACKEND', `the child's answer is malformed: ${what}`);
}

export const DENSE: ArrowKind<Float32Array> = {
  name: 'dense',
  rows: DENSE_ROWS,
  dimension: (child, scope) => child.denseDimension(scope),
  learn(child, rows) {
    if (rows.length > 0) child.known.denseDim = rows[0]!.length;
  },
  minRowBytes: (child) => (child.known.denseDim ?? 0) * 4,
  encode(rows, dim, workers) {
    const d = rows[0]?.length ?? dim;
    const values = new Float32Array(rows.length * d);
    rows.forEach((row, i) => {
      if (row.length !== d) throw malformed(`row ${i} has ${row.length} values, row 0 has ${d}`);
      values.set(row, i * d);
    });
    return workers.dense(values, d);
  },
  zeros: (n, dim, workers) => workers.dense(new Float32Array(n * dim), dim),
};

export const SPARSE: ArrowKind<SparseRow> = {
  name: 'sparse',
  rows: SPARSE_ROWS,
  dimension: async () => 0,
  learn: () => undefined,
  minRowBytes: () => 4,
  encode: (rows, _dim, workers) => workers.sparse(packSparse(rows)),
  zeros: (n, _dim, workers) => workers.sparse({ offsets: new Int32Array(n + 1), indices: new Uint32Array(0), values: new Float32Array(0) }),
};

export const MULTIVECTOR: ArrowKind<MultivectorRow> = {
  name: 'multivector',
  rows: MULTIVECTOR_ROWS,
  dimension: (child, scope) => child.tokenDimension(scope),
  learn(child, rows) {
    const row = rows.find((r) => r.tokens > 0);
    if (row !== undefined) child.known.tokenDim = row.dim;
  },
  minRowBytes: () => 4,
  encode(rows, dim, workers) {
    // A row without tokens carries no dimension of its own: give it the others'.
    const d = rows.find((r) => r.tokens > 0)?.dim ?? dim;
    return workers.multivector(
      packMultivector(
        rows.map((r) => (r.tokens === 0 ? { tokens: 0, dim: d, values: r.values } : r)),
        d,
      ),
    );
  },
  zeros: (n, dim, workers) => workers.multivector({ dim, offsets: new Int32Array(n + 1), values: new Float32Array(0) }),
};
