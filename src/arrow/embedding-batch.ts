/**
 * Arrow response encoding (and the small decoders that tests, the bench and clients use), plus
 * the request writer `encodeTexts`.
 *
 * Response schemas, one column each, row i answering request row i:
 * - dense:       `embeddings`        FixedSizeList<Float32>[dim]; in another output type
 *                 FixedSizeList<Float16 | Int8 | Uint8>[n] (binary types: n = ceil(dim / 8) packed
 *                 bytes), the field's metadata `teiplex.embedding_type` and `teiplex.dimensions`
 * - sparse:      `sparse_embeddings` List<Struct<index: UInt32, value: Float32>>
 * - multivector: `embeddings`        List<FixedSizeList<Float32>[dim]>   (one vector per token)
 * Bodies are LZ4_FRAME-compressed by default (Arrow's own per-buffer body compression).
 *
 * Vectors are built straight from packed typed arrays (one Float32Array for all values, one
 * offsets array), never from per-element JS objects.
 */
import {
  DataType,
  Field,
  FixedSizeList,
  Float16,
  Float32,
  Int8,
  LargeUtf8,
  List,
  Precision,
  RecordBatch,
  Schema,
  Struct,
  Uint32,
  Uint8,
  Utf8,
  makeData,
  type Data,
} from 'apache-arrow';
import { ArrowInputError, readStream, writeStream, type ReadLimits } from './ipc-stream.js';

export const DENSE_COLUMN = 'embeddings';
export const SPARSE_COLUMN = 'sparse_embeddings';
export const MULTIVECTOR_COLUMN = 'embeddings';
/** Name of a list's child field, as pyarrow, arrow-rs and polars write it. */
const ITEM = 'item';
/** Largest element count a List with 32-bit offsets can hold. */
const MAX_INT32 = 2 ** 31 - 1;

export interface EncodeOptions {
  /** LZ4_FRAME body compression; default true. */
  compress?: boolean;
}

export interface SparseRow {
  indices: Uint32Array;
  values: Float32Array;
}

export interface MultivectorRow {
  /** Number of token vectors in this row. */
  tokens: number;
  dim: number;
  /** tokens*dim values, token-major. */
  values: Float32Array;
}

export interface DenseBatch {
  dim: number;
  rows: number;
  /** rows*dim values, row-major. */
  values: Float32Array;
}

/** The values of a dense answer in another element type: float16 as its bits (Uint16Array). */
export type DenseValues = Float32Array | Uint16Array | Int8Array | Uint8Array;

/** A dense answer of any element type, as read back. */
export interface TypedDenseBatch {
  /** Values per row (packed bytes for the binary types). */
  dim: number;
  rows: number;
  values: DenseValues;
  /** The field's metadata: `teiplex.embedding_type`, `teiplex.dimensions` when not float32. */
  metadata: ReadonlyMap<string, string>;
}

// ---------------------------------------------------------------------------------------------
// schemas

function floatVectorType(dim: number): FixedSizeList<Float32> {
  return new FixedSizeList(dim, new Field(ITEM, new Float32(), false));
}

function sparseEntryType(): Struct {
  return new Struct([new Field('index', new Uint32(), false), new Field('value', new Float32(), false)]);
}

export function denseSchema(dim: number): Schema {
  return new Schema([new Field(DENSE_COLUMN, floatVectorType(dim), false)]);
}

/** The Arrow element type of packed values (a Uint16Array holds float16 bits). */
function elementType(values: DenseValues): Float32 | Float16 | Int8 | Uint8 {
  if (values instanceof Float32Array) return new Float32();
  if (values instanceof Uint16Array) return new Float16();
  if (values instanceof Int8Array) return new Int8();
  return new Uint8();
}

export function sparseSchema(): Schema {
  return new Schema([new Field(SPARSE_COLUMN, new List(new Field(ITEM, sparseEntryType(), false)), false)]);
}

export function multivectorSchema(dim: number): Schema {
  return new Schema([new Field(MULTIVECTOR_COLUMN, new List(new Field(ITEM, floatVectorType(dim), false)), false)]);
}

/** A one-column record batch around `column`. */
function oneColumnBatch(schema: Schema, column: Data): RecordBatch {
  const struct = makeData({ type: new Struct(schema.fields), length: column.length, nullCount: 0, children: [column] });
  return new RecordBatch(schema, struct);
}

