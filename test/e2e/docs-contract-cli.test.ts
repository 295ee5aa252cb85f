/**
 * The CLI's documentation against `teiplex <command> --help` of the real binary (bin/teiplex.js,
 * so `npm run build` first), both directions: every flag a command's help lists is in its doc
 * page (docs/router.md's flag table with each flag's environment variable, docs/bench.md's flag
 * table, docs/make-test-model.md, docs/manager.md for `serve`, docs/ctl.md's verb table and flag
 * tables for `teiplex ctl --help` and each `teiplex ctl VERB --help`, a group's verbs too:
 * `teiplex ctl batch SUBVERB --help`), every flag a page names is a flag
 * of some teiplex command (or a named other program's), and README's command table is
 * `teiplex --help`'s list. Each checker also runs once on a doctored copy and reports the drift.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { drift, flagsIn, readDoc, section, tableRows } from '../helpers/docs-contract.js';
import { runCli } from '../helpers/router-process.js';

const COMMANDS = { serve: 'docs/manager.md', router: 'docs/router.md', bench: 'docs/bench.md', 'make-test-model': 'docs/make-test-model.md', ctl: 'docs/ctl.md' } as const;
type Command = keyof typeof COMMANDS;

/** Flags the pages name that belong to other programs, and why. */
const OTHER_PROGRAMS: Record<string, string> = {
  '--omit': 'npm prune --omit=dev (docs/manager.md, the container build)',
  '--duration-secs': 'bench/soak.ts and bench/failover-soak.ts (docs/bench.md)',
  '--heap-snapshots-at': 'bench/failover-soak.ts (docs/bench.md)',
  '--restarts': 'bench/failover-soak.ts (docs/bench.md)',
  '--import': 'node --import tsx (docs/data-plane.md)',
  '--rounds': 'bench/data-plane.ts (docs/data-plane.md)',
  '--rows': 'bench/batch.ts (docs/bench.md)',
  '--formats': 'bench/batch.ts (docs/bench.md)',
  '--cold-runs': 'bench/on-demand.ts (docs/on-demand.md)',
  '--warm-per-run': 'bench/on-demand.ts (docs/on-demand.md)',
  '--query-compute-apps': 'nvidia-smi (docs/on-demand.md)',
  '--flag': 'a placeholder for any flag (docs/security.md)',
  '--x-api-key': "an example of a child's secret-looking flag (docs/security.md)",
  '--db-password': "an example of a child's secret-looking flag (docs/security.md)",
  '--cacert': 'curl (docs/security.md)',
  '--target': 'docker build --target (README.md)',
};

/** The router's flag table: flag -> environment variable ('' when none). */
export function routerFlagTable(markdown: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const row of tableRows(section(markdown, 'flags'))) {
    const flag = /^`(--[a-z0-9-]+)/.exec(row[0]);
    if (flag === null) continue;
    out.set(flag[1], (row[1] ?? '').replace(/`/g, ''));
  }
  return out;
}

/** The help's flags: flag -> environment variable (`[env X]`; '' when none). */
export function routerHelpFlags(help: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of help.split('\n')) {
    const m = /^\s+(--[a-z0-9-]+)\b.*?(?:\[env ([A-Z_]+)\])?$/.exec(line);
    if (m !== null && m[1] !== '--help') out.set(m[1], m[2] ?? '');
  }
  return out;
}

export function routerFlagDrift(help: string, markdown: string): string[] {
  const h = routerHelpFlags(help);
  const d = routerFlagTable(markdown);
  const out = drift(h.keys(), d.keys(), 'docs/router.md');
  for (const [flag, env] of h) if (d.has(flag) && d.get(flag) !== env) out.push(`${flag}: env ${env || 'none'}, docs/router.md says ${d.get(flag) || 'none'}`);
  return out;
}

/** docs/bench.md's flag table (its first column) against the help's flags. */
export function benchFlagDrift(help: string, markdown: string): string[] {
  const table = markdown.slice(markdown.indexOf('## Flags'), markdown.indexOf('## Output'));
  const doc = new Set(tableRows(table).flatMap((row) => [...flagsIn(row[0] ?? '')]));
  const h = [...flagsIn(help)].filter((f) => f !== '--help');
  return drift(h, doc, 'docs/bench.md flag table');
}

/** Flags a page names that no teiplex command has (nor a named other program). */
export function unknownFlags(markdown: string, known: Set<string>, where: string): string[] {
  return [...flagsIn(markdown)].filter((f) => !known.has(f) && !(f in OTHER_PROGRAMS)).map((f) => `${f}: in ${where}, no command has it`);
}

