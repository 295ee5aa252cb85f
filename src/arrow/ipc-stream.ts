/**
 * The Arrow IPC *stream* format in and out, on top of apache-arrow, with Arrow's own per-buffer
 * body compression (LZ4_FRAME).
 *
 * Reading: `readStream` first walks the message framing itself (`scanStream`) so that garbage,
 * truncation anywhere (including at a message boundary: the end-of-stream marker is required),
 * metadata whose lists claim more entries than its bytes hold, out-of-range buffers, corrupt LZ4
 * frame headers and over-limit requests fail with an `ArrowInputError` that says where, before
 * apache-arrow decodes anything. apache-arrow then decodes the batches, decompressing LZ4_FRAME
 * bodies through the codec from lz4-codec.ts. (apache-arrow trusts every length it reads, so
 * without these checks a forged header of a few hundred bytes exhausts the heap.)
 *
 * Writing: `writeStream` uses apache-arrow's RecordBatchStreamWriter with one fix. apache-arrow
 * 21.2.0 writes the *compressed* length into the 8-byte prefix of each compressed body buffer,
 * where the format requires the *uncompressed* length (apache/arrow-js PR #470, merged after
 * 21.2.0); readers that size their output from the prefix (pyarrow, arrow-rs, polars) then fail.
 * `SpecCompressingStreamWriter` overrides the one method that lays out compressed buffers.
 */
import {
  CompressionType,
  Message,
  MessageHeader,
  type RecordBatch,
  RecordBatchStreamReader,
  RecordBatchStreamWriter,
  type Schema,
} from 'apache-arrow';
import { Field as FbField } from 'apache-arrow/fb/field';
import { Message as FbMessage } from 'apache-arrow/fb/message';
import { RecordBatch as FbRecordBatch } from 'apache-arrow/fb/record-batch';
import { DictionaryBatch as FbDictionaryBatch } from 'apache-arrow/fb/dictionary-batch';
import { Schema as FbSchema } from 'apache-arrow/fb/schema';
import { ByteBuffer } from 'flatbuffers';
import { TeiplexError } from '../common/errors.js';
import { ensureLz4FrameCodec, lz4FrameCompress, lz4FrameMaxOutput } from './lz4-codec.js';

/** Bad Arrow input from a client: answered with INVALID_ARGUMENT (code VALIDATION). */
export class ArrowInputError extends TeiplexError {
  /** The 0-based row (counted across all record batches) the error is about, when there is one. */
  readonly row: number | undefined;
  constructor(message: string, row?: number) {
    super('VALIDATION', message);
    this.name = 'ArrowInputError';
    this.row = row;
  }
}

export interface ReadLimits {
  /** Most rows accepted in one stream (summed over record batches); checked before decoding. */
  maxRows?: number;
  /**
   * Most bytes the record and dictionary batch bodies may decode to, summed over the stream;
   * checked before decompressing, against an upper bound read from each LZ4 frame's block
   * headers (not the writer's length prefix, which could lie). Default 1 GiB.
   */
  maxDecompressedBytes?: number;
  /** How errors name the two limits (e.g. a config key); default: a description. */
  maxRowsName?: string;
  maxDecompressedName?: string;
}

export const DEFAULT_MAX_DECOMPRESSED_BYTES = 1024 * 1024 * 1024;

/** What the framing walk found. */
export interface StreamLayout {
  /** False only for an empty input (zero bytes, or only an end-of-stream marker). */
  hasSchema: boolean;
  recordBatches: number;
  rows: number;
  /** Body compression codecs seen on record/dictionary batches. */
  compression: Set<CompressionType>;
  /**
   * Upper bound of the bytes the batch bodies decode to (compressed buffers counted at their LZ4
   * frames' block-header bound): what decoding the stream may allocate, for budgets.
   */
  decodedBytes: number;
}

