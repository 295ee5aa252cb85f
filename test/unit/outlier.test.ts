/**
 * Outlier detection (src/routing/outlier.ts) on a manual clock: ejection after failures in a row
 * and for a latency far above the peers', the growing and capped interval, readmission after a
 * passing probe and re-ejection after a failing one, max_ejected_percent, the last serving replica
 * kept, a new child generation starting afresh; target.ts's pick skipping ejected replicas; and
 * the [outlier_detection] table's defaults and refusals.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { ManualClock } from '../../src/common/manual-clock.js';
import { TeiplexError } from '../../src/common/errors.js';
import { DEFAULTS, resolveConfig, type OutlierDetectionConfig } from '../../src/config/config.js';
import { Inflight } from '../../src/routing/inflight.js';
import { errorOutcome, grpcOutcome, OutlierDetector, type EjectionReason } from '../../src/routing/outlier.js';
import { TargetResolver } from '../../src/routing/target.js';
import type { Instance } from '../../src/supervisor/instance.js';

interface FakeInstance {
  name: string;
  spec: { name: string; model_id: string };
  status: string;
  spawnGeneration: number;
}

function replica(name: string, model_id = 'm'): FakeInstance {
  return { name, spec: { name, model_id }, status: 'running', spawnGeneration: 1 };
}

function setup(instances: FakeInstance[], settings: Partial<OutlierDetectionConfig> = {}) {
  const clock = new ManualClock();
  const probes: string[] = [];
  let probeAnswer = true;
  const events: Array<[string, EjectionReason | 'readmitted']> = [];
  const d = new OutlierDetector({
    settings: { ...DEFAULTS.outlier_detection, ...settings },
    instances: { list: () => instances as unknown as Instance[] },
    probe: async (i) => {
      probes.push(i.name);
      return probeAnswer;
    },
    clock,
  });
  d.listen({ ejected: (name, reason) => events.push([name, reason]), readmitted: (name) => events.push([name, 'readmitted']) });
  const I = (f: FakeInstance): Instance => f as unknown as Instance;
  const fail = (f: FakeInstance, n: number): void => {
    for (let k = 0; k < n; k++) d.record(I(f), 'failure', 5);
  };
  const ok = (f: FakeInstance, n: number, ms: number): void => {
    for (let k = 0; k < n; k++) d.record(I(f), 'success', ms);
  };
  /** Probes answer asynchronously: let them settle. */
  const settle = async (): Promise<void> => {
    for (let k = 0; k < 5; k++) await turn();
  };
  return { clock, d, I, fail, ok, settle, probes, events, setProbe: (v: boolean) => (probeAnswer = v) };
}

