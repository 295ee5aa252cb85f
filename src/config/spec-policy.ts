/**
 * What an instance or catalog model spec may ask of its child, decided by where the spec comes
 * from (docs/security.md). The config file is the trust anchor:
 * - every spec, the file's included: the manager's own flags (MANAGER_FLAGS) and environment
 *   names (MANAGER_ENV) are never set by a spec: the manager supervises the child on its port and
 *   address, and places it on its GPUs;
 * - a spec from the REST API (or restored from the state file, where the API put it) is
 *   refused a `command` runtime outside `security.api_commands`, an `env` name outside
 *   `security.api_env`, an extra_args flag replacing one the manager derives from the spec unless
 *   `security.api_flag_overrides`, and extra_args that are not `--flag`, `--flag=value` or a
 *   flag's value (a short option or a positional argument a shell would read as its script);
 * - text must be well-formed Unicode (a lone surrogate would be altered on save).
 * `specRefusal` returns the first problem, naming the field and, for a refusal a setting could
 * lift, the setting: `invalid` (400, or a ConfigError) or `forbidden` (403).
 */
import { TeiplexError } from '../common/errors.js';
import type { SecurityConfig } from './config.js';
import type { InstanceSpec } from './instance-spec.js';

/** Flags the manager sets on every child and no spec may give (`-p` is the router's short --port). */
export const MANAGER_FLAGS: Readonly<Record<string, string>> = {
  '--model-id': 'set by the manager from model_id',
  '--port': 'set by the manager (use the spec field port)',
  '-p': 'the short form of --port, set by the manager (use the spec field port)',
  '--hostname': 'set by the manager: children listen on 127.0.0.1 only, behind the manager front ends and their auth',
  '--prometheus-port': 'set by the manager (use the spec field prometheus_port)',
  '--api-key': "the manager's own calls to the child carry no key: a child API key would lock the manager out",
};

/** Environment names a child reads as the manager's flags, or the manager's placement and markers. */
export const MANAGER_ENV: Readonly<Record<string, string>> = {
  MODEL_ID: 'read by TEI as --model-id',
  PORT: 'read by TEI as --port',
  HOSTNAME: 'read by TEI as --hostname',
  PROMETHEUS_PORT: 'read by TEI as --prometheus-port',
  API_KEY: 'read by TEI as --api-key',
  CUDA_VISIBLE_DEVICES: 'set by the manager from the GPU placement (use gpu_id / gpu_ids)',
  TEIPLEX_MANAGER_STATE: "the manager's marker on its children",
  TEIPLEX_INSTANCE: "the manager's marker on its children",
};

type SpecFlagField = 'revision' | 'max_batch_tokens' | 'max_concurrent_requests' | 'pooling' | 'dtype';

/** Flags the manager derives from spec fields, in argv order (each passed only when the field is set). */
export const SPEC_FLAGS: ReadonlyArray<readonly [flag: string, field: SpecFlagField]> = [
  ['--revision', 'revision'],
  ['--max-batch-tokens', 'max_batch_tokens'],
  ['--max-concurrent-requests', 'max_concurrent_requests'],
  ['--pooling', 'pooling'],
  ['--dtype', 'dtype'],
];

/** Passed to every child: the manager reads its log lines as JSON. */
export const ALWAYS_FLAGS = ['--json-output'] as const;

/** The settings a child's command line and environment come from (an instance spec, or a catalog model's). */
export type ChildSettings = Pick<InstanceSpec, 'runtime' | 'command' | 'env' | 'extra_args' | SpecFlagField>;

export type SpecOrigin = 'config' | 'api';

export interface SpecRefusal {
  /** invalid: never allowed (400 / ConfigError); forbidden: a [security] setting would allow it (403). */
  kind: 'invalid' | 'forbidden';
  /** The spec field, e.g. `extra_args[2]`, `env.NODE_OPTIONS`. */
  field: string;
  /** The [security] key that decides, for `forbidden`. */
  setting?: string;
  message: string;
}

/** The flag name of an argv element (`--port=1` -> `--port`), or undefined for values. */
export function flagName(arg: string): string | undefined {
  if (!arg.startsWith('-')) return undefined;
  const eq = arg.indexOf('=');
  return eq < 0 ? arg : arg.slice(0, eq);
}

/** The flags the manager passes for these settings besides its own (those an extra_args flag would replace). */
export function derivedFlags(spec: ChildSettings): Set<string> {
  const out = new Set<string>(ALWAYS_FLAGS);
  for (const [flag, field] of SPEC_FLAGS) if (spec[field] !== undefined) out.add(flag);
  return out;
}

