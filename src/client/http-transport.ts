/**
 * The client's HTTP: one keep-alive undici Agent per client (TLS: a private CA, a client
 * certificate for mTLS), the API key as `authorization: Bearer`, a deadline per attempt, retries
 * of idempotent calls (retry.ts), JSON in and out, and every failure as a typed error
 * (errors.ts): the server's code from its body, CONNECTION_FAILED, TIMEOUT, BAD_RESPONSE. A
 * multipart form is sent as it is (file uploads, read from disk as they go), and `open` answers a
 * body as a stream (file downloads), its deadline the time without a byte.
 */
import type { Readable } from 'node:stream';
import { Agent, type FormData, request } from 'undici';
import { BAD_RESPONSE, CANCELLED, CancelledError, CONNECTION_FAILED, ConnectionError, errorFromHttp, ServerError, TeiplexClientError, TIMEOUT, TimeoutError } from './errors.js';
import type { ResolvedOptions } from './options.js';
import { withRetry } from './retry.js';

/** Per-call overrides. */
export interface CallOptions {
  /** This call's deadline per try (default: the client's timeoutMs). */
  timeoutMs?: number;
  /** Cancels the call (and the waiting between tries). */
  signal?: AbortSignal;
  /** false: one try only, even for an idempotent call. */
  retry?: boolean;
  /** More request headers (e.g. `x-teiplex-no-wait: 1`). */
  headers?: Record<string, string>;
}

export interface HttpCall {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  /** Whether a retry is allowed (GETs and inference: yes; admin mutations: never). */
  idempotent: boolean;
  /** The answer is text, not JSON (GET /metrics). */
  text?: boolean;
  /** A multipart/form-data body (file uploads) instead of `body`; its content type (with the boundary) is set from it. */
  form?: FormData;
}

export interface HttpAnswer<T> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: T;
}

/** An answer whose body is still to be read (`open`): a status below 400. */
export interface HttpStream {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The bytes as they come; a gap longer than the deadline fails it with undici's BodyTimeoutError. */
  body: Readable;
}

export class HttpTransport {
  readonly #o: ResolvedOptions;
  readonly #agent: Agent;

