/**
 * The Arrow batch RPCs of TeiMultiplexer: EmbedArrow (dense), EmbedSparseArrow (SPLADE) and
 * EmbedAllArrow (multivector, per-token vectors). One call carries an Arrow IPC stream of texts
 * and is answered with an Arrow IPC stream of one row per text, in input order (docs/arrow.md).
 *
 * 1. The request is decoded (protobufjs; malformed bytes -> INVALID_ARGUMENT, not grpc-js's
 *    INTERNAL), `target` is required, and `noop` is refused (FAILED_PRECONDITION) unless
 *    `arrow_allow_noop` is set.
 * 2. The Arrow body is read off the event loop (src/arrow/arrow-workers.ts): a worker walks its
 *    framing with the limits (`arrow_max_rows`, `arrow_max_decompressed_mb`; over one ->
 *    INVALID_ARGUMENT naming the key) and bounds what it decodes to; the call then takes that
 *    many bytes of the manager's decode budget (`arrow_decode_budget_mb`, shared by every Arrow
 *    call, waited for in order until the call's deadline, then RESOURCE_EXHAUSTED) and holds them
 *    until it ends; a worker decodes the texts (a null or non-string row, garbage or a truncated
 *    stream -> INVALID_ARGUMENT naming the row or what is wrong).
 * 3. The target resolves like any forwarded call (target.ts; the API key's decision, then a cold
 *    start if need be) and the call counts in flight.
 * 4. The texts go to the child through its ChildClient (src/child/batching/row-fanout.ts:
 *    teiplex.v1.Batch in chunks, or a tei.v1 stream for children without it), under one deadline:
 *    min(client's, now + grpc_request_timeout_secs); the first failure cancels every child call of
 *    the request. `noop` skips the child and answers zeros of the right shape; dense needs the
 *    dimension, learned once per child (src/child/child-info.ts). Zero rows give the schema and no record batch,
 *    without calling the child, except once to learn the dimension (dense, multivector).
 * 5. The answer must fit grpc_max_message_size_mb: refused (RESOURCE_EXHAUSTED) before any child
 *    work when the rows times the least a row can take (a dense row of the known dimension) is
 *    over it, while the rows come in as soon as they pass it, and at the end on the written size.
 *    A worker writes the rows as Arrow IPC with LZ4_FRAME bodies.
 *
 * Failover (src/routing/failover.ts): a sub-batch (a Batch chunk, or the rows a fan-out stream
 * had not answered) whose child went away is sent once more to another serving
 * replica, the same one for every such sub-batch of the call, within the call's deadline and the
 * retry budget; only those rows move, and the answer keeps input order. `x-teiplex-failover`
 * (metadata) is read as for the unary RPCs. After a failover, `teiplex-instance` names the replica
 * the failed sub-batches went to, and `teiplex-retried-from` the call's first instance.
 *
 * Errors from the child are its TeiplexError (src/tei/grpc-status.ts fromGrpcStatus), rendered with
 * toServiceError: a teiplex router child's gRPC code and message as it sent them, with the
 * `teiplex-error-code` trailer (and the row, re-based to the whole request, in the message and
 * `teiplex-error-index`); `teiplex-instance` names the instance in the response headers and
 * trailers, as on forwarded calls.
 */
