/**
 * Forwarding a call to a child, bytes in and bytes out: the inner tei.v1 request (sliced out of
 * the wrapper by wrapper.ts) goes to the child as it is (child-channel.ts), and the child's
 * response bytes go back to the client as they are (an identity serializer on the server side),
 * so the multiplexer never decodes or re-encodes a tei.v1 message.
 *
 * - Unary (served by unary-front.ts on node:http2, before grpc-js): one child call with deadline
 *   min(client's deadline, now + grpc_request_timeout_secs).
 * - Streams (bidirectional, and RerankStream's client stream): the first message picks the
 *   instance and opens the child stream; later messages may repeat the same target or omit it,
 *   another target fails the stream with INVALID_ARGUMENT. Flow control is end to end (a side
 *   that cannot take more pauses the other). The timeout bounds the wait for an owed answer: the
 *   stream fails with DEADLINE_EXCEEDED when the child owes answers (bidi) or the final answer
 *   (client stream) and sends none for grpc_request_timeout_secs; a client's own deadline bounds
 *   the whole stream.
 * - The child's status code, message and trailers pass through unchanged (a dead child's
 *   connection drop is UNAVAILABLE); its response headers (TEI's x-compute-* timings) too, plus
 *   `teiplex-instance` naming the instance that served the call. A client cancel cancels the
 *   child call.
 * - Streams are not retried on another replica (failover, src/routing/failover.ts, is for unary
 *   and Arrow calls): when the child goes away (UNAVAILABLE from the transport, not a status the
 *   child sent), the stream fails UNAVAILABLE naming the first message not answered, with the
 *   trailer `teiplex-first-unanswered: <n>`, so a client can open a new stream and resume there.
 */
import * as grpc from '@grpc/grpc-js';
import type { ApiKeyGrant } from '../auth/api-keys.js';
import { grantOf } from '../auth/grpc-auth.js';
import { asksNoWait, NO_WAIT_HEADER, type ColdStartWaiter } from '../catalog/catalog.js';
import { TeiplexError } from '../common/errors.js';
import { toServiceError } from '../tei/grpc-status.js';
import type { Instance } from '../supervisor/instance.js';
import type { ChildCall, ChildChannel, ChildStatus } from '../child/child-channel.js';
import type { ChildClient } from '../child/child-client.js';
import type { ForwardedMethod } from './methods.js';
import { describeTarget, sameTarget, type Target } from '../routing/target.js';
import type { FailoverMode, Retry } from '../routing/failover.js';
import type { Wrapper } from './wrapper.js';

/** Identity codec: messages stay the bytes they are on the wire. */
export const passthrough = (b: Buffer): Buffer => b;

/** Response header naming the instance that served the call. */
export const INSTANCE_HEADER = 'teiplex-instance';
export { RETRIED_FROM_HEADER } from '../routing/failover.js';
const EMPTY = Buffer.alloc(0);

/** One call's hop to an instance. */
export interface Leg {
  readonly instance: Instance;
  readonly channel: ChildChannel;
  /** The client to the same child over the same channel (the Arrow RPCs). */
  readonly client: ChildClient;
  /** A retry's leg (failover): the instance the call went to first, and the budget's slot it holds. */
  readonly retriedFrom?: string;
  readonly retry?: Retry;
}

/** What forwarding needs around it (service.ts). */
export interface Forwarder {
  readonly timeoutMs: number;
  /**
   * Resolve the target, decide what `grant` (the call's restricted API key, `grantOf` the request
   * message) may use of it, and count the call in flight on the instance chosen; throws
   * TeiplexError. A promise when the target is an on-demand model that must be started first (a
   * cold start, only after the decision). `noWait`: the caller asked not to wait for one
   * (`x-teiplex-no-wait`); `waiter` is called only for a cold start.
   */
  open(target: Target, noWait: boolean, grant: ApiKeyGrant | undefined, waiter?: () => ColdStartWaiter): Leg | Promise<Leg>;
  /** The call is over: no longer in flight; metrics. `leg` undefined: it never reached an instance. */
  close(method: string, leg: Leg | undefined, code: grpc.status, startedMs: number): void;
  /**
   * After a retryable failure (src/routing/failover.ts) of a call on the last of `tried`: a leg
   * on another serving replica, counted in flight and holding a slot of the retry budget, or
   * undefined (the target may not move under `mode`, no other replica, the budget refuses).
   * The caller then `abandon`s the failed leg.
   */
  retry(target: Target, grant: ApiKeyGrant | undefined, mode: FailoverMode, tried: readonly Instance[]): Leg | undefined;
  /** A leg given up (`failed`: its call failed and is retried elsewhere): no longer in flight, not counted as a finished call. */
  abandon(leg: Leg, failed?: boolean): void;
}

