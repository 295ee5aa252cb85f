/**
 * The dense output types written from their published definitions, for tests, each by a different
 * route than src/tei/embedding-types.ts takes:
 * - float16: IEEE 754 binary16 decoded from its fields; a float32 maps to the nearest binary16
 *   value found by search over all finite values, ties to the even bit pattern;
 * - int8/uint8: sentence-transformers' `quantize_embeddings` as written: numpy evaluates
 *   `(embeddings - starts) / steps` on float32 arrays (each operation rounded to float32) and the
 *   cast truncates toward zero; ranges are each dimension's min and max over calibration vectors;
 * - binary/ubinary: numpy's `packbits` (big bit order) as a string of bits cut into bytes, binary
 *   as `packed - 128`.
 */

/** binary16 from its fields: (-1)^s * 2^(e-15) * (1 + m/1024), subnormals 2^-14 * m/1024. */
export function refHalf(bits: number): number {
  const s = bits >> 15;
  const e = (bits >> 10) & 31;
  const m = bits & 1023;
  const sign = s === 1 ? -1 : 1;
  if (e === 31) return m === 0 ? sign * Infinity : Number.NaN;
  if (e === 0) return sign * 2 ** -14 * (m / 1024);
  return sign * 2 ** (e - 15) * (1 + m / 1024);
}

let positives: Array<{ value: number; bits: number }> | undefined;

/** The binary16 bits nearest to `x` (ties to the even pattern; 65520 and beyond to infinity). */
export function refToHalf(x: number): number {
  if (positives === undefined) {
    positives = [];
    for (let b = 0; b < 0x7c00; b++) positives.push({ value: refHalf(b), bits: b });
  }
  const p = positives;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00;
  const max = p[p.length - 1];
  if (a >= max.value) return sign | max.bits;
  let lo = 0;
  let hi = p.length - 1;
  while (hi - lo > 1) { // hygiene: a binary search, it halves hi - lo each turn
    const mid = (lo + hi) >> 1;
    if (p[mid].value <= a) lo = mid;
    else hi = mid;
  }
  const below = p[lo];
  const above = p[hi];
  const dBelow = a - below.value;
  const dAbove = above.value - a;
  const pick = dBelow < dAbove ? below : dAbove < dBelow ? above : (below.bits & 1) === 0 ? below : above;
  return sign | pick.bits;
}

/** Each dimension's min and max. */
export function refRanges(rows: readonly number[][]): { min: number[]; max: number[] } {
  const d = rows[0].length;
  const min = Array.from({ length: d }, (_, i) => Math.min(...rows.map((r) => r[i])));
  const max = Array.from({ length: d }, (_, i) => Math.max(...rows.map((r) => r[i])));
  return { min, max };
}

/**
 * quantize_embeddings' int8/uint8 branch. A step of 0 (min equal to max, or too close for float32
 * to divide) has no numpy answer: the lowest value, as teiplex documents; values outside the range
 * clamp (numpy would wrap them).
 */
export function refInt8(v: readonly number[], ranges: { min: number[]; max: number[] }, precision: 'int8' | 'uint8'): number[] {
  const f = Math.fround;
  const [lo, hi] = precision === 'uint8' ? [0, 255] : [-128, 127];
  return v.map((x, i) => {
    const starts = ranges.min[i];
    const steps = f(f(ranges.max[i] - ranges.min[i]) / 255);
    if (steps === 0) return lo;
    const scaled = f(f(x - starts) / steps);
    const q = (precision === 'uint8' ? Math.trunc(scaled) : Math.trunc(f(scaled - 128))) + 0;
    return Math.min(hi, Math.max(lo, q));
  });
}

/** numpy.packbits(v > 0) (bitorder big), then - 128 for binary. */
export function refPack(v: readonly number[], precision: 'binary' | 'ubinary'): number[] {
  let bits = v.map((x) => (x > 0 ? '1' : '0')).join('');
  while (bits.length % 8 !== 0) bits += '0'; // hygiene: bounded, adds at most 7 bits
  const bytes: number[] = [];
  for (let i = 0; i < bits.length; i += 8) bytes.push(Number.parseInt(bits.slice(i, i + 8), 2));
  return precision === 'ubinary' ? bytes : bytes.map((b) => b - 128);
}

/** A base64 answer's little-endian bytes as the values of `type`. */
export function decodeBase64(s: string, type: string): number[] {
  const b = Buffer.from(s, 'base64');
  const out: number[] = [];
  if (type === 'float32') for (let i = 0; i < b.length; i += 4) out.push(b.readFloatLE(i));
  else if (type === 'float16') for (let i = 0; i < b.length; i += 2) out.push(refHalf(b.readUInt16LE(i)));
  else if (type === 'int8' || type === 'binary') for (let i = 0; i < b.length; i++) out.push(b.readInt8(i));
  else for (let i = 0; i < b.length; i++) out.push(b.readUInt8(i));
  return out;
}

/** `v` (float32 values) in `type`, by the references above; `ranges` for int8/uint8. */
export function refQuantize(v: readonly number[], type: string, ranges?: { min: number[]; max: number[] }): number[] {
  switch (type) {
    case 'float32':
      return [...v];
    case 'float16':
      return v.map((x) => refHalf(refToHalf(x)));
    case 'int8':
    case 'uint8':
      if (ranges === undefined) throw new Error(`${type} needs ranges`);
      return refInt8(v, ranges, type);
    case 'binary':
    case 'ubinary':
      return refPack(v, type);
    default:
      throw new Error(`unknown type ${type}`);
  }
}
