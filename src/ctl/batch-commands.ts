/**
 * What the `teiplex ctl batch` verbs do, over the client's BatchClient (the Files and Batches API
 * on the manager's HTTP data plane, docs/batch.md):
 *
 * - `submit FILE`: the flags checked first (nothing is uploaded for a bad flag), FILE uploaded
 *   (purpose batch), the batch created over it (endpoint /v1/embeddings, window 24h unless
 *   --completion-window says); if the
 *   create is refused, the uploaded file is deleted again. Prints the batch id; with --wait polls
 *   it (progress on stderr whenever it changes) until a final status: exit 0 only for
 *   `completed`, else 1 with the status and the batch's errors.
 * - `status [ID]`: one batch in detail, or every batch of the key as a table.
 * - `cancel ID`: the batch as `cancelling`.
 * - `download ID`: a finished batch's output file, and its error file if it has one, streamed to
 *   disk (each to a temporary name, then renamed); a batch still running is refused.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { fileExtension, isFinalBatchStatus, type BatchClient, type BatchObject, type CreateBatchRequest, type DownloadedFile } from '../client/batches.js';
import { intValue, UsageError, type FlagValues } from './args.js';
import { batchDetail, batchErrors, batchesTable, batchProgress, doneOfTotal } from './batch-views.js';
import type { Command, Io } from './commands.js';
import { describeFailure } from './failure.js';

/** How often `batch submit --wait` asks the manager. */
export const BATCH_POLL_MS = 1000;

const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

const OUTPUT_KINDS = ['dense', 'sparse', 'multivector'] as const;

/** The create body's teiplex fields and metadata from `batch submit`'s flags; a UsageError for a value of the wrong form. */
export function batchRequestFields(flags: FlagValues): Omit<CreateBatchRequest, 'input_file_id'> {
  const verb = 'batch submit';
  const str = (name: string): string | undefined => {
    const v = flags[name];
    if (typeof v !== 'string') return undefined;
    if (v.trim() === '') throw new UsageError(`--${name} needs a value, got ''`, verb);
    return v;
  };
  const out: Omit<CreateBatchRequest, 'input_file_id'> = {};
  const model = str('model');
  if (model !== undefined) out.model = model;
  const text = str('text-column');
  if (text !== undefined) out.text_column = text;
  const id = str('id-column');
  if (id !== undefined) out.id_column = id;
  const kind = str('output');
  if (kind !== undefined) out.output = kind as (typeof OUTPUT_KINDS)[number];
  const type = str('embedding-type');
  if (type !== undefined) out.embedding_type = type as NonNullable<CreateBatchRequest['embedding_type']>;
  const dims = str('dimensions');
  if (dims !== undefined) out.dimensions = intValue('dimensions', dims, 1, Number.MAX_SAFE_INTEGER, verb);
  const input = str('input-type');
  if (input !== undefined) out.input_type = input;
  const window = str('completion-window');
  if (window !== undefined) {
    // the form here; the bound (at most 168h) is the manager's
    if (!/^[1-9]\d{0,5}[hm]$/.test(window)) throw new UsageError(`--completion-window must be <n>h or <n>m (e.g. 24h, 90m), got '${window}'`, verb);
    out.completion_window = window;
  }
  const pairs = Array.isArray(flags.metadata) ? flags.metadata : [];
  if (pairs.length > 0) {
    const metadata: Record<string, string> = {};
    for (const p of pairs) {
      const eq = p.indexOf('=');
      if (eq <= 0) throw new UsageError(`--metadata must be KEY=VALUE, got '${p}'`, verb);
      const k = p.slice(0, eq);
      if (Object.hasOwn(metadata, k)) throw new UsageError(`--metadata ${k} given twice`, verb);
      metadata[k] = p.slice(eq + 1);
    }
    out.metadata = metadata;
  }
  return out;
}

export async function executeBatch(cmd: Command, client: BatchClient, io: Io): Promise<number> {
  const { verb, names, global } = cmd;
  const out = global.output;
  switch (verb.name) {
    case 'batch submit':
      return submit(cmd, client, io);
    case 'batch status': {
      if (names.length === 1) {
        const b = await client.getBatch(names[0]);
        io.out(out === 'json' ? json(b) : `${batchDetail(b, io.now())}\n`);
        return 0;
      }
      const all = await client.allBatches();
      if (out === 'json') io.out(json(all));
      else if (out === 'name') io.out(all.map((b) => `${b.id}\n`).join(''));
      else io.out(`${batchesTable(all, io.now())}\n`);
      return 0;
    }
    case 'batch cancel': {
      const b = await client.cancelBatch(names[0]);
      io.out(out === 'json' ? json(b) : `${b.id}: ${b.status} (${doneOfTotal(b)} rows done)\n`);
      return 0;
    }
    case 'batch download':
      return download(cmd, client, io);
    default:
      throw new Error(`verb '${verb.name}' has no implementation`);
  }
}

