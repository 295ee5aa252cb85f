/**
 * The child methods the manager calls, with their protobuf codecs: tei.v1 (every child),
 * teiplex.v1.Batch (teiplex routers only) and grpc.health.v1 (health probes), from the same .proto
 * files and loader options as the router (src/tei/proto.ts), so messages are the shapes its Pb*
 * types describe; and the conversion of a child's metadata.
 */
import type { MethodDefinition } from '@grpc/proto-loader';
import { TeiplexError } from '../common/errors.js';
import {
  HEALTH_PROTO_FILE,
  loadProtos,
  routerPackageDefinition,
  type PbDecodeRequest,
  type PbDecodeResponse,
  type PbEmbedAllBatchResponse,
  type PbEmbedAllResponse,
  type PbEmbedBatchRequest,
  type PbEmbedBatchResponse,
  type PbEmbedRequest,
  type PbEmbedResponse,
  type PbEmbedSparseBatchResponse,
  type PbEmbedSparseResponse,
  type PbEncodeBatchRequest,
  type PbEncodeOnlyRequest,
  type PbEncodeRequest,
  type PbEncodeResponse,
  type PbInfoResponse,
  type PbMetadata,
  type PbPredictPairRequest,
  type PbPredictRequest,
  type PbPredictResponse,
  type PbRerankRequest,
  type PbRerankResponse,
  type PbTruncationDirection,
} from '../tei/proto.js';
import type { Metadata, TruncationDirection } from '../tei/types.js';

/** One child method: its path and message codecs. */
export interface ChildMethod<Req, Res> {
  readonly path: string;
  encode(req: Req): Buffer;
  decode(bytes: Buffer): Res;
}

function method<Req, Res>(service: string, name: string, pkg = routerPackageDefinition()): ChildMethod<Req, Res> {
  const def = (pkg[service] as unknown as Record<string, MethodDefinition<Req, Res>> | undefined)?.[name];
  if (def === undefined || typeof def.requestSerialize !== 'function') throw new Error(`${service}/${name} is not in the router's protos`);
  return { path: def.path, encode: (req) => def.requestSerialize(req), decode: (bytes) => def.responseDeserialize(bytes) };
}

export const TEI = {
  Info: method<Record<string, never>, PbInfoResponse>('tei.v1.Info', 'Info'),
  Embed: method<Partial<PbEmbedRequest>, PbEmbedResponse>('tei.v1.Embed', 'Embed'),
  EmbedStream: method<Partial<PbEmbedRequest>, PbEmbedResponse>('tei.v1.Embed', 'EmbedStream'),
  EmbedSparse: method<Partial<PbEncodeOnlyRequest>, PbEmbedSparseResponse>('tei.v1.Embed', 'EmbedSparse'),
  EmbedSparseStream: method<Partial<PbEncodeOnlyRequest>, PbEmbedSparseResponse>('tei.v1.Embed', 'EmbedSparseStream'),
  EmbedAll: method<Partial<PbEncodeOnlyRequest>, PbEmbedAllResponse>('tei.v1.Embed', 'EmbedAll'),
  EmbedAllStream: method<Partial<PbEncodeOnlyRequest>, PbEmbedAllResponse>('tei.v1.Embed', 'EmbedAllStream'),
  Predict: method<Partial<PbPredictRequest>, PbPredictResponse>('tei.v1.Predict', 'Predict'),
  PredictStream: method<Partial<PbPredictRequest>, PbPredictResponse>('tei.v1.Predict', 'PredictStream'),
  PredictPair: method<Partial<PbPredictPairRequest>, PbPredictResponse>('tei.v1.Predict', 'PredictPair'),
  PredictPairStream: method<Partial<PbPredictPairRequest>, PbPredictResponse>('tei.v1.Predict', 'PredictPairStream'),
  Rerank: method<Partial<PbRerankRequest>, PbRerankResponse>('tei.v1.Rerank', 'Rerank'),
  Tokenize: method<Partial<PbEncodeRequest>, PbEncodeResponse>('tei.v1.Tokenize', 'Tokenize'),
  TokenizeStream: method<Partial<PbEncodeRequest>, PbEncodeResponse>('tei.v1.Tokenize', 'TokenizeStream'),
  Decode: method<Partial<PbDecodeRequest>, PbDecodeResponse>('tei.v1.Tokenize', 'Decode'),
  DecodeStream: method<Partial<PbDecodeRequest>, PbDecodeResponse>('tei.v1.Tokenize', 'DecodeStream'),
} as const;

export const HEALTH = {
  Check: method<{ service: string }, { status: string }>('grpc.health.v1.Health', 'Check', loadProtos([HEALTH_PROTO_FILE])),
} as const;

export const BATCH = {
  EmbedBatch: method<Partial<PbEmbedBatchRequest>, PbEmbedBatchResponse>('teiplex.v1.Batch', 'EmbedBatch'),
  EmbedSparseBatch: method<Partial<PbEncodeBatchRequest>, PbEmbedSparseBatchResponse>('teiplex.v1.Batch', 'EmbedSparseBatch'),
  EmbedAllBatch: method<Partial<PbEncodeBatchRequest>, PbEmbedAllBatchResponse>('teiplex.v1.Batch', 'EmbedAllBatch'),
} as const;

/** tei.v1's truncation direction for the engine's. */
/** A child's answer to `m`, decoded; an answer that does not decode is the child's failure (BACKEND). */
export function decodeAnswer<Res>(m: ChildMethod<unknown, Res>, bytes: Buffer, who: string): Res {
  try {
    return m.decode(bytes);
  } catch (err) {
    throw new TeiplexError('BACKEND', `${who} sent an answer to ${m.path} that does not decode: ${(err as Error).message}`);
  }
}

export function pbDirection(d: TruncationDirection): PbTruncationDirection {
  return d === 'left' ? 'TRUNCATION_DIRECTION_LEFT' : 'TRUNCATION_DIRECTION_RIGHT';
}

const ZERO: Metadata = { computeChars: 0, computeTokens: 0, totalTimeNs: 0n, tokenizationTimeNs: 0n, queueTimeNs: 0n, inferenceTimeNs: 0n };

const ns = (s: string | undefined): bigint => {
  try {
    return BigInt(s ?? 0);
  } catch {
    return 0n;
  }
};

/** A child's tei.v1.Metadata (absent: zeros). */
export function fromPbMetadata(m: PbMetadata | null | undefined): Metadata {
  if (m === null || m === undefined) return ZERO;
  return {
    computeChars: m.compute_chars,
    computeTokens: m.compute_tokens,
    totalTimeNs: ns(m.total_time_ns),
    tokenizationTimeNs: ns(m.tokenization_time_ns),
    queueTimeNs: ns(m.queue_time_ns),
    inferenceTimeNs: ns(m.inference_time_ns),
  };
}
