/**
 * A child's non-OK status as the TeiplexError it means (src/tei/grpc-status.ts `fromGrpcStatus`:
 * the code a teiplex router names in its trailers, else the gRPC code's meaning; never the
 * message's wording). The raw status stays readable beside the error (`childStatusOf`), for the
 * few decisions made on the gRPC code itself: UNIMPLEMENTED (no Batch service), whether a
 * status came from the child's service or from the transport, and whether the child went away
 * before answering anything (`unanswered`: failover may retry elsewhere).
 */
import type { TeiplexError } from '../common/errors.js';
import { fromGrpcStatus } from '../tei/grpc-status.js';
import type { ChildStatus } from './child-channel.js';

const raw = new WeakMap<TeiplexError, ChildStatus>();

/** The error a child's status means; `who` names the child ("instance 'x'"). */
export function childFailure(s: ChildStatus, who: string): TeiplexError {
  const err = fromGrpcStatus(s, who);
  raw.set(err, s);
  return err;
}

/** The status a child answered with, when `err` is a child's failure (childFailure). */
export function childStatusOf(err: unknown): ChildStatus | undefined {
  return typeof err === 'object' && err !== null ? raw.get(err as TeiplexError) : undefined;
}
