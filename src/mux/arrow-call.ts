/**
 * One Arrow RPC's dealings with its child: every child call it makes (unary Batch calls, a
 * fan-out stream, an Info or probe call) goes through an ArrowCall, which gives them the call's
 * deadline, and cancels them all at once when the call fails, times out or the client goes away.
 * Waits that are not child calls (for the child's input budget, between retries) end too.
 *
 * A child's non-OK status becomes a ChildStatusError carrying the status as it is (code, message,
 * trailers), so it can pass through to the client unchanged.
 */
import * as grpc from '@grpc/grpc-js';
import type { ChildCall, ChildCallListener, ChildChannel } from '../child/child-channel.js';

/** A child answered with this status. */
export class ChildStatusError extends Error {
  constructor(readonly status: grpc.StatusObject) {
    super(status.details);
    this.name = 'ChildStatusError';
  }
  get code(): grpc.status {
    return this.status.code;
  }
}

export class ArrowCall {
  private readonly calls = new Set<ChildCall>();
  private readonly abortHooks = new Set<(err: Error) => void>();
  private readonly timer: NodeJS.Timeout | undefined;
  private abortedWith: Error | undefined;

  /**
   * @param deadlineMs epoch ms by which everything must be done
   * @param onDeadline the error the call ends with when the deadline passes
   */
  constructor(
    readonly deadlineMs: number,
    onDeadline: () => Error,
  ) {
    if (Number.isFinite(deadlineMs)) this.timer = setTimeout(() => this.abort(onDeadline()), Math.max(0, deadlineMs - Date.now()));
  }

  get aborted(): Error | undefined {
    return this.abortedWith;
  }

  /** Throw the abort reason, if any. */
  check(): void {
    if (this.abortedWith !== undefined) throw this.abortedWith;
  }

  /** End everything in flight with `err` (the first reason sticks). */
  abort(err: Error): void {
    if (this.abortedWith !== undefined) return;
    this.abortedWith = err;
    this.finish();
    for (const c of [...this.calls]) c.cancel(err.message);
    for (const hook of [...this.abortHooks]) hook(err);
    this.abortHooks.clear();
  }

  /** The call is over: stop the deadline timer. */
  finish(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
  }

  /** Run `hook` if the call is aborted; returns its unregistration. */
  onAbort(hook: (err: Error) => void): () => void {
    this.abortHooks.add(hook);
    return () => this.abortHooks.delete(hook);
  }

  /** Start a child call with this call's deadline; it is cancelled if the call aborts. */
  open(channel: ChildChannel, path: string, listener: ChildCallListener): ChildCall {
    let call: ChildCall | undefined;
    let settled = false;
    call = channel.call(path, this.deadlineMs, {
      onHeaders: (md) => listener.onHeaders(md),
      onMessage: (msg) => listener.onMessage(msg),
      onStatus: (s) => {
        settled = true;
        if (call !== undefined) this.calls.delete(call);
        listener.onStatus(s);
      },
    });
    if (!settled) this.calls.add(call);
    if (this.abortedWith !== undefined) call.cancel(this.abortedWith.message);
    return call;
  }

  /** A unary child call: its one answer, or a ChildStatusError (or the abort reason). */
  unary(channel: ChildChannel, path: string, request: Buffer): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      this.check();
      let answer: Buffer | undefined;
      const call = this.open(channel, path, {
        onHeaders: () => undefined,
        onMessage: (msg) => {
          answer ??= msg;
        },
        onStatus: (s) => {
          if (this.abortedWith !== undefined) reject(this.abortedWith);
          else if (s.code !== grpc.status.OK) reject(new ChildStatusError(s));
          else if (answer === undefined) reject(new ChildStatusError({ code: grpc.status.INTERNAL, details: `${path} answered without a message`, metadata: s.metadata }));
          else resolve(answer);
        },
      });
      call.end(request);
    });
  }

  /** Wait `ms`, or less if the call aborts (then reject with the reason). */
  sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.check();
      const off = this.onAbort((err) => {
        clearTimeout(t);
        reject(err);
      });
      const t = setTimeout(() => {
        off();
        resolve();
      }, ms);
    });
  }
}
