/**
 * The forwarded unary RPCs (methods.ts, kind `unary`) served straight on node:http2, in front of
 * grpc-js. Once the grpc-js server has bound its ports, `attachUnaryFront` takes the 'stream'
 * listener grpc-js put on each of its HTTP/2 servers and puts a dispatcher in its place: a
 * stream for `/tei_multiplexer.v1.TeiMultiplexer/<unary forwarded RPC>` is served here, every
 * other stream goes to grpc-js's own handler as before (the forwarded streams, the Arrow RPCs,
 * ListInstances, health, reflection). Connections, TLS, keepalive, SETTINGS (max concurrent
 * streams) and shutdown stay grpc-js's: they are per connection, not per call.
 *
 * Why: grpc-js's per-call server stack (interceptor chain, metadata objects, the call state
 * machine, its deadline timer, channelz counters) costs the manager more CPU than Node's HTTP/2
 * does to forward a call (bench/front-ends.ts measures both). Here a call is: the request's one
 * message read from its DATA, the wrapper parsed (wrapper.ts), the per-call auth decision
 * (auth/grpc-auth.ts `checkGrpcCall`, the interceptor's own), the target opened (the
 * Forwarder, as for every forwarded RPC), one input of the child's window taken in the call's
 * priority lane (`x-teiplex-priority`, else the API key's `priority`, else interactive;
 * src/child/input-budget.ts: at once when it has room, else in line), one call on the instance's
 * ChildChannel, and the child's answer written back with its headers and trailers, never decoded.
 *
 * What grpc-js would answer, this answers alike: a content-type other than application/grpc*
 * gets HTTP 415; `grpc-timeout` sets the call's deadline (a malformed one: INTERNAL); a message
 * over grpc_max_message_size_mb is RESOURCE_EXHAUSTED "Received message larger than max" (with
 * the PAYLOAD_TOO_LARGE trailer, which grpc-js would not send: a size refusal is not an overload); a
 * gzip or deflate message is inflated (bounded by the same limit), another encoding is
 * UNIMPLEMENTED; no message, or a second one, is UNIMPLEMENTED; a client that resets the stream
 * cancels the child call; the status goes in trailers (`grpc-message` URI-encoded), or as a
 * trailers-only answer when no headers went out. The child's headers and trailers are relayed,
 * plus `teiplex-instance` (forward.ts).
 *
 * Failover (src/routing/failover.ts): a child call that ended UNAVAILABLE before the child sent
 * anything is made once more, with the same request bytes, on another serving replica the
 * Forwarder picks (the tried instance excluded), within the call's deadline and the retry budget;
 * `x-teiplex-failover` (`same-model`, `off`) is read here. The answer then names the replica that
 * answered in `teiplex-instance` and the first one in `teiplex-retried-from`.
 */
import { CallScope } from '../child/call-scope.js';
import type { Budget } from '../child/input-budget.js';
import { laneOf, PRIORITY_HEADER, type Lane } from '../child/lane.js';
import http2 from 'node:http2';
import { TLSSocket } from 'node:tls';
import zlib from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import type { ApiKeyGrant } from '../auth/api-keys.js';
import type { Auth } from '../auth/auth.js';
import { checkGrpcCall } from '../auth/grpc-auth.js';
import { quotaHeaders, quotaStateOf, type QuotaState, type QuotaTicket } from '../auth/quotas.js';
import { asksNoWait, NO_WAIT_HEADER, type ColdStartWaiter } from '../catalog/catalog.js';
import { copyCallHeaders, frame, statusObject, tooLargeStatus, type ChildCall, type ChildCallListener, type ChildStatus } from '../child/child-channel.js';
import { TeiplexError } from '../common/errors.js';
import { toGrpcStatus } from '../tei/grpc-status.js';
import type { CallGate } from './drain.js';
import { checkMessage, INSTANCE_HEADER, RETRIED_FROM_HEADER, requireTarget, timeoutError, type Forwarder, type Leg } from './forward.js';
import { FAILOVER_HEADER, parseFailoverMode, retryable, type FailoverMode } from '../routing/failover.js';
import type { Target } from '../routing/target.js';
import type { Instance } from '../supervisor/instance.js';
import { FORWARDED_METHODS, type ForwardedMethod } from './methods.js';
import { MUX_SERVICE } from './protos.js';
import { parseWrapper, type Wrapper } from './wrapper.js';

