/**
 * throughCache (src/routing/cached-engine.ts) over the real EmbeddingCache: a text that one
 * request is computing is not computed again by a request that asks for it meanwhile (it waits
 * for that answer); a failed computation leaves its waiters to compute it themselves; a large
 * computation (over COALESCE_MAX_INPUTS) is not waited for. `compute` is the test's own function
 * (it stands for the child call), so the order of events is the test's, not a timer's.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COALESCE_MAX_INPUTS, throughCache } from '../../src/routing/cached-engine.js';
import { EmbeddingCache } from '../../src/routing/embedding-cache.js';
import { TeiplexError } from '../../src/common/errors.js';

const PREFIX = 'model\u0000d1:\u0000';

/** A compute function whose calls are recorded and answered when the test says. */
function controlled() {
  const calls: Array<{ keys: string[]; resolve: () => void; reject: (e: unknown) => void }> = [];
  const make = (keys: string[]) => async (missing: number[]) => {
    const asked = missing.map((k) => keys[k]!);
    await new Promise<void>((resolve, reject) => calls.push({ keys: asked, resolve, reject }));
    return { values: asked.map((t) => Float32Array.of(t.length, t.charCodeAt(0))) };
  };
  return { calls, make };
}

const ask = (cache: EmbeddingCache, keys: string[], compute: (missing: number[]) => Promise<{ values: Float32Array[] }>) =>
  throughCache(cache, PREFIX, keys.length, (k) => keys[k]!, (k) => k, compute);

const tick = () => new Promise<void>((r) => setImmediate(r));

test('a text in flight is waited for, not computed again; the waiter gets the very answer', async () => {
  const cache = new EmbeddingCache(1 << 20);
  const c = controlled();
  const a = ['one', 'two', 'three'];
  const b = ['two', 'four'];
  const first = ask(cache, a, c.make(a));
  await tick();
  const second = ask(cache, b, c.make(b));
  await tick();
  assert.deepEqual(c.calls.map((x) => x.keys), [['one', 'two', 'three'], ['four']], "'two' is not computed twice");
  c.calls[1]!.resolve();
  c.calls[0]!.resolve();
  const [ra, rb] = await Promise.all([first, second]);
  assert.equal(ra.computed, 3);
  assert.equal(rb.computed, 1, 'the waited-for text is not counted as computed');
  assert.equal(rb.entries[0]!.value, ra.entries[1]!.value, 'the same answer object');
  assert.equal(cache.inFlight(`${PREFIX}two`), undefined, 'nothing left in flight');
});

test("a failed computation: its waiters compute the text themselves; the failure stays the first request's", async () => {
  const cache = new EmbeddingCache(1 << 20);
  const c = controlled();
  const a = ['alpha', 'beta'];
  const b = ['beta'];
  const first = ask(cache, a, c.make(a));
  await tick();
  const second = ask(cache, b, c.make(b));
  await tick();
  assert.equal(c.calls.length, 1, 'the second request waits');
  c.calls[0]!.reject(new TeiplexError('BACKEND', 'the child went away'));
  await assert.rejects(first, /the child went away/);
  await tick();
  assert.deepEqual(c.calls[1]?.keys, ['beta'], 'computed again by the waiter');
  c.calls[1]!.resolve();
  const rb = await second;
  assert.equal(rb.computed, 1);
  assert.ok(cache.get(`${PREFIX}beta`), 'and kept');
});

test('a computation of more than COALESCE_MAX_INPUTS texts is not waited for', async () => {
  const cache = new EmbeddingCache(1 << 24);
  const c = controlled();
  const big = Array.from({ length: COALESCE_MAX_INPUTS + 1 }, (_, i) => `text ${i}`);
  const first = ask(cache, big, c.make(big));
  await tick();
  const second = ask(cache, ['text 7'], c.make(['text 7']));
  await tick();
  assert.deepEqual(c.calls[1]?.keys, ['text 7'], 'computed at once, not after the large job');
  c.calls[1]!.resolve();
  assert.equal((await second).computed, 1);
  c.calls[0]!.resolve();
  assert.equal((await first).computed, COALESCE_MAX_INPUTS + 1);
});

test('without the cache (an instance that opted out) nothing is shared between requests', async () => {
  const cache = new EmbeddingCache(1 << 20);
  const c = controlled();
  const first = throughCache(cache, undefined, 1, () => 'same', (k) => k, c.make(['same']));
  await tick();
  const second = throughCache(cache, undefined, 1, () => 'same', (k) => k, c.make(['same']));
  await tick();
  assert.equal(c.calls.length, 2);
  for (const x of c.calls) x.resolve();
  await Promise.all([first, second]);
  assert.equal(cache.size, 0);
});
