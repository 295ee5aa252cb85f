/**
 * TEI's HTTP routes as one fastify plugin, for every front end that speaks them: the router over
 * its local engine, the manager's data plane over a child's ChildClient. Routes: /embed,
 * /embed_sparse, /embed_all, /predict, /predict_tokens (BEI's token classification), /rerank,
 * /tokenize, /decode, and OpenAI's /v1/embeddings (at the URLs the front end lists). JSON shapes
 * follow text-embeddings-inference's router/src/http/types.rs.
 *
 * - The routes interpret the body (http-schemas.ts: TEI's input unions, token-id inputs, predict's
 *   string / pair / batch rules, `truncate` left out or null = the target's auto-truncate,
 *   normalize, dimensions, prompt_name, raw_scores, return_text, OpenAI's base64 encoding) and
 *   write TEI's answers; they never decide which engine answers. The front end does, per request,
 *   through `serve(request, need, fn)`: it resolves the engine for what the route needs (a
 *   capability, or null for the tokenizer routes), and runs `fn` on it with the facts of that
 *   target (auto-truncate default, the model name OpenAI's answer carries, call options: deadline
 *   and client-gone signal, /embed_all's answer-size hook, extra success headers).
 * - Front-end differences are options: the input count check (`checkCount`, called before the
 *   engine is resolved; it throws), a `model` body field (`modelField`), OpenAPI tags, where the
 *   OpenAI route is served. Each route's config carries `errorShape` ('tei' or 'openai': the
 *   front end's error handler picks the body) and `tokenIds` (the body field that may hold token ids).
 * - Success headers (ms, like TEI): x-compute-time, x-compute-characters, x-compute-tokens,
 *   x-total-time, x-tokenization-time, x-queue-time, x-inference-time; /tokenize and /decode
 *   (no timings in TEI) x-total-time only; then the target's own headers.
 * - Answers of float vectors are written as JSON pieces and streamed when large (json-answer.ts).
 */
import { Type, type Static, type TObject, type TProperties } from '@sinclair/typebox';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { TeiplexError } from '../common/errors.js';
import { randomUUID } from 'node:crypto';
import { floatCount, JSON_BYTES_PER_FLOAT, listPieces, matrixPieces, sendJson } from './json-answer.js';
import type { OutputType } from './embedding-types.js';
import { rowJson, typedRows } from './embedding-output.js';
import { openaiEmbeddingPieces } from './openai-answer.js';
import { applyInputType, ASYMMETRIC_WARNING_HEADER, type InputType, type ModelPrompts } from './input-types.js';
import {
  CohereEmbedRequest,
  DecodeRequest,
  EmbedAllRequest,
  EmbedRequest,
  EmbedSparseRequest,
  nullable,
  OpenAIEmbeddingsRequest,
  PredictRequest,
  PredictTokensRequest,
  RerankRequest,
  SimilarityRequest,
  TokenizeRequest,
} from './http-schemas.js';
import { aggregateMetadata, timingHeaders, tokenCount } from './metadata.js';
import type { CallOptions, Capability, Engine, EncodeOptions, Metadata, PairInput, TextInput, TokenPredictions, TruncationDirection } from './types.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The protocol whose error body a failure of this route gets. */
    errorShape?: 'tei' | 'openai';
    /** The body field that may hold token ids. */
    tokenIds?: 'inputs' | 'input' | 'ids';
  }
}

/** What a route needs of the engine that serves it; null: any (the tokenizer routes). */
export type RouteNeed = Capability | null;

/** The engine that serves one request, and the facts of that target the routes need. */
export interface EngineTarget {
  readonly engine: Engine;
  /** What `truncate` means when a request leaves it out (--auto-truncate). */
  readonly autoTruncate: boolean;
  /** OpenAI's `model` in the /v1/embeddings answer. */
  readonly modelName: string;
  /** Options of every engine call: deadline, the client-gone signal. */
  readonly call?: CallOptions;
  /** /embed_all's answer size hook (CallOptions.onFloats): throws past the front end's limit. */
  readonly onFloats?: (n: number) => void;
  /** Headers added to a success (e.g. the instance that answered). */
  readonly headers?: Readonly<Record<string, string>>;
  /** The model's prompts, for `input_type` (none: the type changes nothing). */
  readonly prompts?: ModelPrompts;
}

