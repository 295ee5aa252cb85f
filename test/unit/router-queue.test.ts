/**
 * The batching queue on its own, with a small in-process executor that records every batch (the
 * engine tests run the same queue against ONNX Runtime).
 */
import assert from 'node:assert/strict';
import test from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { TeiplexError } from '../../src/common/errors.js';
import { BatchQueue, planCuts, type BatchExecutor, type QueueLimits } from '../../src/router/queue.js';
import { elapse, until } from '../helpers/wait.js';

interface Item {
  length: number;
  id: number;
}

class Recorder implements BatchExecutor<Item, Item[], string> {
  batches: Item[][] = [];
  /** What happened, in order: `prepare k` (the k-th prepare), `start k` / `end k` (the k-th run). */
  events: string[] = [];
  private prepares = 0;
  failNext = false;
  constructor(private readonly msPerToken = 0.01) {}
  prepare(items: readonly Item[]): Item[] {
    this.events.push(`prepare ${this.prepares++}`);
    return [...items];
  }
  async run(items: Item[], free: () => void): Promise<string[]> {
    const k = this.batches.length;
    this.batches.push(items);
    this.events.push(`start ${k}`);
    const longest = Math.max(...items.map((i) => i.length));
    await elapse(1 + longest * items.length * this.msPerToken, 'simulated compute');
    this.events.push(`end ${k}`);
    if (this.failNext) {
      this.failNext = false;
      throw new Error('boom');
    }
    free();
    return items.map((i) => `r${i.id}`);
  }
}

function queue(limits: Partial<QueueLimits>, ex: Recorder): BatchQueue<Item, Item[], string> {
  return new BatchQueue<Item, Item[], string>({ maxConcurrentRequests: 512, maxBatchTokens: 16384, batchOverheadTokens: 8, ...limits }, ex);
}

/** Lets every callback already due run: pending microtasks and the queue's setImmediate ticks (a few turns deep). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await turn();
}

/** One request of `lengths.length` inputs: admit, enqueue, wait, release. */
async function request(q: BatchQueue<Item, Item[], string>, ids: number[], lengths: number[]): Promise<string[]> {
  const permit = q.admit(ids.length);
  try {
    const answers = await Promise.all(q.enqueue(permit, ids.map((id, k) => ({ id, length: lengths[k] }))));
    return answers.map((a) => a.result);
  } finally {
    permit.release();
  }
}

test('planCuts splits sorted lengths where padding costs more than a batch', () => {
  const lim = { maxBatchTokens: 1e9, batchOverheadTokens: 8, attentionScale: Infinity };
  assert.deepEqual(planCuts([4, 4, 4, 4, 100, 100], lim), [0, 4, 6]);
  assert.deepEqual(planCuts([10, 10, 11, 11], lim), [0, 4], 'a little padding is cheaper than another batch');
  assert.equal(planCuts([5, 5, 5, 5, 5], { ...lim, maxBatchRequests: 2 }).length, 4, 'three batches of at most two');
  assert.equal(planCuts([50, 50, 50], { ...lim, maxBatchTokens: 100 }).length, 3, 'two batches: 100 tokens at most each');
  assert.deepEqual(planCuts([500], { ...lim, maxBatchTokens: 100 }), [0, 1], 'an input longer than the token budget still runs, alone');
  assert.deepEqual(planCuts([], lim), [0]);
});

test('every request gets its own results, in order, under concurrency', async () => {
  const ex = new Recorder();
  const q = queue({}, ex);
  let next = 0;
  const reqs = Array.from({ length: 100 }, (_, r) => {
    const n = 1 + (r % 4);
    const ids = Array.from({ length: n }, () => next++);
    const lengths = ids.map((id) => 1 + ((id * 37) % 60));
    return { ids, p: request(q, ids, lengths) };
  });
  for (const { ids, p } of reqs) assert.deepEqual(await p, ids.map((id) => `r${id}`));
  const seen = ex.batches.flat().map((i) => i.id).sort((a, b) => a - b);
  assert.deepEqual(seen, Array.from({ length: next }, (_, i) => i), 'each entry ran exactly once');
  assert.equal(q.stats.items, next);
  assert.equal(q.inFlight, 0);
});

