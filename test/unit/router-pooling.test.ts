import assert from 'node:assert/strict';
import test from 'node:test';
import {
  classifierScores,
  densify,
  finishEmbedding,
  l2norm,
  pool,
  poolRow,
  predictions,
  sigmoid,
  softmax,
  splade,
  tokenRows,
} from '../../src/router/pooling.js';

// [B=2, T=3, H=2]; row 0 has 2 real tokens, row 1 has 3.
const hidden = new Float32Array([
  1, 2, 3, 4, 100, 100, // row 0: tokens (1,2) (3,4) pad (100,100)
  5, 6, 7, 8, 9, 10, // row 1
]);
const mask = [1, 1, 0, 1, 1, 1];

test('cls pooling takes the first token of each row', () => {
  const rows = pool('cls', hidden, [2, 3, 2], mask);
  assert.deepEqual(Array.from(rows[0]), [1, 2]);
  assert.deepEqual(Array.from(rows[1]), [5, 6]);
});

test('mean pooling averages the real tokens only', () => {
  const rows = pool('mean', hidden, [2, 3, 2], mask);
  assert.deepEqual(Array.from(rows[0]), [2, 3]);
  assert.deepEqual(Array.from(rows[1]), [7, 8]);
});

test('last-token pooling takes the last real token', () => {
  assert.deepEqual(Array.from(poolRow('last-token', hidden, 3, 2, mask, 0)), [3, 4]);
  assert.deepEqual(Array.from(poolRow('last-token', hidden, 3, 2, mask, 1)), [9, 10]);
});

test('masks may be bigint (int64 tensors)', () => {
  const big = new BigInt64Array(mask.map((m) => BigInt(m)));
  assert.deepEqual(Array.from(poolRow('mean', hidden, 3, 2, big, 0)), [2, 3]);
});

test('mean pooling does not depend on padding', () => {
  const alone = poolRow('mean', new Float32Array([1, 2, 3, 4]), 2, 2, [1, 1], 0);
  const padded = poolRow('mean', hidden, 3, 2, mask, 0);
  assert.deepEqual(Array.from(alone), Array.from(padded));
});

test('tokenRows returns the real tokens of a row', () => {
  const r = tokenRows(hidden, 3, 2, mask, 0);
  assert.equal(r.tokens, 2);
  assert.deepEqual(Array.from(r.values), [1, 2, 3, 4]);
});

test('dimensions truncate before normalizing; normalize defaults to unit length', () => {
  const v = new Float32Array([3, 4, 12]);
  const full = finishEmbedding(v, undefined, true);
  assert.ok(Math.abs(l2norm(full) - 1) < 1e-6);
  const cut = finishEmbedding(v, 2, true);
  assert.deepEqual(Array.from(cut).map((x) => +x.toFixed(6)), [0.6, 0.8]);
  const raw = finishEmbedding(v, 2, false);
  assert.deepEqual(Array.from(raw), [3, 4]);
  assert.deepEqual(Array.from(v), [3, 4, 12], 'input untouched');
  assert.deepEqual(Array.from(finishEmbedding(new Float32Array(3), undefined, true)), [0, 0, 0], 'zero stays zero');
});

test('SPLADE: max over real tokens of log(1 + relu(x)), zeros dropped, ascending indices', () => {
  // [B=1, T=3, V=4]; the third token is padding and must be ignored.
  const logits = new Float32Array([
    -1, 0.5, 2, -3,
    1, -0.5, 0, -2,
    50, 50, 50, 50,
  ]);
  const [s] = splade(logits, [1, 3, 4], [1, 1, 0]);
  assert.deepEqual(Array.from(s.indices), [0, 1, 2]);
  const expected = [Math.log1p(1), Math.log1p(0.5), Math.log1p(2)];
  s.values.forEach((v, i) => assert.ok(Math.abs(v - expected[i]) < 1e-6));
  const dense = densify(s, 4);
  assert.equal(dense[3], 0);
  assert.ok(Math.abs(dense[2] - Math.log1p(2)) < 1e-6);
});

test('SPLADE on an all-negative row is empty', () => {
  const [s] = splade(new Float32Array([-1, -2]), [1, 1, 2], [1]);
  assert.equal(s.indices.length, 0);
  assert.equal(s.values.length, 0);
});

test('classifier scores: softmax, sigmoid for one logit, raw when asked', () => {
  const sm = classifierScores([1, 2, 3], false);
  assert.ok(Math.abs(sm.reduce((a, b) => a + b, 0) - 1) < 1e-12);
  assert.ok(sm[2] > sm[1] && sm[1] > sm[0]);
  assert.deepEqual(classifierScores([0.3], false), [sigmoid(0.3)]);
  assert.deepEqual(classifierScores([1, 2], true), [1, 2]);
  assert.ok(Math.abs(sigmoid(-800)) < 1e-300 && sigmoid(800) === 1);
  assert.deepEqual(softmax([1000, 1000]), [0.5, 0.5]);
});

test('predictions are sorted by score descending with their labels', () => {
  const p = predictions([0.1, 0.7, 0.2], ['a', 'b', 'c']);
  assert.deepEqual(p.map((x) => x.label), ['b', 'c', 'a']);
  assert.deepEqual(predictions([0.5], []).map((x) => x.label), ['LABEL_0']);
});