export interface UnaryFrontOptions {
  forwarder: Forwarder;
  /** grpc_max_message_size_mb in bytes: the largest request message taken. */
  maxMessageBytes: number;
  auth: Auth;
  /** A call that auth refused (metrics). */
  onReject(path: string, code: grpc.status): void;
  /** Every stream on the port (forwarded or grpc-js's) is counted, or refused during shutdown, here first. */
  gate?: CallGate;
}

type StreamListener = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => void;

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_PATH, HTTP_STATUS_OK, HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE, NGHTTP2_NO_ERROR } = http2.constants;

/** grpc-js's own reading of `grpc-timeout`. */
const DEADLINE = /(\d{1,8})\s*([HMSmun])/;
const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

const CONTENT_TYPE = 'application/grpc+proto';
const ENCODING_HEADERS = { 'grpc-accept-encoding': 'identity,deflate,gzip', 'grpc-encoding': 'identity' };
const EMPTY = Buffer.alloc(0);
const noop = (): void => undefined;

/** Put the unary front in front of `server`'s grpc-js handler (after bindAsync). */
export function attachUnaryFront(server: grpc.Server, o: UnaryFrontOptions): void {
  // grpc-js keeps its HTTP/2 servers in a private map; a version without it fails here, loudly.
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) throw new Error('the gRPC unary front cannot find the HTTP/2 servers of @grpc/grpc-js (an unsupported version)');
  const methods = new Map<string, ForwardedMethod>();
  for (const m of FORWARDED_METHODS.values()) if (m.kind === 'unary') methods.set(`/${MUX_SERVICE}/${m.name}`, m);
  for (const h2 of servers.keys() as Iterable<http2.Http2Server>) {
    const own = h2.listeners('stream');
    if (own.length !== 1) throw new Error(`the gRPC unary front expects one 'stream' listener of @grpc/grpc-js, found ${own.length}`);
    const grpcJs = own[0] as StreamListener;
    h2.removeListener('stream', grpcJs);
    h2.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, raw: string[]) => {
      const path = headers[HTTP2_HEADER_PATH] as string;
      if (o.gate?.refuse(path, stream) === true) return;
      const m = methods.get(path);
      if (m === undefined) grpcJs(stream, headers, flags, raw);
      else serve(o, m, stream, headers);
    });
  }
}

function serve(o: UnaryFrontOptions, m: ForwardedMethod, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
  stream.on('error', noop); // every error also ends in 'close', where it is handled
  const type = headers[HTTP2_HEADER_CONTENT_TYPE];
  if (typeof type !== 'string' || !type.startsWith('application/grpc')) {
    stream.respond({ [HTTP2_HEADER_STATUS]: HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE }, { endStream: true });
    return;
  }
  new UnaryCall(o, m, stream, headers);
}

function peerCertificate(stream: http2.ServerHttp2Stream) {
  const socket = stream.session?.socket;
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  const cert = socket.getPeerCertificate();
  return cert.raw ? cert : undefined;
}

/** The request's message is read; then `opening` the target; then `calling` the child; `over` once the status is out or the client has gone. */
type Phase = 'reading' | 'opening' | 'calling' | 'over';

/** One unary call; see the file comment. */
class UnaryCall implements ChildCallListener {
  private readonly started = performance.now();
  private phase: Phase = 'reading';
  private readonly chunks: Buffer[] = [];
  private received = 0;
  /** The request message's length from its prefix; -1 until 5 bytes are in. */
  private length = -1;
  private deadline = Infinity;
  /** When grpc_request_timeout_secs runs out for the child call. */
  private ours = Infinity;
  private grant: ApiKeyGrant | undefined;
  /** The call's API key (any key), for its quota (src/auth/quotas.ts). */
  private keyName: string | undefined;
  /** The quota's admission, or the state a refusal saw: the `x-ratelimit-*` headers. */
  private ticket: QuotaTicket | undefined;
  private quotaRefused: QuotaState | undefined;
  private leg: Leg | undefined;
  private child: ChildCall | undefined;
  private childHeaders: http2.IncomingHttpHeaders | undefined;
  private answer: Buffer | undefined;
  /** What failover needs: the target, the caller's choice, the request bytes, the instances tried. */
  private target: Target | undefined;
  private mode: FailoverMode = 'auto';
  private request: Buffer = EMPTY;
  private readonly tried: Instance[] = [];
  /** A cold start's waiter: aborted when the client goes away. */
  private abort: AbortController | undefined;
  /** The client's deadline until the child call starts (which has its own). */
  private timer: NodeJS.Timeout | undefined;
  /** The call's priority lane, and the child's input window it holds a share of while calling. */
  private lane: Lane = 'interactive';
  private held: Budget | undefined;