import { laneOf, PRIORITY_HEADER, type Lane } from '../child/lane.js';
import * as grpc from '@grpc/grpc-js';
import { ArrowWorkers } from '../arrow/arrow-workers.js';
import type { DenseValues } from '../arrow/embedding-batch.js';
import { type OutputType, parseEmbeddingType, type TypedRow, typedLength } from '../tei/embedding-types.js';
import { typedRows } from '../tei/embedding-output.js';
import { asymmetricWarning, type InputType, parseInputType, promptFor } from '../tei/input-types.js';
import { modelPrompts } from '../child/model-prompts.js';
import { digestKey, TextRows } from '../arrow/packed-texts.js';
import { type CacheStats, cacheHeader, countRequest, kindKey, throughCache } from '../routing/cached-engine.js';
import type { CachedValue, EmbeddingCache } from '../routing/embedding-cache.js';
import { modelIdentity } from '../routing/model-identity.js';
import { grantOf } from '../auth/grpc-auth.js';
import type { Config } from '../config/config.js';
import { DEFAULTS } from '../config/config.js';
import { asTeiplexError, TeiplexError } from '../common/errors.js';
import { DEFAULT_FANOUT, type FanoutPath, type FanoutSettings } from '../child/batching/row-fanout.js';
import { CallScope } from '../child/call-scope.js';
import type { ChildClient } from '../child/child-client.js';
import { AnswerMeter } from '../child/answer-meter.js';
import { Budget } from '../child/input-budget.js';
import { toServiceError } from '../tei/grpc-status.js';
import { DENSE, MULTIVECTOR, SPARSE, type ArrowKind, type EmbedFlags } from './arrow-kinds.js';
import { callWaiter, deadlineMs, noWaitOf, relayMetadata, RETRIED_FROM_HEADER, type Forwarder, type Leg } from './forward.js';
import { FAILOVER_HEADER, parseFailoverMode, retryableRows, type FailoverMode } from '../routing/failover.js';
import type { MuxMetrics } from './metrics.js';
import { type PbTarget, toTarget } from './protos.js';
import type { Target } from '../routing/target.js';

/**
 * Response header saying how the rows were made: `batch` (teiplex.v1.Batch), `stream` (tei.v1
 * stream fan-out), `cache` (every row from the embedding cache) or `none` (noop, empty input).
 */
export const PATH_HEADER = 'teiplex-arrow-path';
/** Response metadata for an asymmetric model called without an input_type. */
export const WARNING_METADATA = 'teiplex-warning';
/** Response metadata (headers and trailers): `hits=N misses=M`, the rows answered without the child and those it computed. */
export const CACHE_TRAILER = 'teiplex-cache';

export interface ArrowLimits {
  /** Most rows in one request (arrow_max_rows). */
  maxRows: number;
  /** Most bytes the request's bodies may decode to (arrow_max_decompressed_mb). */
  maxDecompressedBytes: number;
  /** Most decoded request bytes held by all Arrow calls together (arrow_decode_budget_mb). */
  decodeBudgetBytes: number;
  /** Worker threads that read and write Arrow (arrow_decode_threads). */
  decodeThreads: number;
  /** `noop: true` is served (arrow_allow_noop); otherwise refused. */
  allowNoop: boolean;
  /** Largest answer (grpc_max_message_size_mb). */
  maxMessageBytes: number;
}

export type ArrowConfig = Pick<
  Config,
  'arrow_max_rows' | 'arrow_max_decompressed_mb' | 'arrow_decode_budget_mb' | 'arrow_decode_threads' | 'arrow_allow_noop' | 'grpc_max_message_size_mb'
>;

const MIB = 1024 * 1024;

export function arrowLimits(c: Partial<ArrowConfig>): ArrowLimits {
  return {
    maxRows: c.arrow_max_rows ?? DEFAULTS.arrow_max_rows,
    maxDecompressedBytes: Math.floor((c.arrow_max_decompressed_mb ?? DEFAULTS.arrow_max_decompressed_mb) * MIB),
    decodeBudgetBytes: Math.floor((c.arrow_decode_budget_mb ?? DEFAULTS.arrow_decode_budget_mb) * MIB),
    decodeThreads: c.arrow_decode_threads ?? DEFAULTS.arrow_decode_threads,
    allowNoop: c.arrow_allow_noop ?? DEFAULTS.arrow_allow_noop,
    maxMessageBytes: Math.floor((c.grpc_max_message_size_mb ?? DEFAULTS.grpc_max_message_size_mb) * MIB),
  };
}

/** What every Arrow call of one server shares: the worker threads and the decode budget. */
interface ArrowShared {
  workers: ArrowWorkers;
  budget: Budget;
}

