/**
 * The three kinds of embedding rows a child produces, and how each travels: the teiplex.v1.Batch
 * method (many inputs per call, packed little-endian results) and the tei.v1 method (one input
 * per message: its unary call and its `*Stream` twin answer the same message), their requests and
 * answers (codec.ts), and the bytes a row takes in an answer (for answer size limits, checked as
 * rows arrive).
 *
 * - dense: EmbedBatch or Embed/EmbedStream; a row is a Float32Array of `dim` values.
 * - sparse: EmbedSparseBatch or EmbedSparse/EmbedSparseStream; a row is indices + values.
 * - multivector: EmbedAllBatch or EmbedAll/EmbedAllStream; a row is tokens x dim values.
 *
 * A malformed answer (wrong row count, lengths that do not add up) throws BACKEND (INTERNAL).
 */
import { endianness } from 'node:os';
import { TeiplexError } from '../common/errors.js';
import type { Metadata, SparseVector, TokenEmbeddings, TruncationDirection } from '../tei/types.js';
import type { PbMetadata } from '../tei/proto.js';
import { BATCH, decodeEmbedResponse, encodeEmbedRequest, fromPbMetadata, pbDirection, TEI, type ChildMethod } from './codec.js';

export type RowKindName = 'dense' | 'sparse' | 'multivector';

/** What a request asks besides its texts; unset fields: the child's default (normalize: true). */
export interface RowOptions {
  truncate: boolean;
  truncationDirection?: TruncationDirection;
  promptName?: string;
  normalize?: boolean;
  dimensions?: number;
}

