/**
 * The manager's REST admin API (docs/manager.md "REST API", docs/on-demand.md) as typed calls.
 * GETs are retried (connection failure, 429, 503, honouring Retry-After); POST and DELETE calls
 * (create, start, stop, restart, delete, load, unload, reload) are tried exactly once.
 */
import { HttpTransport, type CallOptions } from './http-transport.js';
import { resolveOptions, type ClientOptions } from './options.js';
import type { CatalogModelInfo, GpuList, InstanceInfo, InstanceSpecInput, LogRange, MemoryReport, ReloadReport } from './types.js';

function segment(what: string, name: string): string {
  if (typeof name !== 'string' || name === '') throw new TypeError(`${what}: must be a non-empty string`);
  return encodeURIComponent(name);
}

export class AdminClient {
  readonly #http: HttpTransport;

  constructor(options?: ClientOptions) {
    this.#http = new HttpTransport(resolveOptions(options));
  }

  async #get<T>(path: string, query?: Record<string, number | undefined>, opts?: CallOptions): Promise<T> {
    return (await this.#http.call<T>({ method: 'GET', path, query, idempotent: true }, opts)).body;
  }

  async #mutate<T>(method: 'POST' | 'DELETE', path: string, body?: unknown, query?: Record<string, boolean | undefined>, opts?: CallOptions): Promise<T> {
    return (await this.#http.call<T>({ method, path, body, query, idempotent: false }, opts)).body;
  }

  /** GET /health: `{status: "ok"}` while the manager serves. */
  health(opts?: CallOptions): Promise<{ status: string }> {
    return this.#get('/health', undefined, opts);
  }

  /** GET /health/all: healthy | degraded | down, and each instance. */
  healthAll(opts?: CallOptions): Promise<{ status: string; instances: Array<{ name: string; status: string; desired_state: string; healthy: boolean }> }> {
    return this.#get('/health/all', undefined, opts);
  }

  /** GET /instances. */
  instances(opts?: CallOptions): Promise<InstanceInfo[]> {
    return this.#get('/instances', undefined, opts);
  }

  /** GET /instances/{name}. */
  instance(name: string, opts?: CallOptions): Promise<InstanceInfo> {
    return this.#get(`/instances/${segment('name', name)}`, undefined, opts);
  }

  /** POST /instances (`start: false`: created stopped). Never retried. */
  createInstance(spec: InstanceSpecInput, opts?: { start?: boolean } & CallOptions): Promise<InstanceInfo> {
    if (spec === null || typeof spec !== 'object') throw new TypeError('spec: must be an object');
    return this.#mutate('POST', '/instances', spec, { start: opts?.start }, opts);
  }

  /** POST /instances/{name}/start. Never retried. */
  startInstance(name: string, opts?: CallOptions): Promise<InstanceInfo> {
    return this.#mutate('POST', `/instances/${segment('name', name)}/start`, undefined, undefined, opts);
  }

  /** POST /instances/{name}/stop. Never retried. */
  stopInstance(name: string, opts?: CallOptions): Promise<InstanceInfo> {
    return this.#mutate('POST', `/instances/${segment('name', name)}/stop`, undefined, undefined, opts);
  }

  /** POST /instances/{name}/restart. Never retried. */
  restartInstance(name: string, opts?: CallOptions): Promise<InstanceInfo> {
    return this.#mutate('POST', `/instances/${segment('name', name)}/restart`, undefined, undefined, opts);
  }

  /** DELETE /instances/{name}. Never retried. */
  deleteInstance(name: string, opts?: CallOptions): Promise<InstanceInfo> {
    return this.#mutate('DELETE', `/instances/${segment('name', name)}`, undefined, undefined, opts);
  }

  /** GET /instances/{name}/logs?start&end: the child's log lines, secrets redacted. */
  logs(name: string, range?: { start?: number; end?: number }, opts?: CallOptions): Promise<LogRange> {
    return this.#get(`/instances/${segment('name', name)}/logs`, { start: range?.start, end: range?.end }, opts);
  }

  /** GET /instances/{name}/health. */
  instanceHealth(name: string, opts?: CallOptions): Promise<{ name: string; status: string; healthy: boolean; health_check_failures: number; last_health_check: string | null; last_error: string | null }> {
    return this.#get(`/instances/${segment('name', name)}/health`, undefined, opts);
  }

  /** GET /models: the catalog of on-demand models. */
  models(opts?: CallOptions): Promise<CatalogModelInfo[]> {
    return this.#get('/models', undefined, opts);
  }

  /** GET /models/{name} (catalog name, model_id or alias). */
  model(name: string, opts?: CallOptions): Promise<CatalogModelInfo> {
    return this.#get(`/models/${segment('name', name)}`, undefined, opts);
  }

  /** POST /models/{name}/load: starts a replica (answers once it serves). Never retried. */
  loadModel(name: string, opts?: CallOptions): Promise<CatalogModelInfo> {
    return this.#mutate('POST', `/models/${segment('name', name)}/load`, undefined, undefined, opts);
  }

  /** POST /models/{name}/unload. Never retried. */
  unloadModel(name: string, opts?: CallOptions): Promise<CatalogModelInfo> {
    return this.#mutate('POST', `/models/${segment('name', name)}/unload`, undefined, undefined, opts);
  }

  /** GET /memory: memory per device against its budget. */
  memory(opts?: CallOptions): Promise<MemoryReport> {
    return this.#get('/memory', undefined, opts);
  }

  /** POST /config/reload: instances and catalog models from the config file again. Never retried. */
  reload(opts?: CallOptions): Promise<ReloadReport> {
    return this.#mutate('POST', '/config/reload', undefined, undefined, opts);
  }

  /** GET /gpus. */
  gpus(opts?: CallOptions): Promise<GpuList> {
    return this.#get('/gpus', undefined, opts);
  }

  /** GET /metrics: the Prometheus text. */
  async metrics(opts?: CallOptions): Promise<string> {
    const a = await this.#http.call<string>({ method: 'GET', path: '/metrics', idempotent: true, text: true }, opts);
    return a.body;
  }

  /** Closes the client's connections. */
  close(): Promise<void> {
    return this.#http.close();
  }
}
