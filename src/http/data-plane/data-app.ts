/**
 * The data plane on its own listener (`data_port`): a fastify app with only the data-plane
 * routes (plugin.ts), `/health`, and a 404 in the protocol's shape for anything else. Without
 * `data_port` the same plugin is registered on the admin API's app instead (mount.ts). The same
 * bounds on client time as the admin listener (connection-limits.ts).
 */
import type { ServerOptions } from 'node:https';
import Fastify, { type FastifyInstance } from 'fastify';
import { routeNotFound, toHttpError } from '../../tei/http-errors.js';
import { connectionLimits, installConnectionLimits, serverOptions, type ConnectionLimits } from '../connection-limits.js';
import { dataPlane, type DataPlaneOptions } from './plugin.js';

export async function buildDataApp(
  o: DataPlaneOptions,
  secure?: (app: FastifyInstance) => void,
  https?: ServerOptions,
  limits: ConnectionLimits = connectionLimits(),
): Promise<FastifyInstance> {
  const app = Fastify({ ...serverOptions(limits, https), logger: false, bodyLimit: o.bodyLimitBytes, forceCloseConnections: 'idle' }) as unknown as FastifyInstance;
  installConnectionLimits(app, limits);
  secure?.(app);
  app.get('/health', async () => ({ status: 'ok' }));
  app.setNotFoundHandler((req, reply) => {
    const a = toHttpError(routeNotFound(req.method, req.url), req.url.startsWith('/v1/') ? 'openai' : 'tei');
    void reply.status(a.status).headers(a.headers).send(a.body);
  });
  await app.register(dataPlane, o);
  return app;
}
