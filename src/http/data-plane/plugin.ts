/**
 * The manager's HTTP data plane as one fastify plugin: TEI's routes and OpenAI's embeddings
 * (the shared plugin src/tei/http-routes.ts, on the engine tei-target.ts resolves), OpenAI's
 * models (models-routes.ts), Cohere/Jina rerank (rerank-route.ts), typed encode and score
 * (encode-route.ts, score-route.ts). Served on the admin API's listener, or on its own
 * (`data_port`, data-app.ts).
 *
 * - Bodies are checked by their TypeBox schemas (no coercion); the first offending field is named.
 *   Bad input is always a 4xx: a schema failure 422 (TEI's status), a body that is not JSON 400,
 *   a body over `http_body_limit_mb` 413; an answer that would exceed `http_response_limit_mb`
 *   413 as soon as the child's results show it (answer-budget.ts). Large answers are streamed in
 *   chunks with backpressure (src/tei/json-answer.ts), never built as one string.
 * - Errors in the route's protocol: TEI's `{error, error_type}`, or on /v1 routes OpenAI's
 *   `{error: {message, type, param, code}}`; 429 and 503 carry Retry-After.
 * - Draining: once `drain` is called new requests get 503 and it resolves when those in flight
 *   have finished (or the grace period ends).
 */
import type { FastifyError, FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import type { Catalog } from '../../catalog/catalog.js';
import { TeiplexError } from '../../common/errors.js';
import { DEFAULTS } from '../../config/config.js';
import { typeboxValidator } from '../../tei/http-schemas.js';
import type { MuxRouting } from '../../routing/routing.js';
import type { InstanceDirectory } from '../../routing/target.js';
import { encodeRoute } from './encode-route.js';
import { dataPlaneError } from './errors.js';
import { DataPlaneMetrics } from './metrics.js';
import { ASYMMETRIC_WARNING_HEADER } from '../../tei/input-types.js';
import { ModelDirectory, type GrantOf } from './model-directory.js';
import { installQuotaHooks, quotaMetrics } from './quota-hooks.js';
import type { Quotas } from '../../auth/quotas.js';
import { modelsRoutes } from './models-routes.js';
import { rerankRoute } from './rerank-route.js';
import { INSTANCE_HEADER, watchDisconnect, type DataPlaneDeps } from './request-context.js';
import { scoreRoute } from './score-route.js';
import { teiTarget } from './tei-target.js';
import { teiRoutes } from '../../tei/http-routes.js';
import type { Batches } from '../../batch/batches.js';
import { batchRoutes } from './batch-routes.js';
import { jobTarget, type OwnerGrant } from './job-target.js';

export interface DataPlaneOptions {
  instances: InstanceDirectory;
  /** The multiplexer's channels, calls in flight and balancing (src/mux/routing.ts). */
  routing: MuxRouting;
  /** grpc_request_timeout_secs, ms: each child call's deadline. */
  timeoutMs: number;
  maxRequestInputs: number;
  bodyLimitBytes: number;
  /** API keys: a request's grant, for the authorization decision on what it reaches (default: none, everything allowed). */
  grant?: GrantOf;
  /** The keys' quotas (quota-hooks.ts); undefined: none. */
  quotas?: Quotas;
  /** http_response_limit_mb, bytes (default: the config default). */
  responseLimitBytes?: number;
  /** Shutdown coordination (default: a lifecycle of its own). */
  lifecycle?: DataPlaneLifecycle;
  /** On-demand models: a request naming one that is not loaded starts it. */
  catalog?: Catalog;
  /** Where request metrics go (the manager's registry); none: not counted. */
  registry?: Registry;
  /** Batch jobs (src/batch/): the Files and Batches API served, and the jobs run on this data plane's routing. */
  batches?: Batches;
  /** A batch owner's grant (API keys; undefined: none); throws when the owner's key is gone. */
  ownerGrant?: OwnerGrant;
}

/** Requests in flight, and the switch that refuses new ones during shutdown. */
export class DataPlaneLifecycle {
  private active = 0;
  private stopping = false;
  private idle: (() => void) | undefined;

  get draining(): boolean {
    return this.stopping;
  }

  begin(): void {
    this.active++;
  }

  end(): void {
    if (--this.active === 0) this.idle?.();
  }

  /** `end`, bound (one listener function for every request). */
  readonly ended = (): void => this.end();

  /** Refuse new requests; resolve when none is in flight, or after `graceMs`. */
  drain(graceMs: number): Promise<void> {
    this.stopping = true;
    if (this.active === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, graceMs);
      this.idle = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

/** The TEI and /v1 routes' error answer (src/tei/http-errors.ts), with Retry-After where the code has one. */
function sendError(err: unknown, request: FastifyRequest, reply: FastifyReply, bodyLimitBytes: number): FastifyReply {
  const shape = request.routeOptions.config?.errorShape ?? (request.url.startsWith('/v1/') ? 'openai' : 'tei');
  const a = dataPlaneError(err, shape, bodyLimitBytes);
  return reply.status(a.status).headers(a.headers).send(a.body);
}

export const dataPlane: FastifyPluginAsync<DataPlaneOptions> = async (app: FastifyInstance, o: DataPlaneOptions) => {
  const lifecycle = o.lifecycle ?? new DataPlaneLifecycle();
  const grant = o.grant ?? (() => undefined);
  const deps: DataPlaneDeps = {
    directory: new ModelDirectory(o.instances, o.routing.resolver, o.catalog, grant, o.timeoutMs),
    routing: o.routing,
    timeoutMs: o.timeoutMs,
    maxRequestInputs: o.maxRequestInputs,
    bodyLimitBytes: o.bodyLimitBytes,
    grant,
    responseLimitBytes: o.responseLimitBytes ?? DEFAULTS.http_response_limit_mb * 1024 * 1024,
  };

  app.setValidatorCompiler(typeboxValidator);
  app.setErrorHandler((err: FastifyError, request, reply) => sendError(err, request, reply, o.bodyLimitBytes));

  // Hooks in callback style: no promise per hook per request.
  app.addHook('onRequest', (request, reply, done) => {
    if (lifecycle.draining) {
      sendError(new TeiplexError('UNHEALTHY', 'the manager is shutting down'), request, reply, o.bodyLimitBytes);
      return;
    }
    lifecycle.begin();
    reply.raw.once('close', lifecycle.ended);
    watchDisconnect(request);
    done();
  });
  if (o.registry !== undefined) {
    const metrics = new DataPlaneMetrics(o.registry, o.routing.failover, o.routing.cache);
    app.addHook('onResponse', (request, reply, done) => {
      const instance = reply.getHeader(INSTANCE_HEADER);
      metrics.observe(request.routeOptions.url ?? 'unknown', typeof instance === 'string' ? instance : '', reply.statusCode, reply.elapsedTime / 1000);
      if (reply.statusCode < 400 && reply.hasHeader(ASYMMETRIC_WARNING_HEADER)) metrics.inputTypeMissing(typeof instance === 'string' ? instance : '');
      done();
    });
  }

  if (o.quotas !== undefined) {
    installQuotaHooks(app, o.quotas, deps.directory, grant);
    if (o.registry !== undefined) quotaMetrics(o.registry, o.quotas);
  }

  await app.register(teiRoutes, teiTarget(deps));
  modelsRoutes(app, deps);
  rerankRoute(app, deps);
  encodeRoute(app, deps);
  scoreRoute(app, deps);
  if (o.batches !== undefined) {
    batchRoutes(app, o.batches, grant);
    await o.batches.attach(jobTarget(deps, o.ownerGrant ?? (() => undefined), o.quotas));
  }
};