async function submit(cmd: Command, client: BatchClient, io: Io): Promise<number> {
  const file = cmd.names[0];
  const fields = batchRequestFields(cmd.flags);
  const st = await stat(file).catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(`${file}: ${err.code === 'ENOENT' ? 'no such file' : (err.code ?? err.message)}`, cmd.verb.name);
  });
  if (!st.isFile()) throw new UsageError(`${file}: not a file`, cmd.verb.name);
  const uploaded = await client.uploadFile(file);
  let batch: BatchObject;
  try {
    batch = await client.createBatch({ input_file_id: uploaded.id, ...fields });
  } catch (err) {
    // The file is of no use without its batch: give its room back (the key's storage and file count).
    await client.deleteFile(uploaded.id).catch((e: unknown) => io.err(`teiplex ctl: batch submit: the uploaded ${uploaded.id} could not be deleted: ${describeFailure(e, cmd.global.url, 'data')}\n`));
    throw err;
  }
  const asJson = cmd.global.output === 'json';
  if (cmd.flags.wait !== true) {
    io.out(asJson ? json(batch) : `${batch.id}\n`);
    return 0;
  }
  if (!asJson) io.out(`${batch.id}\n`);
  const final = await follow(batch, client, io);
  if (asJson) io.out(json(final));
  if (final.status !== 'completed') {
    const why = batchErrors(final);
    throw new Error(`${final.id} ${final.status}${why.length > 0 ? `: ${why.join('; ')}` : ''}`);
  }
  return 0;
}

/** Polls the batch until a final status; a line on stderr each time its status or counts change. */
async function follow(first: BatchObject, client: BatchClient, io: Io): Promise<BatchObject> {
  let b = first;
  let last = '';
  for (;;) {
    const line = batchProgress(b);
    if (line !== last) io.err(`${line}\n`);
    last = line;
    if (isFinalBatchStatus(b.status)) break;
    const interrupted = (): Error =>
      new Error(`interrupted while waiting for ${b.id} (${b.status}, ${doneOfTotal(b)} rows done); it runs on: \`teiplex ctl batch status ${b.id}\``);
    if (!(await io.pause(BATCH_POLL_MS))) throw interrupted();
    b = await client.getBatch(b.id, { signal: io.interrupt }).catch((err: unknown) => {
      throw io.interrupt.aborted ? interrupted() : err;
    });
  }
  const files = [b.output_file_id ? `output ${b.output_file_id}` : '', b.error_file_id ? `errors ${b.error_file_id}` : ''].filter((x) => x !== '');
  if (files.length > 0) io.err(`${b.id}: ${files.join(', ')}: \`teiplex ctl batch download ${b.id}\`\n`);
  return b;
}

/** Where a file goes: the flag's path (a directory: the default name in it), else the default name here. */
async function destination(flag: string | undefined, defaultName: string): Promise<string> {
  if (flag === undefined) return defaultName;
  const st = await stat(flag).catch(() => undefined);
  return st?.isDirectory() ? path.join(flag, defaultName) : flag;
}

async function download(cmd: Command, client: BatchClient, io: Io): Promise<number> {
  const id = cmd.names[0];
  const b = await client.getBatch(id);
  if (!isFinalBatchStatus(b.status)) {
    throw new Error(`${b.id} is ${b.status} (${doneOfTotal(b)} rows done): not finished, nothing to download yet; \`teiplex ctl batch status ${b.id}\` shows where it is`);
  }
  if (b.output_file_id === null && b.error_file_id === null) {
    const why = batchErrors(b);
    throw new Error(`${b.id} is ${b.status} with no output file${why.length > 0 ? `: ${why.join('; ')}` : ''}`);
  }
  const flag = (name: string): string | undefined => (typeof cmd.flags[name] === 'string' ? (cmd.flags[name] as string) : undefined);
  const outDir = flag('output');
  const errDir = flag('errors');
  let output: DownloadedFile | null = null;
  let errors: DownloadedFile | null = null;
  if (b.output_file_id !== null) {
    const intoDir = outDir !== undefined && (await stat(outDir).catch(() => undefined))?.isDirectory() === true;
    // The default name's ending is the output's format (the input's: JSONL, Arrow, Parquet), known from the answer.
    output = await client.fileContent(b.output_file_id, (type) => {
      const name = `${b.id}-output.${fileExtension(type)}`;
      return outDir === undefined ? name : intoDir ? path.join(outDir, name) : outDir;
    });
  }
  if (b.error_file_id !== null) {
    // Without --errors: beside the output file (the current directory when there is none).
    const name = `${b.id}-errors.jsonl`;
    errors = await client.fileContent(b.error_file_id, errDir === undefined ? path.join(output === null ? '.' : path.dirname(output.path), name) : await destination(errDir, name));
  }
  else if (errDir !== undefined) io.err(`teiplex ctl: batch download ${b.id}: no error file (no row failed); --errors ${errDir} not written\n`);
  if (b.status !== 'completed' && output !== null) {
    io.err(`teiplex ctl: batch download ${b.id}: the batch is ${b.status}: the output holds the ${b.request_counts.completed} rows done before it stopped\n`);
  }
  if (cmd.global.output === 'json') {
    const file = (f: DownloadedFile | null, fileId: string | null) => (f === null ? null : { file_id: fileId, path: f.path, bytes: f.bytes, content_type: f.contentType });
    io.out(json({ id: b.id, status: b.status, request_counts: b.request_counts, output: file(output, b.output_file_id), errors: file(errors, b.error_file_id) }));
  } else {
    if (output !== null) io.out(`output: ${output.path} (${output.bytes} bytes)\n`);
    if (errors !== null) io.out(`errors: ${errors.path} (${errors.bytes} bytes, ${b.request_counts.failed} failed rows)\n`);
  }
  return 0;
}
