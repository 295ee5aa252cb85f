/**
 * A batch job's table input: the text and id of every row of an Arrow IPC stream, an Arrow IPC
 * file or a Parquet file.
 *
 * Every format ends up as an Arrow IPC stream read by src/arrow/ipc-stream.ts's checked reader
 * (framing, row and decoded-size limits before decoding, LZ4_FRAME bodies): an IPC file through
 * its footer (ipc-file.ts), Parquet through parquet-wasm (parquet.ts), of which only the text and
 * id columns and at most `maxRows + 1` rows are decoded, in slices (a file whose embedded Arrow
 * schema parquet-wasm cannot read is read from its Parquet types: parquet-footer.ts).
 *
 * Columns: the text column is `textColumn` when given, else `text`, else the only string column
 * (Utf8, LargeUtf8, Utf8View, or a dictionary of those); the id column is `idColumn` when given,
 * else `id` when there is one, else there is none and the ids are the row numbers. An id of any
 * scalar type becomes its string (numbers and bigints in decimal, decimals with their scale,
 * booleans as true/false, dates as YYYY-MM-DD, timestamps in ISO 8601 UTC to the millisecond,
 * binary as hex); a null id is an error, a null text is kept (the runner reports it as that
 * row's error).
 */
import { DataType, DateUnit, Vector, type Data, type Field, type Schema } from 'apache-arrow';
import { isUtf8 } from 'node:buffer';
import { TeiplexError } from '../common/errors.js';
import { readStream } from '../arrow/ipc-stream.js';
import { fileToStream } from './ipc-file.js';
import { parquetSchema, parquetSlices, parquetSource } from './parquet.js';
import type { TableFormat } from './table-format.js';

export interface TableRows {
  format: TableFormat;
  length: number;
  texts: Array<string | null>;
  ids: string[];
  textColumn: string;
  idColumn: string | null;
}

export interface ReadTableOptions {
  format: TableFormat;
  textColumn?: string;
  idColumn?: string;
  maxRows: number;
  /** Most bytes the input may decode to (Arrow: every column's bodies; Parquet: the text and id columns). */
  maxBytes: number;
  /** How errors name the two limits (e.g. a config key); default: a description. */
  maxRowsName?: string;
  maxBytesName?: string;
}

export const TEXT_COLUMN = 'text';
export const ID_COLUMN = 'id';

const FORMAT_NAME: Record<TableFormat, string> = { 'arrow-stream': 'Arrow IPC stream', 'arrow-file': 'Arrow IPC file', parquet: 'Parquet file' };

function invalid(message: string, param?: string): TeiplexError {
  return new TeiplexError('VALIDATION', message, param ? { param } : {});
}

function isStringType(type: DataType): boolean {
  if (DataType.isDictionary(type)) return isStringType(type.dictionary);
  return DataType.isUtf8(type) || DataType.isLargeUtf8(type) || DataType.isUtf8View(type);
}

/** Nested types (lists, structs, maps, unions) are not ids. */
function isScalarType(type: DataType): boolean {
  if (DataType.isDictionary(type)) return isScalarType(type.dictionary);
  return !(
    DataType.isList(type) ||
    DataType.isFixedSizeList(type) ||
    DataType.isStruct(type) ||
    DataType.isMap(type) ||
    DataType.isUnion(type) ||
    DataType.isLargeList(type) ||
    DataType.isNull(type)
  );
}

function describeColumns(fields: readonly Field[]): string {
  return fields.length === 0 ? 'none' : fields.map((f) => `${JSON.stringify(f.name)} (${String(f.type)})`).join(', ');
}

/** The text and id columns of `schema` by the rules in the file comment, or an error naming the columns there are. */
export function chooseColumns(schema: Schema, o: { textColumn?: string; idColumn?: string }, format: TableFormat): { text: string; id: string | null } {
  const fields = schema.fields;
  const where = `the ${FORMAT_NAME[format]}'s columns are ${describeColumns(fields)}`;
  const byName = (name: string): Field | undefined => fields.find((f) => f.name === name);

  let text: Field | undefined;
  if (o.textColumn !== undefined) {
    text = byName(o.textColumn);
    if (!text) throw invalid(`no column ${JSON.stringify(o.textColumn)} (text_column); ${where}`, 'text_column');
  } else {
    text = byName(TEXT_COLUMN);
    if (!text) {
      const strings = fields.filter((f) => isStringType(f.type));
      if (strings.length !== 1) {
        throw invalid(
          strings.length === 0
            ? `no text column: no column "${TEXT_COLUMN}" and no string column; ${where}`
            : `no column "${TEXT_COLUMN}" and ${strings.length} string columns; name the text column with text_column; ${where}`,
          'text_column',
        );
      }
      text = strings[0]!;
    }
  }
  if (!isStringType(text.type)) {
    throw invalid(`text column ${JSON.stringify(text.name)} has type ${String(text.type)}; it must be a string column (Utf8 or LargeUtf8)`, 'text_column');
  }

  let id: Field | undefined;
  if (o.idColumn !== undefined) {
    id = byName(o.idColumn);
    if (!id) throw invalid(`no column ${JSON.stringify(o.idColumn)} (id_column); ${where}`, 'id_column');
  } else {
    id = byName(ID_COLUMN);
  }
  if (id && !isScalarType(id.type)) {
    throw invalid(`id column ${JSON.stringify(id.name)} has type ${String(id.type)}; an id must be a scalar (a string or a number)`, 'id_column');
  }
  return { text: text.name, id: id?.name ?? null };
}

