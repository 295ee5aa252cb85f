/**
 * Checkers for the docs-contract tests: each reads what a doc promises (a table, a list of names)
 * and compares it with what the code has, in both directions. Every checker returns its findings
 * as strings (`'X: in the code, not in docs/Y.md'`), empty when both agree, so a test can also run
 * it on a doctored copy of a doc and see the drift reported.
 */
import { readFileSync } from 'node:fs';
import { projectPath } from '../../src/common/paths.js';

export const readDoc = (rel: string): string => readFileSync(projectPath(rel), 'utf8');

/** Both directions of a comparison: what only the code has, what only the doc has. */
export function drift(code: Iterable<string>, doc: Iterable<string>, where: string): string[] {
  const c = new Set(code);
  const d = new Set(doc);
  return [...[...c].filter((x) => !d.has(x)).map((x) => `${x}: in the code, not in ${where}`), ...[...d].filter((x) => !c.has(x)).map((x) => `${x}: in ${where}, not in the code`)].sort();
}

/** The lines of a Markdown table's rows (header and separator left out), split into trimmed cells; `\|` stays in its cell. */
export function tableRows(markdown: string): string[][] {
  const rows: string[][] = [];
  for (const line of markdown.split('\n')) {
    if (!line.startsWith('|')) continue;
    const cells = line
      .replace(/\\\|/g, '\uE000')
      .split('|')
      .slice(1, -1)
      .map((c) => c.replace(/\uE000/g, '|').trim());
    if (cells.every((c) => /^:?-+:?$/.test(c))) continue;
    rows.push(cells);
  }
  return rows;
}

/** The text between `<!-- NAME:begin -->` and `<!-- NAME:end -->`. */
export function section(markdown: string, name: string): string {
  const begin = markdown.indexOf(`<!-- ${name}:begin -->`);
  const end = markdown.indexOf(`<!-- ${name}:end -->`);
  if (begin < 0 || end < begin) throw new Error(`no <!-- ${name}:begin --> ... <!-- ${name}:end --> section`);
  return markdown.slice(begin, end);
}

/** Every `--flag` in a text (not inside a longer word: `models--org--name` has none). */
export function flagsIn(text: string): Set<string> {
  return new Set(text.match(/(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*/g) ?? []);
}

/** The backticked names at the start of table rows: `| \`name\` | ...` -> name. */
export function firstColumnNames(markdown: string, pattern: RegExp): string[] {
  const out: string[] = [];
  for (const row of tableRows(markdown)) {
    const m = /^`([^`]+)`$/.exec(row[0] ?? '');
    if (m !== null && pattern.test(m[1])) out.push(m[1]);
  }
  return out;
}

/**
 * The metric tables of the docs: rows `| \`name\` | type | labels |`, where the labels are the
 * backticked words of the third cell outside parentheses (the values in parentheses are not
 * labels: `\`reason\` (\`crash\`, ...)`), and a `name` followed by a colon a label too.
 */
export interface DocMetric {
  type: string;
  labels: string[];
}
export function metricTable(markdown: string): Map<string, DocMetric> {
  const out = new Map<string, DocMetric>();
  for (const row of tableRows(markdown)) {
    const m = /^`([a-z_:]+)`$/.exec(row[0] ?? '');
    if (m === null || !['gauge', 'counter', 'histogram', 'summary'].includes(row[1] ?? '')) continue;
    let cell = row[2] ?? '';
    // Parentheses (values, asides) nested at most twice.
    for (let i = 0; i < 3; i++) cell = cell.replace(/\([^()]*\)/g, '');
    cell = cell.split(/:\s/)[0];
    const labels = [...cell.matchAll(/`([a-z_]+)`/g)].map((x) => x[1]);
    out.set(m[1], { type: row[1], labels: labels.sort() });
  }
  return out;
}

/** A Prometheus text exposition: each metric family's type and the label names its samples carry (histograms' `le` left out). */
export function exposition(text: string): Map<string, DocMetric> {
  const out = new Map<string, DocMetric>();
  for (const line of text.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t !== null) {
      out.set(t[1], { type: t[2], labels: [] });
      continue;
    }
    const s = /^([a-zA-Z_:][a-zA-Z0-9_:]*?)(?:_bucket|_sum|_count)?\{([^}]*)\}/.exec(line);
    if (s === null) continue;
    const family = out.get(s[1]) ?? out.get(line.slice(0, line.indexOf('{')));
    if (family === undefined) continue;
    for (const pair of s[2].matchAll(/([a-zA-Z_]+)="/g)) {
      if (pair[1] === 'le' || family.labels.includes(pair[1])) continue;
      family.labels.push(pair[1]);
      family.labels.sort();
    }
  }
  return out;
}

/**
 * Documented metrics against scraped ones: a scraped `prefix` metric the tables miss, a documented
 * one not exposed, a different type, and labels that differ (checked where the scrape had samples).
 */
export function metricDrift(doc: Map<string, DocMetric>, scraped: Map<string, DocMetric>, prefix: RegExp, where: string): string[] {
  const out = drift(
    [...scraped.keys()].filter((n) => prefix.test(n)),
    [...doc.keys()].filter((n) => prefix.test(n)),
    where,
  );
  for (const [name, d] of doc) {
    const s = scraped.get(name);
    if (s === undefined) continue;
    if (s.type !== d.type) out.push(`${name}: type ${s.type}, ${where} says ${d.type}`);
    if (s.labels.length > 0 && s.labels.join(',') !== d.labels.join(',')) out.push(`${name}: labels ${s.labels.join(',')}, ${where} says ${d.labels.join(',') || 'none'}`);
  }
  return out;
}
