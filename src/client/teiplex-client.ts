/**
 * TeiplexClient: one client for the manager's data plane. Inference goes through the gRPC
 * multiplexer by default (`tei_multiplexer.v1`: one HTTP/2 connection, binary floats) or through
 * the HTTP data plane (`transport: 'http'`, per client or per call); the model is named on every
 * call. `embedArrow` uses the multiplexer's Arrow RPCs (LZ4-compressed IPC, split into batches,
 * answers kept in order); `models` is the data plane's /v1/models; `instances` the multiplexer's
 * ListInstances; `.admin` the REST admin API (AdminClient). docs/client.md says which call uses
 * which front end and how errors and retries behave.
 */
import { Field, FixedSizeList, Float32, Schema, Table, type RecordBatch, DataType } from 'apache-arrow';
import { decodeDense, decodeMultivector, decodeSparse, encodeTexts } from '../arrow/embedding-batch.js';
import { readStream, writeStream } from '../arrow/ipc-stream.js';
import { AdminClient } from './admin.js';
import { InvalidRequestError, ServerError, TeiplexClientError } from './errors.js';
import { GrpcTransport, type GrpcCallOptions } from './grpc-transport.js';
import { HttpTransport, type CallOptions } from './http-transport.js';
import type {
  DataPlaneModel,
  DecodeOptions,
  EmbedAllOptions,
  EmbedArrowOptions,
  EmbedOptions,
  EmbedSparseOptions,
  InferenceOptions,
  InstanceSummary,
  ModelInfo,
  MultiVector,
  Prediction,
  PredictInput,
  PredictOptions,
  Rank,
  RerankOptions,
  SparseVector,
  Token,
  TokenizeOptions,
  Transport,
} from './inference-types.js';
import { resolveOptions, type ClientOptions, type ResolvedOptions } from './options.js';

export interface TeiplexClientOptions extends ClientOptions {
  /** The default front end of inference calls (default `grpc`). */
  transport?: Transport;
  /** Most inputs per HTTP request (the manager's max_request_inputs, default 256); longer lists are split. */
  httpBatchSize?: number;
}

/**
 * What a call names: a string (a model id, catalog model name or alias; over HTTP an instance name
 * too), or `{ instance }`, one instance by name.
 */
export type ModelRef = string | { instance: string };

interface PbTarget {
  model_id?: string;
  instance_name?: string;
}

/** How long a gRPC name resolved to an instance (by its name or an alias) is kept. */
export const ALIAS_TTL_MS = 30_000;

const direction = (d: 'left' | 'right' | undefined): string => (d === 'left' ? 'TRUNCATION_DIRECTION_LEFT' : 'TRUNCATION_DIRECTION_RIGHT');

function chunks<T>(list: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}

/** Runs `fn` over `items` with at most `limit` at once; answers in input order. The first failure fails the whole and starts nothing more. */
async function inOrder<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function checkTexts(what: string, texts: readonly unknown[]): void {
  texts.forEach((t, i) => {
    if (typeof t !== 'string') throw new TypeError(`${what}[${i}]: must be a string, got ${t === null ? 'null' : typeof t}`);
  });
}

function positiveInt(what: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw new TypeError(`${what}: must be a positive integer, got ${String(v)}`);
  return v;
}

/** The body fields an HTTP answer must have, or BAD_RESPONSE. */
function expectArray<T>(what: string, v: unknown, length?: number): T[] {
  if (!Array.isArray(v) || (length !== undefined && v.length !== length)) {
    throw new ServerError('BAD_RESPONSE', `${what}: expected ${length ?? 'a list of'} answers, got ${Array.isArray(v) ? v.length : typeof v}`);
  }
  return v as T[];
}

export class TeiplexClient {
  /** The REST admin API (instances, catalog models, memory, reload). */
  readonly admin: AdminClient;
  readonly #o: ResolvedOptions;
  readonly #http: HttpTransport;
  readonly #grpc: GrpcTransport;
  readonly #transport: Transport;
  readonly #httpBatch: number;
  readonly #aliases = new Map<string, { target: PbTarget; until: number }>();

