/**
 * Config reload without a restart (`POST /config/reload`, SIGHUP): the config file is read and
 * validated again (an invalid one changes nothing), then applied as a diff: `[[instances]]` and
 * `[[models]]` that came from the config are added, replaced when their spec changed, or removed;
 * those whose spec did not change are untouched, and those created through the API are left
 * alone. The catalog's settings (budgets, timeouts, scale-up) take effect at once; any other key
 * that changed is reported as needing a restart.
 */
import { isDeepStrictEqual } from 'node:util';
import { TeiplexError } from '../common/errors.js';
import { loadConfig, type Config } from '../config/config.js';
import { ConfigError } from '../config/validate.js';
import type { ReconcileReport, Supervisor } from '../supervisor/supervisor.js';
import type { Catalog, CatalogReconcileReport, CatalogSettings } from './catalog.js';

/** The keys a reload applies (besides instances and models). */
const LIVE_KEYS = [
  'idle_timeout_secs',
  'cold_start_timeout_secs',
  'cold_start_queue_size',
  'cold_start_queue_mb',
  'gpu_memory_budget_mb',
  'gpu_memory_reserve_mb',
  'cpu_memory_budget_mb',
  'cpu_memory_reserve_mb',
  'default_memory_mb',
  'scale_up_inflight',
  'scale_up_after_secs',
  'nvidia_smi_path',
  'standby_children',
] as const satisfies ReadonlyArray<keyof CatalogSettings>;

export function catalogSettings(c: Config): CatalogSettings {
  return Object.fromEntries(LIVE_KEYS.map((k) => [k, c[k]])) as CatalogSettings;
}

export interface ReloadReport {
  instances: ReconcileReport;
  models: CatalogReconcileReport;
  /** Keys whose new value needs a manager restart (left as they were). */
  restart_required: string[];
}

export class ConfigReloader {
  constructor(
    private readonly path: string | undefined,
    private current: Config,
    private readonly supervisor: Supervisor,
    private readonly catalog: Catalog,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  private running: Promise<ReloadReport> | undefined;

  /** Reload once at a time: a second call while one runs gets the same outcome. */
  reload(): Promise<ReloadReport> {
    this.running ??= this.apply().finally(() => (this.running = undefined));
    return this.running;
  }

  private async apply(): Promise<ReloadReport> {
    if (this.path === undefined) throw new TeiplexError('CONFIG_INVALID', 'the manager was started without a config file (--config or TEIPLEX_CONFIG): there is nothing to reload');
    let next: Config;
    try {
      next = await loadConfig(this.path, this.env);
    } catch (err) {
      if (err instanceof ConfigError) throw new TeiplexError('CONFIG_INVALID', `${err.message} (nothing was changed)`);
      throw err;
    }
    const live = new Set<string>([...LIVE_KEYS, 'instances', 'models']);
    const restart_required = (Object.keys(next) as Array<keyof Config>).filter((k) => !live.has(k) && !isDeepStrictEqual(next[k], this.current[k]));
    const instances = await this.supervisor.reconcile(next.instances);
    const models = await this.catalog.reconcile(next.models, catalogSettings(next));
    // What a later reload compares against: the applied parts new, the rest as running.
    this.current = { ...this.current, ...catalogSettings(next), instances: next.instances, models: next.models };
    return { instances, models, restart_required };
  }
}
