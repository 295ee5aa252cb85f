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
import { TeiplexError } from '../common/errors.js';
import { buffersOf, isPoolWorker, own, serveJobs, WorkerPool } from '../common/worker-pool.js';
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

const WORKER_FLAG = 'teiplexArrowWorker';

export interface ScanResult {
  rows: number;
  /** Upper bound of the bytes decoding the stream allocates (StreamLayout.decodedBytes). */
  decodedBytes: number;
  /** The request's bytes, handed back for the `texts` job. */
  ipc: Uint8Array;
}

export interface ArrowWorkersOptions {
  /** Worker threads (at least 1). */
  threads: number;
  /** Each worker's JavaScript heap limit (MiB); past it the worker dies and its job fails. */
  maxHeapMb?: number;
}

export class ArrowWorkers {
  private readonly pool: WorkerPool<Job>;

  constructor(opts: ArrowWorkersOptions) {
    this.pool = new WorkerPool<Job>({
      moduleUrl: import.meta.url,
      flag: WORKER_FLAG,
      threads: opts.threads,
      ...(opts.maxHeapMb !== undefined ? { maxHeapMb: opts.maxHeapMb } : {}),
      name: 'Arrow',
      failure: (message, detail) => (detail?.input === true ? new ArrowInputError(message, detail.row as number | undefined) : new TeiplexError('BACKEND', message)),
    });
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
  close(): Promise<void> {
    return this.pool.close();
  }

  private run(job: Job, transfer: ArrayBuffer[]): Promise<unknown> {
    return this.pool.run(job, transfer);
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

if (isPoolWorker(WORKER_FLAG)) {
  serveJobs<Job>(handle, (err) => {
    const input = err instanceof ArrowInputError;
    return { message: err instanceof Error ? err.message : String(err), ...(input ? { detail: { input: true, row: err.row } } : {}) };
  });
}