const CONTINUATION = -1;
/** Prefix of a compressed body buffer: its uncompressed length, int64 LE; -1 = stored raw. */
const PREFIX_BYTES = 8;
const NOT_COMPRESSED = -1n;

const MAGIC_FILE = 'ARROW1';

interface BatchHeaderLike {
  length: number;
  buffers: Array<{ offset: number; length: number }>;
  compression: { type: CompressionType } | null;
}

/** Deepest field nesting accepted in a schema (Arrow C++ uses the same bound). */
const MAX_NESTING = 64;

/**
 * Checks that every vector in a message's flatbuffer metadata fits inside the metadata bytes.
 * apache-arrow (like flatbuffers' JS runtime) trusts vector lengths and allocates one object per
 * element, so a single corrupt length (say 0x7fffffff buffers) would exhaust the heap and take
 * the whole process down instead of failing the request.
 */
function checkMetadataBounds(meta: Uint8Array): void {
  const size = meta.byteLength;
  if (size < 8) throw new Error(`${size} bytes is too short for a message`);
  const bb = new ByteBuffer(meta);
  const root = bb.readUint32(0);
  if (root + 4 > size) throw new Error('root table offset points outside the metadata');
  const fits = (count: number, elementBytes: number, what: string): void => {
    if (!(count >= 0) || count * elementBytes > size) throw new Error(`${what} claims ${count} entries, more than ${size} metadata bytes can hold`);
  };
  const message = FbMessage.getRootAsMessage(bb);
  fits(message.customMetadataLength(), 4, 'custom metadata');
  const checkBatch = (batch: FbRecordBatch | null): void => {
    if (!batch) return;
    fits(batch.nodesLength(), 16, 'field node list');
    fits(batch.buffersLength(), 16, 'buffer list');
    fits(batch.variadicBufferCountsLength(), 8, 'variadic buffer count list');
    // Each variadic (Utf8View/BinaryView data) buffer is also an entry of the buffer list.
    let variadic = 0n;
    for (let i = 0; i < batch.variadicBufferCountsLength(); i++) variadic += batch.variadicBufferCounts(i) ?? 0n;
    if (variadic < 0n || variadic > BigInt(batch.buffersLength())) {
      throw new Error(`variadic buffer counts add up to ${variadic}, but the batch lists ${batch.buffersLength()} buffers`);
    }
  };
  switch (message.headerType()) {
    case MessageHeader.Schema: {
      const schema = message.header(new FbSchema()) as FbSchema | null;
      if (!schema) return;
      fits(schema.fieldsLength(), 4, 'field list');
      fits(schema.customMetadataLength(), 4, 'schema metadata');
      fits(schema.featuresLength(), 8, 'feature list');
      let budget = Math.floor(size / 4); // each field costs at least a 4-byte offset
      const visit = (field: FbField | null, depth: number): void => {
        if (!field) return;
        if (--budget < 0) throw new Error('schema has more fields than its metadata can hold (cyclic?)');
        if (depth > MAX_NESTING) throw new Error(`schema nests fields deeper than ${MAX_NESTING} levels`);
        fits(field.childrenLength(), 4, 'child field list');
        fits(field.customMetadataLength(), 4, 'field metadata');
        for (let i = 0; i < field.childrenLength(); i++) visit(field.children(i, new FbField()), depth + 1);
      };
      for (let i = 0; i < schema.fieldsLength(); i++) visit(schema.fields(i, new FbField()), 1);
      return;
    }
    case MessageHeader.RecordBatch:
      checkBatch(message.header(new FbRecordBatch()) as FbRecordBatch | null);
      return;
    case MessageHeader.DictionaryBatch:
      checkBatch((message.header(new FbDictionaryBatch()) as FbDictionaryBatch | null)?.data() ?? null);
      return;
    default:
      return;
  }
}

function describeCodec(type: CompressionType): string {
  return CompressionType[type] ?? `codec #${type}`;
}

