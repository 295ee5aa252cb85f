/**
 * Requests the front ends have in flight, per instance: what `model_id` routing balances on
 * (fewest first), what the `teiplex_inflight_requests` gauge shows, and when each instance was
 * last used (the catalog's idle timeouts and least-recently-used eviction read it).
 */
export class Inflight {
  private readonly counts = new Map<string, number>();
  private readonly lastActive = new Map<string, number>();
  /** Requests begun per instance, in all (the catalog's request rates). */
  private readonly begunCounts = new Map<string, number>();
  private all = 0;

  get(name: string): number {
    return this.counts.get(name) ?? 0;
  }

  /** Requests in flight on every instance together (the failover budget's base). */
  total(): number {
    return this.all;
  }

  begin(name: string): void {
    this.all++;
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
    this.begunCounts.set(name, (this.begunCounts.get(name) ?? 0) + 1);
    this.lastActive.set(name, Date.now());
  }

  end(name: string): void {
    const n = (this.counts.get(name) ?? 0) - 1;
    if (n >= 0) this.all--;
    if (n > 0) this.counts.set(name, n);
    else this.counts.delete(name);
    this.lastActive.set(name, Date.now());
  }

  /** Mark the instance used now (chosen for a request about to begin). */
  touch(name: string): void {
    this.lastActive.set(name, Date.now());
  }

  /** When the instance last began or ended a request (ms since the epoch); undefined: never. */
  lastUsed(name: string): number | undefined {
    return this.lastActive.get(name);
  }

  /** Requests begun on the instance, in all (0 after `forget`). */
  begun(name: string): number {
    return this.begunCounts.get(name) ?? 0;
  }

  /** Forget when a deleted instance was used (its name may come back for a new one). */
  forget(name: string): void {
    this.lastActive.delete(name);
    this.begunCounts.delete(name);
  }
}
