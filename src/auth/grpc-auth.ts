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
 * - Restricted keys (`instances`, `models`): the interceptor checks the `target` of every request
 *   message that has one against the key (`authorizeRoute`: deterministic, before resolution; a
 *   `model_id` target needs every instance of the model allowed) -> PERMISSION_DENIED, for every
 *   RPC whatever its handler. It also records the grant on the message and its `target`, and the
 *   forwarding path calls `authorizeTarget(target, instance)` after resolution as a second check
 *   (an instance added between the two).
 */
import * as grpc from '@grpc/grpc-js';
import { asTeiplexError, TeiplexError } from '../common/errors.js';
import { authorizeInstance, authorizeRoute, type ApiKeyGrant, type AuthDirectory, type AuthTarget, type RouteTarget } from './api-keys.js';
import type { Auth } from './auth.js';

export const HEALTH_SERVICE = 'grpc.health.v1.Health';
export const REFLECTION_SERVICES = ['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'];

export function grpcCredentials(auth: Auth): grpc.ServerCredentials {
  const m = auth.mtls?.material;
  if (m === undefined) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(m.ca, [{ private_key: m.key, cert_chain: m.cert }], true);
}

/** Restricted keys' grants by request message and by its target object. */
const grants = new WeakMap<object, ApiKeyGrant>();

function record(message: unknown, grant: ApiKeyGrant): void {
  if (typeof message !== 'object' || message === null) return;
  grants.set(message, grant);
  const target = (message as { target?: unknown }).target;
  if (typeof target === 'object' && target !== null) grants.set(target, grant);
}

/**
 * After target resolution: throws PERMISSION_DENIED (a TeiplexError) when the call's API key may
 * not use `instance`. `call` is the request message as received, or its `target` object.
 * Nothing recorded (no keys, or an unrestricted key): allowed.
 */
export function authorizeTarget(call: object | undefined, instance: AuthTarget): void {
  if (call === undefined) return;
  const grant = grants.get(call);
  if (grant !== undefined) authorizeInstance(grant, instance);
}

/** May the call's API key use `instance`? (Lists: what a restricted key sees.) */
export function targetAllowed(call: object | undefined, instance: AuthTarget): boolean {
  try {
    authorizeTarget(call, instance);
    return true;
  } catch {
    return false;
  }
}

/**
 * The routing target of a request message: the multiplexer's wrapper (`{kind, value}`, wrapper.ts)
 * or a protobufjs-decoded `Target` (`routing` naming the oneof member, or the member set).
 */
export function routeTargetOf(message: unknown): RouteTarget | undefined {
  if (typeof message !== 'object' || message === null) return undefined;
  const t = (message as { target?: unknown }).target;
  if (typeof t !== 'object' || t === null) return undefined;
  const o = t as Record<string, unknown>;
  if ((o.kind === 'instance_name' || o.kind === 'model_id') && typeof o.value === 'string') return { kind: o.kind, value: o.value };
  if (o.kind === 'instance_index' && typeof o.value === 'number') return { kind: o.kind, value: o.value };
  const member = typeof o.routing === 'string' ? o.routing : ['instance_name', 'model_id', 'instance_index'].find((k) => o[k] !== undefined && o[k] !== null && o[k] !== '');
  if (member === 'instance_name' || member === 'model_id') return { kind: member, value: String(o[member] ?? '') };
  if (member === 'instance_index') return { kind: member, value: Number(o[member] ?? 0) };
  return undefined;
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
 * The interceptor. `instances` is what targets resolve against (restricted keys);
 * `onReject(path, code)` hears about each refused call (metrics).
 */
export function grpcAuthInterceptor(auth: Auth, instances: AuthDirectory, onReject?: (path: string, code: grpc.status) => void): grpc.ServerInterceptor {
  const allowList = auth.mtls?.allowList;
  const checkCert = allowList?.active === true;
  const keys = auth.keys.enabled ? auth.keys : undefined;
  return (method, call) => {
    if (grpcMethodIsOpen(auth, method.path)) return new grpc.ServerInterceptingCall(call);
    let grant: ApiKeyGrant | undefined;
    let refused = false;
    const refuse = (err: unknown): void => {
      refused = true;
      const e = asTeiplexError(err);
      onReject?.(method.path, e.grpcStatus);
      call.sendStatus({ code: e.grpcStatus, details: e.message, metadata: new grpc.Metadata() });
    };
    const builder = new grpc.ServerListenerBuilder().withOnReceiveMetadata((metadata, next) => {
      try {
        if (checkCert) {
          const verdict = allowList!.check(call.getAuthContext().sslPeerCertificate);
          if (!verdict.allowed) throw new TeiplexError('UNAUTHENTICATED', verdict.reason ?? 'client certificate not allowed');
        }
        if (keys !== undefined) {
          const values = metadata.get('authorization');
          if (values.length > 1) throw new TeiplexError('UNAUTHENTICATED', 'more than one authorization entry in the metadata');
          const value = values[0];
          grant = keys.authenticate(typeof value === 'string' ? value : value?.toString('utf8'));
        }
      } catch (err) {
        refuse(err);
        return;
      }
      next(metadata);
    });
    if (keys !== undefined) {
      builder
        .withOnReceiveMessage((message, next) => {
          if (refused) return;
          if (grant?.restricted) {
            const target = routeTargetOf(message);
            try {
              if (target !== undefined) authorizeRoute(grant, target, instances);
            } catch (err) {
              refuse(err);
              return;
            }
            record(message, grant);
          }
          next(message);
        })
        .withOnReceiveHalfClose((next) => {
          if (!refused) next();
        });
    }
    const listener = builder.build();
    const responder = new grpc.ResponderBuilder().withStart((next) => next(listener)).build();
    return new grpc.ServerInterceptingCall(call, responder);
  };
}