  constructor(o: ResolvedOptions) {
    this.#o = o;
    const tls = o.tls;
    this.#agent = new Agent({
      connect: tls === undefined ? {} : { ca: tls.ca, cert: tls.cert, key: tls.key, ...(tls.servername !== undefined ? { servername: tls.servername } : {}) },
    });
  }

  /** The call's URL: the base URL's path prefix kept, the query appended. */
  url(path: string, query?: HttpCall['query']): URL {
    const base = this.#o.url;
    const u = new URL(base.href);
    u.pathname = `${base.pathname.replace(/\/+$/, '')}${path}`;
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
    return u;
  }

  /** One call, retried when idempotent and the failure allows it; the parsed answer or a typed error. */
  async call<T>(c: HttpCall, opts: CallOptions = {}): Promise<HttpAnswer<T>> {
    const operation = `${c.method} ${c.path}`;
    return withRetry(
      { operation, idempotent: c.idempotent && opts.retry !== false, policy: this.#o.retry, onRetry: this.#o.onRetry, signal: opts.signal },
      () => this.#once<T>(c, operation, opts),
    );
  }

  async #once<T>(c: HttpCall, operation: string, opts: CallOptions): Promise<HttpAnswer<T>> {
    const timeoutMs = opts.timeoutMs ?? this.#o.timeoutMs;
    const ac = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, timeoutMs);
    const onAbort = () => ac.abort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
    if (this.#o.apiKey !== undefined) headers.authorization = `Bearer ${this.#o.apiKey}`;
    let payload: string | FormData | undefined;
    if (c.form !== undefined) payload = c.form;
    else if (c.body !== undefined) {
      payload = JSON.stringify(c.body);
      headers['content-type'] = 'application/json';
    }
    try {
      const res = await request(this.url(c.path, c.query), { method: c.method, headers, body: payload, dispatcher: this.#agent, signal: ac.signal });
      const text = await res.body.text();
      let body: unknown = text;
      const type = String(res.headers['content-type'] ?? '');
      if (type.includes('json') && text !== '') {
        try {
          body = JSON.parse(text);
        } catch (e) {
          throw new ServerError(BAD_RESPONSE, `${operation}: ${res.statusCode}: the answer is not JSON: ${text.slice(0, 200)}`, { status: res.statusCode, cause: e });
        }
      }
      if (res.statusCode >= 400) throw errorFromHttp(res.statusCode, body, res.headers['retry-after'], operation);
      if (!c.text && typeof body === 'string' && res.statusCode !== 204) {
        throw new ServerError(BAD_RESPONSE, `${operation}: ${res.statusCode}: expected JSON, got ${type || 'no content type'}`, { status: res.statusCode });
      }
      return { status: res.statusCode, headers: res.headers, body: body as T };
    } catch (e) {
      if (e instanceof TeiplexClientError) throw e;
      if (timedOut) throw new TimeoutError(TIMEOUT, `${operation}: no answer within ${timeoutMs} ms`, { cause: e });
      if (opts.signal?.aborted) throw new CancelledError(CANCELLED, `${operation}: cancelled`, { cause: e });
      const reason = e instanceof Error ? ((e as { code?: string }).code ?? e.message) : String(e);
      const detail = e instanceof Error && e.cause instanceof Error ? `: ${e.cause.message}` : e instanceof Error && e.message !== reason ? `: ${e.message}` : '';
      throw new ConnectionError(CONNECTION_FAILED, `${operation}: cannot reach ${this.#o.url.origin}: ${reason}${detail}`, { cause: e });
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * One call whose answer body is streamed to the caller (a file's content): retried like `call`
   * until the answer's headers come; an error status is read whole and thrown as a typed error.
   * The deadline bounds the wait for the headers and each gap between two pieces of the body,
   * not the whole transfer (a large file takes as long as it takes).
   */
  async open(c: HttpCall, opts: CallOptions = {}): Promise<HttpStream> {
    const operation = `${c.method} ${c.path}`;
    return withRetry(
      { operation, idempotent: c.idempotent && opts.retry !== false, policy: this.#o.retry, onRetry: this.#o.onRetry, signal: opts.signal },
      () => this.#openOnce(c, operation, opts),
    );
  }

  async #openOnce(c: HttpCall, operation: string, opts: CallOptions): Promise<HttpStream> {
    const timeoutMs = opts.timeoutMs ?? this.#o.timeoutMs;
    const headers: Record<string, string> = { accept: '*/*', ...opts.headers };
    if (this.#o.apiKey !== undefined) headers.authorization = `Bearer ${this.#o.apiKey}`;
    try {
      const res = await request(this.url(c.path, c.query), {
        method: c.method,
        headers,
        dispatcher: this.#agent,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        ...(opts.signal !== undefined ? { signal: opts.signal } : {}),
      });
      if (res.statusCode >= 400) {
        const text = await res.body.text();
        let body: unknown = text;
        if (String(res.headers['content-type'] ?? '').includes('json')) {
          try {
            body = JSON.parse(text);
          } catch {
            // the text itself is the message
          }
        }
        throw errorFromHttp(res.statusCode, body, res.headers['retry-after'], operation);
      }
      return { status: res.statusCode, headers: res.headers, body: res.body };
    } catch (e) {
      if (e instanceof TeiplexClientError) throw e;
      if (opts.signal?.aborted) throw new CancelledError(CANCELLED, `${operation}: cancelled`, { cause: e });
      const code = e instanceof Error ? (e as { code?: string }).code : undefined;
      if (code === 'UND_ERR_HEADERS_TIMEOUT') throw new TimeoutError(TIMEOUT, `${operation}: no answer within ${timeoutMs} ms`, { cause: e });
      const reason = e instanceof Error ? (code ?? e.message) : String(e);
      const detail = e instanceof Error && e.cause instanceof Error ? `: ${e.cause.message}` : e instanceof Error && e.message !== reason ? `: ${e.message}` : '';
      throw new ConnectionError(CONNECTION_FAILED, `${operation}: cannot reach ${this.#o.url.origin}: ${reason}${detail}`, { cause: e });
    }
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}
