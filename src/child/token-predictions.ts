/**
 * A child's teiplex.v1.TokenPredictions message as the Engine's TokenPredictions, and the
 * aggregation strategy as the message's enum: `tokens` when the request asked for no aggregation,
 * `entities` otherwise (the message carries both lists; the request decides which is the answer).
 */
import type { PbAggregationStrategy, PbTokenPredictions } from '../tei/proto.js';
import type { AggregationStrategy, TokenPredictions } from '../tei/types.js';

export function pbAggregation(s: AggregationStrategy): PbAggregationStrategy {
  return `AGGREGATION_STRATEGY_${s.toUpperCase()}` as PbAggregationStrategy;
}

export function tokenPredictionsOf(p: PbTokenPredictions, aggregation: AggregationStrategy): TokenPredictions {
  if (aggregation === 'none') {
    return { tokens: (p.tokens ?? []).map((t) => ({ token: t.token, tokenId: t.token_id, label: t.label, score: t.score, start: t.start, end: t.end })) };
  }
  return { entities: (p.entities ?? []).map((e) => ({ entityGroup: e.entity_group, score: e.score, word: e.word, start: e.start, end: e.end })) };
}
