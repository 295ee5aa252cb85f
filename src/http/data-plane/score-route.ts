/**
 * Cross-encoder scores: `POST /v1/score/{model}` `{query, items: [{id?, text}], truncate,
 * raw_scores}` -> `{model, scores: [{id, index, score}], usage}`, best first. The model must be a
 * reranker (capability 'score'); otherwise 422 naming what it can do. `{model}` may hold slashes.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { nullable } from '../../tei/http-schemas.js';
import { planOutputs } from './capabilities.js';
import { ModelParam, TextItem } from './encode-route.js';
import { checkCount, onInstance, setHeaders, type DataPlaneDeps } from './request-context.js';
import { tokenCount } from '../../tei/metadata.js';

export const ScoreBody = Type.Object(
  {
    query: Type.String(),
    items: Type.Array(TextItem, { description: 'a list of {id?, text} objects' }),
    truncate: nullable(Type.Boolean()),
    raw_scores: nullable(Type.Boolean()),
  },
  { additionalProperties: false },
);

export function scoreRoute(app: FastifyInstance, d: DataPlaneDeps): void {
  app.post<{ Body: Static<typeof ScoreBody>; Params: Static<typeof ModelParam> }>(
    '/v1/score/*',
    { schema: { body: ScoreBody, params: ModelParam, tags: ['data plane (typed)'] }, bodyLimit: d.bodyLimitBytes, config: { errorShape: 'openai' } },
    async (request, reply) => {
      const start = process.hrtime.bigint();
      const body = request.body;
      const model = request.params['*'];
      checkCount(d, body.items.length, 'items');
      const match = await d.directory.matchReady(request, model, 'model');
      const plan = await planOutputs(d, match, ['score'], 'model');
      const [instance] = [...plan.keys()];
      const { out, served } = await onInstance(
        d,
        request,
        instance,
        async (c) => ({
          out: await c.client.rerank(
            body.query,
            body.items.map((x) => x.text),
            { truncate: body.truncate ?? c.autoTruncate, truncationDirection: 'right', rawScores: body.raw_scores ?? false, returnText: false },
            c.call,
          ),
          served: c,
        }),
        match,
      );
      setHeaders(reply, start, [out.metadata], [served.instance.name], served.retriedFrom === undefined ? [] : [served.retriedFrom]);
      const tokens = tokenCount([out.metadata]);
      return {
        model,
        scores: out.ranks.map((r) => ({ id: body.items[r.index].id ?? r.index, index: r.index, score: r.score })),
        usage: { prompt_tokens: tokens, total_tokens: tokens },
      };
    },
  );
}
