/**
 * What an instance's spec says, through the child's own flags and environment, about what a
 * request means: --auto-truncate (what `truncate` means when a request leaves it out), SPLADE
 * pooling (a sparse model), --served-model-name (another name that resolves to the instance).
 */
import type { InstanceSpec } from './instance-spec.js';

/** The value of `--flag v` / `--flag=v` in a child's extra args, or true for a bare `--flag`. */
export function extraArg(spec: InstanceSpec, flag: string): string | true | undefined {
  const args = spec.extra_args ?? [];
  let found: string | true | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === flag) found = i + 1 < args.length && !args[i + 1].startsWith('--') ? args[++i] : true;
    else if (a.startsWith(`${flag}=`)) found = a.slice(flag.length + 1);
  }
  return found;
}

const truthy = (v: string | true | undefined): boolean => v === true || (v !== undefined && /^(1|true|yes|on)$/i.test(v));

export function autoTruncateOf(spec: InstanceSpec): boolean {
  const flag = extraArg(spec, '--auto-truncate');
  if (flag !== undefined) return truthy(flag);
  return truthy(spec.env?.AUTO_TRUNCATE);
}

export function isSplade(spec: InstanceSpec): boolean {
  const pooling = extraArg(spec, '--pooling') ?? spec.pooling ?? spec.env?.POOLING;
  return pooling === 'splade';
}

/** Names besides the instance's name and model_id that resolve to it: `aliases`, --served-model-name. */
export function aliasesOf(spec: InstanceSpec): string[] {
  const out = [...(spec.aliases ?? [])];
  const served = extraArg(spec, '--served-model-name') ?? spec.env?.SERVED_MODEL_NAME;
  if (typeof served === 'string' && served !== '' && !out.includes(served)) out.push(served);
  return out;
}
