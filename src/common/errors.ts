/**
 * The one error vocabulary of teiplex. Every failure carries a machine code; this file alone maps
 * a code to an HTTP status, a gRPC status, TEI's `error_type` string, OpenAI's error `type` and
 * the default Retry-After (seconds; absent: none). Rendering is once per transport:
 * src/tei/grpc-status.ts (gRPC) and src/tei/http-errors.ts (HTTP). docs/errors.md lists every
 * code; test/errors-doc.test.ts keeps the two in step.
 */
import { status as GrpcStatus } from '@grpc/grpc-js';

/** What one code means on each transport. */
export interface ErrorCodeInfo {
  readonly http: number;
  readonly grpc: GrpcStatus;
  /** TEI's HTTP `error_type`. */
  readonly teiType: string;
  /** OpenAI's error `type` (the /v1 routes' bodies). */
  readonly openaiType: 'invalid_request_error' | 'authentication_error' | 'permission_error' | 'not_found_error' | 'rate_limit_error' | 'server_error';
  /** Retry-After (HTTP header, gRPC `retry-after` trailer) when the error names none. */
  readonly retryAfterSecs?: number;
}

export const ERROR_CODES = {
  /** Bad input: an empty text, too long with truncate=false, too many inputs, unknown prompt, bad field. */
  VALIDATION: { http: 422, grpc: GrpcStatus.INVALID_ARGUMENT, teiType: 'validation', openaiType: 'invalid_request_error' },
  /** Input could not be tokenized. */
  TOKENIZER: { http: 422, grpc: GrpcStatus.INVALID_ARGUMENT, teiType: 'tokenizer', openaiType: 'invalid_request_error' },
  /** An empty list of inputs (`inputs`, `texts`): TEI's `error_type: empty`. An empty text inside a list is VALIDATION, as in TEI. */
  EMPTY: { http: 422, grpc: GrpcStatus.INVALID_ARGUMENT, teiType: 'empty', openaiType: 'invalid_request_error' },
  /** HTTP: a request body in a content type the route does not parse (neither JSON nor text). */
  UNSUPPORTED_MEDIA_TYPE: { http: 415, grpc: GrpcStatus.INVALID_ARGUMENT, teiType: 'validation', openaiType: 'invalid_request_error' },
  /** Request body larger than the payload limit. */
  PAYLOAD_TOO_LARGE: { http: 413, grpc: GrpcStatus.RESOURCE_EXHAUSTED, teiType: 'payload_limit', openaiType: 'invalid_request_error' },
  /** Admission refused: more inputs in flight than max_concurrent_requests. */
  MODEL_OVERLOADED: { http: 429, grpc: GrpcStatus.RESOURCE_EXHAUSTED, teiType: 'overloaded', openaiType: 'rate_limit_error', retryAfterSecs: 1 },
  /** The model cannot serve this kind of request (e.g. rerank on an embedding model). */
  WRONG_MODEL_TYPE: { http: 400, grpc: GrpcStatus.FAILED_PRECONDITION, teiType: 'validation', openaiType: 'invalid_request_error' },
  /** Not ready (model loading) or shutting down. */
  UNHEALTHY: { http: 503, grpc: GrpcStatus.UNAVAILABLE, teiType: 'unhealthy', openaiType: 'server_error', retryAfterSecs: 5 },
  /** Inference failed inside the backend. */
  BACKEND: { http: 424, grpc: GrpcStatus.INTERNAL, teiType: 'backend', openaiType: 'server_error' },
  /** Missing or wrong API key. */
  UNAUTHENTICATED: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED, teiType: 'unauthorized', openaiType: 'authentication_error' },
  /** A valid API key used outside its restrictions (instances, models, admin API). */
  PERMISSION_DENIED: { http: 403, grpc: GrpcStatus.PERMISSION_DENIED, teiType: 'unauthorized', openaiType: 'permission_error' },
  /** A spec created through the REST API asks for something the config file's [security] does not allow (the setting is named). */
  FORBIDDEN_SETTING: { http: 403, grpc: GrpcStatus.PERMISSION_DENIED, teiType: 'unauthorized', openaiType: 'permission_error' },
  /** Named thing does not exist. */
  NOT_FOUND: { http: 404, grpc: GrpcStatus.NOT_FOUND, teiType: 'not_found', openaiType: 'not_found_error' },
  // ---- the manager's admin API ----
  /** A request body or parameter failed schema validation (the field is named). */
  BAD_REQUEST: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT, teiType: 'validation', openaiType: 'invalid_request_error' },
  INSTANCE_NOT_FOUND: { http: 404, grpc: GrpcStatus.NOT_FOUND, teiType: 'not_found', openaiType: 'not_found_error' },
  INSTANCE_EXISTS: { http: 409, grpc: GrpcStatus.ALREADY_EXISTS, teiType: 'validation', openaiType: 'invalid_request_error' },
  PORT_CONFLICT: { http: 409, grpc: GrpcStatus.ALREADY_EXISTS, teiType: 'validation', openaiType: 'invalid_request_error' },
  ALREADY_RUNNING: { http: 409, grpc: GrpcStatus.FAILED_PRECONDITION, teiType: 'validation', openaiType: 'invalid_request_error' },
  NOT_RUNNING: { http: 409, grpc: GrpcStatus.FAILED_PRECONDITION, teiType: 'validation', openaiType: 'invalid_request_error' },
  MAX_INSTANCES_REACHED: { http: 422, grpc: GrpcStatus.RESOURCE_EXHAUSTED, teiType: 'validation', openaiType: 'invalid_request_error' },
  INVALID_GPU_ID: { http: 422, grpc: GrpcStatus.INVALID_ARGUMENT, teiType: 'validation', openaiType: 'invalid_request_error' },
  /** The manager could not persist the desired state (the reason is named); the change was not made. */
  STATE_WRITE_FAILED: { http: 503, grpc: GrpcStatus.UNAVAILABLE, teiType: 'unhealthy', openaiType: 'server_error' },
  // ---- routing to instances (gRPC multiplexer, HTTP data plane) ----
  /** No instance serves the requested model. */
  MODEL_NOT_FOUND: { http: 404, grpc: GrpcStatus.NOT_FOUND, teiType: 'not_found', openaiType: 'not_found_error' },
  /** The targeted instance exists but is not running (its status is named). */
  INSTANCE_UNAVAILABLE: { http: 503, grpc: GrpcStatus.UNAVAILABLE, teiType: 'unhealthy', openaiType: 'server_error', retryAfterSecs: 5 },
  /** The client went away before its answer (e.g. while it waited for a cold start); nobody reads this answer. */
  CANCELLED: { http: 499, grpc: GrpcStatus.CANCELLED, teiType: 'backend', openaiType: 'invalid_request_error' },
  /** The instance did not answer within the request timeout. */
  REQUEST_TIMEOUT: { http: 504, grpc: GrpcStatus.DEADLINE_EXCEEDED, teiType: 'backend', openaiType: 'server_error' },
  /** HTTP data plane: an output type the model cannot produce (its capabilities are named). */
  OUTPUT_TYPE_UNSUPPORTED: { http: 422, grpc: GrpcStatus.FAILED_PRECONDITION, teiType: 'validation', openaiType: 'invalid_request_error' },
  /** Arrow RPCs: `noop` was asked for but the server does not allow it (arrow_allow_noop). */
  NOOP_DISABLED: { http: 400, grpc: GrpcStatus.FAILED_PRECONDITION, teiType: 'validation', openaiType: 'invalid_request_error' },
  /** Arrow RPCs: the manager's decode budget (arrow_decode_budget_mb) stayed taken by other calls until the call's deadline. */
  DECODE_BUDGET_EXHAUSTED: { http: 503, grpc: GrpcStatus.RESOURCE_EXHAUSTED, teiType: 'overloaded', openaiType: 'server_error' },
  /** HTTP data plane: more inputs in one request than max_request_inputs. */
  TOO_MANY_INPUTS: { http: 413, grpc: GrpcStatus.RESOURCE_EXHAUSTED, teiType: 'validation', openaiType: 'invalid_request_error' },
  // ---- on-demand models (the catalog) ----
  /** A catalog model is being started (the client asked not to wait, or the cold start outlasted cold_start_timeout_secs). */
  MODEL_LOADING: { http: 503, grpc: GrpcStatus.UNAVAILABLE, teiType: 'unhealthy', openaiType: 'server_error', retryAfterSecs: 5 },
  /** Too many requests already wait for this model's cold start (cold_start_queue_size). */
  COLD_START_QUEUE_FULL: { http: 503, grpc: GrpcStatus.RESOURCE_EXHAUSTED, teiType: 'overloaded', openaiType: 'server_error', retryAfterSecs: 5 },
  /** Starting the model would exceed a memory budget and nothing can be evicted (the budget is named). */
  MEMORY_BUDGET_EXCEEDED: { http: 503, grpc: GrpcStatus.RESOURCE_EXHAUSTED, teiType: 'overloaded', openaiType: 'server_error', retryAfterSecs: 5 },
  /** The model failed to load (bad files, crash at start): not retried until loaded again or its spec changes. */
  MODEL_LOAD_FAILED: { http: 503, grpc: GrpcStatus.FAILED_PRECONDITION, teiType: 'unhealthy', openaiType: 'server_error' },
  /** A catalog model with this name or model id exists. */
  MODEL_EXISTS: { http: 409, grpc: GrpcStatus.ALREADY_EXISTS, teiType: 'validation', openaiType: 'invalid_request_error' },
  /** The instance belongs to a catalog model: manage it through /models. */
  INSTANCE_MANAGED: { http: 409, grpc: GrpcStatus.FAILED_PRECONDITION, teiType: 'validation', openaiType: 'invalid_request_error' },
  /** The operation is not possible in the model's current state (e.g. unload with min_replicas > 0). */
  MODEL_BUSY: { http: 409, grpc: GrpcStatus.FAILED_PRECONDITION, teiType: 'validation', openaiType: 'invalid_request_error' },
  /** The API key is over its quota (tokens_per_minute / requests_per_minute, docs/tenancy.md): retry after Retry-After. */
  RATE_LIMIT_EXCEEDED: { http: 429, grpc: GrpcStatus.RESOURCE_EXHAUSTED, teiType: 'overloaded', openaiType: 'rate_limit_error', retryAfterSecs: 1 },
  /** Batch jobs: the API key keeps batch_files_per_key files, or has batch_jobs_per_key unfinished jobs (docs/batch.md). */
  BATCH_LIMIT_EXCEEDED: { http: 429, grpc: GrpcStatus.RESOURCE_EXHAUSTED, teiType: 'overloaded', openaiType: 'rate_limit_error' },
  // ---- rolling swaps (docs/manager.md, Swap) ----
  /** A swap's new version does not compute what the old one does (output kind, pooling, dimension or cosine; the report says which, with figures): stopped, the old one serves on. */
  SWAP_REFUSED: { http: 422, grpc: GrpcStatus.FAILED_PRECONDITION, teiType: 'validation', openaiType: 'invalid_request_error' },
  /** A swap's new version did not get ready (failed to load, exited, timed out) or could not be probed: stopped, the old one serves on. */
  SWAP_FAILED: { http: 422, grpc: GrpcStatus.FAILED_PRECONDITION, teiType: 'validation', openaiType: 'invalid_request_error' },
  /** A swap of this instance or model is already in progress. */
  SWAP_IN_PROGRESS: { http: 409, grpc: GrpcStatus.FAILED_PRECONDITION, teiType: 'validation', openaiType: 'invalid_request_error' },
  /** Config reload: the file is missing or invalid (nothing was applied). */
  CONFIG_INVALID: { http: 422, grpc: GrpcStatus.INVALID_ARGUMENT, teiType: 'validation', openaiType: 'invalid_request_error' },
  /** GET /events: events_max_streams streams are open already. */
  TOO_MANY_STREAMS: { http: 503, grpc: GrpcStatus.RESOURCE_EXHAUSTED, teiType: 'overloaded', openaiType: 'server_error', retryAfterSecs: 5 },
} as const satisfies Record<string, ErrorCodeInfo>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** The table's row for `code`. */
export function errorCodeInfo(code: ErrorCode): ErrorCodeInfo {
  return ERROR_CODES[code];
}

