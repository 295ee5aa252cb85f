/**
 * A small pool of worker threads running one module of this code base, for work that must not
 * hold the event loop (decoding hostile input, writing large answers, batch jobs' files). Jobs are
 * answered first come first served, one per worker at a time; buffers travel transferred. A job
 * that fails in the worker comes back as the error `failure` makes of it; a worker that dies (its
 * heap limit, a crash) fails its job with BACKEND saying so, and is replaced for the next one. An
 * idle pool does not keep the process alive.
 *
 * The module is both sides: on the main thread its owner builds a WorkerPool; started as a worker
 * (its `workerData` flag set) it calls `serveJobs`.
 */
import { isMainThread, parentPort, workerData, type Worker } from 'node:worker_threads';
import { TeiplexError } from './errors.js';
import { spawnModuleWorker } from './module-worker.js';

/** What a worker answers: the value, or the failure as a message and what the owner needs to rebuild it. */
export type WorkerAnswer = { id: number; ok: true; value: unknown } | { id: number; ok: false; message: string; detail?: Record<string, unknown> };

export interface WorkerPoolOptions {
  /** The module's `import.meta.url`. */
  moduleUrl: string;
  /** The flag the module looks for in `workerData` to serve jobs. */
  flag: string;
  /** Worker threads (at least 1). */
  threads: number;
  /** Each worker's JavaScript heap limit (MiB); past it the worker dies and its job fails. */
  maxHeapMb?: number;
  /** What the pool is, in messages: `the <name> worker thread failed ...`. */
  name: string;
  /** A job's failure in the worker as the error its caller gets. */
  failure?: (message: string, detail: Record<string, unknown> | undefined) => Error;
}

interface Pending {
  id: number;
  job: unknown;
  transfer: ArrayBuffer[];
  resolve(value: unknown): void;
  reject(err: Error): void;
}

interface Slot {
  worker: Worker;
  busy: Pending | undefined;
}

/** A view that owns its whole ArrayBuffer (transferable without taking anything else along). */
export function own<T extends Uint8Array | Int8Array | Uint16Array | Float32Array | Float64Array | Int32Array | Uint32Array>(a: T): T {
  const whole = a.buffer instanceof ArrayBuffer && a.byteOffset === 0 && a.byteLength === a.buffer.byteLength;
  return whole ? a : (a.slice() as T);
}

export function buffersOf(...arrays: ArrayBufferView[]): ArrayBuffer[] {
  return arrays.map((a) => a.buffer as ArrayBuffer);
}

export class WorkerPool<Job> {
  private readonly slots: Array<Slot | undefined>;
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private closed = false;

  constructor(private readonly opts: WorkerPoolOptions) {
    if (!(Number.isInteger(opts.threads) && opts.threads >= 1)) throw new RangeError(`${opts.name} workers: threads must be a positive integer, got ${opts.threads}`);
    this.slots = new Array<Slot | undefined>(opts.threads).fill(undefined);
  }

  run(job: Job, transfer: ArrayBuffer[] = []): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      if (this.closed) return reject(this.shuttingDown());
      this.queue.push({ id: this.nextId++, job, transfer, resolve, reject });
      this.pump();
    });
  }

  /** Stop every worker; jobs not yet done fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0)) p.reject(this.shuttingDown());
    await Promise.all(
      this.slots.map(async (s, i) => {
        this.slots[i] = undefined;
        if (s === undefined) return;
        s.busy?.reject(this.shuttingDown());
        s.busy = undefined;
        await s.worker.terminate();
      }),
    );
  }

  private shuttingDown(): TeiplexError {
    return new TeiplexError('UNHEALTHY', `the ${this.opts.name} workers are shutting down`);
  }

  private pump(): void {
    for (let i = 0; i < this.slots.length && this.queue.length > 0; i++) {
      let slot = this.slots[i];
      if (slot?.busy !== undefined) continue;
      slot ??= this.spawn(i);
      const p = this.queue.shift()!;
      slot.busy = p;
      slot.worker.ref(); // a job in progress keeps the process alive; an idle worker does not
      slot.worker.postMessage({ id: p.id, job: p.job }, p.transfer);
    }
  }

  private spawn(i: number): Slot {
    const limits = this.opts.maxHeapMb !== undefined ? { resourceLimits: { maxOldGenerationSizeMb: this.opts.maxHeapMb } } : {};
    const worker = spawnModuleWorker(this.opts.moduleUrl, { workerData: { [this.opts.flag]: true }, ...limits });
    const slot: Slot = { worker, busy: undefined };
    this.slots[i] = slot;
    worker.on('message', (a: WorkerAnswer) => {
      const p = slot.busy;
      if (p === undefined || p.id !== a.id) return;
      slot.busy = undefined;
      worker.unref();
      if (a.ok) p.resolve(a.value);
      else p.reject(this.opts.failure?.(a.message, a.detail) ?? new TeiplexError('BACKEND', a.message));
      this.pump();
    });
    const died = (why: string): void => {
      if (this.slots[i] === slot) this.slots[i] = undefined;
      const p = slot.busy;
      slot.busy = undefined;
      p?.reject(new TeiplexError('BACKEND', `the ${this.opts.name} worker thread failed while handling this call (${why})`));
      if (!this.closed) this.pump();
    };
    worker.on('error', (err: Error & { code?: string }) =>
      died(err.code === 'ERR_WORKER_OUT_OF_MEMORY' ? `it reached its heap limit of ${this.opts.maxHeapMb ?? '?'} MiB` : err.message),
    );
    worker.on('exit', (code) => died(`it exited with code ${code}`));
    worker.unref(); // (after the listeners, which would ref it again)
    return slot;
  }
}

/** Is this thread a worker started with `flag`? */
export function isPoolWorker(flag: string): boolean {
  return !isMainThread && (workerData as Record<string, unknown> | null)?.[flag] === true;
}

/**
 * The worker side: answer each job with `handle`'s value (its buffers transferred), a failure with
 * `describe`'s message and detail (default: the error's message).
 */
export function serveJobs<Job>(
  handle: (job: Job) => { value: unknown; transfer: ArrayBuffer[] } | Promise<{ value: unknown; transfer: ArrayBuffer[] }>,
  describe: (err: unknown) => { message: string; detail?: Record<string, unknown> } = (err) => ({ message: err instanceof Error ? err.message : String(err) }),
): void {
  const port = parentPort!;
  port.on('message', ({ id, job }: { id: number; job: Job }) => {
    const fail = (err: unknown): void => port.postMessage({ id, ok: false, ...describe(err) } satisfies WorkerAnswer);
    let out: { value: unknown; transfer: ArrayBuffer[] } | Promise<{ value: unknown; transfer: ArrayBuffer[] }>;
    try {
      out = handle(job);
    } catch (err) {
      fail(err);
      return;
    }
    Promise.resolve(out).then((o) => port.postMessage({ id, ok: true, value: o.value } satisfies WorkerAnswer, o.transfer), fail);
  });
}