/** A request's texts as the workers read them: each distinct text once (packed-texts.ts DistinctTexts). */
interface RequestTexts {
  /** The request's rows. */
  rows: number;
  /** The distinct texts. */
  distinct: TextRows;
  rowOf: Int32Array;
  firstRow: Int32Array;
  /** Each distinct text's SHA-256 (empty when not asked for). */
  digests: Uint8Array;
}

const NO_TEXTS: RequestTexts = { rows: 0, distinct: new TextRows({ bytes: new Uint8Array(0), offsets: new Float64Array(1) }), rowOf: new Int32Array(0), firstRow: new Int32Array(0), digests: new Uint8Array(0) };

/**
 * The texts of a request, read by the workers (`digests`: with the distinct texts' SHA-256 for
 * the cache); `hold` is told the decode budget share taken (before the texts are decoded), which
 * the caller gives back when the call ends.
 */
async function readTexts(ipc: Uint8Array, l: ArrowLimits, shared: ArrowShared, call: CallScope, hold: (bytes: number) => void, digests: boolean): Promise<RequestTexts> {
  if (ipc.byteLength === 0) return NO_TEXTS;
  const limits = { maxRows: l.maxRows, maxRowsName: 'arrow_max_rows', maxDecompressedBytes: l.maxDecompressedBytes, maxDecompressedName: 'arrow_max_decompressed_mb' };
  const scan = await shared.workers.scan(ipc, limits);
  call.check();
  if (!shared.budget.fits(scan.decodedBytes)) {
    throw new TeiplexError(
      'PAYLOAD_TOO_LARGE',
      `the Arrow request decodes to up to ${scan.decodedBytes} bytes, more than the manager's whole decode budget (arrow_decode_budget_mb: ${shared.budget.limit} bytes); send smaller batches`,
    );
  }
  await shared.budget.acquire(scan.decodedBytes, call);
  hold(scan.decodedBytes);
  const d = await shared.workers.texts(scan.ipc, limits, digests);
  return { rows: d.rowOf.length, distinct: new TextRows(d.packed), rowOf: d.rowOf, firstRow: d.firstRow, digests: d.digests };
}

export interface ArrowServiceDeps {
  metrics: MuxMetrics;
  limits: ArrowLimits;
  /** The manager's embedding cache (routing/embedding-cache.ts); disabled: dedup only. */
  cache: EmbeddingCache;
  fanout?: FanoutSettings;
}

/** The request as decoded (the three requests share these fields), or why it could not be. */
interface ArrowRequest {
  target?: PbTarget | null;
  arrow_ipc?: Buffer;
  truncate?: boolean;
  normalize?: boolean;
  noop?: boolean;
  /** EmbedArrow: keep the first N dimensions (unset or 0: all). */
  dimensions?: number;
  /** EmbedArrow: the output type (empty: float32). */
  embedding_type?: string;
  /** EmbedArrow: what the texts are, for the model's prompt (empty: none). */
  input_type?: string;
  malformed?: string;
}

interface ArrowMethod {
  kind: ArrowKind<unknown>;
  flags(req: ArrowRequest): EmbedFlags;
}

export const ARROW_METHODS: Readonly<Record<string, ArrowMethod>> = {
  EmbedArrow: {
    kind: DENSE as ArrowKind<unknown>,
    flags: (r) => ({ truncate: r.truncate === true, normalize: r.normalize, ...(r.dimensions ? { dimensions: r.dimensions } : {}) }),
  },
  EmbedSparseArrow: { kind: SPARSE as ArrowKind<unknown>, flags: (r) => ({ truncate: r.truncate === true }) },
  EmbedAllArrow: { kind: MULTIVECTOR as ArrowKind<unknown>, flags: (r) => ({ truncate: r.truncate === true }) },
};

