/**
 * src/arrow: the LZ4_FRAME codec, request decoding (readTextColumn), response encoding and
 * decoding, the body-compression layout on the wire, hostile input, interop with an
 * independent Arrow implementation (polars, through nodejs-polars, in both directions), and the
 * worker threads that run them off the event loop (arrow-workers.ts).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import test, { describe } from 'node:test';
import fc from 'fast-check';
import { ByteBuffer } from 'flatbuffers';
import pl from 'nodejs-polars';
import { Message as FbMessage } from 'apache-arrow/fb/message';
import { RecordBatch as FbRecordBatch } from 'apache-arrow/fb/record-batch';
import {
  CompressionType,
  Dictionary,
  Field,
  Int32,
  LargeUtf8,
  MessageHeader,
  MessageReader,
  RecordBatch,
  Schema,
  Struct,
  Utf8,
  Utf8View,
  compressionRegistry,
  makeData,
  vectorFromArray,
  type Data,
  type DataType,
} from 'apache-arrow';
import { ensureLz4FrameCodec, lz4FrameCompress, lz4FrameDecompress, lz4FrameMaxOutput, LZ4_FRAME_MAGIC } from '../../src/arrow/lz4-codec.js';
import { ArrowInputError, scanStream, writeStream } from '../../src/arrow/ipc-stream.js';
import { readTextColumn } from '../../src/arrow/text-batch.js';
import { ArrowWorkers } from '../../src/arrow/arrow-workers.js';
import { digestKey, TextRows } from '../../src/arrow/packed-texts.js';
import { TeiplexError } from '../../src/common/errors.js';
import { seededUniform } from '../../src/testmodel/rng.js';
import {
  decodeDense,
  decodeDenseTyped,
  decodeMultivector,
  decodeSparse,
  encodeDense,
  encodeDenseTyped,
  encodeMultivector,
  encodeSparse,
  encodeTexts,
  packMultivector,
  packSparse,
  type SparseRow,
} from '../../src/arrow/embedding-batch.js';

// ---------------------------------------------------------------------------------------------
// helpers

const rng = seededUniform;

function randomFloats(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = r() * 2 - 1;
  return out;
}

/** Values that repeat a lot, so LZ4 really shrinks them. */
function compressibleFloats(n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.round(Math.sin(i / 50) * 4) / 4;
  return out;
}

function sameFloats(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

const SAMPLE_TEXTS = ['hello', '', 'héllo wörld', '日本語のテキスト', 'emoji 🙂👍', 'a'.repeat(3000), 'tab\tnew\nline', 'last'];

function manyTexts(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${SAMPLE_TEXTS[i % SAMPLE_TEXTS.length]} #${i}`);
}

/** A stream of one or more record batches, each given as one Data per schema field. */
function streamOf(schema: Schema, batches: Data[][], compress = false): Uint8Array {
  const records = batches.map((columns) => {
    const length = columns[0]?.length ?? 0;
    return new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length, children: columns }));
  });
  return writeStream(schema, records, { compress });
}

function column<T extends DataType>(values: unknown[], type: T): Data<T> {
  return vectorFromArray(values as never[], type).data[0] as Data<T>;
}

/** Runs fn and returns the ArrowInputError it must throw. */
function inputError(fn: () => unknown): ArrowInputError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ArrowInputError) return err;
    throw new assert.AssertionError({ message: `expected ArrowInputError, got ${String(err)}`, actual: err });
  }
  assert.fail('expected an ArrowInputError, but the call returned');
}

interface WireBatch {
  compression: CompressionType | null;
  rows: number;
  /** Per body buffer: the int64 prefix (-1 = raw) and the bytes after it. */
  buffers: Array<{ prefix: bigint; payload: Uint8Array }>;
}

/** Record batch messages as they are on the wire, read with apache-arrow's MessageReader. */
function wireBatches(ipc: Uint8Array): WireBatch[] {
  const reader = new MessageReader(ipc);
  const out: WireBatch[] = [];
  for (;;) {
    const message = reader.readMessage();
    if (!message) break;
    const body = reader.readMessageBody(message.bodyLength);
    if (message.headerType !== MessageHeader.RecordBatch) continue;
    const header = message.header() as unknown as {
      length: number;
      compression: { type: CompressionType } | null;
      buffers: Array<{ offset: number; length: number }>;
    };
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    const buffers = header.compression
      ? header.buffers
          .filter((b) => b.length > 0)
          .map((b) => ({ prefix: view.getBigInt64(b.offset, true), payload: body.subarray(b.offset + 8, b.offset + b.length) }))
      : [];
    out.push({ compression: header.compression?.type ?? null, rows: Number(header.length), buffers });
  }
  return out;
}

/**
 * Byte positions, inside `ipc`, of fields of each record batch's flatbuffer metadata, so tests
 * can forge headers that lie about sizes.
 */
