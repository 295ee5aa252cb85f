/**
 * src/batch's table formats: sniffing a file's format, reading the rows of Arrow IPC stream,
 * Arrow IPC file and Parquet inputs (written by polars, through nodejs-polars: an independent
 * writer), the errors every bad input gets, and the output (chunk parts joined into each format)
 * read back by polars with every value, id and null compared exactly.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { after, describe } from 'node:test';
import pl from 'nodejs-polars';
import * as parquetWasm from 'parquet-wasm';
import { Field, Schema, Struct, Table, Utf8, makeData, RecordBatch, RecordBatchFileWriter, tableFromArrays, tableToIPC, vectorFromArray } from 'apache-arrow';
import { TeiplexError } from '../../src/common/errors.js';
import { readStream, scanStream, writeStream } from '../../src/arrow/ipc-stream.js';
import { float16Value, typedLength, type OutputType, type TypedRow } from '../../src/tei/embedding-types.js';
import type { SparseVector, TokenEmbeddings } from '../../src/tei/types.js';
import { CONTENT_TYPE, EXTENSION, sniffFormat, type InputFormat, type TableFormat } from '../../src/batch/table-format.js';
import { readTable, type TableRows } from '../../src/batch/table-input.js';
import { fileFooter, fileHead, fileToStream } from '../../src/batch/ipc-file.js';
import { withoutKeyValueMetadata } from '../../src/batch/parquet-footer.js';
import { chunkPart, writeTableOutput, type OutputRows } from '../../src/batch/table-output.js';

const dir = mkdtempSync(join(tmpdir(), 'teiplex-batch-tables-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const LIMITS = { maxRows: 1_000_000, maxBytes: 1024 * 1024 * 1024 };
const TEXTS = ['hello', '', 'héllo wörld', '日本語のテキスト', 'emoji 🙂👍', 'a'.repeat(3000), 'tab\tnew\nline', null, 'last'];
const FORMATS: TableFormat[] = ['arrow-stream', 'arrow-file', 'parquet'];

/** The frame polars writes TEXTS into: int ids, the texts (one null), a second string column. */
function textFrame(): pl.DataFrame {
  return pl.DataFrame([
    pl.Series(
      'id',
      TEXTS.map((_, i) => 100 + i),
      pl.Int64,
    ),
    pl.Series('text', TEXTS, pl.Utf8),
    pl.Series(
      'note',
      TEXTS.map((_, i) => `note ${i}`),
      pl.Utf8,
    ),
  ]);
}

function polarsWrite(df: pl.DataFrame, format: TableFormat, compression?: string): Uint8Array {
  const bytes =
    format === 'arrow-stream'
      ? df.writeIPCStream({ compression: (compression ?? 'uncompressed') as 'lz4' })
      : format === 'arrow-file'
        ? df.writeIPC({ compression: (compression ?? 'uncompressed') as 'lz4' })
        : df.writeParquet({ compression: (compression ?? 'uncompressed') as 'zstd' });
  return new Uint8Array(bytes);
}

function polarsRead(bytes: Uint8Array, format: TableFormat): pl.DataFrame {
  const buf = Buffer.from(bytes);
  return format === 'arrow-stream' ? pl.readIPCStream(buf) : format === 'arrow-file' ? pl.readIPC(buf) : pl.readParquet(buf);
}

/** The VALIDATION error `fn` throws. */
function validationError(fn: () => unknown): TeiplexError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof TeiplexError, `expected a TeiplexError, got ${String(err)}`);
    assert.equal(err.code, 'VALIDATION');
    return err;
  }
  assert.fail('expected a VALIDATION error');
}

function head(bytes: Uint8Array): Uint8Array {
  return bytes.subarray(0, 8);
}
function tail(bytes: Uint8Array): Uint8Array {
  return bytes.subarray(Math.max(0, bytes.byteLength - 8));
}

// ---------------------------------------------------------------------------------------------

describe('sniffFormat, content types and extensions', () => {
  test('each format is told apart by its bytes; anything else is JSONL', () => {
    const df = textFrame();
    for (const format of FORMATS) {
      const bytes = polarsWrite(df, format);
      assert.equal(sniffFormat(head(bytes), tail(bytes)), format, format);
    }
    const part = chunkPart(['a'], { kind: 'dense', type: 'float32', dims: 2, rows: [Float32Array.of(1, 2)] });
    assert.equal(sniffFormat(head(part), tail(part)), 'arrow-stream', 'our own parts are streams');
    const jsonl = Buffer.from('{"custom_id":"r1","method":"POST","url":"/v1/embeddings","body":{"model":"m","input":"x"}}\n');
    assert.equal(sniffFormat(head(jsonl), tail(jsonl)), 'jsonl');
    for (const tiny of ['', '{', '{}', ' \n{"a":1}', 'PAR', 'ARROW']) {
      const b = Buffer.from(tiny);
      assert.equal(sniffFormat(head(b), tail(b)), 'jsonl', JSON.stringify(tiny));
    }
    // A Parquet file cut short is still Parquet (its reader then says it is truncated).
    const parquet = polarsWrite(df, 'parquet');
    const cut = parquet.subarray(0, 100);
    assert.equal(sniffFormat(head(cut), tail(cut)), 'parquet');
    assert.equal(sniffFormat(Buffer.from('PAR1'), Buffer.from('PAR1')), 'parquet', 'a 4-byte head and tail');
  });

  test('content types and extensions', () => {
    const expected: Record<InputFormat, [string, string]> = {
      jsonl: ['application/jsonl', '.jsonl'],
      'arrow-stream': ['application/vnd.apache.arrow.stream', '.arrows'],
      'arrow-file': ['application/vnd.apache.arrow.file', '.arrow'],
      parquet: ['application/vnd.apache.parquet', '.parquet'],
    };
    for (const [format, [type, ext]] of Object.entries(expected) as Array<[InputFormat, [string, string]]>) {
      assert.equal(CONTENT_TYPE[format], type);
      assert.equal(EXTENSION[format], ext);
    }
  });
});