  constructor(
    private readonly o: UnaryFrontOptions,
    private readonly m: ForwardedMethod,
    private readonly stream: http2.ServerHttp2Stream,
    private readonly headers: http2.IncomingHttpHeaders,
  ) {
    stream.on('close', () => this.onClose());
    const timeout = headers['grpc-timeout'];
    if (timeout !== undefined) {
      const match = DEADLINE.exec(String(timeout));
      if (match === null) {
        this.end(statusObject(grpc.status.INTERNAL, `Invalid grpc-timeout value "${timeout}"`));
        return;
      }
      const ms = (Number(match[1]) * UNIT_MS[match[2]]) | 0;
      this.deadline = Date.now() + ms;
      // Until the child call takes over the deadline: a request still arriving, a cold start.
      this.timer = setTimeout(() => {
        this.abort?.abort();
        this.end(statusObject(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded'));
      }, ms);
    }
    if (o.auth.perCall) {
      try {
        const authorization = headers.authorization;
        const grant = checkGrpcCall(o.auth, authorization === undefined ? [] : [authorization], () => peerCertificate(stream));
        if (grant?.restricted === true || grant?.priority !== undefined) this.grant = grant;
        this.keyName = grant?.name;
      } catch (err) {
        const s = toGrpcStatus(err);
        o.onReject(headers[HTTP2_HEADER_PATH] as string, s.code);
        this.end(s);
        return;
      }
    }
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('end', () => this.onEnd());
  }

  private onData(chunk: Buffer): void {
    if (this.phase !== 'reading') return;
    this.chunks.push(chunk);
    this.received += chunk.length;
    if (this.length < 0) {
      if (this.received < 5) return;
      // The message's length, read once (its 5-byte prefix may span chunks).
      const head = this.chunks[0].length >= 5 ? this.chunks[0] : Buffer.concat(this.chunks, this.received);
      this.length = head.readUInt32BE(1);
      if (this.length > this.o.maxMessageBytes) {
        this.end(tooLargeStatus(`Received message larger than max (${this.length} vs ${this.o.maxMessageBytes})`));
        return;
      }
    }
    if (this.received > 5 + this.length) this.end(statusObject(grpc.status.UNIMPLEMENTED, `Received a second request message for unary method ${this.path}`));
  }

  private get path(): string {
    return `/${MUX_SERVICE}/${this.m.name}`;
  }

  private onEnd(): void {
    if (this.phase !== 'reading') return;
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.received);
    this.chunks.length = 0;
    const length = this.length;
    if (length < 0 || all.length < 5 + length) {
      this.end(statusObject(grpc.status.UNIMPLEMENTED, `Received no request message for unary method ${this.path}`));
      return;
    }
    const message = all.subarray(5, 5 + length);
    if (all[0] === 0) {
      this.handle(message);
      return;
    }
    const encoding = String(this.headers['grpc-encoding'] ?? 'identity');
    const inflate = encoding === 'gzip' ? zlib.gunzip : encoding === 'deflate' ? zlib.inflate : undefined;
    if (inflate === undefined) {
      this.end(statusObject(grpc.status.UNIMPLEMENTED, `Received message compressed with unsupported encoding "${encoding}"`));
      return;
    }
    inflate(message, { maxOutputLength: this.o.maxMessageBytes }, (err, plain) => {
      if (this.phase !== 'reading') return;
      if (err === null) this.handle(plain);
      else if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        this.end(tooLargeStatus(`Received message that decompresses to a size larger than ${this.o.maxMessageBytes}`));
      } else this.end(statusObject(grpc.status.INTERNAL, 'Failed to decompress message'));
    });
  }

