/**
 * Rolling swaps on the admin API (docs/manager.md, Swap; docs/on-demand.md for models):
 * `POST /instances/{name}/swap` and `POST /models/{name}/swap`. The body names the spec fields to
 * change, the probe (texts, `min_cosine`) and a bound on the new version's start; src/swap/ does
 * the work. Accepted: 200 with the report. Refused (the versions differ: 422 SWAP_REFUSED) or
 * failed (the new version did not start or answer: 422 SWAP_FAILED): the admin error body with
 * the report added, the old version still serving.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { InstanceSpecSchema, INSTANCE_NAME_PATTERN } from '../config/instance-spec.js';
import { MAX_PROBE_TEXT_CHARS, MAX_PROBE_TEXTS } from '../swap/probe-set.js';
import type { ModelSwapRequest } from '../swap/model-swap.js';
import { SwapRefusal, type SwapReport, type SwapRequest } from '../swap/swap.js';
import { errors } from './error-body.js';

export interface SwapRoutesOptions {
  swapInstance(name: string, req: SwapRequest): Promise<SwapReport>;
  /** A catalog model's swap (every running replica in turn); absent: no catalog. */
  swapModel?(name: string, req: ModelSwapRequest): Promise<unknown>;
}

/** A swap's body: the fields to change (`spec`), the probe, the bound on the new version's start. */
const swapBody = <S extends TSchema>(spec: S) =>
  Type.Object(
    {
      spec,
      probe: Type.Optional(
        Type.Object(
          {
            texts: Type.Optional(
              Type.Array(Type.String({ minLength: 1, maxLength: MAX_PROBE_TEXT_CHARS }), {
                minItems: 1,
                maxItems: MAX_PROBE_TEXTS,
                description: 'default: a built-in set of 16 varied texts',
              }),
            ),
            min_cosine: Type.Optional(
              Type.Number({ exclusiveMinimum: 0, maximum: 1, description: 'the mean and the minimum cosine of old and new vectors must reach it' }),
            ),
          },
          { additionalProperties: false },
        ),
      ),
      timeout_secs: Type.Optional(
        Type.Number({ exclusiveMinimum: 0, maximum: 86_400, description: 'how long the new version may take to get ready (default: startup_timeout_secs)' }),
      ),
    },
    { additionalProperties: false },
  );

export const SwapBodySchema = swapBody(
  Type.Partial(InstanceSpecSchema, { additionalProperties: false, description: 'the spec fields to change (the name cannot change)' }),
);
/** A model's replica settings: its spec's fields but the name and the catalog's own (replicas, idle timeout, memory, GPUs). */
export const ModelSwapBodySchema = swapBody(
  Type.Partial(Type.Omit(InstanceSpecSchema, ['name', 'port', 'gpu_id', 'gpu_ids', 'prometheus_port']), {
    additionalProperties: false,
    description: 'the replica settings to change (model_id, revision, pooling, dtype, extra_args, ...)',
  }),
);

const NameParams = Type.Object({ name: Type.String({ pattern: INSTANCE_NAME_PATTERN }) });
const ModelParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 1024 }) });
const Report = Type.Unknown({ description: 'the swap report: what changed, each check with its figures, timings, outcome' });
const RefusalSchema = Type.Object({ error: Type.String(), code: Type.String(), timestamp: Type.String(), report: Report });

/** A refused or failed swap: the admin error body, with the report. */
function sendRefusal(err: unknown, reply: FastifyReply): FastifyReply {
  if (!(err instanceof SwapRefusal)) throw err;
  return reply.status(err.httpStatus).send({ error: err.message, code: err.code, timestamp: new Date().toISOString(), report: err.report });
}

export const swapRoutes: FastifyPluginAsync<SwapRoutesOptions> = async (app, o) => {
  const schema = (tag: string, params: TSchema, body: TSchema) => ({
    tags: [tag],
    params,
    body,
    response: { 200: Report, 422: RefusalSchema, ...errors(400, 403, 404, 409) },
  });

  app.post<{ Params: Static<typeof NameParams>; Body: Static<typeof SwapBodySchema> }>(
    '/instances/:name/swap',
    { schema: schema('instances', NameParams, SwapBodySchema) },
    async (req, reply) => {
      try {
        return await o.swapInstance(req.params.name, req.body);
      } catch (err) {
        return sendRefusal(err, reply);
      }
    },
  );

  const swapModel = o.swapModel;
  if (swapModel === undefined) return;
  app.post<{ Params: Static<typeof ModelParams>; Body: Static<typeof ModelSwapBodySchema> }>(
    '/models/:name/swap',
    { schema: schema('models', ModelParams, ModelSwapBodySchema) },
    async (req, reply) => {
      try {
        return await swapModel(req.params.name, req.body);
      } catch (err) {
        return sendRefusal(err, reply);
      }
    },
  );
};
