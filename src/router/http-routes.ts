/**
 * TEI's HTTP routes as a fastify plugin over an Engine: /embed, /embed_sparse, /embed_all,
 * /predict, /rerank, /tokenize, /decode, /info, /health, /metrics and OpenAI's /v1/embeddings
 * (plus TEI's aliases: /embeddings, GET / and /ping for health, POST / and /invocations for the
 * model's natural route). JSON shapes follow text-embeddings-inference's router/src/http/types.rs.
 *
 * - Bodies are validated by the TypeBox schemas below (they double as documentation); a bad body
 *   is 422 naming the field. `truncate` left out or null means the router's --auto-truncate.
 * - Errors: `{"error": ..., "error_type": ...}` with the status of src/common/errors.ts (422
 *   validation, 429 overloaded, 424 backend, 413 payload, 400 wrong model type, 401 api key),
 *   rendered by src/tei/http-errors.ts (Retry-After where the code has one);
 *   /v1/embeddings answers errors in TEI's OpenAI shape `{"message", "code", "type"}`.
 * - More inputs than max_client_batch_size: 422 "batch size N > maximum allowed batch size M".
 * - Token ids (`inputs`/`input` of the embedding routes, `ids` of /decode) outside the model's
 *   vocabulary, negative ones included: 422 naming the id, its position and the vocabulary size.
 * - Success headers (ms, like TEI): x-compute-time, x-compute-characters, x-compute-tokens,
 *   x-total-time, x-tokenization-time, x-queue-time, x-inference-time.
 * - With an api key every route except /health, /ping, GET / and /metrics needs
 *   `authorization: Bearer <key>` (401 otherwise).
 */
import { timingSafeEqual } from 'node:crypto';
import type { Static, TSchema } from '@sinclair/typebox';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_CODES, TeiplexError } from '../common/errors.js';
import { fastifyError, toHttpError, type HttpError } from '../tei/http-errors.js';
import {
  DecodeRequest,
  EmbedAllRequest,
  EmbedRequest,
  EmbedSparseRequest,
  OpenAIEmbeddingsRequest,
  PredictRequest,
  RerankRequest,
  TokenizeRequest,
  typeboxValidator,
  type Inputs,
} from '../tei/http-schemas.js';
import type { RouterMetrics } from './metrics.js';
import type { RouterLog } from './router-log.js';
import { tokenIdsError } from './tokenization.js';
import type { Metadata, PairInput, SimpleToken, TextInput, TruncationDirection } from '../tei/types.js';
import type { RouterEngine } from './engine.js';
import { aggregateMetadata, timingHeaders } from '../tei/metadata.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** No API key needed (health, metrics). */
    open?: boolean;
    /** Answer errors in OpenAI's shape. */
    openai?: boolean;
  }
}

export interface HttpRoutesOptions {
  engine: RouterEngine;
  maxClientBatchSize: number;
  /** What `truncate` means when a request leaves it out (--auto-truncate). */
  autoTruncate: boolean;
  /** Largest body in bytes (--payload-limit): larger is 413. */
  payloadLimit: number;
  apiKey?: string;
  /** Serves /metrics and counts failures decided here; the RouterEngine should already be wrapped by withMetrics. */
  metrics?: RouterMetrics;
  /** /health: 200 while true, 503 otherwise (default: always healthy). */
  isHealthy?: () => boolean;
  /** Reported by /info as served_model_name (default: the Engine's model id). */
  servedModelName?: string;
  /** Where unexpected (backend) failures are reported. */
  log?: Pick<RouterLog, 'error'>;
}

// ---- schemas (shared with the manager's data plane: src/common/tei-http-schemas.ts) ----------

export { EmbedRequest, EmbedSparseRequest, EmbedAllRequest, PredictRequest, RerankRequest, TokenizeRequest, DecodeRequest, OpenAIEmbeddingsRequest };

// ---- helpers --------------------------------------------------------------------------------

