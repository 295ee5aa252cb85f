/**
 * The data plane's failures, in the one error vocabulary (src/common/errors.ts): a child's gRPC
 * status is already a TeiplexError (src/child/child-status.ts), and every failure is answered by src/tei/http-errors.ts in
 * the shape of the route's protocol: TEI's `{"error", "error_type"}` or OpenAI's `{"error":
 * {"message", "type", "param", "code"}}`, with `Retry-After` where the code has one.
 */
import { toHttpError, type HttpError, type HttpErrorOptions } from '../../tei/http-errors.js';

/** How the data plane reads fastify's failures (src/tei/http-errors.ts): a body over http_body_limit_mb is named so. */
export function dataPlaneErrorOptions(bodyLimitBytes: number): HttpErrorOptions {
  return { bodyTooLarge: `the request body exceeds http_body_limit_mb (${bodyLimitBytes} bytes)` };
}

/** Any failure of a data-plane request as the answer in `shape` (TEI's or OpenAI's). Never a 5xx for bad input. */
export function dataPlaneError(err: unknown, shape: 'tei' | 'openai', bodyLimitBytes: number): HttpError {
  return toHttpError(err, shape, dataPlaneErrorOptions(bodyLimitBytes));
}