export interface RowKind<Row> {
  readonly name: RowKindName;
  /** teiplex.v1.Batch method: many inputs per call. */
  readonly batchPath: string;
  /** tei.v1 unary method: one input. */
  readonly unaryPath: string;
  /** tei.v1 bidirectional stream: one input per message. */
  readonly streamPath: string;
  batchRequest(inputs: string[], o: RowOptions): Buffer;
  /** The `n` rows of a Batch answer to `n` inputs, and their metadata (per input: batchMetadata). */
  batchRows(answer: Buffer, n: number): { rows: Row[]; metadata: Metadata[] };
  /** A tei.v1 request of one input (unary or stream message). */
  request(input: string, o: RowOptions): Buffer;
  /** The row of a tei.v1 answer (unary or stream message), and its metadata. */
  row(answer: Buffer): { row: Row; metadata: Metadata };
  /** The floats a row holds (answer size hooks). */
  floats(row: Row): number;
  /** Uncompressed bytes the row takes in a packed answer (values, indices, its offset). */
  rowBytes(row: Row): number;
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

function decode<Res>(m: ChildMethod<unknown, Res>, bytes: Buffer, what: string): Res {
  try {
    return m.decode(bytes);
  } catch (err) {
    throw malformed(`not a ${what}: ${(err as Error).message}`);
  }
}

const encodeOnly = (o: RowOptions) => ({
  truncate: o.truncate,
  ...(o.truncationDirection !== undefined ? { truncation_direction: pbDirection(o.truncationDirection) } : {}),
  ...(o.promptName !== undefined ? { prompt_name: o.promptName } : {}),
});
/**
 * A Batch answer's metadata per input: each input's own token count (`input_tokens`), the call's
 * characters on the first, the call's stage times on each (so sums and means stay the call's); a
 * router that predates `input_tokens`: the call's metadata once.
 */
function batchMetadata(m: PbMetadata | null | undefined, tokens: number[] | undefined, n: number): Metadata[] {
  const call = fromPbMetadata(m);
  if (tokens === undefined || tokens.length !== n || n === 0) return [call];
  return tokens.map((t, i) => ({ ...call, computeTokens: t, computeChars: i === 0 ? call.computeChars : 0 }));
}

const embedFields = (o: RowOptions) => ({
  ...encodeOnly(o),
  ...(o.normalize !== undefined ? { normalize: o.normalize } : {}),
  ...(o.dimensions !== undefined ? { dimensions: o.dimensions } : {}),
});

export const DENSE: RowKind<Float32Array> = {
  name: 'dense',
  batchPath: BATCH.EmbedBatch.path,
  unaryPath: TEI.Embed.path,
  streamPath: TEI.EmbedStream.path,
  batchRequest: (inputs, o) => BATCH.EmbedBatch.encode({ inputs, ...embedFields(o) }),
  batchRows(answer, n) {
    const res = decode(BATCH.EmbedBatch, answer, 'teiplex.v1.EmbedBatchResponse');
    const dim = res.dim;
    if (!(dim > 0) && n > 0) throw malformed(`dim is ${dim}`);
    const values = float32s(res.embeddings, n * dim, 'embeddings');
    return { rows: Array.from({ length: n }, (_, i) => values.subarray(i * dim, (i + 1) * dim)), metadata: batchMetadata(res.metadata, res.input_tokens, n) };
  },
  // The hottest pair of messages, by hand (codec.ts): the same bytes, without protobufjs' object conversion.
  request: (inputs, o) => encodeEmbedRequest(inputs, embedFields(o)),
  row(answer) {
    try {
      const res = decodeEmbedResponse(answer);
      return { row: res.embeddings, metadata: res.metadata };
    } catch (err) {
      throw malformed(`not a tei.v1.EmbedResponse: ${(err as Error).message}`);
    }
  },
  floats: (row) => row.length,
  rowBytes: (row) => row.length * 4,
};

export const SPARSE: RowKind<SparseVector> = {
  name: 'sparse',
  batchPath: BATCH.EmbedSparseBatch.path,
  unaryPath: TEI.EmbedSparse.path,
  streamPath: TEI.EmbedSparseStream.path,
  batchRequest: (inputs, o) => BATCH.EmbedSparseBatch.encode({ inputs, ...encodeOnly(o) }),
  batchRows(answer, n) {
    const res = decode(BATCH.EmbedSparseBatch, answer, 'teiplex.v1.EmbedSparseBatchResponse');
    const total = checkOffsets(res.offsets, n);
    const indices = uint32s(res.indices, total, 'indices');
    const values = float32s(res.values, total, 'values');
    const o = res.offsets;
    return { rows: Array.from({ length: n }, (_, i) => ({ indices: indices.subarray(o[i], o[i + 1]), values: values.subarray(o[i], o[i + 1]) })), metadata: batchMetadata(res.metadata, res.input_tokens, n) };
  },
  request: (inputs, o) => TEI.EmbedSparse.encode({ inputs, ...encodeOnly(o) }),
  row(answer) {
    const res = decode(TEI.EmbedSparse, answer, 'tei.v1.EmbedSparseResponse');
    const entries = res.sparse_embeddings;
    const indices = new Uint32Array(entries.length);
    const values = new Float32Array(entries.length);
    entries.forEach((e, i) => {
      indices[i] = e.index;
      values[i] = e.value;
    });
    return { row: { indices, values }, metadata: fromPbMetadata(res.metadata) };
  },
  floats: (row) => row.values.length,
  rowBytes: (row) => 4 + row.indices.length * 8,
};

export const MULTIVECTOR: RowKind<TokenEmbeddings> = {
  name: 'multivector',
  batchPath: BATCH.EmbedAllBatch.path,
  unaryPath: TEI.EmbedAll.path,
  streamPath: TEI.EmbedAllStream.path,
  batchRequest: (inputs, o) => BATCH.EmbedAllBatch.encode({ inputs, ...encodeOnly(o) }),
  batchRows(answer, n) {
    const res = decode(BATCH.EmbedAllBatch, answer, 'teiplex.v1.EmbedAllBatchResponse');
    const tokens = checkOffsets(res.offsets, n);
    const dim = res.dim;
    if (!(dim > 0) && tokens > 0) throw malformed(`dim is ${dim}`);
    const values = float32s(res.embeddings, tokens * dim, 'embeddings');
    const o = res.offsets;
    return {
      rows: Array.from({ length: n }, (_, i) => ({ tokens: o[i + 1]! - o[i]!, dim, values: values.subarray(o[i]! * dim, o[i + 1]! * dim) })),
      metadata: batchMetadata(res.metadata, res.input_tokens, n),
    };
  },
  request: (inputs, o) => TEI.EmbedAll.encode({ inputs, ...encodeOnly(o) }),
  row(answer) {
    const res = decode(TEI.EmbedAll, answer, 'tei.v1.EmbedAllResponse');
    const tokens = res.token_embeddings;
    const dim = tokens[0]?.embeddings.length ?? 0;
    const values = new Float32Array(tokens.length * dim);
    tokens.forEach((t, i) => {
      if (t.embeddings.length !== dim) throw malformed(`token ${i} has ${t.embeddings.length} values, token 0 has ${dim}`);
      values.set(t.embeddings, i * dim);
    });
    return { row: { tokens: tokens.length, dim, values }, metadata: fromPbMetadata(res.metadata) };
  },
  floats: (row) => row.values.length,
  rowBytes: (row) => 4 + row.values.length * 4,
};
