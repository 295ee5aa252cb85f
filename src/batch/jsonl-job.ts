/**
 * A JSONL batch (OpenAI's input format): one request per non-blank line, `{custom_id, method:
 * "POST", url: "/v1/embeddings", body}`, the body checked by /v1/embeddings' own schema. The file
 * is read once to count its lines, find where each chunk starts, and mark repeated custom_ids
 * (done again after a restart: the file never changes); a chunk is then read from its offset.
 *
 * A chunk's lines are embedded in as few calls as their bodies allow (lines with the same model,
 * dimensions, embedding_type and input_type together), and each line's answer is the one
 * /v1/embeddings would give (its encoding_format, its own usage). A line that is not a request
 * (not JSON, no custom_id, another url, a bad body, a repeated custom_id, a model that does not
 * exist) goes to the error file with the status the endpoint would answer; it never fails the job.
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Static } from '@sinclair/typebox';
import { TeiplexError } from '../common/errors.js';
import { typedRows } from '../tei/embedding-output.js';
import { OpenAIEmbeddingsRequest, typeboxValidator } from '../tei/http-schemas.js';
import { inputList } from '../tei/http-routes.js';
import { applyInputType } from '../tei/input-types.js';
import { tokenCount } from '../tei/metadata.js';
import type { EncodeOptions, Metadata, TextInput } from '../tei/types.js';
import { BATCH_ENDPOINT } from './batch-job.js';
import type { ChunkResult, JobKind, JobLimits } from './job-kind.js';
import type { JobTarget } from './job-target.js';
import { failureLine } from './output-lines.js';
import type { BatchWorkers, RenderLine } from './batch-workers.js';
import type { TypedRow } from '../tei/embedding-types.js';
import { callRows } from './row-calls.js';
import { concatFiles } from './concat-files.js';

type Body = Static<typeof OpenAIEmbeddingsRequest>;

/** The longest custom_id kept (OpenAI's ids are short; a longer one is a row error). */
const MAX_CUSTOM_ID = 512;

const checkBody = typeboxValidator({ schema: OpenAIEmbeddingsRequest });

interface Line {
  /** Row number in the file (non-blank lines from 0) and line number (from 1). */
  row: number;
  line: number;
  customId: string;
  body?: Body;
  inputs?: TextInput[];
  error?: unknown;
}

/** What reading the whole file found. */
export interface JsonlIndex {
  rows: number;
  /** Byte offset of each chunk's first line, and the file's end. */
  offsets: number[];
  /** The line number (from 1, blank lines counted) of each chunk's first line. */
  firstLines: number[];
  /** Rows whose custom_id an earlier row has. */
  repeated: Set<number>;
  /** The first model a line names. */
  firstModel: string | null;
}

/** Read the file once: rows, chunk offsets, repeated custom_ids, the first model. Throws VALIDATION past maxRows. */
export async function indexJsonl(file: string, chunkRows: number, maxRows: number): Promise<JsonlIndex> {
  const offsets = [0];
  const firstLines = [1];
  let lineNo = 0;
  const seen = new Set<string>();
  const repeated = new Set<number>();
  let firstModel: string | null = null;
  let rows = 0;
  let pos = 0;
  let lineStart = 0;
  let carry: Buffer[] = [];
  const onLine = (bytes: Buffer, start: number): void => {
    lineNo++;
    const text = bytes.toString('utf8').trim();
    if (text === '') return;
    if (rows > 0 && rows % chunkRows === 0) {
      offsets.push(start);
      firstLines.push(lineNo);
    }
    if (rows >= maxRows) throw new TeiplexError('VALIDATION', `the input file has more than batch_max_rows (${maxRows}) requests`, { param: 'input_file_id' });
    const parsed = parseLine(text);
    if (parsed !== undefined) {
      if (seen.has(parsed.customId)) repeated.add(rows);
      else seen.add(parsed.customId);
      if (firstModel === null && typeof parsed.model === 'string' && parsed.model !== '') firstModel = parsed.model;
    }
    rows++;
  };
  for await (const piece of createReadStream(file) as AsyncIterable<Buffer>) {
    let from = 0;
    for (let nl = piece.indexOf(10); nl !== -1; nl = piece.indexOf(10, from)) {
      const part = piece.subarray(from, nl);
      onLine(carry.length === 0 ? part : Buffer.concat([...carry, part]), lineStart);
      carry = [];
      from = nl + 1;
      lineStart = pos + from;
    }
    if (from < piece.length) carry.push(piece.subarray(from));
    pos += piece.length;
  }
  if (carry.length > 0) onLine(Buffer.concat(carry), lineStart);
  offsets.push(pos);
  return { rows, offsets, firstLines, repeated, firstModel };
}

