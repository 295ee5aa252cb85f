/**
 * The error vocabulary (src/common/errors.ts) on HTTP: the one place a thrown value becomes an
 * HTTP answer, for all three fastify apps (the router's TEI routes, the manager's admin API, the
 * data plane).
 *
 * - `httpErrorOf`: a thrown value as a TeiplexError. fastify's own failures are translated here
 *   and nowhere else: a schema failure (VALIDATION, or BAD_REQUEST on the admin API; the field is
 *   named), a body over the limit (PAYLOAD_TOO_LARGE), a body that is not JSON or is empty
 *   (BAD_REQUEST), a content type the route does not parse (UNSUPPORTED_MEDIA_TYPE), no such
 *   route (NOT_FOUND). Anything else unknown is BACKEND.
 * - `toHttpError`: a thrown value as `{status, headers, body}`: the code's status, `Retry-After`
 *   (the error's own or its code's default) and the body in the route's shape: TEI's
 *   `{error, error_type}`, TEI's OpenAI-compatible `{message, code, type}` (the router's
 *   /v1/embeddings), OpenAI's `{error: {message, type, param, code}}` (the data plane's /v1
 *   routes) or the admin API's `{error, code, timestamp}`.
 */
import { asTeiplexError, TeiplexError, type ErrorCode } from '../common/errors.js';
import { BodyError } from './http-schemas.js';

/** The error body shapes. */
export type HttpErrorShape = 'tei' | 'tei-openai' | 'openai' | 'admin';

export interface HttpErrorOptions {
  /** What a schema failure is: VALIDATION (422, TEI's routes; the default) or BAD_REQUEST (400, the admin API). */
  schemaCode?: Extract<ErrorCode, 'VALIDATION' | 'BAD_REQUEST'>;
  /** The message for a body over the app's limit (default: fastify's). */
  bodyTooLarge?: string;
}

export interface HttpError {
  status: number;
  headers: Record<string, string>;
  body: TeiErrorBody | TeiOpenAIErrorBody | OpenAIErrorBody | AdminErrorBody;
  /** The failure as the vocabulary names it. */
  error: TeiplexError;
}

export interface TeiErrorBody {
  error: string;
  error_type: string;
}
export interface TeiOpenAIErrorBody {
  message: string;
  code: number;
  type: string;
}
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string };
}
export interface AdminErrorBody {
  error: string;
  code: string;
  timestamp: string;
}

/** What fastify's errors carry (FastifyError, without importing fastify here). */
interface FastifyLike {
  code?: unknown;
  statusCode?: unknown;
  message?: unknown;
  validation?: Array<{ instancePath?: string; message?: string }>;
  validationContext?: string;
}

/**
 * fastify's own client error (schema, body parsing, size, content type, route) as a TeiplexError;
 * undefined when `err` is not one.
 */
export function fastifyError(err: unknown, o: HttpErrorOptions = {}): TeiplexError | undefined {
  if (err instanceof TeiplexError || err === null || typeof err !== 'object') return undefined;
  const schemaCode = o.schemaCode ?? 'VALIDATION';
  if (err instanceof BodyError) return new TeiplexError(schemaCode, err.message, err.field !== '' ? { param: err.field } : {});
  const fe = err as FastifyLike;
  const message = typeof fe.message === 'string' && fe.message !== '' ? fe.message : 'bad request';
  if (Array.isArray(fe.validation) && fe.validation.length > 0) {
    const first = fe.validation[0];
    const where = `${fe.validationContext ?? 'request'}${first?.instancePath ?? ''}`.replace(/\//g, '.');
    return new TeiplexError(schemaCode, `${where}: ${first?.message ?? message}`);
  }
  if (fe.code === 'FST_ERR_VALIDATION') return new TeiplexError(schemaCode, message);
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new TeiplexError('PAYLOAD_TOO_LARGE', o.bodyTooLarge ?? message);
  const status = fe.statusCode;
  if (typeof status !== 'number' || status < 400 || status >= 500) return undefined;
  if (status === 413) return new TeiplexError('PAYLOAD_TOO_LARGE', message);
  if (status === 415) return new TeiplexError('UNSUPPORTED_MEDIA_TYPE', message);
  if (status === 404) return new TeiplexError('NOT_FOUND', message);
  // Body parsing: not JSON, an empty JSON body, a bad content length.
  return new TeiplexError('BAD_REQUEST', message);
}

/** A request for a route that does not exist (every app's not-found handler). */
export function routeNotFound(method: string, url: string): TeiplexError {
  return new TeiplexError('NOT_FOUND', `no route ${method} ${url.split('?')[0]}`);
}

/** Any thrown value as the TeiplexError it means on HTTP. */
export function httpErrorOf(err: unknown, o: HttpErrorOptions = {}): TeiplexError {
  if (err instanceof TeiplexError) return err;
  return fastifyError(err, o) ?? asTeiplexError(err);
}

function bodyOf(e: TeiplexError, shape: HttpErrorShape): HttpError['body'] {
  switch (shape) {
    case 'tei':
      return { error: e.message, error_type: e.teiErrorType };
    case 'tei-openai':
      return { message: e.message, code: e.httpStatus, type: e.teiErrorType };
    case 'openai':
      return { error: { message: e.message, type: e.openaiErrorType, param: e.param ?? null, code: e.code.toLowerCase() } };
    case 'admin':
      return { error: e.message, code: e.code, timestamp: new Date().toISOString() };
  }
}

/** A thrown value as the HTTP answer in `shape`: status, headers (Retry-After) and body. */
export function toHttpError(err: unknown, shape: HttpErrorShape, o: HttpErrorOptions = {}): HttpError {
  const error = httpErrorOf(err, o);
  const retry = error.retryAfter;
  return { status: error.httpStatus, headers: retry !== undefined ? { 'retry-after': String(retry) } : {}, body: bodyOf(error, shape), error };
}
