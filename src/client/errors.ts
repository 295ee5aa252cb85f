/**
 * The client's errors: one base class carrying the server's machine code (docs/errors.md) or a
 * client-side one (CONNECTION_FAILED, TIMEOUT, BAD_RESPONSE), and one subclass per family, so a
 * caller can catch `NotFoundError` or read `err.code`. `errorFromHttp` reads every HTTP error
 * body shape the manager answers (the admin API's `{error, code}`, OpenAI's `{error: {code}}`,
 * TEI's `{error, error_type}`); `errorFromGrpc` reads the `teiplex-error-code` and `retry-after`
 * trailers.
 */

export interface ErrorDetails {
  status?: number;
  grpcCode?: number;
  retryAfterMs?: number;
  /** TEI's `error_type` or OpenAI's `type`, when the body named one. */
  errorType?: string;
  /** In a call with several inputs: the position of the input at fault (`teiplex-error-index`). */
  index?: number;
  cause?: unknown;
}

/** Client-side codes (the server's are listed in docs/errors.md). */
export const CONNECTION_FAILED = 'CONNECTION_FAILED';
export const TIMEOUT = 'TIMEOUT';
export const BAD_RESPONSE = 'BAD_RESPONSE';
/** The caller's AbortSignal ended the call (also the server's code for a client gone). */
export const CANCELLED = 'CANCELLED';

export class TeiplexClientError extends Error {
  /** The server's machine code (e.g. INSTANCE_NOT_FOUND, MODEL_LOADING), or CONNECTION_FAILED, TIMEOUT, BAD_RESPONSE. */
  readonly code: string;
  /** HTTP status. */
  readonly status?: number;
  /** gRPC status code. */
  readonly grpcCode?: number;
  /** From Retry-After / the retry-after trailer. */
  readonly retryAfterMs?: number;
  /** TEI's `error_type` / OpenAI's `type`, when the answer named one. */
  readonly errorType?: string;
  /** The input at fault, when the server named one. */
  readonly index?: number;

  constructor(code: string, message: string, d: ErrorDetails = {}) {
    super(message, d.cause === undefined ? undefined : { cause: d.cause });
    this.name = new.target.name;
    this.code = code;
    if (d.status !== undefined) this.status = d.status;
    if (d.grpcCode !== undefined) this.grpcCode = d.grpcCode;
    if (d.retryAfterMs !== undefined) this.retryAfterMs = d.retryAfterMs;
    if (d.errorType !== undefined) this.errorType = d.errorType;
    if (d.index !== undefined) this.index = d.index;
  }
}

/** 400 / 413 / 415 / 422, INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE: the request itself is wrong. */
export class InvalidRequestError extends TeiplexClientError {}
/** 401, UNAUTHENTICATED: a missing or wrong API key or client certificate. */
export class UnauthorizedError extends TeiplexClientError {}
/** 403, PERMISSION_DENIED: a key used outside its restrictions, or a setting [security] forbids. */
export class ForbiddenError extends TeiplexClientError {}
/** 404, NOT_FOUND: no such instance, model or route. */
export class NotFoundError extends TeiplexClientError {}
/** 409, ALREADY_EXISTS, ABORTED: not possible in the current state (exists, running, busy). */
export class ConflictError extends TeiplexClientError {}
/** 429, RESOURCE_EXHAUSTED: overloaded, a queue or budget full; retried when idempotent. */
export class OverloadedError extends TeiplexClientError {}
/** 503, UNAVAILABLE: loading, starting, shutting down; retried when idempotent. */
export class UnavailableError extends TeiplexClientError {}
/** The deadline passed (TIMEOUT, client side), or the server's REQUEST_TIMEOUT (504, DEADLINE_EXCEEDED). */
export class TimeoutError extends TeiplexClientError {}
/** The connection could not be made or broke (CONNECTION_FAILED); retried when idempotent. */
export class ConnectionError extends TeiplexClientError {}
/** The call was cancelled through its AbortSignal (CANCELLED), before an answer or while waiting to retry. */
export class CancelledError extends TeiplexClientError {}
/** Any other server failure (424 BACKEND, 5xx, INTERNAL, an answer the client cannot read: BAD_RESPONSE). */
export class ServerError extends TeiplexClientError {}

type ErrorClass = new (code: string, message: string, d?: ErrorDetails) => TeiplexClientError;

/** The family of an HTTP status. */
export function classOfStatus(status: number): ErrorClass {
  switch (status) {
    case 400:
    case 413:
    case 415:
    case 422:
      return InvalidRequestError;
    case 401:
      return UnauthorizedError;
    case 403:
      return ForbiddenError;
    case 404:
      return NotFoundError;
    case 409:
      return ConflictError;
    case 429:
      return OverloadedError;
    case 503:
      return UnavailableError;
    case 504:
      return TimeoutError;
    case 499:
      return CancelledError;
    default:
      return status >= 400 && status < 500 ? InvalidRequestError : ServerError;
  }
}

