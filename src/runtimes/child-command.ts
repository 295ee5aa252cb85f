/**
 * What a runtime module produces for the supervisor: the executable, its argv and its
 * environment. The TEI flag set is shared by every runtime (the built-in router takes the same
 * flags as text-embeddings-router).
 */
import type { InstanceSpec } from '../config/instance-spec.js';
import { ALWAYS_FLAGS, flagName, MANAGER_FLAGS, SPEC_FLAGS } from '../config/spec-policy.js';

export interface ChildCommand {
  command: string;
  args: string[];
  env: Record<string, string>;
  /** What the manager logs for this spawn: `spawn: <command> <args> (env: ...)`, secrets redacted (redact.ts). */
  logLine: string;
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

/**
 * extra_args without the manager's own flags (MANAGER_FLAGS) and their values. Specs are checked
 * before they are accepted (config/spec-policy.ts); this keeps a spec that slipped past (an old
 * state file) from moving the child off its port or address all the same.
 */
function withoutManagerFlags(extra: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < extra.length; i++) {
    const name = flagName(extra[i]);
    if (name !== undefined && MANAGER_FLAGS[name] !== undefined) {
      if (!extra[i].includes('=')) i++; // and its value
      continue;
    }
    out.push(extra[i]);
  }
  return out;
}

/**
 * TEI's flags for an instance, then `extra_args`. The manager's own flags (--model-id, --port,
 * --hostname, --prometheus-port) come first and are never replaced; a flag derived from the spec
 * (--max-batch-tokens, --pooling, ...) given in extra_args replaces ours, so no flag appears twice
 * (TEI refuses duplicates). Whether a spec may do that is decided before (config/spec-policy.ts).
 */
export function teiArgs(ctx: ChildContext): string[] {
  const { spec } = ctx;
  const derived: Array<[string, string | undefined]> = ALWAYS_FLAGS.map((f) => [f, undefined]);
  for (const [flag, field] of SPEC_FLAGS) if (spec[field] !== undefined) derived.push([flag, String(spec[field])]);
  const extra = withoutManagerFlags(spec.extra_args ?? []);
  const overridden = new Set(extra.map(flagName).filter((f): f is string => f !== undefined));
  const args = ['--model-id', spec.model_id, '--port', String(ctx.port), '--hostname', '127.0.0.1'];
  for (const [flag, value] of derived) {
    if (overridden.has(flag)) continue;
    args.push(flag);
    if (value !== undefined) args.push(value);
  }
  if (ctx.prometheusPort !== undefined) args.push('--prometheus-port', String(ctx.prometheusPort));
  return [...args, ...extra];
}