  /** The request message is in: open its target. */
  private handle(message: Buffer): void {
    const f = this.o.forwarder;
    const w = parseWrapper(message);
    let opened: Leg | Promise<Leg>;
    try {
      checkMessage(this.m, w, '');
      this.mode = parseFailoverMode(this.headers[FAILOVER_HEADER]);
      this.lane = laneOf(this.headers[PRIORITY_HEADER], this.grant?.priority ?? 'interactive');
      this.target = requireTarget(w, '');
      // Quota: counted against the name the target gives (src/auth/quotas.ts); tokens from the child's x-compute-tokens.
      if (this.keyName !== undefined) this.ticket = this.o.auth.quotas.admit(this.keyName, [String(this.target.value)]);
      opened = f.open(this.target, asksNoWait(this.headers[NO_WAIT_HEADER]), this.grant, () => this.waiter(w));
    } catch (err) {
      this.refuse(err);
      return;
    }
    if (!(opened instanceof Promise)) {
      this.run(opened, w);
      return;
    }
    this.phase = 'opening';
    opened.then(
      (leg) => this.run(leg, w),
      (err) => this.refuse(err),
    );
  }

  private waiter(w: Wrapper): ColdStartWaiter {
    this.abort = new AbortController();
    return { bytes: w.request?.length ?? 0, signal: this.abort.signal };
  }

  /** A refusal of the multiplexer's own (bad message, target, cold start). */
  private refuse(err: unknown): void {
    this.quotaRefused = quotaStateOf(err);
    const s = toGrpcStatus(err);
    this.o.forwarder.close(this.m.name, undefined, s.code, this.started);
    this.end(s);
  }

  /**
   * The target is open: take one input of the child's window in the call's lane (at once when it
   * has room, else wait in line until the deadline or the client goes away), then call the child.
   */
  private run(leg: Leg, w: Wrapper): void {
    if (this.phase === 'over') {
      if (this.timer !== undefined) clearTimeout(this.timer);
      this.o.forwarder.close(this.m.name, leg, grpc.status.CANCELLED, this.started);
      return;
    }
    const f = this.o.forwarder;
    const window = leg.client.known.windowNow(f.timeoutMs);
    if (window === undefined || window.tryAcquire(1, this.lane)) {
      this.held = window;
      this.call(leg, w);
      return;
    }
    this.phase = 'opening';
    this.abort ??= new AbortController();
    const ours = Date.now() + f.timeoutMs;
    const scope = new CallScope(Math.min(this.deadline, ours), () => (this.deadline <= ours ? new TeiplexError('REQUEST_TIMEOUT', 'Deadline exceeded') : timeoutError(leg, f.timeoutMs)), this.abort.signal, this.lane);
    window.acquire(1, scope, this.lane).then(
      () => {
        scope.finish();
        if (this.phase === 'over') {
          window.release(1, this.lane);
          f.close(this.m.name, leg, grpc.status.CANCELLED, this.started);
          return;
        }
        this.held = window;
        this.call(leg, w);
      },
      (err: unknown) => {
        scope.finish();
        const st = toGrpcStatus(err);
        f.close(this.m.name, leg, this.phase === 'over' ? grpc.status.CANCELLED : st.code, this.started);
        this.end(st);
      },
    );
  }

  /** Give back the window's share (once). */
  private releaseWindow(): void {
    this.held?.release(1, this.lane);
    this.held = undefined;
  }