describe('readTable: polars-written inputs', () => {
  const expectRows = (rows: TableRows, format: TableFormat): void => {
    assert.equal(rows.format, format);
    assert.equal(rows.length, TEXTS.length);
    assert.deepEqual(rows.texts, TEXTS, 'texts in order, the null kept');
    assert.deepEqual(
      rows.ids,
      TEXTS.map((_, i) => String(100 + i)),
    );
    assert.equal(rows.textColumn, 'text');
    assert.equal(rows.idColumn, 'id');
  };

  for (const [format, compressions] of [
    ['arrow-stream', ['uncompressed', 'lz4']],
    ['arrow-file', ['uncompressed', 'lz4']],
    ['parquet', ['uncompressed', 'snappy', 'gzip', 'lz4', 'zstd', 'brotli']],
  ] as Array<[TableFormat, string[]]>) {
    for (const compression of compressions) {
      test(`${format} (${compression})`, () => {
        const bytes = polarsWrite(textFrame(), format, compression);
        if (format !== 'parquet' && compression === 'lz4') {
          const stream = format === 'arrow-file' ? fileToStream(bytes) : bytes;
          assert.equal(scanStream(stream).compression.size, 1, 'polars really compressed the bodies');
        }
        expectRows(readTable(bytes, { format, ...LIMITS }), format);
      });
    }
  }

  test('several record batches (stream and file) are read in row order', () => {
    // polars rechunks on write; apache-arrow's writer keeps a table's batches.
    const texts = TEXTS.map((t) => t ?? 'x');
    const one = new Table({ id: vectorFromArray(Int32Array.from(texts, (_, i) => 100 + i)), text: vectorFromArray(texts, new Utf8()) });
    const two = new Table({ id: vectorFromArray(Int32Array.from(texts, (_, i) => 1100 + i)), text: vectorFromArray(texts, new Utf8()) });
    const table = one.concat(two);
    for (const format of ['arrow-stream', 'arrow-file'] as const) {
      const bytes = tableToIPC(table, format === 'arrow-file' ? 'file' : 'stream');
      const stream = format === 'arrow-file' ? fileToStream(bytes) : bytes;
      assert.equal(scanStream(stream).recordBatches, 2, 'two record batches');
      const rows = readTable(bytes, { format, ...LIMITS });
      assert.deepEqual(rows.texts, [...texts, ...texts]);
      assert.deepEqual(rows.ids, [...texts.map((_, i) => String(100 + i)), ...texts.map((_, i) => String(1100 + i))]);
    }
  });

  test('text_column and id_column pick the columns; without an id column the ids are the row numbers', () => {
    for (const format of FORMATS) {
      const bytes = polarsWrite(textFrame(), format);
      const rows = readTable(bytes, { format, textColumn: 'note', idColumn: 'id', ...LIMITS });
      assert.deepEqual(
        rows.texts,
        TEXTS.map((_, i) => `note ${i}`),
      );
      assert.equal(rows.textColumn, 'note');
      assert.equal(rows.idColumn, 'id');
      const byNote = readTable(bytes, { format, idColumn: 'note', ...LIMITS });
      assert.deepEqual(byNote.texts, TEXTS);
      assert.deepEqual(
        byNote.ids,
        TEXTS.map((_, i) => `note ${i}`),
      );
      // a null id is refused, naming the row
      const err = validationError(() => readTable(bytes, { format, idColumn: 'text', ...LIMITS }));
      assert.match(err.message, /row 7: the id column "text" is null/);
      assert.equal(err.index, 7);

      const noId = polarsWrite(pl.DataFrame({ body: ['x', 'y', 'z'], n: [1.5, 2, 3] }), format);
      const only = readTable(noId, { format, ...LIMITS });
      assert.equal(only.textColumn, 'body', 'the only string column');
      assert.equal(only.idColumn, null);
      assert.deepEqual(only.ids, ['0', '1', '2']);
      assert.deepEqual(readTable(noId, { format, idColumn: 'n', ...LIMITS }).ids, ['1.5', '2', '3'], 'a float id becomes its string');
    }
  });

  test('ids of other scalar types become strings: bigints, booleans, strings, dates, timestamps, decimals', () => {
    const df = pl
      .DataFrame([
        pl.Series('text', ['a', 'b'], pl.Utf8),
        pl.Series('big', ['9007199254740993', '-1']).cast(pl.Int64),
        pl.Series('flag', [true, false], pl.Bool),
        pl.Series('key', ['k-1', 'k-2'], pl.Utf8),
        pl.Series('at', [new Date('2024-01-02T03:04:05.678Z'), new Date('1999-12-31T00:00:00Z')]),
        pl.Series('price', ['1.50', '-0.05']),
      ])
      .withColumns(pl.col('at').cast(pl.Date).alias('day'), pl.col('at').cast(pl.Datetime('us')).alias('us'), pl.col('price').cast(pl.Decimal(10, 2)));
    for (const format of FORMATS) {
      const bytes = polarsWrite(df, format);
      assert.deepEqual(readTable(bytes, { format, idColumn: 'at', ...LIMITS }).ids, ['2024-01-02T03:04:05.678Z', '1999-12-31T00:00:00.000Z'], format);
      assert.deepEqual(readTable(bytes, { format, idColumn: 'us', ...LIMITS }).ids, ['2024-01-02T03:04:05.678Z', '1999-12-31T00:00:00.000Z'], format);
      assert.deepEqual(readTable(bytes, { format, idColumn: 'day', ...LIMITS }).ids, ['2024-01-02', '1999-12-31'], format);
      assert.deepEqual(readTable(bytes, { format, idColumn: 'price', ...LIMITS }).ids, ['1.50', '-0.05'], format);
      assert.deepEqual(readTable(bytes, { format, idColumn: 'big', ...LIMITS }).ids, ['9007199254740993', '-1'], format);
      assert.deepEqual(readTable(bytes, { format, idColumn: 'flag', ...LIMITS }).ids, ['true', 'false'], format);
      assert.deepEqual(readTable(bytes, { format, idColumn: 'key', ...LIMITS }).ids, ['k-1', 'k-2'], format);
    }
  });

  test('a categorical (dictionary-encoded) text column reads in every format', () => {
    // polars' Parquet names the column Dictionary<UInt32, Utf8View> in its embedded Arrow schema,
    // which parquet-wasm cannot read: the file is read from its Parquet types instead.
    const texts = ['red', 'green', 'red', null, 'blue', 'green'];
    const df = pl.DataFrame([pl.Series('text', texts, pl.Utf8).cast(pl.Categorical), pl.Series('id', ['a', 'b', 'c', 'd', 'e', 'f'], pl.Utf8)]);
    const parquet = polarsWrite(df, 'parquet');
    assert.throws(() => parquetWasm.readParquet(parquet), /Dictionary\(UInt32, Utf8View\)/, 'parquet-wasm alone refuses it');
    for (const format of FORMATS) {
      const bytes = polarsWrite(df, format);
      if (format === 'arrow-stream') assert.match(String(readStream(bytes).schema!.fields[0]!.type), /Dictionary/, 'polars wrote a dictionary');
      const rows = readTable(bytes, { format, ...LIMITS });
      assert.deepEqual(rows.texts, texts, format);
      assert.deepEqual(rows.ids, ['a', 'b', 'c', 'd', 'e', 'f'], format);
    }
  });

  test("an Arrow IPC file from apache-arrow's JavaScript writer (the schema only in its footer) reads", () => {
    const table = tableFromArrays({ id: Int32Array.of(7, 8, 9), text: ['x', 'yy', 'zzz'] });
    const file = tableToIPC(table, 'file');
    assert.equal(sniffFormat(head(file), tail(file)), 'arrow-file');
    const rows = readTable(file, { format: 'arrow-file', ...LIMITS });
    assert.deepEqual(rows.texts, ['x', 'yy', 'zzz']);
    assert.deepEqual(rows.ids, ['7', '8', '9']);
    // with no record batch at all
    const writer = new RecordBatchFileWriter();
    writer.reset(undefined, table.schema);
    writer.finish();
    const empty = readTable(writer.toUint8Array(true), { format: 'arrow-file', ...LIMITS });
    assert.equal(empty.length, 0);
    // nor any message, not even the end-of-stream marker: the footer right after the head
    const bare = Buffer.concat([fileHead(), fileFooter(table.schema, [])]);
    assert.equal(readTable(bare, { format: 'arrow-file', ...LIMITS }).length, 0);
  });

  test('our own Parquet output reads back as input (its id column as the texts)', async () => {
    const parts = [0, 1, 2].map((p) => {
      const ids = Array.from({ length: 50 }, (_, i) => `p${p}-${i}`);
      const path = join(dir, `rg-${p}.arrows`);
      writeFileSync(path, chunkPart(ids, { kind: 'dense', type: 'float32', dims: 2, rows: ids.map((_, i) => Float32Array.of(i, -i)) }));
      return path;
    });
    const dest = join(dir, 'rg.parquet');
    await writeTableOutput(parts, 'parquet', dest);
    const bytes = readFileSync(dest);
    const rows = readTable(bytes, { format: 'parquet', textColumn: 'id', ...LIMITS });
    assert.equal(rows.length, 150);
    assert.deepEqual(rows.texts.slice(48, 52), ['p0-48', 'p0-49', 'p1-0', 'p1-1']);
    assert.equal(rows.idColumn, 'id');
  });
});

