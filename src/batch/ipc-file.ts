/**
 * The Arrow IPC *file* format over the stream format that src/arrow reads and writes.
 *
 * A file is `ARROW1`, two bytes of padding, the stream's messages (the schema, dictionary and
 * record batches, usually the end-of-stream marker), then a footer (a flatbuffer naming the
 * schema and where each batch starts), the footer's length (int32 LE) and `ARROW1` again.
 *
 * Reading: `fileToStream` turns a file into the equivalent stream (the schema, the dictionaries
 * and the record batches in the footer's order, an end-of-stream marker) so that
 * src/arrow/ipc-stream.ts's checked reader (framing, limits, LZ4) reads it; every length the
 * footer claims is checked against the file first. The schema comes from the file's first message
 * when there is one (pyarrow, arrow-rs and polars write it), else from the footer (apache-arrow's
 * JavaScript writer writes the schema only there).
 *
 * Writing: `streamMessages` finds the messages of a stream, `fileFooter` encodes the footer for
 * record batches copied into a file, so a writer assembles a file from stream parts without
 * decoding their bodies.
 */
import { MessageHeader, Message, MetadataVersion, type Schema } from 'apache-arrow';
import type { Block as FbBlock } from 'apache-arrow/fb/block';
import { Field as FbField } from 'apache-arrow/fb/field';
import { Footer as FbFooter } from 'apache-arrow/fb/footer';
import { FileBlock, Footer } from 'apache-arrow/ipc/metadata/file';
import { ByteBuffer } from 'flatbuffers';
import { ArrowInputError } from '../arrow/ipc-stream.js';
import { ARROW_FILE_MAGIC, endsWith, startsWith } from './table-format.js';

/** `ARROW1` and its two bytes of padding. */
const HEAD_BYTES = 8;
/** The footer length (int32) and the trailing `ARROW1`. */
const TAIL_BYTES = 4 + ARROW_FILE_MAGIC.byteLength;
/** The end-of-stream marker: continuation, then a zero metadata length. */
export const END_OF_STREAM = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0);
/** Deepest field nesting accepted in a footer's schema (as src/arrow/ipc-stream.ts for messages). */
const MAX_NESTING = 64;

/** One encapsulated message of a stream: bytes [start, bodyStart) are its prefix and metadata, [bodyStart, end) its body. */
export interface IpcMessage {
  type: MessageHeader;
  start: number;
  bodyStart: number;
  end: number;
}

/**
 * The message at `pos` (continuation and length prefix, or the pre-0.15 bare length), or null
 * at an end-of-stream marker. Throws an ArrowInputError naming `what` when it does not fit.
 */
export function messageAt(bytes: Uint8Array, pos: number, limit: number, what: string): IpcMessage | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (pos + 4 > limit) throw new ArrowInputError(`${what}: a message length at byte ${pos} runs past the end`);
  let metaLength = view.getInt32(pos, true);
  let prefix = 4;
  if (metaLength === -1) {
    if (pos + 8 > limit) throw new ArrowInputError(`${what}: a message length at byte ${pos} runs past the end`);
    metaLength = view.getInt32(pos + 4, true);
    prefix = 8;
  }
  if (metaLength === 0) return null;
  if (metaLength < 0 || pos + prefix + metaLength > limit) {
    throw new ArrowInputError(`${what}: the message at byte ${pos} claims ${metaLength} bytes of metadata, past the end`);
  }
  let message: Message;
  try {
    message = Message.decode(bytes.subarray(pos + prefix, pos + prefix + metaLength));
  } catch (err) {
    throw new ArrowInputError(`${what}: the message at byte ${pos} has unreadable metadata (${errorText(err)})`);
  }
  const bodyStart = pos + prefix + metaLength;
  const bodyLength = Number(message.bodyLength);
  if (!Number.isSafeInteger(bodyLength) || bodyLength < 0 || bodyStart + bodyLength > limit) {
    throw new ArrowInputError(`${what}: the message at byte ${pos} claims a body of ${String(message.bodyLength)} bytes, past the end`);
  }
  return { type: message.headerType, start: pos, bodyStart, end: bodyStart + bodyLength };
}

/**
 * The messages of a stream up to its end-of-stream marker (or its last byte), in order. Meant
 * for streams already checked by src/arrow's `scanStream`; still throws on framing that does not
 * fit rather than reading past the end.
 */
export function streamMessages(ipc: Uint8Array, what: string): IpcMessage[] {
  const out: IpcMessage[] = [];
  let pos = 0;
  for (let i = 0; i <= ipc.byteLength; i++) {
    if (pos === ipc.byteLength) return out;
    const m = messageAt(ipc, pos, ipc.byteLength, what);
    if (!m) return out;
    out.push(m);
    pos = m.end;
  }
  throw new ArrowInputError(`${what}: more messages than bytes`); // unreachable: every message is at least 8 bytes
}

/** The continuation-prefixed framing of one message's metadata flatbuffer, padded to 8 bytes. */
function frame(meta: Uint8Array): Uint8Array {
  const size = (8 + meta.byteLength + 7) & ~7;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setInt32(0, -1, true);
  view.setInt32(4, size - 8, true);
  out.set(meta, 8);
  return out;
}

/**
 * Checks that every vector in the footer's flatbuffer fits inside the footer's bytes before
 * apache-arrow decodes it (it allocates one object per claimed element, so a forged length would
 * exhaust the heap): the block lists, the schema's fields, their children and metadata.
 */