/** A line's custom_id and model, when it is a JSON object with a custom_id; undefined otherwise. */
function parseLine(text: string): { customId: string; model: unknown; value: Record<string, unknown> } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.custom_id !== 'string' || v.custom_id === '' || v.custom_id.length > MAX_CUSTOM_ID) return undefined;
  const body = v.body as Record<string, unknown> | undefined;
  return { customId: v.custom_id, model: typeof body === 'object' && body !== null ? body.model : undefined, value: v };
}

/** One line as a request, or the row error it is. */
function requestOf(text: string, row: number, line: number, index: JsonlIndex, limits: JobLimits, defaultModel: string | undefined): Line {
  const parsed = parseLine(text);
  const fail = (message: string, param?: string): Line => ({ row, line, customId: parsed?.customId ?? `line-${line}`, error: new TeiplexError('BAD_REQUEST', `line ${line}: ${message}`, param !== undefined ? { param } : {}) });
  if (parsed === undefined) {
    try {
      JSON.parse(text);
    } catch {
      return fail('not JSON');
    }
    return fail(`needs a \`custom_id\` (a string of 1 to ${MAX_CUSTOM_ID} characters)`, 'custom_id');
  }
  const v = parsed.value;
  if (index.repeated.has(row)) return fail(`custom_id '${parsed.customId.slice(0, 64)}' is used by an earlier line`, 'custom_id');
  if (v.method !== 'POST') return fail('`method` must be "POST"', 'method');
  if (v.url !== BATCH_ENDPOINT) return fail(`\`url\` must be "${BATCH_ENDPOINT}" (the batch's endpoint)`, 'url');
  const r = checkBody(v.body);
  if ('error' in r && r.error !== undefined) return fail(`body: ${r.error.message}`, r.error.field === '' ? 'body' : `body.${r.error.field}`);
  const body = v.body as Body;
  if ((body.model ?? defaultModel ?? '') === '') return fail('body.model is required (or the batch\'s `model`)', 'body.model');
  const inputs = inputList(body.input);
  if (inputs.length === 0) return { row, line, customId: parsed.customId, error: new TeiplexError('EMPTY', '`input` cannot be empty', { param: 'input' }) };
  if (inputs.length > limits.maxRequestInputs) {
    return { row, line, customId: parsed.customId, error: new TeiplexError('TOO_MANY_INPUTS', `\`input\` has ${inputs.length} inputs, more than max_request_inputs (${limits.maxRequestInputs})`, { param: 'input' }) };
  }
  return { row, line, customId: parsed.customId, body, inputs };
}

/**
 * Each line's tokens: its inputs' metadata (a teiplex router's Batch answer and tei.v1 give one
 * per input). A child whose answer has fewer (a router from before `input_tokens`: one per call)
 * gives only the calls' exact total, shared out here by the lines' characters, the total kept.
 */
function lineTokens(lines: readonly Line[], metadata: readonly Metadata[]): number[] {
  const sizes = lines.map((l) => (l.inputs as TextInput[]).length);
  if (metadata.length === sizes.reduce((a, b) => a + b, 0)) {
    let at = 0;
    return sizes.map((n) => tokenCount(metadata.slice(at, (at += n))));
  }
  const total = tokenCount(metadata);
  const weights = lines.map((l) => (l.inputs as TextInput[]).reduce((s, x) => s + Math.max(1, x.length), 0));
  const sum = weights.reduce((a, b) => a + b, 0);
  const shares = weights.map((w) => Math.floor((total * w) / sum));
  let left = total - shares.reduce((a, b) => a + b, 0);
  for (let k = 0; left > 0; k = (k + 1) % shares.length, left--) shares[k]++;
  return shares;
}

/** Lines embedded together: same model and options. */
const groupKey = (b: Body, model: string): string => JSON.stringify([model, b.dimensions ?? null, b.embedding_type ?? 'float32', b.input_type ?? null]);

export class JsonlJob implements JobKind {
  readonly outputFormat = 'jsonl' as const;

  constructor(
    private readonly file: string,
    private readonly index: JsonlIndex,
    private readonly owner: string,
    private readonly target: JobTarget,
    private readonly limits: JobLimits,
    private readonly defaultModel: string | undefined,
    private readonly workers: BatchWorkers,
  ) {}

