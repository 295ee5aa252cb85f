/**
 * THE client to one child: every inference operation of the Engine interface (src/tei/types.ts)
 * over the child's one ChildChannel, plus what the Arrow RPCs need (row-wise embedding with the
 * batch window and the child's input budget, batching/row-fanout.ts; dimension probes). One
 * ChildClient per spawn of a child (src/routing/channels.ts), shared by the multiplexer and the
 * data plane, so what is learned about the child (child-info.ts: Info, Batch support, input
 * budget, dimensions) is learned once.
 *
 * - Requests larger than the child's max_client_batch_size are split into several calls (at most
 *   MAX_CHUNKS_IN_FLIGHT at once, within its max_concurrent_requests; batching/fan-out.ts) and the
 *   answers put back in input order. Embeddings of several inputs go to teiplex.v1.Batch (one call
 *   per chunk, packed results) while the child has it (UNIMPLEMENTED: remembered, tei.v1 instead);
 *   otherwise tei.v1, one unary call for a single input, one bidirectional `*Stream` call per chunk.
 * - Token-id inputs (number[]) are decoded to text by the child's own tokenizer first (tei.v1
 *   carries text only), special tokens skipped, so the child re-tokenizes them as it would the text.
 * - CallOptions: `deadlineMs` bounds every child call of the operation (default: now +
 *   `timeoutMs`), `signal` cancels them all when the caller goes away, `onFloats` is told the
 *   floats of answer rows as they arrive and throws to stop (answer size limits). The first failure
 *   cancels every call of the operation still in flight (call-scope.ts).
 * - Errors: TeiplexError; a child's status as fromGrpcStatus maps it (child-status.ts).
 */
import * as grpc from '@grpc/grpc-js';
import { TeiplexError } from '../common/errors.js';
import { aggregateMetadata } from '../tei/metadata.js';
import type { PbInfoResponse } from '../tei/proto.js';
import type {
  Batched,
  CallOptions,
  EmbedOptions,
  Engine,
  EncodeOptions,
  Metadata,
  PairInput,
  Prediction,
  PredictOptions,
  PredictTokensOptions,
  TokenPredictions,
  Rank,
  RerankOptions,
  SimpleToken,
  SparseVector,
  TextInput,
  TokenEmbeddings,
} from '../tei/types.js';
import { embedRows, DEFAULT_FANOUT, type Fallback, type FanoutPath, type FanoutSettings, type TextSource } from './batching/row-fanout.js';
import { fanOut } from './batching/fan-out.js';
import { CallScope } from './call-scope.js';
import type { ChildChannel } from './child-channel.js';
import { ChildInfo, type BatchSupport, type ChildLanes } from './child-info.js';
import { childFailure, childStatusOf } from './child-status.js';
import { decodeAnswer, fromPbMetadata, pbDirection, TEI, TOKENS, type ChildMethod } from './codec.js';
import { pbAggregation, tokenPredictionsOf } from './token-predictions.js';
import type { Budget } from './input-budget.js';
import type { Lane } from './lane.js';
import { DENSE, MULTIVECTOR, SPARSE, type RowKind, type RowOptions } from './row-kinds.js';

/** Most chunks of one operation in flight to a child at once. */
export const MAX_CHUNKS_IN_FLIGHT = 8;

const PROBE_TEXT = 'dimension probe';

export interface ChildClientOptions {
  /** Names the child in messages, e.g. "instance 'bge'". */
  who: string;
  /** An operation's deadline when the caller gives none (grpc_request_timeout_secs). */
  timeoutMs: number;
  /** What is known beforehand of Batch support (a real TEI child: 'no'). */
  batch?: BatchSupport;
  /** The lanes of its input window (default: DEFAULT_LANES). */
  lanes?: ChildLanes;
}

interface Results<R> {
  rows: R[];
  metadata: Metadata[];
}

export class ChildClient implements Engine {
  readonly who: string;
  readonly known: ChildInfo;
  private readonly timeoutMs: number;

  constructor(
    readonly channel: ChildChannel,
    o: ChildClientOptions,
  ) {
    this.who = o.who;
    this.timeoutMs = o.timeoutMs;
    this.known = new ChildInfo(channel, o.who, o.batch, o.lanes);
  }

