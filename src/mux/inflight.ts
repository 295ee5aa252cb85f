/**
 * Requests the multiplexer has in flight, per instance: what `model_id` routing balances on
 * (fewest first) and what the `teiplex_inflight_requests` gauge shows.
 */
export class Inflight {
  private readonly counts = new Map<string, number>();

  get(name: string): number {
    return this.counts.get(name) ?? 0;
  }

  begin(name: string): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }

  end(name: string): void {
    const n = (this.counts.get(name) ?? 0) - 1;
    if (n > 0) this.counts.set(name, n);
    else this.counts.delete(name);
  }
}