  get chunks(): number {
    return this.index.offsets.length - 1;
  }

  async runChunk(n: number, signal: AbortSignal): Promise<ChunkResult> {
    const lines = await this.readChunk(n);
    const groups = new Map<string, Line[]>();
    for (const l of lines) {
      if (l.body === undefined) continue;
      const model = l.body.model ?? this.defaultModel ?? '';
      const key = groupKey(l.body, model);
      const g = groups.get(key);
      if (g === undefined) groups.set(key, [l]);
      else g.push(l);
    }
    const answers = new Map<number, string>();
    for (const g of groups.values()) {
      const outcomes = await this.embedLines(g, signal);
      const ok: Line[] = [];
      const rows: TypedRow[] = [];
      const render: RenderLine[] = [];
      g.forEach((l, k) => {
        const o = outcomes[k];
        if (!o.ok) {
          l.error = o.error;
          return;
        }
        ok.push(l);
        rows.push(...o.value.rows);
        render.push({ customId: l.customId, rows: o.value.rows.length, base64: l.body?.encoding_format === 'base64', tokens: o.value.tokens });
      });
      if (ok.length === 0) continue;
      // The JSON text of the vectors is written on a worker thread: the event loop stays free.
      const text = await this.workers.render(render, rows, g[0].body?.embedding_type ?? 'float32', ok[0].body?.model ?? this.defaultModel ?? '');
      ok.forEach((l, k) => answers.set(l.row, text[k]));
    }
    let out = '';
    let err = '';
    let completed = 0;
    for (const l of lines) {
      const line = answers.get(l.row);
      if (line !== undefined) {
        out += line;
        completed++;
      } else err += failureLine(l.customId, l.error);
    }
    return { out, err, counts: { completed, failed: lines.length - completed } };
  }

  async writeOutput(parts: ReadonlyArray<string | undefined>, dest: string): Promise<boolean> {
    return concatFiles(parts, dest);
  }

  /** The custom_ids of chunk `n` (for the error lines of rows that never ran). */
  async chunkIds(n: number): Promise<string[]> {
    return (await this.readChunk(n)).map((l) => l.customId);
  }

  private async readChunk(n: number): Promise<Line[]> {
    const start = this.index.offsets[n];
    const end = this.index.offsets[n + 1];
    const buf = Buffer.alloc(end - start);
    const fh = await open(this.file, 'r');
    try {
      await fh.read(buf, 0, buf.length, start);
    } finally {
      await fh.close();
    }
    const out: Line[] = [];
    let row = n * this.limits.chunkRows;
    let line = this.index.firstLines[n] - 1;
    for (const text of buf.toString('utf8').split('\n')) {
      line++;
      if (text.trim() === '') continue;
      out.push(requestOf(text, row, line, this.index, this.limits, this.defaultModel));
      row++;
    }
    return out;
  }

  /** Each line's vectors (in the output type) and tokens, the lines of one group in as few calls as their failures allow. */
  private embedLines(group: Line[], signal: AbortSignal) {
    const first = group[0].body as Body;
    const model = first.model ?? this.defaultModel ?? '';
    const type = first.embedding_type ?? 'float32';
    return callRows(
      group,
      (ls) =>
        this.target.run(this.owner, model, 'dense', signal, async (m) => {
          const inputs = ls.flatMap((l) => l.inputs as TextInput[]);
          const base: EncodeOptions = { truncate: m.autoTruncate, truncationDirection: 'right' };
          const typed = applyInputType(inputs, base, first.input_type, m.prompts, m.modelName);
          const opts = { ...typed.e, normalize: true, ...(first.dimensions != null ? { dimensions: first.dimensions } : {}) };
          const res = await m.engine.embed(typed.inputs, opts, m.call);
          const rows = await typedRows(m.engine, res.results, type, opts, m.call);
          const tokens = lineTokens(ls, res.metadata);
          let at = 0;
          return ls.map((l, k) => {
            const n = (l.inputs as TextInput[]).length;
            return { rows: rows.slice(at, (at += n)), tokens: tokens[k] };
          });
        }),
      (ls, index) => {
        let at = 0;
        for (let k = 0; k < ls.length; k++) {
          at += (ls[k].inputs as TextInput[]).length;
          if (index < at) return k;
        }
        return -1;
      },
    );
  }
}