  /** A scope for one operation (call-scope.ts), with the caller's deadline and signal. */
  scope(call?: CallOptions, onDeadline?: () => Error): CallScope {
    return new CallScope(call?.deadlineMs ?? Date.now() + this.timeoutMs, onDeadline ?? (() => new TeiplexError('REQUEST_TIMEOUT', `${this.who} did not answer in time`)), call?.signal, call?.lane);
  }

  /** Run `fn` in a scope of its own: on failure every child call of it still in flight is cancelled. */
  private async run<T>(call: CallOptions | undefined, fn: (s: CallScope) => Promise<T>): Promise<T> {
    const s = this.scope(call);
    try {
      return await fn(s);
    } catch (err) {
      const reason = s.aborted ?? err;
      s.abort(reason instanceof Error ? reason : new Error(String(reason)));
      throw reason;
    } finally {
      s.finish();
    }
  }

  // ---- what the child is ------------------------------------------------------------------------

  /** The child's tei.v1 Info, fetched once and shared (child-info.ts). */
  info(call?: CallOptions): Promise<PbInfoResponse> {
    return this.run(call, (s) => this.known.get(s));
  }

  /** The child's input budget for row-wise requests (its max_concurrent_requests). */
  inputBudget(scope: CallScope): Promise<Budget> {
    return this.known.inputBudget(scope);
  }

  /** The dense embedding dimension: known, or from one probe (tei.v1.Embed/Embed of a short text). */
  async denseDimension(scope: CallScope): Promise<number> {
    if (this.known.denseDim !== undefined) return this.known.denseDim;
    const res = await this.unary(scope, TEI.Embed, { inputs: PROBE_TEXT, truncate: true });
    this.known.denseDim = res.embeddings.length;
    return this.known.denseDim;
  }

  /** The per-token dimension: known, or from one probe (tei.v1.Embed/EmbedAll of a short text). */
  async tokenDimension(scope: CallScope): Promise<number> {
    if (this.known.tokenDim !== undefined) return this.known.tokenDim;
    const res = await this.unary(scope, TEI.EmbedAll, { inputs: PROBE_TEXT, truncate: true });
    this.known.tokenDim = res.token_embeddings[0]?.embeddings.length ?? 0;
    return this.known.tokenDim;
  }

  /**
   * One row per text for a large row-wise request (the Arrow RPCs): Batch chunks within the input
   * budget, or a windowed tei.v1 stream (batching/row-fanout.ts); `onRow` sees each row as it
   * arrives and throws to stop. The scope is the caller's (it cancels everything on its failure).
   * `fallback`: where failed sub-batches may go instead (failover).
   */
  rows<Row>(
    scope: CallScope,
    kind: RowKind<Row>,
    texts: TextSource,
    o: RowOptions,
    settings: FanoutSettings = DEFAULT_FANOUT,
    onRow?: (row: Row) => void,
    fallback?: Fallback,
  ): Promise<{ rows: Row[]; path: FanoutPath }> {
    return embedRows(scope, this, kind, texts, o, settings, onRow, fallback);
  }

  // ---- calls ------------------------------------------------------------------------------------

  /**
   * `fn` (child calls carrying `n` inputs) once the child's input window has room for them in the
   * scope's lane (input-budget.ts); the share is given back when it settles.
   */
  gated<T>(s: CallScope, n: number, fn: () => Promise<T>): Promise<T> {
    const budget = this.known.window;
    if (budget === undefined) return this.known.inputBudget(s).then(() => this.gated(s, n, fn));
    const share = Math.max(1, Math.min(n, budget.limit));
    // The fast path: room now, no promise of ours besides fn's.
    if (budget.tryAcquire(share, s.lane)) return holding(budget, share, s.lane, fn);
    return budget.acquire(share, s, s.lane).then(() => holding(budget, share, s.lane, fn));
  }

  private async unary<Req, Res>(s: CallScope, m: ChildMethod<Req, Res>, req: Req, n = 1): Promise<Res> {
    return decodeAnswer(m, await this.gated(s, n, () => s.unary(this.channel, m.path, m.encode(req), this.who)), this.who);
  }