function recordBatchFields(ipc: Uint8Array): Array<{ length: number; nodeLengths: number[]; buffersCount: number; variadicCounts: number[] }> {
  const view = new DataView(ipc.buffer, ipc.byteOffset, ipc.byteLength);
  const out: Array<{ length: number; nodeLengths: number[]; buffersCount: number; variadicCounts: number[] }> = [];
  let pos = 0;
  for (;;) {
    const metaLength = view.getInt32(pos + 4, true);
    if (metaLength === 0) return out;
    const metaStart = pos + 8;
    const bb = new ByteBuffer(ipc.subarray(metaStart, metaStart + metaLength));
    const message = FbMessage.getRootAsMessage(bb);
    if (message.headerType() === MessageHeader.RecordBatch) {
      const rb = message.header(new FbRecordBatch()) as FbRecordBatch;
      const field = (slot: number): number => rb.bb_pos + bb.__offset(rb.bb_pos, slot);
      const vector = (slot: number): number => bb.__vector(field(slot));
      out.push({
        length: metaStart + field(4),
        nodeLengths: Array.from({ length: rb.nodesLength() }, (_, i) => metaStart + rb.nodes(i)!.bb_pos),
        buffersCount: metaStart + vector(8) - 4,
        variadicCounts: Array.from({ length: rb.variadicBufferCountsLength() }, (_, i) => metaStart + vector(12) + i * 8),
      });
    }
    pos = metaStart + metaLength + Number(message.bodyLength());
  }
}

function patchInt64(ipc: Uint8Array, at: number, value: bigint): void {
  new DataView(ipc.buffer, ipc.byteOffset, ipc.byteLength).setBigInt64(at, value, true);
}

/** One-column streams of every string kind we accept, compressed and not. */
function stringKindStreams(texts: string[]): Array<{ name: string; ipc: Uint8Array }> {
  const kinds: Array<[string, DataType]> = [
    ['Utf8', new Utf8()],
    ['LargeUtf8', new LargeUtf8()],
    ['Utf8View', new Utf8View()],
    ['Dictionary<Utf8>', new Dictionary(new Utf8(), new Int32())],
  ];
  return kinds.flatMap(([name, type]) => {
    const schema = new Schema([new Field('text', type, true)]);
    return [false, true].map((compress) => ({
      name: `${name}${compress ? ' +LZ4' : ''}`,
      ipc: streamOf(schema, [[column(texts, type)]], compress),
    }));
  });
}

// ---------------------------------------------------------------------------------------------

describe('LZ4_FRAME codec', () => {
  test('produces and consumes LZ4 frames (magic 04 22 4D 18, version 01)', () => {
    const data = Buffer.from('the same words again and again, the same words again and again');
    const frame = lz4FrameCompress(data);
    assert.deepEqual([...frame.subarray(0, 4)], [...LZ4_FRAME_MAGIC]);
    assert.equal((frame[4]! & 0xc0) >> 6, 1, 'FLG version bits');
    assert.ok(frame.length < data.length);
    assert.deepEqual(Buffer.from(lz4FrameDecompress(frame)), data);
    // views into a larger buffer at an odd offset
    const big = new Uint8Array(101);
    big.set(data.subarray(0, 100), 1);
    const view = big.subarray(1, 101);
    assert.deepEqual(Buffer.from(lz4FrameDecompress(lz4FrameCompress(view))), Buffer.from(view));
  });

  test('registration is idempotent and readable back from the registry', () => {
    ensureLz4FrameCodec();
    const first = compressionRegistry.get(CompressionType.LZ4_FRAME);
    ensureLz4FrameCodec();
    ensureLz4FrameCodec();
    assert.ok(first?.encode && first.decode);
    assert.equal(compressionRegistry.get(CompressionType.LZ4_FRAME), first);
  });

  test('rejects bytes that are not a frame', () => {
    assert.throws(() => lz4FrameDecompress(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9)), /WrongMagicNumber/);
    const codec = compressionRegistry.get(CompressionType.LZ4_FRAME)!;
    assert.throws(() => codec.decode!(Uint8Array.of(9, 9, 9, 9, 9, 9, 9, 9)), /LZ4_FRAME buffer could not be decompressed/);
  });
});

