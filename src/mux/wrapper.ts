/**
 * Reads a multiplexer wrapper message (`{ Target target = 1; tei.v1.X request = 2; }`) straight
 * from its protobuf bytes: the target is decoded (a few bytes), the inner tei.v1 request is sliced
 * out as it is, never decoded, and forwarded to the child unchanged. Protobuf's merge rules hold:
 * a repeated `request` field is concatenated (what a decoder would merge), a repeated `target`
 * merges with the last routing member winning, unknown fields are skipped.
 *
 * It never throws: grpc-js would answer a throwing deserializer with INTERNAL, so malformed bytes
 * come back as `{ error }` and the handler answers INVALID_ARGUMENT.
 */
import type { Target } from '../routing/target.js';

export interface Wrapper {
  /** Absent when the message has no target, or a target naming nothing. */
  target?: Target;
  /** The inner tei.v1 request's bytes; absent when the message has no `request` field. */
  request?: Buffer;
  /** Set when the bytes are not a valid message; nothing else is then. */
  error?: string;
}

class WireError extends Error {}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  /** An unsigned varint as a number (exact up to 2^53; protobuf allows 10 bytes). */
  varint(): number {
    const buf = this.buf;
    let pos = this.pos;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= this.end) throw new WireError('truncated varint');
      const b = buf[pos++];
      result += (b & 0x7f) * mul;
      if (b < 0x80) {
        this.pos = pos;
        return result;
      }
      mul *= 128;
    }
    throw new WireError('varint longer than 10 bytes');
  }

  /** A varint's low 32 bits (what a uint32 field reads), exact whatever its length (a 10-byte one is past 2^53). */
  varint32(): number {
    const start = this.pos;
    this.varint();
    let low = 0;
    for (let i = 0; i < 5 && start + i < this.pos; i++) low += (this.buf[start + i] & 0x7f) * 2 ** (7 * i);
    return low % 0x100000000;
  }

  /** The [start, end) of a length-delimited field's payload; moves past it. */
  bytes(): [number, number] {
    const len = this.varint();
    const start = this.pos;
    if (len > this.end - start) throw new WireError(`field length ${len} runs past the end of the message`);
    this.pos = start + len;
    return [start, this.pos];
  }

  skip(wireType: number, field: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_I64:
        this.advance(8);
        return;
      case WIRE_LEN:
        this.bytes();
        return;
      case WIRE_I32:
        this.advance(4);
        return;
      default:
        throw new WireError(`field ${field} has unsupported wire type ${wireType}`);
    }
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) throw new WireError('truncated fixed-width field');
    this.pos += n;
  }

  /** The next tag as [field number, wire type]. */
  tag(): [number, number] {
    const tag = this.varint();
    const field = Math.floor(tag / 8);
    if (field === 0 || field > 0x1fffffff) throw new WireError(`invalid field number ${field}`);
    return [field, tag & 7];
  }
}

function expectWire(field: number, name: string, got: number, want: number): void {
  if (got !== want) throw new WireError(`field ${field} (${name}) has wire type ${got}, expected ${want}`);
}

/** Target's oneof from its bytes, merged over `prev` (the last member set wins). */
function readTarget(r: Reader, start: number, end: number, prev: Target | undefined): Target | undefined {
  const t = new Reader(r.buf, start, end);
  let target = prev;
  while (t.pos < end) {
    const [field, wire] = t.tag();
    if (field === 1 || field === 2) {
      expectWire(field, field === 1 ? 'target.instance_name' : 'target.model_id', wire, WIRE_LEN);
      const [s, e] = t.bytes();
      // A proto3 string is valid UTF-8; a decoder refuses one that is not (protobufjs does).
      let value: string;
      try {
        value = UTF8.decode(r.buf.subarray(s, e));
      } catch {
        throw new WireError(`field ${field} (${field === 1 ? 'target.instance_name' : 'target.model_id'}) is not valid UTF-8`);
      }
      target = { kind: field === 1 ? 'instance_name' : 'model_id', value };
    } else if (field === 3) {
      expectWire(field, 'target.instance_index', wire, WIRE_VARINT);
      // uint32: the low 32 bits, as a protobuf decoder reads it.
      target = { kind: 'instance_index', value: t.varint32() };
    } else {
      t.skip(wire, field);
    }
  }
  return target;
}

/** Parse a wrapper message; see the file comment. */
export function parseWrapper(buf: Buffer): Wrapper {
  try {
    const r = new Reader(buf, 0, buf.length);
    let target: Target | undefined;
    let request: Buffer | undefined;
    while (r.pos < buf.length) {
      const [field, wire] = r.tag();
      if (field === 1) {
        expectWire(field, 'target', wire, WIRE_LEN);
        const [s, e] = r.bytes();
        target = readTarget(r, s, e, target);
      } else if (field === 2) {
        expectWire(field, 'request', wire, WIRE_LEN);
        const [s, e] = r.bytes();
        const part = buf.subarray(s, e);
        request = request === undefined ? part : Buffer.concat([request, part]);
      } else {
        r.skip(wire, field);
      }
    }
    const out: Wrapper = {};
    if (target !== undefined) out.target = target;
    if (request !== undefined) out.request = request;
    return out;
  } catch (err) {
    if (err instanceof WireError) return { error: `malformed message: ${err.message}` };
    return { error: `malformed message: ${(err as Error).message}` };
  }
}
