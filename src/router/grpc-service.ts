/**
 * tei.v1 gRPC handlers over a RouterEngine, with the semantics of TEI's gRPC server
 * (text-embeddings-inference router/src/grpc/server.rs):
 * - one input per message; a Metadata per response, and the same figures as response headers
 *   (x-compute-*, x-*-time in milliseconds) on unary calls;
 * - `normalize` defaults to true when unset; `truncation_direction` Right/Left; `dimensions` and
 *   `prompt_name` optional;
 * - bidirectional streams process messages concurrently (a bounded window per stream) and answer
 *   in request order; the first failing message ends the stream with its status. Stream messages
 *   wait for admission rather than failing as overloaded, as TEI's streams wait for a permit;
 * - errors: every failure is rendered by src/tei/grpc-status.ts (its code's gRPC status, the message,
 *   trailers `teiplex-error-code`, `teiplex-error-index`, `retry-after`); in a stream the index is
 *   the failing message's position;
 * - a message over --payload-limit arrives as an OversizeMessage (the server's deserializer does
 *   not parse it) and is refused as PAYLOAD_TOO_LARGE like any other failing message.
 *
 * The call plumbing (unary wrapper, ordered streams, status and metadata conversion) is exported
 * for the teiplex.v1 batch service.
 */
import * as grpc from '@grpc/grpc-js';
import { asTeiplexError, TeiplexError } from '../common/errors.js';
import type {
  PbDecodeRequest,
  PbDecodeResponse,
  PbEmbedAllResponse,
  PbEmbedRequest,
  PbEmbedResponse,
  PbEmbedSparseResponse,
  PbEncodeOnlyRequest,
  PbEncodeRequest,
  PbEncodeResponse,
  PbInfoResponse,
  PbMetadata,
  PbPredictPairRequest,
  PbPredictRequest,
  PbPredictResponse,
  PbRerankRequest,
  PbRerankResponse,
  PbRerankStreamRequest,
  PbTruncationDirection,
  RouterServiceName,
} from '../tei/proto.js';
import type { EmbedOptions, EncodeOptions, Metadata, PairInput, PredictOptions, Prediction, TruncationDirection } from '../tei/types.js';
import type { RouterEngine } from './engine.js';
import { aggregateMetadata, timingHeaders } from '../tei/metadata.js';
import { OverloadedError } from './queue.js';
import { toServiceError } from '../tei/grpc-status.js';

/** What the handlers need from the server around them. */
export interface ServiceContext {
  /** The engine; throws UNHEALTHY ("model is loading") before one is set. */
  engine(): RouterEngine;
  /** In-flight messages per bidirectional stream (TEI's GRPC_MAX_PARALLEL_STREAM_REQUESTS). */
  readonly maxParallelStreamRequests: number;
  /** Most texts in one Rerank call (--max-client-batch-size). */
  readonly maxClientBatchSize: number;
}

/** TEI's default for GRPC_MAX_PARALLEL_STREAM_REQUESTS. */
export const DEFAULT_MAX_PARALLEL_STREAM_REQUESTS = 1024;

/**
 * A request message larger than --payload-limit, in place of the parsed message: the server's
 * deserializer hands this on unparsed (grpc-server.ts), and every handler refuses it as
 * PAYLOAD_TOO_LARGE, so the caller reads the documented code in `teiplex-error-code` rather than
 * gRPC's own RESOURCE_EXHAUSTED, which callers take for MODEL_OVERLOADED.
 */
export class OversizeMessage {
  constructor(
    readonly bytes: number,
    readonly limit: number,
  ) {}
  error(): TeiplexError {
    return new TeiplexError('PAYLOAD_TOO_LARGE', `request message of ${this.bytes} bytes is larger than the router's --payload-limit (${this.limit} bytes)`);
  }
}

/** `fn(req)`, unless `req` is a message over the limit: then its PAYLOAD_TOO_LARGE refusal. */
function unlessOversize<Req, T>(req: Req, fn: (req: Req) => Promise<T>): Promise<T> {
  return req instanceof OversizeMessage ? Promise.reject(req.error()) : fn(req);
}

// ---- status and metadata conversion ------------------------------------------------------------

