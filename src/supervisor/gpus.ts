/**
 * GPU discovery through nvidia-smi's CSV query interface.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { TeiplexError } from '../common/errors.js';

export interface GpuInfo {
  index: number;
  uuid: string;
  name: string;
  memory_total_mib: number | null;
  memory_used_mib: number | null;
  utilization_percent: number | null;
}

export const NVIDIA_SMI_QUERY = ['--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu', '--format=csv,noheader,nounits'];

/** A number, or null for nvidia-smi's "[N/A]" / "[Not Supported]" and the like. */
function numberOrNull(s: string): number | null {
  const n = Number(s);
  return s === '' || !Number.isFinite(n) ? null : n;
}

/** Parse `nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu --format=csv,noheader,nounits`. */
export function parseNvidiaSmi(csv: string): GpuInfo[] {
  const gpus: GpuInfo[] = [];
  for (const [lineNo, raw] of csv.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === '') continue;
    const f = line.split(',').map((x) => x.trim());
    if (f.length < 6) throw new Error(`nvidia-smi line ${lineNo + 1}: expected 6 fields, got ${f.length}: '${line}'`);
    // GPU names may contain commas: the name is everything between uuid and the last 3 fields.
    const index = Number(f[0]);
    if (!Number.isInteger(index) || index < 0) throw new Error(`nvidia-smi line ${lineNo + 1}: bad index '${f[0]}'`);
    gpus.push({
      index,
      uuid: f[1],
      name: f.slice(2, f.length - 3).join(', '),
      memory_total_mib: numberOrNull(f[f.length - 3]),
      memory_used_mib: numberOrNull(f[f.length - 2]),
      utilization_percent: numberOrNull(f[f.length - 1]),
    });
  }
  return gpus;
}

export interface GpuDiscovery {
  gpus: GpuInfo[];
  /** Why the list is empty when it is (no nvidia-smi, driver error). */
  error?: string;
}

/** Run nvidia-smi; a host without it has no GPUs (and says why). */
export async function discoverGpus(binary = 'nvidia-smi', timeoutMs = 5000): Promise<GpuDiscovery> {
  try {
    const { stdout } = await promisify(execFile)(binary, NVIDIA_SMI_QUERY, { timeout: timeoutMs });
    return { gpus: parseNvidiaSmi(stdout) };
  } catch (err) {
    return { gpus: [], error: (err as Error).message.split('\n')[0] };
  }
}

/** Did the discovery find no nvidia-smi at all (a host without NVIDIA's driver tools)? */
export function nvidiaSmiMissing(d: GpuDiscovery): boolean {
  return d.gpus.length === 0 && d.error !== undefined && /\bENOENT\b/.test(d.error);
}

/** Throws INVALID_GPU_ID naming the GPUs there are when one of `ids` is not among them. */
export function checkGpuIds(ids: readonly number[], { gpus, error }: GpuDiscovery, field = 'gpu_id'): void {
  const missing = ids.filter((id) => !gpus.some((g) => g.index === id));
  if (missing.length === 0) return;
  throw new TeiplexError(
    'INVALID_GPU_ID',
    `${field} ${missing.join(', ')} does not exist: ${gpus.length === 0 ? `no GPU found${error ? ` (${error})` : ''}` : `GPUs are ${gpus.map((g) => g.index).join(', ')}`}`,
  );
}
