/**
 * The REST API of the catalog of on-demand models (docs/on-demand.md): list, add, remove, load,
 * unload; memory per device; and the config reload. A model is addressed by its catalog name,
 * model_id (URL-encoded: `BAAI%2Fbge-m3`) or an alias. A spec added here is held to the config's
 * [security] (403 FORBIDDEN_SETTING naming the setting); failure reasons are answered with secrets
 * redacted.
 */
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import type { Catalog } from '../catalog/catalog.js';
import type { CatalogModel } from '../catalog/catalog-model.js';
import { devicesOf } from '../catalog/memory-budget.js';
import type { ReloadReport } from '../catalog/reload.js';
import type { SecurityConfig } from '../config/config.js';
import { ModelSpecSchema, maxReplicas } from '../config/model-spec.js';
import { assertSpecAllowed } from '../config/spec-policy.js';
import { redactText } from '../runtimes/redact.js';
import { errors } from './error-body.js';

export interface ModelRoutesOptions {
  catalog: Catalog;
  reload: () => Promise<ReloadReport>;
  /** What specs added through the API may ask for (config [security]). */
  security: SecurityConfig;
}

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

const ReplicaSchema = Type.Object({
  instance: Type.String(),
  status: Type.String(),
  device: Type.String(),
  pid: Type.Union([Type.Integer(), Type.Null()]),
  inflight_requests: Type.Integer(),
  footprint_mb: Type.Union([Type.Number(), Type.Null()]),
  last_used: Nullable(Type.String()),
});

const ModelInfoSchema = Type.Object({
  name: Type.String(),
  model_id: Type.String(),
  aliases: Type.Array(Type.String()),
  runtime: Type.String(),
  source: Type.String(),
  state: Type.String({ description: 'available | loading | loaded | unloading | failed' }),
  failure: Type.Union([Type.Object({ reason: Type.String(), at: Type.String() }), Type.Null()]),
  on_demand: Type.Boolean(),
  min_replicas: Type.Integer(),
  max_replicas: Type.Integer(),
  idle_timeout_secs: Type.Union([Type.Number(), Type.Null()]),
  memory_mb: Type.Union([Type.Number(), Type.Null()]),
  footprint_mb: Type.Union([Type.Number(), Type.Null()]),
  footprint_kind: Nullable(Type.String()),
  replicas: Type.Array(ReplicaSchema),
  waiting_requests: Type.Integer(),
  last_used: Nullable(Type.String()),
  created_at: Type.String(),
});
export type ModelInfo = Static<typeof ModelInfoSchema>;

const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 1024 }) });

const round = (mb: number | undefined): number | null => (mb === undefined ? null : Math.round(mb * 10) / 10);
const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/** A catalog model as the API shows it (GET /models, and the status page's events). */
export function modelInfo(catalog: Catalog, m: CatalogModel): ModelInfo {
  const usage = catalog.usage;
  const instances = catalog.replicas(m);
  const replicas = instances.map((i) => ({
    instance: i.name,
    status: i.status,
    device: devicesOf(i.placement.gpuIds).join(','),
    pid: i.pid ?? null,
    inflight_requests: usage.get(i.name),
    footprint_mb: round(catalog.footprintOf(i.name)),
    last_used: iso(usage.lastUsed(i.name)),
  }));
  const lastUsed = Math.max(...instances.map((i) => usage.lastUsed(i.name) ?? 0), m.lastUsedMs ?? 0);
  return {
    name: m.name,
    model_id: m.spec.model_id,
    aliases: m.spec.aliases ?? [],
    runtime: m.spec.runtime ?? 'router',
    source: m.source,
    state: m.state(instances),
    failure: m.failure === undefined ? null : { ...m.failure, reason: redactText(m.failure.reason) },
    on_demand: m.spec.on_demand !== false,
    min_replicas: m.pinned,
    max_replicas: maxReplicas(m.spec),
    idle_timeout_secs: m.spec.idle_timeout_secs ?? null,
    memory_mb: m.spec.memory_mb ?? null,
    footprint_mb: round(m.footprintMb),
    footprint_kind: m.footprintKind ?? null,
    replicas,
    waiting_requests: m.waiters,
    last_used: lastUsed > 0 ? new Date(lastUsed).toISOString() : null,
    created_at: m.createdAt,
  };
}

export const modelRoutes: FastifyPluginAsync<ModelRoutesOptions> = async (app, { catalog, reload, security }) => {
  const info = (m: CatalogModel): ModelInfo => modelInfo(catalog, m);
  const schema = (extra: object) => ({ tags: ['models'], ...extra });

  app.get('/models', { schema: schema({ response: { 200: Type.Array(ModelInfoSchema) } }) }, async () => catalog.list().map(info));

  app.post<{ Body: Static<typeof ModelSpecSchema> }>('/models', { schema: schema({ body: ModelSpecSchema, response: { 201: ModelInfoSchema, ...errors(400, 403, 409, 422) } }) }, async (req, reply) => {
    assertSpecAllowed(req.body, 'api', security);
    return reply.status(201).send(info(await catalog.add(req.body)));
  });

  app.get<{ Params: Static<typeof NameParams> }>('/models/:name', { schema: schema({ params: NameParams, response: { 200: ModelInfoSchema, ...errors(400, 404) } }) }, async (req) =>
    info(catalog.get(req.params.name)),
  );

  app.delete<{ Params: Static<typeof NameParams> }>('/models/:name', { schema: schema({ params: NameParams, response: { 200: ModelInfoSchema, ...errors(400, 404) } }) }, async (req) =>
    info(await catalog.remove(req.params.name)),
  );

  app.post<{ Params: Static<typeof NameParams> }>(
    '/models/:name/load',
    { schema: schema({ params: NameParams, response: { 200: ModelInfoSchema, ...errors(400, 403, 404, 503) } }) },
    async (req) => {
      // A model the API added (restored from the state file too) loads only while [security] allows its spec.
      const m = catalog.get(req.params.name);
      if (m.source === 'api') assertSpecAllowed(m.spec, 'api', security);
      return info(await catalog.load(req.params.name));
    },
  );

  app.post<{ Params: Static<typeof NameParams> }>(
    '/models/:name/unload',
    { schema: schema({ params: NameParams, response: { 200: ModelInfoSchema, ...errors(400, 404, 409) } }) },
    async (req) => info(await catalog.unload(req.params.name)),
  );

  app.get('/memory', { schema: { tags: ['models'] } }, async () => ({ devices: await catalog.measureMemory() }));

  app.post('/config/reload', { schema: { tags: ['config'], response: errors(422) } }, async () => reload());
};