/**
 * The strings of one chunk of a string column, nulls kept. Utf8 and LargeUtf8 are read through
 * their offsets, each checked against the data buffer, and must be valid UTF-8; views and
 * dictionaries through apache-arrow's getters.
 */
function decodeTexts(data: Data, column: string, first: number): Array<string | null> {
  const type = data.type as DataType;
  const n = data.length;
  const out: Array<string | null> = new Array(n);
  const hasNulls = data.nullCount > 0;
  if (hasNulls && (!data.nullBitmap || data.nullBitmap.length * 8 < data.offset + n)) {
    throw invalid(`column "${column}" is corrupt: its validity bitmap is too short (row ${first} onward)`);
  }
  const valid = (i: number): boolean => !hasNulls || data.getValid(i);
  if (DataType.isUtf8(type) || DataType.isLargeUtf8(type)) {
    const offsets = data.valueOffsets as Int32Array | BigInt64Array;
    const bytes = data.values as Uint8Array;
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (offsets.length < data.offset + n + 1) throw invalid(`column "${column}" is corrupt: its offsets are too short (row ${first} onward)`);
    for (let i = 0; i < n; i++) {
      if (!valid(i)) {
        out[i] = null;
        continue;
      }
      const start = Number(offsets[data.offset + i]);
      const end = Number(offsets[data.offset + i + 1]);
      if (!(start >= 0 && end >= start && end <= buf.byteLength)) throw invalid(`column "${column}" is corrupt at row ${first + i}: offsets ${start}..${end} lie outside its data`);
      const slice = buf.subarray(start, end);
      if (!isUtf8(slice)) throw new TeiplexError('VALIDATION', `row ${first + i}: column "${column}" is not valid UTF-8`, { index: first + i });
      out[i] = slice.toString('utf8');
    }
    return out;
  }
  const vector = new Vector([data]);
  for (let i = 0; i < n; i++) out[i] = valid(i) ? (vector.get(i) as string | null) : null;
  return out;
}

