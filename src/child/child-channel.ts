/**
 * A gRPC client channel to one child, made for forwarding: one HTTP/2 connection (node:http2),
 * messages as bytes. It does what the forwarding path needs and nothing more, which costs the
 * multiplexer about a third less CPU per call than @grpc/grpc-js's client stack (interceptors,
 * resolver, retries, load balancing, per-call metadata objects) on a tiny model at concurrency 32.
 *
 * - Framing: gRPC's length-prefixed messages, uncompressed (no grpc-accept-encoding is offered,
 *   so a child answers uncompressed; a compressed answer fails the call with INTERNAL).
 * - Deadlines: `grpc-timeout` goes to the child, and a local timer cancels the stream
 *   (RST_STREAM CANCEL) and reports DEADLINE_EXCEEDED.
 * - Message size: an answer over the limit cancels the call with RESOURCE_EXHAUSTED. A request
 *   over the limit, or over the child's own limit where it is known (child-message-limit.ts),
 *   is not sent: the call ends RESOURCE_EXHAUSTED naming the limit. These refusals carry the
 *   `teiplex-error-code` trailer PAYLOAD_TOO_LARGE (never mistaken for the child's overload).
 * - Status: from the trailers (or a trailers-only answer), message percent-decoded, every other
 *   trailer kept as metadata; a stream closed without one is mapped as grpc-js maps it (a dropped
 *   connection or a refused stream -> UNAVAILABLE, an HTTP error status -> its gRPC mapping).
 * - Connection: made on first use and again after it closes or the child sends GOAWAY (calls in
 *   flight finish on the old one); keepalive pings while calls are in flight, and a ping not
 *   acknowledged within the timeout closes the connection (its calls end UNAVAILABLE).
 * - Calls in flight: counted across its connections; `whenIdle` tells a stop (draining) when
 *   they are done, so a child is signalled only after its last call answered, or a bound passed.
 */
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { ERROR_CODE_KEY } from '../tei/grpc-status.js';
import type { ChildMessageLimit } from './child-message-limit.js';

export interface ChildChannelSettings {
  maxMessageBytes: number;
  /** The child's own limit on messages it receives, when known: larger ones are not sent. */
  childLimit?: ChildMessageLimit;
  keepaliveMs: number;
  keepaliveTimeoutMs: number;
}

/**
 * What a call reports, in this order: headers (unless trailers-only), messages, one status. A
 * listener with `onRawHeaders` gets the headers as they came instead of as metadata (a relay
 * copies them with `copyCallHeaders`); a status from the child's trailers carries them as
 * `trailers` too, and makes its `metadata` only when it is read.
 */
export interface ChildCallListener {
  onHeaders(md: grpc.Metadata): void;
  onRawHeaders?(headers: http2.IncomingHttpHeaders): void;
  onMessage(msg: Buffer): void;
  onStatus(status: ChildStatus): void;
}

/**
 * A call's status; `trailers`: the child's trailers (or trailers-only headers) when the status is
 * the child's. `unanswered`: the call ended UNAVAILABLE before the child sent anything (no response
 * headers: the connection dropped or was refused, the stream was refused, the channel was closed),
 * so it may be made again on another replica (src/routing/failover.ts).
 */
export interface ChildStatus extends grpc.StatusObject {
  readonly trailers?: http2.IncomingHttpHeaders;
  readonly unanswered?: boolean;
}

/** `s`, marked as ended before the child answered anything. */
function unansweredStatus(s: grpc.StatusObject): ChildStatus {
  return Object.assign(s, { unanswered: true });
}

/** The child's status from its trailers: metadata made on first read. */
class TrailerStatus implements ChildStatus {
  private md: grpc.Metadata | undefined;
  constructor(
    readonly code: grpc.status,
    readonly details: string,
    readonly trailers: http2.IncomingHttpHeaders,
  ) {}

  get metadata(): grpc.Metadata {
    this.md ??= metadataOf(this.trailers);
    return this.md;
  }
}

/** Copy a child's headers or trailers onto `out`, leaving out pseudo-headers and the transport's keys (what metadata holds). */
export function copyCallHeaders(from: http2.IncomingHttpHeaders, out: http2.OutgoingHttpHeaders): void {
  for (const key in from) {
    if (key.charCodeAt(0) === 58 /* ':' */ || TRANSPORT_KEYS.has(key)) continue;
    out[key] = from[key];
  }
}

