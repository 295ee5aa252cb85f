/**
 * The router's inference core: wires model files, model rules, tokenization, the batching queue
 * and the ONNX session (in its own thread) into the Engine the protocol front ends call.
 *
 * Request path: admit (one permit per input) -> tokenize (async, concurrent) -> enqueue -> the
 * queue groups inputs of similar length into batches -> the session thread runs them and pools ->
 * per-input finishing here (dimensions, normalize, scores) -> results in input order with TEI's
 * per-input Metadata.
 */
import { endianness } from 'node:os';
import { TeiplexError } from '../common/errors.js';
import { VERSION } from '../common/version.js';
import { InferenceWorker, type IdleWorker } from './inference-worker.js';
import { readCalibration, writeCalibration } from './onnx-cache.js';
import { describeModel, ModelConfigError } from './model-config.js';
import { hasNormalizeModule, readModelFiles } from './model-files.js';
import { Task, type BatchInputs, type IntArray, type RowOutput, type SentenceEmbeddingUse, type TaskCode } from './onnx-session.js';
import { classifierScores, densify, finishEmbedding, predictions, sigmoid } from './pooling.js';
import { BatchQueue, type Answer } from './queue.js';
import { Tokenization, type EncodeRequest, type Encoded } from './tokenization.js';
import { aggregateMetadata } from '../tei/metadata.js';
import { classifyTokens } from './token-classification.js';
import { AGGREGATION_STRATEGIES } from '../tei/types.js';
import type { Batched, EmbedOptions, EncodeOptions, Engine, Metadata, ModelDescription, PairInput, Prediction, PredictOptions, PredictTokensOptions, Rank, RerankOptions, RouterInfo, SimpleToken, SparseVector, TextInput, TokenEmbeddings, TokenPredictions } from '../tei/types.js';
import type { RouterOptions } from './options.js';

/** Knobs for tests and benchmarks; the defaults are what the router uses. */
export interface EngineTuning {
  /** A batch's fixed cost in padded-token equivalents; default: measured at warm-up. */
  batchOverheadTokens?: number;
  /** How long an idle model waits for inputs still being tokenized (ms); default 2. */
  maxGatherMs?: number;
  /** Concurrent tokenizer calls; default: libuv's thread pool size (UV_THREADPOOL_SIZE, 4). */
  tokenizationWorkers?: number;
  /** Let ONNX Runtime's intra-op threads spin between runs (default false: they yield the cores). */
  spinning?: boolean;
}

/** The engine plus what tests and metrics look at. */
/**
 * The router's local engine: the Engine operations on one ONNX model in this process, plus what
 * the router's own servers need. Admission takes one permit per input; more than
 * maxConcurrentRequests in flight -> MODEL_OVERLOADED.
 */
export interface RouterEngine extends Engine {
  readonly model: ModelDescription;
  readonly info: RouterInfo;
  /** Resolves once `inputs` permits are free (for callers that wait rather than fail as overloaded). */
  whenCapacity(inputs: number): Promise<void>;
  /** Stop admitting, wait for in-flight work, release the ONNX session. */
  close(): Promise<void>;
  /** Batches, items and padded vs real tokens processed so far. */
  readonly queueStats: { batches: number; items: number; paddedTokens: number; realTokens: number };
  /** The per-batch overhead (padded-token equivalents) the queue plans with. */
  readonly batchOverheadTokens: number;
}

interface Job {
  length: number;
  enc: Encoded;
  task: TaskCode;
  rawPooled: boolean;
}

const LITTLE_ENDIAN = endianness() === 'LE';

