/**
 * JSON for float vectors without an intermediate number[]: each value as JavaScript prints it
 * (the float32 widened to a double, the digits JSON.stringify gives), NaN and Infinity (which JSON
 * cannot hold) as `null` as JSON.stringify does. A string-building loop: several times faster than
 * JSON.stringify(Array.from(v)) for embedding-sized vectors.
 */
export function floatList(v: ArrayLike<number>): string {
  const n = v.length;
  if (n === 0) return '[]';
  let s = '[';
  for (let i = 0; i < n; i++) {
    const x = v[i];
    s += (i > 0 ? ',' : '') + (Number.isFinite(x) ? x : 'null');
  }
  return s + ']';
}

export function floatMatrix(rows: ReadonlyArray<ArrayLike<number>>): string {
  let out = '[';
  for (let i = 0; i < rows.length; i++) out += (i > 0 ? ',' : '') + floatList(rows[i]);
  return out + ']';
}

/** Little-endian float32 bytes, base64 (OpenAI's encoding_format=base64). */
export function base64Floats(v: Float32Array): string {
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
}
