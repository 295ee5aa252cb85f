/**
 * The pure parts of waiting for memory, fairly (docs/tenancy.md): which replica may be evicted
 * now and in what order, whether a start that finds no room should wait or be refused, which
 * waiting model is placed next, and whether one more request may join the wait. No processes,
 * no clock of its own: every input is a value (footprints, load times, decayed request rates,
 * requests in flight, load times of day, the time now), so each rule is unit-tested directly.
 *
 * - Victims: standby children first, then the lowest expected reload cost — the model's last
 *   measured load time (s) x its recent request rate (req/s, decayed with a 60 s time constant:
 *   request-rate.ts) — ties broken by the least recently used.
 * - Never evicted: pinned models, min_replicas, instances outside the catalog (for good), and —
 *   until that changes — a replica in use (requests in flight, or requests waiting for its model),
 *   one still starting, one loaded less than min_resident_secs ago.
 * - Wait or refuse: a start that fits once the "until that changes" holders go waits (bounded);
 *   one that would not fit even then is refused at once.
 * - Preemption: a model that has waited memory_wait_preempt_secs at the head of the queue may
 *   take a replica in use (past its residency, nobody waiting for it): it stops taking new calls,
 *   those in flight finish, then it goes; so busy models take turns instead of one starving.
 * - Next placed: the model waiting longest (first come, first served; no model starves: each
 *   model is placed within the time the models ahead of it need, and models ahead are finite).
 */

/** Something holding memory on a device, with what the victim choice weighs. */
export interface Holder {
  instance: string;
  mb: number;
  lastUsedMs: number;
  /** Why it may never be evicted (pinned, min_replicas, outside the catalog); undefined: it may. */
  keep?: string;
  /** A standby child (no model): the first to go. */
  standby?: boolean;
  /** Requests in flight on it, plus requests waiting for its model. */
  inflight?: number;
  /** Of `inflight`, those waiting for its model (a replica they wait for is never preempted). */
  waiting?: number;
  /** Still starting (not serving yet). */
  starting?: boolean;
  /** When it became ready (ms); with minResidentSecs, how long it stays regardless. */
  loadedAtMs?: number;
  minResidentSecs?: number;
  /** Its model's last measured load time (s), and recent request rate (req/s). */
  loadSecs?: number;
  ratePerSec?: number;
}

/** The expected cost (seconds of waiting caused per second) of evicting `h`: load time x request rate. */
export function reloadCost(h: Holder): number {
  return (h.loadSecs ?? 0) * (h.ratePerSec ?? 0);
}

/** Why `h` may not be evicted right now but may be later (in use, starting, too recently loaded); undefined: it may now, or never (see `keep`). */
export function heldForNow(h: Holder, nowMs: number): string | undefined {
  const n = h.inflight ?? 0;
  if (n > 0) return `in use: ${n} request${n === 1 ? '' : 's'} in flight or waiting`;
  if (h.starting === true) return 'starting';
  if (h.loadedAtMs !== undefined && (h.minResidentSecs ?? 0) > 0) {
    const left = h.loadedAtMs + (h.minResidentSecs ?? 0) * 1000 - nowMs;
    if (left > 0) return `loaded ${((nowMs - h.loadedAtMs) / 1000).toFixed(1)} s ago (min_resident_secs ${h.minResidentSecs})`;
  }
  return undefined;
}

/**
 * May `h` be preempted (evicted although calls are in flight on it: it stops taking new ones, those
 * in flight finish first)? Only a serving replica past its minimum residency whose only hold is
 * calls in flight — never one that requests are waiting for.
 */
export function preemptible(h: Holder, nowMs: number): boolean {
  if (h.keep !== undefined || (h.waiting ?? 0) > 0 || (h.inflight ?? 0) === 0) return false;
  return heldForNow({ ...h, inflight: 0 }, nowMs) === undefined;
}

/**
 * The holders that may be evicted now, best victim first: idle ones (standby children, then the
 * lowest reload cost, then the least recently used); with `preempt`, then the preemptible ones
 * in use, in the same order.
 */
export function victimOrder<H extends Holder>(holders: readonly H[], nowMs: number, preempt = false): H[] {
  const byCost = (a: H, b: H): number => Number(b.standby === true) - Number(a.standby === true) || reloadCost(a) - reloadCost(b) || a.lastUsedMs - b.lastUsedMs;
  const idle = holders.filter((h) => h.keep === undefined && heldForNow(h, nowMs) === undefined).sort(byCost);
  return preempt ? [...idle, ...holders.filter((h) => preemptible(h, nowMs)).sort(byCost)] : idle;
}

/** Would `needMb` fit `budgetMb` once everything held only for now (in use, starting, too recent) is free? Then a start should wait, else be refused. */
export function worthWaiting(needMb: number, budgetMb: number, holders: readonly Holder[]): boolean {
  const forGood = holders.filter((h) => h.keep !== undefined).reduce((a, h) => a + h.mb, 0);
  return forGood + needMb <= budgetMb;
}

/** A model waiting for memory. */
export interface MemoryWaiter {
  model: string;
  /** When it began to wait (ms). */
  sinceMs: number;
}

/** The waiter placed next: the one waiting longest (ties: by name, so the order is total). */
export function nextWaiter<W extends MemoryWaiter>(waiters: readonly W[]): W | undefined {
  let best: W | undefined;
  for (const w of waiters) if (best === undefined || w.sinceMs < best.sinceMs || (w.sinceMs === best.sinceMs && w.model < best.model)) best = w;
  return best;
}

/** The queue's state and bounds when one more request wants to wait. */
export interface QueueCheck {
  /** Requests already waiting for this model; its bound (cold_start_queue_size). */
  waitingForModel: number;
  queueSize: number;
  /** Bytes of the bodies waiting, all models; the new request's; the bound (cold_start_queue_mb). */
  waitingBytes: number;
  bytes: number;
  queueMb: number;
}

/** May the request wait? undefined: yes; else which bound it would pass (the config key). */
export function queueRefusal(q: QueueCheck): 'cold_start_queue_size' | 'cold_start_queue_mb' | undefined {
  if (q.waitingForModel >= q.queueSize) return 'cold_start_queue_size';
  if (q.bytes > 0 && q.waitingBytes + q.bytes > q.queueMb * 1024 * 1024) return 'cold_start_queue_mb';
  return undefined;
}
