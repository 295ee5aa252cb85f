/**
 * Every inference operation of the data plane against one instance's child, with requests larger
 * than the child's max_client_batch_size split into several calls (at most `maxChunksInFlight` at
 * once, within the child's max_concurrent_requests) and answers put back in input order:
 *
 * - teiplex routers: one teiplex.v1.Batch call per chunk (packed little-endian results) when a
 *   request has several inputs; a child that answers UNIMPLEMENTED is remembered as TEI-only and
 *   asked over tei.v1 instead;
 * - any child (TEI included): tei.v1, one unary call for a single input, else one bidirectional
 *   `*Stream` call per chunk (one message per input).
 */
import type { PbTruncationDirection } from '../../tei/proto.js';
import type { Metadata } from '../../tei/types.js';
import * as grpc from '@grpc/grpc-js';
import { ChildStatusError, asCallError, many, unary, unaryRaw, type CallTarget } from './child-call.js';
import { BATCH, TEI, float32s, fromPbMetadata, uint32s } from './child-codec.js';
import type { ChildInfo } from './child-info.js';
import type { AnswerBudget } from './answer-budget.js';
import { fanOut } from './fan-out.js';

export interface EncodeOptions {
  truncate: boolean;
  truncationDirection: PbTruncationDirection;
  promptName?: string;
}

export interface EmbedOptions extends EncodeOptions {
  /** Unset: the child's default (true). */
  normalize?: boolean;
  dimensions?: number;
}

export interface PredictOptions {
  truncate: boolean;
  truncationDirection: PbTruncationDirection;
  rawScores: boolean;
}

export interface SparseRow {
  indices: ArrayLike<number>;
  values: ArrayLike<number>;
}

export interface TokenRows {
  tokens: number;
  dim: number;
  /** tokens x dim, row-major. */
  values: Float32Array;
}

export interface Prediction {
  score: number;
  label: string;
}

export interface Rank {
  index: number;
  text?: string;
  score: number;
}

export interface Token {
  id: number;
  text: string;
  special: boolean;
  start: number | null;
  stop: number | null;
}

/** Results in input order, with the child's metadata (per input or per call). */
export interface Results<T> {
  rows: T[];
  metadata: Metadata[];
}

/** Most chunks of one request in flight to a child at once. */
const MAX_CHUNKS_IN_FLIGHT = 8;

const optional = <T>(v: T | undefined): T | undefined => v;

export class ChildOps {
  constructor(
    readonly target: CallTarget,
    readonly child: ChildInfo,
  ) {}

  /**
   * Inputs per child call: max_client_batch_size; a Batch call also takes one admission permit
   * per input, so it never carries more than max_concurrent_requests.
   */
  private size(batch: boolean): number {
    return batch ? Math.min(this.child.maxClientBatchSize, this.child.maxConcurrentRequests) : this.child.maxClientBatchSize;
  }

  /** Chunks in flight at once: as many as the child admits together, at most MAX_CHUNKS_IN_FLIGHT. */
  private limit(size: number): number {
    return Math.max(1, Math.min(MAX_CHUNKS_IN_FLIGHT, Math.floor(this.child.maxConcurrentRequests / size)));
  }

  /** Split `items`, run each chunk through Batch (when served) or tei.v1, collect in order. */
  private async split<I, R>(items: readonly I[], viaBatch: ((chunk: I[]) => Promise<Results<R>>) | null, viaTei: (chunk: I[]) => Promise<Results<R>>): Promise<Results<R>> {
    const metadata: Metadata[] = [];
    // One input: a plain unary tei.v1 call costs the child less than a Batch call.
    const batch = viaBatch !== null && this.child.batch && items.length > 1;
    const size = this.size(batch);
    const rows = await fanOut(items, size, this.limit(size), async (c) => {
      let r: Results<R> | undefined;
      if (batch && viaBatch !== null) {
        try {
          r = await viaBatch(c);
        } catch (err) {
          if (!(err instanceof ChildStatusError && err.code === grpc.status.UNIMPLEMENTED)) throw asCallError(this.target, err);
          this.child.batch = false;
        }
      }
      r ??= await viaTei(c);
      metadata.push(...r.metadata);
      return r.rows;
    });
    return { rows, metadata };
  }

  embed(texts: readonly string[], o: EmbedOptions): Promise<Results<Float32Array>> {
    const req = { truncate: o.truncate, truncation_direction: o.truncationDirection, prompt_name: optional(o.promptName), normalize: optional(o.normalize), dimensions: optional(o.dimensions) };
    return this.split(
      texts,
      async (inputs) => {
        const res = await unaryRaw(this.target, BATCH.EmbedBatch, { ...req, inputs });
        const all = float32s(res.embeddings);
        const dim = res.dim;
        return { rows: inputs.map((_, i) => all.subarray(i * dim, (i + 1) * dim)), metadata: [fromPbMetadata(res.metadata)] };
      },
      async (inputs) => {
        const res = await many(this.target, TEI.Embed, TEI.EmbedStream, inputs.map((inputs) => ({ ...req, inputs })));
        return { rows: res.map((r) => Float32Array.from(r.embeddings)), metadata: res.map((r) => fromPbMetadata(r.metadata)) };
      },
    );
  }

