/**
 * The table views of `teiplex ctl`: each takes the manager's answers (the client's wire types)
 * and returns text. `-o json`
 * never comes here: it prints the answer as it came. Pure, with the time passed in.
 */
import type { CatalogModelInfo, GpuList, InstanceInfo, MemoryReport, ReconcileSummary, ReloadReport } from '../client/types.js';
import { cell, formatAge, formatDuration, formatList, formatMemory, NONE } from './format.js';
import { renderFields, renderTable } from './table.js';

const SERVING = new Set(['running', 'unhealthy']);
const HAS_UPTIME = new Set(['starting', 'running', 'unhealthy', 'stopping']);

/** Each catalog replica's measured footprint, by instance name (what `ls` shows as MEMORY). */
export function replicaFootprints(models: readonly CatalogModelInfo[]): Map<string, number | null> {
  return new Map(models.flatMap((m) => m.replicas.map((r) => [r.instance, r.footprint_mb] as const)));
}

export const INSTANCE_COLUMNS = ['NAME', 'MODEL', 'RUNTIME', 'STATUS', 'RESTARTS', 'UPTIME', 'PORT', 'GPU', 'MEMORY'] as const;

/**
 * `ctl ls`: one row per instance, in the manager's order. MEMORY is the measured footprint the
 * manager reports for catalog replicas (GET /models); plain instances show `-` (the instance
 * answer carries no footprint).
 */
export function instancesTable(instances: readonly InstanceInfo[], footprints: ReadonlyMap<string, number | null>): string {
  if (instances.length === 0) return 'No instances.';
  return renderTable(
    INSTANCE_COLUMNS,
    instances.map((i) => [
      i.name,
      i.model_id,
      i.runtime,
      i.status,
      String(i.restarts),
      HAS_UPTIME.has(i.status) ? formatDuration(i.uptime_secs) : NONE,
      String(i.port),
      formatList(i.gpu_ids),
      formatMemory(footprints.get(i.name)),
    ]),
  );
}

/** `ctl get NAME`: every field, one a line. */
export function instanceDetail(i: InstanceInfo, footprint: number | null | undefined, nowMs: number): string {
  const exit = i.last_exit;
  const outlier = i.outlier;
  return renderFields([
    ['Name', i.name],
    ['Model', i.model_id],
    ['Catalog model', cell(i.model)],
    ['Runtime', i.runtime],
    ['Status', i.status],
    ['Desired state', i.desired_state],
    ['PID', cell(i.pid)],
    ['Port', String(i.port)],
    ['Metrics port', cell(i.prometheus_port)],
    ['GPU', formatList(i.gpu_ids)],
    ['Memory', formatMemory(footprint)],
    ['Uptime', HAS_UPTIME.has(i.status) ? formatDuration(i.uptime_secs) : NONE],
    ['Restarts', String(i.restarts)],
    [
      'Last exit',
      exit === null ? NONE : `${exit.signal !== null ? `signal ${exit.signal}` : `code ${exit.code}`} at ${exit.time} (${formatAge(exit.time, nowMs)} ago)`,
    ],
    ['Health', `${i.health_check_failures} failing checks, last ${i.last_health_check === null ? 'never' : `${formatAge(i.last_health_check, nowMs)} ago`}`],
    ['Last error', cell(i.last_error)],
    [
      'Outlier',
      outlier.ejected
        ? `ejected until ${outlier.ejected_until} (${outlier.reason}); ${outlier.ejections} ejections`
        : `not ejected; ${outlier.ejections} ejections`,
    ],
    ['Created', `${i.created_at} (${formatAge(i.created_at, nowMs)} ago)`],
  ]);
}

export const MODEL_COLUMNS = ['NAME', 'MODEL', 'RUNTIME', 'STATE', 'REPLICAS', 'MEMORY', 'IDLE-TIMEOUT', 'LAST-USED', 'ALIASES'] as const;

