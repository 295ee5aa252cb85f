/**
 * The instance state machine (src/supervisor/instance-state.ts): the transitions it allows, pinned
 * pair by pair, which states serve and which may have a process, and StateMachine refusing a
 * change that is not listed (state unchanged, no callback).
 */
import assert from 'node:assert/strict';
import test from 'node:test';
import {
  canServe,
  canTransition,
  hasProcess,
  INSTANCE_STATES,
  StateMachine,
  TransitionError,
  type InstanceState,
} from '../../src/supervisor/instance-state.js';

/** The allowed transitions, as the comments of the table describe them. */
const EXPECTED: Record<InstanceState, readonly InstanceState[]> = {
  stopped: ['starting'],
  starting: ['running', 'stopping', 'backoff', 'failed', 'stopped'],
  running: ['unhealthy', 'stopping', 'backoff', 'failed', 'stopped'],
  unhealthy: ['running', 'stopping', 'backoff', 'failed', 'stopped'],
  stopping: ['stopped', 'starting', 'backoff'],
  backoff: ['starting', 'stopped', 'failed'],
  failed: ['starting', 'stopped'],
};

test('instance states: exactly the listed transitions are allowed, every other pair refused', () => {
  assert.deepEqual([...INSTANCE_STATES].sort(), Object.keys(EXPECTED).sort());
  for (const from of INSTANCE_STATES) {
    for (const to of INSTANCE_STATES) {
      assert.equal(canTransition(from, to), EXPECTED[from].includes(to), `${from} -> ${to}`);
    }
  }
});

test('instance states: only running and unhealthy serve; starting, running, unhealthy and stopping may have a process', () => {
  assert.deepEqual(INSTANCE_STATES.filter(canServe), ['running', 'unhealthy']);
  assert.deepEqual(INSTANCE_STATES.filter(hasProcess), ['starting', 'running', 'unhealthy', 'stopping']);
});

test('StateMachine: a listed change is made and reported with its reason; an unlisted one throws TransitionError, nothing changed', () => {
  const seen: string[] = [];
  const m = new StateMachine('stopped', (from, to, reason) => seen.push(`${from}->${to}:${reason}`));
  assert.equal(m.state, 'stopped');
  m.transition('starting', 'start requested');
  m.transition('running', 'ready');
  assert.equal(m.state, 'running');
  assert.deepEqual(seen, ['stopped->starting:start requested', 'starting->running:ready']);
  assert.throws(
    () => m.transition('starting', 'not from running'),
    (e: unknown) =>
      e instanceof TransitionError &&
      e.from === 'running' &&
      e.to === 'starting' &&
      e.name === 'TransitionError' &&
      e.message === 'instance cannot go from running to starting',
  );
  assert.equal(m.state, 'running', 'a refused change leaves the state as it was');
  assert.equal(seen.length, 2, 'and reports nothing');
});

test('StateMachine: starts stopped by default; sinceMs counts from the last change', () => {
  const m = new StateMachine();
  assert.equal(m.state, 'stopped');
  assert.throws(() => m.transition('running', 'not from stopped'), TransitionError);
  const before = Date.now();
  m.transition('starting', 'start');
  const since = m.sinceMs;
  assert.ok(since >= 0 && since <= Date.now() - before, `sinceMs ${since} is the time since the transition`);
});
