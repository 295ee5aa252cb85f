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
  PairInput,
  PredictOptions,
  PredictTokensOptions,
  RerankOptions,
  SparseVector,
  TextInput,
  TokenEmbeddings,
} from '../tei/types.js';
import { CALIBRATION_ENGINE } from '../tei/calibration.js';
import { type CachedValue, EmbeddingCache } from './embedding-cache.js';
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
    const key = `d${opts.normalize ? 1 : 0}${opts.dimensions ?? ''}:${encodeKey(opts)}`;
    return this.many(key, inputs, (xs) => this.child.embed(xs, opts, call));
  }

  embedSparse(inputs: TextInput[], opts: EncodeOptions, call?: CallOptions): Promise<Batched<SparseVector>> {
    return this.many(`s:${encodeKey(opts)}`, inputs, (xs) => this.child.embedSparse(xs, opts, call));
  }

  embedAll(inputs: TextInput[], opts: EncodeOptions, call?: CallOptions): Promise<Batched<TokenEmbeddings>> {
    return this.many(`m:${encodeKey(opts)}`, inputs, (xs) => this.child.embedAll(xs, opts, call));
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
    // 1. distinct inputs, each with the request positions it answers
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
    const results = new Array<T>(inputs.length);
    const metadata = new Array<Batched<T>['metadata'][number]>(inputs.length);
    // 2. the cache
    const cached = this.useCache && this.cache.enabled;
    const prefix = cached ? `${await modelIdentity(this.child, this.spec)}\u0000${kindKey}\u0000` : '';
    const missing: typeof distinct = [];
    for (const d of distinct) {
      const e = cached ? this.cache.get(prefix + d.key) : undefined;
      if (e === undefined) {
        missing.push(d);
        continue;
      }
      this.cache.counts.hits += d.at.length;
      this.stats.hits += d.at.length;
      for (const i of d.at) {
        results[i] = e.value as T;
        metadata[i] = EmbeddingCache.metadataOf(e);
      }
    }
    // 3. the child, for what is left
    if (missing.length > 0) {
      let out: Batched<T>;
      try {
        out = await compute(missing.map((d) => d.input));
      } catch (err) {
        throw rebased(err, missing.map((d) => d.at[0]));
      }
      missing.forEach((d, k) => {
        const value = out.results[k];
        const m = out.metadata[k];
        const entry = { value, computeTokens: m?.computeTokens ?? 0, computeChars: m?.computeChars ?? 0 };
        if (cached) this.cache.set(prefix + d.key, entry);
        this.cache.counts.misses++;
        this.stats.misses++;
        d.at.forEach((i, j) => {
          results[i] = value;
          metadata[i] = j === 0 && m !== undefined ? m : EmbeddingCache.metadataOf(entry);
        });
        // repeats within the request: answered without the child
        this.stats.hits += d.at.length - 1;
        this.cache.counts.hits += d.at.length - 1;
      });
    }
    return { results, metadata };
  }
}

/** A child's row error named by the request's row: `rows[k]` is where the k-th input sent came from. */
function rebased(err: unknown, rows: number[]): unknown {
  if (!(err instanceof TeiplexError) || err.index === undefined) return err;
  const row = rows[err.index];
  if (row === undefined || row === err.index) return err;
  const message = err.message.replace(new RegExp(`\\binput ${err.index}\\b`), `input ${row}`);
  return new TeiplexError(err.code, message, { index: row, ...(err.retryAfterSecs !== undefined ? { retryAfterSecs: err.retryAfterSecs } : {}), ...(err.param !== undefined ? { param: err.param } : {}) });
}
