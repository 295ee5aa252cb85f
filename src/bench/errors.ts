/**
 * Failure codes as the bench counts them: the gRPC status name for gRPC calls
 * (`INVALID_ARGUMENT`, `UNAVAILABLE`, ...), `HTTP_<status>` for HTTP answers, the error code of a
 * connection failure (`ECONNREFUSED`, `UND_ERR_CONNECT_TIMEOUT`, ...), `BAD_RESPONSE` for an
 * answer that does not fit the request, else `UNKNOWN`.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';

const GRPC_NAMES = new Map<number, string>(
  Object.entries(GrpcStatus)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => [v as number, k]),
);

/** An HTTP answer with an error status. */
export class HttpStatusError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'HttpStatusError';
    this.status = status;
  }
  get code(): string {
    return `HTTP_${this.status}`;
  }
}

/** The machine code of a failed request. */
export function errorCode(err: unknown): string {
  if (err instanceof HttpStatusError) return err.code;
  if (err !== null && typeof err === 'object') {
    const e = err as { code?: unknown; metadata?: unknown; cause?: unknown };
    // grpc-js ServiceError: a numeric status code with call metadata.
    if (typeof e.code === 'number' && e.metadata !== undefined) return GRPC_NAMES.get(e.code) ?? `GRPC_${e.code}`;
    if (typeof e.code === 'string' && e.code !== '') return e.code;
    if (e.cause !== undefined) {
      const inner = errorCode(e.cause);
      if (inner !== 'UNKNOWN') return inner;
    }
  }
  return 'UNKNOWN';
}

/** A one-line message for the error report. */
export function errorMessage(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0]!.slice(0, 500);
}
