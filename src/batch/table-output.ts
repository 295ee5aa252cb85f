/**
 * A batch job's table output: each chunk's results as one Arrow IPC stream part (`chunkPart`),
 * and the parts joined into the job's output file in the input's format (`writeTableOutput`).
 *
 * Schema (row i answers input row i; a failed row has a null embedding, its error is in the
 * job's JSONL error file):
 * - `id` Utf8 (the input row's id), then one of
 * - dense `embeddings`: FixedSizeList<Float32 | Float16 | Int8 | Uint8>[n] by embedding type
 *   (float32, float16, int8, uint8; binary and ubinary: the packed bits, n = ceil(dims / 8) bytes
 *   as Int8 or Uint8); the schema's metadata says `embedding_type` and `dimensions`;
 * - sparse `sparse_embeddings`: List<Struct<index: UInt32, value: Float32>>;
 * - multivector `embeddings`: List<FixedSizeList<Float32>[dim]> (one vector per token); the
 *   schema's metadata says `dimensions`.
 *
 * Parts and the Arrow outputs are uncompressed: embeddings barely compress, and every Arrow
 * reader (apache-arrow's JavaScript reader included, which has no codec of its own) reads them.
 */
import { open, readFile } from 'node:fs/promises';
import {
  Field,
  FixedSizeList,
  Float16,
  Float32,
  Int8,
  List,
  MessageHeader,
  RecordBatch,
  Schema,
  Struct,
  Uint32,
  Uint8,
  Utf8,
  makeData,
  type Data,
  type DataType,
} from 'apache-arrow';
import { readStream, scanStream, writeStream } from '../arrow/ipc-stream.js';
import type { OutputType, TypedRow } from '../tei/embedding-types.js';
import { typedLength } from '../tei/embedding-types.js';
import type { SparseVector, TokenEmbeddings } from '../tei/types.js';
import { END_OF_STREAM, fileFooter, fileHead, streamMessages, type IpcMessage, type WrittenBlock } from './ipc-file.js';
import { writeParquet } from './parquet.js';
import type { TableFormat } from './table-format.js';

export type OutputRows =
  | { kind: 'dense'; type: OutputType; dims: number; rows: Array<TypedRow | null> } // dims: the embedding's dimension (binary: dims/8 bytes per row)
  | { kind: 'sparse'; rows: Array<SparseVector | null> }
  | { kind: 'multivector'; dim: number; rows: Array<TokenEmbeddings | null> };

export const ID_FIELD = 'id';
export const DENSE_FIELD = 'embeddings';
export const SPARSE_FIELD = 'sparse_embeddings';
export const MULTIVECTOR_FIELD = 'embeddings';
/** The name of a list's child field, as pyarrow, arrow-rs and polars write it. */
const ITEM = 'item';
const MAX_INT32 = 2 ** 31 - 1;

type DenseArray = Float32Array | Uint16Array | Int8Array | Uint8Array;

/** The Arrow element type and typed array of each dense output type. */
function denseElement(type: OutputType): { element: Float32 | Float16 | Int8 | Uint8; array: new (n: number) => DenseArray } {
  switch (type) {
    case 'float32':
      return { element: new Float32(), array: Float32Array };
    case 'float16':
      return { element: new Float16(), array: Uint16Array };
    case 'int8':
    case 'binary':
      return { element: new Int8(), array: Int8Array };
    case 'uint8':
    case 'ubinary':
      return { element: new Uint8(), array: Uint8Array };
  }
}

/** The schema of a job's output for `out`'s kind (and type, dimensions). */
export function outputSchema(out: OutputRows): Schema {
  const id = new Field(ID_FIELD, new Utf8(), false);
  switch (out.kind) {
    case 'dense': {
      const { element } = denseElement(out.type);
      const list = new FixedSizeList(typedLength(out.type, out.dims), new Field(ITEM, element, false));
      const metadata = new Map([
        ['embedding_type', out.type],
        ['dimensions', String(out.dims)],
      ]);
      return new Schema([id, new Field(DENSE_FIELD, list, true)], metadata);
    }
    case 'sparse': {
      const entry = new Struct([new Field('index', new Uint32(), false), new Field('value', new Float32(), false)]);
      return new Schema([id, new Field(SPARSE_FIELD, new List(new Field(ITEM, entry, false)), true)]);
    }
    case 'multivector': {
      const vector = new FixedSizeList(out.dim, new Field(ITEM, new Float32(), false));
      return new Schema([id, new Field(MULTIVECTOR_FIELD, new List(new Field(ITEM, vector, false)), true)], new Map([['dimensions', String(out.dim)]]));
    }
  }
}

/** The validity bitmap of `rows` (bit i set: row i is not null) and the null count. */
function validity(rows: ReadonlyArray<unknown>): { nullBitmap: Uint8Array; nullCount: number } {
  const nullBitmap = new Uint8Array(Math.ceil(rows.length / 8));
  let nullCount = 0;
  for (let i = 0; i < rows.length; i++) {
    if (rows[i] === null) nullCount++;
    else nullBitmap[i >> 3]! |= 1 << (i & 7);
  }
  return { nullBitmap, nullCount };
}

