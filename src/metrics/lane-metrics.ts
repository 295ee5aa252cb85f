/**
 * The priority lanes' metrics (docs/tenancy.md, docs/manager.md): per instance and lane, how long
 * each child call waited for room in the child's input window (0 when it went at once, so the
 * histogram's count is the calls made in that lane), and how many wait now.
 */
import { Gauge, Histogram, type Registry } from 'prom-client';
import type { LaneObserver } from '../child/input-budget.js';

/** Lane waits in seconds: 0.5 ms to 30 s. */
const WAIT_BUCKETS = [0, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Registers the metrics on `registry`; the observer of one instance's child. */
export function laneMetrics(registry: Registry): (instance: string) => LaneObserver {
  const wait = new Histogram({
    name: 'teiplex_lane_wait_seconds',
    help: 'Time a child call waited for room in its instance input window, by priority lane (0: it went at once)',
    labelNames: ['instance', 'lane'] as const,
    buckets: WAIT_BUCKETS,
    registers: [registry],
  });
  const queued = new Gauge({
    name: 'teiplex_lane_queued',
    help: 'Child calls waiting for room in their instance input window, by priority lane',
    labelNames: ['instance', 'lane'] as const,
    registers: [registry],
  });
  return (instance) => {
    const waits = { interactive: wait.labels(instance, 'interactive'), bulk: wait.labels(instance, 'bulk') };
    const depth = { interactive: queued.labels(instance, 'interactive'), bulk: queued.labels(instance, 'bulk') };
    // The series show from the start (0 waiting), without resetting what an earlier spawn's calls still count.
    depth.interactive.inc(0);
    depth.bulk.inc(0);
    return {
      waited: (lane, seconds) => waits[lane].observe(seconds),
      queued: (lane, delta) => depth[lane].inc(delta),
    };
  };
}