export class TeiplexError extends Error {
  readonly code: ErrorCode;
  /** When to retry (HTTP Retry-After, gRPC `retry-after` trailer); undefined: the code's default. */
  retryAfterSecs: number | undefined;
  /** In a call with several inputs: the position of the input at fault. */
  readonly index: number | undefined;
  /** The request field at fault (OpenAI's `param`), when one is. */
  readonly param: string | undefined;
  constructor(code: ErrorCode, message: string, opts: { retryAfterSecs?: number; index?: number; param?: string } = {}) {
    super(message);
    this.name = 'TeiplexError';
    this.code = code;
    this.retryAfterSecs = opts.retryAfterSecs;
    this.index = opts.index;
    this.param = opts.param;
  }
  /** Seconds to wait before retrying: the error's own, else its code's default; undefined: not retryable. */
  get retryAfter(): number | undefined {
    return this.retryAfterSecs ?? errorCodeInfo(this.code).retryAfterSecs;
  }
  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }
  get grpcStatus(): GrpcStatus {
    return ERROR_CODES[this.code].grpc;
  }
  get teiErrorType(): string {
    return ERROR_CODES[this.code].teiType;
  }
  get openaiErrorType(): string {
    return ERROR_CODES[this.code].openaiType;
  }
}

/** Any thrown value as a TeiplexError; unknown errors become BACKEND. */
export function asTeiplexError(err: unknown): TeiplexError {
  if (err instanceof TeiplexError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new TeiplexError('BACKEND', message);
}
