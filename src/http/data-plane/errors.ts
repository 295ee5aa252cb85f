/**
 * The data plane's failures, in the one error vocabulary (src/common/errors.ts): a child's gRPC
 * status is already a TeiplexError (src/child/child-status.ts), and every failure is answered in the shape of the route's
 * protocol: TEI's `{"error", "error_type"}` or OpenAI's `{"error": {"message", "type", "param",
 * "code"}}`. Overload (429) and unavailability (503) carry `Retry-After`.
 */
import type { FastifyError } from 'fastify';
import { asTeiplexError, ERROR_CODES, TeiplexError, type ErrorCode } from '../../common/errors.js';
import { BodyError } from '../../tei/http-schemas.js';

/** A TeiplexError that names the request field at fault (OpenAI's `param`). */
export class RequestError extends TeiplexError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly param: string | null = null,
  ) {
    super(code, message);
  }
}

/** Seconds a client should wait before retrying, by code (absent: no Retry-After). */
const RETRY_AFTER_SECS: Partial<Record<ErrorCode, number>> = {
  MODEL_OVERLOADED: 1,
  INSTANCE_UNAVAILABLE: 5,
  UNHEALTHY: 5,
  MODEL_LOADING: 5,
  COLD_START_QUEUE_FULL: 5,
  MEMORY_BUDGET_EXCEEDED: 5,
};

export interface ErrorAnswer {
  status: number;
  error: TeiplexError;
  param: string | null;
  retryAfterSecs?: number;
}

/** Any failure of a data-plane request as the answer to give. Never a 5xx for bad input. */
export function describe(err: unknown, bodyLimitBytes: number): ErrorAnswer {
  if (err instanceof TeiplexError) {
    return { status: err.httpStatus, error: err, param: err instanceof RequestError ? err.param : null, retryAfterSecs: err.retryAfterSecs ?? RETRY_AFTER_SECS[err.code] };
  }
  if (err instanceof BodyError) return { status: ERROR_CODES.VALIDATION.http, error: new TeiplexError('VALIDATION', err.message), param: err.field || null };
  const fe = err as Partial<FastifyError>;
  if (fe.code === 'FST_ERR_VALIDATION') return { status: ERROR_CODES.VALIDATION.http, error: new TeiplexError('VALIDATION', fe.message ?? 'invalid request body'), param: null };
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    return {
      status: 413,
      error: new TeiplexError('PAYLOAD_TOO_LARGE', `the request body exceeds http_body_limit_mb (${bodyLimitBytes} bytes)`),
      param: null,
    };
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    // Body parsing: bad JSON (400), wrong content type (415), empty body.
    return { status: fe.statusCode, error: new TeiplexError('BAD_REQUEST', fe.message ?? 'bad request'), param: null };
  }
  const e = asTeiplexError(err);
  return { status: e.httpStatus, error: e, param: null, retryAfterSecs: e.retryAfterSecs ?? RETRY_AFTER_SECS[e.code] };
}

/** TEI's error body. */
export function teiErrorBody(a: ErrorAnswer): { error: string; error_type: string } {
  return { error: a.error.message, error_type: a.error.teiErrorType };
}

function openaiType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/** OpenAI's error body: `code` is the machine code in lower case (e.g. `model_not_found`). */
export function openaiErrorBody(a: ErrorAnswer): { error: { message: string; type: string; param: string | null; code: string } } {
  return { error: { message: a.error.message, type: openaiType(a.status), param: a.param, code: a.error.code.toLowerCase() } };
}