describe('readTable: Parquet is decoded in slices', () => {
  test('a polars file of 300,000 rows (many slices) reads whole, in order', () => {
    const n = 300_000;
    const texts = Array.from({ length: n }, (_, i) => `text ${i}`);
    const bytes = polarsWrite(pl.DataFrame({ text: texts, id: Array.from({ length: n }, (_, i) => `k${i}`) }), 'parquet', 'zstd');
    const rows = readTable(bytes, { format: 'parquet', ...LIMITS });
    assert.equal(rows.length, n);
    assert.deepEqual(rows.texts, texts);
    for (const i of [0, 255, 256, 262_143, 262_144, n - 1]) assert.equal(rows.ids[i], `k${i}`);
    assert.match(validationError(() => readTable(bytes, { format: 'parquet', ...LIMITS, maxRows: n - 1 })).message, /^Parquet file: .*more than 299999 rows/);
  });

  test('a file that decodes to far more than it weighs is stopped after a slice, not decoded whole', () => {
    const big = 'x'.repeat(64 * 1024);
    const rows = 2_000; // 125 MiB of text
    const bytes = polarsWrite(pl.DataFrame({ text: Array.from({ length: rows }, () => big) }), 'parquet', 'zstd');
    assert.ok(bytes.byteLength < 4 * 2 ** 20, `the file is small (${bytes.byteLength} bytes)`);
    const before = parquetWasm.wasmMemory().buffer.byteLength;
    const err = validationError(() => readTable(bytes, { format: 'parquet', ...LIMITS, maxBytes: 8 * 2 ** 20 }));
    assert.match(err.message, /^Parquet file: .*more than 8388608 bytes/);
    const grown = parquetWasm.wasmMemory().buffer.byteLength - before;
    assert.ok(grown < 32 * 2 ** 20, `parquet-wasm's memory grew by ${grown} bytes: about the limit, not the 125 MiB column`);
  });
});