export interface TeiRoutesOptions {
  /** Resolve the engine that serves `request` for `need` and run `fn` on it (the front end's decision). */
  serve<T>(request: FastifyRequest, need: RouteNeed, fn: (t: EngineTarget) => Promise<T>): Promise<T>;
  /** The request's input count in `field` against the front end's limits; throws to refuse. */
  checkCount(n: number, field: string): void;
  /** Largest body in bytes. */
  bodyLimit: number;
  /**
   * `model` names the instance that serves (instance name, model id or alias: the data plane);
   * otherwise it is accepted and ignored (the router serves one model, and a client written for
   * the data plane works against a router as it is).
   */
  modelField?: boolean;
  /** OpenAPI tags of the TEI routes and of the OpenAI route. */
  tags?: { tei: string; openai: string };
  /** Where OpenAI's embeddings route is served (default: /v1/embeddings). */
  openaiUrls?: readonly string[];
  /** Told when a route refuses a body itself (predict's shape rules). */
  onRefused?: (e: TeiplexError) => void;
}

const ModelField = nullable(Type.String({ description: 'instance name, model id or alias (else the X-Model header; optional with a single instance)' }));
const IgnoredModel = nullable(Type.String({ description: 'accepted and ignored: this server serves one model' }));
const withModel = <P extends TProperties>(s: TObject<P>, field: typeof ModelField) => Type.Object({ ...s.properties, model: field }, { additionalProperties: false });

/** The bodies of the routes, each with a `model` field: the instance that serves (modelField), or ignored. */
export function bodySchemas(modelField: boolean) {
  const m = <P extends TProperties>(s: TObject<P>) => withModel(s, modelField ? ModelField : IgnoredModel);
  return {
    embed: m(EmbedRequest),
    embedSparse: m(EmbedSparseRequest),
    embedAll: m(EmbedAllRequest),
    predict: m(PredictRequest),
    predictTokens: m(PredictTokensRequest),
    rerank: m(RerankRequest),
    tokenize: m(TokenizeRequest),
    decode: m(DecodeRequest),
    similarity: m(SimilarityRequest),
    openai: OpenAIEmbeddingsRequest,
    cohere: CohereEmbedRequest,
  };
}

export type RouteHandler = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

/** One route: its body schema, handler and route config. */
export interface TeiRoute {
  schema: TObject;
  handler: RouteHandler;
  errorShape: 'tei' | 'openai';
  tokenIds?: 'inputs' | 'input' | 'ids';
}

/** The cosine of two vectors; 0 when either is all zeros. */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}

const direction = (d: string | undefined): TruncationDirection => (d !== undefined && d.toLowerCase() === 'left' ? 'left' : 'right');

/** One input's token classification as JSON: `{token, token_id, label, score, start, end}` per token, or `{entity_group, score, word, start, end}` per entity. */
export function tokenPredictionsJson(p: TokenPredictions): Array<Record<string, string | number>> {
  if ('tokens' in p) return p.tokens.map((k) => ({ token: k.token, token_id: k.tokenId, label: k.label, score: k.score, start: k.start, end: k.end }));
  return p.entities.map((e) => ({ entity_group: e.entityGroup, score: e.score, word: e.word, start: e.start, end: e.end }));
}

/** TEI's input union: one input (a string or token ids) or a list of them. */
export function inputList(inputs: string | number[] | Array<string | number[]>): TextInput[] {
  if (typeof inputs === 'string') return [inputs];
  if (inputs.length > 0 && inputs.every((x) => typeof x === 'number')) return [inputs as number[]];
  return inputs as TextInput[];
}