test('inputs of similar length are grouped: fewer padded tokens than first-come batches', async () => {
  const ex = new Recorder();
  const q = queue({ maxBatchRequests: 8 }, ex);
  // Interleaved short and long inputs, as 16 concurrent single-input requests.
  const lengths = Array.from({ length: 16 }, (_, i) => (i % 4 === 0 ? 120 : 6 + (i % 3)));
  await Promise.all(lengths.map((len, i) => request(q, [i], [len])));
  // First come, first served in batches of 8: every batch holds a 120 -> 16 * 120 padded tokens.
  const fifo = 16 * 120;
  assert.ok(q.stats.paddedTokens < fifo / 2, `padded ${q.stats.paddedTokens} vs fifo ${fifo}`);
  assert.equal(q.stats.realTokens, lengths.reduce((a, b) => a + b, 0));
  for (const b of ex.batches) {
    const ls = b.map((i) => i.length);
    const longs = ls.filter((l) => l === 120).length;
    assert.ok(longs === 0 || longs === ls.length, `mixed batch ${ls.join(',')}`);
  }
});

test('batches respect max_batch_tokens and max_batch_requests', async () => {
  const ex = new Recorder(0.001);
  const q = queue({ maxBatchTokens: 256, maxBatchRequests: 5 }, ex);
  await Promise.all(Array.from({ length: 60 }, (_, i) => request(q, [i], [1 + ((i * 13) % 64)])));
  for (const b of ex.batches) {
    const longest = Math.max(...b.map((i) => i.length));
    assert.ok(b.length <= 5, `batch of ${b.length}`);
    assert.ok(b.length * longest <= 256, `batch ${b.length} x ${longest}`);
  }
});

test('admission: one permit per input; over the limit is MODEL_OVERLOADED, and permits come back', async () => {
  const ex = new Recorder();
  const q = queue({ maxConcurrentRequests: 4 }, ex);
  const a = q.admit(3);
  assert.throws(() => q.admit(2), (e: unknown) => e instanceof TeiplexError && e.code === 'MODEL_OVERLOADED' && e.message === 'Model is overloaded');
  const b = q.admit(1);
  a.release();
  a.release(); // idempotent
  b.release();
  assert.equal(q.inFlight, 0);
  assert.throws(() => q.admit(5), (e: unknown) => e instanceof TeiplexError && e.code === 'MODEL_OVERLOADED');
  assert.deepEqual(await request(q, [1, 2, 3, 4], [3, 3, 3, 3]), ['r1', 'r2', 'r3', 'r4']);
});

test('a failing batch answers each of its entries with an error; the queue keeps serving', async () => {
  const ex = new Recorder();
  const q = queue({}, ex);
  ex.failNext = true;
  await assert.rejects(request(q, [1, 2], [5, 5]), (e: unknown) => e instanceof TeiplexError && e.code === 'BACKEND' && /boom/.test(e.message));
  assert.deepEqual(await request(q, [3], [5]), ['r3']);
  assert.equal(q.inFlight, 0);
});

test('a prepare that throws fails its entries only', async () => {
  let throwOnce = true;
  const ex = new Recorder();
  const q = new BatchQueue<Item, Item[], string>(
    { maxConcurrentRequests: 8, maxBatchTokens: 1000 },
    {
      prepare: (items) => {
        if (throwOnce) {
          throwOnce = false;
          throw new Error('bad tensors');
        }
        return ex.prepare(items);
      },
      run: (p, free) => ex.run(p, free),
    },
  );
  await assert.rejects(request(q, [1], [4]), (e: unknown) => e instanceof TeiplexError && e.code === 'BACKEND' && /bad tensors/.test(e.message));
  assert.deepEqual(await request(q, [2], [4]), ['r2']);
});

test('the next batch is prepared while the current one runs', async () => {
  const ex = new Recorder(0.5); // slow batches
  const q = queue({ maxBatchRequests: 1 }, ex);
  await Promise.all([0, 1, 2].map((i) => request(q, [i], [10])));
  assert.equal(ex.batches.length, 3);
  // Batch k+1 was prepared before batch k finished.
  const at = (e: string): number => ex.events.indexOf(e);
  for (let k = 0; k + 1 < 3; k++) assert.ok(at(`prepare ${k + 1}`) < at(`end ${k}`), `prepare ${k + 1} before end ${k}: ${ex.events.join(', ')}`);
});

test('an idle model waits for inputs still being tokenized, then runs them together', async () => {
  const ex = new Recorder();
  const q = queue({ maxGatherMs: 60_000 }, ex);
  const permit = q.admit(3);
  const first = q.enqueue(permit, [{ id: 0, length: 4 }]);
  // The other two are "still tokenizing": the queue has looked at its lone entry and held it back.
  await settle();
  assert.equal(ex.batches.length, 0, 'the idle model waits for the admitted inputs still to come');
  const rest = q.enqueue(permit, [{ id: 1, length: 4 }, { id: 2, length: 4 }]);
  const out = await Promise.all([...first, ...rest]);
  permit.release();
  assert.deepEqual(out.map((a) => a.result), ['r0', 'r1', 'r2']);
  assert.equal(ex.batches.length, 1, 'one batch of three');
  assert.equal(out[0].batchSize, 3);
});