/** The child's headers or trailers (child-channel.ts has left out the transport's keys), or new metadata, naming the instance. */
export function relayMetadata(md: grpc.Metadata | undefined, instance: string): grpc.Metadata {
  const out = md ?? new grpc.Metadata();
  out.set(INSTANCE_HEADER, instance);
  return out;
}

export function timeoutError(leg: Leg, timeoutMs: number): TeiplexError {
  return new TeiplexError('REQUEST_TIMEOUT', `instance '${leg.instance.name}' did not answer within grpc_request_timeout_secs (${timeoutMs / 1000} s)`);
}

/** The child's status as the client's: code, message and trailers (its teiplex-error-code included) unchanged: the passthrough decodes nothing. */
function childError(err: grpc.StatusObject, leg: Leg): grpc.ServerErrorResponse {
  return Object.assign(new Error(err.details), { code: err.code, details: err.details, metadata: relayMetadata(err.metadata, leg.instance.name) });
}

/** Trailer of a stream whose child went away: the 1-based position of the first client message not answered. */
export const FIRST_UNANSWERED_HEADER = 'teiplex-first-unanswered';

/** The status of a stream whose child went away after answering `answered` messages (see the file comment). */
export function wentAway(s: grpc.StatusObject, leg: Leg, answered: number): grpc.ServerErrorResponse {
  const next = answered + 1;
  const details =
    answered === 0
      ? `instance '${leg.instance.name}' went away before answering message 1: resume from it (${s.details})`
      : `instance '${leg.instance.name}' went away; messages 1..${answered} were answered, message ${next} and later were not: resume from it (${s.details})`;
  const md = relayMetadata(undefined, leg.instance.name);
  md.set(FIRST_UNANSWERED_HEADER, String(next));
  return Object.assign(new Error(details), { code: grpc.status.UNAVAILABLE, details, metadata: md });
}

/** A call's deadline as epoch ms (Infinity: none). */
export function deadlineMs(d: grpc.Deadline): number {
  return d instanceof Date ? d.getTime() : d;
}

/** Check a message's own fields (not yet its target's meaning); throws INVALID_ARGUMENT. */
export function checkMessage(m: ForwardedMethod, w: Wrapper, where: string): void {
  if (w.error !== undefined) throw new TeiplexError('BAD_REQUEST', `${where}${w.error}`);
  if (w.request === undefined && !m.requestOptional) throw new TeiplexError('BAD_REQUEST', `${where}'request' is required (the tei.v1 request to forward)`);
}

export function requireTarget(w: Wrapper, where: string): Target {
  if (w.target === undefined) throw new TeiplexError('BAD_REQUEST', `${where}'target' is required: set one of instance_name, model_id or instance_index`);
  return w.target;
}

/**
 * What a call holds while it waits for a cold start (`bytes`, against cold_start_queue_mb) and
 * its cancellation: a client that goes away leaves the queue.
 */
export function callWaiter(call: { readonly cancelled: boolean; on(event: 'cancelled', listener: () => void): unknown }, bytes: number): ColdStartWaiter {
  const ac = new AbortController();
  if (call.cancelled) ac.abort();
  else call.on('cancelled', () => ac.abort());
  return { bytes, signal: ac.signal };
}

/** Does the call's metadata ask not to wait for a cold start? */
export function noWaitOf(md: grpc.Metadata): boolean {
  return asksNoWait(md.get(NO_WAIT_HEADER)[0]);
}