function idColumn(ids: readonly string[]): Data<Utf8> {
  const offsets = new Int32Array(ids.length + 1);
  let total = 0;
  for (let i = 0; i < ids.length; i++) {
    total += Buffer.byteLength(ids[i]!, 'utf8');
    if (total > MAX_INT32) throw new RangeError('chunkPart: more than 2 GiB of ids in one chunk');
    offsets[i + 1] = total;
  }
  const data = Buffer.allocUnsafe(total);
  for (let i = 0; i < ids.length; i++) data.write(ids[i]!, offsets[i]!, 'utf8');
  return makeData({ type: new Utf8(), length: ids.length, nullCount: 0, valueOffsets: offsets, data: new Uint8Array(data.buffer, data.byteOffset, total) });
}

function denseColumn(out: Extract<OutputRows, { kind: 'dense' }>, list: FixedSizeList): Data {
  const { element, array } = denseElement(out.type);
  const width = list.listSize;
  const values = new array(out.rows.length * width);
  out.rows.forEach((row, i) => {
    if (row === null) return;
    if (!(row instanceof array) || row.length !== width) {
      const got = `${row.constructor.name}(${row.length})`;
      throw new RangeError(`chunkPart: row ${i} is ${got}; ${out.type} of ${out.dims} dimensions needs ${array.name}(${width})`);
    }
    values.set(row as never, i * width);
  });
  const child = makeData({ type: element, length: values.length, nullCount: 0, data: values } as Parameters<typeof makeData>[0]);
  return makeData({ type: list, length: out.rows.length, ...validity(out.rows), child } as Parameters<typeof makeData>[0]) as Data;
}

function sparseColumn(out: Extract<OutputRows, { kind: 'sparse' }>, list: List<Struct>): Data {
  const offsets = new Int32Array(out.rows.length + 1);
  let total = 0;
  out.rows.forEach((row, i) => {
    if (row !== null) {
      if (row.indices.length !== row.values.length) throw new RangeError(`chunkPart: sparse row ${i} has ${row.indices.length} indices but ${row.values.length} values`);
      total += row.indices.length;
      if (total > MAX_INT32) throw new RangeError('chunkPart: more than 2^31 sparse entries in one chunk');
    }
    offsets[i + 1] = total;
  });
  const indices = new Uint32Array(total);
  const values = new Float32Array(total);
  out.rows.forEach((row, i) => {
    if (row === null) return;
    indices.set(row.indices, offsets[i]!);
    values.set(row.values, offsets[i]!);
  });
  const entries = makeData({
    type: list.children[0]!.type,
    length: total,
    nullCount: 0,
    children: [makeData({ type: new Uint32(), length: total, nullCount: 0, data: indices }), makeData({ type: new Float32(), length: total, nullCount: 0, data: values })],
  });
  return makeData({ type: list, length: out.rows.length, ...validity(out.rows), valueOffsets: offsets, child: entries });
}

function multivectorColumn(out: Extract<OutputRows, { kind: 'multivector' }>, list: List<FixedSizeList<Float32>>): Data {
  const { dim } = out;
  const offsets = new Int32Array(out.rows.length + 1);
  let tokens = 0;
  out.rows.forEach((row, i) => {
    if (row !== null) {
      if (row.dim !== dim || row.values.length !== row.tokens * dim) {
        throw new RangeError(`chunkPart: multivector row ${i} has ${row.values.length} values for ${row.tokens} tokens of dim ${row.dim}; the output's dim is ${dim}`);
      }
      tokens += row.tokens;
      if (tokens * dim > MAX_INT32) throw new RangeError('chunkPart: more than 2^31 multivector values in one chunk');
    }
    offsets[i + 1] = tokens;
  });
  const values = new Float32Array(tokens * dim);
  out.rows.forEach((row, i) => {
    if (row !== null) values.set(row.values, offsets[i]! * dim);
  });
  const vectorType = list.children[0]!.type;
  const vectors = makeData({
    type: vectorType,
    length: tokens,
    nullCount: 0,
    child: makeData({ type: new Float32(), length: values.length, nullCount: 0, data: values }),
  });
  return makeData({ type: list, length: out.rows.length, ...validity(out.rows), valueOffsets: offsets, child: vectors });
}

/**
 * One chunk's results as one Arrow IPC stream (schema + one record batch, uncompressed): `id`
 * utf8, then the embeddings column; null rows = failed rows. Zero rows give the schema alone.
 * Throws RangeError when the ids and rows disagree, or a row does not fit the output's type.
 */
