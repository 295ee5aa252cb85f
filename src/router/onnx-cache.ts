/**
 * The optimized-model cache (--onnx-cache-dir): ONNX Runtime's session creation on a model with
 * inline weights spends most of its time reading them out of the protobuf (about 1 s of CPU for
 * a 90 MB MiniLM-L6 here, at every optimization level), while the same graph with its weights in
 * an external file loads in a quarter of that. So the first session of a model on the CPU writes
 * its optimized graph with external weights (`optimizedModelFilePath` plus
 * `session.optimized_model_external_initializers_file_name`) into an entry of the cache, and later
 * sessions load that entry with graph optimizations off (they are done already). The entry also
 * keeps the engine's warm-up calibration (calibration.json), which is as stable as the graph.
 *
 * An entry is keyed by what makes it valid: the ONNX file (path, size, modification time) and the
 * files next to it (external data), the ONNX Runtime version, the session settings that shape the
 * graph, and the CPU (model name and flags: level-all optimizations may be CPU-specific). It is
 * written under a temporary name and renamed into place, so a reader sees a complete entry or
 * none; any failure falls back to loading the original file.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** The graph inside an entry; its weights are in GRAPH_FILE + '.data'. */
export const GRAPH_FILE = 'model.onnx';
const CALIBRATION_FILE = 'calibration.json';

let cpuIdentity: string | undefined;
function cpu(): string {
  if (cpuIdentity === undefined) {
    try {
      const info = readFileSync('/proc/cpuinfo', 'utf8');
      const field = (name: string): string => info.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm'))?.[1] ?? '';
      cpuIdentity = `${field('model name')}|${field('flags')}`;
    } catch {
      cpuIdentity = `${process.arch}|unknown`;
    }
  }
  return cpuIdentity;
}

/** The entry directory for `onnxPath` loaded with `settings` (ONNX Runtime's version included by the caller). */
export function cacheEntry(cacheDir: string, onnxPath: string, settings: Record<string, unknown>): string {
  const dir = path.dirname(onnxPath);
  const files = readdirSync(dir)
    .sort()
    .map((f) => {
      const st = statSync(path.join(dir, f));
      return st.isFile() ? `${f}:${st.size}:${st.mtimeMs}` : '';
    })
    .filter((x) => x !== '');
  const key = createHash('sha256')
    .update(JSON.stringify({ onnx: path.resolve(onnxPath), files, settings, cpu: cpu() }))
    .digest('hex')
    .slice(0, 32);
  return path.join(cacheDir, key);
}

/** A complete entry (its graph and weights renamed into place)? */
export function entryComplete(entry: string): boolean {
  return existsSync(path.join(entry, GRAPH_FILE)) && existsSync(path.join(entry, `${GRAPH_FILE}.data`));
}

/** A fresh directory next to `entry` to write into; `commit` renames it into place (a lost race keeps the other's). */
export async function stageEntry(entry: string): Promise<{ dir: string; commit(): Promise<void>; discard(): Promise<void> }> {
  const dir = `${entry}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await mkdir(dir, { recursive: true });
  return {
    dir,
    commit: async () => {
      try {
        await rename(dir, entry);
      } catch {
        await rm(dir, { recursive: true, force: true });
      }
    },
    discard: () => rm(dir, { recursive: true, force: true }),
  };
}

/** The warm-up's calibration kept with an entry. */
export interface Calibration {
  batchOverheadTokens: number;
}

export async function readCalibration(entry: string, key: string): Promise<Calibration | undefined> {
  try {
    const all = JSON.parse(await readFile(path.join(entry, CALIBRATION_FILE), 'utf8')) as Record<string, Calibration>;
    const c = all[key];
    return c !== undefined && Number.isFinite(c.batchOverheadTokens) ? c : undefined;
  } catch {
    return undefined;
  }
}

/** Keep a calibration (by the engine settings it depends on) in an entry; best effort. */
export async function writeCalibration(entry: string, key: string, c: Calibration): Promise<void> {
  let all: Record<string, Calibration> = {};
  try {
    all = JSON.parse(await readFile(path.join(entry, CALIBRATION_FILE), 'utf8')) as Record<string, Calibration>;
  } catch {
    /* none yet */
  }
  all[key] = c;
  const tmp = path.join(entry, `${CALIBRATION_FILE}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    await writeFile(tmp, JSON.stringify(all));
    await rename(tmp, path.join(entry, CALIBRATION_FILE));
  } catch {
    await rm(tmp, { force: true }).catch(() => undefined);
  }
}
