/**
 * A child's environment, built from scratch: TEI reads every flag from an environment variable of
 * the same name (PORT, HOSTNAME, MODEL_ID, API_KEY, POOLING, ...), so the manager's own
 * environment must not leak into it. Only an allowlist passes through; the spec's `env` is added
 * on top, without the names the manager keeps (config/spec-policy.ts MANAGER_ENV), and
 * CUDA_VISIBLE_DEVICES always says the manager's GPU placement. The manager's HF_* variables and
 * HUGGING_FACE_HUB_TOKEN (its hub token) reach a `command` child only when its spec sets
 * `inherit_hf_env`.
 */
import { MANAGER_ENV } from '../config/spec-policy.js';

const PASS_EXACT = new Set(['PATH', 'HOME', 'USER', 'LANG', 'TZ', 'TMPDIR', 'LD_LIBRARY_PATH', 'CUDA_HOME', 'CUDA_PATH', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'HUGGINGFACE_HUB_CACHE', 'RUST_LOG', 'RUST_BACKTRACE', 'UV_THREADPOOL_SIZE', 'OMP_NUM_THREADS']);
const PASS_PREFIX = ['LC_', 'NVIDIA_'];
const HF_EXACT = new Set(['HUGGING_FACE_HUB_TOKEN']);
const HF_PREFIX = 'HF_';

export function childEnv(managerEnv: NodeJS.ProcessEnv, specEnv: Record<string, string> | undefined, gpuIds: number[], opts: { hf?: boolean } = {}): Record<string, string> {
  const hf = opts.hf ?? true;
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(managerEnv)) {
    if (v === undefined) continue;
    if (PASS_EXACT.has(k) || PASS_PREFIX.some((p) => k.startsWith(p)) || (hf && (HF_EXACT.has(k) || k.startsWith(HF_PREFIX)))) env[k] = v;
  }
  for (const [k, v] of Object.entries(specEnv ?? {})) if (MANAGER_ENV[k] === undefined) env[k] = v;
  // No GPU assigned: hide them all rather than letting the child take GPU 0.
  env.CUDA_VISIBLE_DEVICES = gpuIds.join(',');
  return env;
}