describe('readTextColumn', () => {
  test('0 rows: empty input, schema-only stream, and a batch of zero rows all give []', () => {
    assert.deepEqual(readTextColumn(new Uint8Array(0)), []);
    assert.deepEqual(readTextColumn(encodeTexts([])), []);
    assert.deepEqual(readTextColumn(encodeTexts([], { compress: false })), []);
    const schema = new Schema([new Field('text', new Utf8(), false)]);
    assert.deepEqual(readTextColumn(streamOf(schema, [[column([], new Utf8())]])), []);
    assert.deepEqual(readTextColumn(streamOf(schema, [[column([], new Utf8())]], true)), []);
    // an end-of-stream marker alone
    assert.deepEqual(readTextColumn(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0)), []);
  });

  test('1 row', () => {
    assert.deepEqual(readTextColumn(encodeTexts(['only one'])), ['only one']);
    assert.deepEqual(readTextColumn(encodeTexts([''], { compress: false })), ['']);
  });

  test('10,000 rows over several record batches, every batch read, order kept', () => {
    const texts = manyTexts(10_000);
    for (const compress of [false, true]) {
      const ipc = encodeTexts(texts, { batchSize: 1_500, compress });
      const layout = scanStream(ipc);
      assert.equal(layout.recordBatches, 7);
      assert.equal(layout.rows, 10_000);
      assert.deepEqual(readTextColumn(ipc), texts);
    }
  });

  test('input at an unaligned byte offset (as gRPC hands over Buffer slices) reads the same', () => {
    const texts = manyTexts(300);
    for (const compress of [false, true]) {
      const ipc = encodeTexts(texts, { compress, batchSize: 100 });
      const host = new Uint8Array(ipc.length + 3);
      host.set(ipc, 3);
      assert.deepEqual(readTextColumn(host.subarray(3)), texts);
    }
    const values = randomFloats(50 * 8, 9);
    const dense = encodeDense(values, 8, { compress: false });
    const host = new Uint8Array(dense.length + 5);
    host.set(dense, 5);
    assert.ok(sameFloats(decodeDense(host.subarray(5)).values, values));
  });

  test('LargeUtf8, uncompressed and LZ4', () => {
    const texts = manyTexts(2_000);
    assert.deepEqual(readTextColumn(encodeTexts(texts, { large: true, compress: false, batchSize: 700 })), texts);
    assert.deepEqual(readTextColumn(encodeTexts(texts, { large: true, compress: true, batchSize: 700 })), texts);
    const schema = new Schema([new Field('text', new LargeUtf8(), true)]);
    assert.deepEqual(readTextColumn(streamOf(schema, [[column(['x', 'y'], new LargeUtf8())]], true)), ['x', 'y']);
  });

  test('uncompressed and LZ4_FRAME inputs give equal outputs', () => {
    const texts = manyTexts(5_000);
    const plain = encodeTexts(texts, { compress: false, batchSize: 1_000 });
    const lz4 = encodeTexts(texts, { compress: true, batchSize: 1_000 });
    assert.equal(scanStream(plain).compression.size, 0);
    assert.deepEqual([...scanStream(lz4).compression], [CompressionType.LZ4_FRAME]);
    assert.ok(lz4.length < plain.length, 'the LZ4 stream is smaller');
    assert.deepEqual(readTextColumn(lz4), readTextColumn(plain));
    assert.deepEqual(readTextColumn(lz4), texts);
  });

  test('the `text` column wins over an earlier string column; else the first string column', () => {
    const schema = new Schema([
      new Field('title', new Utf8(), false),
      new Field('n', new Int32(), false),
      new Field('text', new Utf8(), false),
    ]);
    const cols = [column(['t1', 't2'], new Utf8()), column([1, 2], new Int32()), column(['body1', 'body2'], new Utf8())];
    assert.deepEqual(readTextColumn(streamOf(schema, [cols])), ['body1', 'body2']);
    assert.deepEqual(readTextColumn(streamOf(schema, [cols], true)), ['body1', 'body2']);

    const noText = new Schema([new Field('id', new Int32(), false), new Field('doc', new LargeUtf8(), false), new Field('other', new Utf8(), false)]);
    const cols2 = [column([7], new Int32()), column(['the doc'], new LargeUtf8()), column(['other'], new Utf8())];
    assert.deepEqual(readTextColumn(streamOf(noText, [cols2])), ['the doc']);
  });

  test('dictionary-encoded and Utf8View text columns are string columns too', () => {
    const dictType = new Dictionary(new Utf8(), new Int32());
    const dict = new Schema([new Field('text', dictType, false)]);
    const data = column(['a', 'b', 'a', 'c'], dictType);
    assert.deepEqual(readTextColumn(streamOf(dict, [[data]])), ['a', 'b', 'a', 'c']);
    assert.deepEqual(readTextColumn(streamOf(dict, [[data]], true)), ['a', 'b', 'a', 'c']);

    const view = new Schema([new Field('text', new Utf8View(), false)]);
    const long = 'a string longer than twelve bytes';
    assert.deepEqual(readTextColumn(streamOf(view, [[column(['short', long], new Utf8View())]])), ['short', long]);
  });

  test('a null row fails with an error naming the row (counted across batches)', () => {
    const schema = new Schema([new Field('text', new Utf8(), true)]);
    const batches = [[column(['a', 'b', 'c'], new Utf8())], [column(['d', null, 'f'], new Utf8())]];
    for (const compress of [false, true]) {
      const err = inputError(() => readTextColumn(streamOf(schema, batches, compress)));
      assert.equal(err.row, 4);
      assert.match(err.message, /row 4/);
      assert.match(err.message, /null/);
      assert.equal(err.code, 'VALIDATION');
      assert.equal(err.grpcStatus, 3, 'INVALID_ARGUMENT');
    }
    // a null inside a dictionary's values
    const dictType = new Dictionary(new Utf8(), new Int32());
    const dict = new Schema([new Field('text', dictType, true)]);
    const err = inputError(() => readTextColumn(streamOf(dict, [[column(['x', null], dictType)]])));
    assert.equal(err.row, 1);
  });

  test('a table with no string column fails, naming the columns found', () => {
    const schema = new Schema([new Field('id', new Int32(), false), new Field('score', new Int32(), false)]);
    const err = inputError(() => readTextColumn(streamOf(schema, [[column([1], new Int32()), column([2], new Int32())]])));
    assert.match(err.message, /no string column/);
    assert.match(err.message, /"id" \(Int32\)/);
    assert.match(err.message, /"score" \(Int32\)/);
    // also with zero rows: the schema is still wrong
    assert.match(inputError(() => readTextColumn(streamOf(schema, []))).message, /no string column/);
    // a `text` column that is not a string is an error, not a reason to pick another column
    const wrong = new Schema([new Field('title', new Utf8(), false), new Field('text', new Int32(), false)]);
    const err2 = inputError(() => readTextColumn(streamOf(wrong, [[column(['t'], new Utf8()), column([1], new Int32())]])));
    assert.match(err2.message, /column "text" has type Int32/);
  });

  test('garbage bytes fail with ArrowInputError, never another error', () => {
    const cases = [
      Buffer.from('hello world, this is not arrow'),
      Buffer.from(JSON.stringify({ text: ['a', 'b'] })),
      Uint8Array.of(0xff, 0xff, 0xff, 0xff),
      Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
      Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16),
      new Uint8Array(64).fill(0xab),
      lz4FrameCompress(encodeTexts(['a'])), // a whole stream wrapped in an LZ4 frame is not an IPC stream
    ];
    for (const bytes of cases) inputError(() => readTextColumn(bytes));
    assert.match(inputError(() => readTextColumn(cases[0]!)).message, /not an Arrow IPC stream|truncated/);
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), (bytes) => {
        inputError(() => readTextColumn(bytes));
      }),
      { seed: 42, numRuns: 500 },
    );
  });

  test('the IPC file format is refused with a pointer to the stream format', () => {
    const file = pl.DataFrame({ text: ['a'] }).writeIPC();
    assert.match(inputError(() => readTextColumn(file)).message, /IPC file format.*stream format/);
  });

  test('every truncation of a valid stream fails (the end-of-stream marker is required)', () => {
    for (const compress of [false, true]) {
      const ipc = encodeTexts(['alpha', 'beta', 'gamma', 'delta', 'epsilon'], { batchSize: 2, compress });
      assert.deepEqual(readTextColumn(ipc), ['alpha', 'beta', 'gamma', 'delta', 'epsilon']);
      for (let cut = 1; cut < ipc.length; cut++) {
        const err = inputError(() => readTextColumn(ipc.subarray(0, cut)));
        assert.match(err.message, /truncated|not an Arrow IPC stream/, `cut at ${cut}: ${err.message}`);
      }
      // trailing bytes after the end-of-stream marker are refused too
      const extra = new Uint8Array(ipc.length + 3);
      extra.set(ipc);
      assert.match(inputError(() => readTextColumn(extra)).message, /after its end-of-stream marker/);
    }
  });

  test('corrupted bytes inside a valid-looking stream fail cleanly or decode, never crash', () => {
    const texts = manyTexts(40);
    const streams = [
      encodeTexts(texts, { batchSize: 15, compress: true }),
      encodeTexts(texts, { batchSize: 15, compress: false, large: true }),
      ...stringKindStreams(texts.slice(0, 12)).map((s) => s.ipc),
    ];
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: streams.length - 1 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        (which, edits) => {
          const bytes = Uint8Array.from(streams[which]!);
          for (const [at, value] of edits) bytes[at % bytes.length] = value;
          try {
            const out = readTextColumn(bytes);
            assert.ok(Array.isArray(out) && out.every((s) => typeof s === 'string'));
          } catch (err) {
            if (!(err instanceof ArrowInputError)) throw err;
          }
        },
      ),
      { seed: 7, numRuns: 3_000 },
    );
  });

  test('a corrupt LZ4 frame in a compressed body fails with ArrowInputError', () => {
    const ipc = Uint8Array.from(encodeTexts(manyTexts(200), { compress: true }));
    const magic = Buffer.from(ipc).indexOf(Buffer.from(LZ4_FRAME_MAGIC));
    assert.ok(magic > 0, 'an LZ4 frame is in the body');
    ipc[magic] = 0x05;
    assert.match(inputError(() => readTextColumn(ipc)).message, /corrupt LZ4_FRAME buffer.*bad magic/);
  });

  test('decompression bombs are refused from the frame headers, before inflating', () => {
    const zeros = new Uint8Array(8 << 20);
    const frame = lz4FrameCompress(zeros);
    assert.ok(frame.length < 64 << 10, 'eight MiB of zeros is a small frame');
    const bound = lz4FrameMaxOutput(frame);
    assert.ok(bound >= zeros.length && bound <= zeros.length + (4 << 20));
    assert.throws(() => lz4FrameMaxOutput(frame.subarray(0, frame.length - 2)), /truncated/);

    const ipc = encodeTexts(['x'.repeat(8 << 20)], { compress: true });
    assert.ok(ipc.length < 1 << 20);
    assert.equal(readTextColumn(ipc)[0]!.length, 8 << 20);
    assert.match(inputError(() => readTextColumn(ipc, { maxDecompressedBytes: 4 << 20 })).message, /more than 4194304 bytes/);

    // a length prefix larger than anything its frame can hold is a lie, and refused
    const lying = Uint8Array.from(ipc);
    const at = Buffer.from(lying).indexOf(Buffer.from(LZ4_FRAME_MAGIC), 0) - 8;
    new DataView(lying.buffer).setBigInt64(at, 1n << 40n, true);
    assert.match(inputError(() => readTextColumn(lying)).message, /declaring 1099511627776 uncompressed bytes/);
  });

  test('a vector length that the metadata cannot hold is refused before decoding', () => {
    // Without this check apache-arrow allocates one object per claimed element and the
    // process dies of heap exhaustion on a 200-byte request.
    const ipc = Uint8Array.from(encodeTexts(['a', 'b'], { compress: false }));
    const [fields] = recordBatchFields(ipc);
    new DataView(ipc.buffer).setUint32(fields!.buffersCount, 0x7fffffff, true);
    assert.match(inputError(() => readTextColumn(ipc)).message, /buffer list claims 2147483647 entries/);
  });

  test('headers claiming far more rows than the buffers hold are refused, for every string kind', () => {
    for (const { name, ipc: original } of stringKindStreams(['one', 'two', 'a string longer than twelve bytes'])) {
      assert.deepEqual(readTextColumn(original), ['one', 'two', 'a string longer than twelve bytes'], name);
      const ipc = Uint8Array.from(original);
      const [fields] = recordBatchFields(ipc);
      patchInt64(ipc, fields!.length, 1_000_000_000n);
      for (const at of fields!.nodeLengths) patchInt64(ipc, at, 1_000_000_000n);
      const err = inputError(() => readTextColumn(ipc));
      assert.match(err.message, /too short|corrupt|could not be decoded/, `${name}: ${err.message}`);
    }
  });

  test('Utf8View variadic buffer counts beyond the buffer list are refused', () => {
    const ipc = stringKindStreams(['a string longer than twelve bytes']).find((s) => s.name === 'Utf8View')!.ipc;
    const [fields] = recordBatchFields(ipc);
    assert.equal(fields!.variadicCounts.length, 1);
    patchInt64(ipc, fields!.variadicCounts[0]!, 13_000_000n);
    assert.match(inputError(() => readTextColumn(ipc)).message, /variadic buffer counts add up to 13000000/);
  });

  test('limits: rows and declared decompressed size, checked before decoding', () => {
    const ipc = encodeTexts(manyTexts(1_000), { batchSize: 400 });
    assert.equal(readTextColumn(ipc, { maxRows: 1_000 }).length, 1_000);
    assert.match(inputError(() => readTextColumn(ipc, { maxRows: 999 })).message, /more than 999 rows/);
    assert.match(inputError(() => readTextColumn(ipc, { maxDecompressedBytes: 1_000 })).message, /more than 1000 bytes/);
  });

  test('invalid UTF-8 in a Utf8 column names the row', () => {
    const schema = new Schema([new Field('text', new Utf8(), false)]);
    const data = makeData({ type: new Utf8(), length: 2, nullCount: 0, valueOffsets: Int32Array.of(0, 2, 4), data: Uint8Array.of(0x61, 0x62, 0xc3, 0x28) });
    const err = inputError(() => readTextColumn(streamOf(schema, [[data]])));
    assert.equal(err.row, 1);
    assert.match(err.message, /row 1.*not valid UTF-8/);
  });
});

