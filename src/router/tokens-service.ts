/**
 * `teiplex.v1.TokenClassification` (proto/teiplex/v1/tokens.proto): PredictTokens, many inputs in
 * one message, each answered with its tokens (aggregation NONE) or its entities and its Metadata.
 * Inputs per message: at most --max-client-batch-size, as on /predict_tokens.
 */
import type * as grpc from '@grpc/grpc-js';
import { TeiplexError } from '../common/errors.js';
import { aggregateMetadata } from '../tei/metadata.js';
import type { PbAggregationStrategy, PbPredictTokensRequest, PbPredictTokensResponse, PbTokenPredictions } from '../tei/proto.js';
import type { AggregationStrategy, PredictTokensOptions, TokenPredictions } from '../tei/types.js';
import { pbMetadata, truncationDirection, unary, type Answer, type ServiceContext } from './grpc-service.js';

const STRATEGIES: Record<PbAggregationStrategy, AggregationStrategy> = {
  AGGREGATION_STRATEGY_NONE: 'none',
  AGGREGATION_STRATEGY_SIMPLE: 'simple',
  AGGREGATION_STRATEGY_FIRST: 'first',
  AGGREGATION_STRATEGY_MAX: 'max',
  AGGREGATION_STRATEGY_AVERAGE: 'average',
};

/** The engine's strategy for the message's enum; an unknown value is VALIDATION. */
export function aggregationOf(v: PbAggregationStrategy | number | undefined): AggregationStrategy {
  if (v === undefined) return 'none';
  const s = typeof v === 'string' && Object.hasOwn(STRATEGIES, v) ? STRATEGIES[v] : undefined;
  if (s === undefined) throw new TeiplexError('VALIDATION', `aggregation_strategy ${String(v)} is not one of ${Object.keys(STRATEGIES).join(', ')}`, { param: 'aggregation_strategy' });
  return s;
}

/** One input's answer as its message (metadata set by the caller). */
export function pbTokenPredictions(p: TokenPredictions): Omit<PbTokenPredictions, 'metadata'> {
  if ('tokens' in p) {
    return { tokens: p.tokens.map((t) => ({ token: t.token, token_id: t.tokenId, label: t.label, score: t.score, start: t.start, end: t.end })), entities: [] };
  }
  return { tokens: [], entities: p.entities.map((e) => ({ entity_group: e.entityGroup, score: e.score, word: e.word, start: e.start, end: e.end })) };
}

export function predictTokensOptions(req: PbPredictTokensRequest): PredictTokensOptions {
  return {
    truncate: req.truncate,
    truncationDirection: truncationDirection(req.truncation_direction),
    rawScores: req.raw_scores,
    aggregation: aggregationOf(req.aggregation_strategy),
  };
}

export function tokensServiceImplementation(ctx: ServiceContext): grpc.UntypedServiceImplementation {
  return {
    PredictTokens: unary(async (req: PbPredictTokensRequest): Promise<Answer<PbPredictTokensResponse>> => {
      const engine = ctx.engine();
      if (req.inputs.length > ctx.maxClientBatchSize) {
        throw new TeiplexError('VALIDATION', `batch size ${req.inputs.length} > maximum allowed batch size ${ctx.maxClientBatchSize}`, { param: 'inputs' });
      }
      const out = await engine.predictTokens(req.inputs, predictTokensOptions(req));
      const predictions = out.results.map((p, i) => ({ ...pbTokenPredictions(p), metadata: pbMetadata(out.metadata[i]!) }));
      const metadata = aggregateMetadata(out.metadata);
      return { response: { predictions }, metadata };
    }),
  };
}
