/**
 * The TeiMultiplexer service: its definition and handlers. Forwarded RPCs (methods.ts) get raw
 * codecs: the request deserializer is wrapper.ts's parser (target decoded, inner request sliced
 * out) and the response serializer is the identity, so a child's answer goes back byte for byte.
 * The multiplexer's own RPCs keep protobufjs codecs from the .proto: ListInstances, and the Arrow
 * batch calls (arrow-service.ts).
 */
import * as grpc from '@grpc/grpc-js';
import type { ApiKeyGrant } from '../auth/api-keys.js';
import { mayUse } from '../auth/access.js';
import { grantOf } from '../auth/grpc-auth.js';
import type { Instance } from '../supervisor/instance.js';
import { arrowLimits, arrowMethods, type ArrowLimits } from './arrow-service.js';
import type { ChannelPool } from '../routing/channels.js';
import { forwardBidi, forwardClientStream, passthrough, type Forwarder, type Leg } from './forward.js';
import type { Inflight } from '../routing/inflight.js';
import { FORWARDED_METHODS, type ForwardedMethod } from './methods.js';
import type { MuxMetrics } from './metrics.js';
import { muxServiceDefinition, MUX_SERVICE, type PbListInstancesResponse } from './protos.js';
import type { Catalog, ColdStartWaiter } from '../catalog/catalog.js';
import { unavailable, type InstanceDirectory, type TargetReach, type TargetResolver } from '../routing/target.js';
import type { Target } from '../routing/target.js';
import type { Failover } from '../routing/failover.js';
import { parseWrapper } from './wrapper.js';
import { embedTypedHandler } from './typed-embed.js';
import { EmbeddingCache } from '../routing/embedding-cache.js';
import { grpcOutcome, type OutlierDetector } from '../routing/outlier.js';

export interface MuxServiceDeps {
  instances: InstanceDirectory;
  resolver: TargetResolver;
  channels: ChannelPool;
  inflight: Inflight;
  metrics: MuxMetrics;
  /** grpc_request_timeout_secs in milliseconds. */
  timeoutMs: number;
  /** Arrow RPC limits; default: the config defaults. */
  arrow?: ArrowLimits;
  /** On-demand models: a model_id target naming one that nothing (the key may use) serves starts it first. */
  catalog?: Catalog;
  /** Retries on another replica (src/routing/failover.ts); none: calls are never retried. */
  failover?: Failover;
  /** Where each call's outcome goes (outlier detection). */
  outliers?: OutlierDetector;
  /** The embedding cache (EmbedTyped, the Arrow RPCs); default: none (dedup only). */
  cache?: EmbeddingCache;
}

export function forwarder(d: MuxServiceDeps): Forwarder {
  const f: Forwarder = {
    timeoutMs: d.timeoutMs,
    open(target: Target, noWait: boolean, grant: ApiKeyGrant | undefined, waiter?: () => ColdStartWaiter): Leg | Promise<Leg> {
      // Booting: the instances of the state file are not all known yet; wait for them.
      const restoring = d.instances.whenRestored?.(d.timeoutMs);
      if (restoring !== undefined) return restoring.then(() => f.open(target, noWait, grant, waiter));
      // The one authorization decision (reach), before any work for the caller (a cold start).
      const claim = (r: TargetReach, instance: Instance | undefined): Leg => {
        if (instance === undefined) throw unavailable(r);
        const channel = d.channels.get(instance);
        const client = d.channels.client(instance);
        d.inflight.begin(instance.name);
        return { instance, channel, client };
      };
      const r = d.resolver.reach(target, grant, d.catalog);
      const chosen = d.resolver.choose(r);
      const c = d.catalog;
      if (chosen !== undefined || r.catalog === undefined || c === undefined) return claim(r, chosen);
      return c.ensureServing(r.catalog, !noWait, waiter?.()).then(() => {
        const again = d.resolver.reach(target, grant, c);
        return claim(again, d.resolver.choose(again));
      });
    },
    close(method: string, leg: Leg | undefined, code: grpc.status, startedMs: number): void {
      const ms = performance.now() - startedMs;
      if (leg !== undefined) {
        f.abandon(leg);
        // A DEADLINE_EXCEEDED that took grpc_request_timeout_secs was the manager's timeout, not the client's deadline.
        d.outliers?.record(leg.instance, grpcOutcome(code, ms >= d.timeoutMs), ms);
      }
      d.metrics.observe(leg?.instance.name ?? '', leg?.instance.spec.model_id ?? '', method, code, ms / 1000);
    },
    retry(target: Target, grant: ApiKeyGrant | undefined, mode, tried: readonly Instance[]): Leg | undefined {
      const fo = d.failover;
      const failed = tried[tried.length - 1];
      const kind = target.kind === 'model_id' ? 'model' : 'instance';
      if (fo === undefined || failed === undefined || !fo.allows(kind, mode)) return undefined;
      let r: TargetReach;
      try {
        // A model: its replicas the key may use; an instance (same-model): those with its model_id.
        r = kind === 'model' ? d.resolver.reach(target, grant, d.catalog) : d.resolver.reach({ kind: 'model_id', value: failed.spec.model_id }, grant);
      } catch {
        return undefined;
      }
      const retry = fo.reroute(r.key, r.instances, tried);
      if (retry === undefined) return undefined;
      const instance = retry.instance;
      d.inflight.begin(instance.name);
      return { instance, channel: d.channels.get(instance), client: d.channels.client(instance), retriedFrom: tried[0].name, retry };
    },
    abandon(leg: Leg, failed = false): void {
      d.inflight.end(leg.instance.name);
      leg.retry?.done();
      // The attempt failed over: its child went away, a failure of that replica.
      if (failed) d.outliers?.record(leg.instance, 'failure', 0);
    },
  };
  return f;
}