const {
  HTTP2_HEADER_METHOD,
  HTTP2_HEADER_PATH,
  HTTP2_HEADER_CONTENT_TYPE,
  HTTP2_HEADER_TE,
  HTTP2_HEADER_STATUS,
  NGHTTP2_CANCEL,
  NGHTTP2_NO_ERROR,
  NGHTTP2_REFUSED_STREAM,
  NGHTTP2_ENHANCE_YOUR_CALM,
} = http2.constants;

/** Our receive window per stream (the default 64 KiB throttles large answers). */
const STREAM_WINDOW = 1 << 20;

/** gRPC's `grpc-timeout` for a duration: at most 8 digits and a unit. */
export function grpcTimeout(ms: number): string {
  const n = Math.max(1, Math.ceil(ms));
  if (n < 1e8) return `${n}m`;
  if (n / 1000 < 1e8) return `${Math.ceil(n / 1000)}S`;
  return `${Math.min(99_999_999, Math.ceil(n / 3_600_000))}H`;
}

function decodeMessage(v: unknown): string {
  if (v === undefined) return '';
  const s = Array.isArray(v) ? v.join(',') : String(v);
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function httpStatusError(code: number): grpc.StatusObject {
  let mapped: grpc.status;
  switch (code) {
    case 400:
      mapped = grpc.status.INTERNAL;
      break;
    case 401:
      mapped = grpc.status.UNAUTHENTICATED;
      break;
    case 403:
      mapped = grpc.status.PERMISSION_DENIED;
      break;
    case 404:
      mapped = grpc.status.UNIMPLEMENTED;
      break;
    case 429:
    case 502:
    case 503:
    case 504:
      mapped = grpc.status.UNAVAILABLE;
      break;
    default:
      mapped = grpc.status.UNKNOWN;
  }
  return statusObject(mapped, `Received HTTP status code ${code}`);
}

/** Transport keys of a response's headers and trailers: not metadata of the call. */
const TRANSPORT_KEYS = new Set(['content-type', 'date', 'te', 'user-agent', 'grpc-encoding', 'grpc-accept-encoding', 'grpc-status', 'grpc-message']);

/** Response headers or trailers as metadata, without pseudo-headers and the transport's keys. */
function metadataOf(headers: http2.IncomingHttpHeaders): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const key of Object.keys(headers)) {
    if (key.charCodeAt(0) === 58 /* ':' */ || TRANSPORT_KEYS.has(key)) continue;
    const value = headers[key];
    const binary = key.endsWith('-bin');
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v === undefined) continue;
      try {
        // Repeated binary values arrive joined by commas (base64 has none).
        if (binary) for (const part of v.split(',')) md.add(key, Buffer.from(part.trim(), 'base64'));
        else md.add(key, v);
      } catch {
        // A key or value gRPC metadata cannot hold: not forwarded.
      }
    }
  }
  return md;
}

/** A gRPC status (its metadata empty unless given). */
export function statusObject(code: grpc.status, details: string, metadata = new grpc.Metadata()): grpc.StatusObject {
  return { code, details, metadata };
}

/** A size refusal made by the manager (not by a child): it names its code, so it is not read as the child's overload. */
export function tooLargeStatus(details: string): grpc.StatusObject {
  const md = new grpc.Metadata();
  md.set(ERROR_CODE_KEY, 'PAYLOAD_TOO_LARGE');
  return statusObject(grpc.status.RESOURCE_EXHAUSTED, details, md);
}

/** One call on a child channel. */
export interface ChildCall {
  /** Send one message; false: the stream's buffer is full, wait for `onDrain`. */
  write(msg: Buffer): boolean;
  /** Half-close, optionally with a last message (a unary call's only one). */
  end(msg?: Buffer): void;
  onDrain(fn: () => void): void;
  /** Stop (resume) reading answers: flow control pushes back on the child. */
  pause(): void;
  resume(): void;
  /** Cancel the call (RST_STREAM CANCEL); reports CANCELLED unless it has ended already. */
  cancel(details?: string): void;
}

/** A call that could not start: it reports `s` once the caller holds it. */
function failedCall(listener: ChildCallListener, s: ChildStatus): ChildCall {
  let done = false;
  const finish = (): void => {
    if (done) return;
    done = true;
    listener.onStatus(s);
  };
  queueMicrotask(finish);
  return { write: () => true, end: () => undefined, onDrain: () => undefined, pause: () => undefined, resume: () => undefined, cancel: finish };
}

class StreamCall implements ChildCall {
  private done = false;
  /** The child sent response headers (or a trailers-only answer): it heard the call. */
  private heard = false;
  private pendingStatus: ChildStatus | undefined;
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private timer: NodeJS.Timeout | undefined;
  /** A connection-level error the stream saw (not a RST_STREAM from the child). */
  private transportError: string | undefined;