const LONG_FLAG = /^--[A-Za-z0-9][A-Za-z0-9-]*$/;
const NUMBER = /^-?\d+(\.\d+)?$/;

/** The path of the first lone surrogate (UTF-16 half without its pair) in a JSON-like value, keys included. */
export function loneSurrogateAt(value: unknown, at: string): string | undefined {
  if (typeof value === 'string') return /\p{Surrogate}/u.test(value) ? at : undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = loneSurrogateAt(value[i], `${at}[${i}]`);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (/\p{Surrogate}/u.test(k)) return `${at} (a key)`;
      const found = loneSurrogateAt(v, at === '' ? k : `${at}.${k}`);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

function extraArgsRefusal(spec: ChildSettings, origin: SpecOrigin, security: SecurityConfig): SpecRefusal | undefined {
  const extra = spec.extra_args ?? [];
  const derived = derivedFlags(spec);
  let valueAllowed = false;
  for (let i = 0; i < extra.length; i++) {
    const arg = extra[i];
    const field = `extra_args[${i}]`;
    const name = flagName(arg);
    const owned = name !== undefined ? MANAGER_FLAGS[name] : undefined;
    if (owned !== undefined) return { kind: 'invalid', field, message: `${field}: '${name}' is ${owned}; no spec may give it` };
    if (origin === 'config') continue;
    if (name !== undefined && LONG_FLAG.test(name)) {
      if (derived.has(name) && !security.api_flag_overrides) {
        return {
          kind: 'forbidden',
          field,
          setting: 'security.api_flag_overrides',
          message: `${field}: '${name}' replaces a flag the manager derives from the spec; specs created through the API may do so only with security.api_flag_overrides = true in the config file (or set the spec field instead)`,
        };
      }
      valueAllowed = !arg.includes('=');
      continue;
    }
    if (valueAllowed && (!arg.startsWith('-') || NUMBER.test(arg))) {
      valueAllowed = false;
      continue;
    }
    return {
      kind: 'invalid',
      field,
      message: `${field}: neither a --flag, a --flag=value nor the value of the --flag before it: specs created through the API take long flags only (no short options, no positional arguments)`,
    };
  }
  return undefined;
}

/** The first reason these settings may not run from `origin`, or undefined. */
export function specRefusal(spec: ChildSettings, origin: SpecOrigin, security: SecurityConfig): SpecRefusal | undefined {
  const surrogate = loneSurrogateAt(spec, '');
  if (surrogate !== undefined) return { kind: 'invalid', field: surrogate, message: `${surrogate}: a lone UTF-16 surrogate: text must be well-formed Unicode` };
  const args = extraArgsRefusal(spec, origin, security);
  if (args !== undefined) return args;
  for (const name of Object.keys(spec.env ?? {})) {
    const field = `env.${name}`;
    const owned = MANAGER_ENV[name];
    if (owned !== undefined) return { kind: 'invalid', field, message: `${field}: ${name} is ${owned}; no spec may set it` };
    if (origin === 'api' && !security.api_env.includes(name)) {
      return {
        kind: 'forbidden',
        field,
        setting: 'security.api_env',
        message: `${field}: specs created through the API may set only the environment names listed in security.api_env in the config file, and ${name} is not one`,
      };
    }
  }
  if ((spec.runtime ?? 'router') === 'command' && spec.command === undefined) return { kind: 'invalid', field: 'command', message: "command: runtime 'command' needs the field 'command'" };
  if (origin === 'api' && (spec.runtime ?? 'router') === 'command' && !security.api_commands.includes(spec.command ?? '')) {
    return {
      kind: 'forbidden',
      field: 'command',
      setting: 'security.api_commands',
      message: `command: specs created through the API may run only the executables listed in security.api_commands in the config file, and '${spec.command}' is not one`,
    };
  }
  return undefined;
}

/** specRefusal as an error: BAD_REQUEST (400) or FORBIDDEN_SETTING (403, naming the setting). */
export function assertSpecAllowed(spec: ChildSettings, origin: SpecOrigin, security: SecurityConfig): void {
  const r = specRefusal(spec, origin, security);
  if (r !== undefined) throw new TeiplexError(r.kind === 'forbidden' ? 'FORBIDDEN_SETTING' : 'BAD_REQUEST', r.message);
}
