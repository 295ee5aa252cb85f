/**
 * Parquet in and out through parquet-wasm (arrow-rs's Parquet reader and writer compiled to
 * WebAssembly), with Arrow IPC streams as the meeting point: a Parquet file is read into an IPC
 * stream that src/arrow's checked reader then decodes, and IPC streams are written out as Parquet.
 *
 * Reading takes every compression Parquet writers use (snappy, gzip, brotli, lz4, lz4_raw, zstd)
 * and only the columns asked for. Writing streams record batches into row groups of at most
 * `ROW_GROUP_BYTES`, snappy-compressed (embeddings barely compress: zstd saves about a tenth of
 * the bytes at twice the time, spent on the manager's event loop).
 *
 * Memory: parquet-wasm works in its own WebAssembly memory (wasm32: at most 4 GiB), which grows
 * to the largest piece it has held and never shrinks while the process runs. Reading holds the
 * whole file plus one slice of decoded rows (about SLICE_BYTES, twice: the Arrow table and its IPC
 * copy) there at once; writing holds about one row group being encoded plus the record batches
 * queued for it.
 */
import { createWriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import type { Schema } from 'apache-arrow';
import * as wasm from 'parquet-wasm';
import { TeiplexError } from '../common/errors.js';
import { readStream } from '../arrow/ipc-stream.js';
import { withoutKeyValueMetadata } from './parquet-footer.js';
import { PARQUET_MAGIC, endsWith, startsWith } from './table-format.js';

/** Target size of one written row group (encoded, before compression). */
export const ROW_GROUP_BYTES = 32 * 1024 * 1024;

function unreadable(err: unknown): TeiplexError {
  const reason = err instanceof Error ? err.message : String(err);
  return new TeiplexError('VALIDATION', `Parquet file could not be read: ${reason.replace(/^Parquet error: /, '')}`);
}

/** Refuses what is plainly not a whole Parquet file before parquet-wasm sees it. */
function checkMagic(bytes: Uint8Array): void {
  if (!startsWith(bytes, PARQUET_MAGIC)) throw new TeiplexError('VALIDATION', 'not a Parquet file: it does not start with "PAR1"');
  if (bytes.byteLength < 12 || !endsWith(bytes, PARQUET_MAGIC)) {
    throw new TeiplexError('VALIDATION', `Parquet file is truncated: its ${bytes.byteLength} bytes do not end with the footer and "PAR1"`);
  }
}

/** The Arrow schema of a Parquet file (its footer only; no column is decoded). */
export function parquetSchema(bytes: Uint8Array): Schema {
  checkMagic(bytes);
  let ipc: Uint8Array;
  try {
    ipc = wasm.readSchema(bytes).intoIPCStream();
  } catch (err) {
    throw unreadable(err);
  }
  let schema: Schema | null;
  try {
    schema = readStream(ipc).schema;
  } catch (err) {
    throw new TeiplexError('VALIDATION', `Parquet file's schema could not be read as Arrow: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!schema) throw new TeiplexError('VALIDATION', 'Parquet file could not be read: it has no schema');
  return schema;
}

/**
 * The bytes to read `bytes` from: the file itself, or, when only the Arrow schema embedded in its
 * footer keeps parquet-wasm from reading it (polars' categorical columns), a copy without that
 * metadata (parquet-footer.ts). Probes by reading one row. Throws TeiplexError VALIDATION with
 * parquet-wasm's reason when neither reads.
 */
export function parquetSource(bytes: Uint8Array): Uint8Array {
  checkMagic(bytes);
  const probe = (b: Uint8Array): void => wasm.readParquet(b, { limit: 1 }).free();
  try {
    probe(bytes);
    return bytes;
  } catch (err) {
    const stripped = withoutKeyValueMetadata(bytes);
    if (stripped) {
      try {
        probe(stripped);
        return stripped;
      } catch {
        // report the file's own error
      }
    }
    throw unreadable(err);
  }
}

/** Rows of the first slice read; later slices are sized from the bytes per row seen so far. */
const FIRST_SLICE_ROWS = 64;
const MAX_SLICE_ROWS = 65_536;
/** Target decoded size of one slice. */
export const SLICE_BYTES = 32 * 1024 * 1024;

/**
 * The named columns of a Parquet file's first `limit` rows, as Arrow IPC streams (uncompressed
 * bodies) of a slice of rows each, in row order. Slices start small and are sized from the bytes
 * per row seen so far to about SLICE_BYTES, or to what is left of `maxBytes`, so a caller that
 * counts the bytes stops a file that decodes to far more than it weighs (a dictionary or
 * run-length bomb) after a slice of about its limit, not after decoding all of it. Each slice
 * costs a copy of the file into parquet-wasm's memory.
 * Throws TeiplexError VALIDATION naming the problem for anything parquet-wasm cannot read.
 */
export function* parquetSlices(bytes: Uint8Array, opts: { columns: string[]; limit: number; maxBytes: number }): Generator<Uint8Array> {
  checkMagic(bytes);
  let offset = 0;
  let sliceRows = FIRST_SLICE_ROWS;
  let decoded = 0;
  // Every slice but the last reads at least one row: at most limit + 1 slices.
  for (let slice = 0; slice <= opts.limit && offset < opts.limit; slice++) {
    const limit = Math.min(sliceRows, opts.limit - offset);
    let rows = 0;
    let ipc: Uint8Array;
    try {
      const table = wasm.readParquet(bytes, { columns: opts.columns, offset, limit });
      for (const batch of table.recordBatches()) {
        rows += batch.numRows;
        batch.free();
      }
      ipc = table.intoIPCStream();
    } catch (err) {
      throw unreadable(err);
    }
    if (rows > 0) yield ipc;
    if (rows < limit) return; // the end of the file
    offset += rows;
    decoded += ipc.byteLength;
    const target = Math.min(SLICE_BYTES, opts.maxBytes - decoded);
    sliceRows = Math.max(1, Math.min(MAX_SLICE_ROWS, Math.floor(target / Math.max(1, decoded / offset))));
  }
}

const MIN_ROW_GROUP_ROWS = 1024;
const MAX_ROW_GROUP_ROWS = 1024 * 1024;

/** Writer settings: snappy, no dictionary encoding (embeddings do not repeat), row groups of about ROW_GROUP_BYTES given the bytes per row (from the first part's IPC size). */
function writerProperties(bytesPerRow: number): wasm.WriterProperties {
  const rows = Math.max(MIN_ROW_GROUP_ROWS, Math.min(MAX_ROW_GROUP_ROWS, Math.floor(ROW_GROUP_BYTES / Math.max(1, bytesPerRow))));
  return new wasm.WriterPropertiesBuilder()
    .setCompression(wasm.Compression.SNAPPY)
    .setDictionaryEnabled(false)
    .setMaxRowGroupSize(rows)
    .setMaxRowGroupBytes(ROW_GROUP_BYTES)
    .setCreatedBy('teiplex')
    .build();
}

/** The non-empty record batches of one IPC stream, in parquet-wasm's memory. */
function wasmBatches(ipc: Uint8Array): wasm.RecordBatch[] {
  const table = wasm.Table.fromIPCStream(ipc);
  try {
    const out: wasm.RecordBatch[] = [];
    for (const batch of table.recordBatches()) {
      if (batch.numRows > 0) out.push(batch);
      else batch.free();
    }
    return out;
  } finally {
    table.free();
  }
}

/**
 * Writes the record batches of `streams` (each an uncompressed Arrow IPC stream with the same
 * schema) as one Parquet file at `dest`, snappy-compressed, in row groups of about
 * ROW_GROUP_BYTES. The streams are pulled one at a time as the writer asks for them. Returns the
 * bytes written. Streams without a row give a file of the schema and no row.
 *
 * parquet-wasm's stream writer ends its output quietly when its input fails, and fails outside
 * any promise when its input has no batch at all; so a failure of `streams` is kept here and
 * thrown once the output is closed, and the no-row case is written by the one-shot writer.
 */
export async function writeParquet(streams: AsyncIterable<Uint8Array>, dest: string): Promise<number> {
  const iterator = streams[Symbol.asyncIterator]();
  let first: wasm.RecordBatch[] = [];
  let last: Uint8Array | undefined;
  for (;;) {
    const next = await iterator.next();
    if (next.done) break;
    last = next.value;
    first = wasmBatches(next.value);
    if (first.length > 0) break;
  }
  if (first.length === 0) {
    if (!last) throw new Error('writeParquet: no stream to write');
    let bytes: Uint8Array;
    try {
      bytes = wasm.writeParquet(wasm.Table.fromIPCStream(last), writerProperties(1));
    } catch (err) {
      throw new Error(`Parquet output could not be written: ${err instanceof Error ? err.message : String(err)}`);
    }
    await writeFile(dest, bytes);
    return bytes.byteLength;
  }

  let failure: { error: unknown } | undefined;
  const batches = new ReadableStream<wasm.RecordBatch>({
    start(controller) {
      for (const batch of first) controller.enqueue(batch);
    },
    // Each pull enqueues at least one batch or closes: a pull that enqueues nothing is not
    // called again, and the writer would wait forever.
    async pull(controller) {
      try {
        for (;;) {
          const next = await iterator.next();
          if (next.done) break;
          const got = wasmBatches(next.value);
          for (const batch of got) controller.enqueue(batch);
          if (got.length > 0) return;
        }
      } catch (error) {
        failure = { error };
      }
      controller.close();
    },
    async cancel() {
      await iterator.return?.();
    },
  });
  const firstRows = first.reduce((n, b) => n + b.numRows, 0);
  const bytes = (await wasm.transformParquetStream(batches, writerProperties(last!.byteLength / firstRows))) as ReadableStream<Uint8Array>;
  let written = 0;
  const counter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      written += chunk.byteLength;
      controller.enqueue(chunk);
    },
  });
  await bytes.pipeThrough(counter).pipeTo(Writable.toWeb(createWriteStream(dest)) as WritableStream<Uint8Array>);
  if (failure) throw failure.error;
  return written;
}
