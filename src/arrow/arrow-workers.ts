/**
 * Arrow work off the event loop: a small pool of worker threads that check and decode request
 * streams and write answers, so a large or hostile body (an LZ4 bomb, a stream of a million tiny
 * batches) costs a worker thread its time, never the thread that answers every other call,
 * health checks and metrics.
 *
 * Jobs, each answered by one worker, first come first served:
 * - `scan`:   the framing walk of ipc-stream.ts (limits included): the rows and the decoded-bytes
 *             bound a caller reserves before asking for the texts;
 * - `texts`:  readTextColumn (text-batch.ts), the distinct rows packed as UTF-8, where each row
 *             finds its text, and each distinct text's SHA-256 when asked (packed-texts.ts);
 * - `select`: some rows of packed texts, each with a prompt before it;
 * - `dense`, `sparse`, `multivector`: an answer written as Arrow IPC with LZ4_FRAME bodies.
 * Buffers travel transferred, not copied (a request's bytes are copied once, into a buffer of
 * their own, because grpc-js's may share memory with others).
 *
 * Errors keep their meaning: an ArrowInputError comes back as one (code VALIDATION, same row);
 * anything else becomes a TeiplexError BACKEND. A worker that dies (its heap limit, a crash) fails
 * its job with BACKEND saying so, and is replaced for the next one.
 *
 * This module is both sides: imported on the main thread it exports `ArrowWorkers`; started as a
 * worker (workerData.teiplexArrowWorker) it serves jobs.
 */
import { isMainThread, parentPort, workerData, type Worker } from 'node:worker_threads';
import { TeiplexError } from '../common/errors.js';
import { spawnModuleWorker } from '../common/module-worker.js';
import { encodeDense, encodeDenseTyped, encodeMultivectorPacked, encodeSparsePacked, type DenseValues, type PackedMultivector, type PackedSparse } from './embedding-batch.js';
import { ArrowInputError, scanStream, type ReadLimits } from './ipc-stream.js';
import { distinctTexts, selectTexts, type DistinctTexts, type PackedTexts } from './packed-texts.js';
import { readTextColumn } from './text-batch.js';

type Job =
  | { op: 'scan'; ipc: Uint8Array; limits: ReadLimits }
  | { op: 'texts'; ipc: Uint8Array; limits: ReadLimits; digests: boolean }
  | { op: 'select'; packed: PackedTexts; rows: Int32Array | null; prefix: string }
  | { op: 'dense'; values: Float32Array; dim: number }
  | { op: 'denseTyped'; values: DenseValues; rowLength: number; metadata: Record<string, string> }
  | { op: 'sparse'; packed: PackedSparse }
  | { op: 'multivector'; packed: PackedMultivector };

export interface ScanResult {
  rows: number;
  /** Upper bound of the bytes decoding the stream allocates (StreamLayout.decodedBytes). */
  decodedBytes: number;
  /** The request's bytes, handed back for the `texts` job. */
  ipc: Uint8Array;
}

type Answer = { id: number; ok: true; value: unknown } | { id: number; ok: false; message: string; input: boolean; row?: number };

/** A view that owns its whole ArrayBuffer (transferable without taking anything else along). */
function own<T extends Uint8Array | Int8Array | Uint16Array | Float32Array | Float64Array | Int32Array | Uint32Array>(a: T): T {
  const whole = a.buffer instanceof ArrayBuffer && a.byteOffset === 0 && a.byteLength === a.buffer.byteLength;
  return whole ? a : (a.slice() as T);
}

function buffersOf(...arrays: ArrayBufferView[]): ArrayBuffer[] {
  return arrays.map((a) => a.buffer as ArrayBuffer);
}

interface Pending {
  id: number;
  job: Job;
  transfer: ArrayBuffer[];
  resolve(value: unknown): void;
  reject(err: Error): void;
}

interface Slot {
  worker: Worker;
  busy: Pending | undefined;
}

export interface ArrowWorkersOptions {
  /** Worker threads (at least 1). */
  threads: number;
  /** Each worker's JavaScript heap limit (MiB); past it the worker dies and its job fails. */
  maxHeapMb?: number;
}

export class ArrowWorkers {
  private readonly slots: Array<Slot | undefined>;
  private readonly queue: Pending[] = [];
  private nextId = 1;
  private closed = false;

  constructor(private readonly opts: ArrowWorkersOptions) {
    if (!(Number.isInteger(opts.threads) && opts.threads >= 1)) throw new RangeError(`ArrowWorkers: threads must be a positive integer, got ${opts.threads}`);
    this.slots = new Array<Slot | undefined>(opts.threads).fill(undefined);
  }

  /** The framing walk: rows and the decoded-bytes bound; throws ArrowInputError over a limit. */
  scan(ipc: Uint8Array, limits: ReadLimits): Promise<ScanResult> {
    const copy = own(new Uint8Array(ipc));
    return this.run({ op: 'scan', ipc: copy, limits }, buffersOf(copy)) as Promise<ScanResult>;
  }

  /** The text column, its repeats taken out (`digests`: with each distinct text's SHA-256); `ipc` is given away (a ScanResult's). */
  texts(ipc: Uint8Array, limits: ReadLimits, digests = false): Promise<DistinctTexts> {
    const mine = own(ipc);
    return this.run({ op: 'texts', ipc: mine, limits, digests }, buffersOf(mine)) as Promise<DistinctTexts>;
  }

