/**
 * What every data-plane route shares: the dependencies (model directory, the multiplexer's
 * routing pieces, the child info cache, limits), running a request's calls on an instance (counted
 * in flight there, so model balancing sees HTTP and gRPC load alike), input limits, the response
 * headers, token-id inputs turned into text, and what a request waiting for a cold start holds.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ColdStartWaiter } from '../../catalog/catalog.js';
import { TeiplexError } from '../../common/errors.js';
import type { MuxRouting } from '../../routing/routing.js';
import { canServe } from '../../supervisor/instance-state.js';
import { aggregateMetadata, timingHeaders } from '../../tei/metadata.js';
import type { Metadata } from '../../tei/types.js';
import type { Instance } from '../../supervisor/instance.js';
import type { CallTarget } from './child-call.js';
import type { ChildInfo, ChildInfoCache } from './child-info.js';
import { ChildOps } from './child-ops.js';
import { RequestError } from './errors.js';
import type { GrantOf, ModelDirectory } from './model-directory.js';

/** Response header naming the instance(s) that answered. */
export const INSTANCE_HEADER = 'x-teiplex-instance';

export interface DataPlaneDeps {
  /** Resolution and the API key's decision: every route gets its instances from here. */
  directory: ModelDirectory;
  routing: MuxRouting;
  infos: ChildInfoCache;
  /** A child call's deadline (grpc_request_timeout_secs). */
  timeoutMs: number;
  /** Most inputs in one request (max_request_inputs). */
  maxRequestInputs: number;
  /** Largest body (http_body_limit_mb), bytes. */
  bodyLimitBytes: number;
  /** The request's API key grant (model lists). */
  grant: GrantOf;
  /** Largest answer (http_response_limit_mb), bytes. */
  responseLimitBytes: number;
}

/** Per request: aborted when the client goes away before its answer is sent. */
const disconnects = new WeakMap<object, AbortController>();

/** Watch for the client going away (the data plane's onRequest hook): child calls then stop. */
export function watchDisconnect(request: FastifyRequest, reply: FastifyReply): void {
  const ac = new AbortController();
  disconnects.set(request.raw, ac);
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) ac.abort();
  });
}

/** What a request waiting for a cold start holds (its body's bytes) and its disconnect signal. */
export function coldStartWaiter(request: FastifyRequest): ColdStartWaiter {
  const declared = Number(request.headers['content-length']);
  const bytes = Number.isSafeInteger(declared) && declared >= 0 ? declared : Buffer.byteLength(JSON.stringify(request.body ?? null) ?? '');
  return { bytes, signal: disconnects.get(request.raw)?.signal };
}

function callTarget(d: DataPlaneDeps, instance: Instance, request?: FastifyRequest): CallTarget {
  return { instance: instance.name, channel: d.routing.channels.get(instance), deadlineMs: Date.now() + d.timeoutMs, signal: request && disconnects.get(request.raw)?.signal };
}

/** The child's info (cached per child), for decisions made before calling it. */
export function childInfo(d: DataPlaneDeps, instance: Instance): Promise<ChildInfo> {
  return d.infos.get(instance, callTarget(d, instance));
}

/**
 * Run `fn` against the instance's child, counted in flight while it runs. `instance` comes from
 * the directory's match for this request, so the request's API key may use it.
 */
export async function onInstance<T>(d: DataPlaneDeps, request: FastifyRequest, instance: Instance, fn: (ops: ChildOps) => Promise<T>): Promise<T> {
  const target = callTarget(d, instance, request);
  d.routing.inflight.begin(instance.name);
  // Chosen, then stopped before it was counted (an on-demand replica evicted in between): retry.
  if (!canServe(instance.status)) {
    d.routing.inflight.end(instance.name);
    throw new TeiplexError('INSTANCE_UNAVAILABLE', `instance '${instance.name}' is ${instance.status}`, { retryAfterSecs: 1 });
  }
  try {
    // The info is cached per child and shared: fetched without this request's disconnect signal.
    const info = await d.infos.get(instance, callTarget(d, instance));
    return await fn(new ChildOps(target, info));
  } finally {
    d.routing.inflight.end(instance.name);
  }
}

/** A request's input count against the limits: empty -> 422, over max_request_inputs -> 413. */
export function checkCount(d: DataPlaneDeps, n: number, field: string): void {
  if (n === 0) throw new RequestError('EMPTY', `\`${field}\` cannot be empty`, field);
  if (n > d.maxRequestInputs) {
    throw new RequestError('TOO_MANY_INPUTS', `\`${field}\` has ${n} inputs, more than max_request_inputs (${d.maxRequestInputs}); split the request`, field);
  }
}

/** The `model` of a request: the body's field, else the X-Model header. */
export function requestedModel(request: FastifyRequest, fromBody: string | null | undefined): string | undefined {
  if (typeof fromBody === 'string' && fromBody !== '') return fromBody;
  const h = request.headers['x-model'];
  const v = Array.isArray(h) ? h[0] : h;
  return v === undefined || v === '' ? undefined : v;
}

/**
 * TEI's timing headers (x-total-time is the manager's own), and the instances that answered;
 * `metadata` null (tokenizer routes, which TEI gives no timings): x-total-time only.
 */
export function setHeaders(reply: FastifyReply, startNs: bigint, metadata: readonly Metadata[] | null, instances: readonly string[]): void {
  const total = process.hrtime.bigint() - startNs;
  if (metadata === null) reply.header('x-total-time', (total / 1_000_000n).toString());
  else for (const [k, v] of timingHeaders(aggregateMetadata(metadata, total))) reply.header(k, v);
  reply.header(INSTANCE_HEADER, [...new Set(instances)].join(','));
}

/** Tokens the child counted, summed. */
export function tokenCount(metadata: readonly Metadata[]): number {
  let n = 0;
  for (const m of metadata) n += m.computeTokens;
  return n;
}

/**
 * Inputs as texts: token-id inputs are decoded by the child's tokenizer first (tei.v1 carries
 * text only), special tokens skipped, so the child re-tokenizes them as it would the text.
 */
export async function textsOf(ops: ChildOps, items: ReadonlyArray<string | readonly number[]>): Promise<string[]> {
  const ids: number[] = [];
  items.forEach((x, i) => typeof x !== 'string' && ids.push(i));
  if (ids.length === 0) return items as string[];
  const decoded = await ops.decode(
    ids.map((i) => items[i] as readonly number[]),
    true,
  );
  const out = items.slice() as Array<string | readonly number[]>;
  ids.forEach((i, k) => (out[i] = decoded[k]));
  return out as string[];
}

/** TEI's input union: one input (a string or token ids) or a list of them. */
export function inputList(inputs: string | number[] | Array<string | number[]>): Array<string | number[]> {
  if (typeof inputs === 'string') return [inputs];
  if (inputs.length > 0 && inputs.every((x) => typeof x === 'number')) return [inputs as number[]];
  return inputs as Array<string | number[]>;
}

export const direction = (d: string | undefined): 'TRUNCATION_DIRECTION_LEFT' | 'TRUNCATION_DIRECTION_RIGHT' =>
  d !== undefined && d.toLowerCase() === 'left' ? 'TRUNCATION_DIRECTION_LEFT' : 'TRUNCATION_DIRECTION_RIGHT';
