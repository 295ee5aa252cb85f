/**
 * `teiplex ctl`'s command line -> one parsed command, or a UsageError (exit 2) that names what is
 * wrong: an unknown verb, a flag the verb does not take, a missing or extra NAME, a value of the
 * wrong form. Global flags may stand anywhere (`ctl --url U ls`, `ctl ls --url U`); arguments
 * after `--` are the child's (create only). A verb of a group is two words (`ctl batch submit F`);
 * a verb with its own `--output` (batch submit, batch download) takes the format as `-o` only. The manager's address and key come from the flags,
 * else the environment (TEIPLEX_URL, TEIPLEX_API_KEY), else the local manager. Pure: the
 * environment is a parameter.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import {
  DEFAULT_TIMEOUT_SECS,
  DEFAULT_URL,
  findVerb,
  GLOBAL_FLAGS,
  OUTPUT_FORMATS,
  groupVerbs,
  SHELLS,
  VERB_GROUPS,
  VERBS,
  type FlagDef,
  type OutputFormat,
  type VerbDef,
} from './verbs.js';

export class UsageError extends Error {
  constructor(
    message: string,
    /** The verb whose help would tell more, when known. */
    readonly verb?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface GlobalOptions {
  url: string;
  apiKey?: string;
  cacert?: string;
  cert?: string;
  key?: string;
  timeoutMs: number;
  output: OutputFormat;
}

export type FlagValues = Record<string, string | boolean | string[] | undefined>;

export type CtlCommand =
  | { kind: 'help'; verb?: VerbDef; group?: string }
  | { kind: 'run'; verb: VerbDef; names: string[]; flags: FlagValues; extra: string[]; global: GlobalOptions };

const dashed = (f: FlagDef): string => (f.short ? `-${f.short}/--${f.name}` : `--${f.name}`);

/** Every flag of every verb and the global ones, for node's parser (the verb's own set is checked after). */
function unionSpec(): NonNullable<ParseArgsConfig['options']> {
  const spec: NonNullable<ParseArgsConfig['options']> = {};
  for (const f of [...GLOBAL_FLAGS, ...VERBS.flatMap((v) => v.flags)]) {
    // A verb's own --output keeps the global flag's -o (told apart after the parse, by the token).
    const short = f.short ?? spec[f.name]?.short;
    spec[f.name] = { type: f.type, ...(short ? { short } : {}), ...(f.multiple ? { multiple: true } : {}) };
  }
  return spec;
}

/** Parse `teiplex ctl ARGS...` (without `ctl`). */
export function parseCtlArgs(argv: readonly string[], env: NodeJS.ProcessEnv): CtlCommand {
  const dd = argv.indexOf('--');
  const before = dd < 0 ? [...argv] : argv.slice(0, dd);
  const extra = dd < 0 ? [] : argv.slice(dd + 1);
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: before, options: unionSpec(), strict: true, allowPositionals: true, tokens: true });
  } catch (err) {
    throw new UsageError(rephrase(err instanceof Error ? err.message : String(err)), verbIn(before));
  }
  const positionals = [...parsed.positionals];
  const values = { ...(parsed.values as FlagValues) };
  let verbName = positionals.shift();
  const group = verbName !== undefined && Object.hasOwn(VERB_GROUPS, verbName) ? verbName : undefined;
  if (group !== undefined) {
    const sub = positionals.shift();
    const subs = groupVerbs(group).map((v) => v.name.slice(group.length + 1));
    if (sub === undefined) {
      if (values.help === true) return { kind: 'help', verb: undefined, group };
      throw new UsageError(`'ctl ${group}' needs a verb: ${subs.join(', ')}`, group);
    }
    verbName = `${group} ${sub}`;
    if (findVerb(verbName) === undefined) throw new UsageError(`unknown verb '${verbName}' (${group} verbs: ${subs.join(', ')})`, group);
  }
  const names = positionals;
  const verb = verbName === undefined ? undefined : findVerb(verbName);
  if (verbName !== undefined && verb === undefined) throw new UsageError(`unknown verb '${verbName}' (verbs: ${[...new Set(VERBS.map((v) => v.name.split(' ')[0]))].join(', ')})`);
  const allowed = new Map([...GLOBAL_FLAGS, ...(verb?.flags ?? [])].map((f) => [f.name, f]));
  for (const t of parsed.tokens ?? []) {
    if (t.kind !== 'option' || allowed.has(t.name)) continue;
    const where = verb === undefined ? 'before a verb' : `by 'ctl ${verb.name}'`;
    throw new UsageError(
      `flag ${t.rawName} is not taken ${where}${verb && verb.flags.length > 0 ? ` (its flags: ${verb.flags.map(dashed).join(', ')})` : ''}`,
      verb?.name,
    );
  }
  if (values.help === true) return { kind: 'help', verb };
  if (verb === undefined) throw new UsageError('a verb is needed, e.g. `teiplex ctl ls`');
  // The format: -o or --output, except where the verb owns --output (then -o alone).
  let format = values.output;
  if (verb.ownsOutput) {
    format = undefined;
    values.output = undefined;
    for (const t of parsed.tokens ?? []) {
      if (t.kind !== 'option' || t.name !== 'output') continue;
      if (t.rawName === '--output') values.output = t.value;
      else format = t.value;
    }
  }

  if (names.length < verb.minNames) throw new UsageError(`'ctl ${verb.name}' needs ${verb.args.split(' ')[0]}`, verb.name);
  if (names.length > verb.maxNames)
    throw new UsageError(
      `'ctl ${verb.name}' takes ${verb.maxNames === 0 ? 'no names' : `one ${verb.args.split(' ')[0].replace(/[[\]]/g, '')}`}, got ${names.length}: ${names.join(' ')}`,
      verb.name,
    );
  if (extra.length > 0 && !verb.extraArgs) throw new UsageError(`'ctl ${verb.name}' takes no arguments after --`, verb.name);
  for (const f of verb.flags) checkChoice(f, values[f.name], verb.name);
  if (verb.names === 'shells' && !(SHELLS as readonly string[]).includes(names[0]))
    throw new UsageError(`'ctl ${verb.name}' knows ${SHELLS.join(', ')}, got '${names[0]}'`, verb.name);

  return { kind: 'run', verb, names, flags: values, extra, global: globalOptions(values, typeof format === 'string' ? format : undefined, env, verb) };
}

