/**
 * The three kinds of Arrow answers and what each needs from a child: the Batch and stream methods
 * it calls, their request and answer messages (encoded and decoded with the router's proto
 * definitions: protobufjs, `bytes` fields as views of the received message), the rows an answer
 * holds, the bytes they take in an answer (for the answer size limit, checked as rows arrive), and
 * the Arrow IPC the rows become: packed here (one copy of the values), written by a worker thread
 * (src/arrow/arrow-workers.ts), off the event loop.
 *
 * - dense (EmbedArrow): teiplex.v1.Batch/EmbedBatch or tei.v1.Embed/EmbedStream; a row is a
 *   Float32Array of `dim` values.
 * - sparse (EmbedSparseArrow): EmbedSparseBatch or EmbedSparseStream; a row is indices + values.
 * - multivector (EmbedAllArrow): EmbedAllBatch or EmbedAllStream; a row is tokens x dim values.
 *
 * A malformed answer (wrong row count, lengths that do not add up) throws BACKEND (INTERNAL).
 */
import { endianness } from 'node:os';
import type { ArrowWorkers } from '../arrow/arrow-workers.js';
import { packMultivector, packSparse, type MultivectorRow, type SparseRow } from '../arrow/embedding-batch.js';
import { TeiplexError } from '../common/errors.js';
import {
  serviceDefinition,
  type PbEmbedAllBatchResponse,
  type PbEmbedAllResponse,
  type PbEmbedBatchResponse,
  type PbEmbedResponse,
  type PbEmbedSparseBatchResponse,
  type PbEmbedSparseResponse,
} from '../tei/proto.js';
import type { ArrowCall } from './arrow-call.js';
import type { ArrowChild } from './arrow-child.js';

export type ArrowKindName = 'dense' | 'sparse' | 'multivector';

/** Request options passed on to the child. `normalize` unset: the child's default (true). */
export interface EmbedFlags {
  truncate: boolean;
  normalize?: boolean;
}

export interface ArrowKind<Row> {
  readonly name: ArrowKindName;
  /** teiplex.v1.Batch method: many inputs per call. */
  readonly batchPath: string;
  /** tei.v1.Embed bidirectional stream: one input per message. */
  readonly streamPath: string;
  batchRequest(inputs: string[], flags: EmbedFlags): Buffer;
  /** The `n` rows of a Batch answer to `n` inputs. */
  batchRows(answer: Buffer, n: number): Row[];
  streamRequest(input: string, flags: EmbedFlags): Buffer;
  streamRow(answer: Buffer): Row;
  /** The dimension the schema needs when there are no rows to tell it (noop, empty input). */
  dimension(child: ArrowChild, call: ArrowCall): Promise<number>;
  /** Remember what rows tell about the child (its dimension). */
  learn(child: ArrowChild, rows: Row[]): void;
  /** Fewest bytes any row of this child's answer takes (0: not known yet), to refuse early. */
  minRowBytes(child: ArrowChild): number;
  /** Uncompressed bytes the row takes in an answer (values, indices, its offset). */
  rowBytes(row: Row): number;
  /** The Arrow IPC answer; `dim` is used when there are no rows. */
  encode(rows: Row[], dim: number, workers: ArrowWorkers): Promise<Uint8Array>;
  /** `n` rows of zeros: zero vectors (dense), no entries (sparse), no tokens (multivector). */
  zeros(n: number, dim: number, workers: ArrowWorkers): Promise<Uint8Array>;
}

const LITTLE_ENDIAN = endianness() === 'LE';

function malformed(what: string): TeiplexError {
  return new TeiplexError('BACKEND', `the child's answer is malformed: ${what}`);
}

/** `count` little-endian float32 values from `bytes`, in an aligned array of their own. */
function float32s(bytes: Buffer, count: number, field: string): Float32Array {
  if (bytes.length !== count * 4) throw malformed(`${field} has ${bytes.length} bytes, expected ${count * 4}`);
  const out = new Float32Array(count);
  if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes);
  else for (let i = 0; i < count; i++) out[i] = bytes.readFloatLE(i * 4);
  return out;
}

function uint32s(bytes: Buffer, count: number, field: string): Uint32Array {
  if (bytes.length !== count * 4) throw malformed(`${field} has ${bytes.length} bytes, expected ${count * 4}`);
  const out = new Uint32Array(count);
  if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes);
  else for (let i = 0; i < count; i++) out[i] = bytes.readUInt32LE(i * 4);
  return out;
}

/** Row offsets of a Batch answer: n + 1 of them, from 0, never decreasing. */
function checkOffsets(offsets: number[], n: number): number {
  if (offsets.length !== n + 1) throw malformed(`${offsets.length} offsets for ${n} inputs, expected ${n + 1}`);
  if (offsets[0] !== 0) throw malformed(`offsets start at ${offsets[0]}, not 0`);
  for (let i = 0; i < n; i++) if (offsets[i + 1]! < offsets[i]!) throw malformed(`offsets decrease at input ${i}`);
  return offsets[n]!;
}

function decode<T>(fn: (b: Buffer) => unknown, bytes: Buffer, what: string): T {
  try {
    return fn(bytes) as T;
  } catch (err) {
    throw malformed(`not a ${what}: ${(err as Error).message}`);
  }
}

const batch = serviceDefinition('teiplex.v1.Batch');
const embed = serviceDefinition('tei.v1.Embed');

