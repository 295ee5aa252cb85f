/**
 * Recent request rate and request count per catalog model, from the requests its replicas have
 * begun (the front ends' count, src/routing/inflight.ts). "Recent" is an exponentially decayed
 * rate with a 60 s time constant: each observation adds the requests begun since the last one and
 * decays what came before by e^(-dt/60 s), so a request a minute old weighs 1/e of one now.
 * Observed at every sweep (250 ms) and before every eviction decision. The eviction cost
 * (eviction-policy.ts) is the model's last load time x this rate; loads per request is its
 * thrash ratio (teiplex_model_thrash_ratio).
 */
export const RATE_TAU_SECS = 60;

interface ModelRate {
  /** Decayed rate (req/s) as of `atMs`. */
  rate: number;
  atMs: number;
  /** Requests begun, in all (for the thrash ratio). */
  requests: number;
  /** Last count seen per replica instance (a smaller count: the name was reused, counted from 0). */
  seen: Map<string, number>;
}

export class RequestRates {
  private readonly models = new Map<string, ModelRate>();

  /** Fold in the begun counts of `model`'s replicas at `nowMs`. */
  observe(model: string, replicas: ReadonlyArray<{ instance: string; begun: number }>, nowMs: number): void {
    let r = this.models.get(model);
    if (r === undefined) {
      r = { rate: 0, atMs: nowMs, requests: 0, seen: new Map() };
      this.models.set(model, r);
    }
    let added = 0;
    const live = new Set<string>();
    for (const { instance, begun } of replicas) {
      live.add(instance);
      const before = r.seen.get(instance) ?? 0;
      added += begun >= before ? begun - before : begun;
      r.seen.set(instance, begun);
    }
    for (const k of [...r.seen.keys()]) if (!live.has(k)) r.seen.delete(k);
    r.rate = decayedRate(r.rate, Math.max(0, nowMs - r.atMs) / 1000, added);
    r.atMs = Math.max(r.atMs, nowMs);
    r.requests += added;
  }

  /** Requests per second, recently (decayed to `nowMs`). */
  rate(model: string, nowMs: number): number {
    const r = this.models.get(model);
    return r === undefined ? 0 : decayedRate(r.rate, Math.max(0, nowMs - r.atMs) / 1000, 0);
  }

  /** Requests begun in all (since the manager started, or the model was listed). */
  requests(model: string): number {
    return this.models.get(model)?.requests ?? 0;
  }

  forget(model: string): void {
    this.models.delete(model);
  }
}

/** The rate `dtSecs` later with `added` requests in between: rate x e^(-dt/tau) + added / tau. */
export function decayedRate(rate: number, dtSecs: number, added: number): number {
  return rate * Math.exp(-dtSecs / RATE_TAU_SECS) + added / RATE_TAU_SECS;
}