function checkDim(dim: number, what: string): void {
  if (!Number.isInteger(dim) || dim <= 0 || dim > MAX_INT32) {
    throw new RangeError(`${what}: dim must be a positive integer, got ${dim}`);
  }
}

function denseColumn(values: Float32Array, rows: number, dim: number): Data<FixedSizeList<Float32>> {
  const child = makeData({ type: new Float32(), length: rows * dim, nullCount: 0, data: values });
  return makeData({ type: floatVectorType(dim), length: rows, nullCount: 0, child });
}

// ---------------------------------------------------------------------------------------------
// encoders

/**
 * Dense embeddings, `rows` either packed (rows*dim values, row-major) or one array per row.
 * Zero rows give a valid stream with the schema and no record batch.
 */
export function encodeDense(rows: Float32Array | readonly Float32Array[], dim: number, opts: EncodeOptions = {}): Uint8Array {
  checkDim(dim, 'encodeDense');
  let packed: Float32Array;
  if (rows instanceof Float32Array) {
    if (rows.length % dim !== 0) {
      throw new RangeError(`encodeDense: ${rows.length} packed values are not a whole number of ${dim}-dimensional rows`);
    }
    packed = rows;
  } else {
    packed = new Float32Array(rows.length * dim);
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!;
      if (row.length !== dim) throw new RangeError(`encodeDense: row ${i} has ${row.length} values, expected ${dim}`);
      packed.set(row, i * dim);
    }
  }
  const n = packed.length / dim;
  const schema = denseSchema(dim);
  const batches = n === 0 ? [] : [oneColumnBatch(schema, denseColumn(packed, n, dim))];
  return writeStream(schema, batches, opts);
}

/**
 * Dense rows in another element type (packed, `rowLength` values a row), the column's field
 * carrying `metadata` (the output type and the vector's dimensions, which the packed binary types
 * do not show). Zero rows give the schema alone.
 */
export function encodeDenseTyped(values: DenseValues, rowLength: number, metadata: Readonly<Record<string, string>>, opts: EncodeOptions = {}): Uint8Array {
  checkDim(rowLength, 'encodeDenseTyped');
  if (values.length % rowLength !== 0) throw new RangeError(`encodeDenseTyped: ${values.length} values are not a whole number of ${rowLength}-value rows`);
  const element = elementType(values);
  const listType = new FixedSizeList(rowLength, new Field(ITEM, element, false));
  const schema = new Schema([new Field(DENSE_COLUMN, listType, false, new Map(Object.entries(metadata)))]);
  const n = values.length / rowLength;
  if (n === 0) return writeStream(schema, [], opts);
  const child = makeData({ type: element, length: values.length, nullCount: 0, data: values } as Parameters<typeof makeData>[0]);
  const column = makeData({ type: listType, length: n, nullCount: 0, child } as Parameters<typeof makeData>[0]);
  return writeStream(schema, [oneColumnBatch(schema, column as Data)], opts);
}

/** Sparse embeddings: row i is the (index, value) pairs of input i, in the order given. */
export function encodeSparse(rows: readonly SparseRow[], opts: EncodeOptions = {}): Uint8Array {
  return encodeSparsePacked(packSparse(rows), opts);
}

/** Sparse rows packed: row i is entries [offsets[i], offsets[i + 1]) of `indices` and `values`. */
export interface PackedSparse {
  offsets: Int32Array;
  indices: Uint32Array;
  values: Float32Array;
}

/** Packs sparse rows into three arrays (what `encodeSparsePacked` takes). */
export function packSparse(rows: readonly SparseRow[]): PackedSparse {
  const offsets = new Int32Array(rows.length + 1);
  let total = 0;
  for (let i = 0; i < rows.length; i++) {
    const { indices, values } = rows[i]!;
    if (indices.length !== values.length) {
      throw new RangeError(`encodeSparse: row ${i} has ${indices.length} indices but ${values.length} values`);
    }
    total += indices.length;
    if (total > MAX_INT32) throw new RangeError(`encodeSparse: more than ${MAX_INT32} entries in one batch`);
    offsets[i + 1] = total;
  }
  const allIndices = new Uint32Array(total);
  const allValues = new Float32Array(total);
  for (let i = 0; i < rows.length; i++) {
    allIndices.set(rows[i]!.indices, offsets[i]!);
    allValues.set(rows[i]!.values, offsets[i]!);
  }
  return { offsets, indices: allIndices, values: allValues };
}

