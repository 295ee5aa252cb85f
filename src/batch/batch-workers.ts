/**
 * A batch job's heavy work off the event loop, on worker threads (src/common/worker-pool.ts), so
 * that a job never holds the thread every interactive call is answered on:
 * - `render`: a JSONL chunk's output lines (float vectors as JSON text: about 50 ms for 256
 *   384-dimension rows);
 * - `readTable`: an Arrow or Parquet input file decoded (table-input.ts; seconds for a large one);
 * - `writeOutput`: a table job's output file from its chunks (table-output.ts; Parquet: seconds).
 * A failure keeps its code (a TeiplexError's code, message, param and index come back).
 *
 * This module is both sides: imported on the main thread it exports `BatchWorkers`; started as a
 * worker it serves the jobs.
 */
import { TeiplexError, type ErrorCode } from '../common/errors.js';
import { buffersOf, isPoolWorker, serveJobs, WorkerPool } from '../common/worker-pool.js';
import type { OutputType, TypedRow } from '../tei/embedding-types.js';
import { openaiEmbeddingPieces } from '../tei/openai-answer.js';
import { successLine } from './output-lines.js';
import type { TableFormat } from './table-format.js';
import { readTable, type ReadTableOptions, type TableRows } from './table-input.js';
import { writeTableOutput } from './table-output.js';

const WORKER_FLAG = 'teiplexBatchWorker';

/** One JSONL line's answer: its custom_id, its rows (`rows` of the packed values, in order), its encoding and tokens. */
export interface RenderLine {
  customId: string;
  rows: number;
  base64: boolean;
  tokens: number;
}

type Values = Float32Array | Uint16Array | Int8Array | Uint8Array;

type Job =
  | { op: 'render'; lines: RenderLine[]; values: Values; rowLength: number; type: OutputType; modelName: string }
  | { op: 'readTable'; bytes: Uint8Array; options: ReadTableOptions }
  | { op: 'writeOutput'; parts: string[]; format: TableFormat; dest: string };

export class BatchWorkers {
  private readonly pool: WorkerPool<Job>;

  constructor(threads = 1) {
    this.pool = new WorkerPool<Job>({
      moduleUrl: import.meta.url,
      flag: WORKER_FLAG,
      threads,
      name: 'batch',
      failure: (message, detail) =>
        detail?.code !== undefined
          ? new TeiplexError(detail.code as ErrorCode, message, {
              ...(detail.param !== undefined ? { param: detail.param as string } : {}),
              ...(detail.index !== undefined ? { index: detail.index as number } : {}),
            })
          : new TeiplexError('BACKEND', message),
    });
  }

  /** The success line of each of `lines`, whose rows are `rows` in order (all of one type and length). */
  render(lines: RenderLine[], rows: readonly TypedRow[], type: OutputType, modelName: string): Promise<string[]> {
    const rowLength = rows[0]?.length ?? 0;
    const values = packRows(rows, rowLength);
    return this.pool.run({ op: 'render', lines, values, rowLength, type, modelName }, buffersOf(values)) as Promise<string[]>;
  }

  /** readTable on a worker; `bytes` is given away. */
  readTable(bytes: Uint8Array, options: ReadTableOptions): Promise<TableRows> {
    const mine = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
    return this.pool.run({ op: 'readTable', bytes: mine, options }, buffersOf(mine)) as Promise<TableRows>;
  }

  writeOutput(parts: readonly string[], format: TableFormat, dest: string): Promise<number> {
    return this.pool.run({ op: 'writeOutput', parts: [...parts], format, dest }) as Promise<number>;
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** Rows of one typed array type, copied into one (transferable) array. */
function packRows(rows: readonly TypedRow[], rowLength: number): Values {
  const first = rows[0];
  const Ctor = (first?.constructor ?? Float32Array) as new (n: number) => Values;
  const out = new Ctor(rows.length * rowLength);
  rows.forEach((r, i) => out.set(r, i * rowLength));
  return out;
}

// ---------------------------------------------------------------------------------------------
// the worker side

async function handle(job: Job): Promise<{ value: unknown; transfer: ArrayBuffer[] }> {
  switch (job.op) {
    case 'render': {
      let at = 0;
      const out = job.lines.map((l) => {
        const rows = Array.from({ length: l.rows }, (_, k) => job.values.subarray((at + k) * job.rowLength, (at + k + 1) * job.rowLength));
        at += l.rows;
        return successLine(l.customId, [...openaiEmbeddingPieces(rows, job.type, l.base64, job.modelName, l.tokens)].join(''));
      });
      return { value: out, transfer: [] };
    }
    case 'readTable':
      return { value: readTable(job.bytes, job.options), transfer: [] };
    case 'writeOutput':
      return { value: await writeTableOutput(job.parts, job.format, job.dest), transfer: [] };
  }
}

if (isPoolWorker(WORKER_FLAG)) {
  serveJobs<Job>(handle, (err) => ({
    message: err instanceof Error ? err.message : String(err),
    ...(err instanceof TeiplexError ? { detail: { code: err.code, ...(err.param !== undefined ? { param: err.param } : {}), ...(err.index !== undefined ? { index: err.index } : {}) } } : {}),
  }));
}
