/**
 * Does the new version compute the same thing as the old one? Pure: given what each version
 * answered to the same probe texts, the checks a swap must pass, with their figures. The output
 * kind (the model type, and dense or sparse for embeddings), the pooling and the dimension must
 * match; then the cosine of each text's two vectors is taken (score vectors for classifiers and
 * rerankers), and when the caller gave `min_cosine` both the mean and the minimum must reach it.
 * Without `min_cosine` the figures are reported and do not refuse.
 */

/** What a version produced for the probe texts. */
export interface ProbeAnswer {
  /** `embedding/dense`, `embedding/sparse`, `classifier`, `reranker`. */
  kind: string;
  /** The pooling the spec asks for, or `model default`. */
  pooling: string;
  /** Length of a dense vector (number of labels for scores); undefined for sparse output. */
  dims: number | undefined;
  /** One vector per probe text, in order. */
  vectors: ProbeVector[];
}

/** A dense vector, or a sparse one (ascending indices). */
export type ProbeVector = ArrayLike<number> | { indices: ArrayLike<number>; values: ArrayLike<number> };

export interface CheckResult {
  check: 'output_kind' | 'pooling' | 'dimensions' | 'cosine';
  passed: boolean;
  old: string | number | null;
  new: string | number | null;
  detail?: string;
}

export interface CosineFigures {
  mean: number;
  min: number;
  /** The probe text with the lowest cosine (its index in the probe set). */
  min_index: number;
  per_text: number[];
  /** The threshold asked for, or null (figures only). */
  min_cosine: number | null;
}

export interface Comparison {
  passed: boolean;
  checks: CheckResult[];
  cosine: CosineFigures | null;
  /** Why it failed (the first failed check, with figures); undefined when passed. */
  reason?: string;
}

function isSparse(v: ProbeVector): v is { indices: ArrayLike<number>; values: ArrayLike<number> } {
  return (v as { indices?: unknown }).indices !== undefined;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** Dot product of two sparse vectors (ascending indices: one merge pass). */
function sparseDot(a: { indices: ArrayLike<number>; values: ArrayLike<number> }, b: { indices: ArrayLike<number>; values: ArrayLike<number> }): number {
  let s = 0;
  let i = 0;
  let j = 0;
  while (i < a.indices.length && j < b.indices.length) {
    const x = a.indices[i]!;
    const y = b.indices[j]!;
    if (x === y) s += a.values[i++]! * b.values[j++]!;
    else if (x < y) i++;
    else j++;
  }
  return s;
}

/**
 * Cosine similarity of two vectors of the same kind. Two zero vectors are the same (1); a zero
 * vector against a non-zero one is not (0). Dense vectors of different lengths: NaN (the
 * dimension check refuses first).
 */
export function cosine(a: ProbeVector, b: ProbeVector): number {
  let ab: number;
  let aa: number;
  let bb: number;
  if (isSparse(a) && isSparse(b)) {
    ab = sparseDot(a, b);
    aa = dot(a.values, a.values);
    bb = dot(b.values, b.values);
  } else if (!isSparse(a) && !isSparse(b)) {
    if (a.length !== b.length) return Number.NaN;
    ab = dot(a, b);
    aa = dot(a, a);
    bb = dot(b, b);
  } else {
    return Number.NaN;
  }
  if (aa === 0 && bb === 0) return 1;
  if (aa === 0 || bb === 0) return 0;
  // Rounding can carry a cosine of identical vectors a hair past 1.
  return Math.max(-1, Math.min(1, ab / Math.sqrt(aa * bb)));
}

const fmt = (x: number): string => x.toFixed(6);

/** The checks, in order; the cosine only once kind and dimensions match. */
export function compareAnswers(oldA: ProbeAnswer, newA: ProbeAnswer, minCosine?: number): Comparison {
  if (oldA.vectors.length !== newA.vectors.length) throw new Error(`probe answers differ in length: ${oldA.vectors.length} vs ${newA.vectors.length}`);
  const checks: CheckResult[] = [
    { check: 'output_kind', passed: oldA.kind === newA.kind, old: oldA.kind, new: newA.kind },
    { check: 'pooling', passed: oldA.pooling === newA.pooling, old: oldA.pooling, new: newA.pooling },
    { check: 'dimensions', passed: oldA.dims === newA.dims, old: oldA.dims ?? null, new: newA.dims ?? null },
  ];
  let cos: CosineFigures | null = null;
  if (checks[0]!.passed && checks[2]!.passed) {
    const perText = oldA.vectors.map((v, i) => cosine(v, newA.vectors[i]!));
    let min = Number.POSITIVE_INFINITY;
    let minIndex = 0;
    perText.forEach((c, i) => {
      if (c < min) {
        min = c;
        minIndex = i;
      }
    });
    const mean = perText.reduce((s, c) => s + c, 0) / perText.length;
    cos = { mean, min, min_index: minIndex, per_text: perText, min_cosine: minCosine ?? null };
    const reached = minCosine === undefined || (mean >= minCosine && min >= minCosine);
    checks.push({
      check: 'cosine',
      passed: reached,
      old: null,
      new: null,
      detail: `mean ${fmt(mean)}, min ${fmt(min)} (probe text ${minIndex})${minCosine === undefined ? ', no min_cosine asked' : `, min_cosine ${minCosine}`}`,
    });
  }
  const failed = checks.find((c) => !c.passed);
  if (failed === undefined) return { passed: true, checks, cosine: cos };
  const reason =
    failed.check === 'cosine'
      ? `cosine below min_cosine ${minCosine}: ${failed.detail}`
      : `${failed.check.replace('_', ' ')} differs: old ${failed.old ?? 'none'}, new ${failed.new ?? 'none'}`;
  return { passed: false, checks, cosine: cos, reason };
}