  private call(leg: Leg, w: Wrapper): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.phase = 'calling';
    this.leg = leg;
    this.ours = Date.now() + this.o.forwarder.timeoutMs;
    this.request = w.request ?? EMPTY;
    this.child = leg.channel.call(this.m.childPath, Math.min(this.deadline, this.ours), this);
    this.child.end(this.request);
  }

  /** After a retryable failure: the same request on another replica, if failover allows; false: it does not. */
  private retry(s: ChildStatus): boolean {
    if (this.phase !== 'calling' || this.target === undefined || !retryable(s)) return false;
    const deadline = Math.min(this.deadline, this.ours);
    if (Date.now() >= deadline) return false;
    const f = this.o.forwarder;
    const failed = this.leg!;
    this.tried.push(failed.instance);
    const next = f.retry(this.target, this.grant, this.mode, this.tried);
    if (next === undefined) return false;
    f.abandon(failed, true);
    this.leg = next;
    this.childHeaders = undefined;
    this.answer = undefined;
    this.child = next.channel.call(this.m.childPath, deadline, this);
    this.child.end(this.request);
    return true;
  }

  onHeaders(): void {
    // Never called: onRawHeaders takes the headers.
  }

  onRawHeaders(headers: http2.IncomingHttpHeaders): void {
    this.childHeaders = headers;
  }

  onMessage(msg: Buffer): void {
    this.answer ??= msg;
  }

  onStatus(s: ChildStatus): void {
    // A retry on another replica (failover) goes without a window's share.
    this.releaseWindow();
    if (s.code !== grpc.status.OK && this.retry(s)) return;
    const leg = this.leg!;
    const f = this.o.forwarder;
    let out = s;
    if (s.code === grpc.status.OK) {
      if (this.answer === undefined) out = toGrpcStatus(new TeiplexError('BACKEND', `instance '${leg.instance.name}' answered a unary call without a message`));
    } else if (s.code === grpc.status.DEADLINE_EXCEEDED && this.deadline > this.ours) {
      // Our grpc_request_timeout_secs ran out, not the client's deadline.
      out = toGrpcStatus(timeoutError(leg, f.timeoutMs));
    }
    f.close(this.m.name, leg, out.code, this.started);
    this.end(out, out.code === grpc.status.OK ? this.answer : undefined);
  }

  /** Send the status (with the answer when OK), unless the call is over. */
  private end(s: ChildStatus, answer?: Buffer): void {
    if (this.phase === 'over') return;
    this.phase = 'over';
    if (this.timer !== undefined) clearTimeout(this.timer);
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return;
    const instance = this.leg?.instance.name;
    const retriedFrom = this.leg?.retriedFrom;
    const trailers: http2.OutgoingHttpHeaders = {};
    // The child's own trailers as they came; a status of ours carries its metadata.
    if (s.trailers !== undefined) copyCallHeaders(s.trailers, trailers);
    else Object.assign(trailers, s.metadata.toHttp2Headers());
    if (instance !== undefined) trailers[INSTANCE_HEADER] = instance;
    if (retriedFrom !== undefined) trailers[RETRIED_FROM_HEADER] = retriedFrom;
    trailers['grpc-status'] = String(s.code);
    trailers['grpc-message'] = encodeURI(s.details);
    if (s.code === grpc.status.OK) this.ticket?.charge(Number(this.childHeaders?.['x-compute-tokens'] ?? 0));
    const quota = this.ticket?.state() ?? this.quotaRefused;
    if (answer === undefined && this.childHeaders === undefined) {
      // Trailers-only. A request still arriving is told to stop (RST_STREAM NO_ERROR after the
      // answer, RFC 9113 8.1): its stream is not held open for a client that never ends it.
      trailers[HTTP2_HEADER_STATUS] = HTTP_STATUS_OK;
      trailers[HTTP2_HEADER_CONTENT_TYPE] = CONTENT_TYPE;
      if (quota !== undefined) for (const [k, v] of quotaHeaders(quota)) trailers[k] = v;
      stream.respond(trailers, { endStream: true });
      if (stream.readableEnded) return;
      stream.resume();
      stream.close(NGHTTP2_NO_ERROR);
      return;
    }
    const headers: http2.OutgoingHttpHeaders = { [HTTP2_HEADER_STATUS]: HTTP_STATUS_OK, [HTTP2_HEADER_CONTENT_TYPE]: CONTENT_TYPE, ...ENCODING_HEADERS };
    if (this.childHeaders !== undefined) copyCallHeaders(this.childHeaders, headers);
    if (instance !== undefined) headers[INSTANCE_HEADER] = instance;
    if (retriedFrom !== undefined) headers[RETRIED_FROM_HEADER] = retriedFrom;
    if (quota !== undefined) for (const [k, v] of quotaHeaders(quota)) headers[k] = v;
    stream.respond(headers, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers(trailers));
    stream.end(answer === undefined ? undefined : frame(answer));
  }

  /** The stream closed: after the status, or the client went away first (a cancel). */
  private onClose(): void {
    if (this.phase === 'calling') {
      // The child call reports CANCELLED at once (onStatus closes the call).
      this.child!.cancel();
      return;
    }
    // opening: the open closes the call when it settles; reading: nothing began.
    this.phase = 'over';
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.abort?.abort();
  }
}
