/**
 * The multiplexer's gRPC server: TeiMultiplexer (service.ts; its forwarded unary RPCs served by
 * unary-front.ts on the same HTTP/2 servers), grpc.health.v1 (health.ts) and server reflection
 * (v1 and v1alpha, listing only what this port serves), on
 * `listen_host:grpc_port` (0: an ephemeral port), with the message size limit both ways, a cap
 * on the calls one client connection has open at once (`grpc_max_concurrent_streams`, HTTP/2's
 * SETTINGS_MAX_CONCURRENT_STREAMS: a well-behaved client queues the rest, streams past it are
 * refused with REFUSED_STREAM) and keepalive pings. `instanceChanged` is fed by the supervisor's transition hook: it updates
 * health watchers and closes the channel of an instance whose child is gone.
 */
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { Registry } from 'prom-client';
import { NO_AUTH, type Auth } from '../auth/auth.js';
import { grpcAuthInterceptor, grpcCredentials } from '../auth/grpc-auth.js';
import type { Catalog } from '../catalog/catalog.js';
import { DEFAULTS, type Config } from '../config/config.js';
import type { InstanceState } from '../supervisor/instance-state.js';
import { arrowLimits, type ArrowConfig } from './arrow-service.js';
import type { ChannelPool } from '../routing/channels.js';
import { CallGate, closeAndCut } from './drain.js';
import { MuxHealth } from './health.js';
import { MuxMetrics } from './metrics.js';
import { muxReflectionPackageDefinition } from '../tei/proto.js';
import { MUX_SERVICE, REFLECTED_SERVICES } from './protos.js';
import { createRouting, type MuxRouting } from '../routing/routing.js';
import { muxService } from './service.js';
import { attachUnaryFront } from './unary-front.js';
import type { InstanceDirectory } from '../routing/target.js';

export type MuxConfig = Pick<
  Config,
  'listen_host' | 'grpc_port' | 'grpc_request_timeout_secs' | 'grpc_max_message_size_mb' | 'grpc_keepalive_interval_secs' | 'grpc_keepalive_timeout_secs'
> &
  Partial<Pick<Config, 'grpc_max_concurrent_streams'> & ArrowConfig>;

export interface MuxServerOptions {
  instances: InstanceDirectory;
  config: MuxConfig;
  /** Where the metrics go (the manager's registry); default: a registry of its own. */
  registry?: Registry;
  /** mTLS and API keys (docs/security.md); default: plaintext, no keys. */
  auth?: Auth;
  /** Channels, calls in flight and resolution shared with the HTTP data plane (default: its own). */
  routing?: MuxRouting;
  /** On-demand models (src/catalog): started by a model_id call that finds none loaded. */
  catalog?: Catalog;
}

export interface MuxServer {
  /** The bound port. */
  readonly port: number;
  readonly channels: ChannelPool;
  /** An instance changed status (supervisor onTransition hook). */
  instanceChanged(name: string, to: InstanceState): void;
  /**
   * At once: health NOT_SERVING and new calls refused (UNAVAILABLE, `teiplex-error-code`
   * UNHEALTHY; health and reflection still answer); calls in flight (open streams included)
   * finish for up to `graceMs`; then the server closes, cutting what is left. The channels to the
   * children are closed here only when the routing is the server's own: a shared one (`routing`)
   * is closed by its owner, once the HTTP data plane is done with it too.
   */
  shutdown(graceMs: number): Promise<void>;
}

/** States in which the instance has no child: its channel leads nowhere. */
const CHILDLESS: ReadonlySet<InstanceState> = new Set(['stopped', 'backoff', 'failed']);

export function hostPort(host: string, port: number): string {
  return `${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`;
}

export function maxMessageBytes(config: Pick<Config, 'grpc_max_message_size_mb'>): number {
  return Math.floor(config.grpc_max_message_size_mb * 1024 * 1024);
}

export async function startMuxServer(o: MuxServerOptions): Promise<MuxServer> {
  const c = o.config;
  const maxBytes = maxMessageBytes(c);
  const keepaliveMs = Math.round(c.grpc_keepalive_interval_secs * 1000);
  const keepaliveTimeoutMs = Math.round(c.grpc_keepalive_timeout_secs * 1000);
  const ownRouting = o.routing === undefined;
  const routing = o.routing ?? createRouting(o.instances, { maxMessageBytes: maxBytes, keepaliveMs, keepaliveTimeoutMs });
  const { inflight, channels } = routing;
  const metrics = new MuxMetrics(o.registry ?? new Registry(), () => o.instances.list().map((i) => [i.name, inflight.get(i.name)]), routing.failover);
  const health = new MuxHealth(o.instances);

  const onReject = (path: string, code: grpc.status): void => {
    if (path.startsWith(`/${MUX_SERVICE}/`)) metrics.observe('', '', path.slice(path.lastIndexOf('/') + 1), code, 0);
  };
  const server = new grpc.Server({
    'grpc.max_receive_message_length': maxBytes,
    'grpc.max_send_message_length': maxBytes,
    'grpc.keepalive_time_ms': keepaliveMs,
    'grpc.keepalive_timeout_ms': keepaliveTimeoutMs,
    'grpc.max_concurrent_streams': c.grpc_max_concurrent_streams ?? DEFAULTS.grpc_max_concurrent_streams,
    // Per-call bookkeeping no one reads (grpcurl and friends do not need it).
    'grpc.enable_channelz': 0,
    interceptors: o.auth?.perCall ? [grpcAuthInterceptor(o.auth, onReject)] : [],
  });
  const { definition, implementation, forwarder } = muxService({
    instances: o.instances,
    resolver: routing.resolver,
    channels,
    inflight,
    metrics,
    timeoutMs: c.grpc_request_timeout_secs * 1000,
    arrow: arrowLimits(c),
    catalog: o.catalog,
    failover: routing.failover,
    outliers: routing.outliers,
    cache: routing.cache,
  });
  server.addService(definition, implementation);
  health.addToServer(server);
  new ReflectionService(muxReflectionPackageDefinition(), { services: REFLECTED_SERVICES }).addToServer(server);

  const address = hostPort(c.listen_host, c.grpc_port);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, grpcCredentials(o.auth ?? NO_AUTH), (err, bound) =>
      err ? reject(new Error(`cannot listen for gRPC on ${address}: ${err.message}`)) : resolve(bound),
    );
  });

  const gate = new CallGate();
  attachUnaryFront(server, { forwarder, maxMessageBytes: maxBytes, auth: o.auth ?? NO_AUTH, onReject, gate });

  let stopping: Promise<void> | undefined;
  return {
    port,
    channels,
    // `stopping` keeps the channel: the calls in flight on it are drained before the child is signalled.
    instanceChanged(name: string, to: InstanceState): void {
      if (CHILDLESS.has(to)) channels.drop(name);
      health.changed(name);
    },
    shutdown(graceMs: number): Promise<void> {
      stopping ??= (async () => {
        health.stopServing();
        await gate.close(graceMs);
        closeAndCut(server);
        if (ownRouting) {
          channels.closeAll();
          routing.outliers.close();
        }
      })();
      return stopping;
    },
  };
}
