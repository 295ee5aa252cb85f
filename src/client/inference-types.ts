/**
 * What TeiplexClient's inference calls take and answer: options per call, sparse and multivector
 * results, predictions, ranks, tokens, the data plane's model list and the multiplexer's instance
 * summaries.
 */
import type { CallOptions } from './http-transport.js';

/** Which front end a call goes through: the gRPC multiplexer or the HTTP data plane. */
export type Transport = 'grpc' | 'http';

export interface InferenceOptions extends CallOptions {
  /** This call's transport (default: the client's; methods that exist on one front end only ignore it). */
  transport?: Transport;
  /** Ask the manager not to wait for a catalog model's cold start: 503 / UNAVAILABLE at once, with Retry-After (which the client's retries wait out). */
  noWait?: boolean;
}

export interface TruncateOptions {
  /** Cut inputs longer than the model takes (default: the child's --auto-truncate). */
  truncate?: boolean;
  truncationDirection?: 'left' | 'right';
  /** A prompt the model defines (sentence-transformers `prompts`). */
  promptName?: string;
}

export interface EmbedOptions extends InferenceOptions, TruncateOptions {
  /** Unit-length vectors (default true). */
  normalize?: boolean;
  /** Matryoshka: keep the first N dimensions. */
  dimensions?: number;
}

export type EmbedSparseOptions = InferenceOptions & TruncateOptions;
export type EmbedAllOptions = InferenceOptions & TruncateOptions;

/** One sparse vector (SPLADE): the non-zero entries. */
export interface SparseVector {
  indices: Uint32Array;
  values: Float32Array;
}

/** One text's token vectors (multivector, e.g. ColBERT-style): `tokens` x `dim` values, token-major. */
export interface MultiVector {
  tokens: number;
  dim: number;
  values: Float32Array;
}

export interface RerankOptions extends InferenceOptions {
  truncate?: boolean;
  truncationDirection?: 'left' | 'right';
  /** Scores before the activation. */
  rawScores?: boolean;
  /** Answer each text with its rank. */
  returnText?: boolean;
  /** Only the best N (default: all). */
  topN?: number;
  /** Texts per gRPC Rerank call (default 32, TEI's max_client_batch_size); ranks are merged. */
  chunkSize?: number;
}

/** One reranked text, best first. */
export interface Rank {
  /** The text's position in the request. */
  index: number;
  score: number;
  text?: string;
}

export interface PredictOptions extends InferenceOptions {
  truncate?: boolean;
  truncationDirection?: 'left' | 'right';
  rawScores?: boolean;
}

/** A classifier's (or a reranker's) score for one label. */
export interface Prediction {
  label: string;
  score: number;
}

/** One input of predict: a text, or a pair of texts (a cross-encoder's query and document). */
export type PredictInput = string | readonly [string, string];

export interface TokenizeOptions extends InferenceOptions {
  /** Add [CLS]/[SEP] and the like (default true). */
  addSpecialTokens?: boolean;
  promptName?: string;
}

export interface DecodeOptions extends InferenceOptions {
  /** Leave out [CLS]/[SEP] and the like (default true). */
  skipSpecialTokens?: boolean;
}

export interface Token {
  id: number;
  text: string;
  special: boolean;
  /** Character offsets in the input, where the tokenizer gives them. */
  start?: number;
  stop?: number;
}

export interface EmbedArrowOptions extends CallOptions, TruncateOptions {
  /** `rows` (default): one Float32Array per input row; `table`: an Arrow Table with one `embeddings` column. */
  output?: 'rows' | 'table';
  /** Rows per EmbedArrow call (default 1024). */
  batchSize?: number;
  /** EmbedArrow calls in flight at once (default 4). */
  concurrency?: number;
  normalize?: boolean;
  /** LZ4_FRAME compression of the request (default true; answers are LZ4 too). */
  compress?: boolean;
  /** The text column of a Table input (default: `text`, else the first string column). */
  column?: string;
  noWait?: boolean;
}

/** GET /v1/models: one entry per model id and alias (catalog models included, loaded or not). */
export interface DataPlaneModel {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  root: string | null;
  model_ids: string[];
  instances: string[];
  ready: boolean;
}

/** The multiplexer's ListInstances: what a data-plane client may target. */
export interface InstanceSummary {
  name: string;
  model_id: string;
  instance_index: number;
  status: string;
  serving: boolean;
  inflight_requests: number;
  runtime: string;
}

/** tei.v1 Info of the instance a model resolves to. */
export interface ModelInfo {
  version: string;
  model_id: string;
  model_dtype: string;
  model_type: 'MODEL_TYPE_EMBEDDING' | 'MODEL_TYPE_CLASSIFIER' | 'MODEL_TYPE_RERANKER';
  max_concurrent_requests: number;
  max_input_length: number;
  max_batch_tokens: number;
  max_client_batch_size: number;
  tokenization_workers: number;
  [more: string]: unknown;
}
