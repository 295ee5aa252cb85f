/**
 * The manager's REST admin API: instance lifecycle, logs, health, GPUs, metrics. Schemas (TypeBox)
 * validate every body and parameter and double as the OpenAPI document served at /docs. A created
 * spec is held to the config's [security] by the supervisor (403 FORBIDDEN_SETTING naming the
 * setting, 400 for what no setting allows); errors and log lines are answered with secrets
 * redacted (runtimes/redact.ts).
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { mayUse } from '../auth/access.js';
import { requestGrant } from '../auth/http-auth.js';
import { InstanceSpecSchema, INSTANCE_NAME_PATTERN } from '../config/instance-spec.js';
import type { ManagerMetrics } from '../metrics/manager-metrics.js';
import type { Instance } from '../supervisor/instance.js';
import { redactText } from '../runtimes/redact.js';
import { NOT_EJECTED, type OutlierStatus, type Supervisor } from '../supervisor/supervisor.js';
import { errors } from './error-body.js';

export interface AdminRoutesOptions {
  supervisor: Supervisor;
  metrics: ManagerMetrics;
}


const InstanceInfoSchema = Type.Object({
  name: Type.String(),
  model_id: Type.String(),
  runtime: Type.String(),
  port: Type.Integer(),
  prometheus_port: Type.Union([Type.Integer(), Type.Null()]),
  status: Type.String(),
  desired_state: Type.String(),
  pid: Type.Union([Type.Integer(), Type.Null()]),
  gpu_id: Type.Union([Type.Integer(), Type.Null()]),
  gpu_ids: Type.Array(Type.Integer()),
  created_at: Type.String(),
  uptime_secs: Type.Number(),
  restarts: Type.Integer(),
  last_exit: Type.Union([Type.Object({ code: Type.Union([Type.Integer(), Type.Null()]), signal: Type.Union([Type.String(), Type.Null()]), time: Type.String() }), Type.Null()]),
  health_check_failures: Type.Integer(),
  last_health_check: Type.Union([Type.String(), Type.Null()]),
  last_error: Type.Union([Type.String(), Type.Null()]),
  /** The catalog model this instance is a replica of (managed through /models), or null. */
  model: Type.Union([Type.String(), Type.Null()]),
  /** Outlier detection: out of balancing until `ejected_until` (then probed), how often so far, why. */
  outlier: Type.Object({
    ejected: Type.Boolean(),
    ejected_until: Type.Union([Type.String(), Type.Null()]),
    ejections: Type.Integer(),
    reason: Type.Union([Type.String(), Type.Null()]),
  }),
});
export type InstanceInfo = Static<typeof InstanceInfoSchema>;

const NameParams = Type.Object({ name: Type.String({ pattern: INSTANCE_NAME_PATTERN }) });
const LogsQuery = Type.Object({ start: Type.Optional(Type.Integer({ minimum: 0 })), end: Type.Optional(Type.Integer({ minimum: 0 })) }, { additionalProperties: false });
const CreateQuery = Type.Object({ start: Type.Optional(Type.Boolean({ description: 'start at once (default true)' })) }, { additionalProperties: false });


export function instanceInfo(i: Instance, desired: string, model: string | undefined, outlier: OutlierStatus = NOT_EJECTED): InstanceInfo {
  return {
    name: i.name,
    model_id: i.spec.model_id,
    runtime: i.spec.runtime ?? 'router',
    port: i.placement.port,
    prometheus_port: i.placement.prometheusPort ?? null,
    status: i.status,
    desired_state: desired,
    pid: i.pid ?? null,
    gpu_id: i.placement.gpuIds[0] ?? null,
    gpu_ids: i.placement.gpuIds,
    created_at: i.placement.createdAt,
    uptime_secs: Math.round(i.uptimeSecs * 1000) / 1000,
    restarts: i.restarts,
    last_exit: i.lastExit ?? null,
    health_check_failures: i.healthFailures,
    last_health_check: i.lastHealthCheck ?? null,
    last_error: i.lastError === undefined ? null : redactText(i.lastError),
    model: model ?? null,
    outlier,
  };
}

