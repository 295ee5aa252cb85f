/**
 * The multiplexer's Prometheus metrics, registered in the registry it is given (the manager's, so
 * they appear on its /metrics):
 * - `teiplex_requests_total{instance,model,method,code}`: calls by gRPC status name (OK,
 *   NOT_FOUND, UNAVAILABLE, ...); `instance` and `model` are empty for calls that never reached
 *   an instance (bad target, malformed message), so client input never becomes a label;
 * - `teiplex_request_duration_seconds{instance,method}`: call duration (a stream: its lifetime);
 * - `teiplex_inflight_requests{instance}`: requests in flight from both front ends (gRPC calls and
 *   HTTP data-plane requests: src/routing/inflight.ts), read at scrape time;
 * - `teiplex_arrow_rows_total{instance,kind}`: rows answered by the Arrow RPCs (kind: dense,
 *   sparse, multivector; noop calls included);
 * - `teiplex_failover_retries_total{model_id,outcome}`: failover's decisions (src/routing/failover.ts;
 *   one counter for both front ends, registered by whichever comes first).
 * Label children are cached, so a call costs two map lookups, not a label hash each.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { DURATION_BUCKETS } from '../metrics/buckets.js';
import type { Failover } from '../routing/failover.js';

const STATUS_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(GrpcStatus)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => [v as number, k]),
);

export function statusName(code: number): string {
  return STATUS_NAMES[code] ?? String(code);
}

export class MuxMetrics {
  private readonly requests: Counter<'instance' | 'model' | 'method' | 'code'>;
  private readonly duration: Histogram<'instance' | 'method'>;
  private readonly counterCache = new Map<string, Counter.Internal>();
  private readonly histogramCache = new Map<string, Histogram.Internal<'instance' | 'method'>>();
  private readonly arrowRowsTotal: Counter<'instance' | 'kind'>;

  /** `inflight` lists the instances (every one, zeros included) with their calls in flight. */
  constructor(registry: Registry, inflight: () => Iterable<[instance: string, count: number]>, failover?: Failover) {
    const registers = [registry];
    failover?.register(registry);
    this.requests = new Counter({
      name: 'teiplex_requests_total',
      help: 'gRPC multiplexer calls by instance, model, method and status code',
      labelNames: ['instance', 'model', 'method', 'code'],
      registers,
    });
    this.duration = new Histogram({
      name: 'teiplex_request_duration_seconds',
      help: 'gRPC multiplexer call duration (a stream: its lifetime), seconds',
      labelNames: ['instance', 'method'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.arrowRowsTotal = new Counter({
      name: 'teiplex_arrow_rows_total',
      help: 'Rows answered by the gRPC multiplexer Arrow RPCs, by instance and kind (dense, sparse, multivector)',
      labelNames: ['instance', 'kind'],
      registers,
    });
    new Gauge({
      name: 'teiplex_inflight_requests',
      help: 'Requests in flight per instance, from both front ends (gRPC multiplexer calls and HTTP data-plane requests)',
      labelNames: ['instance'],
      registers,
      collect() {
        this.reset();
        for (const [instance, n] of inflight()) this.set({ instance }, n);
      },
    });
  }

  /** One finished call. */
  observe(instance: string, model: string, method: string, code: number, seconds: number): void {
    const ck = `${instance}\u0000${model}\u0000${method}\u0000${code}`;
    let c = this.counterCache.get(ck);
    if (c === undefined) {
      c = this.requests.labels({ instance, model, method, code: statusName(code) });
      this.counterCache.set(ck, c);
    }
    c.inc();
    const hk = `${instance}\u0000${method}`;
    let h = this.histogramCache.get(hk);
    if (h === undefined) {
      h = this.duration.labels({ instance, method });
      this.histogramCache.set(hk, h);
    }
    h.observe(seconds);
  }

  /** Rows answered by an Arrow RPC. */
  arrowRows(instance: string, kind: string, rows: number): void {
    this.arrowRowsTotal.inc({ instance, kind }, rows);
  }
}