/** A stream's failure: the failing message's position in the stream is the error's index. */
function atMessage(err: unknown, index: number): TeiplexError {
  const e = asTeiplexError(err);
  return new TeiplexError(e.code, e.message, { index, ...(e.retryAfterSecs !== undefined ? { retryAfterSecs: e.retryAfterSecs } : {}) });
}

export function pbMetadata(m: Metadata): PbMetadata {
  return {
    compute_chars: m.computeChars,
    compute_tokens: m.computeTokens,
    total_time_ns: m.totalTimeNs.toString(),
    tokenization_time_ns: m.tokenizationTimeNs.toString(),
    queue_time_ns: m.queueTimeNs.toString(),
    inference_time_ns: m.inferenceTimeNs.toString(),
  };
}


/** TEI's response headers for a Metadata (times in milliseconds). */
export function metadataHeaders(m: Metadata): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [k, v] of timingHeaders(m)) md.set(k, v);
  return md;
}

// ---- call plumbing -----------------------------------------------------------------------------

/** A handler's answer: the message, and the Metadata to send as headers (unary calls). */
export interface Answer<Res> {
  response: Res;
  metadata?: Metadata;
}

/** A unary (or client-streaming) answer: headers, then the message, or the error's status. */
function reply<Res>(call: { cancelled: boolean; sendMetadata(md: grpc.Metadata): void }, callback: grpc.sendUnaryData<Res>, work: () => Promise<Answer<Res>>): void {
  Promise.resolve()
    .then(work)
    .then(
      ({ response, metadata }) => {
        if (metadata !== undefined && !call.cancelled) call.sendMetadata(metadataHeaders(metadata));
        callback(null, response);
      },
      (err: unknown) => callback(toServiceError(err)),
    );
}

export function unary<Req, Res>(fn: (req: Req) => Promise<Answer<Res>>): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => reply(call, callback, () => unlessOversize(call.request, fn));
}

/** Run `fn`; while the engine is full, wait for free permits and try again (a stream message waits for admission, as in TEI). */
async function whenAdmitted<T>(fn: () => Promise<T>, alive: () => boolean, engine: () => RouterEngine): Promise<T> {
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof OverloadedError) || !alive()) throw err;
      await engine().whenCapacity(err.requested);
    }
  }
}

interface Slot<Res> {
  /** The message's position in the stream. */
  index: number;
  state: 'pending' | 'ok' | 'error';
  value?: Res;
  error?: unknown;
}

/**
 * A bidirectional stream: each message is processed as it arrives, at most `window` unanswered at
 * a time (reading pauses beyond that, and while the client is not reading answers), answers go out
 * in request order, and the first failure ends the stream with its status.
 */
export function orderedStream<Req, Res>(
  ctx: ServiceContext,
  fn: (req: Req) => Promise<Res>,
): grpc.handleBidiStreamingCall<Req, Res> {
  return (call) => {
    const window = Math.max(1, ctx.maxParallelStreamRequests);
    const slots: Slot<Res>[] = [];
    let inputEnded = false;
    let finished = false;
    let writeBlocked = false;
    let received = 0;
    const alive = (): boolean => !finished && !call.cancelled;

    const maybeResume = (): void => {
      if (!finished && !writeBlocked && slots.length < window && call.isPaused()) call.resume();
    };
    const flush = (): void => {
      while (!finished && slots.length > 0 && slots[0].state !== 'pending') {
        const slot = slots.shift()!;
        if (slot.state === 'error') {
          finished = true;
          slots.length = 0;
          call.emit('error', toServiceError(atMessage(slot.error, slot.index)));
          return;
        }
        if (!call.write(slot.value as Res) && !writeBlocked) {
          writeBlocked = true;
          call.once('drain', () => {
            writeBlocked = false;
            maybeResume();
          });
        }
      }
      if (!finished && inputEnded && slots.length === 0) {
        finished = true;
        call.end();
        return;
      }
      maybeResume();
    };

    call.on('data', (req: Req) => {
      if (finished) return;
      const slot: Slot<Res> = { index: received++, state: 'pending' };
      slots.push(slot);
      if (slots.length >= window) call.pause();
      unlessOversize(req, (r) => whenAdmitted(() => fn(r), alive, () => ctx.engine())).then(
        (value) => {
          slot.state = 'ok';
          slot.value = value;
          flush();
        },
        (error: unknown) => {
          slot.state = 'error';
          slot.error = error;
          flush();
        },
      );
    });
    call.on('end', () => {
      inputEnded = true;
      flush();
    });
    call.on('cancelled', () => {
      finished = true;
      slots.length = 0;
    });
  };
}

