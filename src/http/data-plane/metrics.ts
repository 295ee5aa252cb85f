/**
 * The HTTP data plane's Prometheus metrics, in the manager's registry:
 * - `teiplex_http_requests_total{route,instance,code}`: requests by route pattern (e.g.
 *   `/v1/embeddings`, `/v1/encode/*`), the instance(s) that answered (`x-teiplex-instance`;
 *   empty when none did) and HTTP status;
 * - `teiplex_http_request_duration_seconds{route}`: time from the request to the response;
 * - `teiplex_input_type_missing_total{instance}`: requests to a model whose query and document
 *   prompts differ that named neither `input_type` nor `prompt_name` (answered with a warning);
 * - `teiplex_embedding_cache_{hits,misses,evictions}_total`, `teiplex_embedding_cache_bytes`,
 *   `teiplex_embedding_cache_entries`: the embedding cache (src/routing/embedding-cache.ts), read
 *   when scraped; hits count inputs answered without the child (from the cache, or repeated in
 *   their request), misses the inputs the child computed;
 * - `teiplex_failover_retries_total{model_id,outcome}`: failover's decisions (src/routing/failover.ts;
 *   one counter for both front ends, registered by whichever comes first).
 * Labels come from route patterns and instance names, never from client input.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { EmbeddingCache } from '../../routing/embedding-cache.js';
import { DURATION_BUCKETS } from '../../metrics/buckets.js';
import type { Failover } from '../../routing/failover.js';

export class DataPlaneMetrics {
  private readonly duration: Histogram<'route'>;
  /** Requests per label set, handed to the counter when scraped (prom-client would hash the labels on every increment). */
  private readonly counts = new Map<string, { labels: { route: string; instance: string; code: string }; n: number }>();
  /** The histogram's child per route. */
  private readonly timed = new Map<string, { observe(v: number): void }>();
  private readonly untyped: Counter<'instance'>;

  constructor(registry: Registry, failover?: Failover, cache?: EmbeddingCache) {
    const registers = [registry];
    if (cache !== undefined) cacheMetrics(registers, cache);
    failover?.register(registry);
    const counts = this.counts;
    new Counter({
      name: 'teiplex_http_requests_total',
      help: 'HTTP data plane requests by route, answering instance(s) and status code',
      labelNames: ['route', 'instance', 'code'],
      registers,
      collect() {
        this.reset();
        for (const c of counts.values()) this.inc(c.labels, c.n);
      },
    });
    this.duration = new Histogram({
      name: 'teiplex_http_request_duration_seconds',
      help: 'HTTP data plane request duration, seconds',
      labelNames: ['route'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.untyped = new Counter({
      name: 'teiplex_input_type_missing_total',
      help: 'requests without input_type or prompt_name to a model whose query and document prompts differ',
      labelNames: ['instance'],
      registers,
    });
  }

  /** A request to an asymmetric model came without a type (it was answered with a warning). */
  inputTypeMissing(instance: string): void {
    this.untyped.inc({ instance });
  }

  observe(route: string, instance: string, code: number, seconds: number): void {
    const key = `${route}\n${instance}\n${code}`;
    const c = this.counts.get(key);
    if (c !== undefined) c.n++;
    else this.counts.set(key, { labels: { route, instance, code: String(code) }, n: 1 });
    let histogram = this.timed.get(route);
    if (histogram === undefined) this.timed.set(route, (histogram = this.duration.labels({ route })));
    histogram.observe(seconds);
  }
}

/** The embedding cache's counters and gauges, read from the cache when scraped. */
function cacheMetrics(registers: Registry[], cache: EmbeddingCache): void {
  const counter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  counter('teiplex_embedding_cache_hits_total', 'inputs answered without the child: from the embedding cache, or repeated in their request', () => cache.counts.hits);
  counter('teiplex_embedding_cache_misses_total', 'inputs the child computed (dense, sparse, multivector)', () => cache.counts.misses);
  counter('teiplex_embedding_cache_evictions_total', 'entries the embedding cache dropped to stay within embedding_cache_mb', () => cache.counts.evictions);
  new Gauge({
    name: 'teiplex_embedding_cache_bytes',
    help: 'bytes the embedding cache holds (keys, values, overhead)',
    registers,
    collect() {
      this.set(cache.bytes);
    },
  });
  new Gauge({
    name: 'teiplex_embedding_cache_entries',
    help: 'entries in the embedding cache',
    registers,
    collect() {
      this.set(cache.size);
    },
  });
}
