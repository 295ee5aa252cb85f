/**
 * A Parquet file without its footer's key-value metadata, where the Arrow schema that Arrow
 * writers embed (`ARROW:schema`) lives.
 *
 * arrow-rs (inside parquet-wasm) reads a column as the Arrow type that schema names when there is
 * one, and some names it cannot read back: polars writes a categorical column as
 * Dictionary<UInt32, Utf8View>, which arrow-rs's dictionary reader refuses. Without the embedded
 * schema it reads the column from Parquet's own types (a UTF8 byte array: a string column), which
 * is all a batch input needs.
 *
 * The footer is a Thrift compact-protocol `FileMetaData` struct; `withoutKeyValueMetadata` copies
 * its fields except field 5 (`key_value_metadata`), re-encoding only the field headers (their ids
 * are deltas from the previous field's). Column chunks are addressed by absolute file offsets
 * before the footer, so the data before it is kept as it is.
 */
import { PARQUET_MAGIC, endsWith, startsWith } from './table-format.js';

/** FileMetaData's field 5: list<KeyValue> key_value_metadata. */
const KEY_VALUE_METADATA = 5;
const MAX_DEPTH = 64;

/** The compact protocol's type codes. */
const T = { STOP: 0, TRUE: 1, FALSE: 2, BYTE: 3, I16: 4, I32: 5, I64: 6, DOUBLE: 7, BINARY: 8, LIST: 9, SET: 10, MAP: 11, STRUCT: 12 } as const;

/** Walks compact-protocol values over `bytes`, throwing on anything that runs past the end. */
class Reader {
  pos = 0;
  constructor(private readonly bytes: Uint8Array) {}

  byte(): number {
    if (this.pos >= this.bytes.byteLength) throw new Error('the Parquet footer is truncated');
    return this.bytes[this.pos++]!;
  }

  /** An unsigned varint (up to 64 bits; the value is only used for small sizes and ids). */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.byte();
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return result;
      scale *= 128;
    }
    throw new Error('a varint in the Parquet footer is too long');
  }

  zigzag(): number {
    const v = this.varint();
    return v % 2 === 0 ? v / 2 : -(v + 1) / 2;
  }

  skipBytes(n: number): void {
    if (!(n >= 0) || this.pos + n > this.bytes.byteLength) throw new Error('the Parquet footer is truncated');
    this.pos += n;
  }

  /** Skips one value of compact type `type`. */
  skip(type: number, depth: number): void {
    if (depth > MAX_DEPTH) throw new Error('the Parquet footer nests deeper than 64 levels');
    switch (type) {
      case T.TRUE:
      case T.FALSE:
        return; // (a field's bool is in its header; in a list, skipList reads its byte)
      case T.BYTE:
        this.skipBytes(1);
        return;
      case T.I16:
      case T.I32:
      case T.I64:
        this.varint();
        return;
      case T.DOUBLE:
        this.skipBytes(8);
        return;
      case T.BINARY:
        this.skipBytes(this.varint());
        return;
      case T.LIST:
      case T.SET: {
        const head = this.byte();
        const size = head >> 4 === 15 ? this.varint() : head >> 4;
        const element = head & 0x0f;
        if (size > this.bytes.byteLength) throw new Error('a list in the Parquet footer claims more entries than it has bytes');
        for (let i = 0; i < size; i++) {
          if (element === T.TRUE || element === T.FALSE) this.skipBytes(1);
          else this.skip(element, depth + 1);
        }
        return;
      }
      case T.MAP: {
        const size = this.varint();
        if (size === 0) return;
        if (size > this.bytes.byteLength) throw new Error('a map in the Parquet footer claims more entries than it has bytes');
        const kinds = this.byte();
        for (let i = 0; i < size; i++) {
          this.skipMapPart(kinds >> 4, depth);
          this.skipMapPart(kinds & 0x0f, depth);
        }
        return;
      }
      case T.STRUCT:
        for (let f = 0; f <= this.bytes.byteLength; f++) {
          const header = this.fieldHeader();
          if (header === null) return;
          this.skip(header.type, depth + 1);
        }
        throw new Error('a struct in the Parquet footer does not end');
      default:
        throw new Error(`unknown Thrift type ${type} in the Parquet footer`);
    }
  }

  private skipMapPart(type: number, depth: number): void {
    if (type === T.TRUE || type === T.FALSE) this.skipBytes(1);
    else this.skip(type, depth + 1);
  }

  /** The next field's header (its id as a delta or given in full), or null at the struct's stop byte. */
  fieldHeader(last = 0): { type: number; id: number } | null {
    const b = this.byte();
    if (b === T.STOP) return null;
    const type = b & 0x0f;
    const delta = b >> 4;
    return { type, id: delta !== 0 ? last + delta : this.zigzag() };
  }
}

function zigzagVarint(n: number): number[] {
  let v = n >= 0 ? n * 2 : -n * 2 - 1;
  const out: number[] = [];
  for (let i = 0; i < 10; i++) {
    if (v < 0x80) {
      out.push(v);
      return out;
    }
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  return out;
}

/** A field header for `id` after the field `last`, in the short form when the delta fits. */
function encodeHeader(type: number, id: number, last: number): number[] {
  const delta = id - last;
  return delta > 0 && delta <= 15 ? [(delta << 4) | type] : [type, ...zigzagVarint(id)];
}

/**
 * The file with its footer's key-value metadata left out, or null when the footer has none (or
 * is not a readable footer: the reader then reports the file as it is). Copies the whole file.
 */
export function withoutKeyValueMetadata(file: Uint8Array): Uint8Array | null {
  if (!startsWith(file, PARQUET_MAGIC) || !endsWith(file, PARQUET_MAGIC) || file.byteLength < 12) return null;
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const footerLength = view.getUint32(file.byteLength - 8, true);
  const footerStart = file.byteLength - 8 - footerLength;
  if (footerStart < 4) return null;
  const footer = file.subarray(footerStart, footerStart + footerLength);
  const reader = new Reader(footer);
  const pieces: Uint8Array[] = [];
  let found = false;
  let ended = false;
  let last = 0;
  let lastKept = 0;
  try {
    for (let f = 0; f <= footer.byteLength && !ended; f++) {
      const header = reader.fieldHeader(last);
      if (header === null) {
        ended = true;
        break;
      }
      last = header.id;
      const valueStart = reader.pos;
      reader.skip(header.type, 1);
      if (header.id === KEY_VALUE_METADATA) {
        found = true;
        continue;
      }
      // the value as it is; the header re-encoded against the last field kept
      pieces.push(Uint8Array.from(encodeHeader(header.type, header.id, lastKept)), footer.subarray(valueStart, reader.pos));
      lastKept = header.id;
    }
  } catch {
    return null;
  }
  if (!found || !ended) return null;
  pieces.push(Uint8Array.of(T.STOP));
  const newFooter = Buffer.concat(pieces);
  const length = Buffer.alloc(4);
  length.writeUInt32LE(newFooter.byteLength);
  return Buffer.concat([file.subarray(0, footerStart), newFooter, length, PARQUET_MAGIC]);
}
