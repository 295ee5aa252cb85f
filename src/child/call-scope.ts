/**
 * One caller's dealings with a child: every child call made for one front-end request (unary
 * calls, a fan-out stream, an Info or probe call) goes through a CallScope, which gives them the
 * request's deadline and cancels them all at once when the request fails, times out or its client
 * goes away (an AbortSignal). Waits that are not child calls (for the child's input budget,
 * between retries) end too.
 *
 * A child's non-OK status rejects with the TeiplexError it means (child-status.ts); an abort
 * rejects with the abort reason.
 */
import * as grpc from '@grpc/grpc-js';
import { TeiplexError } from '../common/errors.js';
import type { ChildCall, ChildCallListener, ChildChannel } from './child-channel.js';
import { childFailure } from './child-status.js';
import type { Lane } from './lane.js';

export class CallScope {
  private readonly calls = new Set<ChildCall>();
  private readonly abortHooks = new Set<(err: Error) => void>();
  private readonly timer: NodeJS.Timeout | undefined;
  private abortedWith: Error | undefined;
  private readonly unlisten: (() => void) | undefined;

  /**
   * @param deadlineMs epoch ms by which everything must be done (Infinity: none)
   * @param onDeadline the error the scope ends with when the deadline passes
   * @param signal aborted when the caller has gone away
   * @param lane the request's priority class: its child calls wait in that lane of the child's input window
   */
  constructor(
    readonly deadlineMs: number,
    onDeadline: () => Error = () => new TeiplexError('REQUEST_TIMEOUT', 'the child did not answer in time'),
    signal?: AbortSignal,
    readonly lane: Lane = 'interactive',
  ) {
    if (Number.isFinite(deadlineMs)) this.timer = setTimeout(() => this.abort(onDeadline()), Math.max(0, deadlineMs - Date.now()));
    if (signal !== undefined) {
      const gone = (): void => this.abort(new TeiplexError('CANCELLED', 'the client went away'));
      if (signal.aborted) gone();
      else {
        signal.addEventListener('abort', gone, { once: true });
        this.unlisten = () => signal.removeEventListener('abort', gone);
      }
    }
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

  /** The scope is over: stop the deadline timer and stop listening to the signal. */
  finish(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.unlisten?.();
  }

  /** Run `hook` if the scope is aborted; returns its unregistration. */
  onAbort(hook: (err: Error) => void): () => void {
    this.abortHooks.add(hook);
    return () => this.abortHooks.delete(hook);
  }

  /** `p`'s outcome, or the abort reason if the scope aborts first (`p` itself goes on). */
  wait<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.check();
      const off = this.onAbort(reject);
      p.then(
        (v) => {
          off();
          resolve(v);
        },
        (err: unknown) => {
          off();
          reject(err);
        },
      );
    });
  }

  /** Start a child call with this scope's deadline; it is cancelled if the scope aborts. */
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

  /** A unary child call: its one answer, or the child's failure (child-status.ts), or the abort reason. */
  unary(channel: ChildChannel, path: string, request: Buffer, who: string): Promise<Buffer> {
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
          else if (s.code !== grpc.status.OK) reject(childFailure(s, who));
          else if (answer === undefined) reject(new TeiplexError('BACKEND', `${who}: ${path} answered without a message`));
          else resolve(answer);
        },
      });
      call.end(request);
    });
  }

  /** Wait `ms`, or less if the scope aborts (then reject with the reason). */
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
