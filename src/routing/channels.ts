/**
 * One channel and one client per instance, to its child on 127.0.0.1:<port> (child-channel.ts:
 * one HTTP/2 connection, keepalive pings while calls are in flight, the message size limits: the
 * manager's and the child's own where it is known, child-message-limit.ts; child-client.ts: the
 * Engine over that channel, with what it learns about the child). Both front ends take them from
 * here: the multiplexer forwards bytes on the channel and serves its Arrow RPCs through the
 * client, the data plane calls the client, so Info and Batch support are learned once per child.
 *
 * They belong to one child: rebuilt when the instance's `spawnGeneration` or port changes (a
 * restart, a move: the old child is gone, its channel closed at once), and closed when the
 * instance's child is gone (stopped, backoff, failed, deleted), which ends any call still on it
 * with UNAVAILABLE. When the entry of a name is rebuilt for another Instance object (the name now
 * belongs to a new instance while the old one's child may still answer: a swap), the old channel
 * is closed only once its calls are done, or after `retireMs`. `whenIdle` is what a stop waits on
 * (draining): the calls in flight on THAT Instance object's channel. A channel never retries: a
 * call reaches its child once or fails with the transport's status; the front ends may then make
 * it again on another instance's channel (failover.ts).
 */
import type { Instance } from '../supervisor/instance.js';
import { ChildChannel, type ChildChannelSettings } from '../child/child-channel.js';
import { ChildClient } from '../child/child-client.js';
import { DEFAULT_LANES, type ChildLanes } from '../child/child-info.js';
import type { LaneObserver } from '../child/input-budget.js';
import { childMessageLimit } from '../child/child-message-limit.js';
import { DEFAULTS } from '../config/config.js';

export type ChannelSettings = ChildChannelSettings;

/** Every child's lanes (priority_aging_ms, bulk_chunk_rows), and who is told of their waits, per instance. */
export interface PoolLanes extends Omit<ChildLanes, 'observer'> {
  observer?: (instance: string) => LaneObserver;
}

interface Entry {
  /** The Instance object (a deleted and re-created instance of the same name is another one). */
  instance: Instance;
  channel: ChildChannel;
  client: ChildClient;
  generation: number;
}

export class ChannelPool {
  private readonly entries = new Map<string, Entry>();
  /** Entries replaced by another Instance object of the same name, until their calls are done. */
  private readonly retiring = new Set<Entry>();

  /**
   * @param timeoutMs a client operation's deadline when its caller names none
   *   (grpc_request_timeout_secs)
   * @param retireMs how long a replaced Instance object's channel may keep its calls
   *   (graceful_shutdown_timeout_secs)
   */
  constructor(
    private readonly settings: ChannelSettings,
    private readonly timeoutMs = DEFAULTS.grpc_request_timeout_secs * 1000,
    private readonly retireMs = DEFAULTS.graceful_shutdown_timeout_secs * 1000,
    private readonly lanes: PoolLanes = { agingMs: DEFAULT_LANES.agingMs, bulkChunkRows: DEFAULT_LANES.bulkChunkRows },
  ) {}

  private entry(instance: Instance): Entry {
    const e = this.entries.get(instance.name);
    const generation = instance.spawnGeneration;
    const port = instance.placement.port;
    if (e !== undefined && e.instance === instance && e.generation === generation && e.channel.port === port) return e;
    if (e !== undefined) {
      if (e.instance === instance) e.channel.close();
      else this.retire(e);
    }
    const childLimit = childMessageLimit(instance.spec);
    const channel = new ChildChannel(port, childLimit === undefined ? this.settings : { ...this.settings, childLimit });
    // A real TEI child never serves teiplex.v1.Batch: do not ask it.
    const { observer, ...lanes } = this.lanes;
    const client = new ChildClient(channel, {
      who: `instance '${instance.name}'`,
      timeoutMs: this.timeoutMs,
      batch: instance.spec.runtime === 'tei' ? 'no' : 'unknown',
      lanes: observer === undefined ? lanes : { ...lanes, observer: observer(instance.name) },
    });
    const created: Entry = { instance, channel, client, generation };
    this.entries.set(instance.name, created);
    return created;
  }

  /** Close a replaced Instance object's channel once its calls are done (bounded by retireMs). */
  private retire(e: Entry): void {
    this.retiring.add(e);
    void e.channel.whenIdle(this.retireMs).then(() => {
      this.retiring.delete(e);
      e.channel.close();
    });
  }

  /** The channel to this instance's current child (built on first use or after a respawn). */
  get(instance: Instance): ChildChannel {
    return this.entry(instance).channel;
  }

  /** The client to this instance's current child (one per channel). */
  client(instance: Instance): ChildClient {
    return this.entry(instance).client;
  }

  /** The channel of THIS Instance object, if it has one (current or retiring); none is built. */
  private channelOf(instance: Instance): ChildChannel | undefined {
    const e = this.entries.get(instance.name);
    if (e !== undefined && e.instance === instance) return e.channel;
    for (const r of this.retiring) if (r.instance === instance) return r.channel;
    return undefined;
  }

  /** Calls in flight on this Instance object's channel (0: it has none). */
  activeCalls(instance: Instance): number {
    return this.channelOf(instance)?.activeCalls ?? 0;
  }

  /** Resolves true once this Instance object's calls are done (at once without a channel), false after `timeoutMs`. */
  whenIdle(instance: Instance, timeoutMs: number): Promise<boolean> {
    return this.channelOf(instance)?.whenIdle(timeoutMs) ?? Promise.resolve(true);
  }

  /**
   * Close the channel of the name's instance (its child is gone). Not when the entry belongs to an
   * Instance object with a child: the name has passed to a new instance meanwhile (a deleted one
   * that finished stopping after its successor started).
   */
  drop(name: string): void {
    const e = this.entries.get(name);
    if (e === undefined || e.instance.pid !== undefined) return;
    this.entries.delete(name);
    e.channel.close();
  }

  closeAll(): void {
    for (const e of this.entries.values()) e.channel.close();
    this.entries.clear();
    for (const e of this.retiring) e.channel.close();
    this.retiring.clear();
  }

  /** Instances with an open channel (tests, diagnostics). */
  names(): string[] {
    return [...this.entries.keys()];
  }
}
