/**
 * Small statistics shared by the bench scripts: the q-quantile of a sample (nearest rank, no
 * interpolation; NaN for an empty sample).
 */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}
