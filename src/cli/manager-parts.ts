/**
 * The manager's components wired together, as `teiplex serve` runs them and as tests build them
 * in-process: the supervisor, the catalog (which follows the supervisor's events), one routing
 * (channel pool, in-flight counts, resolution, failover, outlier detection) shared by the
 * multiplexer and the HTTP data plane (the supervisor drains a stopping child's calls on the pool's
 * channels and shows each instance's ejection), the metrics, the config reloader, the swapper
 * (src/swap/), and the admin app with the swap routes, the status page (/ui, /events) and the
 * data plane mounted. Nothing
 * listens and nothing is booted here: the caller does that.
 */
import { laneMetrics } from '../metrics/lane-metrics.js';
import type { Auth } from '../auth/auth.js';
import { Catalog } from '../catalog/catalog.js';
import { catalogSettings, ConfigReloader } from '../catalog/reload.js';
import type { Config } from '../config/config.js';
import { connectionLimits } from '../http/connection-limits.js';
import { mountDataPlane, type MountedDataPlane } from '../http/data-plane/mount.js';
import { buildManagerApp } from '../http/manager-app.js';
import { EventStreams, eventStreamLimits } from '../http/event-stream.js';
import { statusPage } from '../http/status-page.js';
import { swapRoutes } from '../http/swap-routes.js';
import { ManagerMetrics } from '../metrics/manager-metrics.js';
import { channelSettings, createRouting, type MuxRouting } from '../routing/routing.js';
import { Supervisor } from '../supervisor/supervisor.js';
import { ModelSwapper } from '../swap/model-swap.js';
import { quotaReload } from './quota-reload.js';
import { openBatches } from '../batch/batch-settings.js';
import { Swapper } from '../swap/swap.js';

export interface ManagerParts {
  supervisor: Supervisor;
  catalog: Catalog;
  metrics: ManagerMetrics;
  routing: MuxRouting;
  reloader: ConfigReloader;
  app: Awaited<ReturnType<typeof buildManagerApp>>;
  swapper: Swapper;
  dataPlane: MountedDataPlane;
  /** The status page's event streams (GET /events): ended first on shutdown. */
  events: EventStreams;
}

export async function wireManager(o: { config: Config; configPath: string | undefined; auth: Auth; log?: (msg: string, fields?: Record<string, unknown>) => void }): Promise<ManagerParts> {
  const { config, auth } = o;
  let supervisor: Supervisor | undefined;
  let catalog: Catalog | undefined;
  const metrics = new ManagerMetrics(
    () => supervisor,
    () => catalog,
  );
  supervisor = new Supervisor({ config, hooks: metrics.hooks(), ...(o.log ? { log: o.log } : {}) });
  supervisor.desired.store.onWrite = (ok, seconds) => metrics.stateWrite(ok, seconds);
  const routing = createRouting(supervisor, channelSettings(config), {
    failover: config.failover,
    outlier: config.outlier_detection,
    probeTimeoutMs: config.health_check_timeout_secs * 1000,
    retireMs: config.graceful_shutdown_timeout_secs * 1000,
    cacheBytes: Math.floor(config.embedding_cache_mb * 1024 * 1024),
    lanes: { agingMs: config.priority_aging_ms, bulkChunkRows: config.bulk_chunk_rows, observer: laneMetrics(metrics.registry) },
  });
  supervisor.drainer = routing.channels;
  supervisor.outliers = routing.outliers;
  routing.outliers.listen({ ejected: (instance, reason) => metrics.outlierEjected(instance, reason) });
  catalog = new Catalog({ supervisor, inflight: routing.inflight, settings: catalogSettings(config), ...(o.log ? { log: o.log } : {}) });
  catalog.listen(metrics.catalogEvents());
  const app = await buildManagerApp(supervisor, metrics, auth, { catalog, reload: () => reloader.reload(), security: config.security }, connectionLimits(config));
  const swapper = new Swapper({
    supervisor,
    channels: routing.channels,
    channelSettings: channelSettings(config),
    requestTimeoutMs: config.grpc_request_timeout_secs * 1000,
    startupTimeoutMs: config.startup_timeout_secs * 1000,
    log: o.log ?? (() => undefined),
  });
  const reloader = new ConfigReloader(o.configPath, config, supervisor, catalog, process.env, swapper.forReload, quotaReload(config.auth, auth.quotas));
  const modelSwapper = new ModelSwapper({ catalog, swapper, log: o.log ?? (() => undefined) });
  await app.register(swapRoutes, { swapInstance: (name, req) => swapper.swapInstance(name, req), swapModel: (name, req) => modelSwapper.swapModel(name, req) });
  const events = new EventStreams(eventStreamLimits(config));
  await app.register(statusPage, { supervisor, catalog, streams: events });
  const batches = await openBatches(config, metrics.registry, o.log);
  const dataPlane = await mountDataPlane({ app, config, instances: supervisor, routing, auth, catalog, registry: metrics.registry, batches });
  return { supervisor, catalog, metrics, routing, reloader, app, swapper, dataPlane, events };
}