describe('withoutKeyValueMetadata (the Parquet footer without its embedded Arrow schema)', () => {
  test('the stripped file holds the same rows, read by polars; a second strip finds nothing to strip', () => {
    const df = textFrame();
    for (const compression of ['uncompressed', 'zstd']) {
      const bytes = polarsWrite(df, 'parquet', compression);
      const stripped = withoutKeyValueMetadata(bytes);
      assert.ok(stripped, 'polars wrote key-value metadata (its Arrow schema)');
      assert.ok(stripped.byteLength < bytes.byteLength);
      assert.deepEqual(pl.readParquet(Buffer.from(stripped)).toRecords(), df.toRecords(), compression);
      assert.equal(readStream(parquetWasm.readSchema(stripped).intoIPCStream()).schema!.metadata.size, 0, 'no metadata left');
      assert.equal(withoutKeyValueMetadata(stripped), null);
    }
  });

  test('a damaged footer gives null or a file, never a throw or a hang', () => {
    const bytes = Buffer.from(polarsWrite(textFrame(), 'parquet'));
    const footerLength = bytes.readUInt32LE(bytes.byteLength - 8);
    const footerStart = bytes.byteLength - 8 - footerLength;
    let nulls = 0;
    for (let at = footerStart; at < bytes.byteLength - 8; at++) {
      for (const value of [0x00, 0xff, bytes[at]! ^ 0x10]) {
        const copy = Buffer.from(bytes);
        copy[at] = value;
        const out = withoutKeyValueMetadata(copy);
        if (out === null) nulls++;
        else assert.ok(out instanceof Uint8Array);
      }
    }
    assert.ok(nulls > 0, 'some damage is refused');
    assert.equal(withoutKeyValueMetadata(bytes.subarray(0, bytes.byteLength - 1)), null, 'no trailing PAR1');
    assert.equal(withoutKeyValueMetadata(Buffer.from('PAR1PAR1')), null);
  });
});