/**
 * Walks the encapsulated messages of an IPC stream without decoding any body, and checks: every
 * message fits in the input, the first is a Schema and no other is, record/dictionary batch
 * buffers lie inside their bodies, compression is LZ4_FRAME (or none), limits hold, and the
 * stream ends with an end-of-stream marker and nothing after it.
 */
export function scanStream(ipc: Uint8Array, limits: ReadLimits = {}): StreamLayout {
  const layout: StreamLayout = { hasSchema: false, recordBatches: 0, rows: 0, compression: new Set(), decodedBytes: 0 };
  const maxDecompressed = limits.maxDecompressedBytes ?? DEFAULT_MAX_DECOMPRESSED_BYTES;
  let declaredBytes = 0;
  if (ipc.byteLength === 0) return layout;
  if (ipc.byteLength >= 6 && Buffer.from(ipc.buffer, ipc.byteOffset, 6).toString('latin1') === MAGIC_FILE) {
    throw new ArrowInputError(
      'input is the Arrow IPC file format (starts with "ARROW1"); send the IPC stream format instead (pyarrow: pa.ipc.new_stream, polars: write_ipc_stream)',
    );
  }
  const view = new DataView(ipc.buffer, ipc.byteOffset, ipc.byteLength);
  const end = ipc.byteLength;
  const truncated = (at: number, what: string): ArrowInputError =>
    new ArrowInputError(`Arrow IPC stream is truncated: ${what} at byte ${at} runs past the end of the input (${end} bytes)`);

  let pos = 0;
  let index = 0;
  for (;;) {
    if (pos === end) {
      throw new ArrowInputError(
        `Arrow IPC stream is truncated: it ends at byte ${end} without the end-of-stream marker (a writer that was not closed, or bytes cut off)`,
      );
    }
    if (end - pos < 4) throw truncated(pos, 'a message length');
    let metaLength = view.getInt32(pos, true);
    let prefix = 4;
    if (metaLength === CONTINUATION) {
      if (end - pos < 8) throw truncated(pos, 'a message length');
      metaLength = view.getInt32(pos + 4, true);
      prefix = 8;
    }
    if (metaLength === 0) {
      pos += prefix;
      if (pos !== end) {
        throw new ArrowInputError(`Arrow IPC stream has ${end - pos} unexpected bytes after its end-of-stream marker at byte ${pos - prefix}`);
      }
      return layout; // (with index 0: an end-of-stream marker alone, an empty stream)
    }
    if (metaLength < 0) {
      throw new ArrowInputError(`not an Arrow IPC stream: invalid message length ${metaLength} at byte ${pos}`);
    }
    const metaStart = pos + prefix;
    if (metaStart + metaLength > end) throw truncated(pos, `message ${index} (metadata of ${metaLength} bytes)`);
    let message: Message;
    try {
      const meta = ipc.subarray(metaStart, metaStart + metaLength);
      checkMetadataBounds(meta);
      message = Message.decode(meta);
    } catch (err) {
      throw new ArrowInputError(`not an Arrow IPC stream: message ${index} at byte ${pos} has unreadable metadata (${errorText(err)})`);
    }
    const bodyStart = metaStart + metaLength;
    const bodyLength = Number(message.bodyLength);
    if (!Number.isSafeInteger(bodyLength) || bodyLength < 0) {
      throw new ArrowInputError(`not an Arrow IPC stream: message ${index} at byte ${pos} declares a body of ${String(message.bodyLength)} bytes`);
    }
    if (bodyStart + bodyLength > end) throw truncated(pos, `message ${index} (body of ${bodyLength} bytes)`);

    const type = message.headerType;
    if (index === 0) {
      if (type !== MessageHeader.Schema) {
        throw new ArrowInputError(
          `not an Arrow IPC stream: the first message must be a Schema, found ${MessageHeader[type] ?? `message type ${type}`}`,
        );
      }
      layout.hasSchema = true;
    } else if (type === MessageHeader.RecordBatch || type === MessageHeader.DictionaryBatch) {
      let header: BatchHeaderLike;
      try {
        const decoded = message.header() as unknown as BatchHeaderLike & { data?: BatchHeaderLike };
        header = type === MessageHeader.DictionaryBatch ? decoded.data! : decoded;
        if (!header || !Array.isArray(header.buffers)) throw new Error('no buffer list');
      } catch (err) {
        throw new ArrowInputError(`not an Arrow IPC stream: message ${index} at byte ${pos} has an unreadable batch header (${errorText(err)})`);
      }
      const what = type === MessageHeader.RecordBatch ? `record batch ${layout.recordBatches}` : `dictionary batch in message ${index}`;
      for (const b of header.buffers) {
        if (!(b.offset >= 0 && b.length >= 0 && b.offset + b.length <= bodyLength)) {
          throw new ArrowInputError(
            `not an Arrow IPC stream: ${what} has a buffer at ${b.offset}+${b.length} outside its ${bodyLength}-byte body`,
          );
        }
      }
      if (header.compression) {
        const codec = header.compression.type;
        if (codec !== CompressionType.LZ4_FRAME) {
          throw new ArrowInputError(`${what} uses ${describeCodec(codec)} body compression; send LZ4_FRAME-compressed or uncompressed batches`);
        }
        layout.compression.add(codec);
        for (const b of header.buffers) {
          if (b.length === 0) continue;
          if (b.length < PREFIX_BYTES) {
            throw new ArrowInputError(`${what} has a compressed buffer of ${b.length} bytes, shorter than its 8-byte length prefix`);
          }
          const declared = view.getBigInt64(bodyStart + b.offset, true);
          if (declared === NOT_COMPRESSED) {
            declaredBytes += b.length - PREFIX_BYTES;
            continue;
          }
          if (declared < 0n) throw new ArrowInputError(`${what} has a compressed buffer declaring length ${declared}`);
          // Bound the output from the frame's own block headers: the prefix alone could lie.
          let bound: number;
          try {
            const start = bodyStart + b.offset + PREFIX_BYTES;
            bound = lz4FrameMaxOutput(ipc.subarray(start, start + b.length - PREFIX_BYTES));
          } catch (err) {
            throw new ArrowInputError(`${what} has a corrupt LZ4_FRAME buffer at body offset ${b.offset}: ${errorText(err)}`);
          }
          if (declared > BigInt(bound)) {
            throw new ArrowInputError(`${what} has a buffer declaring ${declared} uncompressed bytes, but its LZ4 frame holds at most ${bound}`);
          }
          declaredBytes += bound;
        }
      } else {
        declaredBytes += bodyLength;
      }
      layout.decodedBytes = declaredBytes;
      if (declaredBytes > maxDecompressed) {
        throw new ArrowInputError(
          `Arrow IPC stream decompresses to more than ${maxDecompressed} bytes (${limits.maxDecompressedName ?? 'the limit on decoded request size'}); send smaller batches`,
        );
      }
      if (type === MessageHeader.RecordBatch) {
        const rows = Number(header.length);
        if (!Number.isSafeInteger(rows) || rows < 0) {
          throw new ArrowInputError(`not an Arrow IPC stream: ${what} declares ${String(header.length)} rows`);
        }
        layout.rows += rows;
        layout.recordBatches += 1;
        if (limits.maxRows !== undefined && layout.rows > limits.maxRows) {
          throw new ArrowInputError(`Arrow IPC stream has more than ${limits.maxRows} rows (${limits.maxRowsName ?? 'the limit on rows per request'}); send smaller batches`);
        }
      }
    } else if (type === MessageHeader.Schema) {
      throw new ArrowInputError(`Arrow IPC stream has a second Schema message (message ${index} at byte ${pos}); send one stream per request`);
    } else {
      throw new ArrowInputError(
        `Arrow IPC stream has an unsupported ${MessageHeader[type] ?? `type ${type}`} message (message ${index} at byte ${pos})`,
      );
    }
    pos = bodyStart + bodyLength;
    index += 1;
  }
}

