/**
 * A child's Engine with the manager's embedding cache and in-request dedup in front of its dense,
 * sparse and multivector calls (the other calls go straight through):
 *
 * 1. the request's inputs are reduced to the distinct ones (a text, or a token-id list), so the
 *    child computes each once;
 * 2. each distinct input is looked up in the cache (embedding-cache.ts) under the child's model
 *    identity (model-identity.ts), the call's kind and every option that changes the answer;
 * 3. the rest go to the child in one call, in their order; their answers are kept in the cache;
 * 4. the answer is assembled in the request's order.
 *
 * `stats` counts, for the request, the inputs answered without the child (`hits`: from the cache,
 * or a repeat of an input of the same request) and the inputs the child computed (`misses`); the
 * front ends report them (`x-teiplex-cache: hits=N misses=M`). A row error of the child names the
 * request's row (its first occurrence).
 */
import { TeiplexError } from '../common/errors.js';
import type { ChildClient } from '../child/child-client.js';
import type { InstanceSpec } from '../config/instance-spec.js';
import type {
  Batched,
  CallOptions,
  EmbedOptions,
  EncodeOptions,
  Engine,
  Metadata,
  PairInput,
  PredictOptions,
  PredictTokensOptions,
  RerankOptions,
  SparseVector,
  TextInput,
  TokenEmbeddings,
} from '../tei/types.js';
import { CALIBRATION_ENGINE } from '../tei/calibration.js';
import { type CacheEntry, type CachedValue, EmbeddingCache } from './embedding-cache.js';
import { modelIdentity } from './model-identity.js';

export const CACHE_HEADER = 'x-teiplex-cache';

export interface CacheStats {
  hits: number;
  misses: number;
}

/** The header value for a request's counts. */
export const cacheHeader = (s: CacheStats): string => `hits=${s.hits} misses=${s.misses}`;

const encodeKey = (o: EncodeOptions): string => `${o.truncate ? 1 : 0}${o.truncationDirection === 'left' ? 'l' : 'r'}${o.promptName === undefined ? '' : `p${o.promptName}`}`;
const inputKey = (x: TextInput): string => (typeof x === 'string' ? `s${x}` : `i${x.join(',')}`);

export class CachedEngine implements Engine {
  readonly stats: CacheStats = { hits: 0, misses: 0 };
  /** int8/uint8 ranges are calibrated on the child itself, kept for its life, outside this request's counts. */
  readonly [CALIBRATION_ENGINE]: Engine;

  /** @param useCache false: the spec opted out (dedup still applies) */
  constructor(
    private readonly child: ChildClient,
    private readonly spec: InstanceSpec,
    private readonly cache: EmbeddingCache,
    private readonly useCache: boolean,
  ) {
    this[CALIBRATION_ENGINE] = child;
  }

  embed(inputs: TextInput[], opts: EmbedOptions, call?: CallOptions): Promise<Batched<Float32Array>> {
    return this.many(kindKey('dense', opts), inputs, (xs) => this.child.embed(xs, opts, call));
  }

  embedSparse(inputs: TextInput[], opts: EncodeOptions, call?: CallOptions): Promise<Batched<SparseVector>> {
    return this.many(kindKey('sparse', opts), inputs, (xs) => this.child.embedSparse(xs, opts, call));
  }

  embedAll(inputs: TextInput[], opts: EncodeOptions, call?: CallOptions): Promise<Batched<TokenEmbeddings>> {
    return this.many(kindKey('multivector', opts), inputs, (xs) => this.child.embedAll(xs, opts, call));
  }

  predict(inputs: Array<string | PairInput>, opts: PredictOptions, call?: CallOptions) {
    return this.child.predict(inputs, opts, call);
  }

  predictTokens(inputs: string[], opts: PredictTokensOptions, call?: CallOptions) {
    return this.child.predictTokens(inputs, opts, call);
  }

  rerank(query: string, texts: string[], opts: RerankOptions, call?: CallOptions) {
    return this.child.rerank(query, texts, opts, call);
  }

  tokenize(inputs: string[], addSpecialTokens: boolean, promptName?: string, call?: CallOptions) {
    return this.child.tokenize(inputs, addSpecialTokens, promptName, call);
  }

  decode(ids: number[][], skipSpecialTokens: boolean, call?: CallOptions) {
    return this.child.decode(ids, skipSpecialTokens, call);
  }

  private async many<T extends CachedValue>(kindKey: string, inputs: TextInput[], compute: (xs: TextInput[]) => Promise<Batched<T>>): Promise<Batched<T>> {
    // distinct inputs, each with the request positions it answers
    const positions = new Map<string, number[]>();
    const distinct: Array<{ input: TextInput; key: string; at: number[] }> = [];
    inputs.forEach((x, i) => {
      const k = inputKey(x);
      const at = positions.get(k);
      if (at !== undefined) at.push(i);
      else {
        const list = [i];
        positions.set(k, list);
        distinct.push({ input: x, key: k, at: list });
      }
    });
    const prefix = this.useCache && this.cache.enabled ? `${await modelIdentity(this.child, this.spec)}\u0000${kindKey}\u0000` : undefined;
    const out = await throughCache(this.cache, prefix, distinct.length, (k) => distinct[k]!.key, (k) => distinct[k]!.at[0]!, async (missing) => {
      const answer = await compute(missing.map((k) => distinct[k]!.input));
      return { values: answer.results, metadata: answer.metadata };
    });
    countRequest(this.cache, this.stats, inputs.length, out.computed);
    const results = new Array<T>(inputs.length);
    const metadata = new Array<Batched<T>['metadata'][number]>(inputs.length);
    distinct.forEach((d, k) => {
      const e = out.entries[k]!;
      d.at.forEach((i, j) => {
        results[i] = e.value as T;
        // the child's own metadata for the row it computed; a repeat or a hit: the input's size, no time
        metadata[i] = j === 0 && out.metadata[k] !== undefined ? out.metadata[k]! : EmbeddingCache.metadataOf(e);
      });
    });
    return { results, metadata };
  }
}

