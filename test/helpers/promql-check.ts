/**
 * Checks PromQL expressions against what a scrape exports: every expression parses (Prometheus's
 * own lezer grammar, @prometheus-io/lezer-promql), every vector selector names a metric the
 * exposition has (a histogram's `_bucket`, `_sum`, `_count` series, a summary's `_sum`, `_count`),
 * every label matcher names a label that metric carries (or one the scrape adds: `targetLabels`),
 * and every grouping label (`by`, `without`, `on`, `ignoring`, `group_left(...)`) is a label of a
 * metric selected in that aggregation or binary operation. A metric the scrape has no sample of
 * fails too: its labels cannot be known, so the test must drive it (or the query leave it out).
 *
 * Also collects the expressions of a Grafana dashboard (every panel target, every query variable,
 * Grafana's `label_values(selector, label)` checked as the selector plus its label) and of a
 * Prometheus rules file.
 */
import { parser } from '@prometheus-io/lezer-promql';
import type { SyntaxNode } from '@lezer/common';
import { parse as parseYaml } from 'yaml';

export interface Family {
  type: string;
  /** Label names the family's samples carry (empty when the scrape had no sample of it). */
  labels: Set<string>;
  /** Whether the scrape had any sample of it. */
  sampled: boolean;
}

/**
 * A Prometheus text exposition as selectable series names: each name a query may use (a
 * histogram's family name itself is not one) with the labels its samples carry.
 */
export function selectableSeries(exposition: string): Map<string, Family> {
  const families = new Map<string, Family>();
  for (const line of exposition.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t !== null) families.set(t[1], { type: t[2], labels: new Set(), sampled: false });
  }
  const out = new Map<string, Family>();
  for (const [name, f] of families) {
    if (f.type === 'histogram') {
      out.set(`${name}_bucket`, { type: 'histogram_bucket', labels: new Set(['le']), sampled: false });
      out.set(`${name}_sum`, { type: 'histogram_sum', labels: new Set(), sampled: false });
      out.set(`${name}_count`, { type: 'histogram_count', labels: new Set(), sampled: false });
    } else if (f.type === 'summary') {
      out.set(name, { type: 'summary', labels: new Set(['quantile']), sampled: false });
      out.set(`${name}_sum`, { type: 'summary_sum', labels: new Set(), sampled: false });
      out.set(`${name}_count`, { type: 'summary_count', labels: new Set(), sampled: false });
    } else out.set(name, f);
  }
  for (const line of exposition.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s/.exec(line);
    if (m === null) continue;
    const series = out.get(m[1]);
    if (series === undefined) continue;
    series.sampled = true;
    for (const pair of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g)) series.labels.add(pair[1]);
  }
  return out;
}

export interface Query {
  /** Where the expression is (a panel's title and target, a rule's name). */
  where: string;
  expr: string;
  /** A label the query needs besides its expression's (Grafana's label_values). */
  extraLabel?: string;
}

/** Grafana's macros as the durations and values they stand for, so the expression parses. */
export function expandGrafanaMacros(expr: string): string {
  return expr.replace(/\$__(rate_interval|interval|range)\b/g, '5m').replace(/\$\{__(rate_interval|interval|range)\}/g, '5m');
}

/** Every PromQL expression of a Grafana dashboard (panels in rows too, and query variables). */
export function dashboardQueries(dashboard: any): Query[] {
  const out: Query[] = [];
  const visit = (panels: any[]) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) {
        if (typeof t.expr !== 'string') throw new Error(`panel "${p.title}" target ${t.refId}: no expr`);
        out.push({ where: `panel "${p.title}" ${t.refId}`, expr: expandGrafanaMacros(t.expr) });
      }
      visit(p.panels);
    }
  };
  visit(dashboard.panels);
  for (const v of dashboard.templating?.list ?? []) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    if (typeof q !== 'string') throw new Error(`variable ${v.name}: no query`);
    const lv = /^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$/.exec(q.trim());
    if (lv !== null) out.push({ where: `variable ${v.name}`, expr: expandGrafanaMacros(lv[1]), extraLabel: lv[2] });
    else out.push({ where: `variable ${v.name}`, expr: expandGrafanaMacros(q) });
  }
  return out;
}

/** Every expression of a Prometheus rules file (alerting and recording rules). */
export function ruleQueries(yamlText: string): Query[] {
  const doc = parseYaml(yamlText) as { groups?: Array<{ name: string; rules?: Array<{ alert?: string; record?: string; expr: string }> }> };
  const out: Query[] = [];
  for (const g of doc.groups ?? []) for (const r of g.rules ?? []) out.push({ where: `rule ${g.name}/${r.alert ?? r.record}`, expr: String(r.expr) });
  return out;
}

