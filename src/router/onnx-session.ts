/**
 * The ONNX Runtime backend (TEI's backends/*): one InferenceSession, its execution provider and
 * threads, feeds by the graph's declared input names, the choice of output, and the per-row
 * post-processing (pooling, SPLADE, logits) that turns [B, T, ...] tensors into one result per row.
 *
 * onnxruntime-node's `session.run` computes on the calling thread, so the router runs this class
 * inside a worker thread (inference-worker.ts); it has no other dependency on where it runs.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { cacheEntry, entryComplete, GRAPH_FILE, stageEntry } from './onnx-cache.js';
import { poolRow, spladeRow, tokenRows } from './pooling.js';
import type { Device, ModelKind, Pooling, SparseVector } from '../tei/types.js';

/** What each row of a batch asks for. */
export const Task = {
  /** Pooled dense vector (not normalized; the engine applies dimensions and normalize). */
  Pooled: 0,
  /** Hidden states of the row's real tokens. */
  Tokens: 1,
  /** SPLADE sparse vector. */
  Sparse: 2,
  /** Sequence logits of a classifier head; per-token logits of a token classifier. */
  Logits: 3,
} as const;
export type TaskCode = (typeof Task)[keyof typeof Task];

/** How the graph's own `sentence_embedding` output may be used instead of pooling here. */
export type SentenceEmbeddingUse =
  /** Always (it is pooled as configured and not normalized, or there is nothing else). */
  | 'use'
  /** Only for rows that are normalized afterwards (the graph normalizes; scale does not survive). */
  | 'normalized-only'
  /** Never (pooling differs from the graph's). */
  | 'avoid';

export interface SessionConfig {
  onnxPath: string;
  device: Device;
  threads?: number;
  kind: ModelKind;
  /** Pooling done here for embedding models. */
  pooling?: Pooling;
  sentenceEmbedding: SentenceEmbeddingUse;
  /** Disable intra-op spin-waiting (frees cores for tokenization between batches). */
  noSpinning?: boolean;
  /** The optimized-model cache (onnx-cache.ts; CPU sessions only); undefined: none. */
  cacheDir?: string;
}

export type IntArray = BigInt64Array | Int32Array;

/** A batch as the session takes it: right-padded [B, T] inputs, built by the engine. */
export interface BatchInputs {
  batch: number;
  seqLen: number;
  inputIds: IntArray;
  attentionMask: IntArray;
  /** Only when the graph declares token_type_ids. */
  tokenTypeIds: IntArray | null;
  /** Only when the graph declares position_ids. */
  positionIds: IntArray | null;
  /** Per row: Task code. */
  tasks: Uint8Array;
  /** Some Pooled row wants the vector's scale (normalize=false). */
  rawPooled: boolean;
}

export type RowOutput = Float32Array | { tokens: number; values: Float32Array } | SparseVector;

export interface BatchOutputs {
  rows: RowOutput[];
  /** Time inside session.run. */
  runNs: number;
}

/** What the engine needs to know about the graph. */
export interface SessionSignature {
  inputNames: string[];
  outputNames: string[];
  /** Integer type of the id inputs (int64 normally). */
  intType: 'int64' | 'int32';
  hasTokenTypeIds: boolean;
  hasPositionIds: boolean;
  tokensOutput?: string;
  sentenceOutput?: string;
  logitsOutput?: string;
}

/** The graph does not fit the model kind, or the provider cannot be used (startup error). */
export class SessionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SessionError';
  }
}

function findOutput(names: readonly string[], wanted: readonly string[]): string | undefined {
  return wanted.find((w) => names.includes(w));
}

export function executionProviders(device: Device): string[] {
  if (device === 'cpu') return ['cpu'];
  const cuda = ort.listSupportedBackends().find((b) => b.name === 'cuda');
  if (cuda === undefined) {
    throw new SessionError('--device cuda: this onnxruntime-node build has no CUDA execution provider');
  }
  return ['cuda'];
}

