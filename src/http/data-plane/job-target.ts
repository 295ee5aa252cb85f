/**
 * The data plane's side of batch jobs (src/batch/job-target.ts): a job's model resolved as a
 * request naming it would be, for the key that created the job (a key removed from the config
 * since: PERMISSION_DENIED), an on-demand model started (waiting for memory like any start), and
 * each call made on the bulk lane with the data plane's deadline, counted in flight on its
 * instance (so idle stop and scale-up see the job) and recorded for outlier detection.
 */
import type { ApiKeyGrant } from '../../auth/api-keys.js';
import { modelPrompts } from '../../child/model-prompts.js';
import { autoTruncateOf } from '../../config/spec-flags.js';
import { errorOutcome } from '../../routing/outlier.js';
import { notServing } from '../../routing/failover.js';
import { canServe } from '../../supervisor/instance-state.js';
import type { JobTarget } from '../../batch/job-target.js';
import { planOutputs } from './capabilities.js';
import type { DataPlaneDeps } from './request-context.js';

/** The grant of a job's owner (undefined: no keys); throws when the owner's key is gone. */
export type OwnerGrant = (owner: string) => ApiKeyGrant | undefined;

export function jobTarget(d: DataPlaneDeps, ownerGrant: OwnerGrant): JobTarget {
  return {
    async check(owner, model) {
      await d.directory.whenRestored();
      d.directory.match(model, 'model', ownerGrant(owner));
    },
    async run(owner, model, need, signal, fn) {
      const match = await d.directory.matchStarted(ownerGrant(owner), model, 'model', true, () => ({ bytes: 0, signal }));
      const instance = match.candidates.length === 1 ? d.directory.pick(match) : [...(await planOutputs(d, match, [need], 'model')).keys()][0];
      d.routing.inflight.begin(instance.name);
      const started = performance.now();
      try {
        if (!canServe(instance.status)) throw notServing(instance);
        const out = await fn({
          engine: d.routing.channels.client(instance),
          call: { deadlineMs: Date.now() + d.timeoutMs, lane: 'bulk', signal },
          modelName: model,
          autoTruncate: autoTruncateOf(instance.spec),
          prompts: modelPrompts(instance.spec),
        });
        d.routing.outliers.record(instance, 'success', performance.now() - started);
        return out;
      } catch (err) {
        d.routing.outliers.record(instance, errorOutcome(err), performance.now() - started);
        throw err;
      } finally {
        d.routing.inflight.end(instance.name);
      }
    },
  };
}
