/**
 * Calls to a child over the multiplexer's channel (src/mux/child-channel.ts), for the data plane:
 * a unary call, or one bidirectional stream carrying several messages (tei.v1's *Stream methods
 * answer one message per request message, in order). A failure rejects with the TeiplexError the
 * child's status means (errors.ts).
 */
import * as grpc from '@grpc/grpc-js';
import type { ChildChannel } from '../../child/child-channel.js';
import type { ChildMethod } from './child-codec.js';
import { childError } from './errors.js';

export interface CallTarget {
  /** The instance's name, for messages. */
  readonly instance: string;
  readonly channel: ChildChannel;
  /** Epoch ms by which the child must have answered. */
  readonly deadlineMs: number;
  /** Aborted when the HTTP client has gone away: calls in progress are cancelled. */
  readonly signal?: AbortSignal;
}

/** A child call failed with this gRPC status (kept for callers that branch on it, e.g. UNIMPLEMENTED). */
export class ChildStatusError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(details);
  }
}

function run<Res>(t: CallTarget, path: string, decode: (b: Buffer) => Res, send: (call: ReturnType<ChildChannel['call']>) => void, expected: number): Promise<Res[]> {
  return new Promise<Res[]>((resolve, reject) => {
    if (t.signal?.aborted) {
      reject(new ChildStatusError(grpc.status.CANCELLED, 'the client went away'));
      return;
    }
    const answers: Res[] = [];
    let failure: unknown;
    const cancel = (): void => call.cancel('the client went away');
    t.signal?.addEventListener('abort', cancel, { once: true });
    const call = t.channel.call(path, t.deadlineMs, {
      onHeaders: () => undefined,
      onMessage: (msg) => {
        if (failure !== undefined) return;
        try {
          answers.push(decode(msg));
        } catch (err) {
          failure = err;
          call.cancel('undecodable answer');
        }
      },
      onStatus: (s) => {
        t.signal?.removeEventListener('abort', cancel);
        if (failure !== undefined) reject(new ChildStatusError(grpc.status.INTERNAL, `instance '${t.instance}' sent an answer that does not decode: ${(failure as Error).message}`));
        else if (s.code !== grpc.status.OK) reject(new ChildStatusError(s.code, s.details));
        else if (answers.length !== expected) reject(new ChildStatusError(grpc.status.INTERNAL, `instance '${t.instance}' answered ${answers.length} messages for ${expected}`));
        else resolve(answers);
      },
    });
    send(call);
  });
}

/** A rejection of a child call as the TeiplexError it means (ChildStatusError -> errors.ts). */
export function asCallError(t: Pick<CallTarget, 'instance'>, err: unknown): unknown {
  return err instanceof ChildStatusError ? childError(t.instance, err) : err;
}

/** One request, one answer; rejects with ChildStatusError. */
export async function unaryRaw<Req, Res>(t: CallTarget, m: ChildMethod<Req, Res>, req: Req): Promise<Res> {
  const msg = m.encode(req);
  const [answer] = await run(t, m.path, m.decode, (call) => call.end(msg), 1);
  return answer;
}

/** One bidirectional stream: one answer per request, in order; rejects with ChildStatusError. */
export function streamRaw<Req, Res>(t: CallTarget, m: ChildMethod<Req, Res>, reqs: readonly Req[]): Promise<Res[]> {
  const msgs = reqs.map((r) => m.encode(r));
  return run(t, m.path, m.decode, (call) => {
    for (const msg of msgs) call.write(msg);
    call.end();
  }, msgs.length);
}

/** unaryRaw with the child's status mapped to a TeiplexError. */
export async function unary<Req, Res>(t: CallTarget, m: ChildMethod<Req, Res>, req: Req): Promise<Res> {
  try {
    return await unaryRaw(t, m, req);
  } catch (err) {
    throw asCallError(t, err);
  }
}

/**
 * Several requests to a tei.v1 method with one input per message: a unary call for one, one
 * stream (its `*Stream` twin) for more; answers in request order.
 */
export async function many<Req, Res>(t: CallTarget, single: ChildMethod<Req, Res>, stream: ChildMethod<Req, Res>, reqs: readonly Req[]): Promise<Res[]> {
  try {
    if (reqs.length === 1) return [await unaryRaw(t, single, reqs[0])];
    return await streamRaw(t, stream, reqs);
  } catch (err) {
    throw asCallError(t, err);
  }
}