/**
 * `ctl models`: REPLICAS is serving/max; MEMORY the measured footprint, else `~` and the spec's
 * estimate (memory_mb); LAST-USED how long ago.
 */
export function modelsTable(models: readonly CatalogModelInfo[], nowMs: number): string {
  if (models.length === 0) return 'No catalog models.';
  return renderTable(
    MODEL_COLUMNS,
    models.map((m) => [
      m.name,
      m.model_id,
      m.runtime,
      m.state,
      `${m.replicas.filter((r) => SERVING.has(r.status)).length}/${m.max_replicas}`,
      m.footprint_mb !== null ? formatMemory(m.footprint_mb) : m.memory_mb !== null ? `~${formatMemory(m.memory_mb)}` : NONE,
      m.idle_timeout_secs === null ? NONE : formatDuration(m.idle_timeout_secs),
      formatAge(m.last_used, nowMs),
      formatList(m.aliases),
    ]),
  );
}

/** `ctl load|unload`: one line per model. */
export function modelLine(verb: 'load' | 'unload', m: CatalogModelInfo): string {
  const serving = m.replicas.filter((r) => SERVING.has(r.status)).length;
  return `${m.name}: ${verb === 'load' ? 'loaded' : 'unloaded'} (state ${m.state}, ${serving}/${m.max_replicas} replicas serving)`;
}

export const MEMORY_COLUMNS = ['DEVICE', 'USED', 'BUDGET', 'USE', 'BUDGET-SOURCE', 'STANDBY'] as const;

export function memoryTable(devices: MemoryReport['devices']): string {
  if (devices.length === 0) return 'No devices.';
  return renderTable(
    MEMORY_COLUMNS,
    devices.map((d) => [
      d.device,
      formatMemory(d.used_mb),
      formatMemory(d.budget_mb),
      d.budget_mb === null || d.budget_mb <= 0 ? NONE : `${Math.round((d.used_mb / d.budget_mb) * 100)}%`,
      d.budget_source,
      String(d.standby.length),
    ]),
  );
}

export const GPU_COLUMNS = ['INDEX', 'NAME', 'MEMORY-USED', 'MEMORY-TOTAL', 'UTIL'] as const;

export function gpusTable(answer: GpuList): string {
  const note = answer.error ? `nvidia-smi: ${answer.error}` : undefined;
  if (answer.gpus.length === 0) return ['No GPUs.', ...(note ? [note] : [])].join('\n');
  const table = renderTable(
    GPU_COLUMNS,
    answer.gpus.map((g) => [
      String(g.index),
      g.name,
      formatMemory(g.memory_used_mib),
      formatMemory(g.memory_total_mib),
      g.utilization_percent === null ? NONE : `${g.utilization_percent}%`,
    ]),
  );
  return note ? `${table}\n${note}` : table;
}

/** `ctl reload`: what changed, one line per kind. */
export function reloadReport(r: ReloadReport): string {
  const part = (what: string, x: ReconcileSummary): string => {
    const bits = [
      ['added', x.added],
      ['removed', x.removed],
      ['changed', x.changed],
    ]
      .filter(([, names]) => names.length > 0)
      .map(([k, names]) => `${k} ${(names as string[]).join(', ')}`);
    const skipped = x.skipped.map((s) => `${s.name} (${s.reason})`);
    if (skipped.length > 0) bits.push(`skipped ${skipped.join(', ')}`);
    return `${what}: ${bits.length > 0 ? bits.join('; ') : 'no change'}${x.unchanged.length > 0 ? ` (${x.unchanged.length} unchanged)` : ''}`;
  };
  const lines = [part('instances', r.instances), part('models', r.models)];
  for (const s of r.swaps) lines.push(`swap ${s.instance}: ${s.outcome}${s.reason ? ` (${s.reason})` : ''}`);
  if (r.restart_required.length > 0) lines.push(`needs a manager restart: ${r.restart_required.join(', ')}`);
  return lines.join('\n');
}