describe('readTable: bad inputs get a clear VALIDATION error', () => {
  test('no such column names the columns there are', () => {
    for (const format of FORMATS) {
      const bytes = polarsWrite(textFrame(), format);
      const text = validationError(() => readTable(bytes, { format, textColumn: 'body', ...LIMITS }));
      assert.match(text.message, /no column "body" \(text_column\).*"id" \(Int64\), "text" \((Large)?Utf8(View)?\), "note" \((Large)?Utf8(View)?\)/, format);
      assert.equal(text.param, 'text_column');
      const id = validationError(() => readTable(bytes, { format, idColumn: 'key', ...LIMITS }));
      assert.match(id.message, /no column "key" \(id_column\).*"id" \(Int64\)/, format);
      assert.equal(id.param, 'id_column');
      const none = polarsWrite(pl.DataFrame({ x: [1.5], flag: [true] }), format);
      assert.match(validationError(() => readTable(none, { format, ...LIMITS })).message, /no text column.*"x" \(Float64\), "flag" \(Bool\)/, format);
      const two = polarsWrite(pl.DataFrame({ a: ['x'], b: ['y'] }), format);
      assert.match(validationError(() => readTable(two, { format, ...LIMITS })).message, /no column "text" and 2 string columns; name the text column with text_column/, format);
    }
  });

  test('a text column that is not strings, an id that is not a scalar', () => {
    for (const format of FORMATS) {
      const ints = polarsWrite(pl.DataFrame({ text: [1, 2], note: ['a', 'b'] }), format);
      assert.match(validationError(() => readTable(ints, { format, ...LIMITS })).message, /text column "text" has type Float64; it must be a string column/, format);
      const lists = polarsWrite(pl.DataFrame([pl.Series('text', ['a'], pl.Utf8), pl.Series('id', [[1, 2]], pl.List(pl.Int32))]), format);
      assert.match(validationError(() => readTable(lists, { format, ...LIMITS })).message, /id column "id" has type (Large)?List<Int32>; an id must be a scalar/, format);
    }
  });

  test('more than maxRows rows, more than maxBytes decoded', () => {
    const big = pl.DataFrame({ text: Array.from({ length: 1000 }, (_, i) => `text number ${i} `.repeat(10)) });
    for (const format of FORMATS) {
      const bytes = polarsWrite(big, format);
      assert.equal(readTable(bytes, { format, ...LIMITS, maxRows: 1000 }).length, 1000, 'exactly at the limit reads');
      const rows = validationError(() => readTable(bytes, { format, ...LIMITS, maxRows: 999, maxRowsName: 'batch_max_rows' }));
      assert.match(rows.message, /more than 999 rows \(batch_max_rows\)/, format);
      const size = validationError(() => readTable(bytes, { format, ...LIMITS, maxBytes: 50_000, maxBytesName: 'the decode limit' }));
      assert.match(size.message, /more than 50000 bytes \(the decode limit\)/, format);
    }
  });

  test('garbage bytes as each format', () => {
    const garbage = Buffer.from('this is not a table, just some bytes that go on for a while');
    assert.match(validationError(() => readTable(garbage, { format: 'parquet', ...LIMITS })).message, /not a Parquet file/);
    const framed = Buffer.concat([Buffer.from('PAR1'), garbage, Buffer.from('PAR1')]);
    assert.match(validationError(() => readTable(framed, { format: 'parquet', ...LIMITS })).message, /^Parquet file could not be read: /);
    assert.match(validationError(() => readTable(garbage, { format: 'arrow-stream', ...LIMITS })).message, /^Arrow IPC stream is truncated: message 0 \(metadata of \d+ bytes\)/);
    assert.match(validationError(() => readTable(garbage, { format: 'arrow-file', ...LIMITS })).message, /not an Arrow IPC file/);
    const arrowFramed = Buffer.concat([Buffer.from('ARROW1\0\0'), garbage, Buffer.from('ARROW1')]);
    assert.match(validationError(() => readTable(arrowFramed, { format: 'arrow-file', ...LIMITS })).message, /^Arrow IPC file is corrupt/);
    const ffff = Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), garbage]);
    assert.match(validationError(() => readTable(ffff, { format: 'arrow-stream', ...LIMITS })).message, /Arrow IPC stream/);
  });

  test('Arrow input with ZSTD body compression is refused, naming the codecs read', () => {
    for (const format of ['arrow-stream', 'arrow-file'] as const) {
      const bytes = polarsWrite(textFrame(), format, 'zstd');
      assert.match(validationError(() => readTable(bytes, { format, ...LIMITS })).message, /ZSTD body compression; send LZ4_FRAME-compressed or uncompressed/, format);
    }
  });

  test('an empty Arrow stream (no bytes, or only an end-of-stream marker) is refused', () => {
    for (const bytes of [new Uint8Array(0), Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0)]) {
      assert.match(validationError(() => readTable(bytes, { format: 'arrow-stream', ...LIMITS })).message, /Arrow IPC stream is empty: it has no schema/);
    }
  });

  test('a truncated file of each format', () => {
    for (const format of FORMATS) {
      const bytes = polarsWrite(textFrame(), format);
      for (const keep of [bytes.byteLength - 1, Math.floor(bytes.byteLength / 2), 10]) {
        const err = validationError(() => readTable(bytes.subarray(0, keep), { format, ...LIMITS }));
        const name = format === 'parquet' ? /Parquet file/ : format === 'arrow-file' ? /Arrow IPC file/ : /Arrow IPC stream/;
        assert.match(err.message, name, `${format} cut to ${keep} bytes: ${err.message}`);
        assert.match(err.message, /truncated|corrupt|could not be read|past the end/, `${format} cut to ${keep}: ${err.message}`);
      }
    }
  });

  test("a forged Arrow file footer (more batches than bytes, a block outside the file) is refused before decoding", () => {
    const bytes = Buffer.from(polarsWrite(textFrame(), 'arrow-file'));
    const footerLength = bytes.readInt32LE(bytes.byteLength - 10);
    const footerStart = bytes.byteLength - 10 - footerLength;
    // a footer length pointing before the file's start
    const longFooter = Buffer.from(bytes);
    longFooter.writeInt32LE(bytes.byteLength, bytes.byteLength - 10);
    assert.match(validationError(() => readTable(longFooter, { format: 'arrow-file', ...LIMITS })).message, /Arrow IPC file is corrupt: its footer claims/);
    // a block whose offset lies past the messages: find the record batch's block (offset, int64) in the footer and move it
    const { batches } = readStream(fileToStream(bytes));
    assert.equal(batches.length, 1);
    let forged = 0;
    for (let at = footerStart; at + 8 <= bytes.byteLength - 10; at += 8) {
      const v = bytes.readBigInt64LE(at);
      if (v === 8n + BigInt(bytes.readInt32LE(12)) + 8n) {
        const copy = Buffer.from(bytes);
        copy.writeBigInt64LE(BigInt(bytes.byteLength), at);
        assert.match(validationError(() => readTable(copy, { format: 'arrow-file', ...LIMITS })).message, /record batch 0 lies outside the file/);
        forged++;
      }
    }
    assert.ok(forged > 0, 'found the record batch block in the footer');
  });

  test('a stream whose text column holds invalid UTF-8 names the row', () => {
    const schema = new Schema([new Field('text', new Utf8(), true)]);
    const data = makeData({ type: new Utf8(), length: 2, nullCount: 0, valueOffsets: Int32Array.of(0, 1, 3), data: Uint8Array.of(0x61, 0xc3, 0x28) });
    const struct = makeData({ type: new Struct(schema.fields), length: 2, nullCount: 0, children: [data] });
    const ipc = writeStream(schema, [new RecordBatch(schema, struct)], { compress: false });
    const err = validationError(() => readTable(ipc, { format: 'arrow-stream', ...LIMITS }));
    assert.match(err.message, /row 1: column "text" is not valid UTF-8/);
    assert.equal(err.index, 1);
  });
});

