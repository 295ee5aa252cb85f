/**
 * The wire shapes of the manager's REST answers (docs/manager.md "REST API", docs/on-demand.md),
 * declared here so the client depends on no server code. Field names are the wire's (snake_case).
 */

/** An instance's last exit. */
export interface ExitInfo {
  code: number | null;
  signal: string | null;
  time: string;
}

/** Outlier detection: out of balancing until `ejected_until` (then probed), how often so far, why. */
export interface OutlierInfo {
  ejected: boolean;
  ejected_until: string | null;
  ejections: number;
  reason: string | null;
}

/** GET /instances/{name}. */
export interface InstanceInfo {
  name: string;
  model_id: string;
  runtime: string;
  port: number;
  prometheus_port: number | null;
  /** e.g. pending, starting, running, stopping, stopped, backoff, failed. */
  status: string;
  /** running, stopped (deleted in a DELETE's answer). */
  desired_state: string;
  pid: number | null;
  gpu_id: number | null;
  gpu_ids: number[];
  created_at: string;
  uptime_secs: number;
  restarts: number;
  last_exit: ExitInfo | null;
  health_check_failures: number;
  last_health_check: string | null;
  last_error: string | null;
  /** The catalog model this instance is a replica of (managed through /models), or null. */
  model: string | null;
  outlier: OutlierInfo;
}

/** POST /instances: an instance's spec (the config's `[[instances]]` table). */
export interface InstanceSpecInput {
  /** Unique; [a-z0-9][a-z0-9._-]{0,62}. */
  name: string;
  model_id: string;
  runtime?: 'router' | 'tei' | 'command';
  command?: string;
  port?: number;
  gpu_id?: number;
  gpu_ids?: number[];
  max_batch_tokens?: number;
  max_concurrent_requests?: number;
  pooling?: 'cls' | 'mean' | 'splade' | 'last-token';
  dtype?: 'float32' | 'float16';
  revision?: string;
  prometheus_port?: number;
  startup_timeout_secs?: number;
  extra_args?: string[];
  inherit_hf_env?: boolean;
  env?: Record<string, string>;
  restart_policy?: 'always' | 'on-failure' | 'never';
  aliases?: string[];
}

/** GET /instances/{name}/logs. */
export interface LogRange {
  lines: string[];
  start: number;
  end: number;
  total_lines: number;
}

/** One replica of a catalog model. */
export interface ReplicaInfo {
  instance: string;
  status: string;
  device: string;
  pid: number | null;
  inflight_requests: number;
  footprint_mb: number | null;
  last_used: string | null;
}

/** GET /models/{name}: a catalog (on-demand) model. */
export interface CatalogModelInfo {
  name: string;
  model_id: string;
  aliases: string[];
  runtime: string;
  /** config or api. */
  source: string;
  /** available | loading | loaded | unloading | failed. */
  state: string;
  failure: { reason: string; at: string } | null;
  on_demand: boolean;
  min_replicas: number;
  max_replicas: number;
  idle_timeout_secs: number | null;
  memory_mb: number | null;
  footprint_mb: number | null;
  footprint_kind: string | null;
  replicas: ReplicaInfo[];
  waiting_requests: number;
  last_used: string | null;
  created_at: string;
}

/** GET /gpus: what nvidia-smi lists; `error` says why the list is empty when it is. */
export interface GpuList {
  gpus: Array<{ index: number; uuid: string; name: string; memory_total_mib: number | null; memory_used_mib: number | null; utilization_percent: number | null }>;
  error?: string;
}

/** GET /memory: each device's budget and use. */
export interface MemoryReport {
  devices: Array<{
    device: string;
    budget_mb: number | null;
    budget_source: string;
    used_mb: number;
    /** Standby children on this device (counted in used_mb). */
    standby: Array<Record<string, unknown> & { footprint_mb: number | null }>;
  }>;
}

/** What one reconcile did, by name. */
export interface ReconcileSummary {
  added: string[];
  removed: string[];
  changed: string[];
  unchanged: string[];
  skipped: Array<{ name: string; reason: string }>;
}

/** POST /config/reload. */
export interface ReloadReport {
  instances: ReconcileSummary;
  swaps: Array<{ instance: string; outcome: 'accepted' | 'held' | 'not swapped'; reason: string | null }>;
  models: ReconcileSummary;
  /** Keys whose new value needs a manager restart (left as they were). */
  restart_required: string[];
}
