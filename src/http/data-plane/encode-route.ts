/**
 * Typed outputs in one call: `POST /v1/encode/{model}` `{items: [{id?, text}], output_types:
 * ["dense", "sparse", "multivector"], normalize, dimensions, truncate, prompt_name}` -> per item
 * `{id, dense: {dim, values}, sparse: {indices, values}, multivector: {tokens, dim, values},
 * tokens: [...]}` for the types asked (multivector values are tokens x dim, row-major; `tokens` is
 * token classification, /predict_tokens's answer for the item, with `aggregation_strategy`). A type the model cannot
 * produce is 422 naming its capabilities; types served by different instances of the model (one
 * alias over a dense and a SPLADE instance) are gathered into one answer (capabilities.ts).
 * `{model}` may hold slashes (a hub id). Multivector outputs count against http_response_limit_mb;
 * large answers are streamed (src/tei/json-answer.ts).
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { AggregationStrategyField, EmbeddingTypeField, EncodingField, InputTypeField, nullable, PromptName } from '../../tei/http-schemas.js';
import { tokenPredictionsJson, withInputType } from '../../tei/http-routes.js';
import { modelPrompts } from '../../child/model-prompts.js';
import { CACHE_HEADER, CachedEngine, cacheHeader } from '../../routing/cached-engine.js';
import { rowJson, typedRows } from '../../tei/embedding-output.js';
import type { OutputType as EmbeddingType, TypedRow } from '../../tei/embedding-types.js';
import type { Metadata } from '../../tei/types.js';
import { planOutputs } from './capabilities.js';
import { TeiplexError } from '../../common/errors.js';
import type { SparseVector, TokenEmbeddings, TokenPredictions } from '../../tei/types.js';
import { JSON_BYTES_PER_FLOAT } from '../../tei/json-answer.js';
import { AnswerBudget } from './answer-budget.js';
import { flatPieces, floatList, listPieces, sendJson } from '../../tei/json-answer.js';
import { checkCount, onInstance, setHeaders, type DataPlaneDeps } from './request-context.js';
import { tokenCount } from '../../tei/metadata.js';

export const OutputType = Type.Union([Type.Literal('dense'), Type.Literal('sparse'), Type.Literal('multivector'), Type.Literal('tokens')], { description: '"dense", "sparse", "multivector" or "tokens"' });
type OutputType = Static<typeof OutputType>;

const ItemId = Type.Union([Type.String(), Type.Integer()], { description: 'a string or an integer' });
export const TextItem = Type.Object({ id: Type.Optional(ItemId), text: Type.String() }, { additionalProperties: false });

export const EncodeBody = Type.Object(
  {
    items: Type.Array(TextItem, { description: 'a list of {id?, text} objects' }),
    output_types: Type.Optional(Type.Array(OutputType, { minItems: 1, description: 'a non-empty list of "dense", "sparse", "multivector", "tokens"' })),
    aggregation_strategy: AggregationStrategyField,
    normalize: nullable(Type.Boolean()),
    dimensions: nullable(Type.Integer({ minimum: 1, maximum: 0xffffffff, description: 'a positive integer' })),
    embedding_type: EmbeddingTypeField,
    encoding: EncodingField,
    truncate: nullable(Type.Boolean()),
    truncation_direction: Type.Optional(Type.Union([Type.Literal('Right'), Type.Literal('Left'), Type.Literal('right'), Type.Literal('left')], { description: '"Right" or "Left"' })),
    prompt_name: PromptName,
    input_type: InputTypeField,
  },
  { additionalProperties: false },
);

export const ModelParam = Type.Object({ '*': Type.String({ minLength: 1, description: 'instance name, model id or alias' }) });

interface ItemOut {
  id: string | number;
  dense?: { dim: number; values: TypedRow };
  sparse?: SparseVector;
  multivector?: TokenEmbeddings;
  tokens?: TokenPredictions;
}

/** One item of the answer as JSON pieces, vectors without a number[] each; dense values in `type`, as JSON or base64. */
function* itemPieces(x: ItemOut, type: EmbeddingType, base64: boolean): Generator<string> {
  yield `{"id":${JSON.stringify(x.id)}`;
  if (x.dense) yield `,"dense":{"dim":${x.dense.dim},"values":${rowJson(x.dense.values, type, base64)}}`;
  if (x.sparse) yield `,"sparse":{"indices":${JSON.stringify(Array.from(x.sparse.indices))},"values":${floatList(x.sparse.values)}}`;
  if (x.multivector) {
    yield `,"multivector":{"tokens":${x.multivector.tokens},"dim":${x.multivector.dim},"values":`;
    yield* flatPieces(x.multivector.values);
    yield '}';
  }
  if (x.tokens) yield `,"tokens":${JSON.stringify(tokenPredictionsJson(x.tokens))}`;
  yield '}';
}

/** Values in an item's vectors (for the size of the answer). */
const itemFloats = (x: ItemOut): number => (x.dense?.dim ?? 0) + 2 * (x.sparse?.values.length ?? 0) + (x.multivector?.values.length ?? 0);

