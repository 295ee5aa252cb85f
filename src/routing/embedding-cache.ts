/**
 * The manager's embedding cache: a bounded LRU of answers (dense vectors, sparse vectors, token
 * vectors) keyed by the model's identity (model-identity.ts), every option that changes an
 * answer, and the input. `embedding_cache_mb` bounds the bytes it holds (0: off); an entry's size
 * counts its key, its values and a fixed overhead. An answer is stored as the child gave it and a
 * hit returns that same object: nothing in the manager writes into an answer's arrays, so a hit is
 * bit-identical to the miss that filled it.
 *
 * A text that one request is computing is not computed again by another that asks for it
 * meanwhile: that one waits for the answer (begin / inFlight), so concurrent requests with the
 * same texts reach the child once.
 *
 * What it holds is only ever given to a request for the same model identity: any API key allowed
 * to use that model would get the same answer from the child, so no key can see what it could
 * not compute itself.
 */
import type { Metadata, SparseVector, TokenEmbeddings } from '../tei/types.js';

export type CachedValue = Float32Array | SparseVector | TokenEmbeddings;

export interface CacheEntry {
  readonly value: CachedValue;
  /** The input's size as the child measured it (token and character counts of its Metadata). */
  readonly computeTokens: number;
  readonly computeChars: number;
}

/** Bytes an entry costs beyond its key and values (Map slot, objects). */
const ENTRY_OVERHEAD = 160;

export function valueBytes(v: CachedValue): number {
  if (v instanceof Float32Array) return v.byteLength;
  if ('indices' in v) return v.indices.byteLength + v.values.byteLength;
  return v.values.byteLength;
}

export interface CacheCounts {
  hits: number;
  misses: number;
  evictions: number;
}

export class EmbeddingCache {
  private readonly entries = new Map<string, { entry: CacheEntry; bytes: number }>();
  /** Keys a request is computing now: their answer (undefined when that request failed). */
  private readonly computing = new Map<string, Promise<CacheEntry | undefined>>();
  private held = 0;
  readonly counts: CacheCounts = { hits: 0, misses: 0, evictions: 0 };

  /** @param limitBytes what the entries may hold together (0: the cache is off; requests still dedup) */
  constructor(readonly limitBytes: number) {}

  get enabled(): boolean {
    return this.limitBytes > 0;
  }

  /** Bytes held now. */
  get bytes(): number {
    return this.held;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The entry for `key`, made the most recently used. */
  get(key: string): CacheEntry | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    this.entries.delete(key);
    this.entries.set(key, e);
    return e.entry;
  }

  /** Keep `entry` under `key`, evicting the least recently used until the bytes fit; an entry larger than the whole cache is not kept. */
  set(key: string, entry: CacheEntry): void {
    if (!this.enabled) return;
    const bytes = key.length * 2 + valueBytes(entry.value) + ENTRY_OVERHEAD;
    if (bytes > this.limitBytes) return;
    const old = this.entries.get(key);
    if (old !== undefined) {
      this.entries.delete(key);
      this.held -= old.bytes;
    }
    this.entries.set(key, { entry, bytes });
    this.held += bytes;
    for (const [k, e] of this.entries) {
      if (this.held <= this.limitBytes) break;
      this.entries.delete(k);
      this.held -= e.bytes;
      this.counts.evictions++;
    }
  }

  /** The answer another request is computing for `key` now (undefined: none is). */
  inFlight(key: string): Promise<CacheEntry | undefined> | undefined {
    return this.computing.get(key);
  }

  /**
   * `key` is being computed: requests that miss it meanwhile wait for this answer (inFlight)
   * instead of computing it again. The returned function settles it: the entry, or undefined
   * when the computation failed (the waiters then compute it themselves).
   */
  begin(key: string): (entry: CacheEntry | undefined) => void {
    let settle!: (entry: CacheEntry | undefined) => void;
    const answer = new Promise<CacheEntry | undefined>((resolve) => (settle = resolve));
    this.computing.set(key, answer);
    return (entry) => {
      if (this.computing.get(key) === answer) this.computing.delete(key);
      settle(entry);
    };
  }

  /** Metadata for an answer served from the cache: the input's size, no time spent. */
  static metadataOf(e: CacheEntry): Metadata {
    return { computeChars: e.computeChars, computeTokens: e.computeTokens, totalTimeNs: 0n, tokenizationTimeNs: 0n, queueTimeNs: 0n, inferenceTimeNs: 0n };
  }
}