/** README's command table (`| \`teiplex X\` | ...`) against `teiplex --help`'s commands. */
export function commandDrift(mainHelp: string, readme: string): string[] {
  const help = mainHelp
    .slice(mainHelp.indexOf('Commands:'))
    .split('\n')
    .map((l) => /^ {2}([a-z][a-z-]+)\s/.exec(l)?.[1])
    .filter((c): c is string => c !== undefined);
  const doc = tableRows(readme)
    .map((r) => /^`teiplex ([a-z-]+)`$/.exec(r[0] ?? '')?.[1])
    .filter((c): c is string => c !== undefined);
  return drift(help, doc, 'README.md');
}

/** The verbs `teiplex ctl --help` lists (the lines of its "Verbs:" block). */
export function ctlHelpVerbs(help: string): string[] {
  const block = help.slice(help.indexOf('Verbs:'), help.indexOf('\n\n', help.indexOf('Verbs:')));
  return [...block.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)].map((m) => m[1]);
}

/** The flags a help's block defines (each line's leading `-x, --flag` or `--flag`), from the line beginning `heading` up to the blank line. */
export function helpBlockFlags(help: string, heading: string): Set<string> {
  const at = help.search(new RegExp(`^${heading}`, 'm'));
  if (at < 0) return new Set();
  const end = help.indexOf('\n\n', at);
  const lines = help.slice(at, end < 0 ? help.length : end).split('\n');
  return new Set(lines.map((l) => /^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)/.exec(l)?.[1]).filter((f): f is string => f !== undefined));
}

/** The `## ` or `### ` section of a page whose heading matches, up to the next heading of that level or above. */
function docSection(markdown: string, heading: RegExp): string {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => /^#{2,3} /.test(l) && heading.test(l));
  if (start < 0) return '';
  const level = /^#+/.exec(lines[start])![0].length;
  const end = lines.findIndex((l, i) => i > start && new RegExp(`^#{2,${level}} `).test(l));
  return lines.slice(start + 1, end < 0 ? lines.length : end).join('\n');
}

const firstCellFlags = (markdown: string): string[] => tableRows(markdown).flatMap((r) => [...flagsIn(r[0] ?? '')]);

/**
 * docs/ctl.md against ctl's helps: the verb table (its first words) is `ctl --help`'s verbs; the
 * "## Flags" table is its global flags; each verb's flags are the flag tables of the `### ` sections
 * naming `ctl VERB` in their heading.
 */
export function ctlDrift(mainHelp: string, verbHelps: Record<string, string>, markdown: string): string[] {
  const verbs = ctlHelpVerbs(mainHelp);
  const docVerbs = tableRows(docSection(markdown, /^## Verbs$/))
    .map((r) => /^`([a-z][a-z-]*)/.exec(r[0] ?? '')?.[1])
    .filter((v): v is string => v !== undefined);
  const out = drift(verbs, docVerbs, 'docs/ctl.md verb table');
  out.push(...drift([...helpBlockFlags(mainHelp, 'Flags \\(any verb')].filter((f) => f !== '--help'), firstCellFlags(docSection(markdown, /^## Flags$/)).filter((f) => f !== '--help'), 'docs/ctl.md flag table'));
  // The verbs of the main help, and a group's verbs (`batch submit`) by their helps.
  for (const v of new Set([...verbs, ...Object.keys(verbHelps)])) {
    const doc = firstCellFlags(docSection(markdown, new RegExp(`\`ctl ${v}\``)));
    out.push(...drift(helpBlockFlags(verbHelps[v] ?? '', 'Flags:'), doc, `docs/ctl.md, ctl ${v}`));
  }
  return out.sort();
}

