/**
 * Models waiting for memory: a start that found no room, where room will come once replicas in
 * use (or starting, or just loaded) are free, waits here instead of being refused. One entry per
 * model (its start is single flight: every request waiting for the model is served by that one
 * load). Every TICK_MS each waiting start tries its placement again; only the one waiting longest
 * (eviction-policy.ts `nextWaiter`) may evict, the others take only room that is free — so a
 * model that came later never takes the memory a longer-waiting one waits for, and none starves.
 * A start leaves the queue when it is placed, when no request waits for its model any more (all
 * timed out, or their clients went away), or when it is cancelled (unload, delete, shutdown).
 */
import type { Clock } from '../common/clock.js';
import { nextWaiter, type MemoryWaiter } from './eviction-policy.js';

/** How often a waiting start tries its placement again (ms). */
export const MEMORY_RETRY_MS = 100;

export class MemoryQueue {
  private readonly waiting = new Map<string, MemoryWaiter & { reason: string }>();

  constructor(private readonly clock: Clock) {}

  /** Join (or stay in) the queue for `model` with why it waits; resolves when it should try again. */
  wait(model: string, reason: string): Promise<void> {
    const w = this.waiting.get(model);
    if (w === undefined) this.waiting.set(model, { model, sinceMs: this.clock.now(), reason });
    else w.reason = reason;
    return new Promise((resolve) => this.clock.setTimeout(resolve, MEMORY_RETRY_MS));
  }

  /** May `model`'s start evict replicas now? Only when no other model has waited longer. */
  mayEvict(model: string): boolean {
    const head = nextWaiter([...this.waiting.values()]);
    return head === undefined || head.model === model;
  }

  /** How long `model` has waited (ms); undefined: it does not wait. */
  waitedMs(model: string): number | undefined {
    const w = this.waiting.get(model);
    return w === undefined ? undefined : this.clock.now() - w.sinceMs;
  }

  leave(model: string): void {
    this.waiting.delete(model);
  }

  /** Why `model` waits for memory; undefined: it does not. */
  reason(model: string): string | undefined {
    return this.waiting.get(model)?.reason;
  }

  /** Models waiting, longest first. */
  list(): Array<MemoryWaiter & { reason: string }> {
    return [...this.waiting.values()].sort((a, b) => a.sinceMs - b.sinceMs);
  }
}