/** Sparse embeddings from packed rows. */
export function encodeSparsePacked(p: PackedSparse, opts: EncodeOptions = {}): Uint8Array {
  const n = p.offsets.length - 1;
  const total = n < 0 ? 0 : p.offsets[n]!;
  if (n < 0 || p.indices.length !== total || p.values.length !== total) throw new RangeError('encodeSparsePacked: offsets, indices and values disagree');
  const schema = sparseSchema();
  if (n === 0) return writeStream(schema, [], opts);
  const entryType = sparseEntryType();
  const entries = makeData({
    type: entryType,
    length: total,
    nullCount: 0,
    children: [
      makeData({ type: new Uint32(), length: total, nullCount: 0, data: p.indices }),
      makeData({ type: new Float32(), length: total, nullCount: 0, data: p.values }),
    ],
  });
  const listType = schema.fields[0]!.type as List<Struct>;
  const column = makeData({ type: listType, length: n, nullCount: 0, valueOffsets: p.offsets, child: entries });
  return writeStream(schema, [oneColumnBatch(schema, column)], opts);
}

/**
 * Multivector (per-token) embeddings. Every row must have the same `dim`; with zero rows,
 * `opts.dim` gives the schema's dimension.
 */
export function encodeMultivector(rows: readonly MultivectorRow[], opts: EncodeOptions & { dim?: number } = {}): Uint8Array {
  return encodeMultivectorPacked(packMultivector(rows, opts.dim), opts);
}

/** Multivector rows packed: row i is token vectors [offsets[i], offsets[i + 1]) of `values`. */
export interface PackedMultivector {
  dim: number;
  offsets: Int32Array;
  /** offsets[n] * dim values, token-major. */
  values: Float32Array;
}

/** Packs multivector rows (what `encodeMultivectorPacked` takes); `dim` is used when there are none. */
export function packMultivector(rows: readonly MultivectorRow[], zeroRowsDim?: number): PackedMultivector {
  const dim = rows[0]?.dim ?? zeroRowsDim;
  if (dim === undefined) throw new RangeError('encodeMultivector: dim is required when there are no rows');
  checkDim(dim, 'encodeMultivector');
  const offsets = new Int32Array(rows.length + 1);
  let tokens = 0;
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    if (row.dim !== dim) throw new RangeError(`encodeMultivector: row ${i} has dim ${row.dim}, expected ${dim} like row 0`);
    if (!Number.isInteger(row.tokens) || row.tokens < 0 || row.values.length !== row.tokens * dim) {
      throw new RangeError(`encodeMultivector: row ${i} has ${row.values.length} values for ${row.tokens} tokens of dim ${dim}`);
    }
    tokens += row.tokens;
    if (tokens > MAX_INT32) throw new RangeError(`encodeMultivector: more than ${MAX_INT32} token vectors in one batch`);
    offsets[i + 1] = tokens;
  }
  const values = new Float32Array(tokens * dim);
  for (let i = 0; i < rows.length; i++) values.set(rows[i]!.values, offsets[i]! * dim);
  return { dim, offsets, values };
}

/** Multivector embeddings from packed rows. */
export function encodeMultivectorPacked(p: PackedMultivector, opts: EncodeOptions = {}): Uint8Array {
  const { dim } = p;
  checkDim(dim, 'encodeMultivectorPacked');
  const n = p.offsets.length - 1;
  const tokens = n < 0 ? 0 : p.offsets[n]!;
  if (n < 0 || p.values.length !== tokens * dim) throw new RangeError('encodeMultivectorPacked: offsets and values disagree');
  const schema = multivectorSchema(dim);
  if (n === 0) return writeStream(schema, [], opts);
  const listType = schema.fields[0]!.type as List<FixedSizeList<Float32>>;
  const column = makeData({
    type: listType,
    length: n,
    nullCount: 0,
    valueOffsets: p.offsets,
    child: denseColumn(p.values, tokens, dim),
  });
  return writeStream(schema, [oneColumnBatch(schema, column)], opts);
}

