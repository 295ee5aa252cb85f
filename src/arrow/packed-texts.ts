/**
 * Texts packed for a trip between threads: their UTF-8 bytes back to back and n + 1 offsets, two
 * buffers that are transferred, not copied. `TextRows` reads them back one row (or one range of
 * rows) at a time, so the thread that receives a large request makes JavaScript strings only for
 * the rows it is about to send, in bounded chunks, never for the whole request at once.
 * A request's texts come out of a worker distinct (DistinctTexts: repeats taken out, with each
 * distinct text's SHA-256 for the embedding cache), and rows are picked and prompted there too
 * (selectTexts).
 */
import { createHash } from 'node:crypto';

export interface PackedTexts {
  /** Every text's UTF-8 bytes, in row order. */
  bytes: Uint8Array;
  /** n + 1 offsets into `bytes`: row i is bytes[offsets[i], offsets[i + 1]). */
  offsets: Float64Array;
}

/** Packs `texts` (UTF-8). */
export function packTexts(texts: readonly string[]): PackedTexts {
  let total = 0;
  for (const t of texts) total += Buffer.byteLength(t, 'utf8');
  const bytes = Buffer.allocUnsafeSlow(total);
  const offsets = new Float64Array(texts.length + 1);
  let at = 0;
  for (let i = 0; i < texts.length; i++) {
    at += bytes.write(texts[i]!, at, 'utf8');
    offsets[i + 1] = at;
  }
  return { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), offsets };
}

/** Read access to packed texts, row by row. */
export class TextRows {
  private readonly buf: Buffer;
  private readonly offsets: Float64Array;
  readonly length: number;

  constructor(packed: PackedTexts) {
    const { bytes, offsets } = packed;
    if (offsets.length < 1 || offsets[0] !== 0 || offsets[offsets.length - 1] !== bytes.byteLength) {
      throw new RangeError(`packed texts: offsets do not span the ${bytes.byteLength} bytes`);
    }
    this.buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.offsets = offsets;
    this.length = offsets.length - 1;
  }

  /** The packed form (its buffers; given away when transferred). */
  get packed(): PackedTexts {
    return { bytes: new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength), offsets: this.offsets };
  }

  /** Total UTF-8 bytes of all rows. */
  get byteLength(): number {
    return this.buf.byteLength;
  }

  /** Row i's UTF-8 length in bytes. */
  bytesOf(i: number): number {
    return this.offsets[i + 1]! - this.offsets[i]!;
  }

  /** Row i as a string. */
  text(i: number): string {
    return this.buf.toString('utf8', this.offsets[i]!, this.offsets[i + 1]!);
  }

  /** Rows [start, end) as strings. */
  slice(start: number, end: number): string[] {
    const out = new Array<string>(Math.max(0, end - start));
    for (let i = start; i < end; i++) out[i - start] = this.text(i);
    return out;
  }
}

/**
 * The rows of `p` named by `rows` (all of them when null), in that order, each with `prefix`
 * before it (UTF-8; '' for none), packed anew.
 */
export function selectTexts(p: PackedTexts, rows: ArrayLike<number> | null, prefix: string): PackedTexts {
  const pre = Buffer.from(prefix, 'utf8');
  const n = rows === null ? p.offsets.length - 1 : rows.length;
  const rowAt = (k: number): number => (rows === null ? k : rows[k]!);
  let total = n * pre.byteLength;
  for (let k = 0; k < n; k++) total += p.offsets[rowAt(k) + 1]! - p.offsets[rowAt(k)]!;
  const bytes = Buffer.allocUnsafeSlow(total);
  const offsets = new Float64Array(n + 1);
  const src = Buffer.from(p.bytes.buffer, p.bytes.byteOffset, p.bytes.byteLength);
  let at = 0;
  for (let k = 0; k < n; k++) {
    const i = rowAt(k);
    at += pre.copy(bytes, at);
    at += src.copy(bytes, at, p.offsets[i]!, p.offsets[i + 1]!);
    offsets[k + 1] = at;
  }
  return { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), offsets };
}

/** Bytes of a text's digest (SHA-256). */
export const DIGEST_BYTES = 32;

/**
 * A request's texts with repeats taken out: each distinct text once, in order of first
 * appearance, and where each request row finds its text. Its digests are the keys of the
 * manager's embedding cache for these texts.
 */
export interface DistinctTexts {
  /** The distinct texts. */
  packed: PackedTexts;
  /** For each request row, the index of its text among the distinct ones. */
  rowOf: Int32Array;
  /** For each distinct text, the request row where it first appears. */
  firstRow: Int32Array;
  /** DIGEST_BYTES per distinct text, the SHA-256 of its UTF-8 bytes; empty when not asked for. */
  digests: Uint8Array;
}

/** `texts` without repeats (see DistinctTexts); `digests`: also each distinct text's SHA-256. */
export function distinctTexts(texts: readonly string[], digests: boolean): DistinctTexts {
  const seen = new Map<string, number>();
  const rowOf = new Int32Array(texts.length);
  const first: number[] = [];
  const distinct: string[] = [];
  for (let i = 0; i < texts.length; i++) {
    const t = texts[i]!;
    let k = seen.get(t);
    if (k === undefined) {
      k = distinct.length;
      seen.set(t, k);
      distinct.push(t);
      first.push(i);
    }
    rowOf[i] = k;
  }
  const packed = packTexts(distinct);
  const out = new Uint8Array(digests ? distinct.length * DIGEST_BYTES : 0);
  if (digests) {
    const src = Buffer.from(packed.bytes.buffer, packed.bytes.byteOffset, packed.bytes.byteLength);
    for (let k = 0; k < distinct.length; k++) {
      out.set(createHash('sha256').update(src.subarray(packed.offsets[k]!, packed.offsets[k + 1]!)).digest(), k * DIGEST_BYTES);
    }
  }
  return { packed, rowOf, firstRow: Int32Array.from(first), digests: out };
}

/** Distinct text k's digest as a string (a cache key's input part). */
export function digestKey(digests: Uint8Array, k: number): string {
  return Buffer.from(digests.buffer, digests.byteOffset + k * DIGEST_BYTES, DIGEST_BYTES).toString('latin1');
}
