/**
 * What the data plane knows about an instance's child: its tei.v1 Info (max_client_batch_size,
 * model type, ...), fetched once per child (instance + spawnGeneration + port) and shared by
 * concurrent requests; whether it serves teiplex.v1.Batch (a teiplex router, until it says
 * UNIMPLEMENTED); and from its spec the flags that change what a request means (--auto-truncate,
 * SPLADE pooling, --served-model-name).
 */
import type { InstanceSpec } from '../../config/instance-spec.js';
import type { PbInfoResponse } from '../../tei/proto.js';
import type { Instance } from '../../supervisor/instance.js';
import type { CallTarget } from './child-call.js';
import { unary } from './child-call.js';
import { TEI } from './child-codec.js';

/** What a model can produce or do, as the typed routes name it. */
export type Capability = 'dense' | 'sparse' | 'multivector' | 'score' | 'classify';

export interface ChildInfo {
  readonly info: PbInfoResponse;
  /** Inputs per child call: TEI's max_client_batch_size (at least 1). */
  readonly maxClientBatchSize: number;
  readonly maxConcurrentRequests: number;
  readonly capabilities: readonly Capability[];
  /** What `truncate` means when a request leaves it out (the child's --auto-truncate). */
  readonly autoTruncate: boolean;
  /** teiplex.v1.Batch is served (cleared when the child answers UNIMPLEMENTED). */
  batch: boolean;
}

interface Entry {
  /** The Instance object (a deleted and re-created instance of the same name is another one). */
  instance: Instance;
  generation: number;
  port: number;
  info: Promise<ChildInfo>;
}

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

export function capabilitiesOf(spec: InstanceSpec, info: PbInfoResponse): Capability[] {
  switch (info.model_type) {
    case 'MODEL_TYPE_RERANKER':
      return ['score', 'classify'];
    case 'MODEL_TYPE_CLASSIFIER':
      return ['classify'];
    default:
      return isSplade(spec) ? ['sparse'] : ['dense', 'multivector'];
  }
}

export class ChildInfoCache {
  private readonly entries = new Map<string, Entry>();

  /** The child's info; fetched over `target` when this child has not been asked yet. */
  get(instance: Instance, target: CallTarget): Promise<ChildInfo> {
    const generation = instance.spawnGeneration;
    const port = instance.placement.port;
    const e = this.entries.get(instance.name);
    if (e !== undefined && e.instance === instance && e.generation === generation && e.port === port) return e.info;
    const info = unary(target, TEI.Info, {}).then(
      (i): ChildInfo => ({
        info: i,
        maxClientBatchSize: Math.max(1, i.max_client_batch_size),
        maxConcurrentRequests: Math.max(1, i.max_concurrent_requests),
        capabilities: capabilitiesOf(instance.spec, i),
        autoTruncate: autoTruncateOf(instance.spec),
        batch: (instance.spec.runtime ?? 'router') === 'router',
      }),
    );
    const entry: Entry = { instance, generation, port, info };
    this.entries.set(instance.name, entry);
    // A failed fetch is not kept: the next request asks again.
    info.catch(() => {
      if (this.entries.get(instance.name) === entry) this.entries.delete(instance.name);
    });
    return info;
  }
}
