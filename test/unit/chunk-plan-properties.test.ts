/**
 * Properties of the multiplexer's row chunking (src/child/batching/row-fanout.ts planChunks),
 * fast-check with fixed seeds and bounded runs. Its contract: [start, end) ranges that cover
 * [0, n) exactly, contiguous and in order, none empty; each of at most `maxRows` rows and at most
 * `maxBytes` bytes (a row costing its UTF-8 bytes plus 6 for the protobuf tag and length) unless
 * one row alone is larger; and greedy: a chunk ends only where the next row would break a limit.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { planChunks } from '../../src/child/batching/row-fanout.js';

/** What planChunks reads of a TextSource: a count and each row's bytes. */
const source = (sizes: readonly number[]) => ({ length: sizes.length, bytesOf: (i: number) => sizes[i] });
const ROW_OVERHEAD = 6;

const input = fc.record({
  sizes: fc.array(fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 5000 })), { maxLength: 200 }),
  maxRows: fc.integer({ min: 1, max: 50 }),
  maxBytes: fc.integer({ min: 1, max: 2000 }),
});

const bytes = (sizes: readonly number[], s: number, e: number): number => sizes.slice(s, e).reduce((a, b) => a + b + ROW_OVERHEAD, 0);

test('planChunks: the chunks cover [0, n) exactly, contiguous, in order, none empty', () => {
  fc.assert(
    fc.property(input, ({ sizes, maxRows, maxBytes }) => {
      const chunks = planChunks(source(sizes), maxRows, maxBytes);
      let next = 0;
      for (const [s, e] of chunks) {
        assert.equal(s, next, `chunk [${s}, ${e}) starts where the previous one ended`);
        assert.ok(e > s, `chunk [${s}, ${e}) not empty`);
        next = e;
      }
      assert.equal(next, sizes.length);
      if (sizes.length === 0) assert.deepEqual(chunks, []);
    }),
    { seed: 8101, numRuns: 500 },
  );
});

test('planChunks: each chunk holds at most maxRows rows and at most maxBytes bytes, unless it is one row larger than maxBytes', () => {
  fc.assert(
    fc.property(input, ({ sizes, maxRows, maxBytes }) => {
      for (const [s, e] of planChunks(source(sizes), maxRows, maxBytes)) {
        assert.ok(e - s <= maxRows, `[${s}, ${e}) over ${maxRows} rows`);
        const b = bytes(sizes, s, e);
        if (e - s > 1) assert.ok(b <= maxBytes, `[${s}, ${e}) holds ${b} bytes > ${maxBytes}`);
        else if (b > maxBytes) assert.ok(sizes[s] + ROW_OVERHEAD > maxBytes, 'a lone row over the budget is one that does not fit any chunk');
      }
    }),
    { seed: 8102, numRuns: 500 },
  );
});

test('planChunks: greedy: a chunk ends only where adding the next row would pass maxRows or maxBytes (so no more chunks than needed)', () => {
  fc.assert(
    fc.property(input, ({ sizes, maxRows, maxBytes }) => {
      const chunks = planChunks(source(sizes), maxRows, maxBytes);
      for (const [s, e] of chunks.slice(0, -1)) {
        const rowsFull = e + 1 - s > maxRows;
        const bytesFull = bytes(sizes, s, e + 1) > maxBytes;
        assert.ok(rowsFull || bytesFull, `[${s}, ${e}) could have taken row ${e} (${sizes[e]} bytes) under ${maxRows} rows / ${maxBytes} bytes`);
      }
      // Lower bound on the count: no split within the limits has fewer chunks than ceil(n / maxRows).
      assert.ok(chunks.length >= Math.ceil(sizes.length / maxRows));
    }),
    { seed: 8103, numRuns: 500 },
  );
});
