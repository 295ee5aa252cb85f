/**
 * The catalog model state machine (src/catalog/model-state.ts): every state reachable, none a
 * dead end, changes the table does not list refused with the state left alone, and the state a
 * model shows derived from its activity and its replicas' statuses.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canTransition, deriveModelState, eventOf, MODEL_STATES, ModelStateMachine, ModelTransitionError, type ModelState } from '../../src/catalog/model-state.js';

test('model states: every state reachable from available, and every state has a way out (none is terminal)', () => {
  const seen = new Set<ModelState>(['available']);
  const queue: ModelState[] = ['available'];
  while (queue.length > 0) {
    const from = queue.shift()!;
    for (const to of MODEL_STATES) {
      if (canTransition(from, to) && !seen.has(to)) {
        seen.add(to);
        queue.push(to);
      }
    }
  }
  assert.deepEqual([...seen].sort(), [...MODEL_STATES].sort());
  for (const s of MODEL_STATES) assert.ok(MODEL_STATES.some((t) => canTransition(s, t)), `${s} is a dead end`);
  // And back: available is reachable from every state (a model can always be used again).
  for (const s of MODEL_STATES) {
    const back = new Set<ModelState>([s]);
    const q: ModelState[] = [s];
    while (q.length > 0) {
      const from = q.shift()!;
      for (const to of MODEL_STATES) {
        if (canTransition(from, to) && !back.has(to)) {
          back.add(to);
          q.push(to);
        }
      }
    }
    assert.ok(back.has('available') || s === 'available', `available is not reachable from ${s}`);
  }
});

test('model states: a change the table does not list is refused and leaves the state alone; each change names its event', () => {
  const seen: string[] = [];
  const m = new ModelStateMachine((from, to, event) => seen.push(`${from}->${to}:${event}`));
  assert.equal(m.state, 'available');
  // Nothing serves without starting first.
  assert.throws(() => m.transition('loaded'), ModelTransitionError);
  assert.equal(m.state, 'available');
  m.transition('available'); // no change, no event
  m.transition('loading');
  m.transition('loaded');
  m.transition('unloading');
  m.transition('available');
  m.transition('loading');
  m.transition('failed');
  // A failed model stays failed until an explicit load clears it.
  assert.equal(eventOf('failed', 'loading'), 'load');
  m.transition('loading');
  assert.deepEqual(seen, [
    'available->loading:start',
    'loading->loaded:ready',
    'loaded->unloading:unload',
    'unloading->available:unloaded',
    'available->loading:start',
    'loading->failed:fail',
    'failed->loading:load',
  ]);
  assert.equal(canTransition('available', 'loaded'), false);
  assert.equal(eventOf('loaded', 'available'), 'down');
});

test('deriveModelState: failed, unloading, loaded, loading, available in that order of precedence', () => {
  const idle = { failed: false, unloading: false, loading: false };
  assert.equal(deriveModelState(idle, []), 'available');
  assert.equal(deriveModelState(idle, ['stopped', 'backoff', 'failed']), 'available');
  assert.equal(deriveModelState(idle, ['starting']), 'loading');
  assert.equal(deriveModelState({ ...idle, loading: true }, []), 'loading');
  assert.equal(deriveModelState(idle, ['stopping']), 'unloading');
  assert.equal(deriveModelState(idle, ['stopping', 'unhealthy']), 'loaded');
  assert.equal(deriveModelState({ ...idle, unloading: true }, ['running']), 'unloading');
  assert.equal(deriveModelState({ failed: true, unloading: true, loading: true }, ['running']), 'failed');
});

test('model states: a refused change names both states; force() takes any state, reports it without an event, and ignores a no-op', () => {
  const seen: string[] = [];
  const m = new ModelStateMachine((from, to, event) => seen.push(`${from}->${to}:${event ?? 'forced'}`));
  const refused = (() => {
    try {
      m.transition('loaded');
    } catch (e) {
      return e;
    }
    return undefined;
  })();
  assert.ok(refused instanceof ModelTransitionError);
  assert.equal(refused.name, 'ModelTransitionError');
  assert.equal(refused.message, 'a catalog model cannot go from available to loaded');
  assert.deepEqual([refused.from, refused.to], ['available', 'loaded']);
  // The catalog reports the refusal, then forces the state so what it shows stays true.
  m.force('loaded');
  assert.equal(m.state, 'loaded');
  m.force('loaded');
  assert.deepEqual(seen, ['available->loaded:forced'], 'a forced change is reported once, with no event; forcing the same state is no change');
  m.transition('unloading');
  assert.deepEqual(seen, ['available->loaded:forced', 'loaded->unloading:unload'], 'the table applies again after a forced change');
});
