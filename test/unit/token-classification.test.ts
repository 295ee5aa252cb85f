/**
 * Token classification's pure rules (src/router/token-classification.ts) on hand-made logits,
 * each expected answer worked out by hand from transformers' TokenClassificationPipeline: softmax
 * scores, special tokens left out, code-point offsets, `simple` grouping by B-/I- tags, word-level
 * `first` / `max` / `average`, `O` groups dropped, an unknown token's text taken from the input,
 * and the refusals (raw scores with aggregation, logits that do not fit the tokens).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TeiplexError } from '../../src/common/errors.js';
import { argmax, classifyTokens, groupEntities, softmax, tagOf, type TokenClassifyInput } from '../../src/router/token-classification.js';
import type { AggregationStrategy, EntityPrediction } from '../../src/tei/types.js';

const LABELS = ['O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC'];
const L = LABELS.length;

/** Logits that put `high` on one label and 0 elsewhere. */
function onehot(label: string, high = 4): number[] {
  const row = new Array<number>(L).fill(0);
  row[LABELS.indexOf(label)] = high;
  return row;
}

/** softmax of a onehot row: the chosen label's probability. */
const p = (high: number): number => Math.exp(high) / (Math.exp(high) + L - 1);

/**
 * "Jo Smithson 🙂 in Köln": [CLS] jo smith ##son [UNK] in koln [SEP]; word ids 0 1 1 2 3 4;
 * offsets in code points (🙂 is one code point, two UTF-16 units).
 */