type ServerStream = grpc.ServerDuplexStream<Wrapper, Buffer> | grpc.ServerReadableStream<Wrapper, Buffer>;

/** One forwarded stream; see the file comment. */
class StreamRelay {
  private readonly started = performance.now();
  private leg: Leg | undefined;
  private target: Target | undefined;
  private child: ChildCall | undefined;
  private done = false;
  /** Messages received from the client. */
  private messages = 0;
  /** Answers relayed to the client (bidi): the first unanswered message is the next one. */
  private answered = 0;
  /** Answers the child owes (bidi: sent - received; client stream: 1 after the end). */
  private owed = 0;
  private timer: NodeJS.Timeout | undefined;
  /** The client is not taking answers: the child is paused and the timeout does not run. */
  private blockedOnClient = false;
  private waitingForChild = false;
  private childStatus: grpc.StatusObject | undefined;
  /** Client stream: the child's one answer. */
  private answer: Buffer | undefined;
  /** The target's model is being started: the first message waits here, the client is paused. */
  private opening = false;

  constructor(
    private readonly m: ForwardedMethod,
    private readonly f: Forwarder,
    private readonly call: ServerStream,
    private readonly callback?: grpc.sendUnaryData<Buffer>,
  ) {
    call.on('data', (w: Wrapper) => this.onMessage(w));
    call.on('end', () => this.onClientEnd());
    call.on('cancelled', () => this.onCancelled());
  }

  private get bidi(): boolean {
    return this.callback === undefined;
  }

  private onMessage(w: Wrapper): void {
    if (this.done) return;
    const n = ++this.messages;
    const where = `message ${n}: `;
    try {
      checkMessage(this.m, w, where);
      if (this.child === undefined) {
        const target = requireTarget(w, where);
        this.target = target;
        const opened = this.f.open(target, noWaitOf(this.call.metadata), grantOf(w), () => callWaiter(this.call, w.request?.length ?? 0));
        if (opened instanceof Promise) {
          // A cold start: no more messages until the instance is up, then this one goes first.
          this.opening = true;
          this.call.pause();
          opened.then(
            (leg) => {
              this.opening = false;
              if (this.done) {
                this.f.close(this.m.name, leg, grpc.status.CANCELLED, this.started);
                return;
              }
              this.leg = leg;
              this.child = this.openChild(leg);
              this.send(w);
              this.call.resume();
            },
            (err) => {
              this.opening = false;
              if (this.done) this.f.close(this.m.name, undefined, grpc.status.CANCELLED, this.started);
              else this.fail(err);
            },
          );
          return;
        }
        this.leg = opened;
        this.child = this.openChild(this.leg);
      } else if (w.target !== undefined && !sameTarget(w.target, this.target!)) {
        throw new TeiplexError(
          'BAD_REQUEST',
          `${where}target ${describeTarget(w.target)} differs from this stream's target ${describeTarget(this.target!)} (set by its first message); a stream goes to one instance`,
        );
      }
    } catch (err) {
      this.fail(err);
      return;
    }
    this.send(w);
  }

  /** Relay one client message to the child. */
  private send(w: Wrapper): void {
    if (this.childStatus !== undefined || this.done) return; // the child has ended the call
    const child = this.child!;
    if (this.bidi && this.owed++ === 0) this.armTimer();
    if (!child.write(w.request ?? EMPTY) && !this.waitingForChild) {
      this.waitingForChild = true;
      this.call.pause();
      child.onDrain(() => {
        this.waitingForChild = false;
        if (!this.done) this.call.resume();
      });
    }
  }

  private openChild(leg: Leg): ChildCall {
    // The client's own deadline bounds the whole stream; ours bounds each wait for an answer.
    return leg.channel.call(this.m.childPath, deadlineMs(this.call.getDeadline()), {
      onHeaders: (md) => {
        if (!this.done) this.call.sendMetadata(relayMetadata(md, leg.instance.name));
      },
      onMessage: (msg) => (this.bidi ? this.onChildMessage(msg) : (this.answer ??= msg)),
      onStatus: (s) => this.onChildStatus(s),
    });
  }

