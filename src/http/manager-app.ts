/**
 * The manager's fastify application: OpenAPI (/docs; every status a route can answer declared,
 * openapi-statuses.ts), the admin routes, one error shape. Strict
 * validation: no type coercion and no silent removal of unknown fields. Client time is bounded
 * (request, keep-alive and send timeouts; refused clients disconnected): connection-limits.ts.
 */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance } from 'fastify';
import { NO_AUTH, type Auth } from '../auth/auth.js';
import { httpsOptions, installHttpAuth } from '../auth/http-auth.js';
import { VERSION } from '../common/version.js';
import type { ManagerMetrics } from '../metrics/manager-metrics.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import { adminRoutes } from './admin-routes.js';
import { connectionLimits, installConnectionLimits, serverOptions, type ConnectionLimits } from './connection-limits.js';
import { adminErrorHandler, adminNotFoundHandler } from './error-body.js';
import { modelRoutes, type ModelRoutesOptions } from './model-routes.js';
import { declareStatuses } from './openapi-statuses.js';

/** Largest admin request body (an instance spec is small). */
export const ADMIN_BODY_LIMIT = 1024 * 1024;

export async function buildManagerApp(
  supervisor: Supervisor,
  metrics: ManagerMetrics,
  auth: Auth = NO_AUTH,
  models?: ModelRoutesOptions,
  limits: ConnectionLimits = connectionLimits(),
): Promise<FastifyInstance> {
  const app = Fastify({
    // HTTPS with required client certificates under [auth.mtls] (docs/security.md); null: HTTP.
    ...serverOptions(limits, httpsOptions(auth)),
    logger: false,
    bodyLimit: ADMIN_BODY_LIMIT,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
    forceCloseConnections: 'idle',
  }) as unknown as FastifyInstance;
  installConnectionLimits(app, limits);
  installHttpAuth(app, auth);
  // Query strings are text: let integer/boolean query parameters through their schema typed.
  app.addHook('preValidation', (req, _reply, done) => {
    const q = req.query as Record<string, unknown> | undefined;
    if (q !== undefined && q !== null) {
      for (const k in q) {
        const v = q[k];
        if (typeof v !== 'string') continue;
        if (/^\d+$/.test(v)) q[k] = Number(v);
        else if (v === 'true' || v === 'false') q[k] = v === 'true';
      }
    }
    done();
  });
  await app.register(swagger, {
    openapi: { info: { title: 'teiplex manager', version: VERSION } },
    // Every status a route can answer, its kind's shared ones included (openapi-statuses.ts).
    transformObject: (d) => declareStatuses(('openapiObject' in d ? d.openapiObject : d.swaggerObject) as Parameters<typeof declareStatuses>[0]) as never,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.setErrorHandler(adminErrorHandler);
  app.setNotFoundHandler(adminNotFoundHandler);
  await app.register(adminRoutes, { supervisor, metrics });
  if (models !== undefined) await app.register(modelRoutes, models);
  return app;
}
