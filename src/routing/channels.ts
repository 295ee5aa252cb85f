/**
 * One channel per instance, to its child on 127.0.0.1:<port> (child-channel.ts: one HTTP/2
 * connection, keepalive pings while calls are in flight, the message size limits: the manager's
 * and the child's own where it is known, child-message-limit.ts). A channel
 * belongs to one child: it is rebuilt when the instance's `spawnGeneration` or port changes (a
 * restart, a move), and closed when the instance's child is gone (stopped, backoff, failed,
 * deleted), which ends any call still on it with UNAVAILABLE. There are no client-side retries:
 * a forwarded call reaches the child once or fails with the transport's status.
 */
import type { Instance } from '../supervisor/instance.js';
import { ChildChannel, type ChildChannelSettings } from '../child/child-channel.js';
import { childMessageLimit } from '../child/child-message-limit.js';

export type ChannelSettings = ChildChannelSettings;

interface Entry {
  channel: ChildChannel;
  generation: number;
}

export class ChannelPool {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly settings: ChannelSettings) {}

  /** The channel to this instance's current child (built on first use or after a respawn). */
  get(instance: Instance): ChildChannel {
    const e = this.entries.get(instance.name);
    const generation = instance.spawnGeneration;
    const port = instance.placement.port;
    if (e !== undefined && e.generation === generation && e.channel.port === port) return e.channel;
    e?.channel.close();
    const childLimit = childMessageLimit(instance.spec);
    const channel = new ChildChannel(port, childLimit === undefined ? this.settings : { ...this.settings, childLimit });
    this.entries.set(instance.name, { channel, generation });
    return channel;
  }

  /** Close the instance's channel (its child is gone). */
  drop(name: string): void {
    const e = this.entries.get(name);
    if (e === undefined) return;
    this.entries.delete(name);
    e.channel.close();
  }

  closeAll(): void {
    for (const name of [...this.entries.keys()]) this.drop(name);
  }

  /** Instances with an open channel (tests, diagnostics). */
  names(): string[] {
    return [...this.entries.keys()];
  }
}
