/**
 * Authentication on the gRPC multiplexer's port:
 * - `grpcCredentials`: TLS with a required client certificate chained to `client_ca` when
 *   `[auth.mtls]` is set (no certificate, or one from another CA: the handshake fails), else
 *   plaintext.
 * - `grpcAuthInterceptor`: a grpc-js server interceptor, installed only when something is checked
 *   per call. On each call's metadata it checks the peer certificate against the allow-lists
 *   (`call.getAuthContext()`), then `authorization: Bearer <key>` when API keys are configured;
 *   a failure ends the call with UNAUTHENTICATED before the handler runs. grpc.health.v1 and
 *   server reflection skip both checks while `open_health` / `open_reflection` (the TLS handshake
 *   still applies).
 * - Restricted keys (`instances`, `models`): the interceptor records the key's grant on every
 *   request message (`grantOf(message)`), and the handlers make the one authorization decision
 *   on what the call's target resolves to (access.ts): forwarded RPCs and the Arrow RPCs when
 *   they resolve their target, ListInstances and health when they list or look up an instance.
 *   A key with a `priority` has its grant recorded too (its default lane, src/child/lane.ts).
 * - Quotas (quotas.ts): a limited key's call (other than ListInstances) is admitted on its first
 *   message, against the name its `target` gives; over quota it ends RESOURCE_EXHAUSTED
 *   (RATE_LIMIT_EXCEEDED, `retry-after`). Tokens are charged from the answer's `x-compute-tokens`
 *   metadata (forwarded calls relay the child's) or its `prompt_tokens` (EmbedTyped); every
 *   answer carries the `x-ratelimit-*` metadata (in the headers, or with the status when no
 *   headers went out).
 */
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { TeiplexError } from '../common/errors.js';
import { toGrpcStatus } from '../tei/grpc-status.js';
import type { ApiKeyGrant } from './api-keys.js';
import { quotaHeaders, quotaStateOf, type QuotaState, type QuotaTicket } from './quotas.js';
import type { Auth } from './auth.js';

export const HEALTH_SERVICE = 'grpc.health.v1.Health';
export const REFLECTION_SERVICES = ['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'];

export function grpcCredentials(auth: Auth): grpc.ServerCredentials {
  const m = auth.mtls?.material;
  if (m === undefined) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(m.ca, [{ private_key: m.key, cert_chain: m.cert }], true);
}

/** The names a request message's `target` gives (for per-model quotas). */
function targetNames(message: unknown): string[] {
  const t = typeof message === 'object' && message !== null ? (message as { target?: Record<string, unknown> | null }).target : undefined;
  if (t === undefined || t === null) return [];
  return ['instance_name', 'model_id'].map((k) => t[k]).filter((v): v is string => typeof v === 'string' && v !== '');
}

function addQuotaMetadata(md: grpc.Metadata, state: QuotaState | undefined): void {
  if (state !== undefined) for (const [k, v] of quotaHeaders(state)) md.set(k, v);
}

/** Restricted (or prioritised) keys' grants by request message (the object the handler receives as the request). */
const grants = new WeakMap<object, ApiKeyGrant>();

/**
 * The API key grant a request message was received with when that key is restricted or has a
 * `priority`; undefined when keys are off or the key is unrestricted without one.
 */
export function grantOf(message: unknown): ApiKeyGrant | undefined {
  return typeof message === 'object' && message !== null ? grants.get(message) : undefined;
}

function serviceOf(path: string): string {
  return path.slice(1, path.lastIndexOf('/'));
}

/** Is the method open (no allow-list, no key) under this config? */
export function grpcMethodIsOpen(auth: Auth, path: string): boolean {
  const service = serviceOf(path);
  if (service === HEALTH_SERVICE) return auth.openHealth;
  if (REFLECTION_SERVICES.includes(service)) return auth.openReflection;
  return false;
}

