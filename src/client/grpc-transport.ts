/**
 * The client's gRPC: one channel to the multiplexer (`tei_multiplexer.v1.TeiMultiplexer`, loaded
 * by the project's one proto loader, src/tei/proto.ts), TLS from the options (a private CA, a
 * client certificate for mTLS), the API key as `authorization: Bearer` metadata, a deadline per
 * try, retries (retry.ts: UNAVAILABLE / RESOURCE_EXHAUSTED, honouring the `retry-after` trailer),
 * and failures as typed errors carrying the `teiplex-error-code` trailer (errors.ts).
 */
import * as grpc from '@grpc/grpc-js';
import { loadProtos, MUX_PROTO_FILE } from '../tei/proto.js';
import { errorFromGrpc, ServerError, TeiplexClientError, type GrpcFailure } from './errors.js';
import type { CallOptions } from './http-transport.js';
import type { ResolvedOptions } from './options.js';
import { withRetry } from './retry.js';

export const MUX_SERVICE = 'tei_multiplexer.v1.TeiMultiplexer';
/** Metadata asking the manager not to wait for a catalog model's cold start. */
export const NO_WAIT = 'x-teiplex-no-wait';

type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => grpc.ClientUnaryCall & grpc.ClientDuplexStream<unknown, unknown>>;

export interface GrpcCallOptions extends CallOptions {
  noWait?: boolean;
}

let ctor: grpc.ServiceClientConstructor | undefined;
function muxConstructor(): grpc.ServiceClientConstructor {
  if (ctor === undefined) {
    const def = loadProtos([MUX_PROTO_FILE])[MUX_SERVICE];
    if (def === undefined || 'format' in def) throw new Error(`${MUX_SERVICE} is not a service in ${MUX_PROTO_FILE}`);
    ctor = grpc.makeClientConstructor(def as grpc.ServiceDefinition, MUX_SERVICE);
  }
  return ctor;
}

const toBuffer = (v: string | Buffer | undefined): Buffer | null => (v === undefined ? null : Buffer.isBuffer(v) ? v : Buffer.from(v));

export class GrpcTransport {
  readonly #o: ResolvedOptions;
  readonly #client: AnyClient;

  constructor(o: ResolvedOptions) {
    this.#o = o;
    const u = o.grpcUrl;
    const secure = u.protocol === 'https:' || u.protocol === 'grpcs:';
    const tls = o.tls;
    const creds = secure ? grpc.credentials.createSsl(toBuffer(tls?.ca), toBuffer(tls?.key), toBuffer(tls?.cert)) : grpc.credentials.createInsecure();
    const channelOptions: grpc.ChannelOptions = { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 };
    if (secure && tls?.servername !== undefined) {
      channelOptions['grpc.ssl_target_name_override'] = tls.servername;
      channelOptions['grpc.default_authority'] = tls.servername;
    }
    const Ctor = muxConstructor();
    this.#client = new Ctor(`${u.hostname}:${u.port}`, creds, channelOptions) as AnyClient;
  }

  #metadata(opts: GrpcCallOptions): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.#o.apiKey !== undefined) md.set('authorization', `Bearer ${this.#o.apiKey}`);
    if (opts.noWait) md.set(NO_WAIT, '1');
    for (const [k, v] of Object.entries(opts.headers ?? {})) md.set(k.toLowerCase(), v);
    return md;
  }

  #callOptions(opts: GrpcCallOptions): grpc.CallOptions {
    return { deadline: Date.now() + (opts.timeoutMs ?? this.#o.timeoutMs) };
  }

  #fail(e: unknown, method: string): Error {
    if (e instanceof TeiplexClientError) return e;
    if (e !== null && typeof e === 'object' && typeof (e as GrpcFailure).code === 'number') return errorFromGrpc(e as GrpcFailure, `gRPC ${method}`);
    return e instanceof Error ? e : new Error(String(e));
  }

  #run<T>(method: string, opts: GrpcCallOptions, once: () => Promise<T>): Promise<T> {
    return withRetry({ operation: `gRPC ${method}`, idempotent: opts.retry !== false, policy: this.#o.retry, onRetry: this.#o.onRetry, signal: opts.signal }, once);
  }

  /** One unary call of the multiplexer (inference calls are idempotent: retried). */
  unary<T>(method: string, request: unknown, opts: GrpcCallOptions = {}): Promise<T> {
    return this.#run(method, opts, () =>
      new Promise<T>((resolve, reject) => {
        const call = this.#client[method]!(request, this.#metadata(opts), this.#callOptions(opts), (err: grpc.ServiceError | null, res: T) =>
          err ? reject(this.#fail(err, method)) : resolve(res),
        );
        const onAbort = () => call.cancel();
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        call.on('status', () => opts.signal?.removeEventListener('abort', onAbort));
      }),
    );
  }

  /** A bidirectional stream: every request written, the answers in order (one per request). */
  stream<T>(method: string, requests: readonly unknown[], opts: GrpcCallOptions = {}): Promise<T[]> {
    return this.#run(method, opts, () =>
      new Promise<T[]>((resolve, reject) => {
        const call = this.#client[method]!(this.#metadata(opts), this.#callOptions(opts)) as grpc.ClientDuplexStream<unknown, T>;
        const answers: T[] = [];
        let ended = false;
        let ok = false;
        const settle = () => {
          if (ended && ok) {
            if (answers.length !== requests.length) reject(new ServerError('BAD_RESPONSE', `gRPC ${method}: ${answers.length} answers to ${requests.length} requests`));
            else resolve(answers);
          }
        };
        const onAbort = () => call.cancel();
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        call.on('data', (d: T) => answers.push(d));
        call.on('error', (e) => reject(this.#fail(e, method)));
        call.on('end', () => {
          ended = true;
          settle();
        });
        call.on('status', (s: grpc.StatusObject) => {
          opts.signal?.removeEventListener('abort', onAbort);
          if (s.code === grpc.status.OK) {
            ok = true;
            settle();
          }
        });
        for (const r of requests) call.write(r);
        call.end();
      }),
    );
  }

  close(): void {
    this.#client.close();
  }
}
