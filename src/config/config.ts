/**
 * The manager's configuration: TOML file + environment -> one validated Config. The only place
 * defaults live. Precedence: TEIPLEX_* environment, then tei-manager's names (TEI_MANAGER_*,
 * TEI_BINARY_PATH), then the file, then the defaults below.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { parseTomlPlain } from './toml.js';
import { InstanceSpecSchema } from './instance-spec.js';
import { ModelSpecSchema, modelName, namesOf } from './model-spec.js';
import { exposureRefusal } from './exposure.js';
import { MANAGER_ENV, specRefusal } from './spec-policy.js';
import { check, ConfigError } from './validate.js';

const Port = Type.Integer({ minimum: 1, maximum: 65535 });
/** Durations in seconds; fractions allowed (tests use sub-second intervals). */
const Secs = Type.Number({ exclusiveMinimum: 0 });

export const RestartConfigSchema = Type.Object(
  {
    initial_backoff_ms: Type.Integer({ minimum: 0 }),
    backoff_factor: Type.Number({ minimum: 1 }),
    max_backoff_ms: Type.Integer({ minimum: 0 }),
    /** Running healthy this long resets the back-off and the restart count. */
    reset_after_secs: Secs,
    /** More restarts than this inside `window_secs` -> failed. */
    max_restarts: Type.Integer({ minimum: 0 }),
    window_secs: Secs,
  },
  { additionalProperties: false },
);