/** The grpc-js handler of a forwarded stream; the unary RPCs are served by unary-front.ts, before grpc-js. */
function forwardedHandler(m: ForwardedMethod, f: Forwarder): grpc.UntypedHandleCall | undefined {
  switch (m.kind) {
    case 'unary':
      return undefined;
    case 'bidi':
      return forwardBidi(m, f);
    case 'clientStream':
      return forwardClientStream(m, f);
  }
}

function shapeOf(def: grpc.MethodDefinition<unknown, unknown>): ForwardedMethod['kind'] | 'other' {
  if (def.requestStream && def.responseStream) return 'bidi';
  if (def.requestStream) return 'clientStream';
  if (!def.responseStream) return 'unary';
  return 'other';
}

/**
 * Every instance, or those `visible` allows (a restricted API key), in name order; `instance_index`
 * is the position in that list (what an `instance_index` target of the same key means).
 */
export function summaries(instances: Instance[], inflight: Inflight, visible: (i: Instance) => boolean = () => true): PbListInstancesResponse {
  return {
    instances: instances.filter(visible).map((i, index) => ({
      name: i.name,
      model_id: i.spec.model_id,
      instance_index: index,
      status: i.status,
      serving: i.status === 'running',
      inflight_requests: inflight.get(i.name),
      runtime: i.spec.runtime ?? 'router',
    })),
  };
}

export function muxService(d: MuxServiceDeps): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation; forwarder: Forwarder } {
  const base = muxServiceDefinition();
  const f = forwarder(d);
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const [name, def] of Object.entries(base)) {
    const m = FORWARDED_METHODS.get(name);
    if (m === undefined) {
      definition[name] = def;
      continue;
    }
    if (shapeOf(def) !== m.kind) throw new Error(`${MUX_SERVICE}/${name}: the .proto declares a different call shape than ${m.kind}`);
    definition[name] = { ...def, requestDeserialize: parseWrapper, responseSerialize: passthrough as (value: unknown) => Buffer };
    const handler = forwardedHandler(m, f);
    if (handler !== undefined) implementation[name] = handler;
  }
  for (const name of FORWARDED_METHODS.keys()) if (definition[name] === undefined) throw new Error(`${MUX_SERVICE} lacks ${name}`);

  const own = (method: string, fn: (request: object) => unknown): grpc.handleUnaryCall<unknown, unknown> => (call, callback) => {
    const started = performance.now();
    try {
      const res = fn(call.request as object);
      d.metrics.observe('', '', method, grpc.status.OK, (performance.now() - started) / 1000);
      callback(null, res);
    } catch (err) {
      const e = err as grpc.ServerErrorResponse;
      d.metrics.observe('', '', method, e.code ?? grpc.status.INTERNAL, (performance.now() - started) / 1000);
      callback(e);
    }
  };
  implementation.ListInstances = own('ListInstances', (request) => summaries(d.instances.list(), d.inflight, (i) => mayUse(grantOf(request), i)));
  const cache = d.cache ?? new EmbeddingCache(0);
  implementation.EmbedTyped = embedTypedHandler(f, cache) as grpc.UntypedHandleCall;
  for (const [name, m] of Object.entries(arrowMethods(f, { metrics: d.metrics, limits: d.arrow ?? arrowLimits({}), cache }, base))) {
    definition[name] = m.definition;
    implementation[name] = m.handler as grpc.UntypedHandleCall;
  }
  for (const name of Object.keys(definition)) {
    if (implementation[name] === undefined && FORWARDED_METHODS.get(name)?.kind !== 'unary') throw new Error(`${MUX_SERVICE}/${name} has no handler`);
  }
  return { definition: definition as grpc.ServiceDefinition, implementation, forwarder: f };
}
