/**
 * The multiplexer's service names, its service definition and the shapes of its own messages
 * (loaded by the one proto loader, src/tei/proto.ts: snake_case fields, 64-bit integers as
 * strings, enums as names, `optional` presence visible, `bytes` as Buffer).
 */
import * as grpc from '@grpc/grpc-js';
import { MUX_PROTO_FILE, muxPackageDefinition } from '../tei/proto.js';
import { TeiplexError } from '../common/errors.js';
import type { Target } from '../routing/target.js';

export const MUX_SERVICE = 'tei_multiplexer.v1.TeiMultiplexer';
export const HEALTH_SERVICE = 'grpc.health.v1.Health';
/** What reflection lists: the services the multiplexer's port really serves (not tei.v1's). */
export const REFLECTED_SERVICES = [MUX_SERVICE, HEALTH_SERVICE, 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'];

/** TeiMultiplexer as protobufjs-backed definitions (decoded objects both ways). */
export function muxServiceDefinition(): grpc.ServiceDefinition {
  const def = muxPackageDefinition()[MUX_SERVICE];
  if (def === undefined || 'format' in def) throw new Error(`${MUX_SERVICE} is not a service in ${MUX_PROTO_FILE}`);
  return def as grpc.ServiceDefinition;
}

/** A client constructor for TeiMultiplexer with decoded messages (tests, bench, tools). */
export function muxClient(): grpc.ServiceClientConstructor {
  return grpc.makeClientConstructor(muxServiceDefinition(), MUX_SERVICE);
}

// ---- message shapes of the multiplexer's own messages (as the loader above produces them) ----

/** Target as decoded by the loader (`routing` names the member set, with `oneofs: true`). */
export interface PbTarget {
  instance_name?: string;
  model_id?: string;
  instance_index?: number;
  routing?: 'instance_name' | 'model_id' | 'instance_index';
}

/** A request's Target as the routing's: exactly one way set, else BAD_REQUEST. */
export function toTarget(t: PbTarget | null | undefined): Target {
  switch (t?.routing) {
    case 'instance_name':
      return { kind: 'instance_name', value: t.instance_name ?? '' };
    case 'model_id':
      return { kind: 'model_id', value: t.model_id ?? '' };
    case 'instance_index':
      return { kind: 'instance_index', value: t.instance_index ?? 0 };
    default:
      throw new TeiplexError('BAD_REQUEST', `'target' is required: set one of instance_name, model_id or instance_index`);
  }
}

export interface PbInstanceSummary {
  name: string;
  model_id: string;
  instance_index: number;
  status: string;
  serving: boolean;
  inflight_requests: number;
  runtime: string;
}

export interface PbListInstancesResponse {
  instances: PbInstanceSummary[];
}
