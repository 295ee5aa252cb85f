/**
 * Arrow request decoding: the texts of an IPC stream, one per row, in row order across every
 * record batch.
 *
 * Column rule: the column named `text` if there is one, else the first string column. String
 * columns are Utf8, LargeUtf8, Utf8View, and dictionary-encoded versions of those (what pandas
 * categoricals become). A `text` column of another type is an error, not a reason to pick a
 * different column. Every row must be a valid, non-null UTF-8 string; the first row that is not
 * fails the whole request with an ArrowInputError naming it.
 */
import { DataType, Vector, type Data, type Field, type Schema } from 'apache-arrow';
import { isUtf8 } from 'node:buffer';
import { ArrowInputError, readStream, type ReadLimits } from './ipc-stream.js';

export { ArrowInputError, type ReadLimits } from './ipc-stream.js';

/** The preferred request column. */
export const TEXT_COLUMN = 'text';

function isStringType(type: DataType): boolean {
  if (DataType.isDictionary(type)) return isStringType(type.dictionary);
  return DataType.isUtf8(type) || DataType.isLargeUtf8(type) || DataType.isUtf8View(type);
}

function describeColumns(schema: Schema): string {
  return schema.fields.map((f) => `${JSON.stringify(f.name)} (${String(f.type)})`).join(', ');
}

/** The index of the text column, or an ArrowInputError naming what is there instead. */
export function chooseTextColumn(schema: Schema): number {
  const fields: Field[] = schema.fields;
  const named = fields.findIndex((f) => f.name === TEXT_COLUMN);
  if (named >= 0) {
    const type = fields[named]!.type;
    if (!isStringType(type)) {
      throw new ArrowInputError(
        `column "${TEXT_COLUMN}" has type ${String(type)}; it must be a string column (Utf8 or LargeUtf8)`,
      );
    }
    return named;
  }
  const first = fields.findIndex((f) => isStringType(f.type));
  if (first < 0) {
    const found = fields.length === 0 ? 'no columns' : `columns ${describeColumns(schema)}`;
    throw new ArrowInputError(
      `Arrow input has no string column: expected a Utf8 or LargeUtf8 column named "${TEXT_COLUMN}" (or any string column), found ${found}`,
    );
  }
  return first;
}

/** Where a value came from, for error messages: rows of the column, or entries of its dictionary. */
interface Place {
  column: string;
  /** Row (or dictionary entry) number of the chunk's first value. */
  first: number;
  /** Null values allowed (dictionary entries that no row may reference). */
  nullable: boolean;
  what: 'row' | 'dictionary entry';
}

function corrupt(place: Place, detail: string): ArrowInputError {
  const row = place.what === 'row' ? place.first : undefined;
  return new ArrowInputError(`column "${place.column}" is corrupt: ${detail} (${place.what} ${place.first} onward)`, row);
}

function nullValue(place: Place, i: number): ArrowInputError {
  const n = place.first + i;
  return place.what === 'row'
    ? new ArrowInputError(`row ${n}: column "${place.column}" is null; every row needs a text`, n)
    : new ArrowInputError(`column "${place.column}": dictionary entry ${n} is null`);
}

/**
 * The values of one chunk of a string column. Every loop is bounded by a buffer that was checked
 * to be large enough first, so a corrupt length in a batch header cannot make it run (and
 * allocate) past the bytes actually received.
 */
