/**
 * Token classification (named-entity recognition): one input's per-token logits as per-token
 * predictions, or as entities aggregated the way transformers' TokenClassificationPipeline does.
 * Pure functions over the logits and the tokenizer's spans, so every rule is checkable alone.
 *
 * - Scores are the softmax of each token's logits (computed in float64 after subtracting the
 *   row's maximum), or the raw logits with `rawScores` (aggregation 'none' only). The label is the
 *   argmax (the first on a tie).
 * - Special tokens ([CLS], [SEP], ...) are left out. Offsets are character offsets into the input
 *   in Unicode code points (Python's str indices, the pipeline's `start`/`end`); in JavaScript,
 *   `Array.from(text).slice(start, end).join('')` is the span.
 * - 'none': every token with its label, `O` included.
 * - 'simple': each token labelled by its argmax, then grouped: a token joins the group before it
 *   when its tag (the label without `B-`/`I-`) is the same and it is not a `B-` label.
 * - 'first' / 'max' / 'average': tokens first grouped into words (a token continues the word
 *   before it when the tokenizer's word id is the same; an unknown token is a word of its own),
 *   each word labelled by its first token's scores, by the scores of its token with the highest
 *   score, or by the mean of its tokens' scores; then words grouped as in 'simple'.
 * - A group's score is the mean of its members' scores, its word the members' text joined by the
 *   tokenizer's decoder (WordPiece: `##` pieces glued on), its label the tag; groups tagged `O`
 *   are left out (the pipeline's default ignore_labels).
 */
import { TeiplexError } from '../common/errors.js';
import type { AggregationStrategy, EntityPrediction, TokenPrediction, TokenPredictions } from '../tei/types.js';
import type { TokenSpans } from './tokenization.js';

export interface TokenClassifyInput {
  /** The caller's input text (offsets index it in code points). */
  text: string;
  /** The token ids given to the model. */
  ids: readonly number[];
  spans: TokenSpans;
  /** tokens x labels, row-major: the model's logits of this input's tokens. */
  logits: Float32Array;
  labels: readonly string[];
  unkId: number | undefined;
  rawScores: boolean;
  aggregation: AggregationStrategy;
  /** Joins token strings into text (the tokenizer's decoder). */
  tokensToString(tokens: string[]): string;
}

/** The softmax of logits[off .. off + n), in float64. */
export function softmax(logits: ArrayLike<number>, off: number, n: number): Float64Array {
  let max = -Infinity;
  for (let k = 0; k < n; k++) if (logits[off + k] > max) max = logits[off + k];
  const out = new Float64Array(n);
  let sum = 0;
  for (let k = 0; k < n; k++) sum += out[k] = Math.exp(logits[off + k] - max);
  for (let k = 0; k < n; k++) out[k] /= sum;
  return out;
}

/** The index of the largest value (the first of equal ones). */
export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let k = 1; k < v.length; k++) if (v[k] > v[best]) best = k;
  return best;
}

/** `B-` / `I-` and the tag of a label; a label without either is an inside mark of itself (`O`). */
export function tagOf(label: string): { bi: 'B' | 'I'; tag: string } {
  if (label.startsWith('B-')) return { bi: 'B', tag: label.slice(2) };
  if (label.startsWith('I-')) return { bi: 'I', tag: label.slice(2) };
  return { bi: 'I', tag: label };
}

interface PreEntity {
  word: string;
  scores: Float64Array;
  start: number;
  end: number;
  isSubword: boolean;
}

interface Labelled {
  label: string;
  score: number;
  word: string;
  start: number;
  end: number;
}

function entityGroup(members: readonly Labelled[], join: (words: string[]) => string): EntityPrediction {
  let sum = 0;
  for (const m of members) sum += m.score;
  const first = members[0]!;
  const dash = first.label.indexOf('-');
  return {
    entityGroup: dash >= 0 ? first.label.slice(dash + 1) : first.label,
    score: sum / members.length,
    word: join(members.map((m) => m.word)),
    start: first.start,
    end: members[members.length - 1]!.end,
  };
}

