/**
 * The Arrow batch RPCs of TeiMultiplexer: EmbedArrow (dense), EmbedSparseArrow (SPLADE) and
 * EmbedAllArrow (multivector, per-token vectors). One call carries an Arrow IPC stream of texts
 * and is answered with an Arrow IPC stream of one row per text, in input order (docs/arrow.md).
 *
 * 1. The request is decoded (protobufjs; malformed bytes -> INVALID_ARGUMENT, not grpc-js's
 *    INTERNAL), `target` is required, and the text column is read with the configured limits
 *    (`arrow_max_rows`, `arrow_max_decompressed_mb`): a null or non-string row, garbage or a
 *    truncated stream -> INVALID_ARGUMENT naming the row or what is wrong.
 * 2. The target resolves like any forwarded call (target.ts; the API key's decision, then a cold
 *    start if need be) and the call counts in flight.
 * 3. The texts go to the child (arrow-fanout.ts: teiplex.v1.Batch in chunks, or a tei.v1 stream
 *    for children without it), under one deadline: min(client's, now + grpc_request_timeout_secs).
 *    `noop` skips the child and answers zeros of the right shape; dense needs the dimension,
 *    learned once per child (arrow-child.ts). Zero rows give the schema and no record batch,
 *    without calling the child, except once to learn the dimension (dense, multivector).
 * 4. The rows are written as Arrow IPC with LZ4_FRAME bodies. An answer larger than
 *    grpc_max_message_size_mb is refused with RESOURCE_EXHAUSTED saying so.
 *
 * Errors from the child pass through with their status, message and trailers; `teiplex-instance`
 * names the instance in the response headers and trailers, as on forwarded calls.
 */
import * as grpc from '@grpc/grpc-js';
import { readTextColumn } from '../arrow/text-batch.js';
import { grantOf } from '../auth/grpc-auth.js';
import type { Config } from '../config/config.js';
import { DEFAULTS } from '../config/config.js';
import { TeiplexError } from '../common/errors.js';
import { ArrowCall, ChildStatusError } from './arrow-call.js';
import { ArrowChildren } from './arrow-child.js';
import { embedRows, DEFAULT_FANOUT, type FanoutPath, type FanoutSettings } from './arrow-fanout.js';
import { DENSE, MULTIVECTOR, SPARSE, type ArrowKind, type EmbedFlags } from './arrow-kinds.js';
import { INSTANCE_HEADER, statusError, thrownError, type Forwarder, type Leg } from './forward.js';
import type { MuxMetrics } from './metrics.js';
import type { PbTarget } from './protos.js';
import type { Target } from './wrapper.js';

/**
 * Response header saying how the rows were made: `batch` (teiplex.v1.Batch), `stream` (tei.v1
 * stream fan-out) or `none` (noop, empty input).
 */
export const PATH_HEADER = 'teiplex-arrow-path';

export interface ArrowLimits {
  /** Most rows in one request (arrow_max_rows). */
  maxRows: number;
  /** Most bytes the request's bodies may decode to (arrow_max_decompressed_mb). */
  maxDecompressedBytes: number;
  /** Largest answer (grpc_max_message_size_mb). */
  maxMessageBytes: number;
}

export function arrowLimits(c: Partial<Pick<Config, 'arrow_max_rows' | 'arrow_max_decompressed_mb' | 'grpc_max_message_size_mb'>>): ArrowLimits {
  const mib = 1024 * 1024;
  return {
    maxRows: c.arrow_max_rows ?? DEFAULTS.arrow_max_rows,
    maxDecompressedBytes: Math.floor((c.arrow_max_decompressed_mb ?? DEFAULTS.arrow_max_decompressed_mb) * mib),
    maxMessageBytes: Math.floor((c.grpc_max_message_size_mb ?? DEFAULTS.grpc_max_message_size_mb) * mib),
  };
}

export interface ArrowServiceDeps {
  metrics: MuxMetrics;
  limits: ArrowLimits;
  fanout?: FanoutSettings;
}

/** The request as decoded (the three requests share these fields), or why it could not be. */
interface ArrowRequest {
  target?: PbTarget | null;
  arrow_ipc?: Buffer;
  truncate?: boolean;
  normalize?: boolean;
  noop?: boolean;
  malformed?: string;
}

interface ArrowMethod {
  kind: ArrowKind<unknown>;
  flags(req: ArrowRequest): EmbedFlags;
}

export const ARROW_METHODS: Readonly<Record<string, ArrowMethod>> = {
  EmbedArrow: { kind: DENSE as ArrowKind<unknown>, flags: (r) => ({ truncate: r.truncate === true, normalize: r.normalize }) },
  EmbedSparseArrow: { kind: SPARSE as ArrowKind<unknown>, flags: (r) => ({ truncate: r.truncate === true }) },
  EmbedAllArrow: { kind: MULTIVECTOR as ArrowKind<unknown>, flags: (r) => ({ truncate: r.truncate === true }) },
};

function toTarget(t: PbTarget | null | undefined): Target {
  switch (t?.routing) {
    case 'instance_name':
      return { kind: 'instance_name', value: t.instance_name ?? '' };
    case 'model_id':
      return { kind: 'model_id', value: t.model_id ?? '' };
    case 'instance_index':
      return { kind: 'instance_index', value: t.instance_index ?? 0 };
    default:
      throw new TeiplexError('BAD_REQUEST', `'target' is required: set one of instance_name, model_id or instance_index`);
  }
}

