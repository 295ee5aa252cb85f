/**
 * The suite's hygiene rules, as a scanner over test sources (test/unit and test/e2e; helpers are
 * exempt: they hold the one bounded poll and the one deliberate sleep). It finds:
 *
 * - `sleep-as-sync`: a fixed sleep in a test file (`setTimeout` from node:timers/promises, or a
 *   promise around `setTimeout`). Tests wait on what happened with `until` (test/helpers/wait.ts);
 *   time passes on purpose only through `elapse(ms, why)`.
 * - `timing-assertion`: an assertion that bounds how long something took from above
 *   (`Date.now() - t0 < 300`, `took < 1000`, `slowestMs < 800`): it flakes on a loaded machine and
 *   says nothing on a fast one. Assert the order of events instead.
 * - `status-only`: an HTTP error status (4xx/5xx) checked with nothing within three lines on
 *   either side that checks the documented code or body.
 * - `unbounded-loop`: a `while`/`for (;;)` whose head and first lines name no bound (a deadline,
 *   a counter, a `until`).
 *
 * A finding on a line that ends with `// hygiene: <reason>` is kept out of the failures and listed
 * as an exemption. `node --import tsx test/helpers/suite-hygiene.ts` prints the counts per rule.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { projectPath } from '../../src/common/paths.js';

export type HygieneRule = 'sleep-as-sync' | 'timing-assertion' | 'status-only' | 'unbounded-loop';
export const HYGIENE_RULES: readonly HygieneRule[] = ['sleep-as-sync', 'timing-assertion', 'status-only', 'unbounded-loop'];

export interface Finding {
  file: string;
  line: number;
  rule: HygieneRule;
  text: string;
  /** The reason given by a `// hygiene:` comment on the line, if any. */
  exempt?: string;
}

const SLEEP_IMPORT = /import\s*\{([^}]*)\}\s*from\s*['"]node:timers\/promises['"]/;
const PROMISE_TIMEOUT = /new Promise\s*(<[^>]*>)?\s*\(\s*\(?\s*(\w+)\s*\)?\s*=>\s*\{?\s*setTimeout\s*\(\s*\2\b/;
const TIMING_SUBJECT = /(Date\.now\(\)|performance\.now\(\)|\b\w*(?:Ms|took|elapsed\w*|latenc\w*|slowest\w*|duration\w*)\b|\bms\b)/;
const UPPER_BOUND = /(?<![<>=!])<=?\s*[\d_]+(?:\s*\*\s*[\d_]+)?\s*[),&|]/;
const ERROR_STATUS = /assert\.(?:equal|strictEqual)\([^,]*\bstatus(?:Code)?\)?\s*,\s*[45]\d\d\b|assert\.ok\([^;]*\bstatus(?:Code)?\s*>=\s*400/;
const BODY_CHECK = /\bassert\b[^;]*(\.code\b|\berror\w*|\.message\b|\bbody\.|\btext\b|error_type|retry-after)|assert\.match|errorCode|expect\w*(Error|Code)\b|\bcodeOf\(/i;
const LOOP_HEAD = /^\s*(?:while\s*\(|for\s*\(\s*;\s*;\s*\))/;
const LOOP_BOUND = /Date\.now\(\)|performance\.now\(\)|deadline|\bend\b|\btries\b|\battempts?\b|\bi\s*<|\bn\s*<|\bk\s*<|until\(|--|\+\+|>>>?=|\/=|break|throw|\breturn\b|\.length\b|timeout/i;

function exemption(line: string): string | undefined {
  return /\/\/\s*hygiene:\s*(.+)$/.exec(line)?.[1]?.trim();
}

/** The findings in one test file's source. */
export function scanTestSource(file: string, source: string): Finding[] {
  const lines = source.split('\n');
  const out: Finding[] = [];
  const add = (i: number, rule: HygieneRule) => out.push({ file, line: i + 1, rule, text: lines[i]!.trim(), exempt: exemption(lines[i]!) });
  const sleepNames = new Set<string>();
  const imp = SLEEP_IMPORT.exec(source);
  if (imp !== null) {
    for (const part of imp[1]!.split(',')) {
      const m = /^\s*setTimeout(?:\s+as\s+(\w+))?\s*$/.exec(part);
      if (m !== null) sleepNames.add(m[1] ?? 'setTimeout');
    }
  }
  const sleepCall = sleepNames.size === 0 ? null : new RegExp(`(?<![\\w.])(?:${[...sleepNames].join('|')})\\s*\\(`);
  lines.forEach((line, i) => {
    const code = line.replace(/\/\/.*$/, '');
    if (/^\s*(\*|\/\*|import\b)/.test(line)) return;
    if (PROMISE_TIMEOUT.test(code) || sleepCall?.test(code)) add(i, 'sleep-as-sync');
    if (/\bassert\b/.test(code) && TIMING_SUBJECT.test(code) && UPPER_BOUND.test(code)) add(i, 'timing-assertion');
    if (ERROR_STATUS.test(code)) {
      const near = [...lines.slice(Math.max(0, i - 3), i), ...lines.slice(i + 1, i + 4)];
      if (!near.some((l) => BODY_CHECK.test(l))) add(i, 'status-only');
    }
    if (LOOP_HEAD.test(code)) {
      const head = lines.slice(i, i + 4).join('\n');
      if (!LOOP_BOUND.test(head)) add(i, 'unbounded-loop');
    }
  });
  return out;
}

/** Every `*.test.ts` under test/unit and test/e2e, relative to the project root. */
export function testFiles(root = projectPath()): string[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = path.join(dir, e.name);
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.test.ts') && e.name !== 'suite-hygiene.test.ts') files.push(rel); // the rules' own test holds doctored samples
    }
  };
  walk('test/unit');
  walk('test/e2e');
  return files.sort();
}

export function scanSuite(root = projectPath()): Finding[] {
  return testFiles(root).flatMap((f) => scanTestSource(f, readFileSync(path.join(root, f), 'utf8')));
}

export function countByRule(findings: readonly Finding[]): Record<HygieneRule, { failing: number; exempt: number }> {
  const counts = Object.fromEntries(HYGIENE_RULES.map((r) => [r, { failing: 0, exempt: 0 }])) as Record<HygieneRule, { failing: number; exempt: number }>;
  for (const f of findings) counts[f.rule][f.exempt === undefined ? 'failing' : 'exempt']++;
  return counts;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const findings = scanSuite(process.argv[2] ?? projectPath());
  const counts = countByRule(findings);
  console.log('rule               failing  exempt');
  for (const r of HYGIENE_RULES) console.log(`${r.padEnd(18)} ${String(counts[r].failing).padStart(7)} ${String(counts[r].exempt).padStart(7)}`);
  if (process.argv.includes('--list')) for (const f of findings) console.log(`${f.file}:${f.line} ${f.rule}${f.exempt ? ` (exempt: ${f.exempt})` : ''}  ${f.text}`);
}
