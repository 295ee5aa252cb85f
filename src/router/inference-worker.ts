/**
 * The ONNX session's thread. onnxruntime-node's `session.run` computes synchronously on the thread
 * that calls it, which would stall the event loop (requests, tokenization callbacks, batch
 * planning) for the whole inference. So the session lives in a worker thread: the main thread
 * sends prepared batches (typed arrays, transferred, not copied) and gets back one result per row.
 *
 * This module is both sides: imported on the main thread it exports `InferenceWorker`; started as
 * a worker (with workerData.teiplexInferenceWorker) it serves the session.
 */
import { isMainThread, parentPort, type Worker, workerData } from 'node:worker_threads';
import { spawnModuleWorker } from '../common/module-worker.js';
import { TeiplexError } from '../common/errors.js';
import type { BatchInputs, BatchOutputs, RowOutput, SessionConfig, SessionSignature } from './onnx-session.js';

type ToWorker = { type: 'open'; config: SessionConfig } | { type: 'run'; id: number; batch: BatchInputs } | { type: 'close' };
type FromWorker =
  | { type: 'idle' }
  | { type: 'ready'; signature: SessionSignature; cacheEntry?: string }
  | { type: 'init-failed'; message: string }
  | { type: 'freed'; id: number }
  | { type: 'result'; id: number; output: BatchOutputs }
  | { type: 'failed'; id: number; message: string }
  | { type: 'closed' };

interface Pending {
  resolve: (o: BatchOutputs) => void;
  reject: (e: unknown) => void;
  free: () => void;
}

function batchTransfers(b: BatchInputs): ArrayBuffer[] {
  const set = new Set<ArrayBuffer>();
  for (const a of [b.inputIds, b.attentionMask, b.tokenTypeIds, b.positionIds, b.tasks]) {
    if (a !== null && a.buffer instanceof ArrayBuffer && a.byteLength === a.buffer.byteLength) set.add(a.buffer);
  }
  return [...set];
}

function rowTransfers(rows: RowOutput[]): ArrayBuffer[] {
  const set = new Set<ArrayBuffer>();
  const add = (a: ArrayBufferView): void => {
    if (a.buffer instanceof ArrayBuffer && a.byteLength === a.buffer.byteLength) set.add(a.buffer);
  };
  for (const r of rows) {
    if (r instanceof Float32Array) add(r);
    else if ('indices' in r) {
      add(r.indices);
      add(r.values);
    } else add(r.values);
  }
  return [...set];
}

/** A session thread started ahead, ONNX Runtime imported, no session (InferenceWorker.prestart). */
export interface IdleWorker {
  readonly worker: Worker;
}

