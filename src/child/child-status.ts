/**
 * A child's non-OK status as the TeiplexError it means (src/tei/grpc-status.ts `fromGrpcStatus`:
 * the code a teiplex router names in its trailers, else the gRPC code's meaning; never the
 * message's wording). The raw status stays readable beside the error (`childStatusOf`), for the
 * few decisions made on the gRPC code itself: UNIMPLEMENTED (no Batch service), and whether a
 * status came from the child's service or from the transport.
 */
import type * as grpc from '@grpc/grpc-js';
import type { TeiplexError } from '../common/errors.js';
import { fromGrpcStatus } from '../tei/grpc-status.js';

const raw = new WeakMap<TeiplexError, grpc.StatusObject>();

/** The error a child's status means; `who` names the child ("instance 'x'"). */
export function childFailure(s: grpc.StatusObject, who: string): TeiplexError {
  const err = fromGrpcStatus(s, who);
  raw.set(err, s);
  return err;
}

/** The status a child answered with, when `err` is a child's failure (childFailure). */
export function childStatusOf(err: unknown): grpc.StatusObject | undefined {
  return typeof err === 'object' && err !== null ? raw.get(err as TeiplexError) : undefined;
}