describe('response encoders', () => {
  test('dense: 0, 1 and 10,000 rows round trip; packed and per-row inputs encode the same', () => {
    const dim = 384;
    const empty = decodeDense(encodeDense(new Float32Array(0), dim));
    assert.deepEqual({ rows: empty.rows, dim: empty.dim, n: empty.values.length }, { rows: 0, dim, n: 0 });
    assert.deepEqual(decodeDense(encodeDense([], dim)).rows, 0);

    const one = randomFloats(dim, 1);
    const d1 = decodeDense(encodeDense([one], dim));
    assert.equal(d1.rows, 1);
    assert.ok(sameFloats(d1.values, one));

    const n = 10_000;
    const packed = randomFloats(n * dim, 2);
    const rows = Array.from({ length: n }, (_, i) => packed.subarray(i * dim, (i + 1) * dim));
    const a = encodeDense(packed, dim);
    const b = encodeDense(rows, dim);
    assert.deepEqual(Buffer.from(a), Buffer.from(b));
    const back = decodeDense(a);
    assert.equal(back.rows, n);
    assert.equal(back.dim, dim);
    assert.ok(sameFloats(back.values, packed));
    const plain = decodeDense(encodeDense(packed, dim, { compress: false }));
    assert.ok(sameFloats(plain.values, packed));
  });

  test('our compressed output declares LZ4_FRAME, prefixes hold uncompressed lengths, frames decode to the values', () => {
    const dim = 64;
    const n = 500;
    const values = compressibleFloats(n * dim);
    const ipc = encodeDense(values, dim);
    const batches = wireBatches(ipc);
    assert.equal(batches.length, 1);
    const [batch] = batches;
    assert.equal(batch!.compression, CompressionType.LZ4_FRAME);
    assert.equal(batch!.rows, n);
    const compressed = batch!.buffers.filter((b) => b.prefix !== -1n);
    assert.ok(compressed.length >= 1, 'at least the values buffer is compressed');
    for (const b of compressed) {
      assert.deepEqual([...b.payload.subarray(0, 4)], [...LZ4_FRAME_MAGIC]);
      assert.equal(BigInt(lz4FrameDecompress(b.payload).length), b.prefix, 'prefix = uncompressed length');
    }
    const largest = compressed.reduce((x, y) => (y.prefix > x.prefix ? y : x));
    const raw = lz4FrameDecompress(largest.payload);
    const floats = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
    assert.ok(sameFloats(floats, values));
    assert.ok(ipc.length < values.byteLength / 2, 'really compressed');

    // compress: false writes no BodyCompression at all
    assert.equal(wireBatches(encodeDense(values, dim, { compress: false }))[0]!.compression, null);
  });

  test('incompressible buffers are stored raw with the -1 prefix, and still read back', () => {
    const values = randomFloats(256 * 32, 3);
    const ipc = encodeDense(values, 32);
    const [batch] = wireBatches(ipc);
    assert.equal(batch!.compression, CompressionType.LZ4_FRAME);
    const raw = batch!.buffers.find((b) => b.prefix === -1n);
    assert.ok(raw, 'the random values buffer is stored raw');
    assert.equal(raw.payload.byteLength, values.byteLength);
    assert.ok(sameFloats(decodeDense(ipc).values, values));
  });

  test('sparse: rows with entries, empty rows, 0 rows', () => {
    const r = rng(5);
    const rows: SparseRow[] = Array.from({ length: 1_000 }, (_, i) => {
      const k = i % 7 === 0 ? 0 : 1 + Math.floor(r() * 30);
      return { indices: Uint32Array.from({ length: k }, () => Math.floor(r() * 30_522)), values: Float32Array.from({ length: k }, () => r()) };
    });
    for (const compress of [true, false]) {
      const back = decodeSparse(encodeSparse(rows, { compress }));
      assert.equal(back.length, rows.length);
      back.forEach((row, i) => {
        assert.deepEqual([...row.indices], [...rows[i]!.indices], `row ${i}`);
        assert.ok(sameFloats(row.values, rows[i]!.values), `row ${i}`);
      });
    }
    assert.deepEqual(decodeSparse(encodeSparse([])), []);
    assert.throws(() => encodeSparse([{ indices: Uint32Array.of(1), values: new Float32Array(0) }]), /row 0 has 1 indices but 0 values/);
  });

  test('multivector: per-token vectors, rows of 0 tokens, 0 rows', () => {
    const dim = 8;
    const rows = [3, 0, 1, 5].map((tokens, i) => ({ tokens, dim, values: randomFloats(tokens * dim, 10 + i) }));
    const back = decodeMultivector(encodeMultivector(rows));
    assert.equal(back.length, 4);
    back.forEach((row, i) => {
      assert.equal(row.tokens, rows[i]!.tokens);
      assert.ok(sameFloats(row.values, rows[i]!.values));
    });
    assert.deepEqual(decodeMultivector(encodeMultivector([], { dim })), []);
    assert.throws(() => encodeMultivector([]), /dim is required/);
    assert.throws(() => encodeMultivector([rows[0]!, { tokens: 1, dim: 4, values: new Float32Array(4) }]), /row 1 has dim 4/);
  });

  test('encoder argument errors name the row', () => {
    assert.throws(() => encodeDense(new Float32Array(10), 3), /not a whole number of 3-dimensional rows/);
    assert.throws(() => encodeDense([new Float32Array(3), new Float32Array(2)], 3), /row 1 has 2 values, expected 3/);
    assert.throws(() => encodeDense(new Float32Array(0), 0), /dim must be a positive integer/);
    assert.throws(() => encodeTexts(['a'], { batchSize: 0 }), /batchSize/);
  });

  test('decoders refuse a response of the wrong shape', () => {
    assert.match(inputError(() => decodeDense(encodeTexts(['a']))).message, /no column "embeddings"/);
    assert.match(inputError(() => decodeSparse(encodeDense(new Float32Array(4), 2))).message, /no column "sparse_embeddings"/);
    assert.match(inputError(() => decodeMultivector(encodeDense(new Float32Array(4), 2))).message, /expected List<FixedSizeList<Float32>>/);
  });
});

