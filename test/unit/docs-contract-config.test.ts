/**
 * Config keys and defaults: config.example.toml (which docs/manager.md says lists every key with
 * its default) and the docs' `| key | default | meaning |` tables against the schema and DEFAULTS
 * of src/config/config.ts, both directions; docs/manager.md's instance spec table against the
 * instance schema. Each checker also runs on a doctored copy and reports the drift.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { TObject } from '@sinclair/typebox';
import { ConfigSchema, DEFAULTS } from '../../src/config/config.js';
import { InstanceSpecSchema } from '../../src/config/instance-spec.js';
import { parseTomlPlain } from '../../src/config/toml.js';
import { drift, readDoc, tableRows } from '../helpers/docs-contract.js';

const TABLES = ['restart', 'failover', 'outlier_detection', 'auth', 'security'] as const;
const NOT_SCALAR = new Set(['restart', 'failover', 'outlier_detection', 'instances', 'models', 'auth', 'security']);

/** The keys of one table of the example (top level: before the first header), set or commented out (`# key = value`). */
export function exampleKeys(toml: string, table: string | null): { set: string[]; commented: string[] } {
  const lines = toml.split('\n');
  let current: string | null = null;
  const set: string[] = [];
  const commented: string[] = [];
  for (const line of lines) {
    const header = /^\[\[?([a-z_.]+)\]\]?/.exec(line) ?? /^# \[\[?([a-z_.]+)\]\]?/.exec(line);
    if (header !== null) {
      current = header[1];
      continue;
    }
    if (current !== table) continue;
    const kv = /^(#\s*)?([a-z_]+)\s*=/.exec(line);
    if (kv === null) continue;
    (kv[1] === undefined ? set : commented).push(kv[2]);
  }
  return { set, commented };
}

/** The example against the schema and the defaults, for the top level and [restart], [outlier_detection], [auth], [security]. */
export function exampleDrift(toml: string): string[] {
  const out: string[] = [];
  const parsed = parseTomlPlain(toml);
  const props = (ConfigSchema as TObject).properties;
  const defaults = DEFAULTS as unknown as Record<string, unknown>;
  const top = exampleKeys(toml, null);
  out.push(...drift(Object.keys(props).filter((k) => !NOT_SCALAR.has(k)), [...top.set, ...top.commented], 'config.example.toml'));
  for (const k of top.set) if (k in defaults && JSON.stringify(parsed[k]) !== JSON.stringify(defaults[k])) out.push(`${k}: default ${JSON.stringify(defaults[k])}, config.example.toml says ${JSON.stringify(parsed[k])}`);
  for (const k of top.set) if (k in props && !(k in defaults)) out.push(`${k}: has no default, config.example.toml sets it (comment it out)`);
  for (const k of top.commented) if (k in defaults) out.push(`${k}: default ${JSON.stringify(defaults[k])}, config.example.toml leaves it commented out`);
  for (const t of TABLES) {
    const schema = props[t] as TObject;
    const d = defaults[t] as Record<string, unknown>;
    const keys = exampleKeys(toml, t);
    const scalars = Object.keys(schema.properties).filter((k) => (schema.properties[k] as { type?: string }).type !== 'object' && k !== 'api_keys' && k !== 'mtls');
    out.push(...drift(scalars.map((k) => `${t}.${k}`), [...keys.set, ...keys.commented].map((k) => `${t}.${k}`), 'config.example.toml'));
    const values = (parsed[t] ?? {}) as Record<string, unknown>;
    for (const k of keys.set) if (k in d && JSON.stringify(values[k]) !== JSON.stringify(d[k])) out.push(`${t}.${k}: default ${JSON.stringify(d[k])}, config.example.toml says ${JSON.stringify(values[k])}`);
  }
  return out.sort();
}

/** A doc's `| key | default | meaning |` rows: every key a config key, every default DEFAULTS' (`auth.x` keys of [auth]). */
export function defaultTableDrift(markdown: string, where: string): string[] {
  const out: string[] = [];
  const defaults = DEFAULTS as unknown as Record<string, Record<string, unknown>>;
  const props = (ConfigSchema as TObject).properties as Record<string, TObject>;
  let inTable = false;
  for (const line of markdown.split('\n')) {
    if (/^\| key \| default \|/.test(line)) inTable = true;
    else if (!line.startsWith('|')) inTable = false;
    if (!inTable) continue;
    const [first, def] = tableRows(line)[0] ?? [];
    const key = /^`([a-z_.[\]]+)`/.exec(first ?? '')?.[1];
    if (key === undefined) continue;
    const parts = key.replace('[]', '').split('.');
    const top = parts.length === 1 ? props[parts[0]] : (props[parts[0]]?.properties as Record<string, TObject> | undefined)?.[parts[1]];
    if (top === undefined) {
      out.push(`${key}: in ${where}, no such config key`);
      continue;
    }
    const value = parts.length === 1 ? (DEFAULTS as unknown as Record<string, unknown>)[parts[0]] : parts.length === 2 ? defaults[parts[0]]?.[parts[1]] : undefined;
    if (value === undefined || typeof value === 'object') continue;
    const shown = def.replace(/`/g, '').replace(/,/g, '');
    if (shown !== String(value)) out.push(`${key}: default ${value}, ${where} says ${def}`);
  }
  return out;
}

/** docs/manager.md's instance spec table (`| field | meaning |`): the backticked names of the first column. */
export function specTableFields(markdown: string): string[] {
  const start = markdown.indexOf('### Instance spec');
  const table = markdown.slice(start, markdown.indexOf('\n## ', start));
  return tableRows(table)
    .slice(1)
    .flatMap((r) => [...(r[0] ?? '').matchAll(/`([a-z_]+)`/g)].map((m) => m[1]));
}

describe('config keys and defaults: docs and src/config', () => {
  const example = readDoc('config.example.toml');

  test('config.example.toml has every key, each with its default (optional keys commented out)', () => {
    assert.ok(exampleKeys(example, null).set.length > 40, 'the example was read');
    assert.deepEqual(exampleDrift(example), []);
  });

  test("the docs' key/default tables name config keys with their defaults", () => {
    const pages = ['docs/data-plane.md', 'docs/multiplexer.md', 'docs/security.md', 'docs/on-demand.md', 'docs/manager.md', 'docs/status-page.md', 'docs/tenancy.md'];
    assert.deepEqual(
      pages.flatMap((p) => defaultTableDrift(readDoc(p), p)),
      [],
    );
  });

  test("docs/manager.md's instance spec table is the instance schema, field for field", () => {
    assert.deepEqual(drift(Object.keys(InstanceSpecSchema.properties), specTableFields(readDoc('docs/manager.md')), 'docs/manager.md'), []);
  });

  test('the checkers see a drift: a default changed, a key dropped, a key unknown, a field missing', () => {
    assert.deepEqual(exampleDrift(example.replace('grpc_max_concurrent_streams = 100', 'grpc_max_concurrent_streams = 128')), ['grpc_max_concurrent_streams: default 100, config.example.toml says 128']);
    assert.deepEqual(exampleDrift(example.replace(/^log_max_files = .*\n/m, '')), ['log_max_files: in the code, not in config.example.toml']);
    assert.deepEqual(exampleDrift(example.replace('max_restarts = 10 ', 'max_restart = 10 ')), ['restart.max_restart: in config.example.toml, not in the code', 'restart.max_restarts: in the code, not in config.example.toml']);
    assert.deepEqual(exampleDrift(example.replace('open_metrics = true ', 'open_metrics = false')), ['auth.open_metrics: default true, config.example.toml says false']);
    const mux = readDoc('docs/multiplexer.md');
    assert.deepEqual(defaultTableDrift(mux.replace('| `arrow_max_rows` | 100000 |', '| `arrow_max_rows` | 10000 |'), 'm.md'), ['arrow_max_rows: default 100000, m.md says 10000']);
    assert.deepEqual(defaultTableDrift(mux.replace('| `arrow_decode_threads` |', '| `arrow_decoder_threads` |'), 'm.md'), ['arrow_decoder_threads: in m.md, no such config key']);
    assert.deepEqual(drift(Object.keys(InstanceSpecSchema.properties), specTableFields(readDoc('docs/manager.md').replace(/^\| `restart_policy` .*\n/m, '')), 'docs/manager.md'), ['restart_policy: in the code, not in docs/manager.md']);
  });
});