/**
 * A success's headers: TEI's timing headers from per-input metadata (sums of sizes, means of stage
 * times; x-total-time is this process's own), x-total-time only without metadata, then `extra`.
 */
export function setSuccessHeaders(reply: FastifyReply, startNs: bigint, metadata: readonly Metadata[] | null, extra?: Readonly<Record<string, string>>): void {
  const total = process.hrtime.bigint() - startNs;
  if (metadata === null) reply.header('x-total-time', (total / 1_000_000n).toString());
  else for (const [k, v] of timingHeaders(aggregateMetadata(metadata, total))) reply.header(k, v);
  if (extra !== undefined) for (const [k, v] of Object.entries(extra)) reply.header(k, v);
}

const setHeaders = (reply: FastifyReply, startNs: bigint, metadata: readonly Metadata[] | null, t: EngineTarget): void => setSuccessHeaders(reply, startNs, metadata, t.headers);

/** The routes' handlers, by name: the plugin serves them, and a front end may serve them at more URLs (TEI's POST /). */
export function teiRouteTable(o: TeiRoutesOptions) {
  const B = bodySchemas(o.modelField ?? false);
  const refuse = (e: TeiplexError): TeiplexError => {
    o.onRefused?.(e);
    return e;
  };
  const encodeOptions = (body: Static<typeof EmbedSparseRequest>, t: EngineTarget): EncodeOptions => ({
    truncate: body.truncate ?? t.autoTruncate,
    truncationDirection: direction(body.truncation_direction),
    ...(body.prompt_name != null ? { promptName: body.prompt_name } : {}),
  });
  const route = <S extends TObject>(schema: S, handler: (body: Static<S>, request: FastifyRequest, reply: FastifyReply) => Promise<unknown>, extra: Partial<TeiRoute> = {}): TeiRoute => ({
    schema,
    handler: (request, reply) => handler(request.body as Static<S>, request, reply),
    errorShape: 'tei',
    ...extra,
  });

  /** The embedding routes' one shape: inputs counted, the engine resolved for `need`, `run` on it, headers, `answer` the rows. */
  const embedRoute = <S extends typeof EmbedSparseRequest, R>(
    schema: S,
    need: RouteNeed,
    run: (t: EngineTarget, inputs: TextInput[], e: EncodeOptions, body: Static<S>) => Promise<{ results: R[]; metadata: Metadata[] }>,
    answer: (rows: R[], reply: FastifyReply, body: Static<S>) => unknown,
  ) =>
    route(
      schema,
      async (body, request, reply) => {
        const start = process.hrtime.bigint();
        const items = inputList(body.inputs);
        o.checkCount(items.length, 'inputs');
        return o.serve(request, need, async (t) => {
          const typed = withInputType(items, encodeOptions(body, t), body.input_type, t, reply);
          const out = await run(t, typed.inputs, typed.e, body);
          setHeaders(reply, start, out.metadata, t);
          return answer(out.results, reply, body);
        });
      },
      { tokenIds: 'inputs' },
    );

  const embed = embedRoute(
    B.embed as typeof EmbedRequest,
    'dense',
    async (t, inputs, e, body) => {
      const opts = { ...e, normalize: body.normalize ?? true, ...(body.dimensions != null ? { dimensions: body.dimensions } : {}) };
      const out = await t.engine.embed(inputs, opts, t.call);
      return { results: await typedRows(t.engine, out.results, body.embedding_type ?? 'float32', opts, t.call), metadata: out.metadata };
    },
    (rows, reply, body) => {
      const type = body.embedding_type ?? 'float32';
      const base64 = body.encoding === 'base64';
      return sendJson(reply, listPieces(rows, (v) => [rowJson(v, type, base64)]), floatCount(rows) * JSON_BYTES_PER_FLOAT);
    },
  );
  const embedSparse = embedRoute(
    B.embedSparse,
    'sparse',
    (t, inputs, e) => t.engine.embedSparse(inputs, e, t.call),
    (rows) => rows.map((r) => Array.from(r.indices, (index, k) => ({ index, value: r.values[k] }))),
  );
  const embedAll = embedRoute(
    B.embedAll,
    'multivector',
    (t, inputs, e) => t.engine.embedAll(inputs, e, t.onFloats !== undefined ? { ...t.call, onFloats: t.onFloats } : t.call),
    (rows, reply) =>
      sendJson(
        reply,
        listPieces(rows, (m) => matrixPieces(m.values, m.tokens, m.dim)),
        floatCount(rows.map((m) => m.values)) * JSON_BYTES_PER_FLOAT,
      ),
  );

  const predict = route(B.predict as typeof PredictRequest, async (body, request, reply) => {
    const start = process.hrtime.bigint();
    const inputs = body.inputs;
    const sequence = (s: string[], where: string): string | PairInput => {
      if (s.length === 1) return s[0];
      if (s.length === 2) return [s[0], s[1]];
      throw refuse(new TeiplexError('VALIDATION', `\`${where}\` must be a string or a pair of strings [string, string], got ${s.length} strings`, { param: where }));
    };
    let items: Array<string | PairInput>;
    let single: boolean;
    if (typeof inputs === 'string') {
      items = [inputs];
      single = true;
    } else if (typeof inputs[0] === 'string') {
      // TEI: a list that starts with a string is one input, a string or a pair.
      if (!inputs.every((x) => typeof x === 'string')) {
        throw refuse(new TeiplexError('VALIDATION', '`inputs` must be a string, a pair of strings [string, string], or a batch [[string], [string, string], ...]', { param: 'inputs' }));
      }
      items = [sequence(inputs as string[], 'inputs')];
      single = true;
    } else {
      items = inputs.map((x, i) => (typeof x === 'string' ? x : sequence(x, `inputs[${i}]`)));
      single = false;
      o.checkCount(items.length, 'inputs');
    }
    return o.serve(request, 'classify', async (t) => {
      const out = await t.engine.predict(items, { truncate: body.truncate ?? t.autoTruncate, truncationDirection: direction(body.truncation_direction), rawScores: body.raw_scores ?? false }, t.call);
      setHeaders(reply, start, out.metadata, t);
      return single ? out.results[0] : out.results;
    });
  });

  // Token classification (BEI's /predict_tokens): one string -> its list, a list -> a list per input.
  const predictTokens = route(B.predictTokens as typeof PredictTokensRequest, async (body, request, reply) => {
    const start = process.hrtime.bigint();
    const single = typeof body.inputs === 'string';
    const items = typeof body.inputs === 'string' ? [body.inputs] : body.inputs;
    if (!single) o.checkCount(items.length, 'inputs');
    return o.serve(request, 'tokens', async (t) => {
      const out = await t.engine.predictTokens(
        items,
        {
          truncate: body.truncate ?? t.autoTruncate,
          truncationDirection: direction(body.truncation_direction),
          rawScores: body.raw_scores ?? false,
          aggregation: body.aggregation_strategy ?? 'none',
        },
        t.call,
      );
      setHeaders(reply, start, out.metadata, t);
      const rows = out.results.map(tokenPredictionsJson);
      return single ? rows[0] : rows;
    });
  });

  const rerank = route(B.rerank as typeof RerankRequest, async (body, request, reply) => {
    const start = process.hrtime.bigint();
    o.checkCount(body.texts.length, 'texts');
    return o.serve(request, 'score', async (t) => {
      const out = await t.engine.rerank(
        body.query,
        body.texts,
        {
          truncate: body.truncate ?? t.autoTruncate,
          truncationDirection: direction(body.truncation_direction),
          rawScores: body.raw_scores ?? false,
          returnText: body.return_text ?? false,
        },
        t.call,
      );
      setHeaders(reply, start, [out.metadata], t);
      return out.ranks.map((r) => (r.text !== undefined ? { index: r.index, text: r.text, score: r.score } : { index: r.index, score: r.score }));
    });
  });

  const tokenize = route(B.tokenize as typeof TokenizeRequest, async (body, request, reply) => {
    const start = process.hrtime.bigint();
    const inputs = typeof body.inputs === 'string' ? [body.inputs] : body.inputs;
    o.checkCount(inputs.length, 'inputs');
    return o.serve(request, null, async (t) => {
      const out = await t.engine.tokenize(inputs, body.add_special_tokens ?? true, body.prompt_name ?? undefined, t.call);
      setHeaders(reply, start, null, t);
      return out.map((tokens) => tokens.map((k) => ({ id: k.id, text: k.text, special: k.special, start: k.start ?? null, stop: k.stop ?? null })));
    });
  });

  const decode = route(
    B.decode as typeof DecodeRequest,
    async (body, request, reply) => {
      const start = process.hrtime.bigint();
      const ids = body.ids;
      const batch = ids.length > 0 && Array.isArray(ids[0]) ? (ids as number[][]) : [ids as number[]];
      o.checkCount(batch.length, 'ids');
      return o.serve(request, null, async (t) => {
        const out = await t.engine.decode(batch, body.skip_special_tokens ?? true, t.call);
        setHeaders(reply, start, null, t);
        return out;
      });
    },
    { tokenIds: 'ids' },
  );

  // TEI's sentence similarity: the source and the sentences embedded in one call, the cosine of
  // each sentence with the source, in the sentences' order.
  const similarity = route(B.similarity as typeof SimilarityRequest, async (body, request, reply) => {
    const start = process.hrtime.bigint();
    const { source_sentence: source, sentences } = body.inputs;
    const p = body.parameters ?? {};
    o.checkCount(sentences.length + 1, 'inputs.sentences');
    return o.serve(request, 'dense', async (t) => {
      const e: EncodeOptions = { truncate: p.truncate ?? t.autoTruncate, truncationDirection: direction(p.truncation_direction), ...(p.prompt_name != null ? { promptName: p.prompt_name } : {}) };
      const out = await t.engine.embed([source, ...sentences], { ...e, normalize: false }, t.call);
      setHeaders(reply, start, out.metadata, t);
      const [s, ...rest] = out.results;
      return rest.map((v) => cosine(s, v));
    });
  });

  const openai = route(
    B.openai,
    async (body, request, reply) => {
      const start = process.hrtime.bigint();
      const items = inputList(body.input);
      o.checkCount(items.length, 'input');
      return o.serve(request, 'dense', async (t) => {
        const typed = withInputType(items, { truncate: t.autoTruncate, truncationDirection: 'right' }, body.input_type, t, reply);
        const opts = { ...typed.e, normalize: true, ...(body.dimensions != null ? { dimensions: body.dimensions } : {}) };
        const out = await t.engine.embed(typed.inputs, opts, t.call);
        const type = body.embedding_type ?? 'float32';
        const rows = await typedRows(t.engine, out.results, type, opts, t.call);
        setHeaders(reply, start, out.metadata, t);
        const tokens = tokenCount(out.metadata);
        // Written as text, the vectors without a number[] per row; streamed when large.
        const answer = openaiEmbeddingPieces(rows, type, body.encoding_format === 'base64', t.modelName, tokens);
        return sendJson(reply, answer, floatCount(out.results) * JSON_BYTES_PER_FLOAT);
      });
    },
    { errorShape: 'openai', tokenIds: 'input' },
  );

  // Cohere's v2 embed: several output types of the same vectors in one answer, by type.
  const cohere = route(B.cohere, async (body, request, reply) => {
    const start = process.hrtime.bigint();
    o.checkCount(body.texts.length, 'texts');
    return o.serve(request, 'dense', async (t) => {
      const truncate = body.truncate ?? 'END';
      const typed = withInputType(body.texts, { truncate: truncate !== 'NONE', truncationDirection: truncate === 'START' ? 'left' : 'right' }, body.input_type, t, reply);
      const opts = { ...typed.e, normalize: true, ...(body.output_dimension != null ? { dimensions: body.output_dimension } : {}) };
      const out = await t.engine.embed(typed.inputs, opts, t.call);
      const asked = [...new Set(body.embedding_types ?? (['float'] as const))];
      const byType = await Promise.all(
        asked.map(async (name) => {
          const type: OutputType = name === 'float' || name === 'base64' ? 'float32' : name;
          return { name, type, base64: name === 'base64', rows: await typedRows(t.engine, out.results, type, opts, t.call) };
        }),
      );
      setHeaders(reply, start, out.metadata, t);
      const tokens = tokenCount(out.metadata);
      function* answer(): Generator<string> {
        yield `{"id":"${randomUUID()}","embeddings":{`;
        for (const [k, x] of byType.entries()) {
          yield `${k > 0 ? ',' : ''}"${x.name}":`;
          yield* listPieces(x.rows, (v) => [rowJson(v, x.type, x.base64)]);
        }
        yield `},"texts":${JSON.stringify(body.texts)},"meta":{"api_version":{"version":"2"},"billed_units":{"input_tokens":${tokens}}},"response_type":"embeddings_by_type"}`;
      }
      return sendJson(reply, answer(), floatCount(out.results) * JSON_BYTES_PER_FLOAT * byType.length);
    });
  });

  return { embed, embedSparse, embedAll, predict, predictTokens, rerank, similarity, tokenize, decode, openai, cohere };
}