/** `[failover]`: a call whose child went away before answering is retried once on another replica (docs/multiplexer.md, docs/data-plane.md). */
export const FailoverConfigSchema = Type.Object(
  {
    enabled: Type.Boolean(),
    /** Retries in flight may be this share (%) of the calls in flight across the front ends ... */
    budget_percent: Type.Number({ minimum: 0, maximum: 100 }),
    /** ... or this many, whichever is more. */
    min_retry_concurrency: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);

/** `[outlier_detection]`: replicas that fail in a row, or answer far slower than their peers, leave balancing for a while (src/routing/outlier.ts). */
export const OutlierDetectionConfigSchema = Type.Object(
  {
    /** This many failures in a row attributable to the replica eject it. */
    consecutive_failures: Type.Integer({ minimum: 1 }),
    /** An ejection lasts this long times the number of ejections so far ... */
    base_ejection_secs: Secs,
    /** ... and at most this long. */
    max_ejection_secs: Secs,
    /** A replica whose latency average exceeds its peers' median this many times is ejected ... */
    slow_factor: Type.Number({ exclusiveMinimum: 1 }),
    /** ... once it and a peer have answered this many calls. */
    slow_min_requests: Type.Integer({ minimum: 1 }),
    /** At most this share of a model's serving replicas is ejected at once (never the last one). */
    max_ejected_percent: Type.Number({ minimum: 0, maximum: 100 }),
  },
  { additionalProperties: false },
);

/** `[auth.mtls]`: TLS with required client certificates on the gRPC and the REST/HTTP listeners. */
export const MtlsConfigSchema = Type.Object(
  {
    /** PEM files (paths relative to the working directory). */
    server_cert: Type.String({ minLength: 1 }),
    server_key: Type.String({ minLength: 1 }),
    /** CA bundle that client certificates must chain to. */
    client_ca: Type.String({ minLength: 1 }),
    /** Subject allow-list: `ATTR=value` pairs separated by commas (e.g. "CN=client-a,O=acme"); see docs/security.md. */
    allowed_subjects: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    /** SAN allow-list: DNS names, URIs (spiffe://...), IP addresses, e-mail addresses, matched exactly. */
    allowed_sans: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
  },
  { additionalProperties: false },
);

/** `[[auth.api_keys]]`: one API key, stored as the hex SHA-256 of the key. */
export const ApiKeyConfigSchema = Type.Object(
  {
    name: Type.String({ minLength: 1 }),
    key_sha256: Type.String({ pattern: '^[0-9a-fA-F]{64}$' }),
    /** Only these instances (by name) on the data plane. */
    instances: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    /** Only instances of these model ids on the data plane. */
    models: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    /** May use the REST admin API (when auth.admin_requires_key). */
    admin: Type.Optional(Type.Boolean()),
    /** The key's default priority lane (docs/tenancy.md): interactive unless set; x-teiplex-priority overrides. */
    priority: Type.Optional(Type.Union([Type.Literal('interactive'), Type.Literal('bulk')])),
    /** Quotas (docs/tenancy.md); absent: unlimited. */
    tokens_per_minute: Type.Optional(Type.Integer({ minimum: 1 })),
    requests_per_minute: Type.Optional(Type.Integer({ minimum: 1 })),
    /** `[[auth.api_keys.limits]]`: per-model quotas (a field left out: the key's value). */
    limits: Type.Optional(
      Type.Array(
        Type.Object(
          { model: Type.String({ minLength: 1 }), tokens_per_minute: Type.Optional(Type.Integer({ minimum: 1 })), requests_per_minute: Type.Optional(Type.Integer({ minimum: 1 })) },
          { additionalProperties: false },
        ),
      ),
    ),
  },
  { additionalProperties: false },
);

export const AuthConfigSchema = Type.Object(
  {
    mtls: Type.Optional(MtlsConfigSchema),
    api_keys: Type.Array(ApiKeyConfigSchema),
    /** Health (gRPC grpc.health.v1, HTTP /health and /health/all) needs no API key and no allow-listed certificate. */
    open_health: Type.Boolean(),
    /** HTTP /metrics likewise. */
    open_metrics: Type.Boolean(),
    /** gRPC server reflection and the OpenAPI document (/docs) likewise. */
    open_reflection: Type.Boolean(),
    /** With API keys configured, the REST admin API needs a key with `admin = true`. */
    admin_requires_key: Type.Boolean(),
  },
  { additionalProperties: false },
);

/**
 * `[security]`: what the config file (the trust anchor) lets specs created through the REST API
 * do, and whether the admin API may be served on the network without credentials
 * (docs/security.md). Specs in this file are trusted.
 */
export const SecurityConfigSchema = Type.Object(
  {
    /** Serve on a non-loopback listen_host while the admin API needs neither an API key nor a client certificate (a warning at every boot). */
    allow_remote_admin_without_auth: Type.Boolean(),
    /** Executables (absolute paths, compared exactly) that API-created specs may run with runtime = "command"; empty: none. */
    api_commands: Type.Array(Type.String({ minLength: 1 })),
    /** Environment variable names API-created specs may set in `env`; empty: no `env` from the API. */
    api_env: Type.Array(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' })),
    /** API-created specs may give extra_args flags that replace a flag the manager derives from the spec (--max-batch-tokens, --pooling, ...). */
    api_flag_overrides: Type.Boolean(),
  },
  { additionalProperties: false },
);

export const ConfigSchema = Type.Object(
  {
    api_port: Type.Integer({ minimum: 0, maximum: 65535 }),
    grpc_port: Type.Integer({ minimum: 0, maximum: 65535 }),
    /** Address the API and gRPC front ends bind; loopback by default (a network address needs [auth] or security.allow_remote_admin_without_auth). */
    listen_host: Type.String(),
    state_file: Type.String({ minLength: 1 }),
    log_dir: Type.String({ minLength: 1 }),
    /** One child log file's size cap before rotation, and how many rotated files to keep. */
    log_max_bytes: Type.Integer({ minimum: 1024 }),
    log_max_files: Type.Integer({ minimum: 1 }),
    /** Lines of each child's output kept in memory (API log tail). */
    log_tail_lines: Type.Integer({ minimum: 1 }),
    /** Longest child output line kept (bytes); the rest of a longer line is dropped and the line marked truncated. */
    log_line_max_bytes: Type.Integer({ minimum: 256, maximum: 1024 * 1024 }),
    /** Child output waiting to be written to disk, per instance (bytes); beyond it lines are dropped and counted. */
    log_buffer_bytes: Type.Integer({ minimum: 64 * 1024 }),
    health_check_interval_secs: Secs,
    health_check_timeout_secs: Secs,
    max_failures_before_restart: Type.Integer({ minimum: 1 }),
    startup_timeout_secs: Secs,
    graceful_shutdown_timeout_secs: Type.Number({ minimum: 0 }),
    max_instances: Type.Optional(Type.Integer({ minimum: 1 })),
    instance_port_start: Port,
    instance_port_end: Port,
    tei_binary_path: Type.String({ minLength: 1 }),
    /** GPU discovery command (nvidia-smi's CSV query interface). */
    nvidia_smi_path: Type.String({ minLength: 1 }),
    auto_restore: Type.Boolean(),
    /** gRPC multiplexer: a unary call's deadline to the child; on a stream, the longest wait for an owed answer. */
    grpc_request_timeout_secs: Secs,
    /** gRPC multiplexer: largest message accepted or sent, both to clients and to children (MiB). */
    grpc_max_message_size_mb: Type.Number({ exclusiveMinimum: 0, maximum: 2047 }),
    /** gRPC multiplexer: most calls (HTTP/2 streams) one client connection has open at once; more wait (or are refused with REFUSED_STREAM). */
    grpc_max_concurrent_streams: Type.Integer({ minimum: 1, maximum: 2147483647 }),
    /** gRPC multiplexer: HTTP/2 keepalive pings on client and child connections with calls in flight. */
    grpc_keepalive_interval_secs: Secs,
    grpc_keepalive_timeout_secs: Secs,
    /** gRPC multiplexer, Arrow RPCs: most rows (texts) in one request. */
    arrow_max_rows: Type.Integer({ minimum: 1 }),
    /** gRPC multiplexer, Arrow RPCs: most bytes a request's Arrow bodies may decompress to (MiB). */
    arrow_max_decompressed_mb: Type.Number({ exclusiveMinimum: 0, maximum: 16384 }),
    /** gRPC multiplexer, Arrow RPCs: most decoded request bytes all Arrow calls together hold (MiB); a call waits for its share until its deadline. */
    arrow_decode_budget_mb: Type.Number({ exclusiveMinimum: 0, maximum: 65536 }),
    /** gRPC multiplexer, Arrow RPCs: worker threads that read requests and write answers, off the event loop. */
    arrow_decode_threads: Type.Integer({ minimum: 1, maximum: 64 }),
    /** Priority lanes: a bulk call waiting this long (ms) for a child's input window is served as if interactive, in arrival order. */
    priority_aging_ms: Type.Integer({ minimum: 0, maximum: 3_600_000 }),
    /** Priority lanes: most inputs in one bulk sub-batch to a child; the bulk lane holds at most two per child. */
    bulk_chunk_rows: Type.Integer({ minimum: 1, maximum: 256 }),
    /** gRPC multiplexer, Arrow RPCs: serve `noop: true` (zeros without calling the model, for transport benchmarks); else FAILED_PRECONDITION. */
    arrow_allow_noop: Type.Boolean(),
    /** Batch jobs (docs/batch.md): uploaded files, jobs and their results live here (relative: to the state file's folder). */
    batch_dir: Type.String({ minLength: 1 }),
    /** Batch jobs: largest uploaded file (MiB); beyond: 413. */
    batch_max_file_mb: Type.Number({ exclusiveMinimum: 0, maximum: 1048576 }),
    /** Batch jobs: most bytes of files (uploads and results) one API key keeps (MiB); beyond: 413 on upload. */
    batch_storage_mb_per_key: Type.Number({ exclusiveMinimum: 0, maximum: 16777216 }),
    /** Batch jobs: most files one API key keeps; beyond: 429 on upload. */
    batch_files_per_key: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
    /** Batch jobs: files (and finished jobs) are deleted this long after they were written; 0: kept until deleted. */
    batch_retention_hours: Type.Number({ minimum: 0, maximum: 87600 }),
    /** Batch jobs: most rows (JSONL lines, table rows) in one input file. */
    batch_max_rows: Type.Integer({ minimum: 1, maximum: 100_000_000 }),
    /** Batch jobs: most jobs running at once (all keys); more wait in submission order. */
    batch_max_running_jobs: Type.Integer({ minimum: 1, maximum: 64 }),
    /** Batch jobs: most unfinished jobs one API key may have; beyond: 429. */
    batch_jobs_per_key: Type.Integer({ minimum: 1, maximum: 10_000 }),
    /** Batch jobs: rows in one checkpointed chunk (one call on the bulk lane; a restart redoes at most the chunks in flight). */
    batch_chunk_rows: Type.Integer({ minimum: 1, maximum: 4096 }),
    /** Batch jobs: chunks of one job in flight at once (its share of a child: this many calls on the bulk lane). */
    batch_chunks_in_flight: Type.Integer({ minimum: 1, maximum: 64 }),
    /** HTTP data plane: its own listener on this port (0: ephemeral); unset: served on api_port. */
    data_port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
    /** HTTP data plane: most inputs in one request (split into child calls of max_client_batch_size); beyond: 413. */
    max_request_inputs: Type.Integer({ minimum: 1 }),
    /** HTTP data plane: largest request body (MiB); beyond: 413. */
    http_body_limit_mb: Type.Number({ exclusiveMinimum: 0, maximum: 1024 }),
    /** HTTP data plane: largest answer a request may ask for (MiB), estimated before any child work (/embed_all, multivector); beyond: 413. */
    http_response_limit_mb: Type.Number({ exclusiveMinimum: 0, maximum: 16384 }),
    embedding_cache_mb: Type.Number({ minimum: 0, maximum: 1048576 }),
    /** HTTP (admin API and data plane): a request's headers and body must have arrived within this; else 408 and the connection is closed. */
    http_request_timeout_secs: Secs,
    /** HTTP: an idle keep-alive connection is closed after this. */
    http_keep_alive_timeout_secs: Secs,
    /** HTTP: an answer being sent to a client that reads nothing for this long is abandoned and the connection closed. */
    http_send_timeout_secs: Secs,
    /** Status page: most GET /events streams open at once (all clients); more -> 503 TOO_MANY_STREAMS. */
    events_max_streams: Type.Integer({ minimum: 1, maximum: 10_000 }),
    /** Status page: most bytes (KiB) waiting to be sent to one /events client; a client that falls further behind is disconnected. */
    events_buffer_kb: Type.Integer({ minimum: 1, maximum: 1_048_576 }),
    /** Status page: an /events stream with nothing to send gets a keep-alive comment this often. */
    events_keep_alive_secs: Secs,
    /** On-demand models: a replica idle this long (nothing in flight, no request) is stopped; per model: idle_timeout_secs. */
    idle_timeout_secs: Secs,
    /** On-demand models: longest a request waits for a cold start; then 503 / UNAVAILABLE with Retry-After (the start goes on). */
    cold_start_timeout_secs: Secs,
    /** On-demand models: most requests waiting for one model's cold start; more -> 503 / RESOURCE_EXHAUSTED. */
    cold_start_queue_size: Type.Integer({ minimum: 1 }),
    /** On-demand models: most bytes of request bodies waiting for cold starts, all models together (MiB); more -> 503 / RESOURCE_EXHAUSTED. */
    cold_start_queue_mb: Type.Number({ exclusiveMinimum: 0 }),
    /** On-demand models: a replica loaded less than this long ago is not evicted for another model's start (it may still be idle-stopped); per model: min_resident_secs. */
    min_resident_secs: Type.Number({ minimum: 0 }),
    /** On-demand models: the model waiting longest for memory, after this long, takes a replica in use (it stops taking calls; those in flight finish); 0: never. */
    memory_wait_preempt_secs: Type.Number({ minimum: 0 }),
    /** Memory budget per GPU (MiB); unset: the GPU's total (nvidia-smi) minus gpu_memory_reserve_mb. */
    gpu_memory_budget_mb: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    gpu_memory_reserve_mb: Type.Number({ minimum: 0 }),
    /** Memory budget for children on the CPU (MiB); unset: the host's memory minus cpu_memory_reserve_mb. */
    cpu_memory_budget_mb: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    cpu_memory_reserve_mb: Type.Number({ minimum: 0 }),
    /** A model's memory estimate before its first start when it gives no memory_mb (MiB). */
    default_memory_mb: Type.Number({ exclusiveMinimum: 0 }),
    /** On-demand models: router children started ahead on the CPU (runtime loaded, no model) that the next cold start takes over; 0: none. */
    standby_children: Type.Integer({ minimum: 0, maximum: 8 }),
    /** Router children on the CPU keep optimized ONNX graphs here and load them at the next start (relative: to the state file's folder); "": off. */
    onnx_cache_dir: Type.String(),
    /** Replicas: every replica of a model with at least this many requests in flight ... */
    scale_up_inflight: Type.Integer({ minimum: 1 }),
    /** ... for this long starts another one (up to max_replicas). */
    scale_up_after_secs: Secs,
    restart: RestartConfigSchema,
    failover: FailoverConfigSchema,
    outlier_detection: OutlierDetectionConfigSchema,
    instances: Type.Array(InstanceSpecSchema),
    /** The catalog of on-demand models (docs/on-demand.md). */
    models: Type.Array(ModelSpecSchema),
    auth: AuthConfigSchema,
    security: SecurityConfigSchema,
  },
  { additionalProperties: false },
);
export type SecurityConfig = Static<typeof SecurityConfigSchema>;
export type Config = Static<typeof ConfigSchema>;
export type RestartConfig = Static<typeof RestartConfigSchema>;
export type FailoverConfig = Static<typeof FailoverConfigSchema>;
export type OutlierDetectionConfig = Static<typeof OutlierDetectionConfigSchema>;
export type AuthConfig = Static<typeof AuthConfigSchema>;
export type MtlsConfig = Static<typeof MtlsConfigSchema>;
export type ApiKeyConfig = Static<typeof ApiKeyConfigSchema>;

export const DEFAULTS = {
  api_port: 9000,
  grpc_port: 9001,
  listen_host: '127.0.0.1',
  state_file: 'teiplex-state.toml',
  log_dir: 'teiplex-logs',
  log_max_bytes: 10 * 1024 * 1024,
  log_max_files: 3,
  log_tail_lines: 1000,
  log_line_max_bytes: 16 * 1024,
  log_buffer_bytes: 4 * 1024 * 1024,
  health_check_interval_secs: 10,
  health_check_timeout_secs: 5,
  max_failures_before_restart: 3,
  startup_timeout_secs: 300,
  graceful_shutdown_timeout_secs: 30,
  instance_port_start: 8080,
  instance_port_end: 8180,
  tei_binary_path: 'text-embeddings-router',
  nvidia_smi_path: 'nvidia-smi',
  auto_restore: true,
  grpc_request_timeout_secs: 30,
  grpc_max_message_size_mb: 64,
  grpc_max_concurrent_streams: 100,
  grpc_keepalive_interval_secs: 30,
  grpc_keepalive_timeout_secs: 10,
  arrow_max_rows: 100_000,
  arrow_max_decompressed_mb: 64,
  arrow_decode_budget_mb: 256,
  arrow_decode_threads: 2,
  arrow_allow_noop: false,
  priority_aging_ms: 2000,
  bulk_chunk_rows: 8,
  batch_dir: 'teiplex-batch',
  batch_max_file_mb: 512,
  batch_storage_mb_per_key: 4096,
  batch_files_per_key: 500,
  batch_retention_hours: 168,
  batch_max_rows: 1_000_000,
  batch_max_running_jobs: 2,
  batch_jobs_per_key: 16,
  batch_chunk_rows: 256,
  batch_chunks_in_flight: 2,
  max_request_inputs: 256,
  http_body_limit_mb: 2,
  http_response_limit_mb: 64,
  embedding_cache_mb: 256,
  http_request_timeout_secs: 30,
  http_keep_alive_timeout_secs: 5,
  http_send_timeout_secs: 30,
  events_max_streams: 16,
  events_buffer_kb: 1024,
  events_keep_alive_secs: 15,
  idle_timeout_secs: 600,
  cold_start_timeout_secs: 300,
  cold_start_queue_size: 1024,
  cold_start_queue_mb: 64,
  min_resident_secs: 1,
  memory_wait_preempt_secs: 10,
  gpu_memory_reserve_mb: 1024,
  cpu_memory_reserve_mb: 2048,
  default_memory_mb: 1024,
  scale_up_inflight: 8,
  scale_up_after_secs: 5,
  standby_children: 1,
  onnx_cache_dir: 'teiplex-onnx-cache',
  restart: { initial_backoff_ms: 1000, backoff_factor: 2, max_backoff_ms: 60_000, reset_after_secs: 300, max_restarts: 10, window_secs: 600 },
  failover: { enabled: true, budget_percent: 20, min_retry_concurrency: 3 },
  outlier_detection: { consecutive_failures: 5, base_ejection_secs: 30, max_ejection_secs: 300, slow_factor: 3, slow_min_requests: 20, max_ejected_percent: 50 },
  instances: [],
  models: [],
  auth: { api_keys: [], open_health: true, open_metrics: true, open_reflection: true, admin_requires_key: true },
  security: { allow_remote_admin_without_auth: false, api_commands: [], api_env: [], api_flag_overrides: false },
} as const satisfies Config;

/** The keys that are tables or lists, not scalars (no environment override). */
const NOT_SCALAR = ['restart', 'failover', 'outlier_detection', 'instances', 'models', 'auth', 'security'] as const;
type ScalarKey = Exclude<keyof Config, (typeof NOT_SCALAR)[number]>;
const SCALAR_KEYS = Object.keys(DEFAULTS).filter((k) => !(NOT_SCALAR as readonly string[]).includes(k)) as ScalarKey[];
/** Optional scalar keys (no default): numbers. */
const OPTIONAL_NUMBER_KEYS = ['max_instances', 'data_port', 'gpu_memory_budget_mb', 'cpu_memory_budget_mb'] as const;

/** tei-manager's environment names that are not simply TEI_MANAGER_<KEY>. */
const TEI_MANAGER_ALIASES: Record<string, ScalarKey> = {
  TEI_BINARY_PATH: 'tei_binary_path',
  TEI_MANAGER_HEALTH_CHECK_INTERVAL: 'health_check_interval_secs',
};

function envValue(key: ScalarKey, raw: string, name: string): unknown {
  const kind = typeof DEFAULTS[key as keyof typeof DEFAULTS];
  if (kind === 'number' || (OPTIONAL_NUMBER_KEYS as readonly string[]).includes(key)) {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n)) throw new ConfigError(`${name}: expected a number for ${key}, got '${raw}'`);
    return n;
  }
  if (kind === 'boolean') {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new ConfigError(`${name}: expected true or false for ${key}, got '${raw}'`);
  }
  return raw;
}

