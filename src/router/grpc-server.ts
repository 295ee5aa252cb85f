/**
 * The router's gRPC server: tei.v1, teiplex.v1.Batch and teiplex.v1.TokenClassification over an RouterEngine, grpc.health.v1 and server
 * reflection. It listens before the model is loaded: until `setEngine`, data RPCs answer
 * UNAVAILABLE ("model is loading") and health reports NOT_SERVING for "" and every service.
 *
 * Health after `setEngine` follows TEI: "", Info and Tokenize SERVING; Embed (and the batch
 * extension) for embedding/SPLADE models, Predict for classifiers and rerankers, Rerank for
 * rerankers, TokenClassification for token classifiers; a service the model cannot serve stays NOT_SERVING, a hint that it would fail.
 */
import { timingSafeEqual } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { TeiplexError } from '../common/errors.js';
import { batchServiceImplementation } from './batch-service.js';
import { tokensServiceImplementation } from './tokens-service.js';
import { DEFAULT_MAX_PARALLEL_STREAM_REQUESTS, OversizeMessage, teiServiceImplementations, type ServiceContext } from './grpc-service.js';
import { toServiceError } from '../tei/grpc-status.js';
import { BATCH_SERVICE, TOKENS_SERVICE, reflectionPackageDefinition, ROUTER_SERVICES, serviceDefinition, type RouterServiceName } from '../tei/proto.js';
import type { ModelKind } from '../tei/types.js';
import type { RouterEngine } from './engine.js';

export interface GrpcServerOptions {
  hostname: string;
  port: number;
  apiKey?: string;
  maxClientBatchSize: number;
  /**
   * Largest request message accepted, in bytes (--payload-limit): a larger one is refused with
   * PAYLOAD_TOO_LARGE (RESOURCE_EXHAUSTED and its `teiplex-error-code` trailer) up to
   * `receiveCeiling(payloadLimit)`; beyond that gRPC refuses it itself, before reading it.
   */
  payloadLimit: number;
  /** In-flight messages per bidirectional stream; default GRPC_MAX_PARALLEL_STREAM_REQUESTS, else 1024 (TEI's). */
  maxParallelStreamRequests?: number;
  /** Most inputs in one teiplex.v1.Batch message; default: the engine's max_concurrent_requests. */
  maxBatchInputs?: number;
}

export interface RouterGrpcServer {
  /** The bound port (port 0 => ephemeral). */
  readonly port: number;
  /** From now on serve; health of "" and of the services this model serves -> SERVING. */
  setEngine(engine: RouterEngine): void;
  /** Health NOT_SERVING, stop accepting new calls, wait for in-flight calls, then close. */
  drain(): Promise<void>;
  forceClose(): void;
}

/** The services a model of this kind can serve (TEI's per-service health). */
function servedBy(kind: ModelKind): ReadonlySet<RouterServiceName> {
  const served: RouterServiceName[] = ['tei.v1.Info', 'tei.v1.Tokenize'];
  if (kind === 'embedding' || kind === 'splade') served.push('tei.v1.Embed', BATCH_SERVICE);
  if (kind === 'classifier' || kind === 'reranker') served.push('tei.v1.Predict');
  if (kind === 'reranker') served.push('tei.v1.Rerank');
  if (kind === 'token-classifier') served.push(TOKENS_SERVICE);
  return new Set(served);
}

function streamWindow(opts: GrpcServerOptions): number {
  if (opts.maxParallelStreamRequests !== undefined) return opts.maxParallelStreamRequests;
  const env = Number.parseInt(process.env.GRPC_MAX_PARALLEL_STREAM_REQUESTS ?? '', 10);
  return Number.isInteger(env) && env > 0 ? env : DEFAULT_MAX_PARALLEL_STREAM_REQUESTS;
}

/** Headroom over --payload-limit that gRPC still reads, so that the router can refuse it with its code. */
const OVERSIZE_HEADROOM = 4 * 1024 * 1024;
/** grpc-js's largest receive limit (a 32-bit signed length). */
const GRPC_MAX_LENGTH = 2 ** 31 - 1;

/**
 * The most bytes gRPC buffers for one request message: --payload-limit plus the larger of itself
 * and 4 MiB. A message up to this size is read (and refused unparsed when over the limit); a
 * larger one is refused by grpc-js from its length prefix, before it is buffered, with its own
 * RESOURCE_EXHAUSTED "Received message larger than max" and no `teiplex-error-code` trailer.
 */
export function receiveCeiling(payloadLimit: number): number {
  return Math.min(GRPC_MAX_LENGTH, payloadLimit + Math.max(payloadLimit, OVERSIZE_HEADROOM));
}

/**
 * The service definition with a request deserializer that does not parse a message over the limit
 * but hands on an OversizeMessage, which every handler refuses as PAYLOAD_TOO_LARGE (in a stream:
 * in its place, as the failing message, after the answers before it).
 */
