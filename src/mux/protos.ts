/**
 * The multiplexer's protocol definitions, loaded once: `tei_multiplexer.v1` (which imports tei.v1),
 * and for server reflection the same plus grpc.health.v1 and grpc.reflection. Loader options are
 * the router's (src/router/proto.ts): snake_case fields, 64-bit integers as strings, enums as
 * names, `optional` presence visible, `bytes` as Buffer.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { HEALTH_PROTO_DIR, HEALTH_PROTO_FILE, LOADER_OPTIONS, PROTO_DIR, REFLECTION_PROTO_DIR, REFLECTION_PROTO_FILES, TEI_PROTO_FILE } from '../router/proto.js';

/** Relative to PROTO_DIR, as the file imports tei/v1/tei.proto. */
export const MUX_PROTO_FILE = 'tei_multiplexer/v1/multiplexer.proto';
export const MUX_SERVICE = 'tei_multiplexer.v1.TeiMultiplexer';
export const HEALTH_SERVICE = 'grpc.health.v1.Health';
/** What reflection lists: the services the multiplexer's port really serves (not tei.v1's). */
export const REFLECTED_SERVICES = [MUX_SERVICE, HEALTH_SERVICE, 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'];

let cached: protoLoader.PackageDefinition | null = null;
let cachedReflection: protoLoader.PackageDefinition | null = null;

/** tei_multiplexer.v1 + tei.v1. */
export function muxPackageDefinition(): protoLoader.PackageDefinition {
  cached ??= protoLoader.loadSync([MUX_PROTO_FILE], LOADER_OPTIONS);
  return cached;
}

/** Everything the multiplexer's port serves, as server reflection describes it. */
export function muxReflectionPackageDefinition(): protoLoader.PackageDefinition {
  cachedReflection ??= protoLoader.loadSync([MUX_PROTO_FILE, TEI_PROTO_FILE, HEALTH_PROTO_FILE, ...REFLECTION_PROTO_FILES], {
    ...LOADER_OPTIONS,
    includeDirs: [PROTO_DIR, HEALTH_PROTO_DIR, REFLECTION_PROTO_DIR],
  });
  return cachedReflection;
}

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

export interface PbEmbedArrowRequest {
  target?: PbTarget | null;
  arrow_ipc: Buffer;
  truncate: boolean;
  normalize?: boolean;
  noop: boolean;
}

export interface PbEmbedSparseArrowRequest {
  target?: PbTarget | null;
  arrow_ipc: Buffer;
  truncate: boolean;
  noop: boolean;
}

export interface PbArrowResponse {
  arrow_ipc: Buffer;
}
