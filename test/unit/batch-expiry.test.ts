/**
 * A batch job's completion window, with the batch service on a real disk and a FAKE model (a job
 * target whose engine answers fixed vectors, and can be made to hang): the window cannot be
 * waited out in a test, so the service's clock is set near its end.
 * - a job past its window when its chunks still run expires: the rows done are in the output, each
 *   row that did not run is in the error file (`batch_expired`), none twice;
 * - a job found past its window (a manager down through it) expires without running.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { Batches, type BatchSettings } from '../../src/batch/batches.js';
import { BatchWorkers } from '../../src/batch/batch-workers.js';
import { FileStore } from '../../src/batch/file-store.js';
import type { JobTarget } from '../../src/batch/job-target.js';
import { JobStore } from '../../src/batch/job-store.js';
import type { Engine } from '../../src/tei/types.js';
import { TeiplexError } from '../../src/common/errors.js';
import { until } from '../helpers/wait.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-batch-expiry-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const SETTINGS: BatchSettings = { chunkRows: 2, maxRequestInputs: 16, maxRows: 100, maxFileBytes: 1 << 20, maxRunningJobs: 1, jobsPerOwner: 4, chunksInFlight: 1, retentionSecs: 0 };
const meta = { computeChars: 1, computeTokens: 3, totalTimeNs: 0n, tokenizationTimeNs: 0n, queueTimeNs: 0n, inferenceTimeNs: 0n };

/** A fake model: fixed 4-dimension vectors; after `answers` calls it hangs until the job's signal aborts. */
function fakeTarget(answers: number): JobTarget {
  let calls = 0;
  return {
    async check() {
      return 'dense' as const;
    },
    async run(_owner, model, _need, signal, fn) {
      const engine = {
        async embed(inputs: unknown[]) {
          if (++calls > answers) {
            await new Promise((_, reject) => {
              if (signal.aborted) reject(new TeiplexError('CANCELLED', 'aborted'));
              else signal.addEventListener('abort', () => reject(new TeiplexError('CANCELLED', 'aborted')), { once: true });
            });
          }
          return { results: inputs.map(() => Float32Array.of(1, 0, 0, 0)), metadata: inputs.map(() => meta) };
        },
      } as unknown as Engine;
      return fn({ engine, call: { signal }, modelName: model, autoTruncate: true });
    },
  };
}

async function service(name: string, now: () => number): Promise<Batches> {
  const root = path.join(dir, name);
  const files = await FileStore.open(root, { maxFileBytes: 1 << 20, storageBytesPerOwner: 1 << 24, filesPerOwner: 10, retentionSecs: 0 }, now);
  return new Batches(files, await JobStore.open(root), SETTINGS, new BatchWorkers(), undefined, undefined, now);
}

async function inputFile(b: Batches, rows: number): Promise<string> {
  const text = Array.from({ length: rows }, (_, i) => JSON.stringify({ custom_id: `r${i}`, method: 'POST', url: '/v1/embeddings', body: { model: 'm', input: `t${i}` } })).join('\n');
  const got = await b.files.receive(Readable.from([Buffer.from(text)]), 1 << 20, () => false);
  return (await b.files.adopt('', got.temp, 'in.jsonl', 'batch')).id;
}

const lines = async (b: Batches, id: string | null): Promise<Array<Record<string, any>>> =>
  id === null ? [] : (await readFile(b.files.dataPath(id), 'utf8')).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));

test('a job whose window ends while it runs expires: done rows in the output, the rest batch_expired in the error file', async () => {
  let clock = 1_800_000_000_000;
  const b = await service('running', () => clock);
  const created = await b.create('', { input_file_id: await inputFile(b, 6), endpoint: '/v1/embeddings', completion_window: '1m' });
  // 8 s before the window's end: the first chunk answers (and is written), the second hangs until the expiry.
  clock = (created.expires_at as number) * 1000 - 8000;
  await b.attach(fakeTarget(1));
  const done = await until('expired', () => {
    const o = b.get('', created.id as string);
    return o.status === 'expired' && o;
  }, { timeoutMs: 30_000 });
  b.stop();
  assert.deepEqual(done.request_counts, { total: 6, completed: 2, failed: 0 });
  assert.ok(done.expired_at !== null);
  const out = await lines(b, done.output_file_id as string);
  const errs = await lines(b, done.error_file_id as string);
  assert.deepEqual(out.map((l) => l.custom_id), ['r0', 'r1']);
  assert.deepEqual(errs.map((l) => l.custom_id), ['r2', 'r3', 'r4', 'r5']);
  assert.ok(errs.every((l) => l.response === null && l.error.code === 'batch_expired'));
});

test('a job found past its window (the manager was down through it) expires without running', async () => {
  let clock = 1_800_000_000_000;
  const b = await service('late', () => clock);
  const created = await b.create('', { input_file_id: await inputFile(b, 3), endpoint: '/v1/embeddings', completion_window: '1m' });
  clock += 120_000;
  await b.attach(fakeTarget(0));
  const done = await until('expired', () => {
    const o = b.get('', created.id as string);
    return o.status === 'expired' && o;
  }, { timeoutMs: 30_000 });
  b.stop();
  assert.equal(done.output_file_id, null, 'nothing ran');
  assert.equal((await lines(b, done.error_file_id as string)).length, 3);
});
