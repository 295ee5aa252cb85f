/**
 * Properties of the router queue's batch planner (src/router/queue.ts planCuts), fast-check with
 * fixed seeds and bounded runs. The contract (the function's comment and the queue's header):
 * the cuts split the ascending lengths into consecutive, non-empty batches covering every input
 * once, in order; a batch holds at most `maxBatchRequests` inputs and at most `maxBatchTokens`
 * padded tokens (count x longest) unless it is a single input longer than the budget; among all
 * such splits it has the least cost sum(overhead + count x longest x (1 + longest / scale)).
 * The last one is checked against an exhaustive search over every split of up to 9 inputs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { planCuts } from '../../src/router/queue.js';

interface Limits {
  maxBatchTokens: number;
  maxBatchRequests?: number;
  batchOverheadTokens: number;
  attentionScale: number;
}

const limits: fc.Arbitrary<Limits> = fc.record(
  {
    maxBatchTokens: fc.integer({ min: 1, max: 400 }),
    maxBatchRequests: fc.integer({ min: 1, max: 6 }),
    batchOverheadTokens: fc.integer({ min: 0, max: 64 }),
    attentionScale: fc.constantFrom(64, 1152, Infinity),
  },
  { requiredKeys: ['maxBatchTokens', 'batchOverheadTokens', 'attentionScale'] },
);
const sortedLengths = (maxLength: number) => fc.array(fc.integer({ min: 1, max: 120 }), { maxLength }).map((a) => [...a].sort((x, y) => x - y));

function batches(cuts: number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let k = 0; k + 1 < cuts.length; k++) out.push([cuts[k], cuts[k + 1]]);
  return out;
}

function allowed(lengths: readonly number[], [s, e]: [number, number], lim: Limits): boolean {
  const count = e - s;
  if (count === 1) return true;
  return count <= (lim.maxBatchRequests ?? Infinity) && count * lengths[e - 1] <= lim.maxBatchTokens;
}

function cost(lengths: readonly number[], cuts: number[], lim: Limits): number {
  return batches(cuts).reduce((sum, [s, e]) => {
    const longest = lengths[e - 1];
    return sum + lim.batchOverheadTokens + (e - s) * longest * (1 + longest / lim.attentionScale);
  }, 0);
}

/** The least cost over every split within the limits (2^(n-1) of them). */
function bruteForce(lengths: readonly number[], lim: Limits): number {
  const n = lengths.length;
  if (n === 0) return 0;
  let best = Infinity;
  for (let mask = 0; mask < 1 << (n - 1); mask++) {
    const cuts = [0];
    for (let i = 1; i < n; i++) if (mask & (1 << (i - 1))) cuts.push(i);
    cuts.push(n);
    if (batches(cuts).every((b) => allowed(lengths, b, lim))) best = Math.min(best, cost(lengths, cuts, lim));
  }
  return best;
}

test('planCuts: cuts start at 0, end at n and rise strictly (every input in exactly one batch, order kept)', () => {
  fc.assert(
    fc.property(sortedLengths(60), limits, (lengths, lim) => {
      const cuts = planCuts(lengths, lim);
      assert.equal(cuts[0], 0);
      assert.equal(cuts[cuts.length - 1], lengths.length);
      for (let k = 1; k < cuts.length; k++) assert.ok(cuts[k] > cuts[k - 1], `cuts ${JSON.stringify(cuts)} rise strictly`);
    }),
    { seed: 7101, numRuns: 500 },
  );
});

test('planCuts: each batch within maxBatchRequests and maxBatchTokens (count x longest), unless a single input over the budget', () => {
  fc.assert(
    fc.property(sortedLengths(60), limits, (lengths, lim) => {
      const cuts = planCuts(lengths, lim);
      for (const [s, e] of batches(cuts)) {
        assert.ok(allowed(lengths, [s, e], lim), `batch [${s}, ${e}) of ${JSON.stringify(lengths.slice(s, e))} breaks ${JSON.stringify(lim)}`);
      }
    }),
    { seed: 7102, numRuns: 500 },
  );
});

test('planCuts: its split costs no more than the best of every split within the limits (exhaustive, up to 9 inputs)', () => {
  fc.assert(
    fc.property(sortedLengths(9), limits, (lengths, lim) => {
      const cuts = planCuts(lengths, lim);
      const got = cost(lengths, cuts, lim);
      const best = bruteForce(lengths, lim);
      assert.ok(got <= best * (1 + 1e-12) + 1e-9, `cost ${got} > best ${best} for ${JSON.stringify(lengths)} ${JSON.stringify(lim)}: cuts ${JSON.stringify(cuts)}`);
    }),
    { seed: 7103, numRuns: 400 },
  );
});

test('planCuts: without limits that bind and with any batch overhead, equal lengths make one batch; with a huge overhead, one batch whenever the limits allow it', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 100 }), (n, len) => {
      const lengths = new Array<number>(n).fill(len);
      assert.deepEqual(planCuts(lengths, { maxBatchTokens: 1e9, batchOverheadTokens: 1, attentionScale: 1152 }).length, 2);
    }),
    { seed: 7104, numRuns: 100 },
  );
  fc.assert(
    fc.property(sortedLengths(30).filter((l) => l.length > 0), (lengths) => {
      assert.deepEqual(planCuts(lengths, { maxBatchTokens: 1e9, batchOverheadTokens: 1e12, attentionScale: 1152 }), [0, lengths.length]);
    }),
    { seed: 7105, numRuns: 100 },
  );
});
