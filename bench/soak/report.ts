/**
 * The soak's report, computed from the Recorder alone: per-minute rows and totals (requests by
 * result, OK latency, admin changes, chaos, manager RSS and event-loop p99), failures by code,
 * per request kind, and the verdict figures (never answered, wrong answers, lost acknowledged
 * changes, orphans), as a Markdown table and a JSON object.
 */
import { quantile } from '../lib/stats.js';
import type { Outcome, Recorder, Result } from './recorder.js';

export interface Row {
  minute: string;
  requests: number;
  ok: number;
  error: number;
  never: number;
  wrong: number;
  ok_p50_ms: number;
  ok_p99_ms: number;
  admin_acknowledged: number;
  admin_refused: number;
  admin_ambiguous: number;
  child_kills: number;
  manager_kills: number;
  rss_max_mib: number;
  event_loop_p99_max_ms: number;
}

export interface Verdict {
  never_answered: number;
  wrong_answers: number;
  lost_changes: number;
  orphans: number;
  pass: boolean;
}

const max = (xs: number[]): number => (xs.length === 0 ? NaN : Math.max(...xs));

function row(label: string, rec: Recorder, from: number, to: number): Row {
  const inRange = <T extends { at_s: number }>(xs: readonly T[]): T[] => xs.filter((x) => x.at_s >= from && x.at_s < to);
  const out = inRange(rec.outcomes);
  const count = (r: Result): number => out.filter((o) => o.result === r).length;
  const okMs = out.filter((o) => o.result === 'ok').map((o) => o.ms);
  const admin = inRange(rec.admin);
  const chaos = inRange(rec.chaos);
  const samples = inRange(rec.samples).filter((s) => s.phase === 'up');
  return {
    minute: label,
    requests: out.length,
    ok: count('ok'),
    error: count('error'),
    never: count('never'),
    wrong: count('wrong'),
    ok_p50_ms: quantile(okMs, 0.5),
    ok_p99_ms: quantile(okMs, 0.99),
    admin_acknowledged: admin.filter((a) => a.result === 'acknowledged').length,
    admin_refused: admin.filter((a) => a.result === 'refused' || a.result === 'not-reached').length,
    admin_ambiguous: admin.filter((a) => a.result === 'no-answer' || a.result === 'server-error').length,
    child_kills: chaos.filter((c) => c.what === 'child-kill').length,
    manager_kills: chaos.filter((c) => c.what === 'manager-kill').length,
    rss_max_mib: max(samples.flatMap((s) => (s.rss_mib === null ? [] : [s.rss_mib]))),
    event_loop_p99_max_ms: max(samples.flatMap((s) => (s.event_loop_p99_ms === null ? [] : [s.event_loop_p99_ms]))),
  };
}

export function rows(rec: Recorder, durationS: number): { perMinute: Row[]; total: Row } {
  const end = Math.max(durationS, rec.now()) + 1;
  const perMinute: Row[] = [];
  for (let m = 0; m * 60 < end; m++) perMinute.push(row(String(m + 1), rec, m * 60, Math.min((m + 1) * 60, end)));
  return { perMinute, total: row('total', rec, 0, end) };
}

function countBy<T>(xs: readonly T[], key: (x: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[key(x)] = (out[key(x)] ?? 0) + 1;
  return Object.fromEntries(Object.entries(out).sort((a, b) => b[1] - a[1]));
}

export function failuresByCode(outcomes: readonly Outcome[]): Record<string, number> {
  return countBy(
    outcomes.filter((o) => o.result !== 'ok'),
    (o) => `${o.result} ${o.code ?? '?'} (manager ${o.phase === 'up' ? 'up' : 'restarting'})`,
  );
}

export function byKind(outcomes: readonly Outcome[]): Record<string, Record<Result, number> & { ok_p50_ms: number; ok_p99_ms: number }> {
  const out: Record<string, Record<Result, number> & { ok_p50_ms: number; ok_p99_ms: number }> = {};
  for (const kind of [...new Set(outcomes.map((o) => o.kind))].sort()) {
    const of = outcomes.filter((o) => o.kind === kind);
    const ok = of.filter((o) => o.result === 'ok').map((o) => o.ms);
    out[kind] = {
      ok: ok.length,
      error: of.filter((o) => o.result === 'error').length,
      never: of.filter((o) => o.result === 'never').length,
      wrong: of.filter((o) => o.result === 'wrong').length,
      ok_p50_ms: quantile(ok, 0.5),
      ok_p99_ms: quantile(ok, 0.99),
    };
  }
  return out;
}

export function verdict(rec: Recorder): Verdict {
  const v = { never_answered: rec.counts.never, wrong_answers: rec.counts.wrong, lost_changes: rec.mismatches.length, orphans: rec.orphans.length };
  return { ...v, pass: Object.values(v).every((n) => n === 0) };
}

/**
 * The managers' own counters of child restarts and catalog loads, summed over every manager
 * process of the run (each one's counters start at 0: its last sample counts).
 */
export function childCounters(rec: Recorder): { instance_restarts: Record<string, number>; model_loads: number } {
  const last = new Map<number, (typeof rec.samples)[number]>();
  for (const s of rec.samples) if (s.manager_pid !== null && s.instance_restarts !== null) last.set(s.manager_pid, s);
  const instance_restarts: Record<string, number> = {};
  let model_loads = 0;
  for (const s of last.values()) {
    for (const [k, n] of Object.entries(s.instance_restarts ?? {})) instance_restarts[k] = (instance_restarts[k] ?? 0) + n;
    model_loads += s.model_loads ?? 0;
  }
  return { instance_restarts, model_loads };
}

const f = (x: number): string => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) : '-');

