/**
 * Everything the soak counts, with the time it happened (seconds since the start): request
 * outcomes, admin changes, chaos events, samples of the manager, check results and orphans. The
 * per-minute rows, the totals and the JSON are computed from these records alone.
 */
import type { Mismatch } from './expected-state.js';
import type { MarkedProcess } from './processes.js';

/**
 * ok: answered OK (and checked: one result per input);
 * error: answered with an error (a status and code, or a transport failure such as a refused
 *   connection while the manager is down);
 * never: no answer by the deadline (the gRPC deadline or the HTTP timeout ran out, or nothing
 *   settled by deadline + margin);
 * wrong: answered OK but with the wrong number of results (data dropped silently).
 */
export type Result = 'ok' | 'error' | 'never' | 'wrong';

/** up: the manager is running; restart: from its SIGKILL (or unexpected exit) until it is ready again. */
export type Phase = 'up' | 'restart';

export interface Outcome {
  at_s: number;
  /** `restart` when the request was sent or settled during a manager restart. */
  phase: Phase;
  kind: string;
  target: string;
  result: Result;
  /** `grpc:<STATUS>`, `http:<status>:<code>`, `transport:<errno>`, `no-answer`, ... (not for ok). */
  code?: string;
  ms: number;
}

/**
 * acknowledged: 2xx, the change must hold; refused: 4xx, nothing changed; server-error: 5xx,
 * either outcome accepted; no-answer: reset or timeout, either outcome accepted; not-reached:
 * connection refused (manager down), nothing changed.
 */
export type AdminResult = 'acknowledged' | 'refused' | 'server-error' | 'no-answer' | 'not-reached';

export interface AdminChange {
  at_s: number;
  op: string;
  name: string;
  result: AdminResult;
  status?: number;
  code?: string;
  ms: number;
}

export interface ChaosEvent {
  at_s: number;
  what: 'child-kill' | 'manager-start' | 'manager-kill' | 'manager-restart' | 'manager-unexpected-exit' | 'manager-stop';
  detail: Record<string, unknown>;
}

export interface Sample {
  at_s: number;
  /**
   * `restart`: taken while the manager restarted; its figures (a new manager's first event-loop
   * window covers its own start-up) are kept in the JSON but left out of the table.
   */
  phase: Phase;
  manager_pid: number | null;
  rss_mib: number | null;
  event_loop_p99_ms: number | null;
  /** Where event_loop_p99_ms comes from. */
  event_loop_source: string;
  health_rtt_ms: number | null;
  children: number;
  /** This manager's teiplex_instance_restarts_total by reason (crash, unhealthy, manual), since it started; null: /metrics did not answer. */
  instance_restarts: Record<string, number> | null;
  /** This manager's teiplex_model_loads_total{result="ok"} (catalog cold starts), since it started; null: /metrics did not answer. */
  model_loads: number | null;
  requests: Record<Result, number>;
}

export interface Orphan extends MarkedProcess {
  at_s: number;
  where: string;
}

export class Recorder {
  readonly t0 = Date.now();
  readonly outcomes: Outcome[] = [];
  readonly admin: AdminChange[] = [];
  readonly chaos: ChaosEvent[] = [];
  readonly samples: Sample[] = [];
  readonly mismatches: Mismatch[] = [];
  readonly checks: Array<{ at_s: number; where: string; compared: number; mismatches: number }> = [];
  readonly orphans: Orphan[] = [];
  private readonly orphanKeys = new Set<string>();
  readonly counts: Record<Result, number> = { ok: 0, error: 0, never: 0, wrong: 0 };
  private restarting = false;
  private restarts = 0;

  /** From the manager's SIGKILL (or unexpected exit) ... */
  beginRestart(): void {
    if (!this.restarting) this.restarts++;
    this.restarting = true;
  }

  /** ... until it is ready again. */
  endRestart(): void {
    this.restarting = false;
  }

  /** A token taken when a request is sent, turned into its phase when it settles. */
  phaseToken(): number {
    return this.restarting ? -1 : this.restarts;
  }

  /** `restart` if a restart was under way when the request was sent, or began before it settled. */
  phaseOf(token: number): Phase {
    return token === -1 || this.restarting || token !== this.restarts ? 'restart' : 'up';
  }

  now(): number {
    return (Date.now() - this.t0) / 1000;
  }

  outcome(o: Omit<Outcome, 'at_s'>): void {
    this.outcomes.push({ at_s: this.now(), ...o });
    this.counts[o.result]++;
  }

  adminChange(c: Omit<AdminChange, 'at_s'>): void {
    this.admin.push({ at_s: this.now(), ...c });
  }

  event(what: ChaosEvent['what'], detail: Record<string, unknown>): void {
    this.chaos.push({ at_s: this.now(), what, detail });
  }

  check(where: string, compared: number, found: Mismatch[]): void {
    this.checks.push({ at_s: this.now(), where, compared, mismatches: found.length });
    this.mismatches.push(...found);
  }

  /** Record orphans, each process once (pid + start time); returns the ones not seen before. */
  orphan(ps: MarkedProcess[], where: string): MarkedProcess[] {
    const fresh = ps.filter((p) => !this.orphanKeys.has(`${p.pid}:${p.startTime}`));
    for (const p of fresh) {
      this.orphanKeys.add(`${p.pid}:${p.startTime}`);
      this.orphans.push({ ...p, at_s: this.now(), where });
    }
    return fresh;
  }
}
