/**
 * What every data-plane route shares: the dependencies (model directory, the routing pieces
 * shared with the multiplexer: one ChildClient per child, calls in flight, limits), running a
 * request's calls on an instance's ChildClient (counted in flight there, so model balancing sees
 * HTTP and gRPC load alike; with the request's deadline, and cancelled when its HTTP client goes
 * away), input limits, the response headers, and what a request waiting for a cold start holds.
 *
 * Failover (src/routing/failover.ts): a request whose child went away before answering (or whose
 * instance stopped serving before the call was sent) runs its calls once more on another serving
 * replica of the same model, within the request's deadline and the retry budget; nothing has been
 * sent to the client then (the routes answer only after their child calls). A request naming an
 * instance stays there unless `x-teiplex-failover: same-model`; `off` turns it off. The answer
 * names the replica that answered (`x-teiplex-instance`) and the first one
 * (`x-teiplex-retried-from`).
 */
import { laneOf, PRIORITY_HEADER } from '../../child/lane.js';
import { setMaxListeners } from 'node:events';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ColdStartWaiter } from '../../catalog/catalog.js';
import { TeiplexError } from '../../common/errors.js';
import { FAILOVER_HEADER, notServing, parseFailoverMode, RETRIED_FROM_HEADER, retryable, type Retry } from '../../routing/failover.js';
import type { MuxRouting } from '../../routing/routing.js';
import { errorOutcome } from '../../routing/outlier.js';
import { canServe } from '../../supervisor/instance-state.js';
import { setSuccessHeaders } from '../../tei/http-routes.js';
import type { Metadata } from '../../tei/types.js';
import type { Instance } from '../../supervisor/instance.js';
import type { ChildClient } from '../../child/child-client.js';
import { autoTruncateOf } from '../../config/spec-flags.js';
import type { PbInfoResponse } from '../../tei/proto.js';
import type { CallOptions } from '../../tei/types.js';
import type { GrantOf, ModelDirectory, ModelMatch } from './model-directory.js';

/** Response header naming the instance(s) that answered. */
export const INSTANCE_HEADER = 'x-teiplex-instance';
/** Response header naming the instance(s) a retried request went to first (failover). */
export const RETRIED_FROM_HTTP_HEADER = `x-${RETRIED_FROM_HEADER}`;