/**
 * A client stream answered once: messages are processed as they arrive (bounded window), the
 * answer is assembled from all results in request order; the first failure is the call's status.
 */
export function collectStream<Req, Item, Res>(
  ctx: ServiceContext,
  fn: (req: Req, index: number) => Promise<Item>,
  finish: (items: Item[], requests: number) => Answer<Res> | Promise<Answer<Res>>,
  check?: () => void,
): grpc.handleClientStreamingCall<Req, Res> {
  return (call, callback) => {
    const window = Math.max(1, ctx.maxParallelStreamRequests);
    const work: Array<Promise<Item>> = [];
    let inFlight = 0;
    let failed = false;
    const alive = (): boolean => !failed && !call.cancelled;
    const fail = (err: unknown): void => {
      if (failed) return;
      failed = true;
      call.pause();
      callback(toServiceError(err));
    };
    try {
      check?.();
    } catch (err) {
      fail(err);
      return;
    }
    call.on('data', (req: Req) => {
      if (failed) return;
      const index = work.length;
      inFlight++;
      if (inFlight >= window) call.pause();
      const p = unlessOversize(req, (r) => whenAdmitted(() => fn(r, index), alive, () => ctx.engine())).finally(() => {
        inFlight--;
        if (!failed && inFlight < window && call.isPaused()) call.resume();
      });
      p.catch((err: unknown) => fail(atMessage(err, index)));
      work.push(p);
    });
    call.on('end', () => {
      if (failed) return;
      const answer: grpc.sendUnaryData<Res> = (err, value) => {
        if (failed) return;
        failed = err !== null;
        callback(err, value);
      };
      reply(call, answer, async () => {
        const items = await Promise.all(work);
        return finish(items, work.length);
      });
    });
  };
}

// ---- request options ---------------------------------------------------------------------------

export function truncationDirection(d: PbTruncationDirection | string | number | undefined): TruncationDirection {
  return d === 'TRUNCATION_DIRECTION_LEFT' || d === 1 ? 'left' : 'right';
}

const promptName = (p: string | undefined): string | undefined => (p === undefined || p === '' ? undefined : p);

export function embedOptions(req: { truncate: boolean; normalize?: boolean; truncation_direction: PbTruncationDirection; prompt_name?: string; dimensions?: number }): EmbedOptions {
  return {
    truncate: req.truncate,
    truncationDirection: truncationDirection(req.truncation_direction),
    promptName: promptName(req.prompt_name),
    normalize: req.normalize ?? true,
    dimensions: req.dimensions ?? undefined,
  };
}

export function encodeOptions(req: { truncate: boolean; truncation_direction: PbTruncationDirection; prompt_name?: string }): EncodeOptions {
  return { truncate: req.truncate, truncationDirection: truncationDirection(req.truncation_direction), promptName: promptName(req.prompt_name) };
}

function predictOptions(req: { truncate: boolean; raw_scores: boolean; truncation_direction: PbTruncationDirection }): PredictOptions {
  return { truncate: req.truncate, truncationDirection: truncationDirection(req.truncation_direction), rawScores: req.raw_scores };
}

// ---- tei.v1 ------------------------------------------------------------------------------------

function info(engine: RouterEngine): PbInfoResponse {
  const i = engine.info;
  const out: PbInfoResponse = {
    version: i.version,
    model_id: i.modelId,
    model_dtype: i.modelDtype,
    model_type: `MODEL_TYPE_${i.modelType.toUpperCase()}` as PbInfoResponse['model_type'],
    max_concurrent_requests: i.maxConcurrentRequests,
    max_input_length: i.maxInputLength,
    max_batch_tokens: i.maxBatchTokens,
    max_client_batch_size: i.maxClientBatchSize,
    tokenization_workers: i.tokenizationWorkers,
  };
  if (i.sha !== undefined) out.sha = i.sha;
  if (i.dockerLabel !== undefined) out.docker_label = i.dockerLabel;
  if (i.modelSha !== undefined) out.model_sha = i.modelSha;
  if (i.maxBatchRequests !== undefined) out.max_batch_requests = i.maxBatchRequests;
  return out;
}