/** The client's own deadline passed (grpc-js's words for it). */
const clientDeadline = (): TeiplexError => new TeiplexError('REQUEST_TIMEOUT', 'Deadline exceeded');
const clientCancelled = (): TeiplexError => new TeiplexError('CANCELLED', 'the client cancelled the call');

/**
 * The status the client gets for a failure (toServiceError), naming the instance when the call
 * reached one; a timeout is the one that really passed first (`timedOut`).
 */
function failure(err: unknown, leg: Leg | undefined, timedOut: () => TeiplexError | undefined = () => undefined): grpc.ServerErrorResponse {
  const cause = err instanceof TeiplexError && err.code === 'REQUEST_TIMEOUT' ? (timedOut() ?? err) : err;
  const e = toServiceError(cause);
  if (leg !== undefined) e.metadata = relayMetadata(e.metadata, leg.instance.name);
  return e;
}

/** The answer's size so far against grpc_max_message_size_mb; `floor` refuses before any child work. */
function answerMeter(limit: number, rows: number): AnswerMeter {
  return new AnswerMeter(
    limit,
    () =>
      new TeiplexError(
        'PAYLOAD_TOO_LARGE',
        `the answer to ${rows} rows is more than ${limit} bytes (grpc_max_message_size_mb), known before it was complete; send fewer rows per call`,
      ),
  );
}

/** Refuse before any child work when the rows cannot fit even at `perRow` bytes each. */
function checkFloor(limit: number, rows: number, perRow: number): void {
  if (rows * perRow > limit) {
    throw new TeiplexError(
      'PAYLOAD_TOO_LARGE',
      `the answer to ${rows} rows takes at least ${rows * perRow} bytes (${perRow} per row), more than ${limit} bytes (grpc_max_message_size_mb); refused before calling the model; send fewer rows per call`,
    );
  }
}

/**
 * Rows in an output type as an Arrow answer: FixedSizeList of the type's element, `dims`
 * (the vector's dimensions) and the type in the field's metadata. For noop, empty rows mean zeros.
 */
function typedDense(rows: TypedRow[], type: OutputType, dims: number, workers: ArrowWorkers): Promise<Uint8Array> {
  const rowLength = typedLength(type, dims);
  const values: DenseValues = type === 'float32' ? new Float32Array(rows.length * rowLength) : type === 'float16' ? new Uint16Array(rows.length * rowLength) : type === 'int8' || type === 'binary' ? new Int8Array(rows.length * rowLength) : new Uint8Array(rows.length * rowLength);
  rows.forEach((r, i) => {
    if (r.length === 0) return; // noop: zeros
    if (r.length !== rowLength) throw new TeiplexError('BACKEND', `the child's answer is malformed: row ${i} has ${r.length} values, expected ${rowLength}`);
    values.set(r as never, i * rowLength);
  });
  return workers.denseTyped(values, rowLength, { 'teiplex.embedding_type': type, 'teiplex.dimensions': String(dims) });
}

/**
 * Definitions and handlers of the Arrow RPCs present in `base` (the .proto's TeiMultiplexer):
 * the request deserializer is made total (malformed bytes -> INVALID_ARGUMENT in the handler).
 */
export function arrowMethods(
  f: Forwarder,
  d: ArrowServiceDeps,
  base: grpc.ServiceDefinition,
): Record<string, { definition: grpc.MethodDefinition<unknown, unknown>; handler: grpc.handleUnaryCall<ArrowRequest, { arrow_ipc: Buffer }> }> {
  const shared: ArrowShared = {
    // A worker's heap holds a request's strings (up to twice its bytes, UTF-16) and their array.
    workers: new ArrowWorkers({ threads: d.limits.decodeThreads, maxHeapMb: Math.max(512, Math.ceil((6 * d.limits.maxDecompressedBytes) / MIB)) }),
    budget: new Budget(d.limits.decodeBudgetBytes),
  };
  const out: ReturnType<typeof arrowMethods> = {};
  for (const [name, method] of Object.entries(ARROW_METHODS)) {
    const def = base[name];
    if (def === undefined) continue;
    const decode = def.requestDeserialize;
    const definition: grpc.MethodDefinition<unknown, unknown> = {
      ...def,
      requestDeserialize: (bytes: Buffer): ArrowRequest => {
        try {
          return decode(bytes) as ArrowRequest;
        } catch (err) {
          return { malformed: `malformed message: ${(err as Error).message}` };
        }
      },
    };
    out[name] = { definition, handler: arrowHandler(name, method, f, d, shared) };
  }
  return out;
}

