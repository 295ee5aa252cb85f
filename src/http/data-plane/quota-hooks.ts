/**
 * Quotas per API key on the HTTP data plane (src/auth/quotas.ts has the rule):
 * - preHandler (the body parsed): a limited key's request is admitted against the buckets of the
 *   model it names (the `model` field or `X-Model`, as the routes read it, and what that resolves
 *   to: the model_ids of its instances, its catalog model), else the key's own; over quota it
 *   ends with RATE_LIMIT_EXCEEDED (429, `Retry-After`).
 * - onSend: a success is charged the tokens the model embedded (`x-compute-tokens`, the
 *   metadata's compute tokens, as usage reports them, embedding-cache hits included), then every answer of a limited key, refusals included,
 *   carries `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (OpenAI's names and duration
 *   format); an answer given before admission (a malformed body) shows the key's own buckets.
 * Metrics: teiplex_quota_refusals_total{key,kind}, teiplex_quota_tokens_total{key}.
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import { quotaHeaders, quotaStateOf, type QuotaTicket, type Quotas } from '../../auth/quotas.js';
import type { GrantOf, ModelDirectory } from './model-directory.js';
import { requestedModel } from './request-context.js';

/** Quota metrics on `registry`, fed by `quotas`' events (the gRPC front ends' calls too). */
export function quotaMetrics(registry: Registry, quotas: Quotas): void {
  const refusals = new Counter({ name: 'teiplex_quota_refusals_total', help: 'Calls refused because their API key was over its quota, by key and kind (tokens, requests)', labelNames: ['key', 'kind'], registers: [registry] });
  const tokens = new Counter({ name: 'teiplex_quota_tokens_total', help: 'Tokens charged to API keys with a quota (the tokens their calls embedded), by key', labelNames: ['key'], registers: [registry] });
  quotas.events = {
    refused: (key, kind) => refusals.inc({ key, kind }),
    charged: (key, n) => tokens.inc({ key }, n),
  };
}

/** The names a request's model goes by: as given, and what it resolves to for the key. */
function modelNames(directory: ModelDirectory, request: FastifyRequest, grant: GrantOf): string[] {
  const body = request.body as { model?: unknown } | null | undefined;
  const given = requestedModel(request, typeof body?.model === 'string' ? body.model : undefined);
  const names = given === undefined ? [] : [given];
  try {
    const m = directory.match(given, 'model', grant(request));
    for (const i of m.candidates) names.push(i.spec.model_id, i.name);
    if (m.catalog !== undefined) names.push(m.catalog.name, m.catalog.spec.model_id);
  } catch {
    // The route answers the bad name itself; the call counts against the key's own buckets.
  }
  return names;
}

export function installQuotaHooks(app: FastifyInstance, quotas: Quotas, directory: ModelDirectory, grant: GrantOf): void {
  const tickets = new WeakMap<IncomingMessage, QuotaTicket>();
  app.addHook('preHandler', (request, reply, done) => {
    const g = grant(request);
    // The Files and Batches routes are not inference: a job's rows are charged as they run.
    if (g === undefined || !quotas.limited(g.name) || request.routeOptions.config?.quota === false) {
      done();
      return;
    }
    try {
      const ticket = quotas.admit(g.name, modelNames(directory, request, grant));
      if (ticket !== undefined) tickets.set(request.raw, ticket);
      done();
    } catch (err) {
      const state = quotaStateOf(err);
      if (state !== undefined) for (const [k, v] of quotaHeaders(state)) reply.header(k, v);
      done(err as Error);
    }
  });
  app.addHook('onSend', (request, reply, payload, done) => {
    const ticket = tickets.get(request.raw);
    if (ticket !== undefined) {
      if (reply.statusCode < 400) ticket.charge(Number(reply.getHeader('x-compute-tokens') ?? 0));
      for (const [k, v] of quotaHeaders(ticket.state())) reply.header(k, v);
    } else if (!reply.hasHeader('x-ratelimit-reset-requests') && !reply.hasHeader('x-ratelimit-reset-tokens')) {
      // Answered before admission (a malformed request, a refused key): the key's buckets as they are.
      const g = grant(request);
      const state = g === undefined ? undefined : quotas.peek(g.name);
      if (state !== undefined) for (const [k, v] of quotaHeaders(state)) reply.header(k, v);
    }
    done(null, payload);
  });
}
