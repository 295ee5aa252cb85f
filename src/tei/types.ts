/**
 * Shared types of the built-in router: the options parsed from the command line, the model
 * description, and the Engine contract between the inference core and the protocol front ends
 * (tei.v1 gRPC, teiplex.v1 batch extension, TEI HTTP routes).
 */

export type ModelKind = 'embedding' | 'classifier' | 'reranker' | 'splade';
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
  id2label: string[]; // classifier labels by index; empty for embedding models
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

/**
 * The inference core. Every method validates its inputs and throws TeiplexError
 * (src/common/errors.ts) with a code the front ends map to HTTP/gRPC statuses.
 * Admission takes one permit per input; more than maxConcurrentRequests in flight -> MODEL_OVERLOADED.
 */
export interface Engine {
  readonly model: ModelDescription;
  readonly info: RouterInfo;
  embed(inputs: TextInput[], opts: EmbedOptions): Promise<Batched<Float32Array>>;
  embedSparse(inputs: TextInput[], opts: EncodeOptions): Promise<Batched<SparseVector>>;
  embedAll(inputs: TextInput[], opts: EncodeOptions): Promise<Batched<TokenEmbeddings>>;
  predict(inputs: Array<string | PairInput>, opts: PredictOptions): Promise<Batched<Prediction[]>>;
  rerank(query: string, texts: string[], opts: RerankOptions): Promise<{ ranks: Rank[]; metadata: Metadata }>;
  tokenize(inputs: string[], addSpecialTokens: boolean, promptName?: string): Promise<SimpleToken[][]>;
  decode(ids: number[][], skipSpecialTokens: boolean): Promise<string[]>;
  /** Resolves once `inputs` permits are free (for callers that wait rather than fail as overloaded). */
  whenCapacity(inputs: number): Promise<void>;
  /** Stop admitting, wait for in-flight work, release the ONNX session. */
  close(): Promise<void>;
}