export interface EncodeTextsOptions extends EncodeOptions {
  /** LargeUtf8 (64-bit offsets) instead of Utf8. */
  large?: boolean;
  /** Rows per record batch; default: all rows in one batch. */
  batchSize?: number;
  /** Column name; default `text`. */
  column?: string;
}

/** A request stream: one string column (`text` by default), split into record batches. */
export function encodeTexts(texts: readonly string[], opts: EncodeTextsOptions = {}): Uint8Array {
  const large = opts.large ?? false;
  const type = large ? new LargeUtf8() : new Utf8();
  const schema = new Schema([new Field(opts.column ?? 'text', type, false)]);
  const batchSize = opts.batchSize ?? Math.max(texts.length, 1);
  if (!Number.isInteger(batchSize) || batchSize <= 0) throw new RangeError(`encodeTexts: batchSize must be a positive integer, got ${batchSize}`);
  const batches: RecordBatch[] = [];
  for (let start = 0; start < texts.length; start += batchSize) {
    const chunk = texts.slice(start, start + batchSize);
    let bytes = 0;
    for (const t of chunk) bytes += Buffer.byteLength(t, 'utf8');
    if (!large && bytes > MAX_INT32) throw new RangeError('encodeTexts: more than 2 GiB of text in one Utf8 batch; use large or a smaller batchSize');
    const data = Buffer.allocUnsafe(bytes);
    const offsets = large ? new BigInt64Array(chunk.length + 1) : new Int32Array(chunk.length + 1);
    let at = 0;
    for (let i = 0; i < chunk.length; i++) {
      at += data.write(chunk[i]!, at, 'utf8');
      if (large) (offsets as BigInt64Array)[i + 1] = BigInt(at);
      else (offsets as Int32Array)[i + 1] = at;
    }
    const values = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const column = large
      ? makeData({ type: type as LargeUtf8, length: chunk.length, nullCount: 0, valueOffsets: offsets, data: values })
      : makeData({ type: type as Utf8, length: chunk.length, nullCount: 0, valueOffsets: offsets as Int32Array, data: values });
    batches.push(oneColumnBatch(schema, column));
  }
  return writeStream(schema, batches, opts);
}

// ---------------------------------------------------------------------------------------------
// decoders (tests, bench, clients)

function columnData(ipc: Uint8Array, name: string, check: (t: DataType) => boolean, expected: string, limits?: ReadLimits) {
  const { schema, batches } = readStream(ipc, limits);
  if (!schema) throw new ArrowInputError(`Arrow response is empty: no schema`);
  const index = schema.fields.findIndex((f) => f.name === name);
  if (index < 0) throw new ArrowInputError(`Arrow response has no column "${name}"`);
  const type = schema.fields[index]!.type as DataType;
  if (!check(type)) throw new ArrowInputError(`column "${name}" has type ${String(type)}, expected ${expected}`);
  const chunks: Data[] = [];
  for (const batch of batches) {
    for (const data of batch.getChildAt(index)!.data) {
      if (data.nullCount > 0) throw new ArrowInputError(`column "${name}" has null rows`);
      chunks.push(data);
    }
  }
  return { type, chunks };
}

const isFloat32 = (t: DataType): boolean => DataType.isFloat(t) && t.precision === Precision.SINGLE;
const isFloatVector = (t: DataType): boolean => DataType.isFixedSizeList(t) && isFloat32(t.children[0]!.type);

/** The Float32 values of a FixedSizeList<Float32> chunk, rows [0, data.length), packed. */
function fixedListValues(data: Data, dim: number): Float32Array {
  const child = data.children[0]!;
  const values = child.values as Float32Array;
  const start = child.offset + data.offset * dim;
  return values.subarray(start, start + data.length * dim);
}

/** Packed values of a dense response (`embeddings`, FixedSizeList<Float32>[dim]). */
export function decodeDense(ipc: Uint8Array): DenseBatch {
  const { type, chunks } = columnData(ipc, DENSE_COLUMN, isFloatVector, 'FixedSizeList<Float32>');
  const dim = (type as FixedSizeList).listSize;
  const rows = chunks.reduce((n, d) => n + d.length, 0);
  if (chunks.length === 1) return { dim, rows, values: fixedListValues(chunks[0]!, dim) };
  const values = new Float32Array(rows * dim);
  let at = 0;
  for (const d of chunks) {
    values.set(fixedListValues(d, dim), at);
    at += d.length * dim;
  }
  return { dim, rows, values };
}