/** TEI's message for a rerank call to a model that is not a reranker. */
function requireReranker(engine: RouterEngine): void {
  const kind = engine.model.kind;
  if (kind === 'reranker') return;
  throw new TeiplexError('WRONG_MODEL_TYPE', kind === 'classifier' || kind === 'token-classifier' ? 'model is not a re-ranker model' : 'model is not a classifier model');
}

function pairInput(inputs: string[]): string | PairInput {
  if (inputs.length === 1) return inputs[0];
  if (inputs.length === 2) return [inputs[0], inputs[1]];
  throw new TeiplexError('VALIDATION', `\`inputs\` must have a single or two elements. Given: ${inputs.length}`);
}

function predictionsMessage(predictions: Prediction[]): PbPredictResponse['predictions'] {
  for (const p of predictions) if (Number.isNaN(p.score)) throw new TeiplexError('BACKEND', 'score is NaN');
  return predictions.map((p) => ({ score: p.score, label: p.label }));
}

/** One message's work for each tei.v1 RPC, shared by the unary and the streaming forms. */
function operations(ctx: ServiceContext) {
  return {
    async embed(req: PbEmbedRequest): Promise<Answer<PbEmbedResponse>> {
      const out = await ctx.engine().embed([req.inputs], embedOptions(req));
      const m = out.metadata[0];
      return { response: { embeddings: Array.from(out.results[0]), metadata: pbMetadata(m) }, metadata: m };
    },
    async embedSparse(req: PbEncodeOnlyRequest): Promise<Answer<PbEmbedSparseResponse>> {
      const out = await ctx.engine().embedSparse([req.inputs], encodeOptions(req));
      const { indices, values } = out.results[0];
      const sparse = new Array<{ index: number; value: number }>(indices.length);
      for (let i = 0; i < indices.length; i++) sparse[i] = { index: indices[i], value: values[i] };
      const m = out.metadata[0];
      return { response: { sparse_embeddings: sparse, metadata: pbMetadata(m) }, metadata: m };
    },
    async embedAll(req: PbEncodeOnlyRequest): Promise<Answer<PbEmbedAllResponse>> {
      const out = await ctx.engine().embedAll([req.inputs], encodeOptions(req));
      const { tokens, dim, values } = out.results[0];
      const rows = new Array<{ embeddings: number[] }>(tokens);
      for (let t = 0; t < tokens; t++) rows[t] = { embeddings: Array.from(values.subarray(t * dim, (t + 1) * dim)) };
      const m = out.metadata[0];
      return { response: { token_embeddings: rows, metadata: pbMetadata(m) }, metadata: m };
    },
    async predict(input: string | PairInput, opts: PredictOptions): Promise<Answer<PbPredictResponse>> {
      const out = await ctx.engine().predict([input], opts);
      const m = out.metadata[0];
      return { response: { predictions: predictionsMessage(out.results[0]), metadata: pbMetadata(m) }, metadata: m };
    },
    async tokenize(req: PbEncodeRequest): Promise<PbEncodeResponse> {
      const [tokens] = await ctx.engine().tokenize([req.inputs], req.add_special_tokens, promptName(req.prompt_name));
      return {
        tokens: tokens.map((t) => {
          const pb: PbEncodeResponse['tokens'][number] = { id: t.id, text: t.text, special: t.special };
          if (t.start !== undefined) pb.start = t.start;
          if (t.stop !== undefined) pb.stop = t.stop;
          return pb;
        }),
      };
    },
    async decode(req: PbDecodeRequest): Promise<PbDecodeResponse> {
      const [text] = await ctx.engine().decode([req.ids], req.skip_special_tokens);
      return { text };
    },
  };
}

async function rerank(ctx: ServiceContext, req: PbRerankRequest): Promise<Answer<PbRerankResponse>> {
  const start = process.hrtime.bigint();
  const engine = ctx.engine();
  if (req.texts.length === 0) throw new TeiplexError('EMPTY', '`texts` cannot be empty');
  requireReranker(engine);
  const max = ctx.maxClientBatchSize;
  if (req.texts.length > max) throw new TeiplexError('VALIDATION', `batch size ${req.texts.length} > maximum allowed batch size ${max}`);
  const out = await engine.rerank(req.query, req.texts, { ...predictOptions(req), returnText: req.return_text });
  for (const r of out.ranks) if (Number.isNaN(r.score)) throw new TeiplexError('BACKEND', 'score is NaN');
  const metadata = { ...out.metadata, totalTimeNs: process.hrtime.bigint() - start };
  const ranks = out.ranks.map((r) => (r.text !== undefined ? { index: r.index, text: r.text, score: r.score } : { index: r.index, score: r.score }));
  return { response: { ranks, metadata: pbMetadata(metadata) }, metadata };
}

