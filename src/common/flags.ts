/**
 * Command-line flag parsing shared by the subcommands: node's util.parseArgs in strict mode,
 * with errors that name the bad flag and list the known ones.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export type FlagSpec = NonNullable<ParseArgsConfig['options']>;

export class FlagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FlagError';
  }
}

export function parseFlags<T extends FlagSpec>(argv: string[], spec: T): ReturnType<typeof parseArgs<{ options: T; strict: true; allowPositionals: false; args: string[] }>>['values'] {
  try {
    return parseArgs({ args: argv, options: spec, strict: true, allowPositionals: false }).values;
  } catch (err) {
    const known = Object.keys(spec)
      .map((k) => `--${k}`)
      .join(', ');
    const message = err instanceof Error ? err.message : String(err);
    throw new FlagError(`${message}\nKnown flags: ${known}`);
  }
}

/** Parse an integer flag value, naming the flag when it is not one. */
export function intFlag(name: string, value: string | undefined, min = 0): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new FlagError(`--${name} must be an integer >= ${min}, got '${value}'`);
  return n;
}