/** A request's `input_type` as the model's prompt (applyInputType); the warning for an asymmetric model as a header. */
export function withInputType<I extends TextInput>(
  inputs: I[],
  e: EncodeOptions,
  inputType: InputType | undefined,
  t: Pick<EngineTarget, 'prompts' | 'modelName'>,
  reply: FastifyReply,
): { inputs: I[]; e: EncodeOptions } {
  const out = applyInputType(inputs, e, inputType, t.prompts, t.modelName);
  if (out.warning !== undefined) reply.header(ASYMMETRIC_WARNING_HEADER, out.warning);
  return out;
}

/** Serve `r` at `url` with the plugin's options (body limit, tags, route config). */
export function postRoute(app: FastifyInstance, url: string, r: TeiRoute, o: Pick<TeiRoutesOptions, 'bodyLimit' | 'tags'>): void {
  const tag = o.tags === undefined ? undefined : r.errorShape === 'openai' ? o.tags.openai : o.tags.tei;
  app.post(
    url,
    {
      schema: { body: r.schema, ...(tag !== undefined ? { tags: [tag] } : {}) },
      bodyLimit: o.bodyLimit,
      config: { errorShape: r.errorShape, ...(r.tokenIds !== undefined ? { tokenIds: r.tokenIds } : {}) },
    },
    r.handler,
  );
}

export const teiRoutes: FastifyPluginAsync<TeiRoutesOptions> = async (app: FastifyInstance, o: TeiRoutesOptions) => {
  const t = teiRouteTable(o);
  postRoute(app, '/embed', t.embed, o);
  postRoute(app, '/embed_sparse', t.embedSparse, o);
  postRoute(app, '/embed_all', t.embedAll, o);
  postRoute(app, '/predict', t.predict, o);
  postRoute(app, '/predict_tokens', t.predictTokens, o);
  postRoute(app, '/rerank', t.rerank, o);
  postRoute(app, '/similarity', t.similarity, o);
  postRoute(app, '/tokenize', t.tokenize, o);
  postRoute(app, '/decode', t.decode, o);
  for (const url of o.openaiUrls ?? ['/v1/embeddings']) postRoute(app, url, t.openai, o);
  postRoute(app, '/v2/embed', t.cohere, o);
};
