/**
 * A catalog model's rolling swap (`POST /models/{name}/swap`, docs/on-demand.md): the model's
 * replica settings changed (model_id, revision, pooling, extra_args, ...) with every running
 * replica swapped in turn (swap.ts). The first replica's swap is the check: its probe decides, and
 * the model's new spec is persisted just before that replica switches (Catalog.respec), so a
 * replica started after it (cold start, scale-up) runs the new version. The other running
 * replicas follow with the same probe; one whose swap is refused or fails, and one that was
 * starting on the old spec meanwhile, is stopped rather than left serving the old version (the
 * catalog starts replicas of the new spec as traffic asks). A model without a running replica is
 * refused: there is nothing to compare the new version with (load it first).
 */
import { isDeepStrictEqual } from 'node:util';
import type { Catalog } from '../catalog/catalog.js';
import type { CatalogModel } from '../catalog/catalog-model.js';
import { TeiplexError, type ErrorCode } from '../common/errors.js';
import type { InstanceSpec } from '../config/instance-spec.js';
import { replicaSpec, type ModelSpec } from '../config/model-spec.js';
import type { Instance } from '../supervisor/instance.js';
import { SwapRefusal, type SwapReport, type SwapRequest, type Swapper } from './swap.js';

/** The replica settings a model swap may change: a model spec's fields but its name and the catalog's own. */
export type ModelSwapChange = Partial<Omit<InstanceSpec, 'name' | 'port' | 'gpu_id' | 'gpu_ids' | 'prometheus_port'>>;

export interface ModelSwapRequest extends Omit<SwapRequest, 'spec'> {
  spec: ModelSwapChange;
}

export interface ModelSwapReport {
  model: string;
  outcome: 'accepted' | 'refused' | 'failed';
  code: ErrorCode | null;
  reason: string | null;
  /** The model spec fields the swap changes, old and new values. */
  changed: Record<string, { old: unknown; new: unknown }>;
  /** Each replica's swap report, in order (the first one's checks decided). */
  replicas: SwapReport[];
  /** Replicas stopped rather than left on the old version, and why. */
  stopped: Array<{ instance: string; reason: string }>;
  timings_ms: { total: number };
}

export interface ModelSwapperOptions {
  catalog: Catalog;
  swapper: Swapper;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

/** The model's new spec, and the fields that change; BAD_REQUEST when nothing does. */
export function swappedModelSpec(m: CatalogModel, change: ModelSwapChange): { next: ModelSpec; changed: ModelSwapReport['changed'] } {
  const next: ModelSpec = { ...m.spec, ...change, name: m.name };
  const changed: ModelSwapReport['changed'] = {};
  for (const k of Object.keys(change) as Array<keyof ModelSwapChange>) {
    if (!isDeepStrictEqual(m.spec[k], next[k])) changed[k] = { old: m.spec[k] ?? null, new: next[k] ?? null };
  }
  if (Object.keys(changed).length === 0) throw new TeiplexError('BAD_REQUEST', `the swap changes nothing: catalog model '${m.name}' already has this spec`, { param: 'spec' });
  return { next, changed };
}

/** The settings every replica of `spec` runs with (what a replica's swap applies; its name and GPU stay). */
function replicaSettings(spec: ModelSpec): Partial<InstanceSpec> {
  const { name: _n, gpu_id: _g, ...settings } = replicaSpec(spec, 1, undefined);
  return settings;
}

/** Does this replica already run these settings? */
function runs(i: Instance, settings: Partial<InstanceSpec>): boolean {
  return (Object.keys(settings) as Array<keyof InstanceSpec>).every((k) => isDeepStrictEqual(i.spec[k], settings[k]));
}

export class ModelSwapper {
  /** Models with a swap in progress (one at a time each). */
  private readonly busy = new Set<string>();

  constructor(private readonly o: ModelSwapperOptions) {}

  async swapModel(name: string, req: ModelSwapRequest): Promise<ModelSwapReport> {
    const { catalog, swapper } = this.o;
    const t0 = Date.now();
    const m = catalog.get(name);
    if (this.busy.has(m.name)) throw new TeiplexError('SWAP_IN_PROGRESS', `a swap of catalog model '${m.name}' is already in progress`);
    const { next, changed } = swappedModelSpec(m, req.spec);
    catalog.checkRespec(m, next);
    const running = catalog.replicas(m).filter((i) => i.status === 'running');
    if (running.length === 0) {
      throw new TeiplexError('NOT_RUNNING', `catalog model '${m.name}' has no running replica to compare the new version with: load it first (POST /models/${m.name}/load), then swap`);
    }
    const settings = replicaSettings(next);
    const replicaReq: SwapRequest = { ...req, spec: settings };
    const report: ModelSwapReport = { model: m.name, outcome: 'accepted', code: null, reason: null, changed, replicas: [], stopped: [], timings_ms: { total: 0 } };
    this.busy.add(m.name);
    try {
      // The first replica decides: its probe, and the model's spec persisted just before it switches.
      const first = running[0]!;
      try {
        report.replicas.push(await swapper.swapInstance(first.name, replicaReq, { replica: true, beforeFlip: () => catalog.respec(m, next) }));
      } catch (err) {
        if (!(err instanceof SwapRefusal)) throw err;
        report.replicas.push(err.report as SwapReport);
        report.outcome = (err.report as SwapReport).outcome;
        report.code = err.code;
        report.reason = `replica '${first.name}': ${err.message}`;
        report.timings_ms.total = Date.now() - t0;
        this.o.log(`swap of catalog model '${m.name}' ${report.outcome}`, { swap: report });
        throw new SwapRefusal(err.code, report.reason, report);
      }
      // The others in turn; any replica still on the old settings after that is stopped.
      for (const i of catalog.replicas(m)) {
        if (runs(i, settings)) continue;
        let why: string;
        if (i.status === 'running') {
          try {
            report.replicas.push(await swapper.swapInstance(i.name, replicaReq, { replica: true }));
            continue;
          } catch (err) {
            if (err instanceof SwapRefusal) report.replicas.push(err.report as SwapReport);
            why = `its swap did not complete: ${(err as Error).message}`;
          }
        } else {
          why = `it was ${i.status} on the old spec`;
        }
        await catalog.stopReplica(m, i.name).catch((err: Error) => this.o.log('stopping a replica left on the old spec failed', { model: m.name, instance: i.name, error: err.message }));
        report.stopped.push({ instance: i.name, reason: why });
      }
    } finally {
      this.busy.delete(m.name);
    }
    report.timings_ms.total = Date.now() - t0;
    this.o.log(`swap of catalog model '${m.name}' accepted`, { swap: report });
    return report;
  }
}