describe('outlier detection', () => {
  test('outcomes: the replica failures count, client errors and cancellations do not', () => {
    assert.equal(grpcOutcome(GrpcStatus.OK, false), 'success');
    for (const c of [GrpcStatus.UNAVAILABLE, GrpcStatus.INTERNAL, GrpcStatus.UNKNOWN]) assert.equal(grpcOutcome(c, false), 'failure');
    assert.equal(grpcOutcome(GrpcStatus.DEADLINE_EXCEEDED, true), 'failure', 'our timeout');
    assert.equal(grpcOutcome(GrpcStatus.DEADLINE_EXCEEDED, false), 'ignored', "the client's deadline");
    for (const c of [GrpcStatus.INVALID_ARGUMENT, GrpcStatus.CANCELLED, GrpcStatus.RESOURCE_EXHAUSTED, GrpcStatus.NOT_FOUND]) assert.equal(grpcOutcome(c, false), 'ignored');
    assert.equal(errorOutcome(new TeiplexError('REQUEST_TIMEOUT', 'x')), 'failure');
    assert.equal(errorOutcome(new TeiplexError('INSTANCE_UNAVAILABLE', 'x')), 'failure');
    assert.equal(errorOutcome(new TeiplexError('BACKEND', 'x')), 'failure');
    assert.equal(errorOutcome(new TeiplexError('VALIDATION', 'x')), 'ignored');
    assert.equal(errorOutcome(new TeiplexError('CANCELLED', 'x')), 'ignored');
    assert.equal(errorOutcome(new TeiplexError('MODEL_OVERLOADED', 'x')), 'ignored');
    assert.equal(errorOutcome(new Error('not ours')), 'ignored');
  });

  test('consecutive failures eject; a success in between starts the count again', () => {
    const a = replica('a');
    const b = replica('b');
    const t = setup([a, b], { consecutive_failures: 3 });
    t.fail(a, 2);
    t.ok(a, 1, 5);
    t.fail(a, 2);
    assert.equal(t.d.isEjected(t.I(a)), false, '2 in a row after a success');
    t.fail(a, 1);
    assert.equal(t.d.isEjected(t.I(a)), true);
    const s = t.d.of(t.I(a));
    assert.equal(s.ejected, true);
    assert.equal(s.reason, 'consecutive_failures');
    assert.equal(s.ejections, 1);
    assert.equal(s.ejected_until, new Date(t.clock.now() + 30_000).toISOString());
    assert.deepEqual(t.events, [['a', 'consecutive_failures']]);
    assert.equal(t.d.isEjected(t.I(b)), false);
  });

  test('ignored outcomes neither count nor reset', () => {
    const a = replica('a');
    const t = setup([a, replica('b')], { consecutive_failures: 2 });
    t.fail(a, 1);
    t.d.record(t.I(a), 'ignored', 5);
    t.fail(a, 1);
    assert.equal(t.d.isEjected(t.I(a)), true);
  });

  test('a replica far slower than its peers is ejected; not before slow_min_requests, not without peers', () => {
    const a = replica('a');
    const b = replica('b');
    const c = replica('c');
    const t = setup([a, b, c], { slow_min_requests: 10, slow_factor: 3, max_ejected_percent: 50 });
    t.ok(a, 30, 100);
    assert.equal(t.d.isEjected(t.I(a)), false, 'no peer with enough samples yet');
    t.ok(b, 10, 10);
    t.ok(c, 10, 12);
    t.ok(a, 1, 100);
    assert.equal(t.d.isEjected(t.I(a)), true, 'about 100 ms against a median of 10-12 ms');
    assert.equal(t.d.of(t.I(a)).reason, 'slow');
    // Twice as slow as the median is within the factor.
    const t2 = setup([a, b], { slow_min_requests: 10, slow_factor: 3 });
    t2.ok(b, 10, 10);
    t2.ok(a, 30, 20);
    assert.equal(t2.d.isEjected(t2.I(a)), false);
  });

  test('a lone replica is never slow (no peers) nor ejected (the last serving one)', () => {
    const a = replica('a');
    const t = setup([a, replica('other', 'another-model')], { consecutive_failures: 1, slow_min_requests: 1 });
    t.ok(a, 5, 1000);
    t.fail(a, 10);
    assert.equal(t.d.isEjected(t.I(a)), false);
    assert.deepEqual(t.events, []);
  });

  test('the last serving replica is kept: the other one is stopping', () => {
    const a = replica('a');
    const b = replica('b');
    b.status = 'stopping';
    const t = setup([a, b], { consecutive_failures: 1, max_ejected_percent: 100 });
    t.fail(a, 3);
    assert.equal(t.d.isEjected(t.I(a)), false);
  });

  test('max_ejected_percent: of 4 replicas at 50 %, 2 ejected, the third waits', () => {
    const r = ['a', 'b', 'c', 'd'].map((n) => replica(n));
    const t = setup(r, { consecutive_failures: 1, max_ejected_percent: 50 });
    for (const x of r.slice(0, 3)) t.fail(x, 1);
    assert.deepEqual(
      r.map((x) => t.d.isEjected(t.I(x))),
      [true, true, false, false],
    );
    // Percent 0: never.
    const pair = [replica('a'), replica('b')];
    const t0 = setup(pair, { consecutive_failures: 1, max_ejected_percent: 0 });
    t0.fail(pair[0], 1);
    assert.deepEqual(t0.events, []);
  });

  test('after the interval a passing probe readmits; the counts start afresh', async () => {
    const a = replica('a');
    const t = setup([a, replica('b')], { consecutive_failures: 2, base_ejection_secs: 30 });
    t.fail(a, 2);
    t.clock.advance(29_999);
    await t.settle();
    assert.deepEqual(t.probes, [], 'not probed before the interval ends');
    assert.equal(t.d.isEjected(t.I(a)), true);
    t.clock.advance(1);
    await t.settle();
    assert.deepEqual(t.probes, ['a']);
    assert.equal(t.d.isEjected(t.I(a)), false);
    assert.deepEqual(t.events, [['a', 'consecutive_failures'], ['a', 'readmitted']]);
    t.fail(a, 1);
    assert.equal(t.d.isEjected(t.I(a)), false, 'one failure after readmission');
    t.fail(a, 1);
    assert.equal(t.d.isEjected(t.I(a)), true);
    assert.equal(t.d.of(t.I(a)).ejections, 2);
    assert.equal(t.d.of(t.I(a)).ejected_until, new Date(t.clock.now() + 60_000).toISOString(), 'the second ejection lasts twice as long');
  });

  test('a failing probe ejects again for a longer interval, capped at max_ejection_secs', async () => {
    const a = replica('a');
    const t = setup([a, replica('b')], { consecutive_failures: 1, base_ejection_secs: 30, max_ejection_secs: 70 });
    t.setProbe(false);
    t.fail(a, 1);
    const intervals: number[] = [];
    for (let k = 0; k < 4; k++) {
      const until = Date.parse(t.d.of(t.I(a)).ejected_until!);
      intervals.push(until - t.clock.now());
      t.clock.advance(until - t.clock.now());
      await t.settle();
    }
    assert.deepEqual(intervals, [30_000, 60_000, 70_000, 70_000]);
    assert.equal(t.probes.length, 4);
    assert.deepEqual(
      t.events.map((e) => e[1]),
      ['consecutive_failures', 'probe_failed', 'probe_failed', 'probe_failed', 'probe_failed'],
    );
    t.setProbe(true);
    t.clock.advance(70_000);
    await t.settle();
    assert.equal(t.d.isEjected(t.I(a)), false);
  });

  test('a probe that throws counts as failed', async () => {
    const a = replica('a');
    const clock = new ManualClock();
    const d = new OutlierDetector({
      settings: { ...DEFAULTS.outlier_detection, consecutive_failures: 1 },
      instances: { list: () => [a, replica('b')] as unknown as Instance[] },
      probe: async () => {
        throw new Error('connection refused');
      },
      clock,
    });
    d.record(a as unknown as Instance, 'failure', 1);
    clock.advance(30_000);
    for (let k = 0; k < 5; k++) await turn();
    assert.equal(d.of(a as unknown as Instance).reason, 'probe_failed');
    d.close();
  });

  test('a new child generation (restart) or a new Instance object starts afresh', async () => {
    const a = replica('a');
    const t = setup([a, replica('b')], { consecutive_failures: 2 });
    t.fail(a, 2);
    assert.equal(t.d.isEjected(t.I(a)), true);
    a.spawnGeneration = 2;
    assert.equal(t.d.isEjected(t.I(a)), false);
    assert.equal(t.d.of(t.I(a)).ejections, 0);
    t.fail(a, 1);
    assert.equal(t.d.isEjected(t.I(a)), false, 'the old count is gone');
    t.fail(a, 1);
    assert.equal(t.d.isEjected(t.I(a)), true);
    const again = replica('a');
    assert.equal(t.d.isEjected(t.I(again)), false, 'another Instance object of the same name');
    // The old generation's timer does not probe the new child.
    t.d.record(t.I(again), 'success', 1);
    t.clock.advance(300_000);
    await t.settle();
    assert.deepEqual(t.probes, []);
  });

  test('calls that end on an ejected replica are not counted', () => {
    const a = replica('a');
    const t = setup([a, replica('b')], { consecutive_failures: 1 });
    t.fail(a, 1);
    t.fail(a, 5);
    t.ok(a, 5, 1);
    assert.equal(t.d.of(t.I(a)).ejections, 1);
    assert.equal(t.d.isEjected(t.I(a)), true);
  });
});

