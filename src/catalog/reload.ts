/**
 * Config reload without a restart (`POST /config/reload`, SIGHUP): the config file is read and
 * validated again (an invalid one changes nothing), then applied as a diff: `[[instances]]` and
 * `[[models]]` that came from the config are added, replaced when their spec changed, or removed;
 * those whose spec did not change are untouched, and those created through the API are left
 * alone. A running config instance whose new spec keeps its port open is swapped instead
 * (`swap`, src/swap/: the new version beside the old, checked, then the flip; no gap); a swap
 * the checks refuse, or whose new version does not start, leaves the old one serving, reported
 * in `skipped`. The catalog's settings (budgets, timeouts, scale-up) take effect at once; any other key
 * that changed is reported as needing a restart.
 */
import { isDeepStrictEqual } from 'node:util';
import { TeiplexError } from '../common/errors.js';
import { loadConfig, type Config } from '../config/config.js';
import type { InstanceSpec } from '../config/instance-spec.js';
import { ConfigError } from '../config/validate.js';
import type { ReconcileReport, Supervisor } from '../supervisor/supervisor.js';
import type { Catalog, CatalogReconcileReport, CatalogSettings } from './catalog.js';

/** The keys a reload applies (besides instances and models). */
const LIVE_KEYS = [
  'idle_timeout_secs',
  'cold_start_timeout_secs',
  'cold_start_queue_size',
  'cold_start_queue_mb',
  'min_resident_secs',
  'memory_wait_preempt_secs',
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

function withoutPorts(spec: InstanceSpec): InstanceSpec {
  const { port: _p, prometheus_port: _pp, ...rest } = spec;
  return rest;
}

export function catalogSettings(c: Config): CatalogSettings {
  return Object.fromEntries(LIVE_KEYS.map((k) => [k, c[k]])) as CatalogSettings;
}

/** A rolling swap of a config instance to its new spec (src/swap/); `held`: refused or failed, the old version serves on. */
export type ReloadSwap = (name: string, spec: InstanceSpec) => Promise<{ outcome: 'accepted' } | { outcome: 'held' | 'not swapped'; reason: string }>;

export interface ReloadReport {
  instances: ReconcileReport;
  /** Config instances swapped (no gap) rather than replaced, and how each went. */
  swaps: Array<{ instance: string; outcome: 'accepted' | 'held' | 'not swapped'; reason: string | null }>;
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
    private readonly swap?: ReloadSwap,
    /** Applies what of `[auth]` can change live (the keys' quotas); true when that was all that changed. */
    private readonly liveAuth?: (next: Config['auth']) => boolean,
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
    const { specs, swaps } = await this.swapInstances(next.instances);
    const instances = await this.supervisor.reconcile(specs);
    for (const s of swaps) {
      if (s.outcome === 'not swapped' || !instances.unchanged.includes(s.instance)) continue;
      instances.unchanged = instances.unchanged.filter((n) => n !== s.instance);
      if (s.outcome === 'accepted') instances.changed.push(s.instance);
      else instances.skipped.push({ name: s.instance, reason: `the old version serves on: ${s.reason}` });
    }
    const models = await this.catalog.reconcile(next.models, catalogSettings(next));
    // What a later reload compares against: the applied parts new, the rest as running.
    this.current = { ...this.current, ...catalogSettings(next), instances: next.instances, models: next.models };
    if (this.liveAuth?.(next.auth) === true) return { instances, swaps, models, restart_required: restart_required.filter((k) => k !== 'auth') };
    return { instances, swaps, models, restart_required };
  }

  /**
   * Swap the running config instances whose new spec leaves their ports to allocation. What the
   * reconcile is given: the config's specs, but a held instance's current one (it is not replaced).
   */
  private async swapInstances(wanted: readonly InstanceSpec[]): Promise<{ specs: InstanceSpec[]; swaps: ReloadReport['swaps'] }> {
    const swaps: ReloadReport['swaps'] = [];
    const specs: InstanceSpec[] = [];
    for (const spec of wanted) {
      const i = this.supervisor.find(spec.name);
      const sup = this.supervisor;
      const swappable =
        this.swap !== undefined &&
        i !== undefined &&
        sup.sourceOf(spec.name) === 'config' &&
        sup.ownerOf(spec.name) === undefined &&
        sup.desiredState(spec.name) === 'running' &&
        i.status === 'running' &&
        spec.port === undefined &&
        spec.prometheus_port === undefined;
      if (!swappable || isDeepStrictEqual(spec, withoutPorts(i.spec))) {
        specs.push(spec);
        continue;
      }
      const r = await this.swap(spec.name, spec);
      swaps.push({ instance: spec.name, outcome: r.outcome, reason: r.outcome === 'accepted' ? null : r.reason });
      specs.push(r.outcome === 'held' ? i.spec : spec);
    }
    return { specs, swaps };
  }
}
