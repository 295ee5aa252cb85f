/**
 * `ctl create NAME --model-id ... [flags] [-- extra args]` -> the body of POST /instances (the
 * instance spec of docs/manager.md). Only the form of each value is checked here (integers,
 * NAME=VALUE); what the manager allows (names, runtimes it may run, [security]) it checks and
 * answers itself. Pure.
 */
import type { InstanceSpecInput } from '../client/types.js';
import { intValue, UsageError, type FlagValues } from './args.js';

/** The create body: POST /instances's spec, its enumerated values already checked by args.ts. */
export type CreateSpec = InstanceSpecInput;

const V = 'create';

export function createSpec(name: string, flags: FlagValues, extra: readonly string[]): CreateSpec {
  const s = (k: string): string | undefined => (typeof flags[k] === 'string' ? (flags[k] as string) : undefined);
  const list = (k: string): string[] => (Array.isArray(flags[k]) ? (flags[k] as string[]) : []);
  const modelId = s('model-id');
  if (modelId === undefined || modelId === '') throw new UsageError("'ctl create' needs --model-id (a hub id or a local model directory)", V);
  const spec: CreateSpec = { name, model_id: modelId };
  const runtime = s('runtime');
  if (runtime !== undefined) spec.runtime = runtime as InstanceSpecInput['runtime'];
  const pooling = s('pooling');
  if (pooling !== undefined) spec.pooling = pooling as InstanceSpecInput['pooling'];
  const dtype = s('dtype');
  if (dtype !== undefined) spec.dtype = dtype as InstanceSpecInput['dtype'];
  const policy = s('restart-policy');
  if (policy !== undefined) spec.restart_policy = policy as InstanceSpecInput['restart_policy'];
  for (const [flag, field] of [
    ['command', 'command'],
    ['revision', 'revision'],
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