export const adminRoutes: FastifyPluginAsync<AdminRoutesOptions> = async (app, { supervisor, metrics }) => {
  const info = (i: Instance): InstanceInfo => instanceInfo(i, supervisor.desiredState(i.name) ?? 'stopped', supervisor.ownerOf(i.name), supervisor.outliers?.of(i));

  app.get('/health', { schema: { tags: ['health'], response: { 200: Type.Object({ status: Type.Literal('ok') }) } } }, async () => ({ status: 'ok' as const }));

  // With open_health = false a restricted key sees (and is judged on) only the instances it may use.
  app.get('/health/all', { schema: { tags: ['health'] } }, async (req) => {
    const grant = requestGrant(req);
    const list = supervisor.list().filter((i) => mayUse(grant, i));
    const wanted = list.filter((i) => supervisor.desiredState(i.name) === 'running');
    const up = wanted.filter((i) => i.status === 'running').length;
    const status = up === wanted.length ? 'healthy' : up === 0 ? 'down' : 'degraded';
    return { status, instances: list.map((i) => ({ name: i.name, status: i.status, desired_state: supervisor.desiredState(i.name), healthy: i.status === 'running' })) };
  });

  app.get('/metrics', { schema: { tags: ['health'] } }, async (_req, reply) => {
    void reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
  });

  app.get('/gpus', { schema: { tags: ['gpus'] } }, async () => supervisor.gpus());

  app.get('/instances', { schema: { tags: ['instances'], response: { 200: Type.Array(InstanceInfoSchema) } } }, async () => supervisor.list().map(info));

  app.post<{ Body: Static<typeof InstanceSpecSchema>; Querystring: Static<typeof CreateQuery> }>(
    '/instances',
    { schema: { tags: ['instances'], body: InstanceSpecSchema, querystring: CreateQuery, response: { 201: InstanceInfoSchema, ...errors(400, 403, 409, 422) } } },
    async (req, reply) => {
      const instance = await supervisor.create(req.body, req.query.start ?? true);
      return reply.status(201).send(info(instance));
    },
  );

  app.get<{ Params: Static<typeof NameParams> }>('/instances/:name', { schema: { tags: ['instances'], params: NameParams, response: { 200: InstanceInfoSchema, ...errors(400, 404) } } }, async (req) =>
    info(supervisor.get(req.params.name)),
  );

  app.delete<{ Params: Static<typeof NameParams> }>('/instances/:name', { schema: { tags: ['instances'], params: NameParams, response: { 200: InstanceInfoSchema, ...errors(400, 404, 409) } } }, async (req) => {
    supervisor.assertUnmanaged(req.params.name);
    const i = await supervisor.delete(req.params.name);
    return instanceInfo(i, 'deleted', undefined);
  });

  for (const action of ['start', 'stop', 'restart'] as const) {
    app.post<{ Params: Static<typeof NameParams> }>(
      `/instances/:name/${action}`,
      { schema: { tags: ['instances'], params: NameParams, response: { 200: InstanceInfoSchema, ...errors(400, 404, 409) } } },
      async (req) => {
        supervisor.assertUnmanaged(req.params.name);
        return info(await supervisor[action](req.params.name));
      },
    );
  }

  app.get<{ Params: Static<typeof NameParams>; Querystring: Static<typeof LogsQuery> }>(
    '/instances/:name/logs',
    { schema: { tags: ['instances'], params: NameParams, querystring: LogsQuery, response: errors(400, 404) } },
    async (req) => {
      const range = supervisor.get(req.params.name).log.range(req.query.start, req.query.end);
      return { ...range, lines: range.lines.map(redactText) };
    },
  );

  app.get<{ Params: Static<typeof NameParams> }>('/instances/:name/health', { schema: { tags: ['instances'], params: NameParams, response: errors(400, 404) } }, async (req) => {
    const i = supervisor.get(req.params.name);
    return {
      name: i.name,
      status: i.status,
      healthy: i.status === 'running',
      health_check_failures: i.healthFailures,
      last_health_check: i.lastHealthCheck ?? null,
      last_error: i.lastError === undefined ? null : redactText(i.lastError),
    };
  });
};