/** Group labelled tokens or words into entities (the pipeline's group_entities), `O` left out. */
export function groupEntities(items: readonly Labelled[], join: (words: string[]) => string): EntityPrediction[] {
  const groups: EntityPrediction[] = [];
  let current: Labelled[] = [];
  for (const item of items) {
    if (current.length === 0) {
      current.push(item);
      continue;
    }
    const { bi, tag } = tagOf(item.label);
    const last = tagOf(current[current.length - 1]!.label);
    if (tag === last.tag && bi !== 'B') current.push(item);
    else {
      groups.push(entityGroup(current, join));
      current = [item];
    }
  }
  if (current.length > 0) groups.push(entityGroup(current, join));
  return groups.filter((g) => g.entityGroup !== 'O');
}

function aggregateWord(word: readonly PreEntity[], strategy: 'first' | 'max' | 'average', labels: readonly string[], join: (words: string[]) => string): Labelled {
  let scores: Float64Array;
  if (strategy === 'first') scores = word[0]!.scores;
  else if (strategy === 'max') {
    let best = word[0]!;
    let bestMax = best.scores[argmax(best.scores)]!;
    for (const e of word) {
      const m = e.scores[argmax(e.scores)]!;
      if (m > bestMax) {
        best = e;
        bestMax = m;
      }
    }
    scores = best.scores;
  } else {
    scores = new Float64Array(labels.length);
    for (const e of word) for (let k = 0; k < scores.length; k++) scores[k] += e.scores[k]!;
    for (let k = 0; k < scores.length; k++) scores[k] /= word.length;
  }
  const idx = argmax(scores);
  return { label: labels[idx]!, score: scores[idx]!, word: join(word.map((e) => e.word)), start: word[0]!.start, end: word[word.length - 1]!.end };
}

/** One input's answer: its tokens (aggregation 'none') or its entities. */
export function classifyTokens(x: TokenClassifyInput): TokenPredictions {
  const L = x.labels.length;
  const n = x.ids.length;
  if (x.logits.length !== n * L) throw new TeiplexError('BACKEND', `the model gave ${x.logits.length} logits for ${n} tokens of ${L} labels`);
  if (x.rawScores && x.aggregation !== 'none') {
    throw new TeiplexError('VALIDATION', '`raw_scores` can only be used with `aggregation_strategy` "none": entities are aggregated from probabilities', { param: 'raw_scores' });
  }
  const chars = /[\uD800-\uDFFF]/.test(x.text) ? Array.from(x.text) : null;
  const slice = (a: number, b: number): string => (chars !== null ? chars.slice(a, b).join('') : x.text.slice(a, b));
  if (x.aggregation === 'none') {
    const tokens: TokenPrediction[] = [];
    for (let t = 0; t < n; t++) {
      if (x.spans.special[t] === 1) continue;
      const idx = argmax(x.logits.subarray(t * L, (t + 1) * L));
      const score = x.rawScores ? x.logits[t * L + idx]! : softmax(x.logits, t * L, L)[idx]!;
      const [start, end] = x.spans.offsets[t]!;
      tokens.push({ token: x.spans.tokens[t]!, tokenId: x.ids[t]!, label: x.labels[idx]!, score, start, end });
    }
    return { tokens };
  }
  const pre: PreEntity[] = [];
  let lastWord: number | null = null;
  for (let t = 0; t < n; t++) {
    if (x.spans.special[t] === 1) continue;
    const [start, end] = x.spans.offsets[t]!;
    const unknown = x.unkId !== undefined && x.ids[t] === x.unkId;
    const wordId = x.spans.wordIds[t] ?? null;
    pre.push({
      // An unknown token's text is what it covers in the input (the pipeline's rule).
      word: unknown ? slice(start, end) : x.spans.tokens[t]!,
      scores: softmax(x.logits, t * L, L),
      start,
      end,
      isSubword: !unknown && pre.length > 0 && wordId !== null && wordId === lastWord,
    });
    lastWord = wordId;
  }
  const join = (words: string[]): string => x.tokensToString(words);
  let labelled: Labelled[];
  if (x.aggregation === 'simple') {
    labelled = pre.map((p) => {
      const idx = argmax(p.scores);
      return { label: x.labels[idx]!, score: p.scores[idx]!, word: p.word, start: p.start, end: p.end };
    });
  } else {
    labelled = [];
    let word: PreEntity[] = [];
    for (const p of pre) {
      if (word.length > 0 && !p.isSubword) {
        labelled.push(aggregateWord(word, x.aggregation, x.labels, join));
        word = [];
      }
      word.push(p);
    }
    if (word.length > 0) labelled.push(aggregateWord(word, x.aggregation, x.labels, join));
  }
  return { entities: groupEntities(labelled, join) };
}