function globalOptions(values: FlagValues, format: string | undefined, env: NodeJS.ProcessEnv, verb: VerbDef): GlobalOptions {
  const str = (name: string): string | undefined => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
  const url = str('url') ?? nonEmpty(env.TEIPLEX_URL) ?? DEFAULT_URL;
  let parsedUrl: URL;
  try {
    parsedUrl = new URL(url);
  } catch {
    throw new UsageError(`--url must be an http:// or https:// URL, got '${url}'`, verb.name);
  }
  if (parsedUrl.protocol !== 'http:' && parsedUrl.protocol !== 'https:')
    throw new UsageError(`--url must be an http:// or https:// URL, got '${url}'`, verb.name);
  const output = (format ?? 'table') as OutputFormat;
  if (!OUTPUT_FORMATS.includes(output))
    throw new UsageError(
      verb.ownsOutput
        ? `-o must be one of ${OUTPUT_FORMATS.join(', ')} (the output format; this verb's --output is its ${verb.flags.find((f) => f.name === 'output')?.value}), got '${output}'`
        : `-o/--output must be one of ${OUTPUT_FORMATS.join(', ')}, got '${output}'`,
      verb.name,
    );
  if (output === 'name' && !verb.nameOutput)
    throw new UsageError(
      `-o name is for ${VERBS.filter((v) => v.nameOutput)
        .map((v) => `'ctl ${v.name}'`)
        .join(' and ')}; 'ctl ${verb.name}' writes table or json`,
      verb.name,
    );
  const timeout = str('timeout');
  const secs = timeout === undefined ? DEFAULT_TIMEOUT_SECS : Number(timeout);
  if (!Number.isFinite(secs) || secs <= 0) throw new UsageError(`--timeout must be a number of seconds > 0, got '${timeout}'`, verb.name);
  const cert = str('cert');
  const key = str('key');
  if ((cert === undefined) !== (key === undefined)) throw new UsageError('--cert and --key go together (a client certificate and its key)', verb.name);
  return {
    url: parsedUrl.href.replace(/\/+$/, ''),
    apiKey: str('api-key') ?? nonEmpty(env.TEIPLEX_API_KEY),
    cacert: str('cacert'),
    cert,
    key,
    timeoutMs: Math.round(secs * 1000),
    output,
  };
}

const nonEmpty = (s: string | undefined): string | undefined => (s === undefined || s === '' ? undefined : s);

/** A flag whose values are a fixed list (the completion's) is checked here, before any call. */
function checkChoice(f: FlagDef, v: FlagValues[string], verb: string): void {
  if (typeof v !== 'string' || !Array.isArray(f.completeValues)) return;
  if (!f.completeValues.includes(v)) throw new UsageError(`--${f.name} must be one of ${f.completeValues.join(', ')}, got '${v}'`, verb);
}

/** An integer flag value (`--tail`, `--port`), naming the flag when it is not one in [min, max]. */
export function intValue(flag: string, v: string, min: number, max = Number.MAX_SAFE_INTEGER, verb?: string): number {
  const n = /^\d+$/.test(v.trim()) ? Number(v) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new UsageError(`--${flag} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`}, got '${v}'`, verb);
  return n;
}

/** The verb (or group) named before a parse error, if any, for the help hint. */
function verbIn(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (findVerb(args[i]) !== undefined) return args[i];
    if (Object.hasOwn(VERB_GROUPS, args[i])) return findVerb(`${args[i]} ${args[i + 1]}`) !== undefined ? `${args[i]} ${args[i + 1]}` : args[i];
  }
  return undefined;
}

/** node's parser messages, made about ctl: "Unknown option '--x'" and friends. */
function rephrase(message: string): string {
  const unknown = /^Unknown option '([^']+)'/.exec(message);
  if (unknown) return `unknown flag ${unknown[1]}`;
  const missing = /^Option '(?:-\w, )?(--[\w-]+) <value>' argument missing/.exec(message);
  if (missing) return `flag ${missing[1]} needs a value`;
  const ambiguous = /^Option '(?:-\w, )?(--[\w-]+)' argument is ambiguous/.exec(message);
  if (ambiguous) return `flag ${ambiguous[1]} needs a value (one starting with a dash: ${ambiguous[1]}=-VALUE)`;
  return message.split('\n')[0].replace(/\. To specify a positional argument.*$/, '');
}