export function encodeRoute(app: FastifyInstance, d: DataPlaneDeps): void {
  app.post<{ Body: Static<typeof EncodeBody>; Params: Static<typeof ModelParam> }>(
    '/v1/encode/*',
    { schema: { body: EncodeBody, params: ModelParam, tags: ['data plane (typed)'] }, bodyLimit: d.bodyLimitBytes, config: { errorShape: 'openai' } },
    async (request, reply) => {
      const start = process.hrtime.bigint();
      const body = request.body;
      const model = request.params['*'];
      checkCount(d, body.items.length, 'items');
      const types: OutputType[] = body.output_types ?? ['dense'];
      const embeddingType = body.embedding_type ?? 'float32';
      if ((body.embedding_type !== undefined || body.encoding !== undefined) && !types.includes('dense')) {
        throw new TeiplexError('VALIDATION', '`embedding_type` and `encoding` apply to dense outputs: add "dense" to `output_types`', { param: body.embedding_type !== undefined ? 'embedding_type' : 'encoding' });
      }
      const match = await d.directory.matchReady(request, model, 'model');
      const plan = await planOutputs(d, match, types, 'output_types');
      const itemTexts = body.items.map((x) => x.text);
      const out: ItemOut[] = body.items.map((x, i) => ({ id: x.id ?? i }));
      const truncationDirection = body.truncation_direction?.toLowerCase() === 'left' ? 'left' : 'right';
      const metadata: Metadata[][] = [];
      const budget = new AnswerBudget(d.responseLimitBytes);
      const served: string[] = [];
      const retriedFrom: string[] = [];
      const engines: CachedEngine[] = [];
      await Promise.all(
        [...plan].map(([instance, kinds]) =>
          onInstance(
            d,
            request,
            instance,
            async (c) => {
              const typed = withInputType(
                itemTexts,
                { truncate: body.truncate ?? c.autoTruncate, truncationDirection, ...(body.prompt_name != null ? { promptName: body.prompt_name } : {}) },
                body.input_type,
                { prompts: modelPrompts(c.instance.spec), modelName: model },
                reply,
              );
              const base = typed.e;
              const texts = typed.inputs;
              const engine = new CachedEngine(c.client, c.instance.spec, d.routing.cache, c.instance.spec.embedding_cache !== false);
              engines.push(engine);
              // Kept until every kind of this instance is in: a failed attempt (failover) leaves nothing behind.
              const got: Array<() => void> = [];
              await Promise.all(
                kinds.map(async (kind) => {
                  if (kind === 'dense') {
                    const opts = { ...base, normalize: body.normalize ?? true, ...(body.dimensions != null ? { dimensions: body.dimensions } : {}) };
                    const r = await engine.embed(texts, opts, c.call);
                    const rows = await typedRows(engine, r.results, embeddingType, opts, c.call);
                    got.push(() => rows.forEach((v, i) => (out[i].dense = { dim: r.results[i].length, values: v })), () => metadata.push(r.metadata));
                  } else if (kind === 'sparse') {
                    const r = await engine.embedSparse(texts, base, c.call);
                    got.push(() => r.results.forEach((v, i) => (out[i].sparse = v)), () => metadata.push(r.metadata));
                  } else if (kind === 'tokens') {
                    // no prompt for token classification: its offsets are into the item's own text
                    const r = await c.client.predictTokens(itemTexts, { truncate: base.truncate, truncationDirection, rawScores: false, aggregation: body.aggregation_strategy ?? 'none' }, c.call);
                    got.push(() => r.results.forEach((v, i) => (out[i].tokens = v)), () => metadata.push(r.metadata));
                  } else {
                    const r = await engine.embedAll(texts, base, { ...c.call, onFloats: budget.onFloats });
                    got.push(() => r.results.forEach((v, i) => (out[i].multivector = v)), () => metadata.push(r.metadata));
                  }
                }),
              );
              for (const keep of got) keep();
              served.push(c.instance.name);
              if (c.retriedFrom !== undefined) retriedFrom.push(c.retriedFrom);
            },
            match,
          ),
        ),
      );
      const flat = metadata.flat();
      setHeaders(reply, start, flat, served, retriedFrom);
      const counts = engines.reduce((n, e) => ({ hits: n.hits + e.stats.hits, misses: n.misses + e.stats.misses }), { hits: 0, misses: 0 });
      if (counts.hits + counts.misses > 0) reply.header(CACHE_HEADER, cacheHeader(counts));
      // Each output type tokenizes the same texts: count them once.
      const tokens = Math.max(0, ...metadata.map(tokenCount));
      function* answer(): Generator<string> {
        yield `{"model":${JSON.stringify(model)},"items":`;
        yield* listPieces(out, (x) => itemPieces(x, embeddingType, body.encoding === 'base64'));
        yield `,"usage":{"prompt_tokens":${tokens},"total_tokens":${tokens}}}`;
      }
      return sendJson(reply, answer(), out.reduce((n, x) => n + itemFloats(x), 0) * JSON_BYTES_PER_FLOAT);
    },
  );
}