/** A one-node ONNX graph (y = Relu(x), float, opset 17): what `warmRuntime` opens and runs. */
const WARM_GRAPH = 'CAgSB3RlaXBsZXgaATA6OwoPCgF4EgF5GgFpIgRSZWx1EgR3YXJtWhAKAXgSCwoJCAESBQoDEgFuYhAKAXkSCwoJCAESBQoDEgFuQgIQEQ==';

export class OnnxSession {
  /**
   * Open and run a one-node session and release it: ONNX Runtime sets up its environment
   * (allocators, kernel registries, thread pool) at the first session of a process, so a standby
   * router does it ahead (about 60 ms of CPU less for the model's session here).
   */
  static async warmRuntime(): Promise<void> {
    const session = await ort.InferenceSession.create(Buffer.from(WARM_GRAPH, 'base64'), { executionProviders: ['cpu'], logSeverityLevel: 3 });
    await session.run({ x: new ort.Tensor('float32', new Float32Array([1, -1]), [2]) });
    await session.release();
  }

  readonly signature: SessionSignature;

  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly config: SessionConfig,
    /** The optimized-model cache entry this session was loaded from or written to. */
    readonly cacheEntry?: string,
  ) {
    this.signature = OnnxSession.inspect(session, config);
  }

  static async create(config: SessionConfig): Promise<OnnxSession> {
    const options: ort.InferenceSession.SessionOptions = {
      executionProviders: executionProviders(config.device),
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      interOpNumThreads: 1,
      enableCpuMemArena: true,
      // Shapes change from batch to batch: a memory pattern from one run does not fit the next.
      enableMemPattern: false,
      logSeverityLevel: 3,
    };
    if (config.threads !== undefined && config.threads > 0) options.intraOpNumThreads = config.threads;
    if (config.noSpinning) options.extra = { session: { intra_op: { allow_spinning: '0' } } };
    let session: ort.InferenceSession;
    const cached = config.cacheDir !== undefined && config.device === 'cpu' ? await OnnxSession.fromCache(config, options) : undefined;
    if (cached !== undefined) return new OnnxSession(cached.session, config, cached.entry);
    try {
      session = await ort.InferenceSession.create(config.onnxPath, options);
    } catch (err) {
      // biome-ignore lint/suspicious/noControlCharactersInRegex: ORT colours its log lines
      const msg = (err as Error).message.replace(/\x1b\[[0-9;]*m/g, '').trim();
      if (config.device === 'cuda') {
        throw new SessionError(`--device cuda: the CUDA execution provider is not available (${msg})`);
      }
      throw new SessionError(`cannot load ONNX model ${config.onnxPath}: ${msg}`);
    }
    return new OnnxSession(session, config);
  }

  /**
   * A CPU session through the optimized-model cache (onnx-cache.ts): loaded from a complete entry
   * (optimizations off: they are in the graph), or created from the original with the entry written
   * as it optimizes. Undefined on any failure: the caller loads the original as usual.
   */
  private static async fromCache(config: SessionConfig, options: ort.InferenceSession.SessionOptions): Promise<{ session: ort.InferenceSession; entry: string } | undefined> {
    let entry: string;
    try {
      entry = cacheEntry(config.cacheDir!, config.onnxPath, { ort: ort.env.versions.common, level: options.graphOptimizationLevel, threads: options.intraOpNumThreads ?? null });
    } catch {
      return undefined;
    }
    if (entryComplete(entry)) {
      try {
        return { session: await ort.InferenceSession.create(path.join(entry, GRAPH_FILE), { ...options, graphOptimizationLevel: 'disabled' }), entry };
      } catch {
        // A damaged entry: written anew below.
        await rm(entry, { recursive: true, force: true }).catch(() => undefined);
      }
    }
    let stage: Awaited<ReturnType<typeof stageEntry>> | undefined;
    try {
      stage = await stageEntry(entry);
      const extra = { ...(options.extra as Record<string, Record<string, unknown>> | undefined) };
      extra.session = { ...extra.session, optimized_model_external_initializers_file_name: `${GRAPH_FILE}.data`, optimized_model_external_initializers_min_size_in_bytes: '1024' };
      const session = await ort.InferenceSession.create(config.onnxPath, { ...options, optimizedModelFilePath: path.join(stage.dir, GRAPH_FILE), extra });
      await stage.commit();
      return { session, entry };
    } catch {
      await stage?.discard().catch(() => undefined);
      return undefined;
    }
  }

  private static inspect(session: ort.InferenceSession, config: SessionConfig): SessionSignature {
    const inputNames = [...session.inputNames];
    const outputNames = [...session.outputNames];
    if (!inputNames.includes('input_ids')) throw new SessionError(`the ONNX graph has no input_ids input (inputs: ${inputNames.join(', ')})`);
    const known = new Set(['input_ids', 'attention_mask', 'token_type_ids', 'position_ids']);
    const unknown = inputNames.filter((n) => !known.has(n));
    if (unknown.length > 0) throw new SessionError(`the ONNX graph has inputs the router cannot feed: ${unknown.join(', ')}`);
    const meta = session.inputMetadata.find((m) => m.name === 'input_ids');
    const type = meta?.isTensor ? meta.type : 'int64';
    if (type !== 'int64' && type !== 'int32') throw new SessionError(`input_ids is ${type}; int64 or int32 expected`);
    const sig: SessionSignature = {
      inputNames,
      outputNames,
      intType: type,
      hasTokenTypeIds: inputNames.includes('token_type_ids'),
      hasPositionIds: inputNames.includes('position_ids'),
    };
    if (config.kind === 'embedding') {
      sig.tokensOutput = findOutput(outputNames, ['last_hidden_state', 'token_embeddings']);
      sig.sentenceOutput = findOutput(outputNames, ['sentence_embedding']);
      if (sig.tokensOutput === undefined && sig.sentenceOutput === undefined) {
        if (outputNames.length === 1) sig.tokensOutput = outputNames[0];
        else throw new SessionError(`the ONNX graph has none of last_hidden_state, token_embeddings, sentence_embedding (outputs: ${outputNames.join(', ')})`);
      }
      if (sig.tokensOutput === undefined && config.sentenceEmbedding === 'avoid') {
        throw new SessionError('the ONNX graph has only sentence_embedding, pooled its own way; --pooling asks for another pooling, which needs last_hidden_state or token_embeddings');
      }
    } else {
      sig.logitsOutput = findOutput(outputNames, ['logits']) ?? (outputNames.length === 1 ? outputNames[0] : undefined);
      if (sig.logitsOutput === undefined) throw new SessionError(`the ONNX graph has no logits output (outputs: ${outputNames.join(', ')})`);
    }
    return sig;
  }

  private tensor(data: IntArray, dims: number[]): ort.Tensor {
    return data instanceof BigInt64Array ? new ort.Tensor('int64', data, dims) : new ort.Tensor('int32', data, dims);
  }

  /** Run one batch and post-process every row; `computed` is called once the model is done, before post-processing. */
  async run(b: BatchInputs, computed?: () => void): Promise<BatchOutputs> {
    const dims = [b.batch, b.seqLen];
    const sig = this.signature;
    const feeds: Record<string, ort.Tensor> = { input_ids: this.tensor(b.inputIds, dims) };
    if (sig.inputNames.includes('attention_mask')) feeds.attention_mask = this.tensor(b.attentionMask, dims);
    if (sig.hasTokenTypeIds) feeds.token_type_ids = this.tensor(b.tokenTypeIds ?? new (b.inputIds.constructor as { new (n: number): IntArray })(b.inputIds.length), dims);
    if (sig.hasPositionIds) feeds.position_ids = this.tensor(b.positionIds ?? positionIds(b.batch, b.seqLen, b.inputIds instanceof BigInt64Array), dims);

    // Which outputs this batch needs.
    let useSentence = false;
    let fetch: string[];
    if (this.config.kind === 'embedding') {
      let needTokens = false;
      let needPooled = false;
      for (const t of b.tasks) {
        if (t === Task.Tokens) needTokens = true;
        else needPooled = true;
      }
      const mode = this.config.sentenceEmbedding;
      useSentence =
        needPooled &&
        sig.sentenceOutput !== undefined &&
        (sig.tokensOutput === undefined || (!needTokens && (mode === 'use' || (mode === 'normalized-only' && !b.rawPooled))));
      fetch = [];
      if (useSentence) fetch.push(sig.sentenceOutput!);
      if (!useSentence || needTokens) {
        if (sig.tokensOutput === undefined) throw new SessionError('this model exposes no token embeddings (last_hidden_state or token_embeddings)');
        fetch.push(sig.tokensOutput);
      }
    } else {
      fetch = [sig.logitsOutput!];
    }

    const t0 = process.hrtime.bigint();
    const out = await this.session.run(feeds, fetch);
    const runNs = Number(process.hrtime.bigint() - t0);
    computed?.();
    const mask = b.attentionMask;
    const rows: RowOutput[] = new Array(b.batch);

    if (this.config.kind === 'embedding') {
      const tokens = sig.tokensOutput !== undefined && fetch.includes(sig.tokensOutput) ? out[sig.tokensOutput] : undefined;
      const sentence = useSentence ? out[sig.sentenceOutput!] : undefined;
      if (tokens !== undefined && tokens.dims.length !== 3) throw new SessionError(`${sig.tokensOutput} has shape [${tokens.dims.join(', ')}]; [batch, tokens, hidden] expected`);
      const T = tokens?.dims[1] ?? b.seqLen;
      const H = tokens !== undefined ? tokens.dims[2] : 0;
      const hidden = tokens?.data as Float32Array | undefined;
      const S = sentence !== undefined ? sentence.dims[sentence.dims.length - 1] : 0;
      const sent = sentence?.data as Float32Array | undefined;
      const pooling = (this.config.pooling === 'splade' || this.config.pooling === undefined ? 'cls' : this.config.pooling) as Exclude<Pooling, 'splade'>;
      for (let r = 0; r < b.batch; r++) {
        if (b.tasks[r] === Task.Tokens) {
          rows[r] = tokenRows(hidden!, T, H, mask, r);
        } else if (sent !== undefined) {
          rows[r] = sent.slice(r * S, (r + 1) * S);
        } else {
          rows[r] = poolRow(pooling, hidden!, T, H, mask, r);
        }
      }
    } else {
      const logits = out[sig.logitsOutput!];
      const data = logits.data as Float32Array;
      if (this.config.kind === 'splade') {
        if (logits.dims.length !== 3) throw new SessionError(`${sig.logitsOutput} has shape [${logits.dims.join(', ')}]; [batch, tokens, vocab] expected for SPLADE`);
        const [, T, V] = logits.dims;
        for (let r = 0; r < b.batch; r++) rows[r] = spladeRow(data, T, V, mask, r);
      } else if (this.config.kind === 'token-classifier') {
        // Per-token logits [B, T, labels]: each row's real tokens, in order.
        if (logits.dims.length !== 3) throw new SessionError(`${sig.logitsOutput} has shape [${logits.dims.join(', ')}]; [batch, tokens, labels] expected for token classification`);
        const [, T, L] = logits.dims;
        for (let r = 0; r < b.batch; r++) rows[r] = tokenRows(data, T, L, mask, r);
      } else {
        const L = logits.dims[logits.dims.length - 1];
        for (let r = 0; r < b.batch; r++) rows[r] = data.slice(r * L, (r + 1) * L);
      }
    }
    for (const name of Object.keys(out)) out[name].dispose?.();
    return { rows, runNs };
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** position_ids for right-padded rows: 0..T-1 on every row. */
export function positionIds(batch: number, seqLen: number, int64: boolean): IntArray {
  const out = int64 ? new BigInt64Array(batch * seqLen) : new Int32Array(batch * seqLen);
  const view = int64 ? new Int32Array(out.buffer) : (out as Int32Array);
  const stride = int64 ? 2 : 1;
  for (let r = 0; r < batch; r++) for (let t = 0; t < seqLen; t++) view[(r * seqLen + t) * stride] = t;
  return out;
}
