/**
 * The help texts of `teiplex ctl` and of each verb, written from the verb table (verbs.ts): the
 * docs contract test reads them and docs/ctl.md must list every flag they show.
 */
import { GLOBAL_FLAGS, VERBS, type FlagDef, type VerbDef } from './verbs.js';

function flagLines(flags: readonly FlagDef[]): string[] {
  const head = (f: FlagDef): string => `${f.short ? `-${f.short}, ` : ''}--${f.name}${f.value ? ` ${f.value}` : ''}`;
  const width = Math.max(...flags.map((f) => head(f).length));
  return flags.map((f) => `  ${head(f).padEnd(width)}  ${f.help}`);
}

export function ctlUsage(): string {
  const heads = VERBS.map((v) => `${v.name}${v.args ? ` ${v.args}` : ''}`);
  const width = Math.max(...heads.map((h) => h.length));
  return [
    'Usage: teiplex ctl [flags] VERB [NAME...] [flags]',
    '',
    'Manages a running manager (`teiplex serve`) over its REST admin API. Several NAMEs: each is',
    'tried, every failure printed; the exit code is 1 if any failed.',
    '',
    'Verbs:',
    ...VERBS.map((v, i) => `  ${heads[i].padEnd(width)}  ${v.summary}`),
    '',
    'Flags (any verb, anywhere on the line):',
    ...flagLines(GLOBAL_FLAGS),
    '',
    'Exit codes: 0 done; 1 the manager refused (its error code and message on stderr) or could not',
    'be reached; 2 a usage error (unknown verb or flag, a missing NAME).',
    'Run `teiplex ctl VERB --help` for the flags of a verb.',
    '',
  ].join('\n');
}

export function verbUsage(v: VerbDef): string {
  return [
    `Usage: teiplex ctl ${v.name}${v.args ? ` ${v.args}` : ''}${v.flags.length > 0 ? ' [flags]' : ''}`,
    '',
    `${v.summary[0].toUpperCase()}${v.summary.slice(1)}.`,
    ...(v.flags.length > 0 ? ['', 'Flags:', ...flagLines(v.flags)] : []),
    '',
    `Global flags: ${GLOBAL_FLAGS.map((f) => (f.short ? `-${f.short}/--${f.name}` : `--${f.name}`)).join(', ')} (see \`teiplex ctl --help\`).`,
    '',
  ].join('\n');
}
