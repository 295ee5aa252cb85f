/**
 * A small client for the manager's OpenAI-compatible Files and Batches API (docs/batch.md), for
 * bench/batch.ts: upload a file (multipart), create a batch, poll it until it ends, stream a
 * file's content, delete a file. Every non-2xx answer throws with the route, the status and the
 * OpenAI error body, so a bench run never mistakes a refusal for a result.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';

/** OpenAI's File object (the fields the bench reads). */
export interface FileObject {
  id: string;
  object: 'file';
  bytes: number;
  filename: string;
  purpose: string;
  status: string;
}

/** OpenAI's Batch object (the fields the bench reads), with teiplex's `model`. */
export interface BatchObject {
  id: string;
  object: 'batch';
  status: 'validating' | 'in_progress' | 'finalizing' | 'completed' | 'failed' | 'expired' | 'cancelling' | 'cancelled';
  input_file_id: string;
  output_file_id: string | null;
  error_file_id: string | null;
  errors: null | { object: 'list'; data: Array<{ code: string; message: string; param?: string | null; line?: number | null }> };
  created_at: number;
  in_progress_at: number | null;
  finalizing_at: number | null;
  completed_at: number | null;
  failed_at: number | null;
  request_counts: { total: number; completed: number; failed: number };
  model?: string;
}

/** A refused call: the HTTP status and the answer's body. */
export class BatchApiError extends Error {
  constructor(
    readonly route: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(`${route}: HTTP ${status}: ${body.slice(0, 400)}`);
  }
}

const TERMINAL = new Set(['completed', 'failed', 'expired', 'cancelled']);

/** The batch ended (completed or not). */
export const isTerminal = (b: BatchObject): boolean => TERMINAL.has(b.status);

export class BatchApi {
  private readonly base: string;
  private readonly auth: Record<string, string>;

  constructor(port: number, apiKey?: string) {
    this.base = `http://127.0.0.1:${port}`;
    this.auth = apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` };
  }

  private async json<T>(method: 'GET' | 'POST' | 'DELETE', route: string, body?: unknown): Promise<T> {
    const res = await request(this.base + route, {
      method,
      headers: { ...this.auth, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.body.text();
    if (res.statusCode < 200 || res.statusCode >= 300) throw new BatchApiError(`${method} ${route}`, res.statusCode, text);
    return JSON.parse(text) as T;
  }

  /** POST /v1/files: `bytes` as the multipart field `file` named `filename`, purpose `batch`. */
  async upload(bytes: Uint8Array, filename: string, contentType: string): Promise<FileObject> {
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([bytes], { type: contentType }), filename);
    const res = await fetch(`${this.base}/v1/files`, { method: 'POST', headers: this.auth, body: form });
    const text = await res.text();
    if (!res.ok) throw new BatchApiError('POST /v1/files', res.status, text);
    return JSON.parse(text) as FileObject;
  }

  /** POST /v1/batches: OpenAI's fields plus teiplex's extension fields in `extra` (model, text_column, ...). */
  create(inputFileId: string, extra: Record<string, unknown> = {}): Promise<BatchObject> {
    return this.json('POST', '/v1/batches', { input_file_id: inputFileId, endpoint: '/v1/embeddings', completion_window: '24h', ...extra });
  }

  get(id: string): Promise<BatchObject> {
    return this.json('GET', `/v1/batches/${id}`);
  }

  cancel(id: string): Promise<BatchObject> {
    return this.json('POST', `/v1/batches/${id}/cancel`);
  }

  /**
   * Polls the batch every `everyMs` until `done(batch)` holds, or throws after `timeoutMs`; returns
   * the batch and the monotonic time (performance.now()) of the poll that saw it.
   */
  async poll(id: string, done: (b: BatchObject) => boolean, everyMs: number, timeoutMs: number): Promise<{ batch: BatchObject; at: number }> {
    const end = performance.now() + timeoutMs;
    for (let b = await this.get(id); ; b = await this.get(id)) {
      const at = performance.now();
      if (done(b)) return { batch: b, at };
      if (at > end) throw new Error(`batch ${id}: still ${b.status} after ${Math.round(timeoutMs / 1000)} s (${JSON.stringify(b.request_counts)})`);
      await sleep(everyMs);
    }
  }

  /** GET /v1/files/{id}/content: the whole body (Arrow output). */
  async content(id: string): Promise<Buffer> {
    const res = await request(`${this.base}/v1/files/${id}/content`, { headers: this.auth });
    if (res.statusCode !== 200) throw new BatchApiError(`GET /v1/files/${id}/content`, res.statusCode, await res.body.text());
    return Buffer.from(await res.body.arrayBuffer());
  }

  /** GET /v1/files/{id}/content, line by line (JSONL output, which may be hundreds of MB): calls `onLine` for each non-empty line. */
  async lines(id: string, onLine: (line: string) => void): Promise<number> {
    const res = await request(`${this.base}/v1/files/${id}/content`, { headers: this.auth });
    if (res.statusCode !== 200) throw new BatchApiError(`GET /v1/files/${id}/content`, res.statusCode, await res.body.text());
    let rest = '';
    let n = 0;
    res.body.setEncoding('utf8');
    for await (const chunk of res.body as AsyncIterable<string>) {
      rest += chunk;
      let nl = rest.indexOf('\n');
      let from = 0;
      while (nl >= 0) {
        const line = rest.slice(from, nl);
        if (line.trim() !== '') {
          onLine(line);
          n++;
        }
        from = nl + 1;
        nl = rest.indexOf('\n', from);
      }
      rest = rest.slice(from);
    }
    if (rest.trim() !== '') {
      onLine(rest);
      n++;
    }
    return n;
  }

  /** DELETE /v1/files/{id} (results are large: the bench deletes them once checked). */
  async remove(id: string): Promise<void> {
    await this.json('DELETE', `/v1/files/${id}`);
  }
}