/** Main-thread handle on the session's thread. */
export class InferenceWorker {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private dead: Error | null = null;
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly worker: Worker,
    readonly signature: SessionSignature,
    /** The optimized-model cache entry the session was loaded from or written to (onnx-cache.ts). */
    readonly cacheEntry: string | undefined,
  ) {
    worker.on('message', (m: FromWorker) => this.onMessage(m));
    worker.on('error', (err) => this.die(err));
    worker.on('exit', (code) => this.die(new Error(`inference thread exited (code ${code})`)));
    worker.unref();
  }

  /**
   * A thread with ONNX Runtime imported and no session yet (a standby router's): `start` opens the
   * session in it later, without paying the thread's start and the import again.
   */
  static async prestart(): Promise<IdleWorker> {
    const worker = spawnWorker({ teiplexInferenceWorker: true });
    await InferenceWorker.firstMessage(worker, (m) => (m.type === 'idle' ? true : undefined), 'start');
    worker.unref();
    return { worker };
  }

  /** Start the thread (or take a prestarted one) and open the session in it; rejects with the session's error. */
  static async start(config: SessionConfig, idle?: IdleWorker): Promise<InferenceWorker> {
    let worker: Worker;
    if (idle !== undefined) {
      worker = idle.worker;
      worker.ref();
      worker.postMessage({ type: 'open', config } satisfies ToWorker);
    } else worker = spawnWorker({ teiplexInferenceWorker: true, config });
    const ready = await InferenceWorker.firstMessage(worker, (m) => (m.type === 'ready' ? m : undefined), 'start');
    return new InferenceWorker(worker, ready.signature, ready.cacheEntry);
  }

  /** The first message `pick` accepts; an init failure, an error or an exit first rejects (and ends the thread). */
  private static async firstMessage<T>(worker: Worker, pick: (m: FromWorker) => T | undefined, what: string): Promise<T> {
    let onMessage: (m: FromWorker) => void = () => undefined;
    let onError: (e: Error) => void = () => undefined;
    let onExit: (code: number) => void = () => undefined;
    return new Promise<T>((resolve, reject) => {
      onMessage = (m) => {
        const got = pick(m);
        if (got !== undefined) resolve(got);
        else if (m.type === 'init-failed') reject(new Error(m.message));
      };
      onError = reject;
      onExit = (code) => reject(new Error(`inference thread exited during ${what} (code ${code})`));
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
    })
      .catch(async (err) => {
        await worker.terminate().catch(() => undefined);
        throw err;
      })
      .finally(() => {
        // Only our own listeners: Worker keeps internal ones on itself.
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      });
  }

  /** Run a batch. `free` is called when the model can take the next batch. */
  run(batch: BatchInputs, free: () => void): Promise<BatchOutputs> {
    if (this.dead) return Promise.reject(new TeiplexError('BACKEND', `inference thread is down: ${this.dead.message}`));
    if (this.closing) return Promise.reject(new TeiplexError('UNHEALTHY', 'Model is shutting down'));
    const id = this.nextId++;
    return new Promise<BatchOutputs>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, free });
      if (this.pending.size === 1) this.worker.ref();
      const msg: ToWorker = { type: 'run', id, batch };
      this.worker.postMessage(msg, batchTransfers(batch));
    });
  }

  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    if (p) {
      this.pending.delete(id);
      if (this.pending.size === 0) this.worker.unref();
    }
    return p;
  }

  private onMessage(m: FromWorker): void {
    switch (m.type) {
      case 'freed':
        this.pending.get(m.id)?.free();
        break;
      case 'result':
        this.settle(m.id)?.resolve(m.output);
        break;
      case 'failed':
        this.settle(m.id)?.reject(new TeiplexError('BACKEND', m.message));
        break;
      default:
        break;
    }
  }

  private die(err: Error): void {
    if (this.dead) return;
    this.dead = err;
    for (const [id, p] of [...this.pending]) {
      this.settle(id);
      p.reject(new TeiplexError('BACKEND', `inference thread failed: ${err.message}`));
    }
  }

  /** Release the session and stop the thread (after the batches already sent). */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = (async () => {
      if (!this.dead) {
        this.worker.ref();
        const closed = new Promise<void>((resolve) => {
          this.worker.on('message', (m: FromWorker) => {
            if (m.type === 'closed') resolve();
          });
          this.worker.once('exit', () => resolve());
        });
        this.worker.postMessage({ type: 'close' } satisfies ToWorker);
        await Promise.race([closed, new Promise((r) => setTimeout(r, 5000).unref())]);
      }
      this.dead ??= new Error('closed');
      await this.worker.terminate();
    })();
    return this.closing;
  }
}

/** Start this module as a worker (under tsx when running from TypeScript sources). */
function spawnWorker(data: unknown): Worker {
  return spawnModuleWorker(import.meta.url, { workerData: data });
}

async function serve(initial: SessionConfig | undefined): Promise<void> {
  const port = parentPort!;
  const post = (m: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer);
  let session: import('./onnx-session.js').OnnxSession;
  let cacheEntry: string | undefined;
  try {
    const { OnnxSession } = await import('./onnx-session.js');
    let config = initial;
    if (config === undefined) {
      // Prestarted (a standby router): ONNX Runtime is imported and set up; the session waits for its config.
      await OnnxSession.warmRuntime().catch(() => undefined);
      const opened = new Promise<SessionConfig>((resolve) => {
        const onOpen = (m: ToWorker): void => {
          if (m.type !== 'open') return;
          port.off('message', onOpen);
          resolve(m.config);
        };
        port.on('message', onOpen);
      });
      post({ type: 'idle' });
      config = await opened;
    }
    session = await OnnxSession.create(config);
    cacheEntry = session.cacheEntry;
  } catch (err) {
    post({ type: 'init-failed', message: (err as Error).message });
    return;
  }
  // Runs are strictly one after another: the next message is handled once this one is answered.
  let chain: Promise<void> = Promise.resolve();
  port.on('message', (m: ToWorker) => {
    chain = chain.then(async () => {
      if (m.type === 'close') {
        await session.dispose().catch(() => undefined);
        post({ type: 'closed' });
        port.close();
        return;
      }
      if (m.type !== 'run') return;
      try {
        const output = await session.run(m.batch, () => post({ type: 'freed', id: m.id }));
        post({ type: 'result', id: m.id, output }, rowTransfers(output.rows));
      } catch (err) {
        post({ type: 'failed', id: m.id, message: (err as Error).message });
      }
    });
  });
  post({ type: 'ready', signature: session.signature, cacheEntry });
}

if (!isMainThread && (workerData as { teiplexInferenceWorker?: boolean } | null)?.teiplexInferenceWorker === true) {
  void serve((workerData as { config?: SessionConfig }).config);
}