interface RouteConfig {
  /** No api key needed. */
  open?: boolean;
  /** Errors in TEI's OpenAI shape. */
  openai?: boolean;
  /** The body field that may hold token ids. */
  tokenIds?: 'inputs' | 'input' | 'ids';
}

const direction = (d: string | undefined): TruncationDirection => (d !== undefined && d.toLowerCase() === 'left' ? 'left' : 'right');

/** Inputs of /embed-like routes: one input (string or token ids) or a batch of them. */
function splitInputs(inputs: Static<typeof Inputs>): { items: TextInput[]; single: boolean } {
  if (typeof inputs === 'string') return { items: [inputs], single: true };
  if (inputs.length > 0 && inputs.every((x) => typeof x === 'number')) return { items: [inputs as number[]], single: true };
  return { items: inputs as TextInput[], single: false };
}

/** The token-id lists in a body field: the field itself when it is a list of numbers, else those of its items that are, with their row. */
function tokenIdLists(v: unknown): Array<{ ids: unknown[]; row: number; rows: number }> {
  const isIds = (x: unknown): x is unknown[] => Array.isArray(x) && x.length > 0 && x.every((t) => typeof t === 'number');
  if (!Array.isArray(v)) return [];
  if (isIds(v)) return [{ ids: v, row: 0, rows: 1 }];
  return v.flatMap((x, row) => (isIds(x) ? [{ ids: x, row, rows: v.length }] : []));
}

/** TEI's response headers from per-input metadata: sums of sizes, means of stage times. */
function setMetadataHeaders(reply: FastifyReply, start: bigint, metadata: readonly Metadata[]): void {
  for (const [k, v] of timingHeaders(aggregateMetadata(metadata, process.hrtime.bigint() - start))) reply.header(k, v);
}

function toList(v: Float32Array): number[] {
  return Array.from(v);
}

function simpleToken(t: SimpleToken) {
  return { id: t.id, text: t.text, special: t.special, start: t.start ?? null, stop: t.stop ?? null };
}

function sameKey(header: string | undefined, expected: Buffer): boolean {
  if (header === undefined) return false;
  const got = Buffer.from(header);
  return got.length === expected.length && timingSafeEqual(got, expected);
}

/**
 * A failure as the router answers it (src/tei/http-errors.ts), and the `te_request_failure` label
 * when fastify refused the request before a route ran (schema, body size, parsing); null otherwise.
 */
function describeError(err: unknown, payloadLimit: number, shape: 'tei' | 'tei-openai'): { reply: HttpError; edge: string | null } {
  const o = { bodyTooLarge: `Payload too large: the request body exceeds the payload limit of ${payloadLimit} bytes` };
  const refused = fastifyError(err, o);
  const reply = toHttpError(refused ?? err, shape, o);
  return { reply, edge: refused === undefined ? null : refused.code === 'PAYLOAD_TOO_LARGE' ? 'payload_limit' : 'validation' };
}

// ---- the plugin -----------------------------------------------------------------------------

