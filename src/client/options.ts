/**
 * The client's options and their defaults, resolved once in the constructor: the manager's REST
 * and HTTP data plane base URL, the gRPC multiplexer's address, the API key, TLS (a private CA,
 * a client certificate for mTLS), the per-call deadline and the retry policy. A bad option is
 * refused there, naming it (as undici checks its options).
 */

/** TLS for https:// and the gRPC channel: a private CA, and a client certificate for mTLS. PEM text or bytes. */
export interface TlsOptions {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  /** The name the server's certificate must carry (SNI), when it differs from the URL's host. */
  servername?: string;
}

export interface RetryOptions {
  /** Tries in all, the first one included (default 4; 1: never retry). */
  attempts?: number;
  /** The first back-off (default 200 ms); doubled each retry, with full jitter. */
  baseDelayMs?: number;
  /** The longest back-off (default 5000 ms). A server's Retry-After is honoured up to `maxRetryAfterMs`. */
  maxDelayMs?: number;
  /** The longest Retry-After the client waits out (default 30000 ms); a longer one ends the retries. */
  maxRetryAfterMs?: number;
}

export interface ClientOptions {
  /** Manager REST + HTTP data plane base; default env TEIPLEX_URL, else http://127.0.0.1:9000. */
  url?: string;
  /** gRPC multiplexer; default env TEIPLEX_GRPC_URL, else url's host on port 9001. */
  grpcUrl?: string;
  /** Default env TEIPLEX_API_KEY; sent as `authorization: Bearer <key>`. */
  apiKey?: string;
  /** mTLS / private CA for https:// and the gRPC channel. */
  tls?: TlsOptions;
  /** Per-call deadline (default 30000). */
  timeoutMs?: number;
  /** Retries of idempotent calls only. */
  retry?: RetryOptions;
  /** Called before each retry (logging, metrics, tests): what failed and how long the client waits. */
  onRetry?: (event: RetryEvent) => void;
}

/** What a retry sees: the attempt that failed (1-based), the error, and the wait before the next try. */
export interface RetryEvent {
  attempt: number;
  error: Error;
  delayMs: number;
  /** What was retried, e.g. `GET /instances` or `gRPC Embed`. */
  operation: string;
}

export interface ResolvedRetry {
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  maxRetryAfterMs: number;
}

export interface ResolvedOptions {
  url: URL;
  grpcUrl: URL;
  apiKey: string | undefined;
  tls: TlsOptions | undefined;
  timeoutMs: number;
  retry: ResolvedRetry;
  onRetry: ((event: RetryEvent) => void) | undefined;
}

export const DEFAULT_URL = 'http://127.0.0.1:9000';
export const DEFAULT_GRPC_PORT = 9001;
export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_RETRY: ResolvedRetry = { attempts: 4, baseDelayMs: 200, maxDelayMs: 5_000, maxRetryAfterMs: 30_000 };

function parseUrl(what: string, text: string, schemes: string[]): URL {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new TypeError(`${what}: not a URL: ${JSON.stringify(text)}`);
  }
  if (!schemes.includes(u.protocol)) throw new TypeError(`${what}: scheme must be ${schemes.map((s) => s.replace(':', '')).join(' or ')}, got ${JSON.stringify(u.protocol.replace(':', ''))}`);
  return u;
}

function positive(what: string, v: number | undefined, dflt: number, min = 0): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new TypeError(`${what}: must be a finite number >= ${min}, got ${String(v)}`);
  return v;
}

/** The options with every default filled in; throws a TypeError naming the first bad option. */
export function resolveOptions(o: ClientOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedOptions {
  if (o === null || typeof o !== 'object') throw new TypeError('options: must be an object');
  const urlText = o.url ?? (env.TEIPLEX_URL !== undefined && env.TEIPLEX_URL !== '' ? env.TEIPLEX_URL : DEFAULT_URL);
  const url = parseUrl('url', urlText, ['http:', 'https:']);
  const grpcText = o.grpcUrl ?? (env.TEIPLEX_GRPC_URL !== undefined && env.TEIPLEX_GRPC_URL !== '' ? env.TEIPLEX_GRPC_URL : undefined);
  let grpcUrl: URL;
  if (grpcText !== undefined) {
    // A bare host:port is accepted too (grpcurl's habit): plaintext unless the REST URL is https.
    const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(grpcText) ? grpcText : `${url.protocol === 'https:' ? 'https' : 'http'}://${grpcText}`;
    grpcUrl = parseUrl('grpcUrl', withScheme, ['http:', 'https:', 'grpc:', 'grpcs:']);
    if (grpcUrl.port === '') throw new TypeError(`grpcUrl: must name a port, got ${JSON.stringify(grpcText)}`);
  } else {
    grpcUrl = new URL(url.href);
    grpcUrl.port = String(DEFAULT_GRPC_PORT);
    grpcUrl.pathname = '/';
  }
  const apiKey = o.apiKey ?? (env.TEIPLEX_API_KEY !== undefined && env.TEIPLEX_API_KEY !== '' ? env.TEIPLEX_API_KEY : undefined);
  if (apiKey !== undefined && (typeof apiKey !== 'string' || apiKey === '' || /[\r\n]/.test(apiKey))) throw new TypeError('apiKey: must be a non-empty string on one line');
  const tls = o.tls;
  if (tls !== undefined) {
    if (tls === null || typeof tls !== 'object') throw new TypeError('tls: must be an object');
    if ((tls.cert === undefined) !== (tls.key === undefined)) throw new TypeError('tls: cert and key go together (a client certificate needs its key)');
  }
  const timeoutMs = positive('timeoutMs', o.timeoutMs, DEFAULT_TIMEOUT_MS, 1);
  const r = o.retry ?? {};
  const attempts = positive('retry.attempts', r.attempts, DEFAULT_RETRY.attempts, 1);
  if (!Number.isInteger(attempts)) throw new TypeError(`retry.attempts: must be an integer >= 1, got ${attempts}`);
  const retry: ResolvedRetry = {
    attempts,
    baseDelayMs: positive('retry.baseDelayMs', r.baseDelayMs, DEFAULT_RETRY.baseDelayMs),
    maxDelayMs: positive('retry.maxDelayMs', r.maxDelayMs, DEFAULT_RETRY.maxDelayMs),
    maxRetryAfterMs: positive('retry.maxRetryAfterMs', r.maxRetryAfterMs, DEFAULT_RETRY.maxRetryAfterMs),
  };
  if (o.onRetry !== undefined && typeof o.onRetry !== 'function') throw new TypeError('onRetry: must be a function');
  return { url, grpcUrl, apiKey, tls, timeoutMs, retry, onRetry: o.onRetry };
}
