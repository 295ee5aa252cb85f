/**
 * The routing pieces the gRPC multiplexer and the HTTP data plane share, so both front ends see
 * one picture of the children: one channel per instance (channels.ts), the calls in flight per
 * instance that model_id balancing reads (inflight.ts), target resolution (target.ts), and
 * failover's retry budget (failover.ts: one budget over both front ends' calls).
 */
import type { Config } from '../config/config.js';
import { ChannelPool, type ChannelSettings } from './channels.js';
import { DEFAULT_FAILOVER, Failover } from './failover.js';
import { Inflight } from './inflight.js';
import { TargetResolver, type InstanceDirectory } from './target.js';

export interface MuxRouting {
  readonly inflight: Inflight;
  readonly channels: ChannelPool;
  readonly resolver: TargetResolver;
  /** Retries on another replica, and their budget (failover.ts). */
  readonly failover: Failover;
}

/** Child channel settings from the config: message size limit and keepalive. */
export function channelSettings(c: Pick<Config, 'grpc_max_message_size_mb' | 'grpc_keepalive_interval_secs' | 'grpc_keepalive_timeout_secs'>): ChannelSettings {
  return {
    maxMessageBytes: Math.floor(c.grpc_max_message_size_mb * 1024 * 1024),
    keepaliveMs: Math.round(c.grpc_keepalive_interval_secs * 1000),
    keepaliveTimeoutMs: Math.round(c.grpc_keepalive_timeout_secs * 1000),
  };
}

export function createRouting(instances: InstanceDirectory, settings: ChannelSettings, failover: Config['failover'] = DEFAULT_FAILOVER): MuxRouting {
  const inflight = new Inflight();
  const resolver = new TargetResolver(instances, inflight);
  return { inflight, channels: new ChannelPool(settings), resolver, failover: new Failover(failover, resolver, inflight) };
}