/** Environment overrides as a partial config (TEIPLEX_* wins over tei-manager's names). */
export function envOverrides(env: NodeJS.ProcessEnv): Partial<Config> {
  const out: Record<string, unknown> = {};
  const keys: ScalarKey[] = [...SCALAR_KEYS, ...OPTIONAL_NUMBER_KEYS];
  for (const key of keys) {
    const up = key.toUpperCase();
    for (const name of [`TEI_MANAGER_${up}`, ...Object.keys(TEI_MANAGER_ALIASES).filter((a) => TEI_MANAGER_ALIASES[a] === key), `TEIPLEX_${up}`]) {
      const raw = env[name];
      if (raw !== undefined) out[key] = envValue(key, raw, name);
    }
  }
  return out as Partial<Config>;
}

/** Merge defaults, file and environment, and validate; throws ConfigError naming the key. */
export function resolveConfig(file: Record<string, unknown>, env: NodeJS.ProcessEnv, where = 'config'): Config {
  /** A table of the file, merged over its defaults; a value that is not a table is refused by name. */
  const table = <K extends 'restart' | 'failover' | 'outlier_detection' | 'auth' | 'security'>(key: K): (typeof DEFAULTS)[K] => {
    const v = file[key];
    if (v !== undefined && (typeof v !== 'object' || v === null || Array.isArray(v))) throw new ConfigError(`${where}: ${key}: expected a table`);
    return { ...DEFAULTS[key], ...(v as object | undefined) };
  };
  const merged = {
    ...DEFAULTS,
    ...file,
    ...envOverrides(env),
    restart: table('restart'),
    failover: table('failover'),
    outlier_detection: table('outlier_detection'),
    instances: file.instances ?? [],
    models: file.models ?? [],
    auth: table('auth'),
    security: table('security'),
  };
  const config = check(ConfigSchema, merged, where);
  if (config.instance_port_start > config.instance_port_end) {
    throw new ConfigError(`${where}: instance_port_start (${config.instance_port_start}) must not exceed instance_port_end (${config.instance_port_end})`);
  }
  const names = new Set<string>();
  config.instances.forEach((spec, i) => {
    if (names.has(spec.name)) throw new ConfigError(`${where}: instances[${i}].name: '${spec.name}' appears twice`);
    names.add(spec.name);
  });
  if (config.max_instances !== undefined && config.instances.length > config.max_instances) {
    throw new ConfigError(`${where}: ${config.instances.length} instances exceed max_instances (${config.max_instances})`);
  }
  const od = config.outlier_detection;
  if (od.max_ejection_secs < od.base_ejection_secs) {
    throw new ConfigError(`${where}: outlier_detection.max_ejection_secs (${od.max_ejection_secs}) must not be less than outlier_detection.base_ejection_secs (${od.base_ejection_secs})`);
  }
  checkModels(config, where);
  checkApiKeys(config.auth, where);
  checkSecurity(config, where);
  return config;
}

