/**
 * The output types of a dense embedding: `float32`, `float16`, `int8`, `uint8`, `binary`,
 * `ubinary`, with sentence-transformers' `quantize_embeddings` semantics, and each type's bytes
 * (little-endian) for base64 and Arrow.
 *
 * - `float16`: IEEE 754 half precision, rounded to nearest, ties to even (overflow to infinity).
 * - `uint8` / `int8`: per dimension, `start = min`, `step = (max - min) / 255`;
 *   `uint8 = trunc((x - start) / step)`, `int8 = trunc((x - start) / step - 128)`, computed in float32
 *   as numpy does on float32 arrays, from ranges
 *   (`Int8Ranges`: each dimension's min and max). sentence-transformers casts with numpy, which wraps
 *   a value outside the range; here it is clamped to the type's range instead (0..255, -128..127),
 *   and a dimension whose step is 0 (min equal to max, or too close for float32 to divide) maps to the
 *   lowest value.
 * - `ubinary`: `x > 0` as one bit per dimension, packed 8 per byte, the first dimension in the
 *   highest bit (numpy's `packbits`), the last byte padded with zero bits; `binary`: the same
 *   bytes minus 128, as int8.
 *
 * Pure functions of a vector: the same input gives the same bytes wherever they are rendered.
 */

import { TeiplexError } from '../common/errors.js';

export const OUTPUT_TYPES = ['float32', 'float16', 'int8', 'uint8', 'binary', 'ubinary'] as const;
export type OutputType = (typeof OUTPUT_TYPES)[number];

/** A vector in an output type: float16 as its raw bits. */
export type TypedRow = Float32Array | Uint16Array | Int8Array | Uint8Array;

/** Per-dimension ranges for int8/uint8. */
export interface Int8Ranges {
  readonly min: Float32Array;
  readonly max: Float32Array;
}

export function isOutputType(s: unknown): s is OutputType {
  return typeof s === 'string' && (OUTPUT_TYPES as readonly string[]).includes(s);
}

/** A request's `embedding_type` field (empty or absent: float32); an unknown type is VALIDATION naming the types. */
export function parseEmbeddingType(t: string | undefined): OutputType {
  if (t === undefined || t === '') return 'float32';
  if (!isOutputType(t)) throw new TeiplexError('VALIDATION', `\`embedding_type\` must be one of ${OUTPUT_TYPES.map((x) => `"${x}"`).join(', ')}, got ${JSON.stringify(t)}`, { param: 'embedding_type' });
  return t;
}

/** Whether the type needs per-dimension ranges. */
export function needsRanges(t: OutputType): boolean {
  return t === 'int8' || t === 'uint8';
}

/** Values in a row of `dims` dimensions in type `t` (bytes for the packed binary types). */
export function typedLength(t: OutputType, dims: number): number {
  return t === 'binary' || t === 'ubinary' ? Math.ceil(dims / 8) : dims;
}

/** Bytes per value of a type's row. */
export function bytesPerValue(t: OutputType): number {
  return t === 'float32' ? 4 : t === 'float16' ? 2 : 1;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The half-precision bits of a float32, rounded to nearest even. */
export function float16Bits(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0); // inf, NaN (quiet)
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    // subnormal half (or zero): shift the mantissa with its implicit 1 into place
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rest = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rest > mid || (rest === mid && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = sign | (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++; // may carry into the exponent: right
  return half;
}

/** The value of half-precision bits. */
export function float16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** One vector in an output type. `ranges` is required for int8/uint8 and must cover every dimension. */
export function quantize(v: Float32Array, t: OutputType, ranges?: Int8Ranges): TypedRow {
  switch (t) {
    case 'float32':
      return v;
    case 'float16': {
      const out = new Uint16Array(v.length);
      for (let i = 0; i < v.length; i++) out[i] = float16Bits(v[i]);
      return out;
    }
    case 'uint8':
    case 'int8': {
      if (!ranges || ranges.min.length < v.length || ranges.max.length < v.length) throw new RangeError(`${t} needs ranges for ${v.length} dimensions`);
      const out = t === 'uint8' ? new Uint8Array(v.length) : new Int8Array(v.length);
      const lo = t === 'uint8' ? 0 : -128;
      const hi = t === 'uint8' ? 255 : 127;
      const offset = t === 'uint8' ? 0 : 128;
      for (let i = 0; i < v.length; i++) {
        // float32 arithmetic throughout, as numpy computes on float32 arrays
        const start = ranges.min[i];
        const step = fr(fr(ranges.max[i] - start) / 255);
        const q = step > 0 ? Math.trunc(fr(fr(fr(v[i] - start) / step) - offset)) : lo;
        out[i] = Number.isNaN(q) ? lo : Math.max(lo, Math.min(q, hi));
      }
      return out;
    }
    case 'ubinary':
    case 'binary': {
      const n = Math.ceil(v.length / 8);
      const packed = new Uint8Array(n);
      for (let i = 0; i < v.length; i++) if (v[i] > 0) packed[i >> 3] |= 0x80 >> (i & 7);
      if (t === 'ubinary') return packed;
      const out = new Int8Array(n);
      for (let i = 0; i < n; i++) out[i] = packed[i] - 128;
      return out;
    }
  }
}

/** A typed row's values as JSON numbers would show them (float16 as the value its bits hold). */
export function jsonValues(row: TypedRow, t: OutputType): ArrayLike<number> {
  if (t !== 'float16') return row;
  const out = new Float64Array(row.length);
  for (let i = 0; i < row.length; i++) out[i] = float16Value(row[i]);
  return out;
}

/** A typed row's little-endian bytes. */
export function rowBytes(row: TypedRow): Buffer {
  if (row.BYTES_PER_ELEMENT === 1 || isLittleEndian) return Buffer.from(row.buffer, row.byteOffset, row.byteLength);
  const out = Buffer.alloc(row.byteLength);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < row.length; i++) {
    if (row instanceof Float32Array) dv.setFloat32(i * 4, row[i], true);
    else dv.setUint16(i * 2, row[i], true);
  }
  return out;
}

const fr = Math.fround;
const isLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Per-dimension min and max over calibration vectors (all of the same length). */
export function rangesOf(rows: readonly Float32Array[]): Int8Ranges {
  if (rows.length === 0) throw new RangeError('ranges need at least one vector');
  const d = rows[0].length;
  const min = new Float32Array(d).fill(Number.POSITIVE_INFINITY);
  const max = new Float32Array(d).fill(Number.NEGATIVE_INFINITY);
  for (const r of rows) {
    if (r.length !== d) throw new RangeError(`calibration vectors differ in length: ${r.length} and ${d}`);
    for (let i = 0; i < d; i++) {
      if (r[i] < min[i]) min[i] = r[i];
      if (r[i] > max[i]) max[i] = r[i];
    }
  }
  return { min, max };
}
