/**
 * TEI's HTTP routes on the manager: `/embed`, `/embed_sparse`, `/embed_all`, `/predict`,
 * `/rerank`, `/tokenize`, `/decode`, with TEI's bodies (the router's schemas,
 * src/common/tei-http-schemas.ts) plus `model` (or the X-Model header) naming the instance, model
 * id or alias; TEI's response shapes, error bodies and statuses. Unlike a TEI container, a request
 * over the child's max_client_batch_size is split and answered whole (up to max_request_inputs);
 * /embed_all's answer is bounded by http_response_limit_mb, and large answers are streamed.
 */
import { Type, type Static, type TObject, type TProperties } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  DecodeRequest,
  EmbedAllRequest,
  EmbedRequest,
  EmbedSparseRequest,
  nullable,
  PredictRequest,
  RerankRequest,
  TokenizeRequest,
} from '../../tei/http-schemas.js';
import { instanceFor } from './capabilities.js';
import type { Capability } from './capabilities.js';
import type { Batched, EncodeOptions, TextInput } from '../../tei/types.js';
import { RequestError } from './errors.js';
import { AnswerBudget, JSON_BYTES_PER_FLOAT } from './answer-budget.js';
import { floatCount, floatList, listPieces, matrixPieces, sendJson } from './json.js';
import { checkCount, direction, inputList, onInstance, requestedModel, setHeaders, type ChildRequest, type DataPlaneDeps } from './request-context.js';

const ModelField = nullable(Type.String({ description: 'instance name, model id or alias (else the X-Model header; optional with a single instance)' }));
const withModel = <P extends TProperties>(s: TObject<P>) => Type.Object({ ...s.properties, model: ModelField });

export const TeiEmbedBody = withModel(EmbedRequest);
export const TeiEmbedSparseBody = withModel(EmbedSparseRequest);
export const TeiEmbedAllBody = withModel(EmbedAllRequest);
export const TeiPredictBody = withModel(PredictRequest);
export const TeiRerankBody = withModel(RerankRequest);
export const TeiTokenizeBody = withModel(TokenizeRequest);
export const TeiDecodeBody = withModel(DecodeRequest);

