/**
 * The data plane's side of TEI's shared HTTP routes (src/tei/http-routes.ts): which engine serves
 * a request. The request's `model` (the body's field, else the X-Model header; optional with a
 * single instance) resolves to the instance that can do what the route needs (cold-starting an
 * on-demand model, with the API key's authorization decision: capabilities.ts, model-directory.ts),
 * and the route runs on that instance's ChildClient, counted in flight, with the request's
 * deadline and disconnect signal (request-context.ts). The target's facts: the child's
 * auto-truncate, the requested name as OpenAI's `model`, /embed_all's answer budget
 * (http_response_limit_mb), and `x-teiplex-instance` on the answer (after a failover: the replica
 * that answered, and `x-teiplex-retried-from`). Inputs are counted against
 * max_request_inputs (413), and bodies take the `model` field.
 */
import type { FastifyRequest } from 'fastify';
import type { EngineTarget, RouteNeed, TeiRoutesOptions } from '../../tei/http-routes.js';
import { modelPrompts } from '../../child/model-prompts.js';
import { CACHE_HEADER, CachedEngine, cacheHeader } from '../../routing/cached-engine.js';
import { AnswerBudget } from './answer-budget.js';
import { instanceFor } from './capabilities.js';
import { checkCount, INSTANCE_HEADER, onInstance, requestedModel, servedBy, type DataPlaneDeps } from './request-context.js';

/** `x-teiplex-instance` per instance name, made once. */
const instanceHeaders = new Map<string, Readonly<Record<string, string>>>();
function instanceHeader(name: string): Readonly<Record<string, string>> {
  let h = instanceHeaders.get(name);
  if (h === undefined) {
    if (instanceHeaders.size >= 4096) instanceHeaders.clear();
    instanceHeaders.set(name, (h = Object.freeze({ [INSTANCE_HEADER]: name })));
  }
  return h;
}

export function teiTarget(d: DataPlaneDeps): TeiRoutesOptions {
  return {
    async serve<T>(request: FastifyRequest, need: RouteNeed, fn: (t: EngineTarget) => Promise<T>): Promise<T> {
      const body = request.body as { model?: string | null } | null;
      const model = requestedModel(request, body?.model);
      const { instance, match } = await instanceFor(d, request, model, need);
      return onInstance(
        d,
        request,
        instance,
        (c) => {
          const engine = new CachedEngine(c.client, c.instance.spec, d.routing.cache, c.instance.spec.embedding_cache !== false);
          const served = c.retriedFrom === undefined ? instanceHeader(c.instance.name) : servedBy(c);
          return fn({
            engine,
            autoTruncate: c.autoTruncate,
            modelName: model ?? c.instance.spec.model_id,
            call: c.call,
            // Made when a route asks for it (/embed_all), not for every request.
            get onFloats() {
              return new AnswerBudget(d.responseLimitBytes).onFloats;
            },
            // read after the call: the cache's counts for this request, on the routes that embed
            get headers() {
              const s = engine.stats;
              return s.hits + s.misses === 0 ? served : { ...served, [CACHE_HEADER]: cacheHeader(s) };
            },
            prompts: modelPrompts(c.instance.spec),
          });
        },
        match,
      );
    },
    checkCount: (n, field) => checkCount(d, n, field),
    bodyLimit: d.bodyLimitBytes,
    modelField: true,
    tags: { tei: 'data plane (TEI)', openai: 'data plane (OpenAI)' },
  };
}
