/**
 * The manager's Files and Batches API (OpenAI's `/v1/files` and `/v1/batches` on the HTTP data
 * plane, docs/batch.md) as typed calls: upload an input file (a path, read from disk as it is
 * sent, or bytes), create a batch over it, follow it, cancel it, and stream its output and error
 * files to disk. The wire shapes are OpenAI's (snake_case), with teiplex's extension fields.
 * GETs are retried like every idempotent call; uploads, creates, cancels and deletes are sent once.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, openAsBlob } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { FormData } from 'undici';
import { pipeline } from 'node:stream/promises';
import { BAD_RESPONSE, CANCELLED, CancelledError, CONNECTION_FAILED, ConnectionError, ServerError, TeiplexClientError, TIMEOUT, TimeoutError } from './errors.js';
import { HttpTransport, type CallOptions } from './http-transport.js';
import { resolveOptions, type ClientOptions } from './options.js';

export { FINAL_BATCH_STATUSES, isFinalBatchStatus, type BatchError, type BatchObject, type BatchStatus, type FileObject, type ListPage } from '../tei/batch-objects.js';
import type { BatchObject, FileObject, ListPage } from '../tei/batch-objects.js';

/** Dense vectors' output types (docs/data-plane.md). */
export type BatchEmbeddingType = 'float32' | 'float16' | 'int8' | 'uint8' | 'binary' | 'ubinary';

/** POST /v1/batches: OpenAI's fields (endpoint and completion_window default to the only values taken) and teiplex's. */
export interface CreateBatchRequest {
  input_file_id: string;
  /** `/v1/embeddings` (the default). */
  endpoint?: string;
  /** `24h` (the default). */
  completion_window?: string;
  metadata?: Record<string, string>;
  /** The model (required for Arrow or Parquet input, whose rows carry no request body). */
  model?: string;
  /** Table input: the text column (default `text`, else the only string column). */
  text_column?: string;
  /** Table input: the id column (default `id` when present, else the row number). */
  id_column?: string;
  /** What each row becomes (default by model: sparse for SPLADE, else dense). */
  output?: 'dense' | 'sparse' | 'multivector';
  embedding_type?: BatchEmbeddingType;
  dimensions?: number;
  input_type?: string;
}

/** What `fileContent` wrote. */
export interface DownloadedFile {
  /** Where the file is (the path given). */
  path: string;
  bytes: number;
  /** The manager's content type: application/jsonl, application/vnd.apache.arrow.stream or .file, application/vnd.apache.parquet. */
  contentType: string;
}

/** The file name ending that a content type of the Files API stands for (`jsonl`, `arrow`, `arrows`, `parquet`). */
export function fileExtension(contentType: string): string {
  const t = contentType.split(';')[0]!.trim().toLowerCase();
  if (t === 'application/vnd.apache.parquet') return 'parquet';
  if (t === 'application/vnd.apache.arrow.file') return 'arrow';
  if (t === 'application/vnd.apache.arrow.stream') return 'arrows';
  return 'jsonl';
}

function segment(what: string, id: string): string {
  if (typeof id !== 'string' || id === '') throw new TypeError(`${what}: must be a non-empty string`);
  return encodeURIComponent(id);
}

/** A failure of the body's transfer as the client's typed error (a gap past the deadline, a dropped connection, the signal). */
function transferError(e: unknown, operation: string, timeoutMs: number, signal?: AbortSignal): Error {
  if (e instanceof TeiplexClientError) return e;
  if (signal?.aborted) return new CancelledError(CANCELLED, `${operation}: cancelled`, { cause: e });
  const code = e instanceof Error ? (e as { code?: string }).code : undefined;
  if (code === 'UND_ERR_BODY_TIMEOUT') return new TimeoutError(TIMEOUT, `${operation}: no byte for ${timeoutMs} ms`, { cause: e });
  if (code?.startsWith('UND_ERR') || code === 'ECONNRESET') return new ConnectionError(CONNECTION_FAILED, `${operation}: the transfer broke: ${code}: ${(e as Error).message}`, { cause: e });
  return e instanceof Error ? e : new Error(String(e));
}

export class BatchClient {
  readonly #http: HttpTransport;
  readonly #timeoutMs: number;

  constructor(options?: ClientOptions) {
    const o = resolveOptions(options);
    this.#http = new HttpTransport(o);
    this.#timeoutMs = o.timeoutMs;
  }

  async #get<T>(p: string, query?: Record<string, string | number | undefined>, opts?: CallOptions): Promise<T> {
    return (await this.#http.call<T>({ method: 'GET', path: p, query, idempotent: true }, opts)).body;
  }

  async #mutate<T>(method: 'POST' | 'DELETE', p: string, body?: unknown, opts?: CallOptions): Promise<T> {
    return (await this.#http.call<T>({ method, path: p, body, idempotent: false }, opts)).body;
  }

