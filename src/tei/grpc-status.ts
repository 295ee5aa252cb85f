/**
 * The error vocabulary (src/common/errors.ts) on gRPC, both ways, so that a code survives the
 * process boundary between a `teiplex router` child and the manager:
 *
 * - `toGrpcStatus`: a thrown value as the status a server sends: the code's gRPC status, the
 *   message, and trailers `teiplex-error-code` (the machine code), `teiplex-error-index` (for a
 *   call with many inputs: the failing input's position in that call) and `retry-after` (seconds:
 *   the error's own, else its code's default from the table).
 * - `fromGrpcStatus`: a status a child sent as the TeiplexError it means. A teiplex router names
 *   its code; a real TEI child does not, and its status maps by gRPC code alone (never by the
 *   message's wording).
 */
import * as grpc from '@grpc/grpc-js';
import { asTeiplexError, ERROR_CODES, TeiplexError, type ErrorCode } from '../common/errors.js';

/** Trailer: the machine code of the failure (errors.ts). */
export const ERROR_CODE_KEY = 'teiplex-error-code';
/** Trailer: in a call carrying several inputs, the position of the input that failed. */
export const ERROR_INDEX_KEY = 'teiplex-error-index';
/** Trailer on refusals a client may retry: seconds to wait. */
export const RETRY_AFTER_KEY = 'retry-after';

/** A thrown value as the status a gRPC server answers with (code, message, trailers). */
export function toGrpcStatus(err: unknown): grpc.StatusObject {
  const e = asTeiplexError(err);
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_KEY, e.code);
  if (e.index !== undefined) metadata.set(ERROR_INDEX_KEY, String(e.index));
  const retry = e.retryAfter;
  if (retry !== undefined) metadata.set(RETRY_AFTER_KEY, String(retry));
  return { code: e.grpcStatus, details: e.message, metadata };
}

/** toGrpcStatus as the error object grpc-js handlers pass to their callback or emit. */
export function toServiceError(err: unknown): grpc.ServerErrorResponse {
  const s = toGrpcStatus(err);
  return Object.assign(new Error(s.details), s);
}

function firstValue(md: grpc.Metadata | undefined, key: string): string | undefined {
  const v = md?.get(key)[0];
  return typeof v === 'string' ? v : undefined;
}

/** What a gRPC status means when the sender did not name a code (a real TEI child). */
const BY_GRPC_STATUS: Partial<Record<grpc.status, ErrorCode>> = {
  [grpc.status.INVALID_ARGUMENT]: 'VALIDATION',
  [grpc.status.RESOURCE_EXHAUSTED]: 'MODEL_OVERLOADED',
  [grpc.status.FAILED_PRECONDITION]: 'WRONG_MODEL_TYPE',
  [grpc.status.UNIMPLEMENTED]: 'WRONG_MODEL_TYPE',
  [grpc.status.UNAVAILABLE]: 'INSTANCE_UNAVAILABLE',
  [grpc.status.DEADLINE_EXCEEDED]: 'REQUEST_TIMEOUT',
  [grpc.status.CANCELLED]: 'CANCELLED',
  [grpc.status.NOT_FOUND]: 'NOT_FOUND',
  [grpc.status.UNAUTHENTICATED]: 'UNAUTHENTICATED',
  [grpc.status.PERMISSION_DENIED]: 'PERMISSION_DENIED',
};

/**
 * A child's status as a TeiplexError: its own code when it named one (`teiplex-error-code`),
 * else the gRPC status's meaning; the failing input's index and retry-after kept. `who` names the
 * child in messages the manager adds ("instance 'x'").
 */
export function fromGrpcStatus(s: Pick<grpc.StatusObject, 'code' | 'details'> & { metadata?: grpc.Metadata }, who: string): TeiplexError {
  const named = firstValue(s.metadata, ERROR_CODE_KEY);
  const code: ErrorCode = named !== undefined && Object.hasOwn(ERROR_CODES, named) ? (named as ErrorCode) : (BY_GRPC_STATUS[s.code] ?? 'BACKEND');
  const index = Number(firstValue(s.metadata, ERROR_INDEX_KEY));
  const retry = Number(firstValue(s.metadata, RETRY_AFTER_KEY));
  const message = named !== undefined || code === 'VALIDATION' || code === 'MODEL_OVERLOADED' ? s.details : `${who}: ${grpc.status[s.code] ?? s.code}: ${s.details}`;
  return new TeiplexError(code, message, {
    ...(Number.isInteger(index) && index >= 0 ? { index } : {}),
    ...(Number.isFinite(retry) && retry >= 0 ? { retryAfterSecs: retry } : {}),
  });
}