  /** One bidirectional stream: one answer per message, in order. */
  private stream(s: CallScope, path: string, msgs: readonly Buffer[]): Promise<Buffer[]> {
    return new Promise<Buffer[]>((resolve, reject) => {
      s.check();
      const answers: Buffer[] = [];
      const call = s.open(this.channel, path, {
        onHeaders: () => undefined,
        onMessage: (msg) => answers.push(msg),
        onStatus: (st) => {
          if (s.aborted !== undefined) reject(s.aborted);
          else if (st.code !== grpc.status.OK) reject(childFailure(st, this.who));
          else if (answers.length !== msgs.length) reject(new TeiplexError('BACKEND', `${this.who} answered ${answers.length} messages for ${msgs.length}`));
          else resolve(answers);
        },
      });
      for (const msg of msgs) call.write(msg);
      call.end();
    });
  }

  /** Requests of one input each: a unary call for one, one stream (the `*Stream` twin) for more. */
  private many(s: CallScope, unaryPath: string, streamPath: string, msgs: readonly Buffer[]): Promise<Buffer[]> {
    return this.gated(s, msgs.length, async () => (msgs.length === 1 ? [await s.unary(this.channel, unaryPath, msgs[0]!, this.who)] : this.stream(s, streamPath, msgs)));
  }

  private async manyOf<Req, Res>(s: CallScope, single: ChildMethod<Req, Res>, stream: ChildMethod<Req, Res>, reqs: readonly Req[]): Promise<Res[]> {
    const answers = await this.many(s, single.path, stream.path, reqs.map((r) => single.encode(r)));
    return answers.map((b) => decodeAnswer(single, b, this.who));
  }

  // ---- splitting --------------------------------------------------------------------------------

  /**
   * Split `items` past the child's limits, run each chunk through Batch (while served) or tei.v1,
   * collect in order. Inputs per call: max_client_batch_size; a Batch call also takes one
   * admission permit per input, so it never carries more than max_concurrent_requests.
   */
  private async split<I, R>(s: CallScope, items: readonly I[], viaBatch: ((chunk: I[]) => Promise<Results<R>>) | null, viaTei: (chunk: I[]) => Promise<Results<R>>): Promise<Results<R>> {
    // One input: one tei.v1 call whatever the child's limits (every limit is at least 1), so
    // neither its Info nor the fan-out is needed.
    if (items.length === 1) return viaTei(items.slice());
    const info = await this.known.get(s);
    const maxClient = Math.max(1, info.max_client_batch_size);
    const maxConcurrent = Math.max(1, info.max_concurrent_requests);
    // One input: a plain unary tei.v1 call costs the child less than a Batch call.
    const batch = viaBatch !== null && this.known.batch !== 'no' && items.length > 1;
    // A bulk request goes in sub-batches of bulk_chunk_rows: an interactive call waits for one at most.
    const size = Math.min(batch ? Math.min(maxClient, maxConcurrent) : maxClient, s.lane === 'bulk' ? this.known.lanes.bulkChunkRows : Number.MAX_SAFE_INTEGER);
    const limit = Math.max(1, Math.min(MAX_CHUNKS_IN_FLIGHT, Math.floor(maxConcurrent / size)));
    const metadata: Metadata[] = [];
    const rows = await fanOut(items, size, limit, async (c) => {
      let r: Results<R> | undefined;
      if (batch && viaBatch !== null && this.known.batch !== 'no') {
        try {
          r = await viaBatch(c);
          this.known.batch = 'yes';
        } catch (err) {
          if (childStatusOf(err)?.code !== grpc.status.UNIMPLEMENTED) throw err;
          this.known.batch = 'no';
        }
      }
      r ??= await viaTei(c);
      metadata.push(...r.metadata);
      return r.rows;
    });
    return { rows, metadata };
  }

  /** Inputs as texts: token-id inputs decoded by the child's tokenizer, special tokens skipped. */
  private async texts(s: CallScope, inputs: readonly TextInput[]): Promise<string[]> {
    const ids: number[] = [];
    inputs.forEach((x, i) => typeof x !== 'string' && ids.push(i));
    if (ids.length === 0) return inputs as string[];
    const { rows } = await this.split(s, ids, null, async (c) => {
      const res = await this.manyOf(s, TEI.Decode, TEI.DecodeStream, c.map((i) => ({ ids: [...(inputs[i] as number[])], skip_special_tokens: true })));
      return { rows: res.map((r) => r.text), metadata: [] };
    });
    const out = inputs.slice() as TextInput[];
    ids.forEach((i, k) => (out[i] = rows[k]!));
    return out as string[];
  }