type Handler<B> = (body: B, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

export function teiRoutes(app: FastifyInstance, d: DataPlaneDeps): void {
  const post = <S extends TObject>(url: string, schema: S, handler: Handler<Static<S>>) =>
    app.post(url, { schema: { body: schema, tags: ['data plane (TEI)'] }, bodyLimit: d.bodyLimitBytes, config: { errorShape: 'tei' } }, (request, reply) =>
      handler(request.body as Static<S>, request, reply),
    );
  const resolve = (request: FastifyRequest, body: { model?: string | null }, capability: Capability | null) => instanceFor(d, request, requestedModel(request, body.model), capability);

  /**
   * The embedding routes' one shape: inputs (texts or token ids) counted, the instance resolved
   * for `capability`, `run` on its inputs (token ids are decoded by the child client) with TEI's
   * encode options and the request's answer budget (http_response_limit_mb), headers, `answer`
   * the rows.
   */
  const embedRoute = <S extends typeof TeiEmbedSparseBody, R>(
    url: string,
    schema: S,
    capability: Capability,
    run: (c: ChildRequest, inputs: TextInput[], o: EncodeOptions, body: Static<S>, budget: AnswerBudget) => Promise<Batched<R>>,
    answer: (rows: R[], reply: FastifyReply) => unknown,
  ) =>
    post(url, schema, async (body, request, reply) => {
      const start = process.hrtime.bigint();
      const items = inputList(body.inputs);
      checkCount(d, items.length, 'inputs');
      const instance = await resolve(request, body, capability);
      const budget = new AnswerBudget(d.responseLimitBytes);
      const out = await onInstance(d, request, instance, (c) =>
        run(
          c,
          items,
          { truncate: body.truncate ?? c.autoTruncate, truncationDirection: direction(body.truncation_direction), ...(body.prompt_name != null ? { promptName: body.prompt_name } : {}) },
          body,
          budget,
        ),
      );
      setHeaders(reply, start, out.metadata, [instance.name]);
      return answer(out.results, reply);
    });

  embedRoute(
    '/embed',
    TeiEmbedBody,
    'dense',
    (c, inputs, o, body) => c.client.embed(inputs, { ...o, normalize: body.normalize ?? true, ...(body.dimensions != null ? { dimensions: body.dimensions } : {}) }, c.call),
    (rows, reply) => sendJson(reply, listPieces(rows, (v) => [floatList(v)]), floatCount(rows) * JSON_BYTES_PER_FLOAT),
  );
  embedRoute(
    '/embed_sparse',
    TeiEmbedSparseBody,
    'sparse',
    (c, inputs, o) => c.client.embedSparse(inputs, o, c.call),
    (rows) => rows.map((r) => Array.from(r.indices, (index, k) => ({ index, value: r.values[k] }))),
  );
  embedRoute(
    '/embed_all',
    TeiEmbedAllBody,
    'multivector',
    (c, inputs, o, _body, budget) => c.client.embedAll(inputs, o, { ...c.call, onFloats: budget.onFloats }),
    (rows, reply) =>
      sendJson(
        reply,
        listPieces(rows, (t) => matrixPieces(t.values, t.tokens, t.dim)),
        floatCount(rows.map((t) => t.values)) * JSON_BYTES_PER_FLOAT,
      ),
  );

  post('/predict', TeiPredictBody, async (body, request, reply) => {
    const start = process.hrtime.bigint();
    const inputs = body.inputs;
    const sequence = (s: string[], where: string): string | [string, string] => {
      if (s.length === 1) return s[0];
      if (s.length === 2) return [s[0], s[1]];
      throw new RequestError('VALIDATION', `\`${where}\` must be a string or a pair of strings [string, string], got ${s.length} strings`, where);
    };
    let items: Array<string | [string, string]>;
    let single: boolean;
    if (typeof inputs === 'string') {
      items = [inputs];
      single = true;
    } else if (typeof inputs[0] === 'string') {
      // TEI: a list that starts with a string is one input, a string or a pair.
      if (!inputs.every((x) => typeof x === 'string')) {
        throw new RequestError('VALIDATION', '`inputs` must be a string, a pair of strings [string, string], or a batch [[string], [string, string], ...]', 'inputs');
      }
      items = [sequence(inputs as string[], 'inputs')];
      single = true;
    } else {
      items = inputs.map((x, i) => (typeof x === 'string' ? x : sequence(x, `inputs[${i}]`)));
      single = false;
      checkCount(d, items.length, 'inputs');
    }
    const instance = await resolve(request, body, 'classify');
    const out = await onInstance(d, request, instance, (c) =>
      c.client.predict(items, { truncate: body.truncate ?? c.autoTruncate, truncationDirection: direction(body.truncation_direction), rawScores: body.raw_scores ?? false }, c.call),
    );
    setHeaders(reply, start, out.metadata, [instance.name]);
    return single ? out.results[0] : out.results;
  });

  post('/rerank', TeiRerankBody, async (body, request, reply) => {
    const start = process.hrtime.bigint();
    checkCount(d, body.texts.length, 'texts');
    const instance = await resolve(request, body, 'score');
    const out = await onInstance(d, request, instance, (c) =>
      c.client.rerank(
        body.query,
        body.texts,
        {
          truncate: body.truncate ?? c.autoTruncate,
          truncationDirection: direction(body.truncation_direction),
          rawScores: body.raw_scores ?? false,
          returnText: body.return_text ?? false,
        },
        c.call,
      ),
    );
    setHeaders(reply, start, [out.metadata], [instance.name]);
    return out.ranks.map((r) => (r.text !== undefined ? { index: r.index, text: r.text, score: r.score } : { index: r.index, score: r.score }));
  });

  post('/tokenize', TeiTokenizeBody, async (body, request, reply) => {
    const start = process.hrtime.bigint();
    const inputs = typeof body.inputs === 'string' ? [body.inputs] : body.inputs;
    checkCount(d, inputs.length, 'inputs');
    const instance = await resolve(request, body, null);
    const out = await onInstance(d, request, instance, (c) => c.client.tokenize(inputs, body.add_special_tokens ?? true, body.prompt_name ?? undefined, c.call));
    setHeaders(reply, start, null, [instance.name]);
    return out.map((tokens) => tokens.map((t) => ({ id: t.id, text: t.text, special: t.special, start: t.start ?? null, stop: t.stop ?? null })));
  });

  post('/decode', TeiDecodeBody, async (body, request, reply) => {
    const start = process.hrtime.bigint();
    const ids = body.ids;
    const batch = ids.length > 0 && Array.isArray(ids[0]) ? (ids as number[][]) : [ids as number[]];
    checkCount(d, batch.length, 'ids');
    const instance = await resolve(request, body, null);
    const out = await onInstance(d, request, instance, (c) => c.client.decode(batch, body.skip_special_tokens ?? true, c.call));
    setHeaders(reply, start, null, [instance.name]);
    return out;
  });
}
