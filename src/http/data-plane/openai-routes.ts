/**
 * OpenAI's embeddings API on the manager: `POST /v1/embeddings` and `GET /v1/models`
 * (`/v1/models/{id}` too), so the official `openai` client works by changing only its baseURL.
 * `model` is an instance name, model id or alias; `input` a string, a list of strings, a list of
 * token ids or a list of those; `encoding_format` float or base64 (little-endian float32);
 * `dimensions` keeps the first N (Matryoshka); `user` is accepted and ignored. Usage carries the
 * child's own token counts. Errors: `{"error": {"message", "type", "param", "code"}}`.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { OpenAIEmbeddingsRequest } from '../../tei/http-schemas.js';
import { instanceFor } from './capabilities.js';
import { RequestError } from './errors.js';
import { JSON_BYTES_PER_FLOAT } from './answer-budget.js';
import { base64Floats, floatCount, floatList, sendJson } from './json.js';
import { checkCount, inputList, onInstance, requestedModel, setHeaders, tokenCount, type DataPlaneDeps } from './request-context.js';

export const EmbeddingsBody = OpenAIEmbeddingsRequest;

function epochSecs(iso: string | undefined): number {
  const t = iso === undefined ? NaN : Date.parse(iso);
  return Number.isFinite(t) ? Math.floor(t / 1000) : 0;
}

export function openaiRoutes(app: FastifyInstance, d: DataPlaneDeps): void {
  app.post<{ Body: Static<typeof EmbeddingsBody> }>(
    '/v1/embeddings',
    { schema: { body: EmbeddingsBody, tags: ['data plane (OpenAI)'] }, bodyLimit: d.bodyLimitBytes, config: { errorShape: 'openai' } },
    async (request, reply) => {
      const start = process.hrtime.bigint();
      const body = request.body;
      const items = inputList(body.input);
      checkCount(d, items.length, 'input');
      const model = requestedModel(request, body.model);
      const instance = await instanceFor(d, request, model, 'dense');
      const out = await onInstance(d, request, instance, (c) =>
        c.client.embed(items, { truncate: c.autoTruncate, truncationDirection: 'right', normalize: true, ...(body.dimensions != null ? { dimensions: body.dimensions } : {}) }, c.call),
      );
      setHeaders(reply, start, out.metadata, [instance.name]);
      const tokens = tokenCount(out.metadata);
      const base64 = body.encoding_format === 'base64';
      const name = JSON.stringify(model ?? instance.spec.model_id);
      // Written as text, the vectors without a number[] per row; streamed when large.
      function* answer(): Generator<string> {
        yield '{"object":"list","data":[';
        for (let index = 0; index < out.results.length; index++) {
          const v = out.results[index];
          const embedding = base64 ? JSON.stringify(base64Floats(v)) : floatList(v);
          yield `${index > 0 ? ',' : ''}{"object":"embedding","embedding":${embedding},"index":${index}}`;
        }
        yield `],"model":${name},"usage":{"prompt_tokens":${tokens},"total_tokens":${tokens}}}`;
      }
      return sendJson(reply, answer(), floatCount(out.results) * JSON_BYTES_PER_FLOAT);
    },
  );

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
    if (m === undefined) throw new RequestError('MODEL_NOT_FOUND', `model '${id}' is not served; models: ${models.map((x) => `'${x.id}'`).join(', ') || '(none)'}`, 'model');
    return modelObject(m);
  });
}
