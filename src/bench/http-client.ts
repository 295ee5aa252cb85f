/**
 * HTTP plumbing of the bench: one undici Pool per run with a connection per concurrent caller
 * (keep-alive, no pipelining, so N callers are N requests in flight), TLS/mTLS from
 * --ca/--cert/--key, the API key header, and JSON POSTs that turn an error status into an
 * HttpStatusError with the server's message.
 */
import { Pool } from 'undici';
import { HttpStatusError } from './errors.js';
import type { BenchOptions } from './options.js';

export interface JsonPoster {
  /** POST a JSON body (already serialized) to `route`; resolves with the parsed answer. */
  post(route: string, body: string): Promise<unknown>;
  close(): Promise<void>;
}

/** The message of a TEI (`{error}`), OpenAI (`{error: {message}}`) or TEI-OpenAI (`{message}`) error body. */
function errorText(status: number, text: string): string {
  try {
    const v = JSON.parse(text) as { error?: unknown; message?: unknown };
    if (typeof v.error === 'string') return v.error;
    if (v.error !== null && typeof v.error === 'object' && typeof (v.error as { message?: unknown }).message === 'string') {
      return (v.error as { message: string }).message;
    }
    if (typeof v.message === 'string') return v.message;
  } catch {
    // not JSON
  }
  return `HTTP ${status}: ${text.slice(0, 200)}`;
}

export function jsonPoster(opts: BenchOptions): JsonPoster {
  const { origin, basePath, tls } = opts.endpoint;
  const { ca, cert, key } = opts.tlsFiles;
  const pool = new Pool(origin, {
    connections: opts.concurrency,
    pipelining: 1,
    headersTimeout: opts.timeoutMs,
    bodyTimeout: opts.timeoutMs,
    connect: tls ? { ca, cert, key } : undefined,
  });
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (opts.apiKey !== undefined) headers.authorization = `Bearer ${opts.apiKey}`;
  return {
    async post(route, body) {
      const res = await pool.request({ path: basePath + route, method: 'POST', headers, body });
      if (res.statusCode >= 400) {
        const text = await res.body.text();
        throw new HttpStatusError(res.statusCode, errorText(res.statusCode, text));
      }
      return res.body.json();
    },
    close: () => pool.close(),
  };
}
