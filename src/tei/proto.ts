/**
 * The router's protocol definitions, loaded once: HuggingFace TEI's `tei.v1` and teiplex's
 * `teiplex.v1` batch extension (plus grpc.health.v1 and grpc.reflection for server reflection).
 *
 * Loader options: field names as written in the .proto (snake_case), 64-bit integers as decimal
 * strings (no precision loss, no Long objects), enums as their names, defaults filled in, and
 * proto3 `optional` presence visible (an unset optional field is absent from the object).
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { projectPath } from '../common/paths.js';

const require = createRequire(import.meta.url);

/** The directory that holds `tei/v1/tei.proto` and `teiplex/v1/batch.proto`. */
export const PROTO_DIR = projectPath('proto');
/** Relative to PROTO_DIR, as the files import each other. */
export const TEI_PROTO_FILE = 'tei/v1/tei.proto';
export const BATCH_PROTO_FILE = 'teiplex/v1/batch.proto';
export const TOKENS_PROTO_FILE = 'teiplex/v1/tokens.proto';
export const MUX_PROTO_FILE = 'tei_multiplexer/v1/multiplexer.proto';

/** grpc.health.v1's proto as shipped by grpc-health-check (dir + relative file). */
export const HEALTH_PROTO_DIR = path.resolve(path.dirname(require.resolve('grpc-health-check')), '..', '..', 'proto');
export const HEALTH_PROTO_FILE = 'health/v1/health.proto';
/** grpc.reflection's protos as shipped by @grpc/reflection. */
export const REFLECTION_PROTO_DIR = path.resolve(path.dirname(require.resolve('@grpc/reflection')), '..', 'proto');
export const REFLECTION_PROTO_FILES = ['grpc/reflection/v1/reflection.proto', 'grpc/reflection/v1alpha/reflection.proto'];

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR, HEALTH_PROTO_DIR, REFLECTION_PROTO_DIR],
};

/** Full names of the data services the router serves. */
export const TEI_SERVICES = ['tei.v1.Info', 'tei.v1.Embed', 'tei.v1.Predict', 'tei.v1.Rerank', 'tei.v1.Tokenize'] as const;
export const BATCH_SERVICE = 'teiplex.v1.Batch';
export const TOKENS_SERVICE = 'teiplex.v1.TokenClassification';
export type RouterServiceName = (typeof TEI_SERVICES)[number] | typeof BATCH_SERVICE | typeof TOKENS_SERVICE;
export const ROUTER_SERVICES: readonly RouterServiceName[] = [...TEI_SERVICES, BATCH_SERVICE, TOKENS_SERVICE];

const loaded = new Map<string, protoLoader.PackageDefinition>();

/**
 * The one proto loader: `files` (relative to PROTO_DIR, or grpc.health / grpc.reflection's own)
 * with LOADER_OPTIONS, loaded once per file list.
 */
export function loadProtos(files: readonly string[]): protoLoader.PackageDefinition {
  const key = files.join('\n');
  let def = loaded.get(key);
  if (def === undefined) {
    def = protoLoader.loadSync([...files], LOADER_OPTIONS);
    loaded.set(key, def);
  }
  return def;
}

/** tei.v1 + teiplex.v1 (batch.proto and tokens.proto import tei.proto). */
export function routerPackageDefinition(): protoLoader.PackageDefinition {
  return loadProtos([TEI_PROTO_FILE, BATCH_PROTO_FILE, TOKENS_PROTO_FILE]);
}

/** Everything the router serves, health and reflection included: what server reflection describes. */
export function reflectionPackageDefinition(): protoLoader.PackageDefinition {
  return loadProtos([TEI_PROTO_FILE, BATCH_PROTO_FILE, TOKENS_PROTO_FILE, HEALTH_PROTO_FILE, ...REFLECTION_PROTO_FILES]);
}

/** tei_multiplexer.v1 (which imports tei.v1). */
export function muxPackageDefinition(): protoLoader.PackageDefinition {
  return loadProtos([MUX_PROTO_FILE]);
}

/** Everything the multiplexer's port serves, as server reflection describes it. */
export function muxReflectionPackageDefinition(): protoLoader.PackageDefinition {
  return loadProtos([MUX_PROTO_FILE, TEI_PROTO_FILE, TOKENS_PROTO_FILE, HEALTH_PROTO_FILE, ...REFLECTION_PROTO_FILES]);
}

/** The service definition of one of the router's services, e.g. `tei.v1.Embed`. */
export function serviceDefinition(name: RouterServiceName): grpc.ServiceDefinition {
  const def = routerPackageDefinition()[name];
  if (def === undefined || 'format' in def) throw new Error(`${name} is not a service in ${TEI_PROTO_FILE}, ${BATCH_PROTO_FILE} or ${TOKENS_PROTO_FILE}`);
  return def as grpc.ServiceDefinition;
}

/** A client constructor for one of the router's services (tests, bench, manager). */
export function serviceClient(name: RouterServiceName): grpc.ServiceClientConstructor {
  return grpc.makeClientConstructor(serviceDefinition(name), name);
}

// ---- message shapes as the loader above produces/accepts them (snake_case, uint64 as string) ----

