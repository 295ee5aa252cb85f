/**
 * What a runtime module produces for the supervisor: the executable, its argv and its
 * environment. The TEI flag set is shared by every runtime (the built-in router takes the same
 * flags as text-embeddings-router).
 */
import type { InstanceSpec } from '../config/instance-spec.js';

export interface ChildCommand {
  command: string;
  args: string[];
  env: Record<string, string>;
}

export interface ChildContext {
  spec: InstanceSpec;
  /** gRPC port the child must serve on. */
  port: number;
  /** Prometheus port allocated for the child (TEI binds 9000 by default otherwise). */
  prometheusPort?: number;
  /** GPU indices for CUDA_VISIBLE_DEVICES; empty: no GPU. */
  gpuIds: number[];
  /** The manager's environment, filtered by childEnv(). */
  managerEnv: NodeJS.ProcessEnv;
}

/** The flag name of an argv element (`--port=1` -> `--port`), or undefined for values. */
function flagName(arg: string): string | undefined {
  if (!arg.startsWith('--')) return undefined;
  const eq = arg.indexOf('=');
  return eq < 0 ? arg : arg.slice(0, eq);
}

/**
 * TEI's flags for an instance, then `extra_args`. A flag given in extra_args replaces ours, so no
 * flag appears twice (TEI refuses duplicates).
 */
export function teiArgs(ctx: ChildContext): string[] {
  const { spec } = ctx;
  const ours: Array<[string, string | undefined]> = [
    ['--model-id', spec.model_id],
    ['--port', String(ctx.port)],
    ['--hostname', '127.0.0.1'],
    ['--json-output', undefined],
  ];
  if (spec.revision !== undefined) ours.push(['--revision', spec.revision]);
  if (spec.max_batch_tokens !== undefined) ours.push(['--max-batch-tokens', String(spec.max_batch_tokens)]);
  if (spec.max_concurrent_requests !== undefined) ours.push(['--max-concurrent-requests', String(spec.max_concurrent_requests)]);
  if (spec.pooling !== undefined) ours.push(['--pooling', spec.pooling]);
  if (spec.dtype !== undefined) ours.push(['--dtype', spec.dtype]);
  if (ctx.prometheusPort !== undefined) ours.push(['--prometheus-port', String(ctx.prometheusPort)]);
  const extra = spec.extra_args ?? [];
  const overridden = new Set(extra.map(flagName).filter((f): f is string => f !== undefined));
  const args: string[] = [];
  for (const [flag, value] of ours) {
    if (overridden.has(flag)) continue;
    args.push(flag);
    if (value !== undefined) args.push(value);
  }
  return [...args, ...extra];
}