export function chunkPart(ids: readonly string[], out: OutputRows): Uint8Array {
  if (ids.length !== out.rows.length) throw new RangeError(`chunkPart: ${ids.length} ids for ${out.rows.length} rows`);
  if (out.kind === 'dense' && !(Number.isInteger(out.dims) && out.dims > 0)) throw new RangeError(`chunkPart: dims must be a positive integer, got ${out.dims}`);
  if (out.kind === 'multivector' && !(Number.isInteger(out.dim) && out.dim > 0)) throw new RangeError(`chunkPart: dim must be a positive integer, got ${out.dim}`);
  const schema = outputSchema(out);
  if (ids.length === 0) return writeStream(schema, [], { compress: false });
  const type = schema.fields[1]!.type as DataType;
  const column =
    out.kind === 'dense'
      ? denseColumn(out, type as FixedSizeList)
      : out.kind === 'sparse'
        ? sparseColumn(out, type as List<Struct>)
        : multivectorColumn(out, type as List<FixedSizeList<Float32>>);
  const struct = makeData({ type: new Struct(schema.fields), length: ids.length, nullCount: 0, children: [idColumn(ids), column] });
  return writeStream(schema, [new RecordBatch(schema, struct)], { compress: false });
}

/** A part read back: its bytes, its schema message's bytes and its record batch messages. */
interface Part {
  bytes: Uint8Array;
  schemaMessage: Uint8Array;
  batches: IpcMessage[];
}

async function readPart(path: string, index: number, first: Part | undefined): Promise<Part> {
  const bytes = await readFile(path);
  const what = `output part ${index} (${path})`;
  try {
    scanStream(bytes);
  } catch (err) {
    throw new Error(`${what} is not a whole Arrow IPC stream: ${err instanceof Error ? err.message : String(err)}`);
  }
  const messages = streamMessages(bytes, what);
  const schema = messages[0];
  if (!schema || schema.type !== MessageHeader.Schema) throw new Error(`${what} has no schema`);
  const schemaMessage = bytes.subarray(schema.start, schema.end);
  if (first && !Buffer.from(schemaMessage).equals(Buffer.from(first.schemaMessage))) {
    throw new Error(`${what} has another schema than part 0; every part of one output has the same kind, type and dimensions`);
  }
  return { bytes, schemaMessage, batches: messages.filter((m) => m.type === MessageHeader.RecordBatch) };
}

/** Writes the parts' messages as an Arrow IPC stream (`file`: as an Arrow IPC file) at `dest`, one part in memory at a time. */
async function writeArrow(parts: readonly string[], dest: string, file: boolean): Promise<number> {
  const handle = await open(dest, 'w');
  let position = 0;
  const write = async (bytes: Uint8Array): Promise<void> => {
    let done = 0;
    for (let tries = 0; done < bytes.byteLength && tries <= bytes.byteLength; tries++) {
      const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, position + done);
      done += bytesWritten;
    }
    if (done !== bytes.byteLength) throw new Error(`short write to ${dest}`);
    position += bytes.byteLength;
  };
  try {
    let first: Part | undefined;
    const blocks: WrittenBlock[] = [];
    for (let i = 0; i < parts.length; i++) {
      const part = await readPart(parts[i]!, i, first);
      if (!first) {
        first = part;
        if (file) await write(fileHead());
        await write(part.schemaMessage);
      }
      for (const m of part.batches) {
        blocks.push({ offset: position, metaDataLength: m.bodyStart - m.start, bodyLength: m.end - m.bodyStart });
        await write(part.bytes.subarray(m.start, m.end));
      }
    }
    await write(END_OF_STREAM);
    if (file) {
      const schema = readStream(Buffer.concat([first!.schemaMessage, END_OF_STREAM])).schema!;
      await write(fileFooter(schema, blocks));
    }
  } finally {
    await handle.close();
  }
  return position;
}

/**
 * The job's output file: the chunk parts (paths, in row order; each written by chunkPart with the
 * same schema) as one file of `format` at `dest` (written fully; the caller renames it into
 * place). Returns the bytes written.
 *
 * Arrow IPC stream and file: the parts' record batches are copied as they are, one part in memory
 * at a time. Parquet: the parts are read one at a time into parquet-wasm's writer, which holds
 * about one row group (parquet.ts: ROW_GROUP_BYTES, 32 MiB of rows as Arrow, about three times that while it is encoded) plus the parts queued for it;
 * its WebAssembly memory keeps its high-water mark for the life of the process.
 * Throws when there is no part (a job of no rows passes one chunkPart of zero rows), or a part is
 * not a whole stream, or its schema differs from part 0's; `dest` then holds a partial file that
 * the caller deletes.
 */
export async function writeTableOutput(parts: readonly string[], format: TableFormat, dest: string): Promise<number> {
  if (parts.length === 0) throw new Error('writeTableOutput: no parts (a job of no rows passes one chunkPart of zero rows)');
  switch (format) {
    case 'arrow-stream':
      return writeArrow(parts, dest, false);
    case 'arrow-file':
      return writeArrow(parts, dest, true);
    case 'parquet': {
      async function* streams(): AsyncGenerator<Uint8Array> {
        let first: Part | undefined;
        for (let i = 0; i < parts.length; i++) {
          const part = await readPart(parts[i]!, i, first);
          first ??= part;
          yield part.bytes;
        }
      }
      return writeParquet(streams(), dest);
    }
    default:
      throw new Error(`writeTableOutput: unknown format ${JSON.stringify(format)}`);
  }
}
