/**
 * The data plane's failures, in the one error vocabulary (src/common/errors.ts): a child's gRPC
 * status becomes a TeiplexError here, and every failure is answered by src/tei/http-errors.ts in
 * the shape of the route's protocol: TEI's `{"error", "error_type"}` or OpenAI's `{"error":
 * {"message", "type", "param", "code"}}`, with `Retry-After` where the code has one.
 */
import * as grpc from '@grpc/grpc-js';
import { TeiplexError, type ErrorCode } from '../../common/errors.js';
import { toHttpError, type HttpError, type HttpErrorOptions } from '../../tei/http-errors.js';

/** A TeiplexError that names the request field at fault (OpenAI's `param`). */
export class RequestError extends TeiplexError {
  constructor(code: ErrorCode, message: string, param: string | null = null) {
    super(code, message, param !== null ? { param } : {});
  }
}

/** A child call's failure, as the error it means for the HTTP client. */
export function childError(instance: string, s: Pick<grpc.StatusObject, 'code' | 'details'>): TeiplexError {
  const d = s.details;
  switch (s.code) {
    case grpc.status.INVALID_ARGUMENT:
      return new TeiplexError(/empty/i.test(d) ? 'EMPTY' : 'VALIDATION', d);
    case grpc.status.RESOURCE_EXHAUSTED:
      return /overloaded/i.test(d) ? new TeiplexError('MODEL_OVERLOADED', d) : new TeiplexError('PAYLOAD_TOO_LARGE', `instance '${instance}': ${d}`);
    case grpc.status.FAILED_PRECONDITION:
      return new TeiplexError('WRONG_MODEL_TYPE', d);
    case grpc.status.UNIMPLEMENTED:
      return new TeiplexError('WRONG_MODEL_TYPE', `instance '${instance}' does not serve this call: ${d}`);
    case grpc.status.UNAVAILABLE:
      return new TeiplexError('INSTANCE_UNAVAILABLE', `instance '${instance}' is unavailable: ${d}`);
    case grpc.status.DEADLINE_EXCEEDED:
      return new TeiplexError('REQUEST_TIMEOUT', `instance '${instance}' did not answer in time: ${d}`);
    default:
      return new TeiplexError('BACKEND', `instance '${instance}' failed: ${grpc.status[s.code] ?? s.code}: ${d}`);
  }
}

/** How the data plane reads fastify's failures (src/tei/http-errors.ts): a body over http_body_limit_mb is named so. */
export function dataPlaneErrorOptions(bodyLimitBytes: number): HttpErrorOptions {
  return { bodyTooLarge: `the request body exceeds http_body_limit_mb (${bodyLimitBytes} bytes)` };
}

/** Any failure of a data-plane request as the answer in `shape` (TEI's or OpenAI's). Never a 5xx for bad input. */
export function dataPlaneError(err: unknown, shape: 'tei' | 'openai', bodyLimitBytes: number): HttpError {
  return toHttpError(err, shape, dataPlaneErrorOptions(bodyLimitBytes));
}
