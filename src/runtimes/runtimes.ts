/**
 * The runtime kinds: how each builds its child's command line.
 * - router: the built-in `teiplex router` (this package's own CLI, run by the same Node binary);
 *   pinned to a GPU it runs with `--device cuda` unless extra_args or TEIPLEX_DEVICE choose;
 * - tei: HuggingFace's text-embeddings-router (gRPC build) at `tei_binary_path`;
 * - command: any executable that takes TEI's flags and speaks tei.v1 gRPC on --port (from the
 *   REST API: only those in security.api_commands; it gets the manager's HF_* variables only with
 *   the spec's inherit_hf_env).
 */
import { projectPath } from '../common/paths.js';
import type { RuntimeKind } from '../config/instance-spec.js';
import { teiArgs, type ChildCommand, type ChildContext } from './child-command.js';
import { childEnv } from './child-env.js';
import { spawnLine } from './redact.js';

export interface RuntimeSettings {
  teiBinaryPath: string;
  /** The teiplex CLI script run by `node` for the router runtime. */
  teiplexScript?: string;
  /** Router children: the optimized-model cache (TEIPLEX_ONNX_CACHE_DIR, absolute); undefined: none. */
  onnxCacheDir?: string;
}

/** The env variable that gives a router child its optimized-model cache (router --onnx-cache-dir). */
const ONNX_CACHE_ENV = 'TEIPLEX_ONNX_CACHE_DIR';

/**
 * A standby router (`teiplex router --standby`, a router child started ahead without a model) for
 * a child on `gpuIds`: the environment any router child there gets from a spec without `env`, so
 * a replica whose command has exactly this environment can take it over (handOverArgs).
 */
export function standbyCommand(gpuIds: number[], managerEnv: NodeJS.ProcessEnv, settings: RuntimeSettings): Omit<ChildCommand, 'logLine'> {
  const env = routerEnv(childEnv(managerEnv, undefined, gpuIds), undefined, settings);
  return { command: process.execPath, args: [routerScript(settings), 'router', '--standby'], env };
}

/** The flags a standby router takes over for `cmd` (a router child's command), or undefined when it cannot (another program). */
export function handOverArgs(cmd: Omit<ChildCommand, 'logLine'>, settings: RuntimeSettings): string[] | undefined {
  if (cmd.command !== process.execPath || cmd.args[0] !== routerScript(settings) || cmd.args[1] !== 'router') return undefined;
  return cmd.args.slice(2);
}

function routerScript(settings: RuntimeSettings): string {
  return settings.teiplexScript ?? projectPath('bin', 'teiplex.js');
}

/** A router child's environment: the optimized-model cache unless the spec's env says otherwise. */
function routerEnv(env: Record<string, string>, specEnv: Record<string, string> | undefined, settings: RuntimeSettings): Record<string, string> {
  if (settings.onnxCacheDir !== undefined && specEnv?.[ONNX_CACHE_ENV] === undefined) env[ONNX_CACHE_ENV] = settings.onnxCacheDir;
  return env;
}

export function buildChildCommand(kind: RuntimeKind, ctx: ChildContext, settings: RuntimeSettings): ChildCommand {
  const { command, args, env } = childCommand(kind, ctx, settings);
  return { command, args, env, logLine: spawnLine({ command, args }, ctx.spec.env) };
}

function childCommand(kind: RuntimeKind, ctx: ChildContext, settings: RuntimeSettings): Omit<ChildCommand, 'logLine'> {
  // The manager's hub token goes to its own router and the configured TEI binary; to a `command` only when asked.
  const env = childEnv(ctx.managerEnv, ctx.spec.env, ctx.gpuIds, { hf: kind !== 'command' || ctx.spec.inherit_hf_env === true });
  const args = teiArgs(ctx);
  switch (kind) {
    case 'router':
      return { command: process.execPath, args: [routerScript(settings), 'router', ...args, ...routerDevice(ctx)], env: routerEnv(env, ctx.spec.env, settings) };
    case 'tei':
      return { command: settings.teiBinaryPath, args, env };
    case 'command':
      if (ctx.spec.command === undefined) throw new Error(`instance ${ctx.spec.name}: runtime 'command' needs 'command'`);
      return { command: ctx.spec.command, args, env };
  }
}

/** A router on a GPU uses it: `--device cuda`, unless the spec chooses (extra_args --device, env TEIPLEX_DEVICE). */
function routerDevice(ctx: ChildContext): string[] {
  if (ctx.gpuIds.length === 0) return [];
  const chosen = (ctx.spec.extra_args ?? []).some((a) => a === '--device' || a.startsWith('--device=')) || ctx.spec.env?.TEIPLEX_DEVICE !== undefined;
  return chosen ? [] : ['--device', 'cuda'];
}