describe('CLI flags: docs and --help', () => {
  const help = {} as Record<Command | 'main', string>;
  const ctlVerbHelp: Record<string, string> = {};
  const known = new Set<string>();

  before(async () => {
    for (const c of [...(Object.keys(COMMANDS) as Command[]), 'main' as const]) {
      const r = await runCli(c === 'main' ? ['--help'] : [c, '--help']);
      assert.equal(r.code, 0, r.stderr);
      help[c] = r.stdout;
    }
    for (const v of new Set(ctlHelpVerbs(help.ctl))) {
      const r = await runCli(['ctl', v, '--help']);
      assert.equal(r.code, 0, r.stderr);
      ctlVerbHelp[v] = r.stdout;
      // A group (`ctl batch --help` lists its own verbs): each of its verbs' helps too.
      if (!r.stdout.includes('\nVerbs:\n')) continue;
      for (const sub of new Set(ctlHelpVerbs(r.stdout))) {
        const s = await runCli(['ctl', v, sub, '--help']);
        assert.equal(s.code, 0, s.stderr);
        ctlVerbHelp[`${v} ${sub}`] = s.stdout;
      }
    }
    for (const text of [...(Object.keys(COMMANDS) as Command[]).map((c) => help[c]), ...Object.values(ctlVerbHelp)]) for (const f of flagsIn(text)) known.add(f);
  });

  test('router: the flag table is --help, flag for flag, with the same environment variables', () => {
    assert.ok(routerHelpFlags(help.router).size > 30, 'the help lists the flags');
    assert.deepEqual(routerFlagDrift(help.router, readDoc('docs/router.md')), []);
  });

  test('bench: the flag table is --help', () => {
    assert.deepEqual(benchFlagDrift(help.bench, readDoc('docs/bench.md')), []);
  });

  test('serve and make-test-model: every flag of --help is on the page', () => {
    for (const c of ['serve', 'make-test-model'] as const) {
      const doc = flagsIn(readDoc(COMMANDS[c]));
      const missing = [...flagsIn(help[c])].filter((f) => f !== '--help' && !doc.has(f));
      assert.deepEqual(missing, [], `${c}: flags of --help missing from ${COMMANDS[c]}`);
    }
  });

  test('ctl: the verb table is ctl --help\'s verbs, the flag tables each verb\'s --help', () => {
    assert.ok(ctlHelpVerbs(help.ctl).length >= 15, 'the help lists the verbs');
    assert.ok(helpBlockFlags(ctlVerbHelp.create, 'Flags:').size >= 10, "create's help lists its flags");
    assert.deepEqual(ctlDrift(help.ctl, ctlVerbHelp, readDoc('docs/ctl.md')), []);
  });

  test('every flag a page names is a flag of some teiplex command', () => {
    const pages = [...Object.values(COMMANDS), 'docs/batch.md', 'docs/multiplexer.md', 'docs/data-plane.md', 'docs/on-demand.md', 'docs/security.md', 'docs/arrow.md', 'docs/architecture.md', 'docs/errors.md', 'README.md'];
    assert.deepEqual(
      pages.flatMap((p) => unknownFlags(readDoc(p), known, p)),
      [],
    );
  });

  test("README's command table is teiplex --help's", () => {
    assert.deepEqual(commandDrift(help.main, readDoc('README.md')), []);
  });

  test('the checkers see a drift: a flag dropped, an env renamed, a flag unknown, a command missing', () => {
    const router = readDoc('docs/router.md');
    assert.deepEqual(routerFlagDrift(help.router, router.replace(/^\| `--threads <N>` .*\n/m, '')), ['--threads: in the code, not in docs/router.md']);
    assert.deepEqual(routerFlagDrift(help.router, router.replace('| `PAYLOAD_LIMIT` |', '| `PAYLOAD_LIMITS` |')), ['--payload-limit: env PAYLOAD_LIMIT, docs/router.md says PAYLOAD_LIMITS']);
    assert.deepEqual(benchFlagDrift(help.bench, readDoc('docs/bench.md').replace('| `--warmup N` |', '| `--warm-up N` |')), ['--warm-up: in docs/bench.md flag table, not in the code', '--warmup: in the code, not in docs/bench.md flag table']);
    assert.deepEqual(unknownFlags('run it with `--max-batch-token 5`', known, 'x.md'), ['--max-batch-token: in x.md, no command has it']);
    assert.deepEqual(commandDrift(help.main, readDoc('README.md').replace(/^\| `teiplex bench` .*\n/m, '')), ['bench: in the code, not in README.md']);
    const ctl = readDoc('docs/ctl.md');
    assert.deepEqual(ctlDrift(help.ctl, ctlVerbHelp, ctl.replace(/^\| `--tail N` .*\n/m, '')), ['--tail: in the code, not in docs/ctl.md, ctl logs']);
    assert.deepEqual(ctlDrift(help.ctl, ctlVerbHelp, ctl.replace('| `--timeout SECS` |', '| `--deadline SECS` |')), ['--deadline: in docs/ctl.md flag table, not in the code', '--timeout: in the code, not in docs/ctl.md flag table']);
    assert.deepEqual(ctlDrift(help.ctl, ctlVerbHelp, ctl.replace(/^\| `gpus` .*\n/m, '')), ['gpus: in the code, not in docs/ctl.md verb table']);
    assert.ok(helpBlockFlags(ctlVerbHelp['batch submit'] ?? '', 'Flags:').has('--embedding-type'), "a group's verb has its help checked");
    assert.deepEqual(ctlDrift(help.ctl, ctlVerbHelp, ctl.replace(/^\| `--errors PATH` .*\n/m, '')), ['--errors: in the code, not in docs/ctl.md, ctl batch download']);
  });
});
