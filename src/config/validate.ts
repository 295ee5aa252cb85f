/**
 * Checks a parsed value against a TypeBox schema and turns the first problems into one message
 * that names the key and what was expected.
 */
import type { TSchema, Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** `/instances/0/port` -> `instances[0].port` */
export function keyPath(pointer: string, prefix = ''): string {
  const parts = pointer.split('/').filter((p) => p !== '');
  let out = prefix;
  for (const p of parts) out += /^\d+$/.test(p) ? `[${p}]` : out === '' ? p : `.${p}`;
  return out === '' ? '(root)' : out;
}

/** The value typed by the schema, or a ConfigError listing up to 5 problems. */
export function check<T extends TSchema>(schema: T, value: unknown, where: string, prefix = ''): Static<T> {
  if (Value.Check(schema, value)) return value as Static<T>;
  const problems: string[] = [];
  for (const e of Value.Errors(schema, value)) {
    const line = `${keyPath(e.path, prefix)}: ${e.message}${e.value === undefined ? '' : ` (got ${JSON.stringify(e.value)})`}`;
    if (!problems.includes(line)) problems.push(line);
    if (problems.length === 5) break;
  }
  throw new ConfigError(`${where}: ${problems.join('; ')}`);
}