  constructor(options: TeiplexClientOptions = {}) {
    this.#o = resolveOptions(options);
    const t = options.transport ?? 'grpc';
    if (t !== 'grpc' && t !== 'http') throw new TypeError(`transport: must be "grpc" or "http", got ${JSON.stringify(t)}`);
    this.#transport = t;
    this.#httpBatch = positiveInt('httpBatchSize', options.httpBatchSize, 256);
    this.#http = new HttpTransport(this.#o);
    this.#grpc = new GrpcTransport(this.#o);
    this.admin = new AdminClient(options);
  }

  /** The base URL of the REST API and HTTP data plane, and the multiplexer's address, as resolved. */
  get endpoints(): { url: string; grpcUrl: string } {
    return { url: this.#o.url.href, grpcUrl: this.#o.grpcUrl.href };
  }

  #via(opts: InferenceOptions | undefined): Transport {
    const t = opts?.transport ?? this.#transport;
    if (t !== 'grpc' && t !== 'http') throw new TypeError(`transport: must be "grpc" or "http", got ${JSON.stringify(t)}`);
    return t;
  }

  #httpOpts(opts: InferenceOptions | undefined): CallOptions {
    const headers = { ...opts?.headers, ...(opts?.noWait ? { 'x-teiplex-no-wait': '1' } : {}) };
    return { ...opts, headers };
  }

  static #name(model: ModelRef): string {
    if (typeof model === 'string' && model !== '') return model;
    if (model !== null && typeof model === 'object' && typeof model.instance === 'string' && model.instance !== '') return model.instance;
    throw new TypeError('model: must be a non-empty string or { instance: "<name>" }');
  }

  /**
   * A gRPC call on `model`'s target. A string is sent as a model_id (the multiplexer also resolves
   * a catalog model's name or alias); when the multiplexer knows no such model, the name is
   * resolved as the HTTP data plane does: the instance of that name, else an instance alias from
   * /v1/models (one instance: that one; one model id: balanced over its instances). What a name
   * resolved to this way is kept for ALIAS_TTL_MS (one round trip per call, not two or three).
   */
  async #onTarget<T>(model: ModelRef, call: (target: PbTarget) => Promise<T>): Promise<T> {
    const name = TeiplexClient.#name(model);
    if (typeof model !== 'string') return call({ instance_name: name });
    const known = this.#aliases.get(name);
    if (known !== undefined && known.until > Date.now()) {
      try {
        return await call(known.target);
      } catch (e) {
        // Gone since (deleted, renamed): resolve the name afresh.
        if (!(e instanceof TeiplexClientError) || (e.code !== 'INSTANCE_NOT_FOUND' && e.code !== 'MODEL_NOT_FOUND')) throw e;
      }
    }
    this.#aliases.delete(name);
    try {
      return await call({ model_id: name });
    } catch (e) {
      if (!(e instanceof TeiplexClientError) || e.code !== 'MODEL_NOT_FOUND') throw e;
      let target: PbTarget | undefined = { instance_name: name };
      try {
        const answer = await call(target);
        this.#aliases.set(name, { target, until: Date.now() + ALIAS_TTL_MS });
        return answer;
      } catch (e2) {
        if (!(e2 instanceof TeiplexClientError) || e2.code !== 'INSTANCE_NOT_FOUND') throw e2;
      }
      const entry = (await this.models().catch(() => [])).find((x) => x.id === name);
      target = entry === undefined ? undefined : entry.instances.length === 1 ? { instance_name: entry.instances[0]! } : entry.model_ids.length === 1 ? { model_id: entry.model_ids[0]! } : undefined;
      if (target === undefined) {
        if (entry === undefined) throw e;
        throw new InvalidRequestError(
          'MODEL_AMBIGUOUS',
          `gRPC: '${name}' is an alias of several models (${entry.model_ids.join(', ')}); over gRPC name one of them or one instance (${entry.instances.join(', ')}), or use transport 'http', which picks by capability`,
        );
      }
      this.#aliases.set(name, { target, until: Date.now() + ALIAS_TTL_MS });
      return call(target);
    }
  }

  /** `x-teiplex-no-wait` and the call options for the multiplexer. */
  static #grpcOpts(opts: InferenceOptions | undefined): GrpcCallOptions {
    return { ...opts, noWait: opts?.noWait === true };
  }

  /** /v1/encode/{model} for one output type, split at httpBatchSize; the items' outputs in order. */
  async #encode<T>(model: ModelRef, texts: readonly string[], type: 'dense' | 'sparse' | 'multivector', fields: Record<string, unknown>, opts: InferenceOptions | undefined): Promise<T[]> {
    const name = TeiplexClient.#name(model);
    const out: T[] = [];
    for (const part of chunks(texts, this.#httpBatch)) {
      const body = { items: part.map((text) => ({ text })), output_types: [type], ...fields };
      const a = await this.#http.call<{ items: Array<Record<string, T>> }>({ method: 'POST', path: `/v1/encode/${encodeURIComponent(name)}`, body, idempotent: true }, this.#httpOpts(opts));
      const items = expectArray<Record<string, T>>(`POST /v1/encode: items`, a.body?.items, part.length);
      for (const item of items) out.push(item[type]!);
    }
    return out;
  }

  static #truncateFields(o: { truncate?: boolean; truncationDirection?: 'left' | 'right'; promptName?: string } | undefined): Record<string, unknown> {
    return {
      ...(o?.truncate !== undefined ? { truncate: o.truncate } : {}),
      ...(o?.truncationDirection !== undefined ? { truncation_direction: o.truncationDirection === 'left' ? 'Left' : 'Right' } : {}),
      ...(o?.promptName !== undefined ? { prompt_name: o.promptName } : {}),
    };
  }

  static #pbTruncate(o: { truncate?: boolean; truncationDirection?: 'left' | 'right'; promptName?: string } | undefined): Record<string, unknown> {
    return { truncate: o?.truncate ?? false, truncation_direction: direction(o?.truncationDirection), ...(o?.promptName !== undefined ? { prompt_name: o.promptName } : {}) };
  }

  /** Dense embeddings: one Float32Array per input. */
  embed(model: ModelRef, input: string, opts?: EmbedOptions): Promise<Float32Array>;
  embed(model: ModelRef, input: readonly string[], opts?: EmbedOptions): Promise<Float32Array[]>;
  async embed(model: ModelRef, input: string | readonly string[], opts?: EmbedOptions): Promise<Float32Array | Float32Array[]> {
    const texts = typeof input === 'string' ? [input] : input;
    checkTexts('input', texts);
    let rows: Float32Array[];
    if (texts.length === 0) rows = [];
    else if (this.#via(opts) === 'http') {
      const fields = { ...TeiplexClient.#truncateFields(opts), ...(opts?.normalize !== undefined ? { normalize: opts.normalize } : {}), ...(opts?.dimensions !== undefined ? { dimensions: opts.dimensions } : {}) };
      const dense = await this.#encode<{ dim: number; values: number[] }>(model, texts, 'dense', fields, opts);
      rows = dense.map((d) => Float32Array.from(d.values));
    } else {
      const request = (inputs: string) => ({
        inputs,
        ...TeiplexClient.#pbTruncate(opts),
        ...(opts?.normalize !== undefined ? { normalize: opts.normalize } : {}),
        ...(opts?.dimensions !== undefined ? { dimensions: opts.dimensions } : {}),
      });
      const answers = await this.#onTarget(model, (target) =>
        texts.length === 1
          ? this.#grpc.unary<{ embeddings: number[] }>('Embed', { target, request: request(texts[0]!) }, TeiplexClient.#grpcOpts(opts)).then((r) => [r])
          : this.#grpc.stream<{ embeddings: number[] }>('EmbedStream', texts.map((t) => ({ target, request: request(t) })), TeiplexClient.#grpcOpts(opts)),
      );
      rows = answers.map((r) => Float32Array.from(r.embeddings));
    }
    return typeof input === 'string' ? rows[0]! : rows;
  }

  /** Sparse embeddings (SPLADE): the non-zero entries of each input. */
  embedSparse(model: ModelRef, input: string, opts?: EmbedSparseOptions): Promise<SparseVector>;
  embedSparse(model: ModelRef, input: readonly string[], opts?: EmbedSparseOptions): Promise<SparseVector[]>;
  async embedSparse(model: ModelRef, input: string | readonly string[], opts?: EmbedSparseOptions): Promise<SparseVector | SparseVector[]> {
    const texts = typeof input === 'string' ? [input] : input;
    checkTexts('input', texts);
    let rows: SparseVector[];
    if (texts.length === 0) rows = [];
    else if (this.#via(opts) === 'http') {
      const sparse = await this.#encode<{ indices: number[]; values: number[] }>(model, texts, 'sparse', TeiplexClient.#truncateFields(opts), opts);
      rows = sparse.map((s) => ({ indices: Uint32Array.from(s.indices), values: Float32Array.from(s.values) }));
    } else {
      type Answer = { sparse_embeddings: Array<{ index: number; value: number }> };
      const request = (inputs: string) => ({ inputs, ...TeiplexClient.#pbTruncate(opts) });
      const answers = await this.#onTarget(model, (target) =>
        texts.length === 1
          ? this.#grpc.unary<Answer>('EmbedSparse', { target, request: request(texts[0]!) }, TeiplexClient.#grpcOpts(opts)).then((r) => [r])
          : this.#grpc.stream<Answer>('EmbedSparseStream', texts.map((t) => ({ target, request: request(t) })), TeiplexClient.#grpcOpts(opts)),
      );
      rows = answers.map((r) => ({ indices: Uint32Array.from(r.sparse_embeddings, (x) => x.index), values: Float32Array.from(r.sparse_embeddings, (x) => x.value) }));
    }
    return typeof input === 'string' ? rows[0]! : rows;
  }

  /** Multivector embeddings: a vector per token of each input. */
  embedAll(model: ModelRef, input: string, opts?: EmbedAllOptions): Promise<MultiVector>;
  embedAll(model: ModelRef, input: readonly string[], opts?: EmbedAllOptions): Promise<MultiVector[]>;
  async embedAll(model: ModelRef, input: string | readonly string[], opts?: EmbedAllOptions): Promise<MultiVector | MultiVector[]> {
    const texts = typeof input === 'string' ? [input] : input;
    checkTexts('input', texts);
    let rows: MultiVector[];
    if (texts.length === 0) rows = [];
    else if (this.#via(opts) === 'http') {
      const multi = await this.#encode<{ tokens: number; dim: number; values: number[] }>(model, texts, 'multivector', TeiplexClient.#truncateFields(opts), opts);
      rows = multi.map((m) => ({ tokens: m.tokens, dim: m.dim, values: Float32Array.from(m.values) }));
    } else {
      type Answer = { token_embeddings: Array<{ embeddings: number[] }> };
      const request = (inputs: string) => ({ inputs, ...TeiplexClient.#pbTruncate(opts) });
      const answers = await this.#onTarget(model, (target) =>
        texts.length === 1
          ? this.#grpc.unary<Answer>('EmbedAll', { target, request: request(texts[0]!) }, TeiplexClient.#grpcOpts(opts)).then((r) => [r])
          : this.#grpc.stream<Answer>('EmbedAllStream', texts.map((t) => ({ target, request: request(t) })), TeiplexClient.#grpcOpts(opts)),
      );
      rows = answers.map((r) => {
        const tokens = r.token_embeddings.length;
        const dim = tokens === 0 ? 0 : r.token_embeddings[0]!.embeddings.length;
        const values = new Float32Array(tokens * dim);
        r.token_embeddings.forEach((t, i) => values.set(t.embeddings, i * dim));
        return { tokens, dim, values };
      });
    }
    return typeof input === 'string' ? rows[0]! : rows;
  }

  /** Scores `texts` against `query` with a reranker: ranks best first (`topN`: only the best N). */
  async rerank(model: ModelRef, query: string, texts: readonly string[], opts?: RerankOptions): Promise<Rank[]> {
    if (typeof query !== 'string') throw new TypeError('query: must be a string');
    checkTexts('texts', texts);
    const topN = opts?.topN === undefined ? undefined : positiveInt('topN', opts.topN, 1);
    if (texts.length === 0) return [];
    let ranks: Rank[];
    if (this.#via(opts) === 'http') {
      ranks = [];
      for (const [c, part] of chunks(texts, this.#httpBatch).entries()) {
        const body = {
          model: TeiplexClient.#name(model),
          query,
          documents: part,
          return_documents: opts?.returnText === true,
          ...(opts?.truncate !== undefined ? { truncate: opts.truncate } : {}),
          ...(opts?.rawScores !== undefined ? { raw_scores: opts.rawScores } : {}),
        };
        const a = await this.#http.call<{ results: Array<{ index: number; relevance_score: number; document?: { text: string } }> }>(
          { method: 'POST', path: '/v1/rerank', body, idempotent: true },
          this.#httpOpts(opts),
        );
        for (const r of expectArray<{ index: number; relevance_score: number; document?: { text: string } }>('POST /v1/rerank: results', a.body?.results, part.length)) {
          ranks.push({ index: r.index + c * this.#httpBatch, score: r.relevance_score, ...(r.document !== undefined ? { text: r.document.text } : {}) });
        }
      }
    } else {
      const size = positiveInt('chunkSize', opts?.chunkSize, 32);
      const parts = chunks(texts, size);
      const answers = await this.#onTarget(model, (target) =>
        inOrder(parts, 4, (part) =>
          this.#grpc.unary<{ ranks: Array<{ index: number; score: number; text?: string }> }>(
            'Rerank',
            {
              target,
              request: {
                query,
                texts: part,
                truncate: opts?.truncate ?? false,
                raw_scores: opts?.rawScores === true,
                return_text: opts?.returnText === true,
                truncation_direction: direction(opts?.truncationDirection),
              },
            },
            TeiplexClient.#grpcOpts(opts),
          ),
        ),
      );
      ranks = answers.flatMap((a, c) => a.ranks.map((r) => ({ index: r.index + c * size, score: r.score, ...(opts?.returnText && r.text !== undefined ? { text: r.text } : {}) })));
    }
    ranks.sort((a, b) => b.score - a.score || a.index - b.index);
    return topN === undefined ? ranks : ranks.slice(0, topN);
  }

  /** A classifier's scores per label for one text or one pair of texts. */
  async predict(model: ModelRef, input: PredictInput, opts?: PredictOptions): Promise<Prediction[]> {
    return (await this.predictBatch(model, [input], opts))[0]!;
  }

  /** predict for many inputs (texts and pairs may be mixed); answers in input order. */
  async predictBatch(model: ModelRef, inputs: readonly PredictInput[], opts?: PredictOptions): Promise<Prediction[][]> {
    inputs.forEach((x, i) => {
      if (typeof x !== 'string' && !(Array.isArray(x) && x.length === 2 && typeof x[0] === 'string' && typeof x[1] === 'string')) {
        throw new TypeError(`inputs[${i}]: must be a string or a pair [string, string]`);
      }
    });
    if (inputs.length === 0) return [];
    const toPredictions = (ps: Array<{ label: string; score: number }>): Prediction[] => ps.map((p) => ({ label: p.label, score: p.score }));
    if (this.#via(opts) === 'http') {
      const out: Prediction[][] = [];
      for (const part of chunks(inputs, this.#httpBatch)) {
        const body = {
          model: TeiplexClient.#name(model),
          inputs: part.map((x) => (typeof x === 'string' ? [x] : [x[0], x[1]])),
          ...(opts?.truncate !== undefined ? { truncate: opts.truncate } : {}),
          ...(opts?.truncationDirection !== undefined ? { truncation_direction: opts.truncationDirection === 'left' ? 'Left' : 'Right' } : {}),
          ...(opts?.rawScores !== undefined ? { raw_scores: opts.rawScores } : {}),
        };
        const a = await this.#http.call<Array<Array<{ label: string; score: number }>>>({ method: 'POST', path: '/predict', body, idempotent: true }, this.#httpOpts(opts));
        for (const ps of expectArray<Array<{ label: string; score: number }>>('POST /predict', a.body, part.length)) out.push(toPredictions(ps));
      }
      return out;
    }
    const common = { truncate: opts?.truncate ?? false, raw_scores: opts?.rawScores === true, truncation_direction: direction(opts?.truncationDirection) };
    const singles = inputs.map((x, i) => [x, i] as const).filter(([x]) => typeof x === 'string');
    const pairs = inputs.map((x, i) => [x, i] as const).filter(([x]) => typeof x !== 'string');
    const out: Prediction[][] = new Array(inputs.length);
    await this.#onTarget(model, async (target) => {
      const g = TeiplexClient.#grpcOpts(opts);
      type Answer = { predictions: Array<{ label: string; score: number }> };
      const [a, b] = await Promise.all([
        singles.length === 0 ? [] : this.#grpc.stream<Answer>('PredictStream', singles.map(([x]) => ({ target, request: { inputs: x, ...common } })), g),
        pairs.length === 0 ? [] : this.#grpc.stream<Answer>('PredictPairStream', pairs.map(([x]) => ({ target, request: { inputs: [...x], ...common } })), g),
      ]);
      a.forEach((r, k) => (out[singles[k]![1]] = toPredictions(r.predictions)));
      b.forEach((r, k) => (out[pairs[k]![1]] = toPredictions(r.predictions)));
    });
    return out;
  }

  /** The model's tokens of a text (or of each text). */
  tokenize(model: ModelRef, input: string, opts?: TokenizeOptions): Promise<Token[]>;
  tokenize(model: ModelRef, input: readonly string[], opts?: TokenizeOptions): Promise<Token[][]>;
  async tokenize(model: ModelRef, input: string | readonly string[], opts?: TokenizeOptions): Promise<Token[] | Token[][]> {
    const texts = typeof input === 'string' ? [input] : input;
    checkTexts('input', texts);
    let rows: Token[][];
    const token = (t: { id: number; text: string; special: boolean; start?: number | null; stop?: number | null }): Token => ({
      id: t.id,
      text: t.text,
      special: t.special,
      ...(t.start != null ? { start: t.start } : {}),
      ...(t.stop != null ? { stop: t.stop } : {}),
    });
    if (texts.length === 0) rows = [];
    else if (this.#via(opts) === 'http') {
      rows = [];
      for (const part of chunks(texts, this.#httpBatch)) {
        const body = {
          model: TeiplexClient.#name(model),
          inputs: part,
          ...(opts?.addSpecialTokens !== undefined ? { add_special_tokens: opts.addSpecialTokens } : {}),
          ...(opts?.promptName !== undefined ? { prompt_name: opts.promptName } : {}),
        };
        type T = { id: number; text: string; special: boolean; start?: number | null; stop?: number | null };
        const a = await this.#http.call<T[][]>({ method: 'POST', path: '/tokenize', body, idempotent: true }, this.#httpOpts(opts));
        for (const ts of expectArray<T[]>('POST /tokenize', a.body, part.length)) rows.push(ts.map(token));
      }
    } else {
      type Answer = { tokens: Array<{ id: number; text: string; special: boolean; start?: number; stop?: number }> };
      const request = (inputs: string) => ({ inputs, add_special_tokens: opts?.addSpecialTokens ?? true, ...(opts?.promptName !== undefined ? { prompt_name: opts.promptName } : {}) });
      const answers = await this.#onTarget(model, (target) =>
        texts.length === 1
          ? this.#grpc.unary<Answer>('Tokenize', { target, request: request(texts[0]!) }, TeiplexClient.#grpcOpts(opts)).then((r) => [r])
          : this.#grpc.stream<Answer>('TokenizeStream', texts.map((t) => ({ target, request: request(t) })), TeiplexClient.#grpcOpts(opts)),
      );
      rows = answers.map((r) => r.tokens.map(token));
    }
    return typeof input === 'string' ? rows[0]! : rows;
  }

  /** Text from token ids (one list, or a list of lists): tokenize's inverse. */
  decode(model: ModelRef, ids: readonly number[], opts?: DecodeOptions): Promise<string>;
  decode(model: ModelRef, ids: readonly (readonly number[])[], opts?: DecodeOptions): Promise<string[]>;
  async decode(model: ModelRef, ids: readonly number[] | readonly (readonly number[])[], opts?: DecodeOptions): Promise<string | string[]> {
    if (!Array.isArray(ids)) throw new TypeError('ids: must be a list of token ids or a list of those');
    const single = ids.length === 0 || !Array.isArray(ids[0]);
    const lists = (single ? [ids] : ids) as readonly (readonly number[])[];
    lists.forEach((l, i) => {
      if (!Array.isArray(l) || !l.every((x) => Number.isInteger(x) && x >= 0)) throw new TypeError(`ids${single ? '' : `[${i}]`}: must be non-negative integers`);
    });
    const skip = opts?.skipSpecialTokens ?? true;
    let texts: string[];
    if (lists.length === 0) texts = [];
    else if (this.#via(opts) === 'http') {
      texts = [];
      for (const part of chunks(lists, this.#httpBatch)) {
        const a = await this.#http.call<string[]>(
          { method: 'POST', path: '/decode', body: { model: TeiplexClient.#name(model), ids: part, skip_special_tokens: skip }, idempotent: true },
          this.#httpOpts(opts),
        );
        texts.push(...expectArray<string>('POST /decode', a.body, part.length));
      }
    } else {
      const answers = await this.#onTarget(model, (target) =>
        lists.length === 1
          ? this.#grpc.unary<{ text: string }>('Decode', { target, request: { ids: lists[0], skip_special_tokens: skip } }, TeiplexClient.#grpcOpts(opts)).then((r) => [r])
          : this.#grpc.stream<{ text: string }>('DecodeStream', lists.map((l) => ({ target, request: { ids: l, skip_special_tokens: skip } })), TeiplexClient.#grpcOpts(opts)),
      );
      texts = answers.map((r) => r.text);
    }
    return single ? texts[0]! : texts;
  }

  /**
   * Dense embeddings of many texts through the multiplexer's Arrow RPC (EmbedArrow): a `string[]`
   * or an Arrow Table (its `text` column, else its first string column) in, split into batches of
   * `batchSize` rows sent LZ4-compressed, `concurrency` at once; row i of the answer is input row i.
   * `output: 'rows'` (default) gives Float32Array rows, `output: 'table'` an Arrow Table with one
   * `embeddings` column (FixedSizeList<Float32>[dim]).
   */
  embedArrow(model: ModelRef, input: readonly string[] | Table, opts?: EmbedArrowOptions & { output?: 'rows' }): Promise<Float32Array[]>;
  embedArrow(model: ModelRef, input: readonly string[] | Table, opts: EmbedArrowOptions & { output: 'table' }): Promise<Table>;
  async embedArrow(model: ModelRef, input: readonly string[] | Table, opts: EmbedArrowOptions = {}): Promise<Float32Array[] | Table> {
    const answers = await this.#arrow('EmbedArrow', model, input, opts, opts.normalize !== undefined ? { normalize: opts.normalize } : {});
    if (TeiplexClient.#output(opts) === 'table') return TeiplexClient.#table(answers, 'embeddings');
    const rows: Float32Array[] = [];
    for (const a of answers) {
      const { dim, rows: n, values } = decodeDense(a);
      for (let i = 0; i < n; i++) rows.push(values.slice(i * dim, (i + 1) * dim));
    }
    return rows;
  }

  /**
   * Sparse embeddings of many texts through EmbedSparseArrow, as embedArrow: SparseVector rows, or
   * a Table with one `sparse_embeddings` column (List<Struct<index: UInt32, value: Float32>>).
   */
  embedSparseArrow(model: ModelRef, input: readonly string[] | Table, opts?: EmbedArrowOptions & { output?: 'rows' }): Promise<SparseVector[]>;
  embedSparseArrow(model: ModelRef, input: readonly string[] | Table, opts: EmbedArrowOptions & { output: 'table' }): Promise<Table>;
  async embedSparseArrow(model: ModelRef, input: readonly string[] | Table, opts: EmbedArrowOptions = {}): Promise<SparseVector[] | Table> {
    const answers = await this.#arrow('EmbedSparseArrow', model, input, opts, {});
    if (TeiplexClient.#output(opts) === 'table') return TeiplexClient.#table(answers, 'sparse_embeddings');
    return answers.flatMap((a) => decodeSparse(a));
  }

  /**
   * Multivector embeddings (a vector per token) of many texts through EmbedAllArrow, as embedArrow:
   * MultiVector rows, or a Table with one `embeddings` column (List<FixedSizeList<Float32>[dim]>).
   */
  embedAllArrow(model: ModelRef, input: readonly string[] | Table, opts?: EmbedArrowOptions & { output?: 'rows' }): Promise<MultiVector[]>;
  embedAllArrow(model: ModelRef, input: readonly string[] | Table, opts: EmbedArrowOptions & { output: 'table' }): Promise<Table>;
  async embedAllArrow(model: ModelRef, input: readonly string[] | Table, opts: EmbedArrowOptions = {}): Promise<MultiVector[] | Table> {
    const answers = await this.#arrow('EmbedAllArrow', model, input, opts, {});
    if (TeiplexClient.#output(opts) === 'table') return TeiplexClient.#table(answers, 'embeddings');
    return answers.flatMap((a) => decodeMultivector(a));
  }

  static #output(opts: EmbedArrowOptions): 'rows' | 'table' {
    const output = opts.output ?? 'rows';
    if (output !== 'rows' && output !== 'table') throw new TypeError(`output: must be "rows" or "table", got ${JSON.stringify(output)}`);
    return output;
  }

  /** The input as LZ4 IPC streams of `batchSize` rows, sent `concurrency` at once; the answers' bytes in input order. */
  async #arrow(method: 'EmbedArrow' | 'EmbedSparseArrow' | 'EmbedAllArrow', model: ModelRef, input: readonly string[] | Table, opts: EmbedArrowOptions, extra: Record<string, unknown>): Promise<Uint8Array[]> {
    const batchSize = positiveInt('batchSize', opts.batchSize, 1024);
    const concurrency = positiveInt('concurrency', opts.concurrency, 4);
    TeiplexClient.#output(opts);
    const compress = opts.compress !== false;
    let requests: Uint8Array[];
    if (input instanceof Table) {
      const column = TeiplexClient.#textColumn(input, opts.column);
      const table = input.select([column]);
      requests = [];
      for (let start = 0; start < table.numRows; start += batchSize) {
        const part = table.slice(start, Math.min(table.numRows, start + batchSize));
        requests.push(writeStream(part.schema, part.batches, { compress }));
      }
    } else if (Array.isArray(input)) {
      checkTexts('input', input);
      requests = chunks(input as readonly string[], batchSize).map((part) => encodeTexts(part, { compress }));
    } else {
      throw new TypeError('input: must be a string[] or an apache-arrow Table');
    }
    const g: GrpcCallOptions = { ...opts, noWait: opts.noWait === true };
    const answers = await this.#onTarget(model, (target) =>
      inOrder(requests, concurrency, (ipc) =>
        this.#grpc.unary<{ arrow_ipc: Buffer }>(method, { target, arrow_ipc: Buffer.from(ipc.buffer, ipc.byteOffset, ipc.byteLength), truncate: opts.truncate ?? false, ...extra }, g),
      ),
    );
    return answers.map((a) => a.arrow_ipc);
  }

  /** The answers' record batches as one Table (an empty input: a Table of the answer's schema, or of `column` alone). */
  static #table(answers: readonly Uint8Array[], column: string): Table {
    const batches: RecordBatch[] = [];
    let schema: Schema | undefined;
    for (const a of answers) {
      const r = readStream(a);
      if (r.schema === null) continue;
      schema ??= r.schema;
      batches.push(...r.batches);
    }
    if (batches.length > 0) return new Table(batches);
    return new Table(schema ?? new Schema([new Field(column, new FixedSizeList(0, new Field('item', new Float32(), false)), false)]));
  }

  static #textColumn(t: Table, wanted: string | undefined): string {
    const isString = (type: DataType): boolean =>
      DataType.isUtf8(type) || DataType.isLargeUtf8(type) || (DataType.isDictionary(type) && (DataType.isUtf8(type.dictionary) || DataType.isLargeUtf8(type.dictionary))) || type.typeId === 24; /* Utf8View */
    const fields = t.schema.fields;
    if (wanted !== undefined) {
      if (!fields.some((f) => f.name === wanted)) throw new TypeError(`column: the table has no column "${wanted}" (it has ${fields.map((f) => JSON.stringify(f.name)).join(', ') || 'none'})`);
      return wanted;
    }
    const text = fields.find((f) => f.name === 'text');
    if (text !== undefined) return text.name;
    const first = fields.find((f) => isString(f.type));
    if (first === undefined) throw new TypeError(`input: the table has no string column (it has ${fields.map((f) => `${JSON.stringify(f.name)} (${String(f.type)})`).join(', ') || 'no columns'})`);
    return first.name;
  }

  /** The data plane's models (GET /v1/models): every model id and alias, catalog models included. */
  async models(opts?: CallOptions): Promise<DataPlaneModel[]> {
    const a = await this.#http.call<{ data: DataPlaneModel[] }>({ method: 'GET', path: '/v1/models', idempotent: true }, opts);
    return expectArray<DataPlaneModel>('GET /v1/models: data', a.body?.data);
  }

  /** The instances this client's key may target (the multiplexer's ListInstances). */
  async instances(opts?: CallOptions): Promise<InstanceSummary[]> {
    const r = await this.#grpc.unary<{ instances: InstanceSummary[] }>('ListInstances', {}, opts);
    return r.instances;
  }

  /** tei.v1 Info of the instance `model` resolves to (model type, limits). */
  info(model: ModelRef, opts?: InferenceOptions): Promise<ModelInfo> {
    return this.#onTarget(model, (target) => this.#grpc.unary<ModelInfo>('Info', { target }, TeiplexClient.#grpcOpts(opts)));
  }

  /** Closes every connection (gRPC channel, HTTP agents). */
  async close(): Promise<void> {
    this.#grpc.close();
    await Promise.all([this.#http.close(), this.admin.close()]);
  }
}