  /** Embedding rows of one kind for `texts`, split and in order; `onFloats` told as rows arrive. */
  private embedding<Row>(s: CallScope, kind: RowKind<Row>, texts: readonly string[], o: RowOptions, onFloats?: (n: number) => void): Promise<Results<Row>> {
    const count = (rows: Row[]): void => {
      if (onFloats === undefined) return;
      let n = 0;
      for (const r of rows) n += kind.floats(r);
      onFloats(n);
    };
    return this.split(
      s,
      texts,
      async (inputs) => {
        const { rows, metadata } = kind.batchRows(await this.gated(s, inputs.length, () => s.unary(this.channel, kind.batchPath, kind.batchRequest(inputs, o), this.who)), inputs.length);
        count(rows);
        return { rows, metadata };
      },
      async (inputs) => {
        const answers = (await this.many(s, kind.unaryPath, kind.streamPath, inputs.map((t) => kind.request(t, o)))).map((b) => kind.row(b));
        const rows = answers.map((a) => a.row);
        count(rows);
        return { rows, metadata: answers.map((a) => a.metadata) };
      },
    );
  }

  // ---- Engine -----------------------------------------------------------------------------------

  embed(inputs: TextInput[], o: EmbedOptions, call?: CallOptions): Promise<Batched<Float32Array>> {
    return this.run(call, async (s) => batched(await this.embedding(s, DENSE, await this.texts(s, inputs), o, call?.onFloats)));
  }

  embedSparse(inputs: TextInput[], o: EncodeOptions, call?: CallOptions): Promise<Batched<SparseVector>> {
    return this.run(call, async (s) => batched(await this.embedding(s, SPARSE, await this.texts(s, inputs), o, call?.onFloats)));
  }

  embedAll(inputs: TextInput[], o: EncodeOptions, call?: CallOptions): Promise<Batched<TokenEmbeddings>> {
    return this.run(call, async (s) => batched(await this.embedding(s, MULTIVECTOR, await this.texts(s, inputs), o, call?.onFloats)));
  }

  /**
   * Token classification: chunks of max_client_batch_size inputs, one
   * teiplex.v1.TokenClassification/PredictTokens call each. A child without the service (a real
   * TEI: UNIMPLEMENTED) cannot serve a token classifier: WRONG_MODEL_TYPE.
   */
  predictTokens(inputs: string[], o: PredictTokensOptions, call?: CallOptions): Promise<Batched<TokenPredictions>> {
    const base = { truncate: o.truncate, raw_scores: o.rawScores, truncation_direction: pbDirection(o.truncationDirection), aggregation_strategy: pbAggregation(o.aggregation) };
    return this.run(call, async (s) =>
      batched(
        await this.split(s, inputs, null, async (c) => {
          const res = await this.unary(s, TOKENS.PredictTokens, { ...base, inputs: c }, c.length).catch((err: unknown) => {
            if (childStatusOf(err)?.code === grpc.status.UNIMPLEMENTED) {
              throw new TeiplexError('WRONG_MODEL_TYPE', `${this.who} does not serve token classification (no teiplex.v1.TokenClassification: not a teiplex router)`);
            }
            throw err;
          });
          if (res.predictions.length !== c.length) throw new TeiplexError('BACKEND', `${this.who} answered ${res.predictions.length} token predictions for ${c.length} inputs`);
          return { rows: res.predictions.map((p) => tokenPredictionsOf(p, o.aggregation)), metadata: res.predictions.map((p) => fromPbMetadata(p.metadata)) };
        }),
      ),
    );
  }