function withPayloadLimit(def: grpc.ServiceDefinition, limit: number): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(def)) {
    const parse = method.requestDeserialize;
    out[name] = { ...method, requestDeserialize: (bytes: Buffer) => (bytes.length > limit ? new OversizeMessage(bytes.length, limit) : parse(bytes)) };
  }
  return out as grpc.ServiceDefinition;
}

/** Every handler of a service behind the API key check (TEI: `authorization: Bearer <key>`). */
function withApiKey(impl: grpc.UntypedServiceImplementation, def: grpc.ServiceDefinition, apiKey: string): grpc.UntypedServiceImplementation {
  const expected = Buffer.from(`Bearer ${apiKey}`);
  const authorized = (md: grpc.Metadata): boolean => {
    const got = md.get('authorization');
    if (got.length !== 1) return false;
    const value = Buffer.from(String(got[0]));
    return value.length === expected.length && timingSafeEqual(value, expected);
  };
  const denied = () => toServiceError(new TeiplexError('UNAUTHENTICATED', 'No valid auth token'));
  const out: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(impl)) {
    const streamsResponses = def[name]?.responseStream === true;
    const streamsRequests = def[name]?.requestStream === true;
    type AnyCall = { metadata: grpc.Metadata; emit(event: 'error', err: unknown): boolean; pause?(): unknown };
    const wrapped = (call: AnyCall, callback?: grpc.sendUnaryData<unknown>): void => {
      if (authorized(call.metadata)) return (handler as (c: AnyCall, cb?: grpc.sendUnaryData<unknown>) => void)(call, callback);
      if (streamsResponses) call.emit('error', denied());
      else {
        callback!(denied());
        if (streamsRequests) call.pause?.();
      }
    };
    out[name] = wrapped as unknown as grpc.UntypedHandleCall;
  }
  return out;
}

function hostPort(hostname: string, port: number): string {
  const host = hostname.includes(':') && !hostname.startsWith('[') ? `[${hostname}]` : hostname;
  return `${host}:${port}`;
}

/** Server reflection over everything the router serves: the same for every server of this process. */
let reflection: ReflectionService | undefined;

export async function startGrpcServer(opts: GrpcServerOptions): Promise<RouterGrpcServer> {
  let engine: RouterEngine | null = null;
  const ctx: ServiceContext & { maxBatchInputs(e: RouterEngine): number } = {
    engine(): RouterEngine {
      if (engine === null) throw new TeiplexError('UNHEALTHY', 'model is loading');
      return engine;
    },
    maxParallelStreamRequests: streamWindow(opts),
    maxClientBatchSize: opts.maxClientBatchSize,
    maxBatchInputs: (e) => opts.maxBatchInputs ?? e.info.maxConcurrentRequests,
  };

  const server = new grpc.Server({ 'grpc.max_receive_message_length': receiveCeiling(opts.payloadLimit) });

  const health = new HealthImplementation({ '': 'NOT_SERVING' });
  const setHealth = (status: (name: RouterServiceName | '') => ServingStatus): void => {
    health.setStatus('', status(''));
    for (const name of ROUTER_SERVICES) health.setStatus(name, status(name));
  };
  setHealth(() => 'NOT_SERVING');
  health.addToServer(server);
  // Built once per process (its descriptors take ~100 ms or more): a standby router builds it ahead.
  reflection ??= new ReflectionService(reflectionPackageDefinition());
  reflection.addToServer(server);

  const implementations: Record<RouterServiceName, grpc.UntypedServiceImplementation> = {
    ...teiServiceImplementations(ctx),
    [BATCH_SERVICE]: batchServiceImplementation(ctx),
    [TOKENS_SERVICE]: tokensServiceImplementation(ctx),
  };
  // TEIPLEX_ROUTER_DISABLE_BATCH=1: serve without teiplex.v1.Batch, as a real TEI does (a test
  // and compatibility knob: the manager's Arrow RPCs then take their tei.v1 stream fan-out path).
  const withoutBatch = process.env.TEIPLEX_ROUTER_DISABLE_BATCH === '1';
  for (const name of ROUTER_SERVICES) {
    if (withoutBatch && name === BATCH_SERVICE) continue;
    const def = withPayloadLimit(serviceDefinition(name), opts.payloadLimit);
    const impl = opts.apiKey ? withApiKey(implementations[name], def, opts.apiKey) : implementations[name];
    server.addService(def, impl);
  }

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(hostPort(opts.hostname, opts.port), grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(new Error(`cannot listen for gRPC on ${hostPort(opts.hostname, opts.port)}: ${err.message}`)) : resolve(bound),
    );
  });

  let draining: Promise<void> | null = null;
  return {
    port,
    setEngine(e: RouterEngine): void {
      engine = e;
      if (draining) return;
      const served = servedBy(e.model.kind);
      setHealth((name) => (name === '' || served.has(name) ? 'SERVING' : 'NOT_SERVING'));
    },
    drain(): Promise<void> {
      draining ??= new Promise<void>((resolve) => {
        setHealth(() => 'NOT_SERVING');
        server.tryShutdown(() => resolve());
      });
      return draining;
    },
    forceClose(): void {
      setHealth(() => 'NOT_SERVING');
      server.forceShutdown();
    },
  };
}