  constructor(
    private readonly stream: http2.ClientHttp2Stream,
    private readonly listener: ChildCallListener,
    private readonly maxMessageBytes: number,
    private readonly tooLarge: (bytes: number) => grpc.StatusObject | undefined,
    deadlineMs: number,
    private readonly connection: () => { dropped: boolean; error?: string },
    private readonly onEnd: () => void,
  ) {
    if (Number.isFinite(deadlineMs)) {
      const left = deadlineMs - Date.now();
      if (left <= 0) {
        // Settle after the caller has its handle (it may still write to it).
        queueMicrotask(() => this.abort(statusObject(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded')));
      } else {
        this.timer = setTimeout(() => this.abort(statusObject(grpc.status.DEADLINE_EXCEEDED, `Deadline exceeded after ${(left / 1000).toFixed(3)}s`)), left);
      }
    }
    stream.on('response', (headers) => this.onResponse(headers));
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('trailers', (trailers) => this.onTrailers(trailers));
    stream.on('end', () => {
      if (this.pendingStatus !== undefined) this.finish(this.pendingStatus);
    });
    stream.on('close', () => this.onClose());
    // Errors end in 'close', where the status is decided.
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ERR_HTTP2_STREAM_ERROR') this.transportError ??= err.message;
    });
  }

  write(msg: Buffer): boolean {
    if (this.done) return true;
    const refused = this.tooLarge(msg.length);
    if (refused !== undefined) {
      this.abort(refused);
      return true;
    }
    return this.stream.write(frame(msg));
  }

  end(msg?: Buffer): void {
    if (this.done) return;
    if (msg === undefined) {
      this.stream.end();
      return;
    }
    const refused = this.tooLarge(msg.length);
    if (refused !== undefined) {
      this.abort(refused);
      return;
    }
    this.stream.end(frame(msg));
  }

  onDrain(fn: () => void): void {
    this.stream.once('drain', fn);
  }

  pause(): void {
    this.stream.pause();
  }

  resume(): void {
    this.stream.resume();
  }

  cancel(details = 'Cancelled on client'): void {
    this.abort(statusObject(grpc.status.CANCELLED, details));
  }

  private abort(s: grpc.StatusObject): void {
    if (this.done) return;
    if (!this.stream.destroyed) this.stream.close(NGHTTP2_CANCEL);
    this.finish(s);
  }

  private finish(s: ChildStatus): void {
    if (this.done) return;
    this.done = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.onEnd();
    this.listener.onStatus(!this.heard && s.code === grpc.status.UNAVAILABLE && s.trailers === undefined ? unansweredStatus(s) : s);
  }

  private onResponse(headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader): void {
    if (this.done) return;
    this.heard = true;
    const http = Number(headers[HTTP2_HEADER_STATUS]);
    if (headers['grpc-status'] !== undefined) {
      // Trailers-only: the status is in the headers.
      this.pendingStatus = new TrailerStatus(Number(headers['grpc-status']), decodeMessage(headers['grpc-message']), headers);
      return;
    }
    if (http !== 200) {
      this.abort(httpStatusError(http));
      return;
    }
    const encoding = headers['grpc-encoding'];
    if (encoding !== undefined && encoding !== 'identity') {
      this.abort(statusObject(grpc.status.INTERNAL, `the child answered with compression '${String(encoding)}', which was not offered`));
      return;
    }
    if (this.listener.onRawHeaders !== undefined) this.listener.onRawHeaders(headers);
    else this.listener.onHeaders(metadataOf(headers));
  }

  private onData(chunk: Buffer): void {
    if (this.done) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= 5) {
      const head = this.chunks[0].length >= 5 ? this.chunks[0] : this.coalesce();
      const compressed = head[0];
      const length = head.readUInt32BE(1);
      if (compressed !== 0) {
        this.abort(statusObject(grpc.status.INTERNAL, 'the child sent a compressed message, but no compression was offered'));
        return;
      }
      if (length > this.maxMessageBytes) {
        this.abort(tooLargeStatus(`Received message larger than max (${length} vs. ${this.maxMessageBytes})`));
        return;
      }
      if (this.buffered < 5 + length) return;
      this.listener.onMessage(this.take(5 + length).subarray(5));
      if (this.done) return;
    }
  }