export function markdown(rec: Recorder, durationS: number, heading: string): string {
  const { perMinute, total } = rows(rec, durationS);
  const v = verdict(rec);
  const table = [
    '| min | requests | ok | error | never | wrong | ok p50 / p99 ms | admin ack / refused / ambiguous | child kills | manager kills | RSS max MiB | loop p99 max ms |',
    '|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|',
    ...[...perMinute, total].map(
      (r) =>
        `| ${r.minute} | ${r.requests} | ${r.ok} | ${r.error} | ${r.never} | ${r.wrong} | ${f(r.ok_p50_ms)} / ${f(r.ok_p99_ms)} | ${r.admin_acknowledged} / ${r.admin_refused} / ${r.admin_ambiguous} | ${r.child_kills} | ${r.manager_kills} | ${f(r.rss_max_mib)} | ${f(r.event_loop_p99_max_ms)} |`,
    ),
  ];
  const kinds = byKind(rec.outcomes);
  const kindTable = [
    '| kind | ok | error | never | wrong | ok p50 / p99 ms |',
    '|---|---:|---:|---:|---:|---|',
    ...Object.entries(kinds).map(([k, r]) => `| ${k} | ${r.ok} | ${r.error} | ${r.never} | ${r.wrong} | ${f(r.ok_p50_ms)} / ${f(r.ok_p99_ms)} |`),
  ];
  const failures = Object.entries(failuresByCode(rec.outcomes)).map(([k, n]) => `- ${k}: ${n}`);
  const sources = [...new Set(rec.samples.filter((s) => s.phase === 'up').map((s) => s.event_loop_source))];
  const restartEvents = rec.chaos.filter((c) => c.what === 'manager-restart');
  const restarts = restartEvents.map((c) => Number(c.detail.ready_ms));
  const listening = restartEvents.flatMap((c) => (typeof c.detail.listening_ms === 'number' ? [c.detail.listening_ms] : []));
  const kids = childCounters(rec);
  const lines = [
    heading,
    '',
    ...table,
    '',
    ...kindTable,
    '',
    'Failures by code:',
    ...(failures.length > 0 ? failures : ['- none']),
    '',
    `Event-loop p99 source: ${sources.join('; ') || 'none'}.`,
    `Manager restarts: ${restarts.length}${
      restarts.length > 0
        ? `; start to API answering p50 ${f(quantile(listening, 0.5))} ms, max ${f(Math.max(...listening))} ms; start to ready (boot done) p50 ${f(quantile(restarts, 0.5))} ms, max ${f(Math.max(...restarts))} ms`
        : ''
    }.`,
    `Children: ${rec.chaos.filter((c) => c.what === 'child-kill').length} killed by the bench; the managers counted restarts ${Object.entries(kids.instance_restarts)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ')} and ${kids.model_loads} catalog cold starts (from /metrics, every 5 s: a manager's last sample before it was killed is what counts).`,
    `State checks: ${rec.checks.length} (${rec.checks.reduce((n, c) => n + c.compared, 0)} names compared).`,
    '',
    `**never answered: ${v.never_answered}; wrong answers: ${v.wrong_answers}; acknowledged changes lost: ${v.lost_changes}; orphans: ${v.orphans}** -> ${v.pass ? 'PASS' : 'FAIL'}`,
    ...rec.mismatches.map((m) => `- lost change at ${m.at_s.toFixed(0)} s (${m.where}): ${m.name} expected ${m.expected.join(' or ')}, found ${m.observed}`),
    ...rec.orphans.map((o) => `- orphan at ${o.at_s.toFixed(0)} s (${o.where}): pid ${o.pid} ${o.instance ?? '?'} (ppid ${o.ppid}, marker ${o.via}) ${o.cmd.slice(0, 80)}`),
    '',
  ];
  return lines.join('\n');
}
