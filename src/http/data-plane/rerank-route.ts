/**
 * Cohere/Jina-style reranking: `POST /v1/rerank` `{model, query, documents: string[] | {text}[],
 * top_n, return_documents}` -> `{model, results: [{index, relevance_score, document?}], usage}`,
 * best first. Documents over the child's max_client_batch_size are scored in several calls and
 * ranked together. Errors in OpenAI's shape, as every /v1 route.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { nullable } from '../../tei/http-schemas.js';
import { instanceFor } from './capabilities.js';
import { checkCount, onInstance, requestedModel, setHeaders, type DataPlaneDeps } from './request-context.js';
import { tokenCount } from '../../tei/metadata.js';

const Document = Type.Union([Type.String(), Type.Object({ text: Type.String() }, { additionalProperties: false })], { description: 'a string or an object {text: string}' });

export const RerankV1Body = Type.Object({
  model: nullable(Type.String({ description: 'instance name, model id or alias' })),
  query: Type.String(),
  documents: Type.Array(Document, { description: 'a list of strings or of {text} objects' }),
  top_n: nullable(Type.Integer({ minimum: 1, description: 'a positive integer' })),
  return_documents: nullable(Type.Boolean()),
  truncate: nullable(Type.Boolean({ description: 'truncate inputs longer than the max input length (default: the child\'s --auto-truncate)' })),
  raw_scores: nullable(Type.Boolean()),
}, { additionalProperties: false });

export function rerankRoute(app: FastifyInstance, d: DataPlaneDeps): void {
  app.post<{ Body: Static<typeof RerankV1Body> }>(
    '/v1/rerank',
    { schema: { body: RerankV1Body, tags: ['data plane (rerank)'] }, bodyLimit: d.bodyLimitBytes, config: { errorShape: 'openai' } },
    async (request, reply) => {
      const start = process.hrtime.bigint();
      const body = request.body;
      checkCount(d, body.documents.length, 'documents');
      const texts = body.documents.map((x) => (typeof x === 'string' ? x : x.text));
      const model = requestedModel(request, body.model);
      const { instance, match } = await instanceFor(d, request, model, 'score');
      const { out, served } = await onInstance(
        d,
        request,
        instance,
        async (c) => ({
          out: await c.client.rerank(body.query, texts, { truncate: body.truncate ?? c.autoTruncate, truncationDirection: 'right', rawScores: body.raw_scores ?? false, returnText: false }, c.call),
          served: c,
        }),
        match,
      );
      setHeaders(reply, start, [out.metadata], [served.instance.name], served.retriedFrom === undefined ? [] : [served.retriedFrom]);
      const top = body.top_n ?? out.ranks.length;
      const tokens = tokenCount([out.metadata]);
      return {
        model: model ?? instance.spec.model_id,
        results: out.ranks.slice(0, top).map((r) => ({
          index: r.index,
          relevance_score: r.score,
          ...(body.return_documents ? { document: { text: texts[r.index] } } : {}),
        })),
        usage: { total_tokens: tokens },
      };
    },
  );
}