test('the gather wait is bounded: a lone input runs after maxGatherMs, not before', async () => {
  const ex = new Recorder();
  const q = queue({ maxGatherMs: 20 }, ex);
  const permit = q.admit(2); // the second input never comes
  let answer: Awaited<ReturnType<typeof q.enqueue>[number]> | undefined;
  void Promise.all(q.enqueue(permit, [{ id: 0, length: 4 }])).then(([a]) => (answer = a));
  const a = await until('the lone input to run once the gather wait is over', () => answer, { timeoutMs: 30_000 });
  assert.equal(a.result, 'r0');
  assert.equal(ex.batches.length, 1);
  // It did wait: it was queued for the gather time (timers may fire up to 1 ms early).
  assert.ok(a.queueTimeNs >= 19_000_000n, `queued ${a.queueTimeNs} ns`);
  permit.release();
});

test('close stops admitting and waits for work in flight', async () => {
  // A batch that runs until the test lets it finish.
  let finish!: () => void;
  const gate = new Promise<void>((r) => (finish = r));
  let started = 0;
  const q = new BatchQueue<Item, Item[], string>(
    { maxConcurrentRequests: 8, maxBatchTokens: 1000 },
    {
      prepare: (items) => [...items],
      run: async (items) => {
        started++;
        await gate;
        return items.map((i) => `r${i.id}`);
      },
    },
  );
  let answered = false;
  const p = request(q, [1, 2], [20, 20]).then((r) => ((answered = true), r));
  await until('the batch to start', () => started === 1);
  let closed = false;
  const closing = q.close().then(() => (closed = true));
  assert.throws(() => q.admit(1), (e: unknown) => e instanceof TeiplexError && e.code === 'UNHEALTHY');
  await settle();
  assert.equal(closed, false, 'close has not settled while the batch is in flight');
  finish();
  assert.deepEqual(await p, ['r1', 'r2']);
  await until('close to settle once the work is answered', () => closed);
  assert.ok(answered);
  await closing;
});

test('queue and inference times are reported per entry', async () => {
  const ex = new Recorder(0.1);
  const q = queue({}, ex);
  const permit = q.admit(1);
  const t0 = process.hrtime.bigint();
  const [a] = await Promise.all(q.enqueue(permit, [{ id: 7, length: 10 }]));
  const wall = process.hrtime.bigint() - t0;
  permit.release();
  // The run took its simulated 2 ms of compute (timers may fire up to 1 ms early) ...
  assert.ok(a.inferenceTimeNs >= 1_000_000n, `inference ${a.inferenceTimeNs} ns`);
  assert.ok(a.queueTimeNs >= 0n, `queue ${a.queueTimeNs} ns`);
  // ... and the two parts fit in the time the caller waited: they are not counted from elsewhere.
  assert.ok(a.queueTimeNs + a.inferenceTimeNs <= wall, `queue ${a.queueTimeNs} + inference ${a.inferenceTimeNs} ns within ${wall} ns`);
  assert.equal(a.batchSize, 1);
});

test('whenCapacity: waiters woken in order as permits free; too large or closed rejects', async () => {
  const { BatchQueue, OverloadedError } = await import('../../src/router/queue.js');
  const q = new BatchQueue<{ length: number }, null, number>(
    { maxConcurrentRequests: 4, maxBatchTokens: 1000, batchOverheadTokens: 1, maxGatherMs: 0 } as never,
    { prepare: () => null, run: async (items: readonly { length: number }[]) => items.map(() => 1) } as never,
  );
  const p = q.admit(4);
  assert.throws(() => q.admit(1), (e: unknown) => e instanceof OverloadedError && e.requested === 1);
  const order: string[] = [];
  const a = q.whenCapacity(3).then(() => order.push('a'));
  const b = q.whenCapacity(1).then(() => order.push('b'));
  await settle();
  assert.deepEqual(order, [], 'nobody woken while full');
  p.release();
  await Promise.all([a, b]);
  assert.deepEqual(order, ['a', 'b']);
  await assert.rejects(q.whenCapacity(5), (e: unknown) => e instanceof OverloadedError && e.code === 'MODEL_OVERLOADED' && e.requested === 5);
  q.admit(4);
  const c = q.whenCapacity(1);
  void q.close();
  await assert.rejects(c, (e: unknown) => e instanceof TeiplexError && e.code === 'UNHEALTHY' && /shutting down/.test(e.message));
});
