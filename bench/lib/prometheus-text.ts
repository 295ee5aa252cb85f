/**
 * Reading Prometheus' text exposition format in the bench scripts: the samples of one metric
 * with their labels, and their sum over a label filter.
 */

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

/** Every sample of `metric` (exact name: a histogram's `_bucket` series is its own name). */
export function metricSamples(text: string, metric: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (m === null || m[1] !== metric) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]));
    out.push({ labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of the samples of `metric` whose labels include every pair of `labels`. */
export function metricSum(text: string, metric: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const s of metricSamples(text, metric)) {
    if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}