  private onChildMessage(msg: Buffer): void {
    if (this.done) return;
    this.answered++;
    if (this.owed > 0) this.owed--;
    if (this.owed > 0) this.timer?.refresh();
    else this.clearTimer();
    const call = this.call as grpc.ServerDuplexStream<Wrapper, Buffer>;
    if (!call.write(msg) && !this.blockedOnClient) {
      this.blockedOnClient = true;
      this.clearTimer();
      const child = this.child!;
      child.pause();
      call.once('drain', () => {
        this.blockedOnClient = false;
        if (this.done) return;
        child.resume();
        if (this.owed > 0) this.armTimer();
      });
    }
  }

  /** The child's status: it ends the client's call (its answers have all been relayed). */
  private onChildStatus(s: grpc.StatusObject): void {
    this.childStatus = s;
    if (this.done) return;
    this.done = true;
    this.clearTimer();
    const leg = this.leg!;
    let e: grpc.ServerErrorResponse | undefined;
    if (s.code === grpc.status.UNAVAILABLE && (s as ChildStatus).trailers === undefined) e = wentAway(s, leg, this.answered);
    else if (s.code !== grpc.status.OK) e = childError(s, leg);
    else if (!this.bidi && this.answer === undefined) e = toServiceError(new TeiplexError('BACKEND', `instance '${leg.instance.name}' ended the call without an answer`));
    this.f.close(this.m.name, leg, e?.code ?? grpc.status.OK, this.started);
    const trailers = relayMetadata(s.metadata, leg.instance.name);
    if (this.bidi) {
      const call = this.call as grpc.ServerDuplexStream<Wrapper, Buffer>;
      if (e === undefined) call.end(trailers);
      else call.emit('error', e);
    } else if (e === undefined) {
      this.callback!(null, this.answer, trailers);
    } else {
      this.call.pause();
      this.callback!(e);
    }
  }

  private onClientEnd(): void {
    if (this.done) return;
    if (this.child === undefined) {
      if (this.bidi) {
        // No message, nothing owed: an empty exchange.
        this.done = true;
        this.f.close(this.m.name, undefined, grpc.status.OK, this.started);
        (this.call as grpc.ServerDuplexStream<Wrapper, Buffer>).end();
      } else {
        this.fail(new TeiplexError('BAD_REQUEST', `the stream carried no message: its first message must set 'target' and 'request'`));
      }
      return;
    }
    if (this.childStatus !== undefined) return;
    this.child.end();
    if (!this.bidi) {
      this.owed = 1;
      this.armTimer();
    }
  }

  private onCancelled(): void {
    if (this.done) return;
    this.done = true;
    this.clearTimer();
    this.child?.cancel();
    // A pending cold start closes its own leg when it resolves.
    if (!this.opening) this.f.close(this.m.name, this.leg, grpc.status.CANCELLED, this.started);
  }

  /** End the call with a status of the multiplexer's own. */
  private fail(err: unknown): void {
    if (this.done) return;
    this.done = true;
    this.clearTimer();
    this.child?.cancel();
    const e = toServiceError(err);
    this.f.close(this.m.name, this.leg, e.code!, this.started);
    if (this.bidi) {
      this.call.emit('error', e);
    } else {
      this.call.pause();
      this.callback!(e);
    }
  }

  private armTimer(): void {
    if (this.blockedOnClient || this.done) return;
    if (this.timer !== undefined) this.timer.refresh();
    else this.timer = setTimeout(() => this.fail(timeoutError(this.leg!, this.f.timeoutMs)), this.f.timeoutMs);
  }

  private clearTimer(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

export function forwardBidi(m: ForwardedMethod, f: Forwarder): grpc.handleBidiStreamingCall<Wrapper, Buffer> {
  return (call) => {
    new StreamRelay(m, f, call);
  };
}

export function forwardClientStream(m: ForwardedMethod, f: Forwarder): grpc.handleClientStreamingCall<Wrapper, Buffer> {
  return (call, callback) => {
    new StreamRelay(m, f, call, callback);
  };
}