describe('interop with polars (nodejs-polars, an independent Arrow implementation in Rust)', () => {
  test('polars writes an LZ4-compressed IPC stream; we read its text column', () => {
    const texts = manyTexts(3_000);
    const df = pl.DataFrame({ id: texts.map((_, i) => i), text: texts });
    const lz4 = df.writeIPCStream({ compression: 'lz4' });
    assert.deepEqual([...scanStream(lz4).compression], [CompressionType.LZ4_FRAME], 'polars really compressed the bodies');
    assert.deepEqual(readTextColumn(lz4), texts);
    assert.deepEqual(readTextColumn(df.writeIPCStream({ compression: 'uncompressed' })), texts);
  });

  test('polars input with a null row or no string column is refused with the row / columns named', () => {
    const withNull = pl.DataFrame([pl.Series('text', ['a', null, 'c'], pl.Utf8)]).writeIPCStream({ compression: 'lz4' });
    const err = inputError(() => readTextColumn(withNull));
    assert.equal(err.row, 1);
    const numbers = pl.DataFrame({ x: [1.5, 2.5], flag: [true, false] }).writeIPCStream({ compression: 'lz4' });
    assert.match(inputError(() => readTextColumn(numbers)).message, /no string column.*"x" \(Float64\).*"flag" \(Bool\)/);
  });

  test('ZSTD-compressed input is refused with a clear message', () => {
    const zstd = pl.DataFrame({ text: ['a'] }).writeIPCStream({ compression: 'zstd' });
    assert.match(inputError(() => readTextColumn(zstd)).message, /ZSTD body compression.*LZ4_FRAME/);
  });

  test('polars reads our dense response (compressed, raw-fallback and uncompressed) with equal values', () => {
    const dim = 16;
    const n = 1_000;
    for (const [values, compress] of [
      [compressibleFloats(n * dim), true],
      [randomFloats(n * dim, 4), true],
      [randomFloats(n * dim, 5), false],
    ] as const) {
      const df = pl.readIPCStream(Buffer.from(encodeDense(values, dim, { compress })));
      assert.equal(df.height, n);
      assert.match(df.getColumn('embeddings').dtype.toString(), /FixedSizeList\(DataType\(Float32\),16\)/);
      const rows = df.getColumn('embeddings').toArray() as unknown as number[][];
      assert.ok(sameFloats(Float32Array.from(rows.flat()), values));
    }
    // and the 10,000 x 384 case, checked at sampled rows
    const big = randomFloats(10_000 * 384, 6);
    const df = pl.readIPCStream(Buffer.from(encodeDense(big, 384)));
    assert.equal(df.height, 10_000);
    for (const i of [0, 1, 4_999, 9_999]) {
      const row = (df.slice(i, 1).getColumn('embeddings').toArray() as unknown as number[][])[0]!;
      assert.ok(sameFloats(Float32Array.from(row), big.subarray(i * 384, (i + 1) * 384)), `row ${i}`);
    }
  });

  test('typed dense answers (float16, int8, uint8) round-trip, and polars reads the integer ones with equal values', () => {
    const meta = { 'teiplex.embedding_type': 'int8', 'teiplex.dimensions': '12' };
    const int8 = Int8Array.from({ length: 3 * 12 }, (_, i) => (i * 37) % 256 - 128);
    const uint8 = Uint8Array.from({ length: 3 * 2 }, (_, i) => (i * 91) % 256);
    const half = Uint16Array.from({ length: 2 * 4 }, (_, i) => 0x3c00 + i); // 1.0 and its neighbours
    for (const [values, rowLength] of [[int8, 12], [uint8, 2], [half, 4]] as const) {
      for (const compress of [true, false]) {
        const back = decodeDenseTyped(encodeDenseTyped(values, rowLength, meta, { compress }));
        assert.equal(back.values.constructor, values.constructor);
        assert.deepEqual(Array.from(back.values), Array.from(values));
        assert.equal(back.dim, rowLength);
        assert.equal(back.rows, values.length / rowLength);
        assert.deepEqual(Object.fromEntries(back.metadata), meta);
      }
    }
    for (const [values, rowLength, dtype] of [[int8, 12, /Int8/], [uint8, 2, /UInt8/]] as const) {
      const df = pl.readIPCStream(Buffer.from(encodeDenseTyped(values, rowLength, meta)));
      assert.match(df.getColumn('embeddings').dtype.toString(), dtype);
      assert.deepEqual((df.getColumn('embeddings').toArray() as unknown as number[][]).flat(), Array.from(values));
    }
    assert.throws(() => encodeDenseTyped(int8, 5, meta), /not a whole number of 5-value rows/);
    const empty = decodeDenseTyped(encodeDenseTyped(new Int8Array(0), 6, meta));
    assert.equal(empty.rows, 0);
    assert.equal(empty.dim, 6);
  });

  test('polars reads our sparse and multivector responses with equal values', () => {
    const sparse: SparseRow[] = [
      { indices: Uint32Array.of(3, 17, 2_000), values: Float32Array.of(0.5, 1.25, -2) },
      { indices: new Uint32Array(0), values: new Float32Array(0) },
      { indices: Uint32Array.of(4_000_000_000), values: Float32Array.of(0.125) },
    ];
    const records = pl.readIPCStream(Buffer.from(encodeSparse(sparse))).toRecords() as unknown as Array<{ sparse_embeddings: Array<{ index: number; value: number }> }>;
    assert.deepEqual(
      records.map((r) => r.sparse_embeddings),
      sparse.map((row) => [...row.indices].map((index, k) => ({ index, value: row.values[k] }))),
    );

    const multi = [2, 0, 1].map((tokens, i) => ({ tokens, dim: 3, values: compressibleFloats(tokens * 3).map((v) => v + i) }));
    const mv = pl.readIPCStream(Buffer.from(encodeMultivector(multi))).toRecords() as unknown as Array<{ embeddings: number[][] }>;
    assert.deepEqual(
      mv.map((r) => r.embeddings),
      multi.map((row) => Array.from({ length: row.tokens }, (_, t) => [...row.values.subarray(t * 3, (t + 1) * 3)])),
    );
  });

  test('polars reads our request writer output (Utf8 and LargeUtf8, several batches, LZ4)', () => {
    const texts = manyTexts(2_500);
    for (const large of [false, true]) {
      const df = pl.readIPCStream(Buffer.from(encodeTexts(texts, { large, batchSize: 1_000, compress: true })));
      assert.deepEqual(df.getColumn('text').toArray(), texts);
    }
  });
});