function checkFooterBounds(footer: FbFooter, size: number): void {
  const fits = (count: number, elementBytes: number, what: string): void => {
    if (!(count >= 0) || count * elementBytes > size) throw new Error(`${what} claims ${count} entries, more than ${size} footer bytes can hold`);
  };
  fits(footer.recordBatchesLength(), 24, 'record batch list');
  fits(footer.dictionariesLength(), 24, 'dictionary list');
  fits(footer.customMetadataLength(), 4, 'footer metadata');
  const schema = footer.schema();
  if (!schema) throw new Error('the footer has no schema');
  fits(schema.fieldsLength(), 4, 'field list');
  fits(schema.customMetadataLength(), 4, 'schema metadata');
  fits(schema.featuresLength(), 8, 'feature list');
  let budget = Math.floor(size / 4);
  const visit = (field: FbField | null, depth: number): void => {
    if (!field) return;
    if (--budget < 0) throw new Error('the schema has more fields than the footer can hold');
    if (depth > MAX_NESTING) throw new Error(`the schema nests fields deeper than ${MAX_NESTING} levels`);
    fits(field.childrenLength(), 4, 'child field list');
    fits(field.customMetadataLength(), 4, 'field metadata');
    for (let i = 0; i < field.childrenLength(); i++) visit(field.children(i, new FbField()), depth + 1);
  };
  for (let i = 0; i < schema.fieldsLength(); i++) visit(schema.fields(i, new FbField()), 1);
}

/**
 * The Arrow IPC stream equivalent to an Arrow IPC file: its schema, dictionary batches and record
 * batches in the footer's order, then an end-of-stream marker. Throws ArrowInputError (code
 * VALIDATION) for anything that is not a whole Arrow IPC file.
 */
export function fileToStream(bytes: Uint8Array): Uint8Array {
  const size = bytes.byteLength;
  if (!startsWith(bytes, ARROW_FILE_MAGIC)) throw new ArrowInputError('not an Arrow IPC file: it does not start with "ARROW1"');
  if (size < HEAD_BYTES + TAIL_BYTES || !endsWith(bytes, ARROW_FILE_MAGIC)) {
    throw new ArrowInputError(`Arrow IPC file is truncated: its ${size} bytes do not end with the footer and "ARROW1"`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, size);
  const footerLength = view.getInt32(size - TAIL_BYTES, true);
  const footerStart = size - TAIL_BYTES - footerLength;
  if (footerLength <= 0 || footerStart < HEAD_BYTES) {
    throw new ArrowInputError(`Arrow IPC file is corrupt: its footer claims ${footerLength} bytes, the file has ${size}`);
  }
  const footerBytes = bytes.subarray(footerStart, footerStart + footerLength);
  let fb: FbFooter;
  try {
    fb = FbFooter.getRootAsFooter(new ByteBuffer(footerBytes));
    if (footerBytes.byteLength < 8 || new ByteBuffer(footerBytes).readUint32(0) + 4 > footerLength) throw new Error('the root table lies outside the footer');
    checkFooterBounds(fb, footerLength);
  } catch (err) {
    throw new ArrowInputError(`Arrow IPC file is corrupt: unreadable footer (${errorText(err)})`);
  }

  const what = 'Arrow IPC file';
  const pieces: Uint8Array[] = [];
  // The schema: the first message when it is one, else the footer's.
  const first = footerStart > HEAD_BYTES ? messageAt(bytes, HEAD_BYTES, footerStart, what) : null;
  if (first && first.type === MessageHeader.Schema) {
    pieces.push(bytes.subarray(first.start, first.end));
  } else {
    let schema: Schema;
    try {
      schema = Footer.decode(footerBytes).schema;
    } catch (err) {
      throw new ArrowInputError(`Arrow IPC file is corrupt: the footer's schema is unreadable (${errorText(err)})`);
    }
    pieces.push(frame(Message.encode(Message.from(schema))));
  }
  let total = 0;
  const block = (b: FbBlock | null, kind: string, i: number): Uint8Array => {
    const offset = Number(b?.offset() ?? -1);
    const length = Number(b?.metaDataLength() ?? -1) + Number(b?.bodyLength() ?? -1);
    if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= HEAD_BYTES && length > 0 && offset + length <= footerStart)) {
      throw new ArrowInputError(`Arrow IPC file is corrupt: ${kind} ${i} lies outside the file's ${footerStart - HEAD_BYTES} bytes of messages`);
    }
    total += length;
    if (total > footerStart - HEAD_BYTES) throw new ArrowInputError('Arrow IPC file is corrupt: its footer lists more batch bytes than the file holds');
    return bytes.subarray(offset, offset + length);
  };
  for (let i = 0; i < fb.dictionariesLength(); i++) pieces.push(block(fb.dictionaries(i), 'dictionary batch', i));
  for (let i = 0; i < fb.recordBatchesLength(); i++) pieces.push(block(fb.recordBatches(i), 'record batch', i));
  pieces.push(END_OF_STREAM);
  return Buffer.concat(pieces);
}

/** Where one record batch message was written in a file. */
export interface WrittenBlock {
  offset: number;
  /** Prefix, metadata and padding. */
  metaDataLength: number;
  bodyLength: number;
}

/** The footer of a file holding `blocks` (record batches, no dictionaries): footer bytes, their length (int32 LE), `ARROW1`. */
export function fileFooter(schema: Schema, blocks: readonly WrittenBlock[]): Uint8Array {
  const footer = Footer.encode(
    new Footer(
      schema,
      MetadataVersion.V5,
      blocks.map((b) => new FileBlock(b.metaDataLength, b.bodyLength, b.offset)),
      [],
    ),
  );
  const length = new Uint8Array(4);
  new DataView(length.buffer).setInt32(0, footer.byteLength, true);
  return Buffer.concat([footer, length, ARROW_FILE_MAGIC]);
}

/** `ARROW1` and its padding: the first bytes of a file. */
export function fileHead(): Uint8Array {
  const head = new Uint8Array(HEAD_BYTES);
  head.set(ARROW_FILE_MAGIC);
  return head;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
