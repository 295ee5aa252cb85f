/**
 * Memory budgets and eviction: a device (`cpu`, `gpu0`, `gpu1`, ...) has a budget in MiB; what
 * runs on it uses its footprint (measured, else estimated). A start that would exceed the budget
 * first evicts replicas on that device in eviction-policy.ts's order (lowest reload cost, then least
 * recently used); those in use, just loaded, pinned, kept by min_replicas, or not on-demand at all
 * are not evicted. When evicting
 * everything evictable would still not make room, the plan fails with a reason naming the budget
 * and what holds the memory.
 */
import type { Config } from '../config/config.js';
import type { GpuInfo } from '../supervisor/gpus.js';
import { heldForNow, victimOrder, worthWaiting, type Holder } from './eviction-policy.js';

export interface Budget {
  device: string;
  /** MiB; Infinity: no limit known. */
  mb: number;
  /** Where the figure comes from (a config key, or the device's total minus a reserve). */
  source: string;
}

/** Something holding memory on a device (eviction-policy.ts's Holder: footprint, use, reload cost). */
export type Resident = Holder;

/** The devices an instance's GPU ids put it on (`cpu` without any). */
export function devicesOf(gpuIds: readonly number[]): string[] {
  return gpuIds.length === 0 ? ['cpu'] : gpuIds.map((g) => `gpu${g}`);
}

type BudgetSettings = Pick<Config, 'cpu_memory_budget_mb' | 'cpu_memory_reserve_mb' | 'gpu_memory_budget_mb' | 'gpu_memory_reserve_mb'>;

/** Budget per device: the CPU (host memory `hostMb`), and each GPU nvidia-smi lists. */
export function deviceBudgets(s: BudgetSettings, gpus: readonly GpuInfo[], hostMb: number): Map<string, Budget> {
  const out = new Map<string, Budget>();
  out.set(
    'cpu',
    s.cpu_memory_budget_mb !== undefined
      ? { device: 'cpu', mb: s.cpu_memory_budget_mb, source: 'cpu_memory_budget_mb' }
      : { device: 'cpu', mb: hostMb - s.cpu_memory_reserve_mb, source: 'host memory minus cpu_memory_reserve_mb' },
  );
  for (const g of gpus) {
    const device = `gpu${g.index}`;
    if (s.gpu_memory_budget_mb !== undefined) out.set(device, { device, mb: s.gpu_memory_budget_mb, source: 'gpu_memory_budget_mb' });
    else if (g.memory_total_mib !== null) out.set(device, { device, mb: g.memory_total_mib - s.gpu_memory_reserve_mb, source: 'GPU memory minus gpu_memory_reserve_mb' });
    else out.set(device, { device, mb: Infinity, source: 'GPU memory unknown' });
  }
  return out;
}

/** MiB the residents hold together. */
export function heldMb(residents: readonly Resident[]): number {
  return residents.reduce((a, r) => a + r.mb, 0);
}

/**
 * A refusal has two texts: `reason` goes to the caller (who may hold a restricted API key: it
 * names no other instance, only counts and MiB), `detail` to the manager's log (names the holders).
 */
export type Plan = { ok: true; evict: Resident[] } | { ok: false; reason: string; detail: string; wait: boolean };

const fmt = (mb: number): string => `${Math.round(mb)} MiB`;

/**
 * Which residents to evict so that `needMb` more fits the budget: eviction-policy.ts's order
 * (standby children, then the lowest reload cost, then the least recently used), never one kept
 * for good or held for now. A refusal says whether waiting could help (`wait`: it would fit once
 * what is held for now is free). `nowMs` (default: the present) decides minimum residency;
 * `preempt`: replicas in use may be taken too, after every idle one (eviction-policy.ts).
 */
export function planPlacement(what: string, needMb: number, budget: Budget, residents: readonly Resident[], nowMs: number = Date.now(), preempt = false): Plan {
  const used = heldMb(residents);
  if (used + needMb <= budget.mb) return { ok: true, evict: [] };
  if (needMb > budget.mb) {
    const reason = `${what} needs ~${fmt(needMb)} on ${budget.device}, more than its whole budget of ${fmt(budget.mb)} (${budget.source})`;
    return { ok: false, reason, detail: reason, wait: false };
  }
  const evict: Resident[] = [];
  let free = budget.mb - used;
  for (const r of victimOrder(residents, nowMs, preempt)) {
    if (free >= needMb) break;
    evict.push(r);
    free += r.mb;
  }
  if (free >= needMb) return { ok: true, evict };
  const why = (r: Resident): string | undefined => r.keep ?? heldForNow(r, nowMs);
  const head = `${what} needs ~${fmt(needMb)} on ${budget.device}: the budget is ${fmt(budget.mb)} (${budget.source}) and ${fmt(used)} are held by`;
  const kept = new Map<string, number>();
  for (const r of residents) {
    const w = why(r);
    if (w !== undefined) kept.set(w, (kept.get(w) ?? 0) + 1);
  }
  const counts = [...kept].map(([w, n]) => `${n} ${w}`).join(', ');
  const held = residents.map((r) => `${r.instance} (${fmt(r.mb)}${why(r) !== undefined ? `, ${why(r)}` : ''})`).join(', ');
  return {
    ok: false,
    reason: `${head} ${residents.length} instance${residents.length === 1 ? '' : 's'}${counts === '' ? '' : ` (${counts})`}; nothing more can be evicted`,
    detail: `${head} ${held}; nothing more can be evicted`,
    wait: worthWaiting(needMb, budget.mb, residents),
  };
}
