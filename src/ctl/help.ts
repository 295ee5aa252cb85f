/**
 * The help texts of `teiplex ctl` and of each verb, written from the verb table (verbs.ts): the
 * docs contract test reads them and docs/ctl.md must list every flag they show.
 */
import { GLOBAL_FLAGS, groupVerbs, VERB_GROUPS, VERBS, type FlagDef, type VerbDef } from './verbs.js';

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
    'Manages a running manager (`teiplex serve`) over its REST admin API (the batch verbs: its HTTP',
    'data plane, data_port where it has its own). Several NAMEs: each is tried, every failure',
    'printed; the exit code is 1 if any failed.',
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
  const global = (f: FlagDef): string => {
    if (v.ownsOutput && f.name === 'output') return `-${f.short} (the format; --output is this verb's)`;
    return f.short ? `-${f.short}/--${f.name}` : `--${f.name}`;
  };
  return [
    `Usage: teiplex ctl ${v.name}${v.args ? ` ${v.args}` : ''}${v.flags.length > 0 ? ' [flags]' : ''}`,
    '',
    `${v.summary[0].toUpperCase()}${v.summary.slice(1)}.`,
    ...(v.flags.length > 0 ? ['', 'Flags:', ...flagLines(v.flags)] : []),
    '',
    `Global flags: ${GLOBAL_FLAGS.map(global).join(', ')} (see \`teiplex ctl --help\`).`,
    '',
  ].join('\n');
}

/** `teiplex ctl GROUP --help`: the group's verbs (each one's flags: `teiplex ctl GROUP VERB --help`). */
export function groupUsage(group: string): string {
  const verbs = groupVerbs(group);
  const heads = verbs.map((v) => `${v.name.slice(group.length + 1)}${v.args ? ` ${v.args}` : ''}`);
  const width = Math.max(...heads.map((h) => h.length));
  const about = VERB_GROUPS[group] ?? '';
  return [
    `Usage: teiplex ctl ${group} VERB [ARGS...] [flags]`,
    '',
    `${about[0]?.toUpperCase() ?? ''}${about.slice(1)}.`,
    '',
    'Verbs:',
    ...verbs.map((v, i) => `  ${heads[i].padEnd(width)}  ${v.summary}`),
    '',
    `Run \`teiplex ctl ${group} VERB --help\` for the flags of a verb, \`teiplex ctl --help\` for the global flags.`,
    '',
  ].join('\n');
}
