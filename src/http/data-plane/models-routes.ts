/**
 * OpenAI's models API on the manager: `GET /v1/models` and `/v1/models/{id}`, the models a
 * request's API key may use, so the official `openai` client lists what `POST /v1/embeddings`
 * (TEI's shared routes, src/tei/http-routes.ts, served by plugin.ts) accepts as `model`.
 * Errors: `{"error": {"message", "type", "param", "code"}}`.
 */
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { DataPlaneDeps } from './request-context.js';
import { TeiplexError } from '../../common/errors.js';

function epochSecs(iso: string | undefined): number {
  const t = iso === undefined ? NaN : Date.parse(iso);
  return Number.isFinite(t) ? Math.floor(t / 1000) : 0;
}

export function modelsRoutes(app: FastifyInstance, d: DataPlaneDeps): void {
  const modelObject = (m: ReturnType<DataPlaneDeps['directory']['models']>[number]) => {
    const created = m.instances.map((n) => epochSecs(d.directory.instance(n)?.placement.createdAt)).filter((t) => t > 0);
    return {
      id: m.id,
      object: 'model' as const,
      created: created.length > 0 ? Math.min(...created) : 0,
      owned_by: 'teiplex',
      root: m.model_ids.length === 1 ? m.model_ids[0] : null,
      model_ids: m.model_ids,
      instances: m.instances,
      ready: m.ready,
    };
  };

  app.get('/v1/models', { schema: { tags: ['data plane (OpenAI)'] }, config: { errorShape: 'openai' } }, async (request) => ({
    object: 'list',
    data: d.directory.models(d.grant(request)).map(modelObject),
  }));

  app.get<{ Params: { '*': string } }>('/v1/models/*', { schema: { tags: ['data plane (OpenAI)'], params: Type.Object({ '*': Type.String() }) }, config: { errorShape: 'openai' } }, async (request) => {
    const id = request.params['*'];
    const models = d.directory.models(d.grant(request));
    const m = models.find((x) => x.id === id);
    if (m === undefined) throw new TeiplexError('MODEL_NOT_FOUND', `model '${id}' is not served; models: ${models.map((x) => `'${x.id}'`).join(', ') || '(none)'}`, { param: 'model' });
    return modelObject(m);
  });
}