/** RerankStream: one (query, text) per message; raw_scores and return_text from the first message. */
function rerankStream(ctx: ServiceContext): grpc.handleClientStreamingCall<PbRerankStreamRequest, PbRerankResponse> {
  return (call, callback) => {
    const t0 = process.hrtime.bigint();
    let flags: { rawScores: boolean; returnText: boolean } | null = null;
    const handler = collectStream<PbRerankStreamRequest, { index: number; text: string; score: number; metadata: Metadata }, PbRerankResponse>(
      ctx,
      async (req, index) => {
        flags ??= { rawScores: req.raw_scores, returnText: req.return_text };
        const out = await ctx.engine().rerank(req.query, [req.text], {
          truncate: req.truncate,
          truncationDirection: truncationDirection(req.truncation_direction),
          rawScores: flags.rawScores,
          returnText: false,
        });
        return { index, text: req.text, score: out.ranks[0].score, metadata: out.metadata };
      },
      (items) => {
        if (items.length === 0) throw new TeiplexError('EMPTY', '`texts` cannot be empty');
        for (const r of items) if (Number.isNaN(r.score)) throw new TeiplexError('BACKEND', 'score is NaN');
        const returnText = flags?.returnText ?? false;
        const ranks = items
          .map((r) => (returnText ? { index: r.index, text: r.text, score: r.score } : { index: r.index, score: r.score }))
          .sort((a, b) => b.score - a.score || a.index - b.index);
        const metadata = aggregateMetadata(
          items.map((r) => r.metadata),
          process.hrtime.bigint() - t0,
        );
        return { response: { ranks, metadata: pbMetadata(metadata) }, metadata };
      },
      () => requireReranker(ctx.engine()),
    );
    handler(call, callback);
  };
}

/** The tei.v1 service implementations, keyed by full service name. */
export function teiServiceImplementations(ctx: ServiceContext): Record<Exclude<RouterServiceName, 'teiplex.v1.Batch' | 'teiplex.v1.TokenClassification'>, grpc.UntypedServiceImplementation> {
  const op = operations(ctx);
  const response = <Req, Res>(fn: (req: Req) => Promise<Answer<Res>>) => async (req: Req) => (await fn(req)).response;
  const plain = <Req, Res>(fn: (req: Req) => Promise<Res>) => async (req: Req): Promise<Answer<Res>> => ({ response: await fn(req) });
  const predictOne = (req: PbPredictRequest) => op.predict(req.inputs, predictOptions(req));
  const predictPair = async (req: PbPredictPairRequest) => op.predict(pairInput(req.inputs), predictOptions(req));
  return {
    'tei.v1.Info': {
      Info: unary(async () => ({ response: info(ctx.engine()) })),
    },
    'tei.v1.Embed': {
      Embed: unary(op.embed),
      EmbedStream: orderedStream(ctx, response(op.embed)),
      EmbedSparse: unary(op.embedSparse),
      EmbedSparseStream: orderedStream(ctx, response(op.embedSparse)),
      EmbedAll: unary(op.embedAll),
      EmbedAllStream: orderedStream(ctx, response(op.embedAll)),
    },
    'tei.v1.Predict': {
      Predict: unary(predictOne),
      PredictPair: unary(predictPair),
      PredictStream: orderedStream(ctx, response(predictOne)),
      PredictPairStream: orderedStream(ctx, response(predictPair)),
    },
    'tei.v1.Rerank': {
      Rerank: unary((req: PbRerankRequest) => rerank(ctx, req)),
      RerankStream: rerankStream(ctx),
    },
    'tei.v1.Tokenize': {
      Tokenize: unary(plain(op.tokenize)),
      TokenizeStream: orderedStream(ctx, op.tokenize),
      Decode: unary(plain(op.decode)),
      DecodeStream: orderedStream(ctx, op.decode),
    },
  };
}