describe('pick skips ejected replicas', () => {
  test('the other replica serves while one is ejected; the ejected one only when none else can', () => {
    const a = replica('a');
    const b = replica('b');
    const t = setup([a, b], { consecutive_failures: 1 });
    const resolver = new TargetResolver({ list: () => [a, b] as unknown as Instance[], find: () => undefined }, new Inflight(), (i) => t.d.isEjected(i));
    t.fail(a, 1);
    const picks = new Set<string>();
    for (let k = 0; k < 6; k++) picks.add(resolver.pick('m', [t.I(a), t.I(b)])!.name);
    assert.deepEqual([...picks], ['b']);
    b.status = 'stopping';
    assert.equal(resolver.pick('m', [t.I(a), t.I(b)])?.name, 'a', 'ejected, but the only one that can serve');
  });
});

describe('[outlier_detection] config', () => {
  test('defaults, a partial table merged over them', () => {
    assert.deepEqual(resolveConfig({}, {}).outlier_detection, {
      consecutive_failures: 5,
      base_ejection_secs: 30,
      max_ejection_secs: 300,
      slow_factor: 3,
      slow_min_requests: 20,
      max_ejected_percent: 50,
    });
    assert.equal(resolveConfig({ outlier_detection: { consecutive_failures: 2 } }, {}).outlier_detection.consecutive_failures, 2);
    assert.equal(resolveConfig({ outlier_detection: { consecutive_failures: 2 } }, {}).outlier_detection.max_ejection_secs, 300);
  });

  test('refusals name the key and the limit', () => {
    const refused = (table: unknown): string => {
      try {
        resolveConfig({ outlier_detection: table }, {});
      } catch (err) {
        return (err as Error).message;
      }
      return 'accepted';
    };
    assert.equal(refused({ slow_factor: 1 }), 'config: outlier_detection.slow_factor: Expected number to be greater than 1 (got 1)');
    assert.equal(refused({ consecutive_failures: 0 }), 'config: outlier_detection.consecutive_failures: Expected integer to be greater or equal to 1 (got 0)');
    assert.equal(refused({ max_ejected_percent: 101 }), 'config: outlier_detection.max_ejected_percent: Expected number to be less or equal to 100 (got 101)');
    assert.equal(refused({ base_ejection_secs: 60, max_ejection_secs: 30 }), 'config: outlier_detection.max_ejection_secs (30) must not be less than outlier_detection.base_ejection_secs (60)');
    assert.equal(refused(3), 'config: outlier_detection: expected a table');
    assert.equal(refused({ typo: 1 }), 'config: outlier_detection.typo: Unexpected property (got 1)');
    assert.equal(refused({ base_ejection_secs: 30, max_ejection_secs: 30 }), 'accepted');
  });
});
