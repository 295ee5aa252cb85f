/**
 * Pooling and heads: pure functions over the raw model outputs.
 *
 * Layouts are row-major: hidden states [B, T, H], token logits [B, T, V], sequence logits [B, L].
 * Masks are [B, T] with 1 for a real token and 0 for padding; every function here is mask-aware,
 * so a row's result does not depend on how much padding its batch carried.
 */
import type { Pooling, Prediction, SparseVector } from '../tei/types.js';

/** Anything indexable that holds a 0/1 attention mask (Uint8Array, number[], BigInt64Array...). */
export type MaskLike = ArrayLike<number | bigint>;

function isReal(mask: MaskLike, i: number): boolean {
  // biome-ignore lint/suspicious/noDoubleEquals: 1 and 1n both count
  return mask[i] != 0;
}

/** The pooled vector of one row of hidden states [B, T, H] (sum in float64, returned as float32). */
export function poolRow(
  pooling: Exclude<Pooling, 'splade'>,
  hidden: Float32Array,
  T: number,
  H: number,
  mask: MaskLike,
  row: number,
): Float32Array {
  const out = new Float32Array(H);
  const base = row * T * H;
  const mbase = row * T;
  if (pooling === 'cls') {
    out.set(hidden.subarray(base, base + H));
    return out;
  }
  if (pooling === 'last-token') {
    let last = -1;
    for (let t = T - 1; t >= 0; t--) {
      if (isReal(mask, mbase + t)) {
        last = t;
        break;
      }
    }
    if (last >= 0) out.set(hidden.subarray(base + last * H, base + (last + 1) * H));
    return out;
  }
  // mean over the real tokens
  const acc = new Float64Array(H);
  let n = 0;
  for (let t = 0; t < T; t++) {
    if (!isReal(mask, mbase + t)) continue;
    n++;
    const off = base + t * H;
    for (let h = 0; h < H; h++) acc[h] += hidden[off + h];
  }
  if (n > 0) for (let h = 0; h < H; h++) out[h] = acc[h] / n;
  return out;
}

/** Pool every row of [B, T, H]. */
export function pool(
  pooling: Exclude<Pooling, 'splade'>,
  hidden: Float32Array,
  dims: readonly [number, number, number],
  mask: MaskLike,
): Float32Array[] {
  const [B, T, H] = dims;
  const rows: Float32Array[] = [];
  for (let b = 0; b < B; b++) rows.push(poolRow(pooling, hidden, T, H, mask, b));
  return rows;
}

/** The hidden states of a row's real tokens, [tokens, H] row-major, in sequence order. */
export function tokenRows(hidden: Float32Array, T: number, H: number, mask: MaskLike, row: number): { tokens: number; values: Float32Array } {
  let tokens = 0;
  for (let t = 0; t < T; t++) if (isReal(mask, row * T + t)) tokens++;
  const values = new Float32Array(tokens * H);
  let k = 0;
  for (let t = 0; t < T; t++) {
    if (!isReal(mask, row * T + t)) continue;
    const off = (row * T + t) * H;
    values.set(hidden.subarray(off, off + H), k * H);
    k++;
  }
  return { tokens, values };
}

/** L2 norm of a vector. */
export function l2norm(v: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  return Math.sqrt(s);
}

/**
 * Matryoshka truncation to `dimensions` (when given), then L2 normalization (when `normalize`).
 * Returns a new array; the input is left alone. A zero vector stays zero.
 */
export function finishEmbedding(v: Float32Array, dimensions: number | undefined, normalize: boolean): Float32Array {
  const d = dimensions !== undefined && dimensions < v.length ? dimensions : v.length;
  const out = v.slice(0, d);
  if (normalize) {
    const n = l2norm(out);
    if (n > 0) for (let i = 0; i < d; i++) out[i] /= n;
  }
  return out;
}

/**
 * SPLADE pooling of one row of token logits [B, T, V]: for each vocabulary entry, the max over the
 * row's real tokens of log(1 + relu(logit)). Since log1p∘relu is monotone this equals
 * log1p(relu(max logit)), which costs one log per vocabulary entry. Zeros are dropped; indices
 * come out ascending.
 */
export function spladeRow(logits: Float32Array, T: number, V: number, mask: MaskLike, row: number): SparseVector {
  const max = new Float32Array(V); // starts at 0: relu floors everything at 0 anyway
  let any = false;
  for (let t = 0; t < T; t++) {
    if (!isReal(mask, row * T + t)) continue;
    any = true;
    const off = (row * T + t) * V;
    for (let v = 0; v < V; v++) {
      const x = logits[off + v];
      if (x > max[v]) max[v] = x;
    }
  }
  if (!any) return { indices: new Uint32Array(0), values: new Float32Array(0) };
  let nnz = 0;
  for (let v = 0; v < V; v++) {
    if (max[v] > 0) {
      max[v] = Math.log1p(max[v]); // float32 store: a denormal may round to 0 and is then dropped
      if (max[v] > 0) nnz++;
    }
  }
  const indices = new Uint32Array(nnz);
  const values = new Float32Array(nnz);
  let k = 0;
  for (let v = 0; v < V; v++) {
    if (max[v] > 0) {
      indices[k] = v;
      values[k] = max[v];
      k++;
    }
  }
  return { indices, values };
}

/** SPLADE pooling of every row of [B, T, V]. */
export function splade(logits: Float32Array, dims: readonly [number, number, number], mask: MaskLike): SparseVector[] {
  const [B, T, V] = dims;
  const rows: SparseVector[] = [];
  for (let b = 0; b < B; b++) rows.push(spladeRow(logits, T, V, mask, b));
  return rows;
}

/** A sparse vector as a dense one of `size` entries. */
export function densify(s: SparseVector, size: number): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < s.indices.length; i++) out[s.indices[i]] = s.values[i];
  return out;
}

export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/** Numerically stable softmax. */
export function softmax(logits: ArrayLike<number>): number[] {
  let m = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > m) m = logits[i];
  const e: number[] = new Array(logits.length);
  let s = 0;
  for (let i = 0; i < logits.length; i++) {
    e[i] = Math.exp(logits[i] - m);
    s += e[i];
  }
  for (let i = 0; i < e.length; i++) e[i] /= s;
  return e;
}

/**
 * Classifier scores as TEI computes them: the raw logits when `rawScores`, else sigmoid for a
 * single logit and softmax over the labels otherwise.
 */
export function classifierScores(logits: ArrayLike<number>, rawScores: boolean): number[] {
  if (rawScores) return Array.from(logits, Number);
  if (logits.length === 1) return [sigmoid(logits[0])];
  return softmax(logits);
}

/** Scores paired with their labels, sorted by score descending (ties keep label order). */
export function predictions(scores: readonly number[], id2label: readonly string[]): Prediction[] {
  const out = scores.map((score, i) => ({ score, label: id2label[i] ?? `LABEL_${i}` }));
  out.sort((a, b) => b.score - a.score);
  return out;
}
