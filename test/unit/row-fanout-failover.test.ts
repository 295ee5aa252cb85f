/**
 * Failover of the Arrow RPCs' Batch path (src/child/batching/row-fanout.ts with a `fallback`):
 * only the chunks whose child call failed go to the replica the fallback names, the rows keep
 * their places, the fallback is asked once per request, and a failure failover may not retry
 * (a status the child sent) ends the request. In process: two FAKE child channels that answer
 * Batch calls at once, one of them failing the chunk holding `die` as a dropped connection does
 * (UNAVAILABLE, nothing heard: `unanswered`), or as the child's own status (with trailers).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { embedRows, type TextSource } from '../../src/child/batching/row-fanout.js';
import { CallScope } from '../../src/child/call-scope.js';
import { statusObject, type ChildCallListener, type ChildStatus } from '../../src/child/child-channel.js';
import type { ChildClient } from '../../src/child/child-client.js';
import { Budget } from '../../src/child/input-budget.js';
import type { RowKind } from '../../src/child/row-kinds.js';
import { retryableRows } from '../../src/routing/failover.js';

/** Rows are `<child>:<text>` strings; requests and answers are JSON. */
const KIND = {
  name: 'dense',
  batchPath: '/fake.Batch/Embed',
  unaryPath: '/fake.Embed/Embed',
  streamPath: '/fake.Embed/EmbedStream',
  batchRequest: (inputs: string[]) => Buffer.from(JSON.stringify(inputs)),
  batchRows: (answer: Buffer) => ({ rows: JSON.parse(answer.toString()) as string[], metadata: {} }),
  rowBytes: (row: string) => row.length,
} as unknown as RowKind<string>;

/** A fake child: answers each Batch call with its name per input, or fails a chunk holding `die` with `failure`. */
function fakeChild(who: string, failure?: ChildStatus): { client: ChildClient; chunks: string[][] } {
  const chunks: string[][] = [];
  const channel = {
    maxSendBytes: 1 << 20,
    call(_path: string, _deadline: number, listener: ChildCallListener) {
      return {
        write: () => true,
        end(msg: Buffer) {
          const inputs = JSON.parse(msg.toString()) as string[];
          chunks.push(inputs);
          queueMicrotask(() => {
            if (failure !== undefined && inputs.includes('die')) return listener.onStatus(failure);
            listener.onHeaders(new grpc.Metadata());
            listener.onMessage(Buffer.from(JSON.stringify(inputs.map((t) => `${who}:${t}`))));
            listener.onStatus(statusObject(grpc.status.OK, ''));
          });
        },
        onDrain: () => undefined,
        pause: () => undefined,
        resume: () => undefined,
        cancel: () => undefined,
      };
    },
  };
  const budget = new Budget(8);
  const client = { who: `instance '${who}'`, channel, known: { batch: 'yes' }, inputBudget: async () => budget } as unknown as ChildClient;
  return { client, chunks };
}

const source = (rows: string[]): TextSource => ({
  length: rows.length,
  bytesOf: (i) => Buffer.byteLength(rows[i]),
  text: (i) => rows[i],
  slice: (s, e) => rows.slice(s, e),
});

// 10 rows in chunks of 4 (half the budget of 8): [0,4) [4,8) [8,10); `die` in the second.
const ROWS = ['r0', 'r1', 'r2', 'r3', 'r4', 'die', 'r6', 'r7', 'r8', 'r9'];
const dropped: ChildStatus = { ...statusObject(grpc.status.UNAVAILABLE, 'Connection dropped: read ECONNRESET'), unanswered: true };

describe('row fan-out failover (Batch path, fake children)', () => {
  test('only the failed chunk goes to the other replica; rows in input order', async () => {
    const a = fakeChild('a', dropped);
    const b = fakeChild('b');
    let asked = 0;
    const out = await embedRows(new CallScope(Infinity), a.client, KIND, source(ROWS), { truncate: false }, { batchWindow: 2, streamWindow: 4, chunkBytes: 1 << 20 }, undefined, (err) => {
      asked++;
      return retryableRows(err) ? b.client : undefined;
    });
    assert.equal(out.path, 'batch');
    assert.deepEqual(out.rows, ['a:r0', 'a:r1', 'a:r2', 'a:r3', 'b:r4', 'b:die', 'b:r6', 'b:r7', 'a:r8', 'a:r9']);
    assert.deepEqual(b.chunks, [['r4', 'die', 'r6', 'r7']], 'the other replica got the failed chunk only');
    assert.equal(asked, 1);
  });

  test("a status the child sent is not moved: the request fails with it, naming the chunk's rows", async () => {
    const busy: ChildStatus = { ...statusObject(grpc.status.UNAVAILABLE, 'busy'), trailers: { 'grpc-status': '14' } };
    const a = fakeChild('a', busy);
    const b = fakeChild('b');
    await assert.rejects(
      embedRows(new CallScope(Infinity), a.client, KIND, source(ROWS), { truncate: false }, { batchWindow: 1, streamWindow: 4, chunkBytes: 1 << 20 }, undefined, (err) => (retryableRows(err) ? b.client : undefined)),
      (err: Error) => /instance 'a'.*busy/.test(err.message),
    );
    assert.deepEqual(b.chunks, []);
  });

  test('a chunk that fails on the other replica too is not moved again', async () => {
    const a = fakeChild('a', dropped);
    const b = fakeChild('b', dropped);
    const c = fakeChild('c');
    let asked = 0;
    await assert.rejects(
      embedRows(new CallScope(Infinity), a.client, KIND, source(ROWS), { truncate: false }, { batchWindow: 1, streamWindow: 4, chunkBytes: 1 << 20 }, undefined, () => {
        asked++;
        return asked === 1 ? b.client : c.client;
      }),
      (err: Error) => /instance 'b'.*Connection dropped/.test(err.message),
    );
    assert.equal(asked, 1, 'the fallback is not asked for the retried chunk');
    assert.deepEqual(c.chunks, []);
  });
});