export interface DataPlaneDeps {
  /** Resolution and the API key's decision: every route gets its instances from here. */
  directory: ModelDirectory;
  routing: MuxRouting;
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

/**
 * Per connection: aborted when its socket closes. A request whose answer is not yet sent when its
 * connection closes has lost its client, and every request in flight on a closed connection is
 * such a request, so one signal per connection (not one per request) serves them all; requests
 * done before the close have finished their child calls and no longer listen.
 */
const DISCONNECT = Symbol('teiplex.disconnect');
type WatchedSocket = { [DISCONNECT]?: AbortController; once?(event: 'close', fn: () => void): unknown; destroyed?: boolean };

/** The signal aborted when the request's client goes away (its connection closes). */
function disconnectSignal(request: FastifyRequest): AbortSignal | undefined {
  const socket = request.raw.socket as unknown as WatchedSocket | null | undefined;
  if (socket === null || socket === undefined || typeof socket.once !== 'function') return undefined;
  let ac = socket[DISCONNECT];
  if (ac === undefined) {
    const created = new AbortController();
    // Every call scope of every request on the connection listens (pipelined requests, encode's
    // several instances): no leak warning past Node's default of 10.
    setMaxListeners(0, created.signal);
    socket[DISCONNECT] = ac = created;
    if (socket.destroyed === true) created.abort();
    else socket.once('close', () => created.abort());
  }
  return ac.signal;
}

/** Watch for the client going away (the data plane's onRequest hook): child calls then stop. */
export function watchDisconnect(request: FastifyRequest): void {
  disconnectSignal(request);
}

/** What a request waiting for a cold start holds (its body's bytes) and its disconnect signal. */
export function coldStartWaiter(request: FastifyRequest): ColdStartWaiter {
  const declared = Number(request.headers['content-length']);
  const bytes = Number.isSafeInteger(declared) && declared >= 0 ? declared : Buffer.byteLength(JSON.stringify(request.body ?? null) ?? '');
  return { bytes, signal: disconnectSignal(request) };
}

/** A request's calls on one instance's child. */
export interface ChildRequest {
  /** The instance called (after a failover: the replica retried on). */
  readonly instance: Instance;
  /** After a failover: the instance the request went to first. */
  readonly retriedFrom?: string;
  readonly client: ChildClient;
  /** Every call's options: the request's deadline (grpc_request_timeout_secs), its disconnect signal, its priority lane. */
  readonly call: CallOptions;
  /** What `truncate` means when a request leaves it out (the child's --auto-truncate). */
  readonly autoTruncate: boolean;
}

/** The child's tei.v1 Info (fetched once per child, shared), for decisions made before calling it. */
export function childInfo(d: DataPlaneDeps, instance: Instance): Promise<PbInfoResponse> {
  return d.routing.channels.client(instance).info({ deadlineMs: Date.now() + d.timeoutMs });
}

/**
 * Run `fn` against the instance's child, counted in flight while it runs. `instance` comes from
 * the directory's `match` for this request, so the request's API key may use it. With `match`,
 * a retryable failure (src/routing/failover.ts) runs `fn` once more on another serving replica of
 * the instance's model_id among the match's candidates (an instance name: only with
 * `x-teiplex-failover: same-model`, among the instances with its model_id the key may use).
 */
export async function onInstance<T>(d: DataPlaneDeps, request: FastifyRequest, instance: Instance, fn: (c: ChildRequest) => Promise<T>, match?: ModelMatch): Promise<T> {
  const mode = parseFailoverMode(request.headers[FAILOVER_HEADER]);
  const signal = disconnectSignal(request);
  const deadlineMs = Date.now() + d.timeoutMs;
  // The request's lane: its x-teiplex-priority header, else its API key's priority, else interactive.
  const lane = laneOf(request.headers[PRIORITY_HEADER], d.grant(request)?.priority ?? 'interactive');
  const attempt = async (on: Instance, retriedFrom?: string): Promise<T> => {
    const c: ChildRequest = {
      instance: on,
      ...(retriedFrom !== undefined ? { retriedFrom } : {}),
      client: d.routing.channels.client(on),
      call: { deadlineMs, lane, ...(signal !== undefined ? { signal } : {}) },
      autoTruncate: autoTruncateOf(on.spec),
    };
    return counted(d, on, () => fn(c));
  };
  try {
    return await attempt(instance);
  } catch (err) {
    const retry = match === undefined || Date.now() >= deadlineMs || signal?.aborted === true || !retryable(err) ? undefined : reroute(d, request, match, mode, instance);
    if (retry === undefined) throw err;
    try {
      return await attempt(retry.instance, instance.name);
    } finally {
      retry.done();
    }
  }
}

/**
 * `fn`, the calls of one request (or batch chunk) on `on`'s child: counted in flight there (model
 * balancing, idle stop and scale-up see it) and its outcome recorded for outlier detection. An
 * instance chosen, then stopped before it was counted (an on-demand replica evicted in between),
 * is not called.
 */
export async function counted<T>(d: DataPlaneDeps, on: Instance, fn: () => Promise<T>): Promise<T> {
  d.routing.inflight.begin(on.name);
  const started = performance.now();
  try {
    if (!canServe(on.status)) throw notServing(on);
    const out = await fn();
    d.routing.outliers.record(on, 'success', performance.now() - started);
    return out;
  } catch (err) {
    d.routing.outliers.record(on, errorOutcome(err), performance.now() - started);
    throw err;
  } finally {
    d.routing.inflight.end(on.name);
  }
}

/** Another replica for a request whose call on `failed` may be retried, and the budget's slot; undefined: none. */
function reroute(d: DataPlaneDeps, request: FastifyRequest, m: ModelMatch, mode: ReturnType<typeof parseFailoverMode>, failed: Instance): Retry | undefined {
  const fo = d.routing.failover;
  if (!fo.allows(m.kind === 'instance' ? 'instance' : 'model', mode)) return undefined;
  let candidates = m.candidates;
  if (m.kind === 'instance') {
    try {
      candidates = d.directory.match(failed.spec.model_id, 'model', d.grant(request)).candidates;
    } catch {
      candidates = [];
    }
  }
  return fo.reroute(`${m.kind}:${m.name}`, candidates, [failed]);
}

/** A request's input count against the limits: empty -> 422, over max_request_inputs -> 413. */
export function checkCount(d: DataPlaneDeps, n: number, field: string): void {
  if (n === 0) throw new TeiplexError('EMPTY', `\`${field}\` cannot be empty`, { param: field });
  if (n > d.maxRequestInputs) {
    throw new TeiplexError('TOO_MANY_INPUTS', `\`${field}\` has ${n} inputs, more than max_request_inputs (${d.maxRequestInputs}); split the request`, { param: field });
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
 * TEI's timing headers (x-total-time is the manager's own), and the instances that answered (and,
 * after a failover, those first tried); `metadata` null (tokenizer routes, which TEI gives no
 * timings): x-total-time only.
 */
export function setHeaders(reply: FastifyReply, startNs: bigint, metadata: readonly Metadata[] | null, instances: readonly string[], retriedFrom: readonly string[] = []): void {
  const extra: Record<string, string> = { [INSTANCE_HEADER]: [...new Set(instances)].join(',') };
  if (retriedFrom.length > 0) extra[RETRIED_FROM_HTTP_HEADER] = [...new Set(retriedFrom)].join(',');
  setSuccessHeaders(reply, startNs, metadata, extra);
}

/** The headers naming who answered one child request (and whom it was retried from). */
export function servedBy(c: ChildRequest): Record<string, string> {
  return c.retriedFrom === undefined ? { [INSTANCE_HEADER]: c.instance.name } : { [INSTANCE_HEADER]: c.instance.name, [RETRIED_FROM_HTTP_HEADER]: c.retriedFrom };
}