/** Right-padded [B, T] inputs for a batch of jobs. */
function buildBatch(jobs: readonly Job[], int64: boolean, withTypeIds: boolean, withPositions: boolean): BatchInputs {
  const B = jobs.length;
  let T = 0;
  for (const j of jobs) if (j.length > T) T = j.length;
  const alloc = (): IntArray => (int64 ? new BigInt64Array(B * T) : new Int32Array(B * T));
  const inputIds = alloc();
  const attentionMask = alloc();
  const tokenTypeIds = withTypeIds ? alloc() : null;
  const positionIds = withPositions ? alloc() : null;
  // int64 values are small and non-negative: write the low 32-bit word through an Int32Array view.
  const fast = !int64 || LITTLE_ENDIAN;
  const stride = int64 ? 2 : 1;
  const view = (a: IntArray): Int32Array => (a instanceof BigInt64Array ? new Int32Array(a.buffer) : a);
  const ids = view(inputIds);
  const mask = view(attentionMask);
  const types = tokenTypeIds ? view(tokenTypeIds) : null;
  const pos = positionIds ? view(positionIds) : null;
  const tasks = new Uint8Array(B);
  let rawPooled = false;
  for (let r = 0; r < B; r++) {
    const job = jobs[r];
    tasks[r] = job.task;
    if (job.rawPooled) rawPooled = true;
    const src = job.enc.ids;
    const tt = job.enc.typeIds;
    const base = r * T;
    if (fast) {
      for (let t = 0; t < src.length; t++) {
        const k = (base + t) * stride;
        ids[k] = src[t];
        mask[k] = 1;
        if (types !== null && tt !== null) types[k] = tt[t];
      }
      if (pos !== null) for (let t = 0; t < T; t++) pos[(base + t) * stride] = t;
    } else {
      const i64 = (a: IntArray | null, k: number, v: number): void => {
        if (a !== null) (a as BigInt64Array)[k] = BigInt(v);
      };
      for (let t = 0; t < src.length; t++) {
        i64(inputIds, base + t, src[t]);
        i64(attentionMask, base + t, 1);
        if (tt !== null) i64(tokenTypeIds, base + t, tt[t]);
      }
      for (let t = 0; t < T; t++) i64(positionIds, base + t, t);
    }
  }
  return { batch: B, seqLen: T, inputIds, attentionMask, tokenTypeIds, positionIds, tasks, rawPooled };
}

function kindName(model: ModelDescription): string {
  if (model.kind === 'token-classifier') return 'token classification model';
  return model.kind === 'splade' ? 'SPLADE embedding model' : model.kind === 'embedding' ? 'embedding model' : `${model.kind} model`;
}

/** Load the model in `modelDir`, start its session thread, warm it up and return the Engine. */
export async function createEngine(
  opts: RouterOptions,
  modelDir: string,
  log: (msg: string) => void = () => undefined,
  tuning: EngineTuning = {},
  /** A session thread started ahead (a standby router's); default: a new one. */
  idle?: IdleWorker,
): Promise<RouterEngine> {
  const files = await readModelFiles(modelDir, { onnxFile: opts.onnxFile, densePath: opts.densePath });
  const resolved = describeModel(files, opts);
  for (const w of resolved.warnings) log(`warning: ${w}`);
  const model: ModelDescription = { ...resolved.model };

  if (model.maxInputLength > opts.maxBatchTokens) {
    if (!opts.autoTruncate) {
      throw new Error(
        `--max-batch-tokens (${opts.maxBatchTokens}) cannot be lower than the model's max input length (${model.maxInputLength}) when --auto-truncate is not set`,
      );
    }
    log(`warning: max input length lowered from ${model.maxInputLength} to --max-batch-tokens (${opts.maxBatchTokens})`);
    model.maxInputLength = opts.maxBatchTokens;
  }

  // When the graph's own sentence_embedding may stand in for pooling here.
  let sentenceEmbedding: SentenceEmbeddingUse = 'use';
  if (model.kind === 'embedding') {
    if (resolved.configPooling === undefined || resolved.configPooling !== model.pooling) sentenceEmbedding = 'avoid';
    else if (hasNormalizeModule(files)) sentenceEmbedding = 'normalized-only';
  }

  // The session opens in its thread while the tokenizer loads here.
  const starting = InferenceWorker.start(
    {
      onnxPath: files.onnxPath,
      device: opts.device,
      threads: opts.threads,
      kind: model.kind,
      pooling: model.pooling,
      sentenceEmbedding,
      noSpinning: !tuning.spinning,
      cacheDir: opts.onnxCacheDir,
    },
    idle,
  );
  starting.catch(() => undefined);
  let tokenization: Tokenization;
  try {
    tokenization = Tokenization.load(files.tokenizerPath, {
      maxInputLength: model.maxInputLength,
      autoTruncate: opts.autoTruncate,
      prompts: model.prompts,
      defaultPromptName: opts.defaultPromptName,
      defaultPrompt: opts.defaultPrompt,
      workers: tuning.tokenizationWorkers,
      vocabSize: resolved.embeddingRows,
    });
  } catch (err) {
    await starting.then((w) => w.close()).catch(() => undefined);
    throw err;
  }
  model.inputVocabSize = tokenization.vocabSize;

  const worker = await starting;
  try {
    return await Router.start(opts, model, tokenization, worker, log, tuning);
  } catch (err) {
    await worker.close().catch(() => undefined);
    throw err;
  }
}