// ---------------------------------------------------------------------------------------------
// output

const DENSE_TYPES: OutputType[] = ['float32', 'float16', 'int8', 'uint8', 'binary', 'ubinary'];

/** Deterministic row `i` of a dense output type, of `dims` dimensions. */
function denseRow(type: OutputType, dims: number, i: number): TypedRow {
  const n = typedLength(type, dims);
  switch (type) {
    case 'float32':
      return Float32Array.from({ length: n }, (_, k) => Math.fround((i + 1) * 0.37 - k * 1.013));
    case 'float16':
      return Uint16Array.from({ length: n }, (_, k) => (0x3000 + i * 97 + k * 13) & 0x7bff);
    case 'int8':
    case 'binary':
      return Int8Array.from({ length: n }, (_, k) => ((i * 31 + k * 7) % 256) - 128);
    case 'uint8':
    case 'ubinary':
      return Uint8Array.from({ length: n }, (_, k) => (i * 29 + k * 11) % 256);
  }
}

function sparseRow(i: number): SparseVector {
  const n = i % 4;
  return { indices: Uint32Array.from({ length: n }, (_, k) => (k === n - 1 && i % 2 ? 4_000_000_000 : i * 10 + k)), values: Float32Array.from({ length: n }, (_, k) => Math.fround(0.5 + i - k * 0.25)) };
}

function multivectorRow(i: number, dim: number): TokenEmbeddings {
  const tokens = i % 3;
  return { tokens, dim, values: Float32Array.from({ length: tokens * dim }, (_, k) => Math.fround(i - k / 3)) };
}

/** Rows 0..n-1 split into parts of the sizes given; every third row (and row 1) failed. */
function plan(sizes: number[]): Array<{ ids: string[]; nulls: boolean[]; first: number }> {
  const out: Array<{ ids: string[]; nulls: boolean[]; first: number }> = [];
  let first = 0;
  for (const size of sizes) {
    const rows = Array.from({ length: size }, (_, k) => first + k);
    out.push({ ids: rows.map((i) => `row-${i}`), nulls: rows.map((i) => i % 3 === 1), first });
    first += size;
  }
  return out;
}

const SIZES = [5, 0, 4, 3];

function denseOutput(type: OutputType, dims: number, first: number, nulls: boolean[]): OutputRows {
  return { kind: 'dense', type, dims, rows: nulls.map((isNull, k) => (isNull ? null : denseRow(type, dims, first + k))) };
}

async function writeParts(name: string, make: (first: number, nulls: boolean[]) => OutputRows): Promise<string[]> {
  return plan(SIZES).map(({ ids, nulls, first }, p) => {
    const path = join(dir, `${name}-${p}.arrows`);
    writeFileSync(path, chunkPart(ids, make(first, nulls)));
    return path;
  });
}

const ALL_IDS = plan(SIZES).flatMap((p) => p.ids);
const ALL_NULLS = plan(SIZES).flatMap((p) => p.nulls);

/** The Arrow schema metadata of an output file (Parquet: the Arrow schema parquet-wasm restores from it). */
function outputMetadata(bytes: Uint8Array, format: TableFormat): Map<string, string> {
  const ipc = format === 'arrow-stream' ? bytes : format === 'arrow-file' ? fileToStream(bytes) : parquetWasm.readSchema(bytes).intoIPCStream();
  return readStream(ipc).schema!.metadata;
}