const isDenseVector = (t: DataType): boolean => DataType.isFixedSizeList(t) && (DataType.isFloat(t.children[0]!.type) || DataType.isInt(t.children[0]!.type));

/** Packed values of a dense response in any element type (float32, float16 bits, int8, uint8), with the field's metadata. */
export function decodeDenseTyped(ipc: Uint8Array): TypedDenseBatch {
  const { schema } = readStream(ipc);
  const field = schema?.fields.find((f) => f.name === DENSE_COLUMN);
  const { type, chunks } = columnData(ipc, DENSE_COLUMN, isDenseVector, 'FixedSizeList<Float32 | Float16 | Int8 | Uint8>');
  const dim = (type as FixedSizeList).listSize;
  const rows = chunks.reduce((n, d) => n + d.length, 0);
  const element = (type as FixedSizeList).children[0]!.type as DataType;
  const make = (n: number): DenseValues =>
    DataType.isFloat(element) ? (element.precision === Precision.HALF ? new Uint16Array(n) : new Float32Array(n)) : (element as Int8 | Uint8).isSigned ? new Int8Array(n) : new Uint8Array(n);
  const values = make(rows * dim);
  let at = 0;
  for (const d of chunks) {
    const child = d.children[0]!;
    const start = child.offset + d.offset * dim;
    values.set((child.values as DenseValues).subarray(start, start + d.length * dim) as never, at);
    at += d.length * dim;
  }
  return { dim, rows, values, metadata: field?.metadata ?? new Map() };
}

const isSparse = (t: DataType): boolean => {
  if (!DataType.isList(t)) return false;
  const entry = t.children[0]!.type;
  if (!DataType.isStruct(entry)) return false;
  const names = entry.children.map((f) => f.name);
  return names.includes('index') && names.includes('value');
};

/** Rows of a sparse response (`sparse_embeddings`, List<Struct<index, value>>). */
export function decodeSparse(ipc: Uint8Array): SparseRow[] {
  const { type, chunks } = columnData(ipc, SPARSE_COLUMN, isSparse, 'List<Struct<index: UInt32, value: Float32>>');
  const fields = (type as List<Struct>).children[0]!.type.children;
  const iIndex = fields.findIndex((f) => f.name === 'index');
  const iValue = fields.findIndex((f) => f.name === 'value');
  const out: SparseRow[] = [];
  for (const data of chunks) {
    const offsets = data.valueOffsets as Int32Array;
    const entries = data.children[0]!;
    const idx = entries.children[iIndex]!;
    const val = entries.children[iValue]!;
    for (let i = 0; i < data.length; i++) {
      const a = offsets[data.offset + i]! + entries.offset;
      const b = offsets[data.offset + i + 1]! + entries.offset;
      out.push({
        indices: (idx.values as Uint32Array).subarray(a + idx.offset, b + idx.offset),
        values: (val.values as Float32Array).subarray(a + val.offset, b + val.offset),
      });
    }
  }
  return out;
}

const isMultivector = (t: DataType): boolean => DataType.isList(t) && isFloatVector(t.children[0]!.type);

/** Rows of a multivector response (`embeddings`, List<FixedSizeList<Float32>[dim]>). */
export function decodeMultivector(ipc: Uint8Array): MultivectorRow[] {
  const { type, chunks } = columnData(ipc, MULTIVECTOR_COLUMN, isMultivector, 'List<FixedSizeList<Float32>>');
  const dim = ((type as List).children[0]!.type as FixedSizeList).listSize;
  const out: MultivectorRow[] = [];
  for (const data of chunks) {
    const offsets = data.valueOffsets as Int32Array;
    const all = fixedListValues(data.children[0]!, dim);
    for (let i = 0; i < data.length; i++) {
      const a = offsets[data.offset + i]!;
      const b = offsets[data.offset + i + 1]!;
      out.push({ tokens: b - a, dim, values: all.subarray(a * dim, b * dim) });
    }
  }
  return out;
}