const text = (expr: string, n: SyntaxNode): string => expr.slice(n.from, n.to);

function descendants(n: SyntaxNode, name: string): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  const cursor = n.cursor();
  const end = n.to;
  const from = n.from;
  do {
    if (cursor.from >= end) break;
    if (cursor.name === name && cursor.from >= from) out.push(cursor.node);
  } while (cursor.next());
  return out;
}

/**
 * Problems of one expression: a syntax error, a metric `series` lacks, a label neither the
 * metric nor `targetLabels` has, a label of a metric the scrape had no sample of (so its labels
 * cannot be checked), a grouping label no selected metric has.
 */
export function checkQuery(q: Query, series: Map<string, Family>, targetLabels: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  const tree = parser.parse(q.expr);
  tree.iterate({
    enter(n) {
      if (n.type.isError) problems.push(`${q.where}: syntax error at ${n.from}: ${JSON.stringify(q.expr.slice(Math.max(0, n.from - 20), n.from + 20))}`);
    },
  });
  if (problems.length > 0) return problems;
  const top = tree.topNode;

  /** The metric a selector names, and its label names in matchers. */
  const selector = (vs: SyntaxNode): { name: string | undefined; labels: string[] } => {
    const id = vs.getChild('Identifier');
    const labels: string[] = [];
    let name = id === null ? undefined : text(q.expr, id);
    for (const m of [...descendants(vs, 'UnquotedLabelMatcher'), ...descendants(vs, 'QuotedLabelMatcher')]) {
      const ln = m.getChild('LabelName') ?? m.getChild('QuotedLabelName');
      if (ln === null) continue;
      const label = text(q.expr, ln).replace(/^"|"$/g, '');
      if (label === '__name__') {
        const value = m.getChild('StringLiteral');
        const op = m.getChild('MatchOp');
        if (value !== null && op !== null && text(q.expr, op) === '=') name = JSON.parse(text(q.expr, value));
        continue;
      }
      labels.push(label);
    }
    return { name, labels };
  };

  /** Labels of the metrics selected under `n` (plus the scrape's own). */
  const labelsUnder = (n: SyntaxNode): Set<string> => {
    const out = new Set(targetLabels);
    for (const vs of descendants(n, 'VectorSelector')) {
      const { name } = selector(vs);
      if (name === undefined) continue;
      for (const l of series.get(name)?.labels ?? []) out.add(l);
    }
    return out;
  };

  for (const vs of descendants(top, 'VectorSelector')) {
    const { name, labels } = selector(vs);
    if (name === undefined) {
      problems.push(`${q.where}: a selector without a metric name: ${text(q.expr, vs)}`);
      continue;
    }
    const s = series.get(name);
    if (s === undefined) {
      problems.push(`${q.where}: metric ${name} is not exported`);
      continue;
    }
    if (!s.sampled) {
      problems.push(`${q.where}: metric ${name} had no sample in the scrape, so its labels cannot be checked (drive it, or leave it out)`);
      continue;
    }
    const wanted = q.extraLabel === undefined ? labels : [...labels, q.extraLabel];
    for (const label of wanted) {
      if (targetLabels.has(label) || s.labels.has(label)) continue;
      problems.push(`${q.where}: metric ${name} has no label ${label} (it has ${[...s.labels].sort().join(', ') || 'none'})`);
    }
  }
  for (const g of descendants(top, 'GroupingLabels')) {
    // by/without: GroupingLabels < AggregateModifier < AggregateExpr; on/ignoring/group_x:
    // GroupingLabels < (On|Ignoring|GroupLeft|GroupRight clause) < MatchingModifierClause < BinaryExpr.
    let scope: SyntaxNode | null = g.parent;
    while (scope !== null && scope.name !== 'AggregateExpr' && scope.name !== 'BinaryExpr') scope = scope.parent;
    const known = labelsUnder(scope ?? top);
    for (const ln of g.getChildren('LabelName')) {
      const label = text(q.expr, ln);
      if (!known.has(label)) problems.push(`${q.where}: grouping label ${label} is on no metric it groups (${[...known].sort().join(', ')})`);
    }
  }
  return problems;
}

/** Problems of every query. */
export function checkQueries(queries: readonly Query[], series: Map<string, Family>, targetLabels: ReadonlySet<string>): string[] {
  return queries.flatMap((q) => checkQuery(q, series, targetLabels));
}
