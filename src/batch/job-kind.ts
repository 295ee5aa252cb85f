/** What the runner needs of a job's input format: its chunks, each run to a checkpoint, and the output assembled from them. */
import type { InputFormat } from './table-format.js';
import type { ChunkCounts } from './job-store.js';

export interface JobLimits {
  /** Rows in one chunk (batch_chunk_rows). */
  chunkRows: number;
  /** Inputs in one JSONL request (max_request_inputs). */
  maxRequestInputs: number;
  /** Rows in one input file (batch_max_rows). */
  maxRows: number;
  /** Bytes of one input file read whole (batch_max_file_mb). */
  maxFileBytes: number;
}

/** One chunk's checkpoint: its results, its failed rows' error lines, its counts. */
export interface ChunkResult {
  out: string | Uint8Array;
  err: string;
  counts: ChunkCounts;
}

export interface JobKind {
  /** The output file's format. */
  readonly outputFormat: InputFormat;
  readonly chunks: number;
  /** Run chunk `n`; a passing failure (row-calls.ts `passing`) is thrown for the runner to retry. */
  runChunk(n: number, signal: AbortSignal): Promise<ChunkResult>;
  /** The ids of chunk `n`'s rows (error lines for rows that never ran). */
  chunkIds(n: number): Promise<string[]>;
  /**
   * The output file at `dest` from the chunks' results (`parts`: one path per chunk, in order;
   * undefined: a chunk that never ran). Returns false when there is nothing to write.
   */
  writeOutput(parts: ReadonlyArray<string | undefined>, dest: string): Promise<boolean>;
}