describe('chunkPart + writeTableOutput, read back by polars', () => {
  for (const type of DENSE_TYPES) {
    test(`dense ${type}: ids, vectors and null rows in every format`, async () => {
      const dims = type === 'binary' || type === 'ubinary' ? 20 : 6; // 20 bits: 3 packed bytes, the last padded
      const parts = await writeParts(`dense-${type}`, (first, nulls) => denseOutput(type, dims, first, nulls));
      for (const format of FORMATS) {
        const dest = join(dir, `dense-${type}${EXTENSION[format]}`);
        const written = await writeTableOutput(parts, format, dest);
        const bytes = readFileSync(dest);
        assert.equal(written, bytes.byteLength, 'the bytes written are counted');
        assert.equal(sniffFormat(head(bytes), tail(bytes)), format);
        let df = polarsRead(bytes, format);
        assert.deepEqual(df.columns, ['id', 'embeddings']);
        assert.deepEqual(df.getColumn('id').toArray(), ALL_IDS);
        if (type === 'float16') df = df.select(pl.col('id'), pl.col('embeddings').cast(pl.List(pl.Float32))); // nodejs-polars cannot hand out Float16 values
        else assert.match(String(df.getColumn('embeddings').dtype), /FixedSizeList/, `${format}: ${String(df.getColumn('embeddings').dtype)}`);
        const got = (df.toRecords() as unknown as Array<{ embeddings: number[] | null }>).map((r) => r.embeddings);
        const want = ALL_NULLS.map((isNull, i) => {
          if (isNull) return null;
          const row = denseRow(type, dims, i);
          return type === 'float16' ? Array.from(row, float16Value) : Array.from(row as ArrayLike<number>);
        });
        assert.deepEqual(got, want, `${format}: values and nulls`);
        const meta = outputMetadata(bytes, format);
        assert.equal(meta.get('embedding_type'), type, format);
        assert.equal(meta.get('dimensions'), String(dims), format);
      }
    });
  }

  test('sparse: List<Struct<index: UInt32, value: Float32>> with null rows in every format', async () => {
    const parts = await writeParts('sparse', (first, nulls) => ({ kind: 'sparse', rows: nulls.map((isNull, k) => (isNull ? null : sparseRow(first + k))) }));
    for (const format of FORMATS) {
      const dest = join(dir, `sparse${EXTENSION[format]}`);
      await writeTableOutput(parts, format, dest);
      const df = polarsRead(readFileSync(dest), format);
      assert.deepEqual(df.columns, ['id', 'sparse_embeddings']);
      const records = df.toRecords() as unknown as Array<{ id: string; sparse_embeddings: Array<{ index: number; value: number }> | null }>;
      assert.deepEqual(
        records.map((r) => r.id),
        ALL_IDS,
      );
      assert.deepEqual(
        records.map((r) => r.sparse_embeddings),
        ALL_NULLS.map((isNull, i) => {
          if (isNull) return null;
          const row = sparseRow(i);
          return Array.from(row.indices, (index, k) => ({ index, value: row.values[k] }));
        }),
        format,
      );
    }
  });

  test('multivector: List<FixedSizeList<Float32>[dim]> with null rows in every format', async () => {
    const dim = 3;
    const parts = await writeParts('multi', (first, nulls) => ({ kind: 'multivector', dim, rows: nulls.map((isNull, k) => (isNull ? null : multivectorRow(first + k, dim))) }));
    for (const format of FORMATS) {
      const dest = join(dir, `multi${EXTENSION[format]}`);
      await writeTableOutput(parts, format, dest);
      const bytes = readFileSync(dest);
      const df = polarsRead(bytes, format);
      assert.deepEqual(df.columns, ['id', 'embeddings']);
      const records = df.toRecords() as unknown as Array<{ id: string; embeddings: number[][] | null }>;
      assert.deepEqual(
        records.map((r) => r.id),
        ALL_IDS,
      );
      assert.deepEqual(
        records.map((r) => r.embeddings),
        ALL_NULLS.map((isNull, i) => {
          if (isNull) return null;
          const row = multivectorRow(i, dim);
          return Array.from({ length: row.tokens }, (_, t) => Array.from(row.values.subarray(t * dim, (t + 1) * dim)));
        }),
        format,
      );
      assert.equal(outputMetadata(bytes, format).get('dimensions'), String(dim));
    }
  });

  test('a job of no rows: one zero-row part gives a valid, empty file of the schema', async () => {
    const path = join(dir, 'empty-part.arrows');
    writeFileSync(path, chunkPart([], { kind: 'dense', type: 'int8', dims: 4, rows: [] }));
    for (const format of FORMATS) {
      const dest = join(dir, `empty${EXTENSION[format]}`);
      await writeTableOutput([path], format, dest);
      const df = polarsRead(readFileSync(dest), format);
      assert.equal(df.height, 0, format);
      assert.deepEqual(df.columns, ['id', 'embeddings'], format);
    }
  });

  test('refused: no parts, parts of different schemas, a part that is not a whole stream, rows that do not fit', async () => {
    await assert.rejects(writeTableOutput([], 'parquet', join(dir, 'none.parquet')), /no parts/);
    const a = join(dir, 'mixed-a.arrows');
    const b = join(dir, 'mixed-b.arrows');
    writeFileSync(a, chunkPart(['x'], { kind: 'dense', type: 'float32', dims: 2, rows: [Float32Array.of(1, 2)] }));
    writeFileSync(b, chunkPart(['y'], { kind: 'dense', type: 'float32', dims: 3, rows: [Float32Array.of(1, 2, 3)] }));
    for (const format of FORMATS) {
      await assert.rejects(writeTableOutput([a, b], format, join(dir, `mixed${EXTENSION[format]}`)), /output part 1 .* has another schema than part 0/, format);
    }
    const cut = join(dir, 'cut.arrows');
    const whole = readFileSync(a);
    writeFileSync(cut, whole.subarray(0, whole.byteLength - 8));
    for (const format of FORMATS) {
      await assert.rejects(writeTableOutput([a, cut], format, join(dir, `cut${EXTENSION[format]}`)), /output part 1 .* is not a whole Arrow IPC stream/, format);
    }
    assert.throws(() => chunkPart(['x', 'y'], { kind: 'dense', type: 'float32', dims: 2, rows: [null] }), /2 ids for 1 rows/);
    assert.throws(() => chunkPart(['x'], { kind: 'dense', type: 'float32', dims: 2, rows: [Float32Array.of(1, 2, 3)] }), /row 0 is Float32Array\(3\); float32 of 2 dimensions needs Float32Array\(2\)/);
    assert.throws(() => chunkPart(['x'], { kind: 'dense', type: 'binary', dims: 16, rows: [Uint8Array.of(1, 2)] }), /needs Int8Array\(2\)/);
    assert.throws(() => chunkPart(['x'], { kind: 'sparse', rows: [{ indices: Uint32Array.of(1), values: new Float32Array(0) }] }), /sparse row 0 has 1 indices but 0 values/);
    assert.throws(() => chunkPart(['x'], { kind: 'multivector', dim: 4, rows: [{ tokens: 1, dim: 3, values: new Float32Array(3) }] }), /the output's dim is 4/);
  });
});

/** Row i of the large output: values that do not compress (as real embeddings), cheap to recompute. */
function largeRow(i: number, dims: number): Float32Array {
  const out = new Float32Array(dims);
  let x = (i * 2654435761) >>> 0;
  for (let d = 0; d < dims; d++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    out[d] = x / 2 ** 32 - 0.5;
  }
  return out;
}

describe('a large output', () => {
  test('100,000 rows x 384 float32 written as Parquet, Arrow stream and Arrow file', async () => {
    const rows = 100_000;
    const dims = 384;
    const chunk = 256;
    const parts: string[] = [];
    for (let first = 0, p = 0; first < rows; first += chunk, p++) {
      const n = Math.min(chunk, rows - first);
      const ids = Array.from({ length: n }, (_, k) => `r${first + k}`);
      const out: OutputRows = {
        kind: 'dense',
        type: 'float32',
        dims,
        rows: ids.map((_, k) => ((first + k) % 1000 === 999 ? null : largeRow(first + k, dims))),
      };
      const path = join(dir, `large-${p}.arrows`);
      writeFileSync(path, chunkPart(ids, out));
      parts.push(path);
    }
    // All three written first, then read back: polars' own memory would blur the writers' numbers.
    const mib = (n: number): string => (n / 2 ** 20).toFixed(0);
    const wasmBefore = parquetWasm.wasmMemory().buffer.byteLength;
    for (const format of FORMATS) {
      const dest = join(dir, `large${EXTENSION[format]}`);
      const before = process.memoryUsage();
      const t0 = process.hrtime.bigint();
      const bytes = await writeTableOutput(parts, format, dest);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const mem = process.memoryUsage();
      console.log(
        `${format}: ${rows} x ${dims} float32 in ${parts.length} parts -> ${(bytes / 2 ** 20).toFixed(1)} MiB in ${ms.toFixed(0)} ms;` +
          ` rss ${mib(before.rss)} -> ${mib(mem.rss)} MiB, array buffers ${mib(before.arrayBuffers)} -> ${mib(mem.arrayBuffers)} MiB,` +
          ` parquet-wasm memory ${mib(wasmBefore)} -> ${mib(parquetWasm.wasmMemory().buffer.byteLength)} MiB`,
      );
    }
    // The Parquet writer holds about a row group, not the table (147 MiB of values that do not compress).
    const wasmAfter = parquetWasm.wasmMemory().buffer.byteLength;
    assert.ok(wasmAfter < 192 * 2 ** 20, `parquet-wasm grew to ${wasmAfter} bytes`);
    for (const format of FORMATS) {
      const df = polarsRead(readFileSync(join(dir, `large${EXTENSION[format]}`)), format);
      assert.equal(df.height, rows, format);
      for (const i of [0, 998, 999, 54_321, rows - 1]) {
        const record = df.slice(i, 1).toRecords()[0] as unknown as { id: string; embeddings: number[] | null };
        assert.equal(record.id, `r${i}`, format);
        if (i % 1000 === 999) assert.equal(record.embeddings, null, `${format} row ${i}`);
        else assert.deepEqual(record.embeddings, Array.from(largeRow(i, dims)), `${format} row ${i}`);
      }
    }
    // The Parquet file has several row groups (ROW_GROUP_BYTES each), and reads back as input across them.
    const parquet = readFileSync(join(dir, 'large.parquet'));
    const meta = (await parquetWasm.ParquetFile.fromFile(new Blob([parquet]))).metadata();
    assert.ok(meta.numRowGroups() >= 2, `${meta.numRowGroups()} row groups`);
    const input = readTable(parquet, { format: 'parquet', textColumn: 'id', ...LIMITS });
    assert.equal(input.length, rows);
    assert.deepEqual(
      input.texts,
      Array.from({ length: rows }, (_, i) => `r${i}`),
    );
  });
});
