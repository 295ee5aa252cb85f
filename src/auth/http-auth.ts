/**
 * Authentication on the manager's REST/HTTP listener (fastify):
 * - `httpsOptions`: with `[auth.mtls]`, HTTPS that requires a client certificate chained to
 *   `client_ca` (`requestCert` + `rejectUnauthorized`: no certificate, or another CA's, fails the
 *   handshake).
 * - `installHttpAuth`: an onRequest hook, installed only when something is checked per request.
 *   By route:
 *     health (`/health`, `/health/all`), `/metrics`, the OpenAPI document (`/docs*`): open while
 *       `open_health` / `open_metrics` / `open_reflection`, else treated as data plane;
 *     admin (`/instances*`, `/models*`, `/gpus`, `/memory`, `/config/reload`, the status page's
 *       `/events`): allow-listed certificate, and with `admin_requires_key` a key with
 *       `admin = true` (another valid key: 403);
 *     the status page's shell (`/ui`, `/ui/*`: static HTML, script and style, no server data):
 *       allow-listed certificate only; its script reads everything it shows from `/events` with
 *       the admin key the user types in (docs/status-page.md);
 *     everything else (the data plane, and unknown paths): allow-listed certificate, and a valid
 *       key when keys are configured.
 *   Failures are thrown as TeiplexErrors (UNAUTHENTICATED 401 with `www-authenticate: Bearer`,
 *   PERMISSION_DENIED 403), so each route context's error handler shapes the body (admin
 *   `{error, code}`, OpenAI `{error: {...}}`, ...).
 * - `requestGrant(request)`: for data-plane routes, the request's key grant; the data plane makes
 *   the authorization decision on what the request's model resolves to (access.ts). A separate
 *   data-plane listener must call `installHttpAuth` on its own app too.
 */
import type { IncomingMessage } from 'node:http';
import type { ServerOptions } from 'node:https';
import { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { TeiplexError } from '../common/errors.js';
import type { Verdict } from './allow-list.js';
import { authorizeAdmin, type ApiKeyGrant } from './api-keys.js';
import type { Auth } from './auth.js';

export type HttpRouteKind = 'health' | 'metrics' | 'docs' | 'admin' | 'ui' | 'data';

/** HTTPS server options for fastify, or undefined for plain HTTP. */
export function httpsOptions(auth: Auth): ServerOptions | undefined {
  const m = auth.mtls?.material;
  if (m === undefined) return undefined;
  return { cert: m.cert, key: m.key, ca: m.ca, requestCert: true, rejectUnauthorized: true };
}

/** The kind of a route, by its URL pattern (or the path for an unknown route). */
export function httpRouteKind(url: string): HttpRouteKind {
  if (url === '/health' || url === '/health/all') return 'health';
  if (url === '/metrics') return 'metrics';
  if (url === '/docs' || url.startsWith('/docs/')) return 'docs';
  if (url === '/gpus' || url === '/memory' || url === '/config/reload' || url === '/events') return 'admin';
  if (url === '/ui' || url.startsWith('/ui/')) return 'ui';
  for (const base of ['/instances', '/models']) if (url === base || url.startsWith(`${base}/`)) return 'admin';
  return 'data';
}

function isOpen(auth: Auth, kind: HttpRouteKind): boolean {
  return (kind === 'health' && auth.openHealth) || (kind === 'metrics' && auth.openMetrics) || (kind === 'docs' && auth.openReflection);
}

/** What the hook decided for a request. */
interface RequestAuth {
  grant?: ApiKeyGrant;
}

const decided = new WeakMap<IncomingMessage, RequestAuth>();
/** Allow-list verdicts per TLS connection (a keep-alive connection is checked once). */
const verdicts = new WeakMap<TLSSocket, Verdict>();

function unauthenticated(reply: FastifyReply, err: unknown, bearer: boolean): never {
  if (bearer) void reply.header('www-authenticate', 'Bearer realm="teiplex"');
  throw err;
}

export function installHttpAuth(app: FastifyInstance, auth: Auth): void {
  if (!auth.perCall) return;
  const allowList = auth.mtls?.allowList.active === true ? auth.mtls.allowList : undefined;
  const keys = auth.keys.enabled ? auth.keys : undefined;
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    const kind = httpRouteKind(req.routeOptions.url ?? req.url.split('?')[0]);
    if (isOpen(auth, kind)) return;
    if (allowList !== undefined) {
      const socket = req.raw.socket;
      let verdict = socket instanceof TLSSocket ? verdicts.get(socket) : undefined;
      if (verdict === undefined) {
        verdict = socket instanceof TLSSocket ? allowList.check(socket.getPeerCertificate()) : { allowed: false, reason: 'not a TLS connection' };
        if (socket instanceof TLSSocket) verdicts.set(socket, verdict);
      }
      if (!verdict.allowed) unauthenticated(reply, new TeiplexError('UNAUTHENTICATED', verdict.reason ?? 'client certificate not allowed'), false);
    }
    const state: RequestAuth = {};
    if (keys !== undefined && kind !== 'ui' && (kind !== 'admin' || auth.adminNeedsKey)) {
      let grant: ApiKeyGrant;
      try {
        grant = keys.authenticate(req.headers.authorization);
      } catch (err) {
        unauthenticated(reply, err, true);
      }
      if (kind === 'admin') authorizeAdmin(grant);
      state.grant = grant;
    }
    decided.set(req.raw, state);
  });
}

/** For data-plane routes: the request's API key grant (undefined when keys are off). */
export function requestGrant(request: FastifyRequest): ApiKeyGrant | undefined {
  return decided.get(request.raw)?.grant;
}