  /**
   * POST /v1/files (purpose `batch`): uploads a file by its path (streamed from disk; its name is
   * the path's last part unless `filename` names another) or bytes (then `filename` is needed).
   * Sent once; `timeoutMs` bounds the whole upload.
   */
  async uploadFile(source: string | Uint8Array, filename?: string, opts?: CallOptions): Promise<FileObject> {
    let blob: Blob;
    let name: string;
    if (typeof source === 'string') {
      if (source === '') throw new TypeError('source: must be a path or bytes');
      // stat names the path and the reason (ENOENT, EACCES) where openAsBlob would not.
      if (!(await stat(source)).isFile()) throw new TypeError(`source: ${source} is not a file`);
      blob = await openAsBlob(source);
      name = filename ?? path.basename(source);
    } else if (source instanceof Uint8Array) {
      if (filename === undefined) throw new TypeError('filename: needed when uploading bytes');
      blob = new Blob([source]);
      name = filename;
    } else {
      throw new TypeError('source: must be a path or bytes');
    }
    if (typeof name !== 'string' || name === '' || /[\r\n"]/.test(name)) throw new TypeError('filename: must be a non-empty name on one line, without quotes');
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', blob, name);
    return (await this.#http.call<FileObject>({ method: 'POST', path: '/v1/files', form, idempotent: false }, opts)).body;
  }

  /** GET /v1/files: one page (`limit`, `after`: the last id of the page before, `order`). */
  listFiles(query: { purpose?: string; limit?: number; after?: string; order?: 'asc' | 'desc' } = {}, opts?: CallOptions): Promise<ListPage<FileObject>> {
    return this.#get('/v1/files', query, opts);
  }

  /** GET /v1/files/{id}. */
  getFile(id: string, opts?: CallOptions): Promise<FileObject> {
    return this.#get(`/v1/files/${segment('id', id)}`, undefined, opts);
  }

  /** DELETE /v1/files/{id}. Sent once. */
  deleteFile(id: string, opts?: CallOptions): Promise<{ id: string; object: 'file'; deleted: boolean }> {
    return this.#mutate('DELETE', `/v1/files/${segment('id', id)}`, undefined, opts);
  }

  /**
   * GET /v1/files/{id}/content, streamed to `dest` (a path, or a function of the answer's content
   * type that names one: `(type) => \`out.${fileExtension(type)}\``): written to a temporary name
   * beside it, then renamed, so `dest` is either the whole file or untouched (a file already there
   * is replaced only by a complete one). `timeoutMs` bounds the wait for the answer and each gap
   * in the transfer, not the whole transfer.
   */
  async fileContent(id: string, to: string | ((contentType: string) => string), opts: CallOptions = {}): Promise<DownloadedFile> {
    if (typeof to !== 'function' && (typeof to !== 'string' || to === '')) throw new TypeError('dest: must be a path or a function of the content type');
    const p = `/v1/files/${segment('id', id)}/content`;
    const operation = `GET ${p}`;
    const answer = await this.#http.open({ method: 'GET', path: p, idempotent: true }, opts);
    const contentType = String(answer.headers['content-type'] ?? 'application/octet-stream');
    let dest: string;
    try {
      dest = typeof to === 'function' ? to(contentType) : to;
      if (typeof dest !== 'string' || dest === '') throw new TypeError('dest: the function must name a path');
    } catch (e) {
      answer.body.destroy();
      throw e;
    }
    const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.${randomBytes(6).toString('hex')}.part`);
    let bytes = 0;
    try {
      await pipeline(answer.body, createWriteStream(tmp, { flags: 'wx' }), opts.signal !== undefined ? { signal: opts.signal } : {});
      // On disk before the rename makes it the file (a crash then leaves the whole file or the old one).
      const fh = await open(tmp, 'r+');
      try {
        await fh.sync();
        bytes = (await fh.stat()).size;
      } finally {
        await fh.close();
      }
      const expected = Number(answer.headers['content-length']);
      if (answer.headers['content-length'] !== undefined && Number.isFinite(expected) && expected !== bytes) {
        throw new ServerError(BAD_RESPONSE, `${operation}: ${bytes} bytes came, content-length said ${expected}`, { status: answer.status });
      }
      await rename(tmp, dest);
    } catch (e) {
      answer.body.destroy();
      await rm(tmp, { force: true });
      throw transferError(e, operation, opts.timeoutMs ?? this.#timeoutMs, opts.signal);
    }
    return { path: dest, bytes, contentType };
  }

  /** POST /v1/batches (endpoint `/v1/embeddings` and completion_window `24h` unless given). Sent once. */
  createBatch(req: CreateBatchRequest, opts?: CallOptions): Promise<BatchObject> {
    if (req === null || typeof req !== 'object') throw new TypeError('request: must be an object');
    segment('input_file_id', req.input_file_id);
    return this.#mutate('POST', '/v1/batches', { endpoint: '/v1/embeddings', completion_window: '24h', ...req }, opts);
  }

  /** GET /v1/batches/{id}. */
  getBatch(id: string, opts?: CallOptions): Promise<BatchObject> {
    return this.#get(`/v1/batches/${segment('id', id)}`, undefined, opts);
  }

  /** GET /v1/batches: one page (`limit`, `after`: the last id of the page before). */
  listBatches(query: { limit?: number; after?: string } = {}, opts?: CallOptions): Promise<ListPage<BatchObject>> {
    return this.#get('/v1/batches', query, opts);
  }

  /** Every batch the key owns, page after page (`pageSize` a page, else the server's page; at most `maxPages` pages). */
  async allBatches(o: { pageSize?: number; maxPages?: number } & CallOptions = {}): Promise<BatchObject[]> {
    const out: BatchObject[] = [];
    let after: string | undefined;
    for (let page = 0; page < (o.maxPages ?? 1000); page++) {
      const r = await this.listBatches({ ...(o.pageSize !== undefined ? { limit: o.pageSize } : {}), ...(after !== undefined ? { after } : {}) }, o);
      out.push(...r.data);
      // A page that ends nowhere new would repeat itself: stop there.
      if (!r.has_more || r.last_id === null || r.last_id === after || r.data.length === 0) break;
      after = r.last_id;
    }
    return out;
  }

  /** POST /v1/batches/{id}/cancel: the batch as `cancelling` (then `cancelled`; the rows done so far stay in its output). Sent once. */
  cancelBatch(id: string, opts?: CallOptions): Promise<BatchObject> {
    return this.#mutate('POST', `/v1/batches/${segment('id', id)}/cancel`, undefined, opts);
  }

  /** Closes the client's connections. */
  close(): Promise<void> {
    return this.#http.close();
  }
}
