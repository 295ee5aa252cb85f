/**
 * The restart back-off (src/supervisor/backoff.ts) and the manual clock it is tested with: delays
 * double from the initial one up to the cap, a quiet stretch resets them, keys are independent.
 * Time moves only by hand: nothing here sleeps.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../../src/common/manual-clock.js';
import { Backoff } from '../../src/supervisor/backoff.js';

test('back-off: 100, 200, 400, 400 ms (initial 100, cap 400), then 100 again after the quiet period', () => {
  const clock = new ManualClock();
  const b = new Backoff({ initialMs: 100, maxMs: 400, resetAfterMs: 10_000, clock });
  const seen: number[] = [];
  for (let i = 0; i < 4; i++) {
    seen.push(b.next('a'));
    clock.advance(500);
  }
  assert.deepEqual(seen, [100, 200, 400, 400]);
  assert.equal(b.failures('a'), 4);
  // Quiet, but not long enough: the delay stays capped.
  clock.advance(9_000);
  assert.equal(b.next('a'), 400);
  clock.advance(10_000);
  assert.equal(b.next('a'), 100, 'a quiet stretch of resetAfterMs starts again at the initial delay');
  assert.equal(b.next('a'), 200);
});

test('back-off: keys are independent; reset forgets one; a factor other than 2', () => {
  const clock = new ManualClock();
  const b = new Backoff({ initialMs: 1000, maxMs: 60_000, factor: 3, clock });
  assert.equal(b.next('x'), 1000);
  assert.equal(b.next('x'), 3000);
  assert.equal(b.next('y'), 1000);
  assert.equal(b.next('x'), 9000);
  b.reset('x');
  assert.equal(b.next('x'), 1000);
  assert.equal(b.next('y'), 3000);
  // Without resetAfterMs nothing resets by itself.
  clock.advance(1e9);
  assert.equal(b.next('y'), 9000);
  assert.throws(() => new Backoff({ initialMs: 1, maxMs: 1, factor: 0.5 }), RangeError);
});

test('back-off: the quiet stretch counts from quietFrom (readiness), not while nothing was quiet', () => {
  const clock = new ManualClock();
  const b = new Backoff({ initialMs: 100, maxMs: 400, resetAfterMs: 1000, clock });
  assert.equal(b.next(), 100);
  // A new attempt that never got ready: no quiet stretch, however long it took to fail.
  b.quietFrom('', null);
  clock.advance(5000);
  assert.equal(b.next(), 200);
  // Ready at some point, then ran 999 ms: not yet reset.
  b.quietFrom('', null);
  clock.advance(3000);
  b.quietFrom('');
  clock.advance(999);
  assert.equal(b.next(), 400);
  b.quietFrom('', null);
  clock.advance(10);
  b.quietFrom('');
  clock.advance(1000);
  assert.equal(b.next(), 100);
});

test('manual clock: timers run in due order as time is advanced, each at its own time; cleared ones never', () => {
  const clock = new ManualClock(0);
  const ran: Array<[string, number]> = [];
  clock.setTimeout(() => ran.push(['b', clock.now()]), 200);
  const c = clock.setTimeout(() => ran.push(['c', clock.now()]), 150);
  clock.setTimeout(() => {
    ran.push(['a', clock.now()]);
    clock.setTimeout(() => ran.push(['a2', clock.now()]), 50);
  }, 100);
  clock.clearTimeout(c);
  clock.advance(160);
  assert.deepEqual(ran, [['a', 100], ['a2', 150]]);
  assert.equal(clock.now(), 160);
  clock.advance(1000);
  assert.deepEqual(ran.map(([n]) => n), ['a', 'a2', 'b']);
  assert.equal(clock.timers, 0);
});

test('back-off: refuses negative or NaN delays and a factor below 1, naming the option; accepts 0 delays and factor 1', () => {
  const delays = /^Backoff: initialMs and maxMs must be >= 0$/;
  assert.throws(() => new Backoff({ initialMs: -1, maxMs: 100 }), { name: 'RangeError', message: delays });
  assert.throws(() => new Backoff({ initialMs: 100, maxMs: -1 }), { name: 'RangeError', message: delays });
  assert.throws(() => new Backoff({ initialMs: Number.NaN, maxMs: 100 }), { name: 'RangeError', message: delays });
  assert.throws(() => new Backoff({ initialMs: 100, maxMs: Number.NaN }), { name: 'RangeError', message: delays });
  assert.throws(() => new Backoff({ initialMs: 1, maxMs: 1, factor: 0.99 }), { name: 'RangeError', message: /^Backoff: factor must be >= 1$/ });
  const zero = new Backoff({ initialMs: 0, maxMs: 0, clock: new ManualClock() });
  assert.deepEqual([zero.next(), zero.next()], [0, 0], 'no delay at all is allowed');
  const flat = new Backoff({ initialMs: 50, maxMs: 1000, factor: 1, clock: new ManualClock() });
  assert.deepEqual([flat.next(), flat.next(), flat.next()], [50, 50, 50], 'factor 1: the same delay every time');
});

test('back-off: the key defaults to one shared key in next, failures, quietFrom and reset', () => {
  const clock = new ManualClock();
  const b = new Backoff({ initialMs: 100, maxMs: 1000, resetAfterMs: 1000, clock });
  assert.equal(b.failures(), 0);
  b.next();
  b.next();
  assert.equal(b.failures(), 2);
  assert.equal(b.failures(''), 2, 'the default key is the empty one');
  b.quietFrom(undefined, null);
  clock.advance(5000);
  assert.equal(b.next(), 400, 'quietFrom() with null on the default key: no quiet stretch, no reset');
  b.quietFrom();
  clock.advance(1000);
  assert.equal(b.next(), 100, 'quietFrom() on the default key starts the quiet stretch now');
  b.next();
  b.reset();
  assert.equal(b.failures(), 0);
  assert.equal(b.next(), 100, 'reset() forgets the default key');
});
