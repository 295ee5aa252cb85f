/**
 * planChunks (src/child/batching/row-fanout.ts): how the rows of one Arrow request are cut into
 * Batch calls to a child: at most `maxRows` rows and `maxBytes` bytes per call (a row costs its
 * UTF-8 bytes plus 6 for the protobuf tag and length), a row larger than `maxBytes` alone.
 */
import assert from 'node:assert/strict';
import test from 'node:test';
import fc from 'fast-check';
import { planChunks } from '../../src/child/batching/row-fanout.js';

/** A TextSource of rows of these byte lengths; reading a row that does not exist throws. */
const texts = (bytes: readonly number[]) => ({
  length: bytes.length,
  bytesOf: (i: number) => {
    if (!(i >= 0 && i < bytes.length)) throw new RangeError(`row ${i} of ${bytes.length} read`);
    return bytes[i];
  },
});

test('planChunks cuts at maxRows rows: exactly maxRows per chunk, the rest in the last', () => {
  assert.deepEqual(planChunks(texts([1, 1, 1, 1, 1]), 2, 1e9), [
    [0, 2],
    [2, 4],
    [4, 5],
  ]);
  assert.deepEqual(planChunks(texts([1, 1, 1, 1]), 4, 1e9), [[0, 4]], 'maxRows rows fit in one chunk');
  assert.deepEqual(planChunks(texts([1, 1, 1]), 1, 1e9), [
    [0, 1],
    [1, 2],
    [2, 3],
  ]);
});

test('planChunks cuts at maxBytes, counting 6 bytes of framing per row', () => {
  // Each row costs 10 + 6 = 16 bytes: two fill 32 exactly, a third does not fit.
  assert.deepEqual(planChunks(texts([10, 10, 10, 10, 10]), 256, 32), [
    [0, 2],
    [2, 4],
    [4, 5],
  ]);
  assert.deepEqual(
    planChunks(texts([10, 10, 10]), 256, 31),
    [
      [0, 1],
      [1, 2],
      [2, 3],
    ],
    'one byte short of two rows: one row a chunk',
  );
  // Empty strings still cost their framing: 6 bytes each, two per 12-byte chunk.
  assert.deepEqual(planChunks(texts([0, 0, 0, 0]), 256, 12), [
    [0, 2],
    [2, 4],
  ]);
  // The count restarts after a cut: rows cost 26, 10, 10, 26, 10 against 36.
  assert.deepEqual(planChunks(texts([20, 4, 4, 20, 4]), 256, 36), [
    [0, 2],
    [2, 4],
    [4, 5],
  ]);
});

test('planChunks sends a row larger than maxBytes alone, and never an empty chunk', () => {
  assert.deepEqual(planChunks(texts([100]), 256, 40), [[0, 1]]);
  assert.deepEqual(planChunks(texts([100, 1, 1]), 256, 40), [
    [0, 1],
    [1, 3],
  ]);
  assert.deepEqual(planChunks(texts([1, 100, 1]), 256, 40), [
    [0, 1],
    [1, 2],
    [2, 3],
  ]);
  assert.deepEqual(planChunks(texts([]), 256, 40), []);
});

test('planChunks: chunks cover the rows in order, each within the limits and as full as the next row allows (property)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.nat({ max: 200 }), { maxLength: 60 }),
      fc.integer({ min: 1, max: 8 }),
      fc.integer({ min: 1, max: 400 }),
      (bytes, maxRows, maxBytes) => {
        const chunks = planChunks(texts(bytes), maxRows, maxBytes);
        const cost = (s: number, e: number) => bytes.slice(s, e).reduce((a, b) => a + b + 6, 0);
        let at = 0;
        for (const [s, e] of chunks) {
          assert.equal(s, at, 'contiguous, in order');
          assert.ok(e > s, 'not empty');
          assert.ok(e - s <= maxRows, 'at most maxRows rows');
          if (e - s > 1) assert.ok(cost(s, e) <= maxBytes, 'within maxBytes unless a single row');
          if (e < bytes.length) assert.ok(e - s === maxRows || cost(s, e + 1) > maxBytes, 'the next row did not fit');
          at = e;
        }
        assert.equal(at, bytes.length, 'every row in a chunk');
      },
    ),
    { numRuns: 300 },
  );
});
