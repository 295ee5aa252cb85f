/**
 * The data plane's side of batch jobs (src/batch/job-target.ts): a job's model resolved as a
 * request naming it would be, for the key that created the job (a key removed from the config
 * since: PERMISSION_DENIED), an on-demand model started (waiting for memory like any start), and
 * each call made on the bulk lane with the data plane's deadline, counted in flight on its
 * instance (so idle stop and scale-up see the job) and recorded for outlier detection. A key with
 * tokens_per_minute is charged its jobs' tokens; over it, a chunk waits (its calls are not
 * requests: requests_per_minute does not count them).
 */
import type { ApiKeyGrant } from '../../auth/api-keys.js';
import { modelPrompts } from '../../child/model-prompts.js';
import { autoTruncateOf, isSplade } from '../../config/spec-flags.js';
import type { InstanceSpec } from '../../config/instance-spec.js';
import type { JobTarget } from '../../batch/job-target.js';
import type { Quotas } from '../../auth/quotas.js';
import { tokenCount } from '../../tei/metadata.js';
import type { Engine, Metadata } from '../../tei/types.js';
import { planOutputs } from './capabilities.js';
import { counted, type DataPlaneDeps } from './request-context.js';

/** The grant of a job's owner (undefined: no keys); throws when the owner's key is gone. */
export type OwnerGrant = (owner: string) => ApiKeyGrant | undefined;

/**
 * `engine` with the tokens of every answer added to `counted.tokens` (what a quota ticket is charged).
 */
function counting(engine: Engine, counted: { tokens: number }): Engine {
  const add = <T extends { metadata: Metadata[] }>(p: Promise<T>): Promise<T> =>
    p.then((out) => {
      counted.tokens += tokenCount(out.metadata);
      return out;
    });
  return {
    embed: (i, o, c) => add(engine.embed(i, o, c)),
    embedSparse: (i, o, c) => add(engine.embedSparse(i, o, c)),
    embedAll: (i, o, c) => add(engine.embedAll(i, o, c)),
    predict: (i, o, c) => add(engine.predict(i, o, c)),
    predictTokens: (i, o, c) => add(engine.predictTokens(i, o, c)),
    rerank: (q, t, o, c) => engine.rerank(q, t, o, c),
    tokenize: (i, a, p, c) => engine.tokenize(i, a, p, c),
    decode: (i, s, c) => engine.decode(i, s, c),
  };
}

export function jobTarget(d: DataPlaneDeps, ownerGrant: OwnerGrant, quotas?: Quotas): JobTarget {
  return {
    async check(owner, model) {
      await d.directory.whenRestored();
      const m = d.directory.match(model, 'model', ownerGrant(owner));
      const specs = [...m.candidates.map((i) => i.spec), ...(m.catalog !== undefined ? [m.catalog.spec as InstanceSpec] : [])];
      return specs.length > 0 && specs.every((s) => isSplade(s)) ? 'sparse' : 'dense';
    },
    async run(owner, model, need, signal, fn) {
      const match = await d.directory.matchStarted(ownerGrant(owner), model, 'model', true, () => ({ bytes: 0, signal }));
      const instance = match.candidates.length === 1 ? d.directory.pick(match) : [...(await planOutputs(d, match, [need], 'model')).keys()][0];
      // The key's tokens_per_minute bounds its jobs too: over it, the chunk waits (RATE_LIMIT_EXCEEDED is passing).
      const names = [model, ...match.candidates.flatMap((i) => [i.spec.model_id, i.name]), ...(match.catalog !== undefined ? [match.catalog.name, match.catalog.spec.model_id] : [])];
      const ticket = owner === '' ? undefined : quotas?.admit(owner, names, false);
      const spent = { tokens: 0 };
      return counted(d, instance, async () => {
        const client = d.routing.channels.client(instance);
        const out = await fn({
          engine: ticket === undefined ? client : counting(client, spent),
          call: { deadlineMs: Date.now() + d.timeoutMs, lane: 'bulk', signal },
          modelName: model,
          autoTruncate: autoTruncateOf(instance.spec),
          prompts: modelPrompts(instance.spec),
        });
        ticket?.charge(spent.tokens);
        return out;
      });
    },
  };
}