/**
 * The per-call checks of a call that is not open (`grpcMethodIsOpen`): the peer certificate
 * (`peer()`, read only when an allow-list is active) against the allow-lists, then the
 * `authorization` values when API keys are configured. Returns the key's grant (undefined: keys
 * off); throws TeiplexError UNAUTHENTICATED. The interceptor and the multiplexer's unary front
 * (src/mux/unary-front.ts) make their decision here.
 */
export function checkGrpcCall(auth: Auth, authorization: readonly unknown[], peer: () => PeerCertificate | undefined): ApiKeyGrant | undefined {
  const allowList = auth.mtls?.allowList;
  if (allowList?.active === true) {
    const verdict = allowList.check(peer());
    if (!verdict.allowed) throw new TeiplexError('UNAUTHENTICATED', verdict.reason ?? 'client certificate not allowed');
  }
  if (!auth.keys.enabled) return undefined;
  if (authorization.length > 1) throw new TeiplexError('UNAUTHENTICATED', 'more than one authorization entry in the metadata');
  const value = authorization[0];
  return auth.keys.authenticate(typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('utf8') : undefined);
}

/** The interceptor. `onReject(path, code)` hears about each refused call (metrics). */
export function grpcAuthInterceptor(auth: Auth, onReject?: (path: string, code: grpc.status) => void): grpc.ServerInterceptor {
  const keys = auth.keys.enabled;
  return (method, call) => {
    if (grpcMethodIsOpen(auth, method.path)) return new grpc.ServerInterceptingCall(call);
    let grant: ApiKeyGrant | undefined;
    let refused = false;
    let ticket: QuotaTicket | undefined;
    let headersSent = false;
    const quotas = auth.quotas;
    const metered = serviceOf(method.path) !== HEALTH_SERVICE && !method.path.endsWith('/ListInstances');
    const refuse = (err: unknown): void => {
      refused = true;
      const s = toGrpcStatus(err);
      addQuotaMetadata(s.metadata, quotaStateOf(err));
      onReject?.(method.path, s.code);
      call.sendStatus(s);
    };
    const builder = new grpc.ServerListenerBuilder().withOnReceiveMetadata((metadata, next) => {
      try {
        grant = checkGrpcCall(auth, metadata.get('authorization'), () => call.getAuthContext().sslPeerCertificate);
      } catch (err) {
        refuse(err);
        return;
      }
      next(metadata);
    });
    if (keys) {
      builder
        .withOnReceiveMessage((message, next) => {
          if (refused) return;
          if ((grant?.restricted === true || grant?.priority !== undefined) && typeof message === 'object' && message !== null) grants.set(message, grant!);
          if (metered && ticket === undefined && grant !== undefined && quotas.limited(grant.name)) {
            try {
              ticket = quotas.admit(grant.name, targetNames(message));
            } catch (err) {
              refuse(err);
              return;
            }
          }
          next(message);
        })
        .withOnReceiveHalfClose((next) => {
          if (!refused) next();
        });
    }
    const listener = builder.build();
    const responder = new grpc.ResponderBuilder()
      .withStart((next) => next(listener))
      .withSendMetadata((md, next) => {
        headersSent = true;
        if (ticket !== undefined) {
          ticket.charge(Number(md.get('x-compute-tokens')[0] ?? 0));
          addQuotaMetadata(md, ticket.state());
        }
        next(md);
      })
      .withSendMessage((message, next) => {
        const tokens = (message as { prompt_tokens?: unknown } | null)?.prompt_tokens;
        if (ticket !== undefined && typeof tokens === 'number') ticket.charge(tokens);
        next(message);
      })
      .withSendStatus((status, next) => {
        if (ticket !== undefined && !headersSent) {
          const md = status.metadata ?? new grpc.Metadata();
          addQuotaMetadata(md, ticket.state());
          next({ ...status, metadata: md });
          return;
        }
        next(status);
      })
      .build();
    return new grpc.ServerInterceptingCall(call, responder);
  };
}
