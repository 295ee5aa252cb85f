/**
 * Failover's decisions (src/routing/failover.ts), in process: which failures may be retried
 * elsewhere (a status marked `unanswered` by the child channel, a child failure carrying one, an
 * instance found not serving; never a status the child sent), the caller's header, which targets
 * may move, the budget's arithmetic and its refusals, and where a retry goes (another serving
 * replica of the same model_id, never one already tried).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { statusObject, type ChildStatus } from '../../src/child/child-channel.js';
import { childFailure } from '../../src/child/child-status.js';
import { TeiplexError } from '../../src/common/errors.js';
import { Failover, mayMove, notServing, parseFailoverMode, retryable, retryableRows, retryLimit } from '../../src/routing/failover.js';
import { Inflight } from '../../src/routing/inflight.js';
import { TargetResolver } from '../../src/routing/target.js';
import type { Instance } from '../../src/supervisor/instance.js';

function inst(name: string, model_id: string, status = 'running'): Instance {
  return { name, spec: { name, model_id }, status } as unknown as Instance;
}

function failoverOver(list: Instance[], settings = { enabled: true, budget_percent: 20, min_retry_concurrency: 3 }) {
  const inflight = new Inflight();
  const resolver = new TargetResolver({ list: () => list, find: (n: string) => list.find((i) => i.name === n) }, inflight);
  return { inflight, failover: new Failover(settings, resolver, inflight) };
}

describe('failover: what may be retried', () => {
  const unanswered: ChildStatus = { ...statusObject(grpc.status.UNAVAILABLE, 'Connection dropped: socket hang up'), unanswered: true };

  test('a status the channel marked unanswered, and a child failure made of one', () => {
    assert.equal(retryable(unanswered), true);
    assert.equal(retryable(childFailure(unanswered, "instance 'a'")), true);
  });

  test('a status the child sent (trailers), or one heard after headers, is not', () => {
    const fromChild: ChildStatus = { ...statusObject(grpc.status.UNAVAILABLE, 'overloaded'), trailers: { 'grpc-status': '14' } };
    assert.equal(retryable(fromChild), false);
    assert.equal(retryable(statusObject(grpc.status.UNAVAILABLE, 'Connection dropped')), false, 'no unanswered mark: the child had answered headers');
    assert.equal(retryable(childFailure(fromChild, "instance 'a'")), false);
    assert.equal(retryable(statusObject(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded')), false);
  });

  test('an instance found not serving before the call was sent is; a look-alike error is not', () => {
    const a = inst('a', 'm', 'stopping');
    const err = notServing(a);
    assert.equal(retryable(err), true);
    assert.equal(err.code, 'INSTANCE_UNAVAILABLE');
    assert.match(err.message, /instance 'a' is stopping/);
    assert.equal(retryable(new TeiplexError('INSTANCE_UNAVAILABLE', "instance 'a' is stopping")), false);
    assert.equal(retryable(new Error('x')), false);
    assert.equal(retryable(undefined), false);
  });
});

describe('failover: the header and the targets that may move', () => {
  test('absent: auto; same-model and off (any case, trimmed); anything else names the allowed values', () => {
    assert.equal(parseFailoverMode(undefined), 'auto');
    assert.equal(parseFailoverMode('same-model'), 'same-model');
    assert.equal(parseFailoverMode(' OFF '), 'off');
    assert.equal(parseFailoverMode(['off', 'same-model']), 'off');
    assert.equal(parseFailoverMode(Buffer.from('same-model')), 'same-model');
    for (const bad of ['', 'on', 'auto', 'same_model']) {
      assert.throws(
        () => parseFailoverMode(bad),
        (e: unknown) => e instanceof TeiplexError && e.code === 'BAD_REQUEST' && /x-teiplex-failover: '.*' is not a failover mode; allowed: 'same-model', 'off'/.test(e.message),
        bad,
      );
    }
  });

  test('a model moves unless off; an instance only with same-model', () => {
    assert.equal(mayMove('model', 'auto'), true);
    assert.equal(mayMove('model', 'same-model'), true);
    assert.equal(mayMove('model', 'off'), false);
    assert.equal(mayMove('instance', 'auto'), false);
    assert.equal(mayMove('instance', 'same-model'), true);
    assert.equal(mayMove('instance', 'off'), false);
  });

  test('disabled in the config: nothing moves', () => {
    const { failover } = failoverOver([], { enabled: false, budget_percent: 100, min_retry_concurrency: 10 });
    assert.equal(failover.allows('model', 'auto'), false);
    assert.equal(failover.allows('instance', 'same-model'), false);
  });
});

describe('failover: the budget', () => {
  test('max(min_retry_concurrency, budget_percent % of the calls in flight), rounded down', () => {
    assert.equal(retryLimit({ budget_percent: 20, min_retry_concurrency: 3 }, 0), 3);
    assert.equal(retryLimit({ budget_percent: 20, min_retry_concurrency: 3 }, 19), 3);
    assert.equal(retryLimit({ budget_percent: 20, min_retry_concurrency: 3 }, 20), 4);
    assert.equal(retryLimit({ budget_percent: 20, min_retry_concurrency: 3 }, 24), 4);
    assert.equal(retryLimit({ budget_percent: 20, min_retry_concurrency: 3 }, 25), 5);
    assert.equal(retryLimit({ budget_percent: 0, min_retry_concurrency: 0 }, 1000), 0);
    assert.equal(retryLimit({ budget_percent: 100, min_retry_concurrency: 0 }, 7), 7);
  });

  test('retries in flight up to the limit; a slot given back (once) makes room again', () => {
    const a = inst('a', 'm');
    const b = inst('b', 'm');
    const { failover } = failoverOver([a, b], { enabled: true, budget_percent: 0, min_retry_concurrency: 2 });
    const r1 = failover.reroute('model_id:m', [a, b], [a]);
    const r2 = failover.reroute('model_id:m', [a, b], [a]);
    assert.equal(r1?.instance.name, 'b');
    assert.equal(r2?.instance.name, 'b');
    assert.equal(failover.active, 2);
    assert.equal(failover.reroute('model_id:m', [a, b], [a]), undefined, 'the third is refused');
    r1!.done();
    r1!.done();
    assert.equal(failover.active, 1, 'done twice gives back one slot');
    assert.equal(failover.reroute('model_id:m', [a, b], [a])?.instance.name, 'b');
    assert.deepEqual(
      failover.outcomes().sort((x, y) => x.outcome.localeCompare(y.outcome)),
      [
        { model_id: 'm', outcome: 'budget_exhausted', n: 1 },
        { model_id: 'm', outcome: 'retried', n: 3 },
      ],
    );
  });

  test('the calls in flight raise the limit', () => {
    const a = inst('a', 'm');
    const b = inst('b', 'm');
    const { failover, inflight } = failoverOver([a, b], { enabled: true, budget_percent: 50, min_retry_concurrency: 0 });
    assert.equal(failover.reroute('k', [a, b], [a]), undefined, 'nothing in flight: 0 retries allowed');
    inflight.begin('a');
    inflight.begin('b');
    assert.equal(inflight.total(), 2);
    assert.equal(failover.reroute('k', [a, b], [a])?.instance.name, 'b', '50 % of 2: one retry');
    assert.equal(failover.reroute('k', [a, b], [a]), undefined);
    inflight.end('a');
    inflight.end('a');
    assert.equal(inflight.total(), 1, 'an end without a begin does not count');
  });
});

describe('failover: where a retry goes', () => {
  test('another serving replica of the same model_id, never one tried; none -> no_other_replica', () => {
    const a = inst('a', 'm');
    const b = inst('b', 'm', 'stopping');
    const c = inst('c', 'other');
    const d = inst('d', 'm');
    const { failover } = failoverOver([a, b, c, d]);
    assert.equal(failover.reroute('alias:x', [a, b, c, d], [a])?.instance.name, 'd');
    assert.equal(failover.reroute('alias:x', [a, b, c, d], [a, d]), undefined, 'b is not serving, c is another model');
    assert.equal(failover.reroute('alias:x', [a], [a]), undefined);
    assert.deepEqual(
      failover.outcomes().filter((o) => o.outcome === 'no_other_replica'),
      [{ model_id: 'm', outcome: 'no_other_replica', n: 2 }],
    );
  });

  test('target.ts pick and choose skip excluded names', () => {
    const a = inst('a', 'm');
    const b = inst('b', 'm');
    const inflight = new Inflight();
    const resolver = new TargetResolver({ list: () => [a, b], find: () => undefined }, inflight);
    for (let k = 0; k < 4; k++) assert.equal(resolver.pick('k', [a, b], new Set(['a']))?.name, 'b');
    assert.equal(resolver.pick('k', [a, b], new Set(['a', 'b'])), undefined);
    assert.equal(resolver.choose({ kind: 'instance_name', key: 'instance:a', asked: "instance 'a'", instances: [a] }, new Set(['a'])), undefined);
    assert.equal(resolver.choose({ kind: 'instance_name', key: 'instance:a', asked: "instance 'a'", instances: [a] })?.name, 'a');
  });
});

describe('failover: the Arrow rows', () => {
  test('a child gone after answering some rows: its rows not answered may move; a status it sent may not', () => {
    const dropped = statusObject(grpc.status.UNAVAILABLE, 'Connection dropped: socket hang up');
    assert.equal(retryableRows(childFailure(dropped, "instance 'a'")), true);
    assert.equal(retryable(childFailure(dropped, "instance 'a'")), false, 'the unary rule wants no headers seen');
    const fromChild: ChildStatus = { ...statusObject(grpc.status.UNAVAILABLE, 'busy'), trailers: { 'grpc-status': '14' } };
    assert.equal(retryableRows(childFailure(fromChild, "instance 'a'")), false);
    assert.equal(retryableRows(childFailure(statusObject(grpc.status.INTERNAL, 'x'), "instance 'a'")), false);
    assert.equal(retryableRows(notServing(inst('a', 'm', 'stopped'))), true);
  });
});
