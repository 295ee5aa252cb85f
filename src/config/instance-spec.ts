/**
 * An instance's desired spec: the one schema for `[[instances]]` in the config, the state file
 * and the REST API's create body. Field names are snake_case as in tei-manager.
 */
import { Type, type Static } from '@sinclair/typebox';

/** Instance names become file names (logs) and label values: no way out of log_dir. */
export const INSTANCE_NAME_PATTERN = '^[a-z0-9][a-z0-9._-]{0,62}$';

const Port = Type.Integer({ minimum: 1, maximum: 65535 });

export const RestartPolicySchema = Type.Union([Type.Literal('always'), Type.Literal('on-failure'), Type.Literal('never')]);

export const RuntimeSchema = Type.Union([Type.Literal('router'), Type.Literal('tei'), Type.Literal('command')], {
  description: 'router: built-in `teiplex router`; tei: text-embeddings-router binary; command: any executable speaking tei.v1 gRPC on --port',
});
export type RuntimeKind = Static<typeof RuntimeSchema>;

export const InstanceSpecSchema = Type.Object(
  {
    name: Type.String({ pattern: INSTANCE_NAME_PATTERN, description: 'unique; [a-z0-9][a-z0-9._-]{0,62}' }),
    model_id: Type.String({ minLength: 1, maxLength: 1024 }),
    runtime: Type.Optional(RuntimeSchema),
    command: Type.Optional(Type.String({ minLength: 1, description: 'runtime = command: the executable' })),
    port: Type.Optional(Port),
    gpu_id: Type.Optional(Type.Integer({ minimum: 0 })),
    gpu_ids: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }), { minItems: 1, maxItems: 64 })),
    max_batch_tokens: Type.Optional(Type.Integer({ minimum: 1 })),
    max_concurrent_requests: Type.Optional(Type.Integer({ minimum: 1 })),
    pooling: Type.Optional(Type.Union([Type.Literal('cls'), Type.Literal('mean'), Type.Literal('splade'), Type.Literal('last-token')])),
    dtype: Type.Optional(Type.Union([Type.Literal('float32'), Type.Literal('float16')])),
    revision: Type.Optional(Type.String({ minLength: 1 })),
    prometheus_port: Type.Optional(Port),
    startup_timeout_secs: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    extra_args: Type.Optional(Type.Array(Type.String(), { maxItems: 256 })),
    inherit_hf_env: Type.Optional(
      Type.Boolean({ description: "runtime = command: pass the manager's HF_* variables and HUGGING_FACE_HUB_TOKEN (its hub token included) to the child; default false (router and tei children always get them)" }),
    ),
    env: Type.Optional(Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.String(), { additionalProperties: false, description: 'extra environment variables for the child' })),
    restart_policy: Type.Optional(RestartPolicySchema),
    aliases: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 64, description: 'more names the HTTP data plane resolves to this instance (besides its name and model_id)' }),
    ),
    embedding_cache: Type.Optional(
      Type.Boolean({ description: "keep this model's answers in the manager's embedding cache (embedding_cache_mb); default true" }),
    ),
    prompts: Type.Optional(
      Type.Record(Type.String({ minLength: 1, maxLength: 64 }), Type.String({ maxLength: 4096 }), {
        maxProperties: 32,
        description: "the model's prompts by name (e.g. query = \"query: \"), prepended by the manager for a request's input_type; instead of the model's config_sentence_transformers.json",
      }),
    ),
  },
  { additionalProperties: false },
);
export type InstanceSpec = Static<typeof InstanceSpecSchema>;