describe('ArrowWorkers: the same reads and writes, in worker threads', () => {
  test('texts, scans and answers equal the in-thread ones; input errors keep their row', async () => {
    const workers = new ArrowWorkers({ threads: 2 });
    try {
      const texts = manyTexts(500);
      const ipc = encodeTexts(texts, { batchSize: 128 });
      const scan = await workers.scan(ipc, { maxRows: 1000 });
      assert.equal(scan.rows, 500);
      assert.equal(scan.decodedBytes, scanStream(ipc).decodedBytes);
      assert.ok(scan.decodedBytes >= texts.reduce((n, t) => n + Buffer.byteLength(t), 0));
      const distinct = await workers.texts(scan.ipc, {});
      const rows = new TextRows(distinct.packed);
      assert.deepEqual(rows.slice(0, rows.length), texts);
      assert.equal(rows.bytesOf(4), Buffer.byteLength(texts[4]!));
      assert.deepEqual([...distinct.rowOf], texts.map((_, i) => i), 'no repeats: each row its own text');
      assert.equal(distinct.digests.byteLength, 0, 'digests only when asked for');

      // repeats come out once; digests are the SHA-256 of each distinct text's UTF-8 bytes
      const repeated = ['b', 'ä日', 'b', 'c', 'ä日', 'b'];
      const d = await workers.texts(encodeTexts(repeated), {}, true);
      assert.deepEqual(new TextRows(d.packed).slice(0, 3), ['b', 'ä日', 'c']);
      assert.deepEqual([...d.rowOf], [0, 1, 0, 2, 1, 0]);
      assert.deepEqual([...d.firstRow], [0, 1, 3]);
      ['b', 'ä日', 'c'].forEach((t, k) => assert.equal(Buffer.from(digestKey(d.digests, k), 'latin1').toString('hex'), createHash('sha256').update(Buffer.from(t, 'utf8')).digest('hex'), t));
      // some rows, each with a prompt before it
      const picked = new TextRows(await workers.select(d.packed, Int32Array.of(2, 1), 'query: '));
      assert.deepEqual(picked.slice(0, picked.length), ['query: c', 'query: ä日']);

      const dense = randomFloats(6 * 8, 3);
      assert.ok(sameFloats(decodeDense(await workers.dense(dense.slice(), 8)).values, dense));
      const sparse: SparseRow[] = [{ indices: Uint32Array.of(3, 9), values: Float32Array.of(0.5, 1) }, { indices: new Uint32Array(0), values: new Float32Array(0) }];
      assert.deepEqual(decodeSparse(await workers.sparse(packSparse(sparse))), sparse);
      const multi = [{ tokens: 2, dim: 3, values: randomFloats(6, 4) }];
      assert.ok(sameFloats(decodeMultivector(await workers.multivector(packMultivector(multi))).at(0)!.values, multi[0]!.values));

      await assert.rejects(workers.scan(ipc, { maxRows: 10, maxRowsName: 'arrow_max_rows' }), (e: unknown) => e instanceof ArrowInputError && /more than 10 rows \(arrow_max_rows\)/.test(e.message));
      const withNull = streamOf(new Schema([new Field('text', new Utf8(), true)]), [[column(['a', null], new Utf8())]]);
      await assert.rejects(workers.texts(withNull, {}), (e: unknown) => e instanceof ArrowInputError && e.row === 1 && e.code === 'VALIDATION');
    } finally {
      await workers.close();
    }
  });

  test('a worker that dies (its heap limit) fails its job with BACKEND and is replaced', async () => {
    const workers = new ArrowWorkers({ threads: 1, maxHeapMb: 16 });
    try {
      const big = encodeTexts(Array.from({ length: 40_000 }, (_, i) => `${i} ${'日本語のテキスト '.repeat(40)}`));
      await assert.rejects(workers.texts(big, {}), (e: unknown) => e instanceof TeiplexError && e.code === 'BACKEND' && /Arrow worker thread failed/.test(e.message));
      assert.deepEqual(new TextRows((await workers.texts(encodeTexts(['still', 'here']), {})).packed).slice(0, 2), ['still', 'here']);
    } finally {
      await workers.close();
    }
  });
});