/** gRPC status codes (grpc-js's `status` enum, spelled out so this file needs no grpc import). */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** The family of a gRPC status. */
export function classOfGrpc(code: number): ErrorClass {
  switch (code) {
    case GrpcCode.INVALID_ARGUMENT:
    case GrpcCode.FAILED_PRECONDITION:
    case GrpcCode.OUT_OF_RANGE:
    case GrpcCode.UNIMPLEMENTED:
      return InvalidRequestError;
    case GrpcCode.UNAUTHENTICATED:
      return UnauthorizedError;
    case GrpcCode.PERMISSION_DENIED:
      return ForbiddenError;
    case GrpcCode.NOT_FOUND:
      return NotFoundError;
    case GrpcCode.ALREADY_EXISTS:
    case GrpcCode.ABORTED:
      return ConflictError;
    case GrpcCode.RESOURCE_EXHAUSTED:
      return OverloadedError;
    case GrpcCode.UNAVAILABLE:
      return UnavailableError;
    case GrpcCode.DEADLINE_EXCEEDED:
      return TimeoutError;
    case GrpcCode.CANCELLED:
      return CancelledError;
    default:
      return ServerError;
  }
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(v: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = Array.isArray(v) ? v[0] : v;
  if (text === undefined || text.trim() === '') return undefined;
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Math.round(Number(t) * 1000);
  const at = Date.parse(t);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** TEI's `error_type` (its routes name no machine code) as the code it most often means. */
const TEI_TYPE_CODES: Record<string, string> = {
  validation: 'VALIDATION',
  tokenizer: 'TOKENIZER',
  empty: 'EMPTY',
  payload_limit: 'PAYLOAD_TOO_LARGE',
  overloaded: 'MODEL_OVERLOADED',
  unhealthy: 'UNHEALTHY',
  backend: 'BACKEND',
  not_found: 'NOT_FOUND',
};

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * An HTTP error answer as a typed error: the code from the body (admin `{error, code}`, OpenAI
 * `{error: {message, type, code}}` in lower case, TEI `{error, error_type}` or TEI's OpenAI
 * `{message, code: <status>, type}`), the status, Retry-After.
 */
export function errorFromHttp(status: number, body: unknown, retryAfter: string | string[] | undefined, what: string): TeiplexClientError {
  let code: string | undefined;
  let message: string | undefined;
  let errorType: string | undefined;
  if (isObject(body)) {
    const e = body.error;
    if (isObject(e)) {
      // OpenAI's shape (the data plane's /v1 routes).
      if (typeof e.code === 'string' && e.code !== '') code = e.code.toUpperCase();
      if (typeof e.message === 'string') message = e.message;
      if (typeof e.type === 'string') errorType = e.type;
    } else {
      if (typeof e === 'string') message = e;
      else if (typeof body.message === 'string') message = body.message;
      if (typeof body.code === 'string' && body.code !== '') code = body.code; // the admin API
      const t = typeof body.error_type === 'string' ? body.error_type : typeof body.type === 'string' ? body.type : undefined;
      if (t !== undefined) {
        errorType = t;
        if (code === undefined) code = t === 'unauthorized' ? (status === 401 ? 'UNAUTHENTICATED' : 'PERMISSION_DENIED') : TEI_TYPE_CODES[t];
      }
    }
  } else if (typeof body === 'string' && body.trim() !== '') {
    message = body.trim().slice(0, 500);
  }
  const Cls = classOfStatus(status);
  const retryAfterMs = parseRetryAfter(retryAfter);
  return new Cls(code ?? `HTTP_${status}`, `${what}: ${status}${code !== undefined ? ` ${code}` : ''}: ${message ?? 'no message'}`, {
    status,
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    ...(errorType !== undefined ? { errorType } : {}),
  });
}

/** What a gRPC failure carries (grpc-js's ServiceError, read without importing grpc-js). */
export interface GrpcFailure {
  code: number;
  details?: string;
  metadata?: { get(key: string): unknown[] };
}

function trailer(f: GrpcFailure, key: string): string | undefined {
  const v = f.metadata?.get(key)[0];
  return typeof v === 'string' ? v : Buffer.isBuffer(v) ? v.toString() : undefined;
}

/**
 * A gRPC failure as a typed error: the code from `teiplex-error-code`; without one, the client's
 * own meaning of the status (UNAVAILABLE: CONNECTION_FAILED; DEADLINE_EXCEEDED: TIMEOUT; other
 * statuses their name).
 */
export function errorFromGrpc(f: GrpcFailure, what: string): TeiplexClientError {
  const named = trailer(f, 'teiplex-error-code');
  const retryAfterMs = parseRetryAfter(trailer(f, 'retry-after'));
  const index = Number(trailer(f, 'teiplex-error-index'));
  const statusName = Object.entries(GrpcCode).find(([, n]) => n === f.code)?.[0] ?? String(f.code);
  let code = named;
  let Cls = classOfGrpc(f.code);
  if (code === undefined) {
    if (f.code === GrpcCode.UNAVAILABLE) {
      code = CONNECTION_FAILED;
      Cls = ConnectionError;
    } else if (f.code === GrpcCode.DEADLINE_EXCEEDED) code = TIMEOUT;
    else code = statusName;
  }
  return new Cls(code, `${what}: ${statusName}${named !== undefined ? ` ${named}` : ''}: ${f.details ?? 'no message'}`, {
    grpcCode: f.code,
    ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    ...(Number.isInteger(index) && index >= 0 && trailer(f, 'teiplex-error-index') !== undefined ? { index } : {}),
  });
}
