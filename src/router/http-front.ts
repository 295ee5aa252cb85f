/**
 * The router's HTTP front end as a fastify plugin: TEI's routes and OpenAI's /v1/embeddings (also
 * at TEI's alias /embeddings) from the shared plugin src/tei/http-routes.ts, always on the router's
 * local engine, plus what only the router has: /info, /health (and TEI's GET / and /ping), /metrics,
 * the model's natural route (TEI: POST / and /invocations, dispatched by model kind to the shared
 * handlers), the API key, the token-id vocabulary check, and the failure metrics of refusals.
 *
 * - Bodies are validated by the TypeBox schemas of src/tei/http-schemas.ts; a bad body is 422
 *   naming the field. `truncate` left out or null means the router's --auto-truncate.
 * - Errors: `{"error": ..., "error_type": ...}` with the status of src/common/errors.ts (422
 *   validation, 429 overloaded, 424 backend, 413 payload, 400 wrong model type, 401 api key),
 *   rendered by src/tei/http-errors.ts (Retry-After where the code has one);
 *   /v1/embeddings answers errors in TEI's OpenAI shape `{"message", "code", "type"}`.
 * - More inputs than max_client_batch_size: 422 "batch size N > maximum allowed batch size M".
 * - Token ids (`inputs`/`input` of the embedding routes, `ids` of /decode) outside the model's
 *   vocabulary, negative ones included: 422 naming the id, its position and the vocabulary size.
 * - Success headers (ms, like TEI): x-compute-time, x-compute-characters, x-compute-tokens,
 *   x-total-time, x-tokenization-time, x-queue-time, x-inference-time (/tokenize and /decode:
 *   x-total-time). Large answers (/embed_all) are streamed, never built as one string.
 * - With an api key every route except /health, /ping, GET / and /metrics needs
 *   `authorization: Bearer <key>` (401 otherwise).
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { ERROR_CODES, TeiplexError } from '../common/errors.js';
import { fastifyError, toHttpError, type HttpError } from '../tei/http-errors.js';
import { postRoute, teiRouteTable, teiRoutes, type TeiRoute, type TeiRoutesOptions } from '../tei/http-routes.js';
import { typeboxValidator } from '../tei/http-schemas.js';
import type { RouterMetrics } from './metrics.js';
import type { RouterLog } from './router-log.js';
import { tokenIdsError } from './tokenization.js';
import type { RouterEngine } from './engine.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** No API key needed (health, metrics). */
    open?: boolean;
  }
}

export interface HttpFrontOptions {
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

/** The token-id lists in a body field: the field itself when it is a list of numbers, else those of its items that are, with their row. */
function tokenIdLists(v: unknown): Array<{ ids: unknown[]; row: number; rows: number }> {
  const isIds = (x: unknown): x is unknown[] => Array.isArray(x) && x.length > 0 && x.every((t) => typeof t === 'number');
  if (!Array.isArray(v)) return [];
  if (isIds(v)) return [{ ids: v, row: 0, rows: 1 }];
  return v.flatMap((x, row) => (isIds(x) ? [{ ids: x, row, rows: v.length }] : []));
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

export const httpFront: FastifyPluginAsync<HttpFrontOptions> = async (app: FastifyInstance, opts: HttpFrontOptions) => {
  const { engine, maxClientBatchSize, autoTruncate, payloadLimit, metrics } = opts;
  const isHealthy = opts.isHealthy ?? (() => true);
  const expectedAuth = opts.apiKey !== undefined ? Buffer.from(`Bearer ${opts.apiKey}`) : null;

  app.setValidatorCompiler(typeboxValidator);

  const shapeOf = (request: FastifyRequest): 'tei' | 'tei-openai' => (request.routeOptions.config?.errorShape === 'openai' ? 'tei-openai' : 'tei');

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
      if (request.routeOptions.config?.open) return;
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
    const field = request.routeOptions.config?.tokenIds;
    const vocabSize = engine.model.inputVocabSize;
    if (field === undefined || vocabSize === undefined || request.body === null || typeof request.body !== 'object') return;
    for (const { ids, row, rows } of tokenIdLists((request.body as Record<string, unknown>)[field])) {
      const bad = tokenIdsError(ids, vocabSize, row, rows);
      if (bad) throw edgeError('validation', bad);
    }
  });

  // TEI's routes, always on the local engine.
  const target = { engine, autoTruncate, modelName: engine.info.modelId, prompts: { prompts: engine.model.prompts, source: 'model' as const } };
  const routes: TeiRoutesOptions = {
    serve: (_request, _need, fn) => fn(target),
    checkCount: (n, field) => {
      if (n === 0) {
        if (field === 'texts') return; // an empty rerank: the RouterEngine says so
        throw edgeError('validation', new TeiplexError('EMPTY', `\`${field}\` cannot be empty`));
      }
      if (n > maxClientBatchSize) {
        throw edgeError('batch_size', new TeiplexError('VALIDATION', `batch size ${n} > maximum allowed batch size ${maxClientBatchSize}`));
      }
    },
    bodyLimit: payloadLimit,
    openaiUrls: ['/v1/embeddings', '/embeddings'],
    onRefused: () => metrics?.recordFailure('validation'),
  };
  await app.register(teiRoutes, routes);

  // ---- the model's natural route (TEI: POST / and /invocations) ----

  const table = teiRouteTable(routes);
  const kind = engine.model.kind;
  const natural: TeiRoute = kind === 'token-classifier' ? table.predictTokens : kind === 'classifier' ? table.predict : kind === 'reranker' ? table.rerank : kind === 'splade' ? table.embedSparse : table.embed;
  postRoute(app, '/', natural, routes);
  postRoute(app, '/invocations', natural, routes);

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
  } else if (model.kind === 'token-classifier') {
    // Not one of TEI's model types (TEI serves no token classifier): BEI-style, its own key.
    const id2label = Object.fromEntries(model.id2label.map((label, i) => [String(i), label]));
    const label2id = Object.fromEntries(model.id2label.map((label, i) => [label, i]));
    modelType = { token_classifier: { id2label, label2id } };
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