  /** Join the buffered chunks into one (a frame header split across chunks). */
  private coalesce(): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.buffered);
    this.chunks.length = 0;
    this.chunks.push(all);
    return all;
  }

  /** Remove and return the first n buffered bytes. */
  private take(n: number): Buffer {
    let first = this.chunks[0];
    if (first.length < n) first = this.coalesce();
    this.buffered -= n;
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    this.chunks[0] = first.subarray(n);
    return first.subarray(0, n);
  }

  private onTrailers(trailers: http2.IncomingHttpHeaders): void {
    if (this.done) return;
    const code = trailers['grpc-status'];
    this.pendingStatus =
      code === undefined ? statusObject(grpc.status.UNKNOWN, 'the child sent trailers without grpc-status') : new TrailerStatus(Number(code), decodeMessage(trailers['grpc-message']), trailers);
    if (this.stream.readableEnded) this.finish(this.pendingStatus);
  }

  private onClose(): void {
    if (this.done) return;
    if (this.pendingStatus !== undefined) {
      if (this.buffered > 0) this.finish(statusObject(grpc.status.INTERNAL, 'the child ended the call inside a message'));
      else this.finish(this.pendingStatus);
      return;
    }
    const rst = this.stream.rstCode;
    const conn = this.connection();
    const dropped = (): string | undefined => (conn.dropped || conn.error !== undefined || this.transportError !== undefined ? (conn.error ?? this.transportError ?? 'connection closed') : undefined);
    if (rst === NGHTTP2_REFUSED_STREAM) this.finish(statusObject(grpc.status.UNAVAILABLE, 'Stream refused by server'));
    else if (rst === NGHTTP2_ENHANCE_YOUR_CALM) this.finish(statusObject(grpc.status.RESOURCE_EXHAUSTED, 'Bandwidth exhausted or memory limit exceeded'));
    else if (dropped() !== undefined) this.finish(statusObject(grpc.status.UNAVAILABLE, `Connection dropped: ${dropped()}`));
    else {
      // Node reports a dropped connection as a CANCEL on each stream, sometimes before the
      // session's own events: decide once those have had their turn.
      setImmediate(() => {
        const reason = dropped();
        if (reason !== undefined) this.finish(statusObject(grpc.status.UNAVAILABLE, `Connection dropped: ${reason}`));
        else if (rst === NGHTTP2_CANCEL) this.finish(statusObject(grpc.status.CANCELLED, 'Call cancelled by the child'));
        else if (rst === NGHTTP2_NO_ERROR || rst === undefined) this.finish(statusObject(grpc.status.INTERNAL, 'the child ended the call without a gRPC status'));
        else this.finish(statusObject(grpc.status.INTERNAL, `Received RST_STREAM with code ${rst}`));
      });
    }
  }
}

/** One gRPC length-prefixed message, uncompressed: 1 byte flag (0), 4 bytes big-endian length, the message. */
export function frame(msg: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + msg.length);
  out[0] = 0;
  out.writeUInt32BE(msg.length, 1);
  out.set(msg, 5);
  return out;
}

interface Connection {
  session: http2.ClientHttp2Session;
  dropped: boolean;
  error?: string;
  calls: number;
  keepalive: NodeJS.Timeout;
  pingTimer?: NodeJS.Timeout;
}

export class ChildChannel {
  private current: Connection | undefined;
  private readonly connections = new Set<Connection>();
  private closed = false;
  /** Calls started and not yet ended, across every connection (old ones after a GOAWAY too). */
  private calls = 0;
  /** Who waits for `calls` to reach 0 (whenIdle). */
  private readonly idleWaiters = new Set<() => void>();

  constructor(
    readonly port: number,
    private readonly settings: ChildChannelSettings,
  ) {}

  /** The largest message this channel sends: the manager's limit, or the child's if smaller. */
  get maxSendBytes(): number {
    const child = this.settings.childLimit?.bytes;
    return child !== undefined && child < this.settings.maxMessageBytes ? child : this.settings.maxMessageBytes;
  }

  /** Why a message of `bytes` is not sent, or undefined when it may be. */
  private readonly tooLarge = (bytes: number): grpc.StatusObject | undefined => {
    const child = this.settings.childLimit;
    if (child !== undefined && bytes > child.bytes && child.bytes < this.settings.maxMessageBytes) {
      return tooLargeStatus(
        `the message is ${bytes} bytes, more than the instance's child accepts (${child.bytes} bytes, ${child.source}); the multiplexer did not send it`,
      );
    }
    if (bytes > this.settings.maxMessageBytes) {
      return tooLargeStatus(`Sent message larger than max (${bytes} vs. ${this.settings.maxMessageBytes}; grpc_max_message_size_mb)`);
    }
    return undefined;
  };