/** A decimal's unscaled integer digits with the point put back `scale` places from the right. */
function decimalString(unscaled: string, scale: number): string {
  if (scale <= 0) return unscaled + '0'.repeat(-scale);
  const negative = unscaled.startsWith('-');
  const digits = (negative ? unscaled.slice(1) : unscaled).padStart(scale + 1, '0');
  return `${negative ? '-' : ''}${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
}

/** How an id value of `type` becomes its string (see the file comment); null stays null. */
function idFormatter(type: DataType): (v: unknown) => string | null {
  if (DataType.isDictionary(type)) return idFormatter(type.dictionary);
  if (DataType.isDate(type)) {
    const day = type.unit === DateUnit.DAY;
    return (v) => (v === null || v === undefined ? null : day ? new Date(Number(v)).toISOString().slice(0, 10) : new Date(Number(v)).toISOString());
  }
  if (DataType.isTimestamp(type)) return (v) => (v === null || v === undefined ? null : new Date(Number(v)).toISOString());
  if (DataType.isDecimal(type)) return (v) => (v === null || v === undefined ? null : decimalString(String(v), type.scale));
  return (v) => {
    if (v === null || v === undefined) return null;
    if (typeof v === 'string') return v;
    if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex');
    return String(v);
  };
}

function decodeIds(data: Data, column: string, first: number): string[] {
  const type = data.type as DataType;
  let values: unknown[];
  if (isStringType(type) && !DataType.isDictionary(type)) {
    values = decodeTexts(data, column, first);
  } else {
    const vector = new Vector([data]);
    values = new Array(data.length);
    for (let i = 0; i < data.length; i++) values[i] = data.nullCount > 0 && !data.getValid(i) ? null : vector.get(i);
  }
  const format = idFormatter(type);
  const out: string[] = new Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const s = format(values[i]);
    if (s === null) throw new TeiplexError('VALIDATION', `row ${first + i}: the id column "${column}" is null; every row needs an id`, { index: first + i, param: 'id_column' });
    out[i] = s;
  }
  return out;
}

/**
 * The rows of an Arrow IPC (stream or file) or Parquet file: the text column (`textColumn`, else
 * 'text', else the only utf8/large-utf8 column) and the id column (`idColumn`, else 'id' when
 * present, else none: ids are the row numbers '0', '1', ...; any scalar id value becomes its
 * string). Null texts stay null (the runner reports them as row errors).
 * Throws TeiplexError('VALIDATION', message) with a clear message for: an unreadable file (naming
 * the format), no such column (naming the columns there are), a text column that is not strings,
 * more than maxRows rows, more than maxBytes decoded.
 */
export function readTable(bytes: Uint8Array, o: ReadTableOptions): TableRows {
  const name = FORMAT_NAME[o.format];
  const rowsName = o.maxRowsName ?? 'the limit on rows per batch job';
  const bytesName = o.maxBytesName ?? 'the limit on the decoded size of a batch input file';
  let streams: Iterable<Uint8Array>;
  let columns: { text: string; id: string | null } | undefined;
  switch (o.format) {
    case 'arrow-stream':
      streams = [bytes];
      break;
    case 'arrow-file':
      streams = [fileToStream(bytes)];
      break;
    case 'parquet': {
      const source = parquetSource(bytes);
      columns = chooseColumns(parquetSchema(source), o, o.format);
      const wanted = columns.id && columns.id !== columns.text ? [columns.text, columns.id] : [columns.text];
      streams = parquetSlices(source, { columns: wanted, limit: o.maxRows + 1, maxBytes: o.maxBytes });
      break;
    }
    default:
      throw invalid(`unknown table format ${JSON.stringify(o.format)}`);
  }

  const texts: Array<string | null> = [];
  const ids: string[] = [];
  let row = 0;
  let decodedBytes = 0;
  let empty = true;
  for (const ipc of streams) {
    let decoded: ReturnType<typeof readStream>;
    try {
      decoded = readStream(ipc, { maxRows: o.maxRows - row, maxDecompressedBytes: o.maxBytes - decodedBytes, maxRowsName: rowsName, maxDecompressedName: bytesName });
    } catch (err) {
      if (!(err instanceof TeiplexError)) throw err;
      // Name the format the client sent (a file or Parquet input reaches readStream as a stream),
      // and the limits as the whole input's.
      let message = err.message
        .replace(/more than \d+ rows/, `more than ${o.maxRows} rows`)
        .replace(/more than \d+ bytes/, `more than ${o.maxBytes} bytes`)
        .replace(/; send smaller batches$/, '');
      if (o.format !== 'arrow-stream') message = `${name}: ${message.replace(/^Arrow IPC stream /, 'its Arrow data ')}`;
      throw new TeiplexError(err.code, message, { index: err.index === undefined ? undefined : err.index + row });
    }
    const { schema, batches, layout } = decoded;
    decodedBytes += layout.decodedBytes;
    if (!schema) continue;
    empty = false;
    const cols = (columns ??= chooseColumns(schema, o, o.format));
    const textIndex = schema.fields.findIndex((f) => f.name === cols.text);
    const idIndex = cols.id === null ? -1 : schema.fields.findIndex((f) => f.name === cols.id);
    for (const batch of batches) {
      const textVector = batch.getChildAt(textIndex);
      const idVector = idIndex >= 0 ? batch.getChildAt(idIndex) : null;
      if (!textVector || (idIndex >= 0 && !idVector)) throw invalid(`${name}: the record batch at row ${row} lacks a column its schema names`);
      try {
        let at = row;
        for (const data of textVector.data) {
          for (const t of decodeTexts(data, cols.text, at)) texts.push(t);
          at += data.length;
        }
        if (idVector) {
          at = row;
          for (const data of idVector.data) {
            for (const id of decodeIds(data, cols.id!, at)) ids.push(id);
            at += data.length;
          }
        }
      } catch (err) {
        if (err instanceof TeiplexError) throw err;
        // apache-arrow's getters throw plain errors on inconsistent buffers
        throw invalid(`${name}: rows ${row} onward could not be decoded (${err instanceof Error ? err.message : String(err)})`);
      }
      row += batch.numRows;
    }
  }
  if (empty && o.format !== 'parquet') throw invalid(`${name} is empty: it has no schema`);
  columns ??= { text: TEXT_COLUMN, id: null }; // (unreachable: a Parquet file's columns are chosen first)
  if (texts.length !== row || (columns.id !== null && ids.length !== row)) throw invalid(`${name}: declares ${row} rows but ${texts.length} were decoded`);
  if (row > o.maxRows) throw invalid(`${name} has more than ${o.maxRows} rows (${rowsName})`);
  if (columns.id === null) for (let i = 0; i < row; i++) ids.push(String(i));
  return { format: o.format, length: row, texts, ids, textColumn: columns.text, idColumn: columns.id };
}