class Router implements RouterEngine {
  readonly info: RouterInfo;
  private readonly queue: BatchQueue<Job, BatchInputs, RowOutput>;
  private closed = false;
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly opts: RouterOptions,
    readonly model: ModelDescription,
    private readonly tokenization: Tokenization,
    private readonly worker: InferenceWorker,
    tuning: EngineTuning,
  ) {
    const sig = worker.signature;
    const int64 = sig.intType === 'int64';
    this.queue = new BatchQueue<Job, BatchInputs, RowOutput>(
      {
        maxConcurrentRequests: opts.maxConcurrentRequests,
        maxBatchTokens: opts.maxBatchTokens,
        maxBatchRequests: opts.maxBatchRequests,
        batchOverheadTokens: tuning.batchOverheadTokens,
        attentionScale: 6 * (model.hiddenSize ?? 384),
        maxGatherMs: tuning.maxGatherMs,
      },
      {
        prepare: (jobs) => buildBatch(jobs, int64, sig.hasTokenTypeIds, sig.hasPositionIds),
        run: async (batch, free) => (await worker.run(batch, free)).rows,
      },
    );
    this.info = {
      version: VERSION,
      sha: process.env.TEIPLEX_GIT_SHA || undefined,
      dockerLabel: process.env.TEIPLEX_DOCKER_LABEL || undefined,
      modelId: model.modelId,
      modelSha: model.modelSha,
      modelDtype: model.dtype,
      // tei.v1 has no token classifier type: it is a classifier there (its labels are per token).
      modelType: model.kind === 'splade' ? 'embedding' : model.kind === 'token-classifier' ? 'classifier' : model.kind,
      maxConcurrentRequests: opts.maxConcurrentRequests,
      maxInputLength: model.maxInputLength,
      maxBatchTokens: opts.maxBatchTokens,
      maxBatchRequests: opts.maxBatchRequests,
      maxClientBatchSize: opts.maxClientBatchSize,
      tokenizationWorkers: tokenization.workers,
    };
  }

  static async start(
    opts: RouterOptions,
    model: ModelDescription,
    tokenization: Tokenization,
    worker: InferenceWorker,
    log: (msg: string) => void,
    tuning: EngineTuning,
  ): Promise<Router> {
    const router = new Router(opts, model, tokenization, worker, tuning);
    await router.warmUp(log, tuning.batchOverheadTokens === undefined);
    return router;
  }

  get queueStats(): RouterEngine['queueStats'] {
    return { ...this.queue.stats };
  }

  get batchOverheadTokens(): number {
    return this.queue.batchOverheadTokens;
  }

  // ---- warm-up -------------------------------------------------------------------------------

  /** Direct runs (outside the queue): learn output sizes, and measure a batch's fixed cost. */
  private async warmUp(log: (msg: string) => void, calibrate: boolean): Promise<void> {
    const sig = this.worker.signature;
    const int64 = sig.intType === 'int64';
    const task: TaskCode = this.model.kind === 'embedding' ? Task.Pooled : this.model.kind === 'splade' ? Task.Sparse : Task.Logits;
    const words = 'the quick brown fox jumps over the lazy dog '.repeat(64);
    const jobsOf = async (count: number, tokens: number): Promise<Job[]> => {
      const input: TextInput | PairInput = this.model.kind === 'reranker' || this.model.kind === 'classifier' ? ['warm up', words] : words;
      const [enc] = await this.tokenization.encode([input], { truncate: true, truncationDirection: 'right' });
      const cut = Math.max(2, Math.min(tokens, enc.ids.length, this.model.maxInputLength));
      const e: Encoded = { ...enc, ids: enc.ids.slice(0, cut), typeIds: enc.typeIds?.slice(0, cut) ?? null };
      return Array.from({ length: count }, () => ({ length: cut, enc: e, task, rawPooled: true }));
    };
    const run = async (jobs: Job[]): Promise<{ rows: RowOutput[]; ns: number }> => {
      const batch = buildBatch(jobs, int64, sig.hasTokenTypeIds, sig.hasPositionIds);
      const t0 = process.hrtime.bigint();
      const out = await this.worker.run(batch, () => undefined);
      return { rows: out.rows, ns: Number(process.hrtime.bigint() - t0) };
    };

    const first = await run(await jobsOf(2, 16));
    const row = first.rows[0];
    if (this.model.kind === 'embedding' && row instanceof Float32Array) {
      if (this.model.hiddenSize !== undefined && this.model.hiddenSize !== row.length) {
        log(`note: the model's embeddings have ${row.length} dimensions (config.json hidden_size ${this.model.hiddenSize})`);
      }
      this.model.hiddenSize = row.length;
    } else if (this.model.kind === 'splade') {
      this.model.vocabSize ??= this.tokenization.vocabSize;
    } else if (this.model.kind === 'token-classifier') {
      const t = row as { tokens: number; values: Float32Array } | undefined;
      const perToken = t !== undefined && t.tokens > 0 ? t.values.length / t.tokens : 0;
      if (perToken !== this.model.id2label.length) {
        throw new ModelConfigError(
          `config.json names ${this.model.id2label.length} labels (id2label or num_labels) but the ONNX graph's token classification head gives ${perToken} logits per token`,
        );
      }
    } else if (row instanceof Float32Array && row.length !== this.model.id2label.length) {
      // Every logit needs its label and every label its logit: /predict and /info must agree.
      throw new ModelConfigError(
        `config.json names ${this.model.id2label.length} labels (id2label or num_labels) but the ONNX graph's classifier head gives ${row.length} logits`,
      );
    }

    // A calibration kept with the optimized-model cache entry (onnx-cache.ts), for the same batch shapes.
    const smallT = 8;
    const bigB = Math.max(1, Math.min(8, this.opts.maxBatchRequests ?? 8));
    const bigT = Math.max(smallT + 1, Math.min(64, this.model.maxInputLength, Math.floor(this.opts.maxBatchTokens / bigB)));
    const entry = this.worker.cacheEntry;
    const calibrationKey = `${this.model.kind}:${bigB}x${bigT}`;
    const kept = calibrate && entry !== undefined ? await readCalibration(entry, calibrationKey) : undefined;
    if (kept !== undefined) {
      this.queue.setBatchOverheadTokens(kept.batchOverheadTokens);
      log(`batch cost: fixed ~${kept.batchOverheadTokens} token equivalents (kept in the optimized-model cache)`);
    } else if (calibrate) {
      // time(batch) ~ a + b * padded tokens: the queue splits by length only where that saves more than a.
      const small = await jobsOf(1, smallT);
      const big = await jobsOf(bigB, bigT);
      let ts = Infinity;
      let tb = Infinity;
      for (let i = 0; i < 3; i++) {
        ts = Math.min(ts, (await run(small)).ns);
        tb = Math.min(tb, (await run(big)).ns);
      }
      const smallTokens = small[0].length;
      const bigTokens = big.length * big[0].length;
      const perToken = (tb - ts) / Math.max(1, bigTokens - smallTokens);
      const overhead = perToken > 0 ? (ts - perToken * smallTokens) / perToken : 4096;
      const tokens = Math.round(Math.min(4096, Math.max(2, overhead)));
      this.queue.setBatchOverheadTokens(tokens);
      log(`batch cost: ~${(perToken / 1000).toFixed(1)} us per padded token, fixed ~${tokens} token equivalents`);
      if (entry !== undefined) await writeCalibration(entry, calibrationKey, { batchOverheadTokens: tokens });
    }
    log(`model ready: ${this.model.modelId} (${kindName(this.model)}, max input length ${this.model.maxInputLength})`);
  }

  // ---- shared request path -------------------------------------------------------------------

  whenCapacity(inputs: number): Promise<void> {
    return this.queue.whenCapacity(inputs);
  }

  private ensureOpen(): void {
    if (this.closed) throw new TeiplexError('UNHEALTHY', 'Model is shutting down');
  }

  /** Admit, tokenize, queue and wait: one output and one Metadata per input, in order. */
  private async infer(
    inputs: ReadonlyArray<TextInput | PairInput>,
    req: EncodeRequest,
    task: TaskCode,
    rawPooled: boolean,
  ): Promise<{ outputs: RowOutput[]; metadata: Metadata[]; encoded: Encoded[] }> {
    const start = process.hrtime.bigint();
    this.ensureOpen();
    if (inputs.length === 0) throw new TeiplexError('EMPTY', '`inputs` cannot be empty');
    const permit = this.queue.admit(inputs.length);
    try {
      const encoded = await this.tokenization.encode(inputs, req);
      const jobs = encoded.map((enc) => ({ length: enc.ids.length, enc, task, rawPooled }));
      const settled = await Promise.allSettled(this.queue.enqueue(permit, jobs));
      const end = process.hrtime.bigint();
      const outputs: RowOutput[] = new Array(settled.length);
      const metadata: Metadata[] = new Array(settled.length);
      for (let i = 0; i < settled.length; i++) {
        const s = settled[i];
        if (s.status === 'rejected') throw s.reason;
        const a: Answer<RowOutput> = s.value;
        outputs[i] = a.result;
        metadata[i] = {
          computeChars: encoded[i].chars,
          computeTokens: encoded[i].ids.length,
          totalTimeNs: end - start,
          tokenizationTimeNs: encoded[i].tokenizationNs,
          queueTimeNs: a.queueTimeNs,
          inferenceTimeNs: a.inferenceTimeNs,
        };
      }
      return { outputs, metadata, encoded };
    } finally {
      permit.release();
    }
  }

  private wrongType(message: string): TeiplexError {
    return new TeiplexError('WRONG_MODEL_TYPE', message);
  }

  private notEmbedding(): TeiplexError {
    return this.wrongType(`Model is a ${this.model.kind} model and cannot be used for embeddings`);
  }

  // ---- Engine --------------------------------------------------------------------------------

  async embed(inputs: TextInput[], opts: EmbedOptions): Promise<Batched<Float32Array>> {
    this.ensureOpen();
    const { kind } = this.model;
    if (kind !== 'embedding' && kind !== 'splade') throw this.notEmbedding();
    if (kind === 'splade' && opts.normalize) throw this.wrongType('`normalize` is not available for SPLADE models');
    const dim = kind === 'splade' ? this.model.vocabSize! : this.model.hiddenSize!;
    const dimensions = opts.dimensions;
    if (dimensions !== undefined && dimensions !== null) {
      if (!Number.isInteger(dimensions) || dimensions < 1) throw new TeiplexError('VALIDATION', `\`dimensions\` must be a positive integer, got ${dimensions}`);
      if (dimensions > dim) throw new TeiplexError('VALIDATION', `\`dimensions\` (${dimensions}) cannot be larger than the model's embedding size (${dim})`);
    }
    const task = kind === 'splade' ? Task.Sparse : Task.Pooled;
    const { outputs, metadata } = await this.infer(inputs, opts, task, !opts.normalize);
    const results = outputs.map((o) => {
      const v = kind === 'splade' ? densify(o as SparseVector, dim) : (o as Float32Array);
      return finishEmbedding(v, dimensions ?? undefined, opts.normalize);
    });
    return { results, metadata };
  }

  async embedSparse(inputs: TextInput[], opts: EncodeOptions): Promise<Batched<SparseVector>> {
    this.ensureOpen();
    if (this.model.kind !== 'splade') throw this.wrongType('Model is not an embedding model with SPLADE pooling');
    const { outputs, metadata } = await this.infer(inputs, opts, Task.Sparse, false);
    return { results: outputs as SparseVector[], metadata };
  }

  async embedAll(inputs: TextInput[], opts: EncodeOptions): Promise<Batched<TokenEmbeddings>> {
    this.ensureOpen();
    if (this.model.kind !== 'embedding') {
      throw this.wrongType(
        this.model.kind === 'splade' ? 'embed_all is not available for SPLADE models (the graph returns token logits, not token embeddings)' : `Model is a ${this.model.kind} model and cannot be used for embeddings`,
      );
    }
    if (this.worker.signature.tokensOutput === undefined) {
      throw this.wrongType('embed_all needs token embeddings, and this ONNX graph returns only sentence_embedding');
    }
    const { outputs, metadata } = await this.infer(inputs, opts, Task.Tokens, true);
    const dim = this.model.hiddenSize!;
    const results = outputs.map((o) => {
      const t = o as { tokens: number; values: Float32Array };
      return { tokens: t.tokens, dim: t.tokens > 0 ? t.values.length / t.tokens : dim, values: t.values };
    });
    return { results, metadata };
  }

  async predict(inputs: Array<string | PairInput>, opts: PredictOptions): Promise<Batched<Prediction[]>> {
    this.ensureOpen();
    if (this.model.kind !== 'classifier' && this.model.kind !== 'reranker') throw this.wrongType('Model is not a classifier model');
    for (let i = 0; i < inputs.length; i++) {
      const x = inputs[i];
      const ok = typeof x === 'string' || (Array.isArray(x) && x.length === 2 && typeof x[0] === 'string' && typeof x[1] === 'string');
      if (!ok) throw new TeiplexError('VALIDATION', `${inputs.length > 1 ? `input ${i}: ` : ''}input must be a string or a pair of strings`, { index: i });
    }
    const { outputs, metadata } = await this.infer(inputs, { truncate: opts.truncate, truncationDirection: opts.truncationDirection }, Task.Logits, false);
    const results = outputs.map((o) => predictions(classifierScores(o as Float32Array, opts.rawScores), this.model.id2label));
    return { results, metadata };
  }

  async predictTokens(inputs: string[], opts: PredictTokensOptions): Promise<Batched<TokenPredictions>> {
    this.ensureOpen();
    if (this.model.kind !== 'token-classifier') throw this.wrongType('Model is not a token classification model');
    if (!AGGREGATION_STRATEGIES.includes(opts.aggregation)) {
      throw new TeiplexError('VALIDATION', `\`aggregation_strategy\` must be one of ${AGGREGATION_STRATEGIES.join(', ')}, got ${JSON.stringify(opts.aggregation)}`, { param: 'aggregation_strategy' });
    }
    if (opts.rawScores && opts.aggregation !== 'none') {
      throw new TeiplexError('VALIDATION', '`raw_scores` can only be used with `aggregation_strategy` "none": entities are aggregated from probabilities', { param: 'raw_scores' });
    }
    for (let i = 0; i < inputs.length; i++) {
      if (typeof inputs[i] !== 'string') throw new TeiplexError('VALIDATION', `${inputs.length > 1 ? `input ${i}: ` : ''}input must be a string`, { index: i });
    }
    const { outputs, metadata, encoded } = await this.infer(inputs, { truncate: opts.truncate, truncationDirection: opts.truncationDirection, withOffsets: true }, Task.Logits, false);
    const results = outputs.map((o, i) =>
      classifyTokens({
        text: inputs[i]!,
        ids: encoded[i]!.ids,
        spans: encoded[i]!.spans!,
        logits: (o as { values: Float32Array }).values,
        labels: this.model.id2label,
        unkId: this.tokenization.unkId,
        rawScores: opts.rawScores,
        aggregation: opts.aggregation,
        tokensToString: (t) => this.tokenization.tokensToString(t),
      }),
    );
    return { results, metadata };
  }

  async rerank(query: string, texts: string[], opts: RerankOptions): Promise<{ ranks: Rank[]; metadata: Metadata }> {
    const start = process.hrtime.bigint();
    this.ensureOpen();
    if (this.model.kind !== 'reranker') throw this.wrongType('Model is not a re-ranker model');
    if (texts.length === 0) throw new TeiplexError('EMPTY', '`texts` cannot be empty');
    if (typeof query !== 'string' || query.length === 0) throw new TeiplexError('VALIDATION', '`query` cannot be empty');
    for (let i = 0; i < texts.length; i++) {
      if (typeof texts[i] !== 'string' || texts[i].length === 0) throw new TeiplexError('VALIDATION', `\`texts\` ${i} cannot be empty`, { index: i });
    }
    const pairs: PairInput[] = texts.map((t) => [query, t]);
    const { outputs, metadata } = await this.infer(pairs, { truncate: opts.truncate, truncationDirection: opts.truncationDirection }, Task.Logits, false);
    const ranks: Rank[] = outputs.map((o, index) => {
      const logit = (o as Float32Array)[0];
      const score = opts.rawScores ? logit : sigmoid(logit);
      return opts.returnText ? { index, text: texts[index], score } : { index, score };
    });
    ranks.sort((a, b) => b.score - a.score || a.index - b.index);
    return { ranks, metadata: aggregateMetadata(metadata, process.hrtime.bigint() - start) };
  }

  async tokenize(inputs: string[], addSpecialTokens: boolean, promptName?: string): Promise<SimpleToken[][]> {
    this.ensureOpen();
    if (inputs.length === 0) return [];
    return this.tokenization.tokenize(inputs, addSpecialTokens, promptName);
  }

  async decode(ids: number[][], skipSpecialTokens: boolean): Promise<string[]> {
    this.ensureOpen();
    if (ids.length === 0) return [];
    return this.tokenization.decode(ids, skipSpecialTokens);
  }

  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.closing = (async () => {
      await this.queue.close();
      await this.worker.close();
    })();
    return this.closing;
  }
}