function arrowHandler(
  name: string,
  method: ArrowMethod,
  f: Forwarder,
  d: ArrowServiceDeps,
  shared: ArrowShared,
): grpc.handleUnaryCall<ArrowRequest, { arrow_ipc: Buffer }> {
  const { kind } = method;
  return (call, callback) => {
    const started = performance.now();
    const req = call.request;
    let held = 0;
    /** Give back the decode budget share (once; the texts are no longer needed). */
    const release = (): void => {
      if (held === 0) return;
      shared.budget.release(held);
      held = 0;
    };
    const refuse = (err: unknown): void => {
      release();
      const e = failure(err, undefined);
      f.close(name, undefined, e.code!, started);
      callback(e);
    };
    const dropped = (leg?: Leg): void => {
      release();
      f.close(name, leg, grpc.status.CANCELLED, started);
    };
    let target: Target;
    let mode: FailoverMode;
    let outputType: OutputType = 'float32';
    let inputType: InputType | undefined;
    let lane: Lane;
    try {
      if (req.malformed !== undefined) throw new TeiplexError('BAD_REQUEST', req.malformed);
      // Arrow calls are bulk unless their metadata (or their API key's priority) says otherwise.
      lane = laneOf(call.metadata.get(PRIORITY_HEADER), grantOf(req)?.priority ?? 'bulk');
      target = toTarget(req.target);
      mode = parseFailoverMode(call.metadata.get(FAILOVER_HEADER)[0]);
      outputType = parseEmbeddingType(req.embedding_type);
      inputType = parseInputType(req.input_type);
      if (req.noop === true && !d.limits.allowNoop) {
        throw new TeiplexError('NOOP_DISABLED', `'noop' is disabled on this server (arrow_allow_noop = false): it answers zeros without calling the model, for transport benchmarks only`);
      }
    } catch (err) {
      refuse(err);
      return;
    }

    // Reading the texts: bounded by the client's deadline and grpc_request_timeout_secs.
    const ours = Date.now() + f.timeoutMs;
    const client = deadlineMs(call.getDeadline());
    const reading = new CallScope(Math.min(ours, client), () =>
      client <= ours
        ? clientDeadline()
        : new TeiplexError(
            'DECODE_BUDGET_EXHAUSTED',
            `the manager's Arrow workers and decode budget (arrow_decode_threads, arrow_decode_budget_mb: ${shared.budget.limit} bytes) stayed taken by other calls for grpc_request_timeout_secs (${f.timeoutMs / 1000} s); retry later`,
            { retryAfterSecs: 1 },
          ),
    );
    const onCancel = (): void => reading.abort(clientCancelled());
    call.on('cancelled', onCancel);
    readTexts(req.arrow_ipc ?? Buffer.alloc(0), d.limits, shared, reading, (bytes) => (held = bytes), req.noop !== true && d.cache.enabled).then(
      (texts) => {
        reading.finish();
        call.removeListener('cancelled', onCancel);
        if (call.cancelled) return dropped();
        let opened: Leg | Promise<Leg>;
        try {
          opened = f.open(target, noWaitOf(call.metadata), grantOf(req), () => callWaiter(call, (req.arrow_ipc?.length ?? 0) + texts.distinct.byteLength));
        } catch (err) {
          refuse(err);
          return;
        }
        if (opened instanceof Promise) {
          opened.then((leg) => {
            if (call.cancelled) dropped(leg);
            else serve(leg, texts);
          }, refuse);
        } else {
          serve(opened, texts);
        }
      },
      (err: unknown) => {
        reading.finish();
        call.removeListener('cancelled', onCancel);
        if (call.cancelled) dropped();
        else refuse(reading.aborted ?? err);
      },
    );

    function serve(leg: Leg, read: RequestTexts): void {
      const ours = Date.now() + f.timeoutMs;
      const client = deadlineMs(call.getDeadline());
      const timedOut = (): TeiplexError | undefined => {
        if (Date.now() < Math.min(ours, client) - 5) return undefined;
        if (client <= ours) return clientDeadline();
        return new TeiplexError('REQUEST_TIMEOUT', `instance '${leg.instance.name}' did not answer within grpc_request_timeout_secs (${f.timeoutMs / 1000} s)`);
      };
      const arrowCall = new CallScope(Math.min(ours, client), () => timedOut() ?? clientDeadline(), undefined, lane);
      let done = false;
      /** The replica failed sub-batches went to (failover), once asked: null when none may be used. */
      let moved: Leg | null | undefined;
      const fallback = (err: unknown): ChildClient | undefined => {
        if (!retryableRows(err) || arrowCall.aborted !== undefined || done) return undefined;
        if (moved === undefined) moved = f.retry(target, grantOf(req), mode, [leg.instance]) ?? null;
        return moved?.client;
      };
      const finish = (code: grpc.status): void => {
        done = true;
        release();
        arrowCall.finish();
        if (moved) f.abandon(moved);
        f.close(name, leg, code, started);
      };
      /** The answer's metadata: the instance (after a failover: the replica retried on, and the first one). */
      const answerMetadata = (): grpc.Metadata => {
        const md = relayMetadata(undefined, moved ? moved.instance.name : leg.instance.name);
        if (moved) md.set(RETRIED_FROM_HEADER, leg.instance.name);
        if (warning !== undefined) md.set(WARNING_METADATA, warning);
        if (stats !== undefined) md.set(CACHE_TRAILER, cacheHeader(stats));
        return md;
      };
      call.on('cancelled', () => {
        if (done) return;
        arrowCall.abort(clientCancelled());
        finish(grpc.status.CANCELLED);
      });

      const n = read.rows;
      /** Refuse before any child work when even the smallest rows cannot fit. */
      const floor = (child: ChildClient): void => checkFloor(d.limits.maxMessageBytes, n, kind.minRowBytes(child));
      let path: FanoutPath | 'cache' | 'none' = 'none';
      const typed = outputType !== 'float32';
      /** An asymmetric model called without a type: said in the metadata. */
      let warning: string | undefined;
      /** The rows answered without the child (cache, repeats) and computed by it. */
      let stats: CacheStats | undefined;
      /** The answer, made on `on`'s child (the rows that fail over go to `moved`'s, row-fanout.ts). */
      const run = async (on: Leg): Promise<Uint8Array> => {
        const child = on.client;
        const flags = method.flags(req);
        const spec = on.instance.spec;
        // prompts by input_type: by name when the child knows them, else prepended by a worker
        let prefix = '';
        const prompts = modelPrompts(spec);
        if (inputType === undefined) warning = asymmetricWarning(prompts, spec.model_id);
        else {
          const choice = promptFor(prompts, inputType);
          if (choice.promptName !== undefined) flags.promptName = choice.promptName;
          else prefix = choice.prefix ?? '';
        }
        /** A typed answer's dimension: the asked one, else the model's. */
        const typedDim = async (): Promise<number> => flags.dimensions ?? (await kind.dimension(child, arrowCall));
        if (n === 0) return typed ? typedDense([], outputType, await typedDim(), shared.workers) : kind.encode([], await kind.dimension(child, arrowCall), shared.workers);
        floor(child);
        if (req.noop === true) {
          if (typed) return typedDense(Array.from({ length: n }, () => new Float32Array(0)), outputType, await typedDim(), shared.workers);
          const dim = await kind.dimension(child, arrowCall);
          floor(child);
          return kind.zeros(n, dim, shared.workers);
        }
        const meter = answerMeter(d.limits.maxMessageBytes, n);
        // each distinct text once, through the cache (keyed by its SHA-256), the rest from the child
        const useCache = d.cache.enabled && spec.embedding_cache !== false && read.digests.length > 0;
        const options = { truncate: flags.truncate, truncationDirection: 'right' as const, normalize: flags.normalize ?? true, ...(flags.dimensions !== undefined ? { dimensions: flags.dimensions } : {}), ...(flags.promptName !== undefined ? { promptName: flags.promptName } : {}), ...(prefix !== '' ? { textPrefix: prefix } : {}) };
        const keyPrefix = useCache ? `${await modelIdentity(child, spec)}\u0000${kindKey(kind.name, options)}\u0000x${prefix}\u0000h` : undefined;
        const distinct = read.distinct;
        const found = await throughCache(d.cache, keyPrefix, distinct.length, (k) => digestKey(read.digests, k), (k) => read.firstRow[k]!, async (missing) => {
          const some = missing.length < distinct.length;
          const texts = some || prefix !== '' ? new TextRows(await shared.workers.select(distinct.packed, some ? Int32Array.from(missing) : null, prefix)) : distinct;
          const out = await child.rows(arrowCall, kind.rows, texts, flags, d.fanout ?? DEFAULT_FANOUT, (row: unknown) => meter.add(kind.rows.rowBytes(row)), fallback);
          path = out.path;
          return { values: out.rows as CachedValue[] };
        });
        stats = { hits: 0, misses: 0 };
        countRequest(d.cache, stats, n, found.computed);
        if (found.computed === 0) path = 'cache';
        const rows: unknown[] = Array.from(read.rowOf, (k) => found.entries[k]!.value);
        if (flags.dimensions === undefined) kind.learn(child, rows);
        release();
        if (!typed) return kind.encode(rows, 0, shared.workers);
        const dense = rows as Float32Array[];
        const quantized = await typedRows(child, dense, outputType, options, { deadlineMs: arrowCall.deadlineMs });
        return typedDense(quantized, outputType, dense[0]?.length ?? (await typedDim()), shared.workers);
      };

      /**
       * A failure before any row was asked for (the child's Info for the cache key, its dimension)
       * or after the rows (int8 calibration) that another replica may take: the whole call moves
       * there, once. Failures of the rows themselves have moved already (`moved` is set).
       */
      const attempt = async (): Promise<Uint8Array> => {
        try {
          return await run(leg);
        } catch (err) {
          if (moved !== undefined || fallback(err) === undefined) throw err;
          return run(moved!);
        }
      };

      attempt().then(
        (ipc) => {
          if (done) return;
          if (ipc.byteLength + 16 > d.limits.maxMessageBytes) {
            const e = failure(
              new TeiplexError(
                'PAYLOAD_TOO_LARGE',
                `the answer to ${n} rows is ${ipc.byteLength} bytes, more than grpc_max_message_size_mb allows (${d.limits.maxMessageBytes} bytes); send fewer rows per call`,
              ),
              leg,
            );
            finish(e.code!);
            callback(e);
            return;
          }
          finish(grpc.status.OK);
          d.metrics.arrowRows(leg.instance.name, kind.name, n);
          const headers = answerMetadata();
          headers.set(PATH_HEADER, path);
          call.sendMetadata(headers);
          callback(null, { arrow_ipc: Buffer.from(ipc.buffer, ipc.byteOffset, ipc.byteLength) }, answerMetadata());
        },
        (err: unknown) => {
          if (done) return;
          const e = failure(arrowCall.aborted ?? err, leg, timedOut);
          arrowCall.abort(asTeiplexError(arrowCall.aborted ?? err));
          finish(e.code!);
          callback(e);
        },
      );
    }
  };
}
