/**
 * One job's chunks run to their checkpoints: at most `chunksInFlight` at once (the job's share of
 * the child serving it), each written (job-store.ts) before it counts as done. A passing failure
 * (the child overloaded or restarting, a cold start, a timeout) retries the chunk after a capped,
 * growing wait; the rows of a chunk fail only for reasons of their own (row-calls.ts). Aborting the
 * signal (the manager stopping, the job cancelled or expired) stops at once: chunks in flight are
 * not written, and a later run does them again.
 */
import type { ChunkCounts, JobStore } from './job-store.js';
import type { JobKind } from './job-kind.js';
import { passing } from './row-calls.js';
import { TeiplexError } from '../common/errors.js';

export interface RunObserver {
  /** A chunk was checkpointed. */
  chunkDone(counts: ChunkCounts): void;
  /** A chunk failed for a passing reason and waits `ms` before it is tried again. */
  chunkRetry(err: unknown, ms: number): void;
}

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 30_000;

/** Run the chunks of `kind` that `done` lacks; resolves when all are done or `signal` aborted. */
export async function runChunks(id: string, kind: JobKind, done: Map<number, ChunkCounts>, store: JobStore, chunksInFlight: number, signal: AbortSignal, observer: RunObserver): Promise<void> {
  const todo: number[] = [];
  for (let n = 0; n < kind.chunks; n++) if (!done.has(n)) todo.push(n);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (!signal.aborted && next < todo.length) {
      const n = todo[next++];
      let wait = FIRST_RETRY_MS;
      for (;;) {
        try {
          const r = await kind.runChunk(n, signal);
          if (signal.aborted) return;
          await store.writeChunk(id, n, r.out, r.err, r.counts);
          done.set(n, r.counts);
          observer.chunkDone(r.counts);
          break;
        } catch (err) {
          if (signal.aborted) return;
          if (!passing(err)) throw err;
          // Over the key's tokens_per_minute: wait as long as the quota says; else back off.
          const ms = err instanceof TeiplexError && err.code === 'RATE_LIMIT_EXCEEDED' && err.retryAfterSecs !== undefined ? err.retryAfterSecs * 1000 : wait;
          observer.chunkRetry(err, ms);
          await sleep(ms, signal);
          if (ms === wait) wait = Math.min(MAX_RETRY_MS, wait * 2);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(chunksInFlight, todo.length)) }, worker));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