export type PbTruncationDirection = 'TRUNCATION_DIRECTION_RIGHT' | 'TRUNCATION_DIRECTION_LEFT';
export type PbModelType = 'MODEL_TYPE_EMBEDDING' | 'MODEL_TYPE_CLASSIFIER' | 'MODEL_TYPE_RERANKER';

export interface PbMetadata {
  compute_chars: number;
  compute_tokens: number;
  total_time_ns: string;
  tokenization_time_ns: string;
  queue_time_ns: string;
  inference_time_ns: string;
}

export interface PbInfoResponse {
  version: string;
  sha?: string;
  docker_label?: string;
  model_id: string;
  model_sha?: string;
  model_dtype: string;
  model_type: PbModelType;
  max_concurrent_requests: number;
  max_input_length: number;
  max_batch_tokens: number;
  max_batch_requests?: number;
  max_client_batch_size: number;
  tokenization_workers: number;
}

export interface PbEmbedRequest {
  inputs: string;
  truncate: boolean;
  normalize?: boolean;
  truncation_direction: PbTruncationDirection;
  prompt_name?: string;
  dimensions?: number;
}
/** EmbedSparseRequest and EmbedAllRequest. */
export interface PbEncodeOnlyRequest {
  inputs: string;
  truncate: boolean;
  truncation_direction: PbTruncationDirection;
  prompt_name?: string;
}
export interface PbPredictRequest {
  inputs: string;
  truncate: boolean;
  raw_scores: boolean;
  truncation_direction: PbTruncationDirection;
}
export interface PbPredictPairRequest {
  inputs: string[];
  truncate: boolean;
  raw_scores: boolean;
  truncation_direction: PbTruncationDirection;
}
export interface PbRerankRequest {
  query: string;
  texts: string[];
  truncate: boolean;
  raw_scores: boolean;
  return_text: boolean;
  truncation_direction: PbTruncationDirection;
}
export interface PbRerankStreamRequest {
  query: string;
  text: string;
  truncate: boolean;
  raw_scores: boolean;
  return_text: boolean;
  truncation_direction: PbTruncationDirection;
}
export interface PbEncodeRequest {
  inputs: string;
  add_special_tokens: boolean;
  prompt_name?: string;
}
export interface PbDecodeRequest {
  ids: number[];
  skip_special_tokens: boolean;
}

export interface PbEmbedResponse {
  embeddings: number[];
  metadata: PbMetadata;
}
export interface PbEmbedSparseResponse {
  sparse_embeddings: Array<{ index: number; value: number }>;
  metadata: PbMetadata;
}
export interface PbEmbedAllResponse {
  token_embeddings: Array<{ embeddings: number[] }>;
  metadata: PbMetadata;
}
export interface PbPredictResponse {
  predictions: Array<{ score: number; label: string }>;
  metadata: PbMetadata;
}
export interface PbRerankResponse {
  ranks: Array<{ index: number; text?: string; score: number }>;
  metadata: PbMetadata;
}
export interface PbEncodeResponse {
  tokens: Array<{ id: number; text: string; special: boolean; start?: number; stop?: number }>;
}
export interface PbDecodeResponse {
  text: string;
}

/** teiplex.v1.Batch requests: EmbedBatchRequest (with normalize/dimensions) and the sparse/all ones. */
export interface PbEmbedBatchRequest {
  inputs: string[];
  truncate: boolean;
  normalize?: boolean;
  truncation_direction: PbTruncationDirection;
  prompt_name?: string;
  dimensions?: number;
}
export interface PbEncodeBatchRequest {
  inputs: string[];
  truncate: boolean;
  truncation_direction: PbTruncationDirection;
  prompt_name?: string;
}
export interface PbEmbedBatchResponse {
  dim: number;
  embeddings: Buffer;
  metadata: PbMetadata;
  /** Each input's token count (a router that predates the field: empty). */
  input_tokens?: number[];
}
export interface PbEmbedSparseBatchResponse {
  offsets: number[];
  indices: Buffer;
  values: Buffer;
  metadata: PbMetadata;
  input_tokens?: number[];
}
export interface PbEmbedAllBatchResponse {
  dim: number;
  offsets: number[];
  embeddings: Buffer;
  metadata: PbMetadata;
  input_tokens?: number[];
}

/** teiplex.v1.TokenClassification (tokens.proto). */
export type PbAggregationStrategy =
  | 'AGGREGATION_STRATEGY_NONE'
  | 'AGGREGATION_STRATEGY_SIMPLE'
  | 'AGGREGATION_STRATEGY_FIRST'
  | 'AGGREGATION_STRATEGY_MAX'
  | 'AGGREGATION_STRATEGY_AVERAGE';
export interface PbPredictTokensRequest {
  inputs: string[];
  truncate: boolean;
  truncation_direction: PbTruncationDirection;
  raw_scores: boolean;
  aggregation_strategy: PbAggregationStrategy;
}
export interface PbTokenPrediction {
  token: string;
  token_id: number;
  label: string;
  score: number;
  start: number;
  end: number;
}
export interface PbEntityPrediction {
  entity_group: string;
  score: number;
  word: string;
  start: number;
  end: number;
}
export interface PbTokenPredictions {
  tokens: PbTokenPrediction[];
  entities: PbEntityPrediction[];
  metadata: PbMetadata;
}
export interface PbPredictTokensResponse {
  predictions: PbTokenPredictions[];
}
