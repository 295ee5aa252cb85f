/**
 * Splitting a request into child calls and putting the answers back in order: inputs cut into
 * chunks of at most the child's batch size, chunks run with bounded concurrency, results
 * concatenated in input order. The first failure fails the whole request (no chunk starts after
 * it); nothing is dropped silently.
 */

/** `items` in consecutive chunks of at most `size` (at least 1). */
export function chunk<T>(items: readonly T[], size: number): T[][] {
  const n = Math.max(1, Math.floor(size));
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += n) out.push(items.slice(i, i + n));
  return out;
}

/** fn over every item with at most `limit` in flight; results in item order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  if (items.length === 1) return [await fn(items[0], 0)];
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i], i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker);
  await Promise.all(workers);
  return results;
}

/**
 * Run `fn` on chunks of `items` of at most `size`, at most `limit` chunks at once, and flatten
 * the per-chunk result lists back into one list in input order. `offset` is the chunk's first
 * input's index.
 */
export async function fanOut<T, R>(items: readonly T[], size: number, limit: number, fn: (chunk: T[], offset: number) => Promise<R[]>): Promise<R[]> {
  const parts = chunk(items, size);
  const n = Math.max(1, Math.floor(size));
  const answers = await mapLimit(parts, limit, (c, k) => fn(c, k * n));
  return answers.length === 1 ? answers[0] : answers.flat();
}