/** Two catalog models share a name (catalog name, model_id or alias). */
export class DuplicateModelNameError extends ConfigError {}

/** Catalog models: no name, model_id or alias shared by two models; replica bounds consistent. */
export function checkModels(config: Pick<Config, 'models'>, where: string): void {
  const owner = new Map<string, number>();
  config.models.forEach((spec, i) => {
    const at = `${where}: models[${i}]`;
    if ((spec.min_replicas ?? 0) > (spec.max_replicas ?? Math.max(1, spec.min_replicas ?? 0))) {
      throw new ConfigError(`${at}: min_replicas (${spec.min_replicas}) exceeds max_replicas (${spec.max_replicas})`);
    }
    if ((spec.runtime ?? 'router') === 'command' && spec.command === undefined) throw new ConfigError(`${at}: runtime 'command' needs the field 'command'`);
    for (const n of namesOf(spec)) {
      const other = owner.get(n);
      if (other !== undefined && other !== i) throw new DuplicateModelNameError(`${at}: '${n}' already names models[${other}] ('${modelName(config.models[other])}')`);
      owner.set(n, i);
    }
  });
}

/** API keys: unique names and hashes; an admin key is not restricted (the admin API manages every instance). */
function checkApiKeys(auth: AuthConfig, where: string): void {
  const names = new Map<string, number>();
  const hashes = new Map<string, number>();
  auth.api_keys.forEach((k, i) => {
    const at = `${where}: auth.api_keys[${i}]`;
    if (names.has(k.name)) throw new ConfigError(`${at}.name: '${k.name}' appears twice (also auth.api_keys[${names.get(k.name)}])`);
    names.set(k.name, i);
    const hash = k.key_sha256.toLowerCase();
    if (hashes.has(hash)) throw new ConfigError(`${at}.key_sha256: the same key as auth.api_keys[${hashes.get(hash)}]`);
    hashes.set(hash, i);
    if (k.admin === true && (k.instances !== undefined || k.models !== undefined)) {
      throw new ConfigError(`${at}: admin = true with instances/models restrictions: the admin API manages every instance; use a separate key for the admin API`);
    }
    checkKeyLimits(k, `${at} ('${k.name}')`);
  });
}

