/**
 * The routing pieces the gRPC multiplexer and the HTTP data plane share, so both front ends see
 * one picture of the children: one channel per instance (channels.ts), the calls in flight per
 * instance that model_id balancing reads (inflight.ts), target resolution (target.ts), failover's
 * retry budget (failover.ts: one budget over both front ends' calls), and the outlier detection
 * that takes failing or slow replicas out of balancing (outlier.ts).
 */
import { EmbeddingCache } from './embedding-cache.js';
import type { Config, OutlierDetectionConfig } from '../config/config.js';
import { DEFAULTS } from '../config/config.js';
import type { ChildClient } from '../child/child-client.js';
import { decodeAnswer, HEALTH, TEI } from '../child/codec.js';
import { ChannelPool, type ChannelSettings, type PoolLanes } from './channels.js';
import { Failover } from './failover.js';
import { Inflight } from './inflight.js';
import { OutlierDetector } from './outlier.js';
import { TargetResolver, type InstanceDirectory } from './target.js';

export interface MuxRouting {
  readonly inflight: Inflight;
  readonly channels: ChannelPool;
  readonly resolver: TargetResolver;
  /** Retries on another replica, and their budget (failover.ts). */
  readonly failover: Failover;
  readonly outliers: OutlierDetector;
  /** The embedding cache of the front ends (embedding-cache.ts). */
  readonly cache: EmbeddingCache;
}

/** Child channel settings from the config: message size limit and keepalive. */
export function channelSettings(c: Pick<Config, 'grpc_max_message_size_mb' | 'grpc_keepalive_interval_secs' | 'grpc_keepalive_timeout_secs'>): ChannelSettings {
  return {
    maxMessageBytes: Math.floor(c.grpc_max_message_size_mb * 1024 * 1024),
    keepaliveMs: Math.round(c.grpc_keepalive_interval_secs * 1000),
    keepaliveTimeoutMs: Math.round(c.grpc_keepalive_timeout_secs * 1000),
  };
}

export interface RoutingOptions {
  /** Every child's priority lanes (priority_aging_ms, bulk_chunk_rows, the lane metrics). */
  lanes?: PoolLanes;
  /** [failover] (default: the config's defaults). */
  failover?: Config['failover'];
  /** [outlier_detection] (default: the config's defaults). */
  outlier?: OutlierDetectionConfig;
  /** An ejected replica's probe must answer within this (health_check_timeout_secs). */
  probeTimeoutMs?: number;
  /** A replaced Instance object's channel keeps its calls this long (graceful_shutdown_timeout_secs). */
  retireMs?: number;
  /** The embedding cache's bytes (embedding_cache_mb; default: the config's default). */
  cacheBytes?: number;
}

/** An ejected replica's probe: grpc.health.v1 SERVING, or (a child without grpc.health) tei.v1 Info answering. */
export async function probeChild(client: ChildClient, timeoutMs: number): Promise<boolean> {
  const s = client.scope({ deadlineMs: Date.now() + timeoutMs });
  try {
    try {
      const res = decodeAnswer(HEALTH.Check, await s.unary(client.channel, HEALTH.Check.path, HEALTH.Check.encode({ service: '' }), client.who), client.who);
      return res.status === 'SERVING';
    } catch {
      await s.unary(client.channel, TEI.Info.path, TEI.Info.encode({}), client.who);
      return true;
    }
  } finally {
    s.finish();
  }
}

export function createRouting(instances: InstanceDirectory, settings: ChannelSettings, o: RoutingOptions = {}): MuxRouting {
  const inflight = new Inflight();
  const channels = new ChannelPool(settings, undefined, o.retireMs, o.lanes);
  const probeMs = o.probeTimeoutMs ?? DEFAULTS.health_check_timeout_secs * 1000;
  const outliers = new OutlierDetector({ settings: o.outlier ?? DEFAULTS.outlier_detection, instances, probe: (i) => probeChild(channels.client(i), probeMs) });
  const resolver = new TargetResolver(instances, inflight, (i) => outliers.isEjected(i));
  const cache = new EmbeddingCache(o.cacheBytes ?? DEFAULTS.embedding_cache_mb * 1024 * 1024);
  return { inflight, channels, resolver, failover: new Failover(o.failover ?? DEFAULTS.failover, resolver, inflight), outliers, cache };
}