function input(rows: number[][], aggregation: AggregationStrategy, rawScores = false): TokenClassifyInput {
  return {
    text: 'Jo Smithson 🙂 in Köln',
    ids: [101, 1, 2, 3, 100, 4, 5, 102],
    spans: {
      tokens: ['[CLS]', 'jo', 'smith', '##son', '[UNK]', 'in', 'koln', '[SEP]'],
      offsets: [[0, 0], [0, 2], [3, 8], [8, 11], [12, 13], [14, 16], [17, 21], [0, 0]],
      wordIds: [null, 0, 1, 1, 2, 3, 4, null],
      special: [1, 0, 0, 0, 0, 0, 0, 1],
    },
    logits: Float32Array.from(rows.flat()),
    labels: LABELS,
    unkId: 100,
    rawScores,
    aggregation,
    // WordPiece's decoder, as transformers' convert_tokens_to_string: `##` glued, else a space.
    tokensToString: (t) => t.join(' ').replace(/ ##/g, ''),
  };
}

const ROWS = [
  onehot('O'), // [CLS]
  onehot('B-PER', 3), // jo
  onehot('I-PER', 2), // smith
  onehot('B-LOC', 5), // ##son: the word's tokens disagree
  onehot('I-LOC', 1), // [UNK]
  onehot('O', 6), // in
  onehot('B-LOC', 4), // koln
  onehot('O'), // [SEP]
];

function near(got: EntityPrediction[], want: EntityPrediction[]): void {
  assert.equal(got.length, want.length, JSON.stringify(got));
  got.forEach((g, i) => {
    const { score, ...rest } = g;
    const { score: ws, ...wrest } = want[i]!;
    assert.deepEqual(rest, wrest, `entity ${i}`);
    assert.ok(Math.abs(score - ws) < 1e-9, `entity ${i}: score ${score} vs ${ws}`);
  });
}

describe('token classification rules', () => {
  test('softmax, argmax (first of equal) and tags', () => {
    const s = softmax([1, 2, 3, 0], 1, 2);
    assert.ok(Math.abs(s[0]! - 1 / (1 + Math.E)) < 1e-12 && Math.abs(s[0]! + s[1]! - 1) < 1e-12);
    assert.equal(argmax([1, 5, 5, 2]), 1);
    assert.deepEqual(tagOf('B-PER'), { bi: 'B', tag: 'PER' });
    assert.deepEqual(tagOf('I-LOC'), { bi: 'I', tag: 'LOC' });
    assert.deepEqual(tagOf('O'), { bi: 'I', tag: 'O' });
  });

  test("'none': every token but the special ones, with its label, probability and code-point offsets", () => {
    const out = classifyTokens(input(ROWS, 'none'));
    assert.ok('tokens' in out);
    assert.deepEqual(
      out.tokens.map((t) => [t.token, t.tokenId, t.label, t.start, t.end]),
      [
        ['jo', 1, 'B-PER', 0, 2],
        ['smith', 2, 'I-PER', 3, 8],
        ['##son', 3, 'B-LOC', 8, 11],
        ['[UNK]', 100, 'I-LOC', 12, 13],
        ['in', 4, 'O', 14, 16],
        ['koln', 5, 'B-LOC', 17, 21],
      ],
    );
    const chars = Array.from('Jo Smithson 🙂 in Köln');
    assert.equal(chars.slice(12, 13).join(''), '🙂');
    assert.equal(chars.slice(17, 21).join(''), 'Köln');
    for (const [i, high] of [3, 2, 5, 1, 6, 4].entries()) assert.ok(Math.abs(out.tokens[i]!.score - p(high)) < 1e-9, `token ${i}`);
    const raw = classifyTokens(input(ROWS, 'none', true));
    assert.ok('tokens' in raw);
    assert.deepEqual(raw.tokens.map((t) => t.score), [3, 2, 5, 1, 6, 4]);
  });

  test("'simple': B- starts a group, I- of the same tag continues it, O dropped; an unknown token's word is its text", () => {
    const out = classifyTokens(input(ROWS, 'simple'));
    assert.ok('entities' in out);
    near(out.entities, [
      { entityGroup: 'PER', score: (p(3) + p(2)) / 2, word: 'jo smith', start: 0, end: 8 },
      // WordPiece's decoder keeps a leading `##` on the first token it joins.
      { entityGroup: 'LOC', score: (p(5) + p(1)) / 2, word: '##son 🙂', start: 8, end: 13 },
      { entityGroup: 'LOC', score: p(4), word: 'koln', start: 17, end: 21 },
    ]);
  });

  test("'first' / 'max' / 'average': words first (smith ##son is one word), then groups", () => {
    const first = classifyTokens(input(ROWS, 'first'));
    assert.ok('entities' in first);
    // smithson takes smith's I-PER: it continues jo's PER group.
    near(first.entities, [
      { entityGroup: 'PER', score: (p(3) + p(2)) / 2, word: 'jo smithson', start: 0, end: 11 },
      { entityGroup: 'LOC', score: p(1), word: '🙂', start: 12, end: 13 },
      { entityGroup: 'LOC', score: p(4), word: 'koln', start: 17, end: 21 },
    ]);
    const max = classifyTokens(input(ROWS, 'max'));
    assert.ok('entities' in max);
    // ##son's B-LOC (5) beats smith's I-PER (2): smithson is B-LOC and starts a group; 🙂 (I-LOC) joins it.
    near(max.entities, [
      { entityGroup: 'PER', score: p(3), word: 'jo', start: 0, end: 2 },
      { entityGroup: 'LOC', score: (p(5) + p(1)) / 2, word: 'smithson 🙂', start: 3, end: 13 },
      { entityGroup: 'LOC', score: p(4), word: 'koln', start: 17, end: 21 },
    ]);
    const average = classifyTokens(input(ROWS, 'average'));
    assert.ok('entities' in average);
    // mean of smith and ##son: B-LOC (e^5) is the larger half.
    const d2 = Math.exp(2) + L - 1;
    const d5 = Math.exp(5) + L - 1;
    const bloc = (1 / d2 + Math.exp(5) / d5) / 2;
    near(average.entities, [
      { entityGroup: 'PER', score: p(3), word: 'jo', start: 0, end: 2 },
      { entityGroup: 'LOC', score: (bloc + p(1)) / 2, word: 'smithson 🙂', start: 3, end: 13 },
      { entityGroup: 'LOC', score: p(4), word: 'koln', start: 17, end: 21 },
    ]);
  });

  test('groupEntities: a B- after the same tag starts a new group; O groups are left out', () => {
    const e = (label: string, score: number, word: string, start: number) => ({ label, score, word, start, end: start + 1 });
    const out = groupEntities([e('B-PER', 1, 'a', 0), e('B-PER', 0.5, 'b', 1), e('I-PER', 0, 'c', 2), e('O', 1, 'd', 3), e('I-LOC', 0.25, 'e', 4)], (w) => w.join(' '));
    assert.deepEqual(out, [
      { entityGroup: 'PER', score: 1, word: 'a', start: 0, end: 1 },
      { entityGroup: 'PER', score: 0.25, word: 'b c', start: 1, end: 3 },
      { entityGroup: 'LOC', score: 0.25, word: 'e', start: 4, end: 5 },
    ]);
  });

  test('refusals: raw scores with aggregation, logits that do not fit the tokens', () => {
    assert.throws(
      () => classifyTokens(input(ROWS, 'simple', true)),
      (e: unknown) => e instanceof TeiplexError && e.code === 'VALIDATION' && /raw_scores/.test(e.message),
    );
    assert.throws(
      () => classifyTokens(input(ROWS.slice(1), 'none')),
      (e: unknown) => e instanceof TeiplexError && e.code === 'BACKEND' && /35 logits for 8 tokens of 5 labels/.test(e.message),
    );
  });
});
