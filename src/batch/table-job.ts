/**
 * An Arrow IPC or Parquet batch (teiplex's extension): the rows of one text column (and an id
 * column), all embedded with the batch's own fields (`model`, `output`, `embedding_type`,
 * `dimensions`, `input_type`). The file is read whole once (at most batch_max_file_mb, and
 * batch_max_rows rows). Each chunk's results are one Arrow record batch of `id` and the
 * embeddings (a failed row: null, its error in the error file under its id); the output file is
 * the same format as the input, its rows aligned with the input's when every chunk ran.
 */
import { readFile } from 'node:fs/promises';
import { TeiplexError } from '../common/errors.js';
import { typedRows } from '../tei/embedding-output.js';
import { applyInputType } from '../tei/input-types.js';
import type { Capability, EncodeOptions, SparseVector, TokenEmbeddings } from '../tei/types.js';
import type { TypedRow } from '../tei/embedding-types.js';
import type { JobRecord, TableOutput } from './batch-job.js';
import type { ChunkResult, JobKind, JobLimits } from './job-kind.js';
import type { JobModel, JobTarget } from './job-target.js';
import { failureLine } from './output-lines.js';
import { callRows } from './row-calls.js';
import type { TableFormat } from './table-format.js';
import type { TableRows } from './table-input.js';
import { chunkPart, type OutputRows } from './table-output.js';
import type { BatchWorkers } from './batch-workers.js';

type Row = TypedRow | SparseVector | TokenEmbeddings;

/** An input file may decode to at most this many times batch_max_file_mb (its text and id columns; compression). */
const DECODED_PER_FILE_BYTE = 4;

const NEED: Record<TableOutput, Capability> = { dense: 'dense', sparse: 'sparse', multivector: 'multivector' };

export async function openTableJob(file: string, format: TableFormat, r: JobRecord, target: JobTarget, limits: JobLimits, workers: BatchWorkers): Promise<TableJob> {
  const bytes = await readFile(file);
  const table = await workers.readTable(bytes, {
    format,
    ...(r.options.text_column !== undefined ? { textColumn: r.options.text_column } : {}),
    ...(r.options.id_column !== undefined ? { idColumn: r.options.id_column } : {}),
    maxRows: limits.maxRows,
    maxBytes: limits.maxFileBytes * DECODED_PER_FILE_BYTE,
    maxRowsName: 'batch_max_rows',
    maxBytesName: `${DECODED_PER_FILE_BYTE} times batch_max_file_mb`,
  });
  return new TableJob(table, format, r, target, limits, workers);
}

export class TableJob implements JobKind {
  readonly outputFormat: TableFormat;
  private dims: number | undefined;

  constructor(
    private readonly table: TableRows,
    format: TableFormat,
    private readonly r: JobRecord,
    private readonly target: JobTarget,
    private readonly limits: JobLimits,
    private readonly workers: BatchWorkers,
  ) {
    this.outputFormat = format;
  }

  get rows(): number {
    return this.table.length;
  }

  get chunks(): number {
    return Math.ceil(this.table.length / this.limits.chunkRows);
  }

  private get output(): TableOutput {
    return this.r.options.output ?? 'dense';
  }

  async runChunk(n: number, signal: AbortSignal): Promise<ChunkResult> {
    const from = n * this.limits.chunkRows;
    const to = Math.min(this.table.length, from + this.limits.chunkRows);
    const ids = this.table.ids.slice(from, to);
    const results: Array<Row | null> = new Array(to - from).fill(null);
    const errors = new Map<number, unknown>();
    const todo: number[] = [];
    for (let k = 0; k < to - from; k++) {
      const text = this.table.texts[from + k];
      if (text === null) errors.set(k, new TeiplexError('VALIDATION', `row ${from + k}: the text is null`, { param: this.table.textColumn }));
      else todo.push(k);
    }
    const model = this.r.options.model as string;
    const outcomes = await callRows(
      todo,
      (ks) => this.target.run(this.r.owner, model, NEED[this.output], signal, (m) => this.embed(m, ks.map((k) => this.table.texts[from + k] as string))),
      (_ks, index) => index,
    );
    todo.forEach((k, j) => {
      const o = outcomes[j];
      if (o.ok) results[k] = o.value;
      else errors.set(k, o.error);
    });
    let err = '';
    for (const [k, e] of [...errors].sort((a, b) => a[0] - b[0])) err += failureLine(ids[k], e);
    const out = chunkPart(ids, await this.outputRows(results, signal));
    return { out, err, counts: { completed: to - from - errors.size, failed: errors.size } };
  }

  async chunkIds(n: number): Promise<string[]> {
    const from = n * this.limits.chunkRows;
    return this.table.ids.slice(from, from + this.limits.chunkRows);
  }

  async writeOutput(parts: ReadonlyArray<string | undefined>, dest: string): Promise<boolean> {
    const present = parts.filter((p): p is string => p !== undefined);
    if (present.length === 0) return false;
    await this.workers.writeOutput(present, this.outputFormat, dest);
    return true;
  }

  private async embed(m: JobModel, texts: string[]): Promise<Row[]> {
    const o = this.r.options;
    const base: EncodeOptions = { truncate: m.autoTruncate, truncationDirection: 'right' };
    const typed = applyInputType(texts, base, o.input_type, m.prompts, m.modelName);
    switch (this.output) {
      case 'sparse':
        return (await m.engine.embedSparse(typed.inputs, typed.e, m.call)).results;
      case 'multivector':
        return (await m.engine.embedAll(typed.inputs, typed.e, m.call)).results;
      default: {
        const opts = { ...typed.e, normalize: true, ...(o.dimensions !== undefined ? { dimensions: o.dimensions } : {}) };
        const res = await m.engine.embed(typed.inputs, opts, m.call);
        if (res.results.length > 0) this.dims = res.results[0].length;
        return typedRows(m.engine, res.results, o.embedding_type ?? 'float32', opts, m.call);
      }
    }
  }

  /** The chunk's rows as the output's column; a chunk with no row done learns the dimension from one call. */
  private async outputRows(rows: Array<Row | null>, signal: AbortSignal): Promise<OutputRows> {
    switch (this.output) {
      case 'sparse':
        return { kind: 'sparse', rows: rows as Array<SparseVector | null> };
      case 'multivector': {
        const first = rows.find((x) => x !== null) as TokenEmbeddings | undefined;
        const dim = first?.dim ?? (await this.learnDims(signal));
        return { kind: 'multivector', dim, rows: rows as Array<TokenEmbeddings | null> };
      }
      default:
        return { kind: 'dense', type: this.r.options.embedding_type ?? 'float32', dims: this.dims ?? (await this.learnDims(signal)), rows: rows as Array<TypedRow | null> };
    }
  }

  private async learnDims(signal: AbortSignal): Promise<number> {
    if (this.dims !== undefined) return this.dims;
    const o = this.r.options;
    const res = await this.target.run(this.r.owner, o.model as string, 'dense', signal, (m) =>
      m.engine.embed(['.'], { truncate: true, truncationDirection: 'right', normalize: true, ...(o.dimensions !== undefined ? { dimensions: o.dimensions } : {}) }, m.call),
    );
    this.dims = res.results[0].length;
    return this.dims;
  }
}