  /**
   * Start a call to `path` (e.g. `/tei.v1.Embed/Embed`); `deadlineMs` is an epoch time or
   * Infinity. The listener hears of it in the order headers, messages, status.
   */
  call(path: string, deadlineMs: number, listener: ChildCallListener): ChildCall {
    const headers: http2.OutgoingHttpHeaders = {
      [HTTP2_HEADER_METHOD]: 'POST',
      [HTTP2_HEADER_PATH]: path,
      [HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
      [HTTP2_HEADER_TE]: 'trailers',
    };
    if (Number.isFinite(deadlineMs)) headers['grpc-timeout'] = grpcTimeout(deadlineMs - Date.now());
    let conn: Connection;
    let stream: http2.ClientHttp2Stream;
    try {
      if (this.closed) throw new Error('the channel is closed');
      conn = this.connection();
      stream = conn.session.request(headers);
    } catch (err) {
      return failedCall(listener, unansweredStatus(statusObject(grpc.status.UNAVAILABLE, `cannot reach the child on port ${this.port}: ${(err as Error).message}`)));
    }
    conn.calls++;
    this.calls++;
    return new StreamCall(stream, listener, this.settings.maxMessageBytes, this.tooLarge, deadlineMs, () => conn, () => {
      conn.calls--;
      this.callEnded();
    });
  }

  /** Calls in flight on this channel (a stop drains them before it signals the child). */
  get activeCalls(): number {
    return this.calls;
  }

  /** Resolves true once no call is in flight (at once when none is), false after `timeoutMs`. */
  whenIdle(timeoutMs: number): Promise<boolean> {
    if (this.calls === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const idle = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.idleWaiters.delete(idle);
        resolve(false);
      }, timeoutMs);
      this.idleWaiters.add(idle);
    });
  }

  private callEnded(): void {
    this.calls--;
    if (this.calls > 0) return;
    const waiters = [...this.idleWaiters];
    this.idleWaiters.clear();
    for (const w of waiters) w();
  }

  /** Close every connection (calls in flight on them end UNAVAILABLE). */
  close(): void {
    this.closed = true;
    for (const c of this.connections) this.drop(c, 'the channel was closed');
  }

  private connection(): Connection {
    const c = this.current;
    if (c !== undefined && !c.dropped && !c.session.closed && !c.session.destroyed) return c;
    return this.connect();
  }

  private connect(): Connection {
    const session = http2.connect(`http://127.0.0.1:${this.port}`, {
      settings: { enablePush: false, initialWindowSize: STREAM_WINDOW },
      // As grpc-js does for its servers: Node degrades badly at this cap, and flow control
      // already bounds what a connection buffers.
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
    });
    const conn: Connection = {
      session,
      dropped: false,
      calls: 0,
      keepalive: setInterval(() => this.ping(conn), this.settings.keepaliveMs).unref(),
    };
    session.on('error', (err: Error) => {
      conn.error ??= err.message;
    });
    session.on('goaway', () => {
      // No new calls on it; those in flight finish.
      if (this.current === conn) this.current = undefined;
    });
    session.on('close', () => this.drop(conn, conn.error ?? 'connection closed'));
    session.unref();
    this.connections.add(conn);
    this.current = conn;
    return conn;
  }

  private ping(conn: Connection): void {
    if (conn.dropped || conn.calls === 0 || conn.pingTimer !== undefined) return;
    conn.pingTimer = setTimeout(() => this.drop(conn, `keepalive ping not acknowledged within ${this.settings.keepaliveTimeoutMs} ms`), this.settings.keepaliveTimeoutMs).unref();
    let sent = false;
    try {
      sent = conn.session.ping((err) => {
        if (conn.pingTimer !== undefined) clearTimeout(conn.pingTimer);
        conn.pingTimer = undefined;
        if (err) this.drop(conn, `keepalive ping failed: ${err.message}`);
      });
    } catch {
      // Not connected yet, or closing: its own events settle it.
    }
    if (!sent) {
      clearTimeout(conn.pingTimer);
      conn.pingTimer = undefined;
    }
  }

  private drop(conn: Connection, reason: string): void {
    if (this.current === conn) this.current = undefined;
    if (conn.dropped) return;
    conn.dropped = true;
    conn.error ??= reason;
    clearInterval(conn.keepalive);
    if (conn.pingTimer !== undefined) clearTimeout(conn.pingTimer);
    this.connections.delete(conn);
    if (!conn.session.destroyed) conn.session.destroy();
  }
}
