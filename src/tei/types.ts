/**
 * Shared types of the built-in router: the options parsed from the command line, the model
 * description, and the Engine contract between the inference core and the protocol front ends
 * (tei.v1 gRPC, teiplex.v1 batch extension, TEI HTTP routes).
 */

export type ModelKind = 'embedding' | 'classifier' | 'reranker' | 'splade' | 'token-classifier';
export type Pooling = 'cls' | 'mean' | 'splade' | 'last-token';
export type TruncationDirection = 'right' | 'left';
export type Device = 'cpu' | 'cuda';

/** What the router learned about the model at load time. */
export interface ModelDescription {
  modelId: string; // as served (served-model-name, else model-id)
  modelSha?: string;
  dtype: string;
  kind: ModelKind;
  pooling?: Pooling; // embedding and splade models
  hiddenSize?: number; // dense dimension
  vocabSize?: number; // sparse dimension (SPLADE)
  /** Token ids accepted in inputs and by decode are 0 .. inputVocabSize - 1: the smaller of config.json vocab_size and the tokenizer's vocabulary (set once the tokenizer is loaded). */
  inputVocabSize?: number;
  maxInputLength: number;
  id2label: string[]; // classifier (and token classifier) labels by index; empty for embedding models
  prompts: ReadonlyMap<string, string>; // by name, from config_sentence_transformers.json (a Map: no inherited names)
}

/** Info as TEI's InfoResponse reports it. */
export interface RouterInfo {
  version: string;
  sha?: string;
  dockerLabel?: string;
  modelId: string;
  modelSha?: string;
  modelDtype: string;
  modelType: 'embedding' | 'classifier' | 'reranker';
  maxConcurrentRequests: number;
  maxInputLength: number;
  maxBatchTokens: number;
  maxBatchRequests?: number;
  maxClientBatchSize: number;
  tokenizationWorkers: number;
}

/** Per-input timing and size accounting, TEI's Metadata. Times in nanoseconds. */
export interface Metadata {
  computeChars: number;
  computeTokens: number;
  totalTimeNs: bigint;
  tokenizationTimeNs: bigint;
  queueTimeNs: bigint;
  inferenceTimeNs: bigint;
}

/** Raw text, or token ids already produced by the model's tokenizer (OpenAI token input). */
export type TextInput = string | number[];
/** A sentence pair for cross-encoders (PredictPair, rerank). */
export type PairInput = [string, string];

export interface EncodeOptions {
  truncate: boolean;
  truncationDirection: TruncationDirection;
  promptName?: string;
  /**
   * A prompt the front end has already put before every text (an instance spec's prompt for an
   * `input_type`). Never sent to a model; int8/uint8 calibration puts it before its own texts, so
   * the ranges are those of prompted texts.
   */
  textPrefix?: string;
}

export interface EmbedOptions extends EncodeOptions {
  normalize: boolean;
  dimensions?: number;
}

export interface PredictOptions {
  truncate: boolean;
  truncationDirection: TruncationDirection;
  rawScores: boolean;
}

/** How per-token predictions become entities (transformers' TokenClassificationPipeline). */
export type AggregationStrategy = 'none' | 'simple' | 'first' | 'max' | 'average';
export const AGGREGATION_STRATEGIES: readonly AggregationStrategy[] = ['none', 'simple', 'first', 'max', 'average'];

export interface PredictTokensOptions {
  truncate: boolean;
  truncationDirection: TruncationDirection;
  /** Scores are the raw logits (aggregation 'none' only). */
  rawScores: boolean;
  aggregation: AggregationStrategy;
}

/** One token's prediction; start/end are character offsets (Unicode code points) into the input. */
export interface TokenPrediction {
  token: string;
  tokenId: number;
  label: string;
  score: number;
  start: number;
  end: number;
}

/** One entity aggregated from token predictions; start/end as in TokenPrediction. */
export interface EntityPrediction {
  entityGroup: string;
  score: number;
  word: string;
  start: number;
  end: number;
}

/** One input's answer: its tokens (aggregation 'none') or its entities (any other strategy). */
export type TokenPredictions = { tokens: TokenPrediction[] } | { entities: EntityPrediction[] };

export interface RerankOptions extends PredictOptions {
  returnText: boolean;
}

export interface SparseVector {
  indices: Uint32Array; // ascending token ids
  values: Float32Array;
}

export interface TokenEmbeddings {
  tokens: number; // rows
  dim: number;
  values: Float32Array; // tokens * dim, row-major
}

export interface Prediction {
  score: number;
  label: string;
}

export interface Rank {
  index: number;
  text?: string;
  score: number;
}

export interface SimpleToken {
  id: number;
  text: string;
  special: boolean;
  start?: number;
  stop?: number;
}

/** Results in input order, with one Metadata per input. */
export interface Batched<T> {
  results: T[];
  metadata: Metadata[];
}

/** What a model can produce or do (the typed routes' output types, and what a route needs of its engine). */
export type Capability = 'dense' | 'sparse' | 'multivector' | 'score' | 'classify' | 'tokens';

/** What one call may carry to an engine besides its inputs. */
export interface CallOptions {
  /** Aborted when the caller has gone away: work in progress is cancelled where it can be. */
  signal?: AbortSignal;
  /** Epoch ms by which the answer is due (a child call's deadline). */
  deadlineMs?: number;
  /**
   * Told the number of floats of answer rows as they arrive (/embed_all, multivector answers);
   * throws to stop the call when the answer would pass a size limit.
   */
  onFloats?: (n: number) => void;
  /** The request's priority class (src/child/lane.ts): its child calls wait in that lane. Default interactive. */
  lane?: 'interactive' | 'bulk';
}

/**
 * The inference operations every front end calls, whoever computes them: the router's local ONNX
 * engine (src/router/engine.ts) or the manager's client to one child (src/child/). Every method
 * validates its inputs and throws TeiplexError (src/common/errors.ts); results come in input
 * order with one Metadata per input (rerank: one for the call).
 */
export interface Engine {
  embed(inputs: TextInput[], opts: EmbedOptions, call?: CallOptions): Promise<Batched<Float32Array>>;
  embedSparse(inputs: TextInput[], opts: EncodeOptions, call?: CallOptions): Promise<Batched<SparseVector>>;
  embedAll(inputs: TextInput[], opts: EncodeOptions, call?: CallOptions): Promise<Batched<TokenEmbeddings>>;
  predict(inputs: Array<string | PairInput>, opts: PredictOptions, call?: CallOptions): Promise<Batched<Prediction[]>>;
  /** Token classification (NER): per-token labels, or entities aggregated from them. */
  predictTokens(inputs: string[], opts: PredictTokensOptions, call?: CallOptions): Promise<Batched<TokenPredictions>>;
  rerank(query: string, texts: string[], opts: RerankOptions, call?: CallOptions): Promise<{ ranks: Rank[]; metadata: Metadata }>;
  tokenize(inputs: string[], addSpecialTokens: boolean, promptName?: string, call?: CallOptions): Promise<SimpleToken[][]>;
  decode(ids: number[][], skipSpecialTokens: boolean, call?: CallOptions): Promise<string[]>;
}
