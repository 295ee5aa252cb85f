/**
 * The largest gRPC message a child accepts, as far as the manager can know it from the instance's
 * spec, so the multiplexer refuses a larger one itself (RESOURCE_EXHAUSTED, before sending it)
 * instead of shipping megabytes to a child that will only refuse them:
 *
 * - `teiplex router`: `--payload-limit` in `extra_args`, else `PAYLOAD_LIMIT` in the spec's `env`,
 *   else the router's default, 2,000,000 bytes (TEI's --payload-limit default);
 * - `text-embeddings-router` (runtime "tei"): TEI's gRPC server keeps tonic's default decoding
 *   limit of 4 MiB (its --payload-limit applies to HTTP bodies only);
 * - any other `command`: unknown; only grpc_max_message_size_mb applies.
 */
import type { InstanceSpec } from '../config/instance-spec.js';

/** The router's --payload-limit default (TEI's). */
export const ROUTER_PAYLOAD_LIMIT = 2_000_000;
/** tonic's default max decoding message size, which TEI's gRPC server keeps. */
export const TEI_GRPC_MESSAGE_LIMIT = 4 * 1024 * 1024;

export interface ChildMessageLimit {
  bytes: number;
  /** Where the number comes from, for error messages. */
  source: string;
}

/** The value of `--flag N` or `--flag=N` in argv (the last one wins), if any. */
function flagValue(args: readonly string[], flag: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === flag) value = args[i + 1];
    else if (a.startsWith(`${flag}=`)) value = a.slice(flag.length + 1);
  }
  return value;
}

function positiveInt(s: string | undefined): number | undefined {
  if (s === undefined || !/^\s*\d+\s*$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/** The child's message limit, or undefined when the manager cannot know it. */
export function childMessageLimit(spec: Pick<InstanceSpec, 'runtime' | 'extra_args' | 'env'>): ChildMessageLimit | undefined {
  const runtime = spec.runtime ?? 'router';
  if (runtime === 'tei') return { bytes: TEI_GRPC_MESSAGE_LIMIT, source: "text-embeddings-router's gRPC message limit" };
  if (runtime !== 'router') return undefined;
  const flag = positiveInt(flagValue(spec.extra_args ?? [], '--payload-limit'));
  if (flag !== undefined) return { bytes: flag, source: 'its --payload-limit' };
  const env = positiveInt(spec.env?.PAYLOAD_LIMIT);
  if (env !== undefined) return { bytes: env, source: 'its PAYLOAD_LIMIT' };
  return { bytes: ROUTER_PAYLOAD_LIMIT, source: "the router's default --payload-limit" };
}