function decodeStrings(data: Data, place: Place): Array<string | null> {
  const type = data.type as DataType;
  const n = data.length;
  const out: (string | null)[] = [];
  if (n === 0) return out;
  const hasNulls = data.nullCount > 0;
  if (hasNulls && (!data.nullBitmap || data.nullBitmap.length * 8 < data.offset + n)) {
    throw corrupt(place, `validity bitmap of ${data.nullBitmap?.length ?? 0} bytes is too short for ${n} values`);
  }
  const valueAt = (i: number, read: () => string): void => {
    if (hasNulls && !data.getValid(i)) {
      if (!place.nullable) throw nullValue(place, i);
      out.push(null);
    } else {
      out.push(read());
    }
  };

  if (DataType.isUtf8(type) || DataType.isLargeUtf8(type)) {
    const offsets = data.valueOffsets as Int32Array | BigInt64Array;
    const bytes = data.values as Uint8Array;
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (offsets.length < data.offset + n + 1) throw corrupt(place, `offsets buffer too short for ${n} values`);
    for (let i = 0; i < n; i++) {
      const start = Number(offsets[data.offset + i]);
      const end = Number(offsets[data.offset + i + 1]);
      valueAt(i, () => {
        if (!(start >= 0 && end >= start && end <= buf.byteLength)) {
          throw corrupt(place, `string offsets ${start}..${end} lie outside its ${buf.byteLength}-byte data`);
        }
        const slice = buf.subarray(start, end);
        if (!isUtf8(slice)) {
          const at = place.first + i;
          throw place.what === 'row'
            ? new ArrowInputError(`row ${at}: column "${place.column}" is not valid UTF-8`, at)
            : new ArrowInputError(`column "${place.column}": dictionary entry ${at} is not valid UTF-8`);
        }
        return slice.toString('utf8');
      });
    }
    return out;
  }

  if (DataType.isUtf8View(type)) {
    const views = data.values as Uint8Array;
    if (views.byteLength < (data.offset + n) * 16) throw corrupt(place, `views buffer too short for ${n} values`);
    const vector = new Vector([data]);
    for (let i = 0; i < n; i++) valueAt(i, () => vector.get(i) as string);
    return out;
  }

  if (DataType.isDictionary(type)) {
    const indices = data.values as ArrayLike<number | bigint>;
    if (indices.length < data.offset + n) throw corrupt(place, `dictionary indices buffer too short for ${n} values`);
    const dictionary: Array<string | null> = [];
    for (const chunk of data.dictionary?.data ?? []) {
      const entries = decodeStrings(chunk, { column: place.column, first: dictionary.length, nullable: true, what: 'dictionary entry' });
      for (const e of entries) dictionary.push(e);
    }
    for (let i = 0; i < n; i++) {
      valueAt(i, () => {
        const k = Number(indices[data.offset + i]);
        if (!(k >= 0 && k < dictionary.length)) throw corrupt(place, `dictionary index ${k} at row ${place.first + i} is outside its ${dictionary.length} entries`);
        const value = dictionary[k];
        if (value === null || value === undefined) throw nullValue(place, i); // a row pointing at a null entry
        return value;
      });
    }
    return out;
  }

  throw corrupt(place, `type ${String(type)} is not a string type`);
}

/**
 * The texts of an Arrow IPC stream (uncompressed or LZ4_FRAME-compressed bodies), row i of the
 * result being row i of the input. An empty input, or a stream with no rows, gives [].
 * Throws ArrowInputError (code VALIDATION) for anything else that is not a text per row.
 */
export function readTextColumn(ipc: Uint8Array, limits: ReadLimits = {}): string[] {
  const { schema, batches, layout } = readStream(ipc, limits);
  if (!schema) return [];
  const index = chooseTextColumn(schema);
  const column = schema.fields[index]!.name;
  const out: string[] = [];
  let row = 0;
  for (const batch of batches) {
    const vector = batch.getChildAt(index);
    if (!vector) throw new ArrowInputError(`record batch at row ${row} is missing column "${column}"`, row);
    for (const data of vector.data) {
      let values: Array<string | null>;
      try {
        values = decodeStrings(data, { column, first: row, nullable: false, what: 'row' });
      } catch (err) {
        if (err instanceof ArrowInputError) throw err;
        // apache-arrow's getters throw plain errors on inconsistent buffers (e.g. Utf8View)
        const reason = err instanceof Error ? err.message : String(err);
        throw new ArrowInputError(`column "${column}" could not be decoded at row ${row} onward (${reason})`, row);
      }
      for (const v of values) out.push(v!);
      row += data.length;
    }
  }
  if (out.length !== layout.rows) {
    // The framing walk and the decoder disagree: never answer with fewer rows than were sent.
    throw new ArrowInputError(`Arrow IPC stream declares ${layout.rows} rows but ${out.length} were decoded`);
  }
  return out;
}