  /** Each item a text or a pair; singles and pairs go to Predict and PredictPair. */
  predict(items: Array<string | PairInput>, o: PredictOptions, call?: CallOptions): Promise<Batched<Prediction[]>> {
    const base = { truncate: o.truncate, raw_scores: o.rawScores, truncation_direction: pbDirection(o.truncationDirection) };
    return this.run(call, async (s) =>
      batched(
        await this.split(s, items, null, async (c) => {
          const singles: number[] = [];
          const pairs: number[] = [];
          c.forEach((x, i) => (typeof x === 'string' ? singles : pairs).push(i));
          const [one, two] = await Promise.all([
            singles.length > 0 ? this.manyOf(s, TEI.Predict, TEI.PredictStream, singles.map((i) => ({ ...base, inputs: c[i] as string }))) : [],
            pairs.length > 0 ? this.manyOf(s, TEI.PredictPair, TEI.PredictPairStream, pairs.map((i) => ({ ...base, inputs: [...(c[i] as PairInput)] }))) : [],
          ]);
          const rows = new Array<Prediction[]>(c.length);
          const metadata = new Array<Metadata>(c.length);
          singles.forEach((i, k) => ((rows[i] = one[k]!.predictions), (metadata[i] = fromPbMetadata(one[k]!.metadata))));
          pairs.forEach((i, k) => ((rows[i] = two[k]!.predictions), (metadata[i] = fromPbMetadata(two[k]!.metadata))));
          return { rows, metadata };
        }),
      ),
    );
  }

  /** Every text scored against the query (in chunks of max_client_batch_size), best first; `index` is the text's position. */
  rerank(query: string, texts: string[], o: RerankOptions, call?: CallOptions): Promise<{ ranks: Rank[]; metadata: Metadata }> {
    const base = { query, truncate: o.truncate, raw_scores: o.rawScores, return_text: o.returnText, truncation_direction: pbDirection(o.truncationDirection) };
    return this.run(call, async (s) => {
      const info = await this.known.get(s);
      const size = Math.max(1, info.max_client_batch_size);
      const limit = Math.max(1, Math.min(MAX_CHUNKS_IN_FLIGHT, Math.floor(Math.max(1, info.max_concurrent_requests) / size)));
      const metadata: Metadata[] = [];
      const ranks = await fanOut(texts, size, limit, async (c, offset) => {
        const res = await this.unary(s, TEI.Rerank, { ...base, texts: c }, c.length);
        metadata.push(fromPbMetadata(res.metadata));
        return res.ranks.map((r): Rank => ({ index: r.index + offset, score: r.score, ...(r.text !== undefined && r.text !== null ? { text: r.text } : {}) }));
      });
      ranks.sort((a, b) => b.score - a.score || a.index - b.index);
      return { ranks, metadata: aggregateMetadata(metadata) };
    });
  }

  tokenize(inputs: string[], addSpecialTokens: boolean, promptName?: string, call?: CallOptions): Promise<SimpleToken[][]> {
    return this.run(call, async (s) => {
      const { rows } = await this.split(s, inputs, null, async (c) => {
        const res = await this.manyOf(
          s,
          TEI.Tokenize,
          TEI.TokenizeStream,
          c.map((text) => ({ inputs: text, add_special_tokens: addSpecialTokens, ...(promptName !== undefined ? { prompt_name: promptName } : {}) })),
        );
        return {
          rows: res.map((r) =>
            r.tokens.map((t): SimpleToken => ({ id: t.id, text: t.text, special: t.special, ...(t.start !== undefined && t.start !== null ? { start: t.start } : {}), ...(t.stop !== undefined && t.stop !== null ? { stop: t.stop } : {}) })),
          ),
          metadata: [],
        };
      });
      return rows;
    });
  }

  decode(ids: number[][], skipSpecialTokens: boolean, call?: CallOptions): Promise<string[]> {
    return this.run(call, async (s) => {
      const { rows } = await this.split(s, ids, null, async (c) => {
        const res = await this.manyOf(s, TEI.Decode, TEI.DecodeStream, c.map((x) => ({ ids: [...x], skip_special_tokens: skipSpecialTokens })));
        return { rows: res.map((r) => r.text), metadata: [] };
      });
      return rows;
    });
  }
}

/** `fn`'s promise; the share of `budget` it holds is given back when it settles. */
function holding<T>(budget: Budget, share: number, lane: Lane, fn: () => Promise<T>): Promise<T> {
  let p: Promise<T>;
  try {
    p = fn();
  } catch (err) {
    budget.release(share, lane);
    return Promise.reject(err);
  }
  const release = (): void => budget.release(share, lane);
  p.then(release, release);
  return p;
}

function batched<R>(r: Results<R>): Batched<R> {
  return { results: r.rows, metadata: r.metadata };
}
