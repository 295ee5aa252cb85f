/**
 * A child's environment, built from scratch: TEI reads every flag from an environment variable of
 * the same name (PORT, HOSTNAME, MODEL_ID, API_KEY, POOLING, ...), so the manager's own
 * environment must not leak into it. Only an allowlist passes through; the spec's `env` and
 * CUDA_VISIBLE_DEVICES are added on top.
 */
const PASS_EXACT = new Set(['PATH', 'HOME', 'USER', 'LANG', 'TZ', 'TMPDIR', 'LD_LIBRARY_PATH', 'CUDA_HOME', 'CUDA_PATH', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'HUGGINGFACE_HUB_CACHE', 'HUGGING_FACE_HUB_TOKEN', 'RUST_LOG', 'RUST_BACKTRACE', 'UV_THREADPOOL_SIZE', 'OMP_NUM_THREADS']);
const PASS_PREFIX = ['LC_', 'HF_', 'NVIDIA_'];

export function childEnv(managerEnv: NodeJS.ProcessEnv, specEnv: Record<string, string> | undefined, gpuIds: number[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(managerEnv)) {
    if (v === undefined) continue;
    if (PASS_EXACT.has(k) || PASS_PREFIX.some((p) => k.startsWith(p))) env[k] = v;
  }
  // No GPU assigned: hide them all rather than letting the child take GPU 0.
  env.CUDA_VISIBLE_DEVICES = gpuIds.join(',');
  return { ...env, ...specEnv };
}
