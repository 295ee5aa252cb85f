/**
 * The failover soak's counts (bench/failover-soak.ts): each request belongs to the phase in which
 * it was sent (`kills`: children SIGKILLed; `restarts`: replicas restarted through the API) and
 * ends as ok, an error with its code, or unanswered (its deadline passed with no answer). Only
 * failures are kept one by one (with the time they were sent), so a long run holds counters, not
 * every request. The verdict's thresholds are the issue's: errors <= 0.1 % of the requests while
 * children are killed, none while replicas are restarted, and nothing unanswered anywhere.
 */

export type PhaseName = 'kills' | 'restarts';

export interface Failure {
  /** Seconds since the start of the run when the request was sent. */
  sent_s: number;
  phase: PhaseName;
  client: string;
  /** `unanswered`, or the error: `grpc:<STATUS>`, `http:<status>:<code>`, `transport:<errno>`. */
  code: string;
  ms: number;
}

export interface PhaseCounts {
  requests: number;
  ok: number;
  errors: number;
  unanswered: number;
  /** Errors by code (unanswered requests not included). */
  by_code: Record<string, number>;
  /** The maintenance events of the phase: child kills, or restarts through the API. */
  events: number;
  first_sent_s: number | null;
  last_sent_s: number | null;
}

export const MAX_ERROR_SHARE_KILLS = 0.001;

function empty(): PhaseCounts {
  return { requests: 0, ok: 0, errors: 0, unanswered: 0, by_code: {}, events: 0, first_sent_s: null, last_sent_s: null };
}

export class PhaseTally {
  readonly phases: Record<PhaseName, PhaseCounts> = { kills: empty(), restarts: empty() };
  readonly failures: Failure[] = [];

  ok(phase: PhaseName, sentS: number): void {
    const p = this.count(phase, sentS);
    p.ok++;
  }

  error(phase: PhaseName, sentS: number, client: string, code: string, ms: number): void {
    const p = this.count(phase, sentS);
    p.errors++;
    p.by_code[code] = (p.by_code[code] ?? 0) + 1;
    this.failures.push({ sent_s: sentS, phase, client, code, ms });
  }

  unanswered(phase: PhaseName, sentS: number, client: string, ms: number): void {
    const p = this.count(phase, sentS);
    p.unanswered++;
    this.failures.push({ sent_s: sentS, phase, client, code: 'unanswered', ms });
  }

  event(phase: PhaseName): void {
    this.phases[phase].events++;
  }

  /** Errors of the `kills` phase sent from each kill until the next one (the last: until the phase's end). */
  perKill(killsAtS: readonly number[]): Array<{ at_s: number; errors: number }> {
    return killsAtS.map((at, i) => {
      const until = killsAtS[i + 1] ?? Infinity;
      return { at_s: at, errors: this.failures.filter((f) => f.phase === 'kills' && f.code !== 'unanswered' && f.sent_s >= at && f.sent_s < until).length };
    });
  }

  /** Whether the run meets the thresholds, and the reasons it does not. */
  verdict(): { pass: boolean; reasons: string[] } {
    const { kills, restarts } = this.phases;
    const reasons: string[] = [];
    if (kills.requests > 0 && kills.errors / kills.requests > MAX_ERROR_SHARE_KILLS)
      reasons.push(`kills phase: ${kills.errors} errors in ${kills.requests} requests (${pct(kills.errors, kills.requests)}, more than ${MAX_ERROR_SHARE_KILLS * 100} %)`);
    for (const [name, p] of Object.entries(this.phases)) if (p.unanswered > 0) reasons.push(`${name} phase: ${p.unanswered} requests unanswered by their deadline`);
    if (restarts.errors > 0) reasons.push(`restarts phase: ${restarts.errors} errors (must be 0)`);
    return { pass: reasons.length === 0, reasons };
  }

  private count(phase: PhaseName, sentS: number): PhaseCounts {
    const p = this.phases[phase];
    p.requests++;
    p.first_sent_s = Math.min(p.first_sent_s ?? sentS, sentS);
    p.last_sent_s = Math.max(p.last_sent_s ?? sentS, sentS);
    return p;
  }
}

export function pct(n: number, of: number): string {
  return of === 0 ? '-' : `${((100 * n) / of).toFixed(3)} %`;
}
