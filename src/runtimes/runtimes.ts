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
      return { command: process.execPath, args: [settings.teiplexScript ?? projectPath('bin', 'teiplex.js'), 'router', ...args, ...routerDevice(ctx)], env };
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
