/**
 * Wiring of the data plane into `teiplex serve`: on the admin API's app (the default), or on a
 * listener of its own when `data_port` is set (with the same TLS and API-key checks as the admin
 * listener). API keys: the request's grant (`requestGrant`, src/auth) goes to the data plane's one
 * authorization decision on what each request's model resolves to (model-directory.ts).
 */
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { Auth } from '../../auth/auth.js';
import type { Catalog } from '../../catalog/catalog.js';
import { httpsOptions, installHttpAuth, requestGrant } from '../../auth/http-auth.js';
import type { Config } from '../../config/config.js';
import type { MuxRouting } from '../../routing/routing.js';
import type { InstanceDirectory } from '../../routing/target.js';
import { connectionLimits, type ConnectionLimitKeys } from '../connection-limits.js';
import { buildDataApp } from './data-app.js';
import type { Batches } from '../../batch/batches.js';
import { TeiplexError } from '../../common/errors.js';
import { dataPlane, DataPlaneLifecycle, type DataPlaneOptions } from './plugin.js';

export interface MountOptions {
  /** The admin API's app, not yet listening. */
  app: FastifyInstance;
  config: Pick<Config, 'data_port' | 'listen_host' | 'grpc_request_timeout_secs' | 'max_request_inputs' | 'http_body_limit_mb' | 'http_response_limit_mb' | ConnectionLimitKeys>;
  instances: InstanceDirectory;
  routing: MuxRouting;
  auth?: Auth;
  catalog?: Catalog;
  /** The manager's metrics registry (request counts and durations). */
  registry?: Registry;
  /** Batch jobs: served and run on the data plane; stopped when it drains. */
  batches?: Batches;
}

export interface MountedDataPlane {
  /** Start the data plane's own listener, if any; the port it is served on (`apiPort` when shared). */
  listen(apiPort: number): Promise<number>;
  /** Refuse new requests (503) and wait for those in flight, up to `graceMs`. */
  drain(graceMs: number): Promise<void>;
  /** Close its own listener, if any, cutting its connections (call after `drain`). */
  close(): Promise<void>;
}

export async function mountDataPlane(m: MountOptions): Promise<MountedDataPlane> {
  const lifecycle = new DataPlaneLifecycle();
  const options: DataPlaneOptions = {
    instances: m.instances,
    routing: m.routing,
    timeoutMs: m.config.grpc_request_timeout_secs * 1000,
    maxRequestInputs: m.config.max_request_inputs,
    bodyLimitBytes: Math.floor(m.config.http_body_limit_mb * 1024 * 1024),
    grant: requestGrant,
    quotas: m.auth?.quotas,
    responseLimitBytes: Math.floor(m.config.http_response_limit_mb * 1024 * 1024),
    lifecycle,
    catalog: m.catalog,
    registry: m.registry,
    batches: m.batches,
    ownerGrant: (owner) => {
      if (m.auth === undefined || !m.auth.keys.enabled) return undefined;
      const g = m.auth.keys.grantNamed(owner);
      if (g === undefined) throw new TeiplexError('PERMISSION_DENIED', `the API key '${owner}' that created this batch is no longer configured`);
      return g;
    },
  };
  let own: FastifyInstance | undefined;
  if (m.config.data_port === undefined) {
    await m.app.register(dataPlane, options);
  } else {
    own = await buildDataApp(options, (app) => m.auth !== undefined && installHttpAuth(app, m.auth), m.auth && httpsOptions(m.auth), connectionLimits(m.config));
  }
  return {
    async listen(apiPort) {
      if (own === undefined) return apiPort;
      await own.listen({ port: m.config.data_port, host: m.config.listen_host });
      const a = own.server.address();
      return typeof a === 'object' && a !== null ? a.port : (m.config.data_port ?? apiPort);
    },
    drain: (graceMs) => {
      m.batches?.stop();
      return lifecycle.drain(graceMs);
    },
    async close() {
      if (own === undefined) return;
      const closing = own.close();
      own.server.closeAllConnections();
      await closing;
    },
  };
}
