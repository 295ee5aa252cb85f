/**
 * The child's input window in lanes (src/child/input-budget.ts), with explicit steps and a fake
 * clock: interactive before bulk, a bulk waiter older than the ageing bound before a newer
 * interactive one, an aborted waiter leaves the line, the window and the bulk lane's bound hold.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CallScope } from '../../src/child/call-scope.js';
import { Budget, type LaneObserver } from '../../src/child/input-budget.js';
import { laneOf, type Lane } from '../../src/child/lane.js';
import { TeiplexError } from '../../src/common/errors.js';

function clock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

/** A scope without deadline. */
function scope(signal?: AbortSignal): CallScope {
  return new CallScope(Infinity, undefined, signal);
}

/** Start acquiring; `order` records grants by label. */
function waiter(b: Budget, n: number, lane: Lane, label: string, order: string[], signal?: AbortSignal): Promise<void> {
  return b.acquire(n, scope(signal), lane).then(() => {
    order.push(label);
  });
}

/** Let granted promises run their continuations. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

test('interactive waiters go before bulk waiters that came earlier (within the ageing bound)', async () => {
  const c = clock();
  const b = new Budget(4, { agingMs: 2000, now: c.now });
  await b.acquire(4, scope(), 'bulk');
  const order: string[] = [];
  const p = [waiter(b, 2, 'bulk', 'bulk1', order), waiter(b, 2, 'bulk', 'bulk2', order)];
  c.advance(10);
  p.push(waiter(b, 2, 'interactive', 'int1', order), waiter(b, 2, 'interactive', 'int2', order));
  b.release(4, 'bulk');
  await settle();
  assert.deepEqual(order, ['int1', 'int2']);
  assert.equal(b.inUse, 4);
  b.release(2);
  b.release(2);
  await Promise.all(p);
  assert.deepEqual(order, ['int1', 'int2', 'bulk1', 'bulk2']);
});

test('a bulk waiter older than the ageing bound goes before a newer interactive one, in arrival order', async () => {
  const c = clock();
  const b = new Budget(2, { agingMs: 2000, now: c.now });
  await b.acquire(2, scope());
  const order: string[] = [];
  const p = [waiter(b, 2, 'bulk', 'bulk-old', order)];
  c.advance(1500);
  p.push(waiter(b, 2, 'interactive', 'int-new', order));
  c.advance(600); // the bulk waiter has now waited 2,100 ms > 2,000 ms; the interactive one 600 ms
  b.release(2);
  await settle();
  assert.deepEqual(order, ['bulk-old']);
  b.release(2, 'bulk');
  await Promise.all(p);
  assert.deepEqual(order, ['bulk-old', 'int-new']);
});

test('an aged bulk waiter does not pass an interactive one that came before it', async () => {
  const c = clock();
  const b = new Budget(1, { agingMs: 100, now: c.now });
  await b.acquire(1, scope());
  const order: string[] = [];
  const p = [waiter(b, 1, 'interactive', 'int-old', order)];
  c.advance(1);
  p.push(waiter(b, 1, 'bulk', 'bulk', order));
  c.advance(500);
  b.release(1);
  await settle();
  assert.deepEqual(order, ['int-old']);
  b.release(1);
  await Promise.all(p);
  assert.deepEqual(order, ['int-old', 'bulk']);
});

test('an aborted waiter leaves the line with the abort reason and the next one is served', async () => {
  const b = new Budget(2, { agingMs: 2000 });
  await b.acquire(2, scope());
  const order: string[] = [];
  const ac = new AbortController();
  const gone = waiter(b, 2, 'interactive', 'gone', order, ac.signal);
  const next = waiter(b, 2, 'bulk', 'next', order);
  assert.equal(b.waiting('interactive'), 1);
  ac.abort();
  await assert.rejects(gone, (err: unknown) => err instanceof TeiplexError && err.code === 'CANCELLED');
  assert.equal(b.waiting('interactive'), 0);
  b.release(2);
  await next;
  assert.deepEqual(order, ['next']);
  assert.equal(b.inUse, 2);
});

test('the window is never exceeded and the bulk lane holds at most its bound', async () => {
  const b = new Budget(10, { agingMs: 2000, bulkLimit: 4 });
  const order: string[] = [];
  const p: Array<Promise<void>> = [];
  for (let i = 0; i < 5; i++) p.push(waiter(b, 2, 'bulk', `b${i}`, order));
  await settle();
  assert.deepEqual(order, ['b0', 'b1']);
  assert.equal(b.bulkInUse, 4);
  // Interactive calls still find room beside the bulk lane's share.
  p.push(waiter(b, 6, 'interactive', 'i0', order));
  await settle();
  assert.deepEqual(order, ['b0', 'b1', 'i0']);
  assert.equal(b.inUse, 10);
  p.push(waiter(b, 1, 'interactive', 'i1', order));
  await settle();
  assert.equal(order.length, 3, 'a full window grants nothing');
  b.release(2, 'bulk'); // room for i1 (interactive first), and the bulk lane takes b2 only when 2 units are free
  await settle();
  assert.deepEqual(order, ['b0', 'b1', 'i0', 'i1']);
  assert.equal(b.inUse, 9);
  b.release(6);
  await settle();
  assert.deepEqual(order, ['b0', 'b1', 'i0', 'i1', 'b2']);
  assert.equal(b.bulkInUse, 4);
  for (const lane of ['bulk', 'bulk', 'bulk'] as const) {
    b.release(2, lane);
    await settle();
  }
  b.release(1);
  await Promise.all(p);
  assert.deepEqual(order, ['b0', 'b1', 'i0', 'i1', 'b2', 'b3', 'b4']);
  assert.ok(b.bulkInUse <= 4);
});

test('a share larger than the whole budget is refused at once', async () => {
  const b = new Budget(3, { agingMs: 10 });
  assert.equal(b.fits(4), false);
  await assert.rejects(b.acquire(4, scope(), 'bulk'), RangeError);
});

test('the observer is told waits per lane (0 when granted at once) and the queue depth', async () => {
  const seen: Array<[Lane, number]> = [];
  const depth = { interactive: 0, bulk: 0 };
  const observer: LaneObserver = { waited: (lane, s) => seen.push([lane, s]), queued: (lane, d) => (depth[lane] += d) };
  const c = clock();
  const b = new Budget(1, { agingMs: 2000, now: c.now, observer });
  await b.acquire(1, scope(), 'bulk');
  const p = b.acquire(1, scope(), 'interactive');
  assert.deepEqual(depth, { interactive: 1, bulk: 0 });
  c.advance(250);
  b.release(1, 'bulk');
  await p;
  assert.deepEqual(seen, [
    ['bulk', 0],
    ['interactive', 0.25],
  ]);
  assert.deepEqual(depth, { interactive: 0, bulk: 0 });
});

test('laneOf: a header names a lane, its absence the fallback, anything else INVALID_ARGUMENT naming the values', () => {
  assert.equal(laneOf(undefined, 'bulk'), 'bulk');
  assert.equal(laneOf('interactive', 'bulk'), 'interactive');
  assert.equal(laneOf(['bulk'], 'interactive'), 'bulk');
  assert.throws(
    () => laneOf('urgent', 'interactive'),
    (err: unknown) => err instanceof TeiplexError && err.code === 'BAD_REQUEST' && err.grpcStatus === 3 && /'interactive' or 'bulk'/.test(err.message),
  );
});
