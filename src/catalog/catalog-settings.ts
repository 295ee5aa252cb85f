/**
 * The config keys the catalog reads (budgets, timeouts, scale-up, nvidia-smi); a config reload
 * replaces them at once (reload.ts lists them as its live keys).
 */
import type { Config } from '../config/config.js';

export type CatalogSettings = Pick<
  Config,
  | 'idle_timeout_secs'
  | 'cold_start_timeout_secs'
  | 'cold_start_queue_size'
  | 'cold_start_queue_mb'
  | 'min_resident_secs'
  | 'memory_wait_preempt_secs'
  | 'gpu_memory_budget_mb'
  | 'gpu_memory_reserve_mb'
  | 'cpu_memory_budget_mb'
  | 'cpu_memory_reserve_mb'
  | 'default_memory_mb'
  | 'scale_up_inflight'
  | 'scale_up_after_secs'
  | 'nvidia_smi_path'
  | 'standby_children'
>;