function deadlineMs(d: grpc.Deadline): number {
  return d instanceof Date ? d.getTime() : d;
}

function instanceMetadata(name: string, from?: grpc.Metadata): grpc.Metadata {
  const md = from?.clone() ?? new grpc.Metadata();
  md.set(INSTANCE_HEADER, name);
  return md;
}

/** The status the client gets for a failure after the call reached an instance. */
function failure(err: unknown, leg: Leg, timedOut: () => grpc.ServerErrorResponse | undefined): grpc.ServerErrorResponse {
  if (err instanceof ChildStatusError) {
    if (err.code === grpc.status.DEADLINE_EXCEEDED) {
      const ours = timedOut();
      if (ours !== undefined) return ours;
    }
    return statusError(err.code, err.status.details, instanceMetadata(leg.instance.name, err.status.metadata));
  }
  const e = typeof (err as grpc.ServerErrorResponse)?.code === 'number' ? (err as grpc.ServerErrorResponse) : thrownError(err);
  return statusError(e.code!, e.details ?? e.message, instanceMetadata(leg.instance.name, e.metadata));
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
  const children = new ArrowChildren();
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
    out[name] = { definition, handler: arrowHandler(name, method, f, d, children) };
  }
  return out;
}

function arrowHandler(name: string, method: ArrowMethod, f: Forwarder, d: ArrowServiceDeps, children: ArrowChildren): grpc.handleUnaryCall<ArrowRequest, { arrow_ipc: Buffer }> {
  const { kind } = method;
  return (call, callback) => {
    const started = performance.now();
    const req = call.request;
    let texts: string[];
    let opened: Leg | Promise<Leg>;
    const refuse = (err: unknown): void => {
      const e = thrownError(err);
      f.close(name, undefined, e.code!, started);
      callback(e);
    };
    try {
      if (req.malformed !== undefined) throw new TeiplexError('BAD_REQUEST', req.malformed);
      const target = toTarget(req.target);
      texts = readTextColumn(req.arrow_ipc ?? Buffer.alloc(0), { maxRows: d.limits.maxRows, maxDecompressedBytes: d.limits.maxDecompressedBytes });
      opened = f.open(target, call.metadata, grantOf(req));
    } catch (err) {
      refuse(err);
      return;
    }
    if (opened instanceof Promise) {
      opened.then((leg) => {
        if (call.cancelled) f.close(name, leg, grpc.status.CANCELLED, started);
        else serve(leg);
      }, refuse);
    } else {
      serve(opened);
    }

    function serve(leg: Leg): void {
      const ours = Date.now() + f.timeoutMs;
      const client = deadlineMs(call.getDeadline());
      const timedOut = (): grpc.ServerErrorResponse | undefined => {
        if (Date.now() < Math.min(ours, client) - 5) return undefined;
        if (client <= ours) return statusError(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded', instanceMetadata(leg.instance.name));
        const e = thrownError(new TeiplexError('REQUEST_TIMEOUT', `instance '${leg.instance.name}' did not answer within grpc_request_timeout_secs (${f.timeoutMs / 1000} s)`));
        return statusError(e.code!, e.details!, instanceMetadata(leg.instance.name));
      };
      const arrowCall = new ArrowCall(Math.min(ours, client), () => timedOut() ?? statusError(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded'));
      let done = false;
      const finish = (code: grpc.status): void => {
        done = true;
        arrowCall.finish();
        f.close(name, leg, code, started);
      };
      call.on('cancelled', () => {
        if (done) return;
        arrowCall.abort(statusError(grpc.status.CANCELLED, 'the client cancelled the call'));
        finish(grpc.status.CANCELLED);
      });

      let path: FanoutPath | 'none' = 'none';
      const run = async (): Promise<Uint8Array> => {
        const child = children.get(leg.channel);
        if (texts.length === 0) return kind.encode([], await kind.dimension(child, arrowCall));
        if (req.noop === true) return kind.zeros(texts.length, await kind.dimension(child, arrowCall));
        const out = await embedRows(arrowCall, child, kind, texts, method.flags(req), d.fanout ?? DEFAULT_FANOUT);
        path = out.path;
        kind.learn(child, out.rows);
        return kind.encode(out.rows, 0);
      };

      run().then(
        (ipc) => {
          if (done) return;
          if (ipc.byteLength + 16 > d.limits.maxMessageBytes) {
            const e = statusError(
              grpc.status.RESOURCE_EXHAUSTED,
              `the answer to ${texts.length} rows is ${ipc.byteLength} bytes, more than grpc_max_message_size_mb allows (${d.limits.maxMessageBytes} bytes); send fewer rows per call`,
              instanceMetadata(leg.instance.name),
            );
            finish(e.code!);
            callback(e);
            return;
          }
          finish(grpc.status.OK);
          d.metrics.arrowRows(leg.instance.name, kind.name, texts.length);
          const headers = instanceMetadata(leg.instance.name);
          headers.set(PATH_HEADER, path);
          call.sendMetadata(headers);
          callback(null, { arrow_ipc: Buffer.from(ipc.buffer, ipc.byteOffset, ipc.byteLength) }, instanceMetadata(leg.instance.name));
        },
        (err: unknown) => {
          if (done) return;
          const e = failure(arrowCall.aborted ?? err, leg, timedOut);
          arrowCall.abort(e);
          finish(e.code!);
          callback(e);
        },
      );
    }
  };
}