export interface ReadStreamResult {
  /** Null for an empty input (no schema at all). */
  schema: Schema | null;
  batches: RecordBatch[];
  layout: StreamLayout;
}

/** Validates (see scanStream) and decodes every record batch of an IPC stream. */
export function readStream(ipc: Uint8Array, limits: ReadLimits = {}): ReadStreamResult {
  if (!(ipc instanceof Uint8Array)) throw new ArrowInputError('Arrow IPC input must be bytes');
  const layout = scanStream(ipc, limits);
  if (!layout.hasSchema) return { schema: null, batches: [], layout };
  ensureLz4FrameCodec();
  try {
    const reader = RecordBatchStreamReader.from(ipc);
    reader.open();
    const schema = reader.schema; // read before iterating: a finished reader forgets its schema
    const batches: RecordBatch[] = [];
    // apache-arrow yields a childless placeholder batch for a stream without record batches;
    // zero-row batches carry nothing, so both are dropped here.
    for (const batch of reader) if (batch.numRows > 0) batches.push(batch);
    if (!schema) throw new Error('no schema message');
    return { schema, batches, layout };
  } catch (err) {
    if (err instanceof ArrowInputError) throw err;
    throw new ArrowInputError(`Arrow IPC stream could not be decoded: ${errorText(err)}`);
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

interface Region {
  offset: number;
  length: number;
}

/**
 * RecordBatchStreamWriter whose compressed body buffers follow the format: each is an int64 LE
 * *uncompressed* length (or -1 when stored raw because compression did not make it smaller)
 * followed by one LZ4 frame, every buffer starting at an 8-byte aligned offset.
 */
class SpecCompressingStreamWriter extends RecordBatchStreamWriter {
  protected override _compressBodyBuffers(buffers: ArrayBufferView[]): {
    byteLength: number;
    bufferRegions: Region[];
    buffers: ArrayBufferView[];
  } {
    const out: ArrayBufferView[] = [];
    const regions: Region[] = [];
    let offset = 0;
    for (const buffer of buffers) {
      const raw = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
      if (raw.byteLength === 0) {
        // An empty buffer stays empty: no prefix, length 0.
        out.push(raw, raw);
        regions.push({ offset, length: 0 });
        continue;
      }
      const compressed = lz4FrameCompress(raw);
      const useCompressed = compressed.byteLength < raw.byteLength;
      const stored = useCompressed ? compressed : raw;
      const prefix = new Uint8Array(PREFIX_BYTES);
      new DataView(prefix.buffer).setBigInt64(0, useCompressed ? BigInt(raw.byteLength) : NOT_COMPRESSED, true);
      out.push(prefix, stored);
      regions.push({ offset, length: PREFIX_BYTES + stored.byteLength });
      offset = align8(offset + PREFIX_BYTES + stored.byteLength);
    }
    return { byteLength: offset, bufferRegions: regions, buffers: out };
  }
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

export interface WriteOptions {
  /** LZ4_FRAME body compression (default true). */
  compress?: boolean;
}

/**
 * One IPC stream: the schema, each batch, the end-of-stream marker. With `compress` (default),
 * every record batch declares LZ4_FRAME body compression.
 */
export function writeStream(schema: Schema, batches: Iterable<RecordBatch>, opts: WriteOptions = {}): Uint8Array {
  const compress = opts.compress ?? true;
  if (compress) ensureLz4FrameCodec();
  const writer = compress
    ? new SpecCompressingStreamWriter({ compressionType: CompressionType.LZ4_FRAME })
    : new RecordBatchStreamWriter();
  writer.reset(undefined, schema);
  for (const batch of batches) writer.write(batch);
  writer.finish();
  return writer.toUint8Array(true);
}
