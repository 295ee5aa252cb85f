/**
 * TOML parsing into plain JSON-like values (smol-toml gives null-prototype tables and TomlDate
 * objects; config and state want ordinary objects and strings).
 */
import { parse } from 'smol-toml';

export function parseTomlPlain(text: string): Record<string, unknown> {
  return JSON.parse(JSON.stringify(parse(text))) as Record<string, unknown>;
}
