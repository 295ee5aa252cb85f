/**
 * Starting a module of this code base as a worker thread, from the compiled JavaScript (dist/)
 * or, in tests, from the TypeScript sources under tsx: Node 20 does not run a .ts worker entry
 * through the parent's --import hooks, so tsx is registered in the worker first.
 */
import { Worker, type WorkerOptions } from 'node:worker_threads';

/** A worker running the module at `moduleUrl` (its `import.meta.url`). */
export function spawnModuleWorker(moduleUrl: string, options: WorkerOptions = {}): Worker {
  if (moduleUrl.endsWith('.ts')) {
    const tsx = import.meta.resolve('tsx/esm/api');
    const code = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(moduleUrl)}); });`;
    return new Worker(code, { ...options, eval: true });
  }
  return new Worker(new URL(moduleUrl), options);
}
