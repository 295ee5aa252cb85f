/**
 * The HTTP data plane's Prometheus metrics, in the manager's registry:
 * - `teiplex_http_requests_total{route,instance,code}`: requests by route pattern (e.g.
 *   `/v1/embeddings`, `/v1/encode/*`), the instance(s) that answered (`x-teiplex-instance`;
 *   empty when none did) and HTTP status;
 * - `teiplex_http_request_duration_seconds{route}`: time from the request to the response.
 * Labels come from route patterns and instance names, never from client input.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import { DURATION_BUCKETS } from '../../metrics/buckets.js';

export class DataPlaneMetrics {
  private readonly requests: Counter<'route' | 'instance' | 'code'>;
  private readonly duration: Histogram<'route'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({
      name: 'teiplex_http_requests_total',
      help: 'HTTP data plane requests by route, answering instance(s) and status code',
      labelNames: ['route', 'instance', 'code'],
      registers,
    });
    this.duration = new Histogram({
      name: 'teiplex_http_request_duration_seconds',
      help: 'HTTP data plane request duration, seconds',
      labelNames: ['route'],
      buckets: DURATION_BUCKETS,
      registers,
    });
  }

  observe(route: string, instance: string, code: number, seconds: number): void {
    this.requests.inc({ route, instance, code: String(code) });
    this.duration.observe({ route }, seconds);
  }
}