/** A key's `[[auth.api_keys.limits]]`: each names a model once and sets a limit. */
function checkKeyLimits(k: ApiKeyConfig, at: string): void {
  const seen = new Map<string, number>();
  (k.limits ?? []).forEach((l, j) => {
    if (seen.has(l.model)) throw new ConfigError(`${at}.limits[${j}].model: '${l.model}' appears twice (also limits[${seen.get(l.model)}])`);
    seen.set(l.model, j);
    if (l.tokens_per_minute === undefined && l.requests_per_minute === undefined) {
      throw new ConfigError(`${at}.limits[${j}] (model '${l.model}'): set tokens_per_minute and/or requests_per_minute`);
    }
  });
}

/**
 * `[security]` and what it guards: executables absolute, no manager-reserved name in api_env,
 * the file's own specs free of the manager's flags and environment names, and the admin API not
 * open to the network without the opt-in.
 */
function checkSecurity(config: Config, where: string): void {
  const s = config.security;
  s.api_commands.forEach((cmd, i) => {
    if (!path.isAbsolute(cmd)) throw new ConfigError(`${where}: security.api_commands[${i}]: '${cmd}' is not an absolute path`);
  });
  s.api_env.forEach((name, i) => {
    if (MANAGER_ENV[name] !== undefined) throw new ConfigError(`${where}: security.api_env[${i}]: ${name} is ${MANAGER_ENV[name]}; no spec may set it`);
  });
  const refuse = (list: string, specs: Parameters<typeof specRefusal>[0][]): void =>
    specs.forEach((spec, i) => {
      const r = specRefusal(spec, 'config', s);
      if (r !== undefined) throw new ConfigError(`${where}: ${list}[${i}].${r.message}`);
    });
  refuse('instances', config.instances);
  refuse('models', config.models);
  const exposed = exposureRefusal(config);
  if (exposed !== undefined) throw new ConfigError(`${where}: ${exposed}`);
}

/** Read and validate a config file (absent path: defaults + environment). */
export async function loadConfig(path: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  if (path === undefined) return resolveConfig({}, env);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`${path}: cannot read config: ${(err as Error).message}`);
  }
  let parsed: Record<string, unknown>;
  try {
    parsed = parseTomlPlain(text);
  } catch (err) {
    throw new ConfigError(`${path}: invalid TOML: ${(err as Error).message}`);
  }
  return resolveConfig(parsed, env, path);
}
