/**
 * `ctl create NAME --model-id ... [flags] [-- extra args]` -> the body of POST /instances (the
 * instance spec of docs/manager.md). Only the form of each value is checked here (integers,
 * NAME=VALUE); what the manager allows (names, runtimes it may run, [security]) it checks and
 * answers itself. Pure.
 */
import { intValue, UsageError, type FlagValues } from './args.js';

/** The create body: the spec fields ctl sets (snake_case, as the manager reads them). */
export interface CreateSpec {
  name: string;
  model_id: string;
  runtime?: string;
  command?: string;
  port?: number;
  gpu_ids?: number[];
  aliases?: string[];
  pooling?: string;
  dtype?: string;
  revision?: string;
  max_batch_tokens?: number;
  max_concurrent_requests?: number;
  restart_policy?: string;
  env?: Record<string, string>;
  extra_args?: string[];
}

const V = 'create';

export function createSpec(name: string, flags: FlagValues, extra: readonly string[]): CreateSpec {
  const s = (k: string): string | undefined => (typeof flags[k] === 'string' ? (flags[k] as string) : undefined);
  const list = (k: string): string[] => (Array.isArray(flags[k]) ? (flags[k] as string[]) : []);
  const modelId = s('model-id');
  if (modelId === undefined || modelId === '') throw new UsageError("'ctl create' needs --model-id (a hub id or a local model directory)", V);
  const spec: CreateSpec = { name, model_id: modelId };
  for (const [flag, field] of [
    ['runtime', 'runtime'],
    ['command', 'command'],
    ['pooling', 'pooling'],
    ['dtype', 'dtype'],
    ['revision', 'revision'],
    ['restart-policy', 'restart_policy'],
  ] as const) {
    const v = s(flag);
    if (v !== undefined) spec[field] = v;
  }
  const port = s('port');
  if (port !== undefined) spec.port = intValue('port', port, 1, 65535, V);
  for (const [flag, field] of [
    ['max-batch-tokens', 'max_batch_tokens'],
    ['max-concurrent-requests', 'max_concurrent_requests'],
  ] as const) {
    const v = s(flag);
    if (v !== undefined) spec[field] = intValue(flag, v, 1, Number.MAX_SAFE_INTEGER, V);
  }
  const gpus = list('gpu').flatMap((g) => g.split(',').map((x) => intValue('gpu', x, 0, Number.MAX_SAFE_INTEGER, V)));
  if (gpus.length > 0) spec.gpu_ids = [...new Set(gpus)];
  const aliases = list('alias');
  if (aliases.length > 0) spec.aliases = aliases;
  const env = list('env');
  if (env.length > 0) {
    spec.env = {};
    for (const pair of env) {
      const eq = pair.indexOf('=');
      if (eq < 1) throw new UsageError(`--env must be NAME=VALUE, got '${pair}'`, V);
      spec.env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  if (extra.length > 0) spec.extra_args = [...extra];
  return spec;
}
