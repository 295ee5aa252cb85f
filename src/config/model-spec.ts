/**
 * A catalog model's spec: `[[models]]` in the config, the state file and the body of
 * `POST /models`. The instance settings of the control plane (runtime, batch limits, pooling,
 * extra_args, env, ...) plus what makes a model on-demand: replicas, idle timeout, a memory
 * estimate. Each replica is an instance whose spec is derived here (`replicaSpec`).
 */
import { Type, type Static } from '@sinclair/typebox';
import { InstanceSpecSchema, type InstanceSpec } from './instance-spec.js';

/** Catalog names leave room for a replica suffix within the instance name pattern (63 characters). */
export const MODEL_NAME_PATTERN = '^[a-z0-9][a-z0-9._-]{0,55}$';

/** The instance settings a model shares with every replica (no name, port or GPU: those are per replica). */
const ReplicaSettings = Type.Omit(InstanceSpecSchema, ['name', 'port', 'gpu_id', 'gpu_ids', 'prometheus_port']);

export const ModelSpecSchema = Type.Composite(
  [
    ReplicaSettings,
    Type.Object({
      name: Type.Optional(Type.String({ pattern: MODEL_NAME_PATTERN, description: 'catalog name (default: derived from model_id); replicas are <name>-1, <name>-2, ...' })),
      gpu_ids: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1, maxItems: 64, description: 'GPUs a replica may be placed on (one each); none: CPU' })),
      on_demand: Type.Optional(Type.Boolean({ description: 'true (default): started by the first request, stopped when idle; false: kept loaded (min_replicas at least 1)' })),
      idle_timeout_secs: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'stop a replica after this long without a request (default: idle_timeout_secs of the config)' })),
      min_replicas: Type.Optional(Type.Integer({ minimum: 0, maximum: 64, description: 'replicas kept loaded (never idle-stopped or evicted); 0: may scale to zero' })),
      max_replicas: Type.Optional(Type.Integer({ minimum: 1, maximum: 64, description: 'replicas started under sustained queueing, at most (default 1)' })),
      memory_mb: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'memory estimate per replica (MiB); replaced by the measured footprint after the first start' })),
      pinned: Type.Optional(Type.Boolean({ description: 'true: once loaded, its replicas are never evicted for another model nor idle-stopped (they count against the budget); an unload still stops them' })),
      min_resident_secs: Type.Optional(Type.Number({ minimum: 0, description: 'a replica loaded less than this long ago is not evicted for another model (default: min_resident_secs of the config)' })),
    }),
  ],
  { additionalProperties: false },
);
export type ModelSpec = Static<typeof ModelSpecSchema>;

/** The catalog name of a spec: its `name`, else its model_id made into a name (`BAAI/bge-m3` -> `baai-bge-m3`). */
export function modelName(spec: Pick<ModelSpec, 'name' | 'model_id'>): string {
  if (spec.name !== undefined) return spec.name;
  const slug = spec.model_id
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 56)
    .replace(/[-.]+$/, '');
  return slug === '' ? 'model' : slug;
}

/** Replicas a model keeps loaded whatever the traffic. */
export function pinnedReplicas(spec: ModelSpec): number {
  const min = spec.min_replicas ?? 0;
  return spec.on_demand === false ? Math.max(1, min) : min;
}

export function maxReplicas(spec: ModelSpec): number {
  return Math.max(spec.max_replicas ?? 1, pinnedReplicas(spec));
}

/** The instance spec of replica `index` (1-based) of a model, on `gpuId` (undefined: CPU). */
export function replicaSpec(spec: ModelSpec, index: number, gpuId: number | undefined): InstanceSpec {
  const { name: _n, gpu_ids: _g, on_demand: _o, idle_timeout_secs: _i, min_replicas: _min, max_replicas: _max, memory_mb: _m, pinned: _p, min_resident_secs: _r, ...settings } = spec;
  const name = modelName(spec);
  const aliases = [...new Set([...(spec.aliases ?? []), name])];
  return { ...settings, name: `${name}-${index}`, aliases, ...(gpuId !== undefined ? { gpu_id: gpuId } : {}) };
}

/** The names a request may use for a model: its catalog name, model_id and aliases. */
export function namesOf(spec: ModelSpec): string[] {
  return [...new Set([modelName(spec), spec.model_id, ...(spec.aliases ?? [])])];
}