  embedSparse(texts: readonly string[], o: EncodeOptions): Promise<Results<SparseRow>> {
    const req = { truncate: o.truncate, truncation_direction: o.truncationDirection, prompt_name: optional(o.promptName) };
    return this.split<string, SparseRow>(
      texts,
      async (inputs) => {
        const res = await unaryRaw(this.target, BATCH.EmbedSparseBatch, { ...req, inputs });
        const indices = uint32s(res.indices);
        const values = float32s(res.values);
        const off = res.offsets;
        return { rows: inputs.map((_, i) => ({ indices: indices.subarray(off[i], off[i + 1]), values: values.subarray(off[i], off[i + 1]) })), metadata: [fromPbMetadata(res.metadata)] };
      },
      async (inputs) => {
        const res = await many(this.target, TEI.EmbedSparse, TEI.EmbedSparseStream, inputs.map((inputs) => ({ ...req, inputs })));
        return {
          rows: res.map((r) => ({ indices: r.sparse_embeddings.map((s) => s.index), values: r.sparse_embeddings.map((s) => s.value) })),
          metadata: res.map((r) => fromPbMetadata(r.metadata)),
        };
      },
    );
  }

  /** Every token's vector; each chunk's values are charged to `budget` as they arrive (past it: 413, no more chunks). */
  embedAll(texts: readonly string[], o: EncodeOptions, budget: AnswerBudget): Promise<Results<TokenRows>> {
    const req = { truncate: o.truncate, truncation_direction: o.truncationDirection, prompt_name: optional(o.promptName) };
    return this.split(
      texts,
      async (inputs) => {
        const res = await unaryRaw(this.target, BATCH.EmbedAllBatch, { ...req, inputs });
        const all = float32s(res.embeddings);
        budget.floats(all.length);
        const { dim, offsets: off } = res;
        return {
          rows: inputs.map((_, i) => ({ tokens: off[i + 1] - off[i], dim, values: all.subarray(off[i] * dim, off[i + 1] * dim) })),
          metadata: [fromPbMetadata(res.metadata)],
        };
      },
      async (inputs) => {
        const res = await many(this.target, TEI.EmbedAll, TEI.EmbedAllStream, inputs.map((inputs) => ({ ...req, inputs })));
        for (const r of res) for (const t of r.token_embeddings) budget.floats(t.embeddings.length);
        return {
          rows: res.map((r) => {
            const tokens = r.token_embeddings.length;
            const dim = tokens > 0 ? r.token_embeddings[0].embeddings.length : 0;
            const values = new Float32Array(tokens * dim);
            r.token_embeddings.forEach((t, k) => values.set(t.embeddings, k * dim));
            return { tokens, dim, values };
          }),
          metadata: res.map((r) => fromPbMetadata(r.metadata)),
        };
      },
    );
  }

  /** Each item a text or a pair; singles and pairs go to Predict and PredictPair. */
  predict(items: ReadonlyArray<string | [string, string]>, o: PredictOptions): Promise<Results<Prediction[]>> {
    const base = { truncate: o.truncate, raw_scores: o.rawScores, truncation_direction: o.truncationDirection };
    return this.split(items, null, async (c) => {
      const singles: number[] = [];
      const pairs: number[] = [];
      c.forEach((x, i) => (typeof x === 'string' ? singles : pairs).push(i));
      const [s, p] = await Promise.all([
        singles.length > 0 ? many(this.target, TEI.Predict, TEI.PredictStream, singles.map((i) => ({ ...base, inputs: c[i] as string }))) : [],
        pairs.length > 0 ? many(this.target, TEI.PredictPair, TEI.PredictPairStream, pairs.map((i) => ({ ...base, inputs: c[i] as [string, string] }))) : [],
      ]);
      const rows = new Array<Prediction[]>(c.length);
      const metadata = new Array<Metadata>(c.length);
      singles.forEach((i, k) => ((rows[i] = s[k].predictions), (metadata[i] = fromPbMetadata(s[k].metadata))));
      pairs.forEach((i, k) => ((rows[i] = p[k].predictions), (metadata[i] = fromPbMetadata(p[k].metadata))));
      return { rows, metadata };
    });
  }

  /** Every text scored against the query (chunked), best first; `index` is the text's position. */
  async rerank(query: string, texts: readonly string[], o: PredictOptions & { returnText: boolean }): Promise<Results<Rank>> {
    const base = { query, truncate: o.truncate, raw_scores: o.rawScores, return_text: o.returnText, truncation_direction: o.truncationDirection };
    const metadata: Metadata[] = [];
    const size = this.size(false);
    const ranks = await fanOut(texts, size, this.limit(size), async (c, offset) => {
      const res = await unary(this.target, TEI.Rerank, { ...base, texts: c });
      metadata.push(fromPbMetadata(res.metadata));
      return res.ranks.map((r) => ({ index: r.index + offset, score: r.score, ...(r.text !== undefined ? { text: r.text } : {}) }));
    });
    ranks.sort((a, b) => b.score - a.score || a.index - b.index);
    return { rows: ranks, metadata };
  }

  async tokenize(texts: readonly string[], addSpecialTokens: boolean, promptName?: string): Promise<Token[][]> {
    const { rows } = await this.split(texts, null, async (c) => {
      const res = await many(this.target, TEI.Tokenize, TEI.TokenizeStream, c.map((inputs) => ({ inputs, add_special_tokens: addSpecialTokens, prompt_name: optional(promptName) })));
      return {
        rows: res.map((r) => r.tokens.map((t) => ({ id: t.id, text: t.text, special: t.special, start: t.start ?? null, stop: t.stop ?? null }))),
        metadata: [],
      };
    });
    return rows;
  }

  async decode(ids: ReadonlyArray<readonly number[]>, skipSpecialTokens: boolean): Promise<string[]> {
    const { rows } = await this.split(ids, null, async (c) => {
      const res = await many(this.target, TEI.Decode, TEI.DecodeStream, c.map((x) => ({ ids: [...x], skip_special_tokens: skipSpecialTokens })));
      return { rows: res.map((r) => r.text), metadata: [] };
    });
    return rows;
  }
}
