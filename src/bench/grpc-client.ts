/**
 * gRPC plumbing of the bench: the protocol definitions (tei.v1 and tei_multiplexer.v1, loaded
 * once from proto/), one channel per run with the message size limit and TLS/mTLS credentials,
 * per-call metadata (API key) and deadlines.
 */
import * as grpc from '@grpc/grpc-js';
import { BATCH_PROTO_FILE, loadProtos, MUX_PROTO_FILE, TEI_PROTO_FILE } from '../tei/proto.js';
import type { BenchOptions, TargetSpec } from './options.js';

export const TEI_EMBED_SERVICE = 'tei.v1.Embed';
export const MUX_SERVICE = 'tei_multiplexer.v1.TeiMultiplexer';
/** A `teiplex router` child's batch extension (arrow mode with --direct). */
export const BATCH_SERVICE = 'teiplex.v1.Batch';

function packageDefinition(): ReturnType<typeof loadProtos> {
  return loadProtos([TEI_PROTO_FILE, BATCH_PROTO_FILE, MUX_PROTO_FILE]);
}

export type AnyClient = grpc.Client & Record<string, any>;

function credentials(opts: BenchOptions): grpc.ChannelCredentials {
  if (!opts.endpoint.tls) return grpc.credentials.createInsecure();
  const { ca, key, cert } = opts.tlsFiles;
  return grpc.credentials.createSsl(ca ?? null, key ?? null, cert ?? null);
}

export type BenchService = typeof TEI_EMBED_SERVICE | typeof MUX_SERVICE | typeof BATCH_SERVICE;

/** The definition of a service the bench calls (also what a stand-in server in tests implements). */
export function benchServiceDefinition(service: BenchService): grpc.ServiceDefinition {
  const def = packageDefinition()[service];
  if (def === undefined || 'format' in def) throw new Error(`${service} is not a service in proto/`);
  return def as grpc.ServiceDefinition;
}

/** A client of `service` on the run's endpoint (one channel; calls multiplex over it). */
export function grpcClient(opts: BenchOptions, service: BenchService): AnyClient {
  const Ctor = grpc.makeClientConstructor(benchServiceDefinition(service), service);
  return new Ctor(opts.endpoint.authority, credentials(opts), {
    'grpc.max_send_message_length': opts.maxMessageBytes,
    'grpc.max_receive_message_length': opts.maxMessageBytes,
  }) as AnyClient;
}

/** Call metadata: `authorization: Bearer <key>` when an API key is given. */
export function callMetadata(opts: BenchOptions): () => grpc.Metadata {
  return () => {
    const md = new grpc.Metadata();
    if (opts.apiKey !== undefined) md.set('authorization', `Bearer ${opts.apiKey}`);
    return md;
  };
}

export function callOptions(opts: BenchOptions): grpc.CallOptions {
  return { deadline: Date.now() + opts.timeoutMs };
}

/** Wait until the channel is connected (so the clock does not time the handshake). */
export function waitForReady(client: grpc.Client, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => client.waitForReady(Date.now() + timeoutMs, (err) => resolve(err == null)));
}

/** tei_multiplexer.v1.Target as the loader takes it. */
export function targetMessage(t: TargetSpec | undefined): Record<string, string | number> | undefined {
  return t === undefined ? undefined : { [t.kind]: t.value };
}

/** A unary call as a promise. */
export function unaryCall<T>(client: AnyClient, method: string, request: unknown, md: grpc.Metadata, options: grpc.CallOptions): Promise<T> {
  return new Promise((resolve, reject) => {
    client[method](request, md, options, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
  });
}

/**
 * A bidirectional stream: writes every request (respecting back-pressure), half-closes, and
 * resolves with the number of answers once the call ends OK; rejects with the call's error.
 */
export function bidiCall(client: AnyClient, method: string, requests: readonly unknown[], md: grpc.Metadata, options: grpc.CallOptions): Promise<number> {
  return new Promise((resolve, reject) => {
    const call = client[method](md, options) as grpc.ClientDuplexStream<unknown, unknown>;
    let answers = 0;
    let ended = false;
    let ok = false;
    const settle = (): void => {
      if (ended && ok) resolve(answers);
    };
    call.on('data', () => answers++);
    call.on('end', () => {
      ended = true;
      settle();
    });
    call.on('error', reject);
    call.on('status', (s: grpc.StatusObject) => {
      ok = s.code === grpc.status.OK;
      settle();
    });
    let i = 0;
    const writeMore = (): void => {
      while (i < requests.length) {
        if (!call.write(requests[i++])) {
          call.once('drain', writeMore);
          return;
        }
      }
      call.end();
    };
    writeMore();
  });
}