export const httpRoutes: FastifyPluginAsync<HttpRoutesOptions> = async (app: FastifyInstance, opts: HttpRoutesOptions) => {
  const { engine, maxClientBatchSize, autoTruncate, payloadLimit, metrics } = opts;
  const isHealthy = opts.isHealthy ?? (() => true);
  const expectedAuth = opts.apiKey !== undefined ? Buffer.from(`Bearer ${opts.apiKey}`) : null;

  app.setValidatorCompiler(typeboxValidator);

  const shapeOf = (request: FastifyRequest): 'tei' | 'tei-openai' => ((request.routeOptions.config as RouteConfig).openai ? 'tei-openai' : 'tei');

  app.setErrorHandler((err, request, reply) => {
    const { reply: r, edge } = describeError(err, payloadLimit, shapeOf(request));
    if (edge !== null) metrics?.recordFailure(edge);
    if (r.status >= 500 || r.error.teiErrorType === ERROR_CODES.BACKEND.teiType) {
      opts.log?.error('request failed', { url: request.url, status: r.status, error: r.error.message });
    }
    return reply.status(r.status).headers(r.headers).send(r.body);
  });

  if (expectedAuth !== null) {
    app.addHook('onRequest', async (request, reply) => {
      const config = request.routeOptions.config as RouteConfig;
      if (config.open) return;
      if (sameKey(request.headers.authorization, expectedAuth)) return;
      const r = toHttpError(new TeiplexError('UNAUTHENTICATED', 'Unauthorized: a valid `authorization: Bearer <api key>` header is required'), shapeOf(request));
      return reply.status(r.status).headers(r.headers).send(r.body);
    });
  }

  const edgeError = (err: string, e: TeiplexError): TeiplexError => {
    metrics?.recordFailure(err);
    return e;
  };

  // Token ids are checked against the vocabulary before the body schema, which types them u32: a
  // negative id would fail it with a message about the whole field, naming neither the id nor the
  // vocabulary. The RouterEngine checks again (for ids that pass the schema); this is only the message.
  app.addHook('preValidation', async (request) => {
    const field = (request.routeOptions.config as RouteConfig).tokenIds;
    const vocabSize = engine.model.inputVocabSize;
    if (field === undefined || vocabSize === undefined || request.body === null || typeof request.body !== 'object') return;
    for (const { ids, row, rows } of tokenIdLists((request.body as Record<string, unknown>)[field])) {
      const bad = tokenIdsError(ids, vocabSize, row, rows);
      if (bad) throw edgeError('validation', bad);
    }
  });
  const checkBatch = (n: number, field = 'inputs'): void => {
    if (n === 0) throw edgeError('validation', new TeiplexError('EMPTY', `\`${field}\` cannot be empty`));
    if (n > maxClientBatchSize) {
      throw edgeError('batch_size', new TeiplexError('VALIDATION', `batch size ${n} > maximum allowed batch size ${maxClientBatchSize}`));
    }
  };

  const post = <S extends TSchema>(url: string, schema: S, handler: (body: Static<S>, reply: FastifyReply, request: FastifyRequest) => Promise<unknown>, config: RouteConfig = {}) =>
    app.post(url, { schema: { body: schema }, bodyLimit: payloadLimit, config }, (request, reply) => handler(request.body as Static<S>, reply, request));

  // ---- embeddings ----

  /** The encode options every embedding route takes from its body. */
  const encodeOptions = (body: Static<typeof EmbedSparseRequest>) => ({
    truncate: body.truncate ?? autoTruncate,
    truncationDirection: direction(body.truncation_direction),
    promptName: body.prompt_name ?? undefined,
  });

  const embed = async (body: Static<typeof EmbedRequest>, reply: FastifyReply) => {
    const start = process.hrtime.bigint();
    const { items } = splitInputs(body.inputs);
    checkBatch(items.length);
    const out = await engine.embed(items, {
      ...encodeOptions(body),
      normalize: body.normalize ?? true,
      dimensions: body.dimensions ?? undefined,
    });
    setMetadataHeaders(reply, start, out.metadata);
    return out.results.map(toList);
  };

  const embedSparse = async (body: Static<typeof EmbedSparseRequest>, reply: FastifyReply) => {
    const start = process.hrtime.bigint();
    const { items } = splitInputs(body.inputs);
    checkBatch(items.length);
    const out = await engine.embedSparse(items, encodeOptions(body));
    setMetadataHeaders(reply, start, out.metadata);
    return out.results.map((v) => Array.from(v.indices, (index, i) => ({ index, value: v.values[i] })));
  };

  const embedAll = async (body: Static<typeof EmbedAllRequest>, reply: FastifyReply) => {
    const start = process.hrtime.bigint();
    const { items } = splitInputs(body.inputs);
    checkBatch(items.length);
    const out = await engine.embedAll(items, encodeOptions(body));
    setMetadataHeaders(reply, start, out.metadata);
    return out.results.map((t) => Array.from({ length: t.tokens }, (_, r) => Array.from(t.values.subarray(r * t.dim, (r + 1) * t.dim))));
  };

  post('/embed', EmbedRequest, embed, { tokenIds: 'inputs' });
  post('/embed_sparse', EmbedSparseRequest, embedSparse, { tokenIds: 'inputs' });
  post('/embed_all', EmbedAllRequest, embedAll, { tokenIds: 'inputs' });

  // ---- classification and reranking ----

  const predict = async (body: Static<typeof PredictRequest>, reply: FastifyReply) => {
    const start = process.hrtime.bigint();
    const inputs = body.inputs;
    let items: Array<string | PairInput>;
    let single: boolean;
    const sequence = (s: string[], where: string): string | PairInput => {
      if (s.length === 1) return s[0];
      if (s.length === 2) return [s[0], s[1]];
      throw edgeError('validation', new TeiplexError('VALIDATION', `${where} must be a string or a pair of strings [string, string], got ${s.length} strings`));
    };
    if (typeof inputs === 'string') {
      items = [inputs];
      single = true;
    } else if (typeof inputs[0] === 'string') {
      // TEI: a list that starts with a string is one input, a string or a pair.
      if (!inputs.every((x) => typeof x === 'string')) {
        throw edgeError('validation', new TeiplexError('VALIDATION', '`inputs` must be a string, a pair of strings [string, string], or a batch [[string], [string, string], ...]'));
      }
      items = [sequence(inputs as string[], '`inputs`')];
      single = true;
    } else {
      items = inputs.map((x, i) => (typeof x === 'string' ? x : sequence(x, `\`inputs[${i}]\``)));
      single = false;
      checkBatch(items.length);
    }
    const out = await engine.predict(items, {
      truncate: body.truncate ?? autoTruncate,
      truncationDirection: direction(body.truncation_direction),
      rawScores: body.raw_scores ?? false,
    });
    setMetadataHeaders(reply, start, out.metadata);
    return single ? out.results[0] : out.results;
  };

  const rerank = async (body: Static<typeof RerankRequest>, reply: FastifyReply) => {
    const start = process.hrtime.bigint();
    if (body.texts.length > 0) checkBatch(body.texts.length, 'texts'); // empty: the RouterEngine says so
    const out = await engine.rerank(body.query, body.texts, {
      truncate: body.truncate ?? autoTruncate,
      truncationDirection: direction(body.truncation_direction),
      rawScores: body.raw_scores ?? false,
      returnText: body.return_text ?? false,
    });
    setMetadataHeaders(reply, start, [out.metadata]);
    return out.ranks.map((r) => (r.text !== undefined ? { index: r.index, text: r.text, score: r.score } : { index: r.index, score: r.score }));
  };

  post('/predict', PredictRequest, predict);
  post('/rerank', RerankRequest, rerank);

  // ---- tokenizer ----

  post('/tokenize', TokenizeRequest, async (body) => {
    const inputs = typeof body.inputs === 'string' ? [body.inputs] : body.inputs;
    checkBatch(inputs.length);
    const tokens = await engine.tokenize(inputs, body.add_special_tokens ?? true, body.prompt_name ?? undefined);
    return tokens.map((row) => row.map(simpleToken));
  });

  post(
    '/decode',
    DecodeRequest,
    async (body) => {
      const ids = body.ids;
      const batch = ids.length > 0 && Array.isArray(ids[0]) ? (ids as number[][]) : [ids as number[]];
      checkBatch(batch.length, 'ids');
      return engine.decode(batch, body.skip_special_tokens ?? true);
    },
    { tokenIds: 'ids' },
  );

  // ---- OpenAI ----

  const openai = async (body: Static<typeof OpenAIEmbeddingsRequest>, reply: FastifyReply) => {
    const start = process.hrtime.bigint();
    const { items } = splitInputs(body.input);
    checkBatch(items.length, 'input');
    const out = await engine.embed(items, {
      truncate: autoTruncate,
      truncationDirection: 'right',
      normalize: true,
      dimensions: body.dimensions ?? undefined,
    });
    setMetadataHeaders(reply, start, out.metadata);
    const base64 = body.encoding_format === 'base64';
    let tokens = 0;
    for (const m of out.metadata) tokens += m.computeTokens;
    return {
      object: 'list',
      data: out.results.map((v, index) => ({
        object: 'embedding',
        embedding: base64 ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : toList(v),
        index,
      })),
      model: engine.info.modelId,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  };
  post('/v1/embeddings', OpenAIEmbeddingsRequest, openai, { openai: true, tokenIds: 'input' });
  post('/embeddings', OpenAIEmbeddingsRequest, openai, { openai: true, tokenIds: 'input' });

  // ---- the model's natural route (TEI: POST / and /invocations) ----

  const kind = engine.model.kind;
  const natural = async (body: unknown, reply: FastifyReply, request: FastifyRequest): Promise<unknown> => {
    void request;
    if (kind === 'classifier') return predict(body as Static<typeof PredictRequest>, reply);
    if (kind === 'reranker') return rerank(body as Static<typeof RerankRequest>, reply);
    if (kind === 'splade') return embedSparse(body as Static<typeof EmbedSparseRequest>, reply);
    return embed(body as Static<typeof EmbedRequest>, reply);
  };
  const naturalSchema: TSchema = kind === 'classifier' ? PredictRequest : kind === 'reranker' ? RerankRequest : kind === 'splade' ? EmbedSparseRequest : EmbedRequest;
  const naturalConfig: RouteConfig = kind === 'embedding' || kind === 'splade' ? { tokenIds: 'inputs' } : {};
  post('/', naturalSchema, natural, naturalConfig);
  post('/invocations', naturalSchema, natural, naturalConfig);

  // ---- info, health, metrics ----

  app.get('/info', async () => infoBody(engine, autoTruncate, opts.servedModelName));

  const health = async (_request: FastifyRequest, reply: FastifyReply) => {
    if (isHealthy()) return reply.status(200).send();
    const u = ERROR_CODES.UNHEALTHY;
    return reply.status(u.http).send({ error: 'unhealthy', error_type: u.teiType });
  };
  for (const url of ['/health', '/ping', '/']) app.get(url, { config: { open: true } }, health);

  if (metrics) {
    app.get('/metrics', { config: { open: true } }, async (_request, reply) => {
      reply.header('content-type', metrics.contentType);
      return metrics.render();
    });
  }
};

/** TEI's /info body. */
export function infoBody(engine: RouterEngine, autoTruncate: boolean, servedModelName?: string): Record<string, unknown> {
  const { info, model } = engine;
  let modelType: Record<string, unknown>;
  if (model.kind === 'classifier' || model.kind === 'reranker') {
    // Object.fromEntries defines own properties, so a label named `__proto__` or `constructor` is
    // a key like any other (an assignment `o[label] = i` would set the prototype or be lost).
    const id2label = Object.fromEntries(model.id2label.map((label, i) => [String(i), label]));
    const label2id = Object.fromEntries(model.id2label.map((label, i) => [label, i]));
    modelType = { [model.kind]: { id2label, label2id } };
  } else {
    const pooling = model.kind === 'splade' ? 'splade' : model.pooling === 'last-token' ? 'last_token' : (model.pooling ?? 'cls');
    modelType = { embedding: { pooling } };
  }
  return {
    model_id: info.modelId,
    model_sha: info.modelSha ?? null,
    model_dtype: info.modelDtype,
    served_model_name: servedModelName ?? info.modelId,
    model_type: modelType,
    max_concurrent_requests: info.maxConcurrentRequests,
    max_input_length: info.maxInputLength,
    max_batch_tokens: info.maxBatchTokens,
    max_batch_requests: info.maxBatchRequests ?? null,
    max_client_batch_size: info.maxClientBatchSize,
    auto_truncate: autoTruncate,
    tokenization_workers: info.tokenizationWorkers,
    version: info.version,
    sha: info.sha ?? null,
    docker_label: info.dockerLabel ?? null,
  };
}