/** The cache key of a call's kind and every option that changes its answers (dense, sparse, multivector). */
export function kindKey(kind: 'dense' | 'sparse' | 'multivector', o: EmbedOptions | EncodeOptions): string {
  if (kind === 'dense') {
    const e = o as EmbedOptions;
    return `d${e.normalize ? 1 : 0}${e.dimensions ?? ''}:${encodeKey(o)}`;
  }
  return `${kind === 'sparse' ? 's' : 'm'}:${encodeKey(o)}`;
}

/** What throughCache found and computed, per distinct input. */
export interface Distinct {
  entries: CacheEntry[];
  /** The child's metadata of the inputs it computed (undefined for hits, or none given). */
  metadata: Array<Metadata | undefined>;
  /** How many distinct inputs the child computed. */
  computed: number;
}

/**
 * The most inputs a computation may have for other requests to wait for its answers: a request
 * waits at most for one such call (about one batch of the child), never for a large job.
 */
export const COALESCE_MAX_INPUTS = 256;

/**
 * Answers for `count` distinct inputs of one request: each looked up in the cache under
 * `prefix + key(k)` (prefix undefined: the cache is not used), or waited for when another request
 * is computing it now in a call of at most COALESCE_MAX_INPUTS inputs; the rest computed in one call, in their order, and kept (an input whose
 * other request failed is computed in a second call). A row error of `compute` (its err.index:
 * the k-th input it was given) is named by the request's row, `firstRow(k)`.
 */
export async function throughCache<T extends CachedValue>(
  cache: EmbeddingCache,
  prefix: string | undefined,
  count: number,
  key: (k: number) => string,
  firstRow: (k: number) => number,
  compute: (missing: number[]) => Promise<{ values: T[]; metadata?: Array<Metadata | undefined> }>,
): Promise<Distinct> {
  const entries = new Array<CacheEntry>(count);
  const metadata = new Array<Metadata | undefined>(count);
  const missing: number[] = [];
  const waiting: Array<{ k: number; answer: Promise<CacheEntry | undefined> }> = [];
  for (let k = 0; k < count; k++) {
    if (prefix === undefined) {
      missing.push(k);
      continue;
    }
    const full = prefix + key(k);
    const e = cache.get(full);
    if (e !== undefined) {
      entries[k] = e;
      continue;
    }
    const answer = cache.inFlight(full);
    if (answer !== undefined) waiting.push({ k, answer });
    else missing.push(k);
  }
  let computed = 0;
  const run = async (ks: number[]): Promise<void> => {
    if (ks.length === 0) return;
    const settle = prefix === undefined || ks.length > COALESCE_MAX_INPUTS ? [] : ks.map((k) => cache.begin(prefix + key(k)));
    let out: Awaited<ReturnType<typeof compute>>;
    try {
      out = await compute(ks);
    } catch (err) {
      for (const s of settle) s(undefined);
      throw rebased(err, ks.map(firstRow));
    }
    computed += ks.length;
    ks.forEach((k, j) => {
      const m = out.metadata?.[j];
      const entry: CacheEntry = { value: out.values[j]!, computeTokens: m?.computeTokens ?? 0, computeChars: m?.computeChars ?? 0 };
      if (prefix !== undefined) cache.set(prefix + key(k), entry);
      settle[j]?.(entry);
      entries[k] = entry;
      metadata[k] = m;
    });
  };
  const waited = async (): Promise<void> => {
    const failed: number[] = [];
    for (const w of waiting) {
      const e = await w.answer;
      if (e === undefined) failed.push(w.k);
      else entries[w.k] = e;
    }
    await run(failed);
  };
  await Promise.all([run(missing), waited()]);
  return { entries, metadata, computed };
}

/** A request of `rows` inputs of which the child computed `computed`: the rest were hits (from the cache, or repeats). */
export function countRequest(cache: EmbeddingCache, stats: CacheStats, rows: number, computed: number): void {
  stats.misses += computed;
  stats.hits += rows - computed;
  cache.counts.misses += computed;
  cache.counts.hits += rows - computed;
}

/** A child's row error named by the request's row: `rows[k]` is where the k-th input sent came from. */
function rebased(err: unknown, rows: number[]): unknown {
  if (!(err instanceof TeiplexError) || err.index === undefined) return err;
  const row = rows[err.index];
  if (row === undefined || row === err.index) return err;
  const message = err.message.replace(new RegExp(`\\b(input|row) ${err.index}\\b`), `$1 ${row}`);
  return new TeiplexError(err.code, message, { index: row, ...(err.retryAfterSecs !== undefined ? { retryAfterSecs: err.retryAfterSecs } : {}), ...(err.param !== undefined ? { param: err.param } : {}) });
}