  /** The texts `rows` names (null: all), each with `prefix` before it (a prompt), packed anew; `packed` is given away. */
  select(packed: PackedTexts, rows: Int32Array | null, prefix: string): Promise<PackedTexts> {
    const p = { bytes: own(packed.bytes), offsets: own(packed.offsets) };
    const r = rows === null ? null : own(rows);
    return this.run({ op: 'select', packed: p, rows: r, prefix }, buffersOf(p.bytes, p.offsets, ...(r === null ? [] : [r]))) as Promise<PackedTexts>;
  }

  /** Dense answer: `values` holds rows*dim floats (given away). */
  dense(values: Float32Array, dim: number): Promise<Uint8Array> {
    const v = own(values);
    return this.run({ op: 'dense', values: v, dim }, buffersOf(v)) as Promise<Uint8Array>;
  }

  /** Dense answer in another element type: `values` holds rows*rowLength values (given away). */
  denseTyped(values: DenseValues, rowLength: number, metadata: Record<string, string>): Promise<Uint8Array> {
    const v = own(values);
    return this.run({ op: 'denseTyped', values: v, rowLength, metadata }, buffersOf(v)) as Promise<Uint8Array>;
  }

  sparse(p: PackedSparse): Promise<Uint8Array> {
    const packed = { offsets: own(p.offsets), indices: own(p.indices), values: own(p.values) };
    return this.run({ op: 'sparse', packed }, buffersOf(packed.offsets, packed.indices, packed.values)) as Promise<Uint8Array>;
  }

  multivector(p: PackedMultivector): Promise<Uint8Array> {
    const packed = { dim: p.dim, offsets: own(p.offsets), values: own(p.values) };
    return this.run({ op: 'multivector', packed }, buffersOf(packed.offsets, packed.values)) as Promise<Uint8Array>;
  }

  /** Stop every worker; jobs not yet done fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.queue.splice(0)) p.reject(new TeiplexError('UNHEALTHY', 'the Arrow workers are shutting down'));
    await Promise.all(
      this.slots.map(async (s, i) => {
        this.slots[i] = undefined;
        if (s === undefined) return;
        s.busy?.reject(new TeiplexError('UNHEALTHY', 'the Arrow workers are shutting down'));
        s.busy = undefined;
        await s.worker.terminate();
      }),
    );
  }

  private run(job: Job, transfer: ArrayBuffer[]): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      if (this.closed) return reject(new TeiplexError('UNHEALTHY', 'the Arrow workers are shutting down'));
      this.queue.push({ id: this.nextId++, job, transfer, resolve, reject });
      this.pump();
    });
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
    const worker = spawnModuleWorker(import.meta.url, { workerData: { teiplexArrowWorker: true }, ...limits });
    const slot: Slot = { worker, busy: undefined };
    this.slots[i] = slot;
    worker.on('message', (a: Answer) => {
      const p = slot.busy;
      if (p === undefined || p.id !== a.id) return;
      slot.busy = undefined;
      worker.unref();
      if (a.ok) p.resolve(a.value);
      else if (a.input) p.reject(new ArrowInputError(a.message, a.row));
      else p.reject(new TeiplexError('BACKEND', a.message));
      this.pump();
    });
    const died = (why: string): void => {
      if (this.slots[i] === slot) this.slots[i] = undefined;
      const p = slot.busy;
      slot.busy = undefined;
      p?.reject(new TeiplexError('BACKEND', `the Arrow worker thread failed while handling this call (${why})`));
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

// ---------------------------------------------------------------------------------------------
// the worker side

function handle(job: Job): { value: unknown; transfer: ArrayBuffer[] } {
  switch (job.op) {
    case 'scan': {
      const layout = scanStream(job.ipc, job.limits);
      const value: ScanResult = { rows: layout.rows, decodedBytes: layout.decodedBytes, ipc: job.ipc };
      return { value, transfer: buffersOf(job.ipc) };
    }
    case 'texts': {
      const d = distinctTexts(readTextColumn(job.ipc, job.limits), job.digests);
      const value: DistinctTexts = { ...d, packed: { bytes: own(d.packed.bytes), offsets: d.packed.offsets } };
      return { value, transfer: buffersOf(value.packed.bytes, value.packed.offsets, value.rowOf, value.firstRow, value.digests) };
    }
    case 'select': {
      const value = selectTexts(job.packed, job.rows, job.prefix);
      return { value, transfer: buffersOf(value.bytes, value.offsets) };
    }
    case 'dense':
      return answer(encodeDense(job.values, job.dim));
    case 'denseTyped':
      return answer(encodeDenseTyped(job.values, job.rowLength, job.metadata));
    case 'sparse':
      return answer(encodeSparsePacked(job.packed));
    case 'multivector':
      return answer(encodeMultivectorPacked(job.packed));
  }
}

function answer(ipc: Uint8Array): { value: unknown; transfer: ArrayBuffer[] } {
  const mine = own(ipc);
  return { value: mine, transfer: buffersOf(mine) };
}

if (!isMainThread && (workerData as { teiplexArrowWorker?: boolean } | null)?.teiplexArrowWorker === true) {
  const port = parentPort!;
  port.on('message', ({ id, job }: { id: number; job: Job }) => {
    let out: { value: unknown; transfer: ArrayBuffer[] };
    try {
      out = handle(job);
    } catch (err) {
      const input = err instanceof ArrowInputError;
      const a: Answer = { id, ok: false, message: err instanceof Error ? err.message : String(err), input, ...(input && err.row !== undefined ? { row: err.row } : {}) };
      port.postMessage(a);
      return;
    }
    port.postMessage({ id, ok: true, value: out.value } satisfies Answer, out.transfer);
  });
}