export const DENSE: ArrowKind<Float32Array> = {
  name: 'dense',
  batchPath: '/teiplex.v1.Batch/EmbedBatch',
  streamPath: '/tei.v1.Embed/EmbedStream',
  batchRequest: (inputs, f) => batch.EmbedBatch!.requestSerialize({ inputs, truncate: f.truncate, normalize: f.normalize }),
  batchRows(answer, n) {
    const res = decode<PbEmbedBatchResponse>(batch.EmbedBatch!.responseDeserialize, answer, 'teiplex.v1.EmbedBatchResponse');
    const dim = res.dim;
    if (!(dim > 0)) throw malformed(`dim is ${dim}`);
    const values = float32s(res.embeddings, n * dim, 'embeddings');
    return Array.from({ length: n }, (_, i) => values.subarray(i * dim, (i + 1) * dim));
  },
  streamRequest: (inputs, f) => embed.EmbedStream!.requestSerialize({ inputs, truncate: f.truncate, normalize: f.normalize }),
  streamRow: (answer) => Float32Array.from(decode<PbEmbedResponse>(embed.EmbedStream!.responseDeserialize, answer, 'tei.v1.EmbedResponse').embeddings),
  dimension: (child, call) => child.dense(call),
  learn(child, rows) {
    if (rows.length > 0) child.denseDim = rows[0]!.length;
  },
  minRowBytes: (child) => (child.denseDim ?? 0) * 4,
  rowBytes: (row) => row.length * 4,
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
  batchPath: '/teiplex.v1.Batch/EmbedSparseBatch',
  streamPath: '/tei.v1.Embed/EmbedSparseStream',
  batchRequest: (inputs, f) => batch.EmbedSparseBatch!.requestSerialize({ inputs, truncate: f.truncate }),
  batchRows(answer, n) {
    const res = decode<PbEmbedSparseBatchResponse>(batch.EmbedSparseBatch!.responseDeserialize, answer, 'teiplex.v1.EmbedSparseBatchResponse');
    const total = checkOffsets(res.offsets, n);
    const indices = uint32s(res.indices, total, 'indices');
    const values = float32s(res.values, total, 'values');
    const o = res.offsets;
    return Array.from({ length: n }, (_, i) => ({ indices: indices.subarray(o[i], o[i + 1]), values: values.subarray(o[i], o[i + 1]) }));
  },
  streamRequest: (inputs, f) => embed.EmbedSparseStream!.requestSerialize({ inputs, truncate: f.truncate }),
  streamRow(answer) {
    const entries = decode<PbEmbedSparseResponse>(embed.EmbedSparseStream!.responseDeserialize, answer, 'tei.v1.EmbedSparseResponse').sparse_embeddings;
    const indices = new Uint32Array(entries.length);
    const values = new Float32Array(entries.length);
    entries.forEach((e, i) => {
      indices[i] = e.index;
      values[i] = e.value;
    });
    return { indices, values };
  },
  dimension: async () => 0,
  learn: () => undefined,
  minRowBytes: () => 4,
  rowBytes: (row) => 4 + row.indices.length * 8,
  encode: (rows, _dim, workers) => workers.sparse(packSparse(rows)),
  zeros: (n, _dim, workers) => workers.sparse({ offsets: new Int32Array(n + 1), indices: new Uint32Array(0), values: new Float32Array(0) }),
};

export const MULTIVECTOR: ArrowKind<MultivectorRow> = {
  name: 'multivector',
  batchPath: '/teiplex.v1.Batch/EmbedAllBatch',
  streamPath: '/tei.v1.Embed/EmbedAllStream',
  batchRequest: (inputs, f) => batch.EmbedAllBatch!.requestSerialize({ inputs, truncate: f.truncate }),
  batchRows(answer, n) {
    const res = decode<PbEmbedAllBatchResponse>(batch.EmbedAllBatch!.responseDeserialize, answer, 'teiplex.v1.EmbedAllBatchResponse');
    const tokens = checkOffsets(res.offsets, n);
    const dim = res.dim;
    if (!(dim > 0) && tokens > 0) throw malformed(`dim is ${dim}`);
    const values = float32s(res.embeddings, tokens * dim, 'embeddings');
    const o = res.offsets;
    return Array.from({ length: n }, (_, i) => ({ tokens: o[i + 1]! - o[i]!, dim, values: values.subarray(o[i]! * dim, o[i + 1]! * dim) }));
  },
  streamRequest: (inputs, f) => embed.EmbedAllStream!.requestSerialize({ inputs, truncate: f.truncate }),
  streamRow(answer) {
    const tokens = decode<PbEmbedAllResponse>(embed.EmbedAllStream!.responseDeserialize, answer, 'tei.v1.EmbedAllResponse').token_embeddings;
    const dim = tokens[0]?.embeddings.length ?? 0;
    const values = new Float32Array(tokens.length * dim);
    tokens.forEach((t, i) => {
      if (t.embeddings.length !== dim) throw malformed(`token ${i} has ${t.embeddings.length} values, token 0 has ${dim}`);
      values.set(t.embeddings, i * dim);
    });
    return { tokens: tokens.length, dim, values };
  },
  dimension: (child, call) => child.token(call),
  learn(child, rows) {
    const row = rows.find((r) => r.tokens > 0);
    if (row !== undefined) child.tokenDim = row.dim;
  },
  minRowBytes: () => 4,
  rowBytes: (row) => 4 + row.values.length * 4,
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
