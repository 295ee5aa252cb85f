/**
 * Typed outputs to instances: for each output type a request asks of a model (dense, sparse,
 * multivector, score), an instance behind that name that can produce it, balanced among those
 * that can. One model id or alias may be served by several instances of one model family (say a
 * dense and a SPLADE instance under one alias): their outputs are gathered into one answer. A
 * type none of them can produce is 422 naming what the model can do.
 */
import type { FastifyRequest } from 'fastify';
import { canServe } from '../../supervisor/instance-state.js';
import type { Instance } from '../../supervisor/instance.js';
import { isSplade } from '../../config/spec-flags.js';
import type { InstanceSpec } from '../../config/instance-spec.js';
import type { PbInfoResponse } from '../../tei/proto.js';
import type { Capability } from '../../tei/types.js';
import type { ModelMatch } from './model-directory.js';
import { childInfo, type DataPlaneDeps } from './request-context.js';
import { TeiplexError } from '../../common/errors.js';


/**
 * What the child's model can do: its Info's model type, and SPLADE pooling from its spec. tei.v1's
 * Info has no token classifier type: a teiplex router reports one as a classifier, so a classifier
 * may do 'classify' or 'tokens' (sequence or token classification), and its child refuses the one
 * it does not serve (WRONG_MODEL_TYPE).
 */
export function capabilitiesOf(spec: InstanceSpec, info: PbInfoResponse): Capability[] {
  switch (info.model_type) {
    case 'MODEL_TYPE_RERANKER':
      return ['score', 'classify'];
    case 'MODEL_TYPE_CLASSIFIER':
      return ['classify', 'tokens'];
    default:
      return isSplade(spec) ? ['sparse'] : ['dense', 'multivector'];
  }
}

/** Which instance produces which of the asked types. */
export type OutputPlan<T extends Capability> = Map<Instance, T[]>;

/**
 * Which instance makes which type, among the serving candidates whose child answered its Info (a
 * child that cannot, say one that died a moment ago, is left out: the others serve the request;
 * with none left, the first one's error).
 */
export async function planOutputs<T extends Capability>(d: DataPlaneDeps, m: ModelMatch, types: readonly T[], param: string): Promise<OutputPlan<T>> {
  const candidates = m.candidates.filter((i) => canServe(i.status));
  if (candidates.length === 0) d.directory.pick(m); // throws 503 naming the statuses
  const answers = await Promise.allSettled(candidates.map((i) => childInfo(d, i)));
  const known = candidates.flatMap((instance, k) => {
    const a = answers[k];
    return a.status === 'fulfilled' ? [{ instance, capabilities: capabilitiesOf(instance.spec, a.value) }] : [];
  });
  if (known.length === 0) throw (answers[0] as PromiseRejectedResult).reason;
  const plan: OutputPlan<T> = new Map();
  for (const type of new Set(types)) {
    const able = known.filter((k) => k.capabilities.includes(type)).map((k) => k.instance);
    if (able.length === 0) {
      const can = [...new Set(known.flatMap((k) => k.capabilities))];
      const what = m.kind === 'instance' ? `instance '${m.name}'` : `model '${m.name}'`;
      throw new TeiplexError('OUTPUT_TYPE_UNSUPPORTED', `${what} cannot produce '${type}': its capabilities are ${can.map((c) => `'${c}'`).join(', ') || 'none'}`, { param });
    }
    const chosen = d.directory.pick(m, able);
    const list = plan.get(chosen);
    if (list === undefined) plan.set(chosen, [type]);
    else list.push(type);
  }
  return plan;
}

/**
 * The instance for a request's `model` on a route that needs `capability`: with one candidate,
 * that one (its child answers for itself, as TEI would); with several (replicas, or an alias over
 * a model family), the least loaded of those that can do it. With the match it was chosen from
 * (failover picks among its candidates).
 */
export async function instanceFor(d: DataPlaneDeps, request: FastifyRequest, model: string | undefined, capability: Capability | null): Promise<{ instance: Instance; match: ModelMatch }> {
  const match = await d.directory.matchReady(request, model);
  if (match.candidates.length === 1 || capability === null) return { instance: d.directory.pick(match), match };
  const plan = await planOutputs(d, match, [capability], 'model');
  return { instance: [...plan.keys()][0], match };
}
