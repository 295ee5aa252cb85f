/**
 * The batch service's parts on a real disk, without a manager: the file store (limits per owner,
 * another owner's file is not found, retention, what a killed writer leaves is removed at the next
 * open), the job store (a chunk is done exactly when its marker exists), the JSONL index (chunk
 * offsets, blank lines, repeated custom_ids, the row limit), failure isolation in a chunk's calls,
 * and completion windows.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { TeiplexError } from '../../src/common/errors.js';
import { windowSecs } from '../../src/batch/batch-job.js';
import { FileStore } from '../../src/batch/file-store.js';
import { JobStore } from '../../src/batch/job-store.js';
import { indexJsonl } from '../../src/batch/jsonl-job.js';
import { callRows, passing } from '../../src/batch/row-calls.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-batch-store-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const limits = { maxFileBytes: 1000, storageBytesPerOwner: 1500, filesPerOwner: 3, retentionSecs: 3600 };

async function put(s: FileStore, owner: string, bytes: number): Promise<string> {
  const got = await s.receive(Readable.from([Buffer.alloc(bytes, 0x61)]), s.uploadLimit(owner), () => false);
  return (await s.adopt(owner, got.temp, 'a.jsonl', 'batch')).id;
}

const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof TeiplexError, String(err));
    return err.code;
  }
  assert.fail('did not throw');
};

describe('file store', () => {
  test('owners: another owner does not see a file; counts and bytes per owner; the limits', async () => {
    let now = 1_000_000_000_000;
    const s = await FileStore.open(path.join(dir, 'owners'), limits, () => now);
    const a = await put(s, 'alice', 600);
    assert.equal(s.get('alice', a).bytes, 600);
    assert.equal(code(() => s.get('bob', a)), 'NOT_FOUND');
    assert.deepEqual(s.list('bob'), []);
    assert.equal(s.uploadLimit('alice'), 900, 'what is left of 1500');
    await put(s, 'alice', 900);
    assert.equal(code(() => s.checkRoom('alice')), 'PAYLOAD_TOO_LARGE', 'storage is full');
    assert.equal(s.uploadLimit('alice'), 0);
    await put(s, 'bob', 1);
    await put(s, 'bob', 1);
    await put(s, 'bob', 1);
    assert.equal(code(() => s.checkRoom('bob')), 'BATCH_LIMIT_EXCEEDED', 'three files is the most');
    await assert.rejects(s.delete('bob', a), (e: TeiplexError) => e.code === 'NOT_FOUND');
    await s.delete('alice', a);
    assert.equal(s.usage('alice').bytes, 900);
    // Retention: an hour later the files are gone from every view, and swept from disk.
    now += 3600_000;
    assert.equal(code(() => s.get('bob', s.list('bob')[0]?.id ?? 'x')), 'NOT_FOUND');
    const swept = await s.sweep();
    assert.equal(swept.length, 4);
    assert.deepEqual((await readdir(path.join(dir, 'owners', 'files'))).sort(), []);
  });

  test('an upload past its limit keeps nothing', async () => {
    const s = await FileStore.open(path.join(dir, 'cut'), limits);
    let cut = false;
    await assert.rejects(
      s.receive(Readable.from([Buffer.alloc(10)]), 5, () => (cut = true)),
      (e: TeiplexError) => e.code === 'PAYLOAD_TOO_LARGE',
    );
    assert.ok(cut);
    assert.deepEqual(await readdir(path.join(dir, 'cut', 'files')), []);
  });

  test('reopened: records kept; data without a record and temp files removed (a writer killed in between)', async () => {
    const root = path.join(dir, 'reopen');
    const s = await FileStore.open(root, limits);
    const id = await put(s, 'alice', 10);
    await writeFile(path.join(root, 'files', 'file-0123456789abcdef01234567.data'), 'orphan');
    await writeFile(path.join(root, 'files', '.upload-1-1'), 'half');
    const again = await FileStore.open(root, limits);
    assert.equal(again.get('alice', id).bytes, 10);
    assert.deepEqual((await readdir(path.join(root, 'files'))).sort(), [`${id}.data`, `${id}.json`]);
  });
});

describe('job store', () => {
  test('a chunk is done exactly when its marker exists; a marker left half-written is not', async () => {
    const root = path.join(dir, 'jobs');
    const s = await JobStore.open(root);
    const id = 'batch_0123456789abcdef01234567';
    await s.save({ id, created_ms: 1 } as never);
    await s.writeChunk(id, 0, 'line\n', '', { completed: 1, failed: 0 });
    await s.writeChunk(id, 2, 'x\n', 'err\n', { completed: 0, failed: 1 });
    // What a kill between the results and the marker leaves: results, no marker.
    await writeFile(s.chunkOut(id, 1), 'orphaned results');
    await writeFile(path.join(root, 'batches', id, 'chunks', '.3.done.tmp-1-1'), '{"completed"');
    const reopened = await JobStore.open(root);
    const done = await reopened.doneChunks(id);
    assert.deepEqual([...done.keys()].sort(), [0, 2]);
    assert.deepEqual(done.get(2), { completed: 0, failed: 1 });
    assert.equal(await readFile(reopened.chunkErr(id, 2), 'utf8'), 'err\n');
    assert.ok(!(await readdir(path.join(root, 'batches', id, 'chunks'))).some((n) => n.startsWith('.')), 'temp files removed');
  });

  test('a job folder without a complete record is removed at open', async () => {
    const root = path.join(dir, 'jobs2');
    await JobStore.open(root);
    assert.deepEqual(await readdir(root).catch(() => []), [], 'nothing is made before the first job');
    await mkdir(path.join(root, 'batches'), { recursive: true });
    await writeFile(path.join(root, 'batches', 'stray'), '');
    const s = await JobStore.open(root);
    assert.deepEqual(s.list(), []);
    assert.deepEqual(await readdir(path.join(root, 'batches')), []);
  });
});

describe('JSONL index', () => {
  test('chunk offsets and first lines, blank lines skipped, repeated custom_ids marked, the first model', async () => {
    const file = path.join(dir, 'in.jsonl');
    const line = (id: string, model = 'm') => JSON.stringify({ custom_id: id, method: 'POST', url: '/v1/embeddings', body: { model, input: 'x' } });
    const text = [line('a', 'first'), '', line('b'), 'not json', line('a'), line('c'), '   ', line('d')].join('\n');
    await writeFile(file, text);
    const ix = await indexJsonl(file, 2, 100);
    assert.equal(ix.rows, 6);
    assert.equal(ix.firstModel, 'first');
    assert.deepEqual([...ix.repeated], [3], 'the second "a" (row 3)');
    assert.equal(ix.offsets.length, 4, 'three chunks and the end');
    assert.deepEqual(ix.firstLines, [1, 4, 6]);
    for (const [k, off] of ix.offsets.slice(0, -1).entries()) assert.equal(text.slice(off).split('\n')[0], text.split('\n')[ix.firstLines[k] - 1]);
    assert.equal(ix.offsets.at(-1), Buffer.byteLength(text));
    await assert.rejects(indexJsonl(file, 2, 5), (e: TeiplexError) => e.code === 'VALIDATION' && /batch_max_rows \(5\)/.test(e.message));
  });
});

describe('a chunk’s calls', () => {
  const rowOf = (_rows: readonly number[], index: number) => index;

  test('one call when nothing fails', async () => {
    let calls = 0;
    const out = await callRows([1, 2, 3], async (rs) => (calls++, rs.map((r) => r * 10)), rowOf);
    assert.equal(calls, 1);
    assert.deepEqual(out, [1, 2, 3].map((r) => ({ ok: true, value: r * 10 })));
  });

  test('an error naming a row fails that row alone; one naming none: each row on its own', async () => {
    const bad = new Set([2, 4]);
    const named = await callRows([1, 2, 3, 4, 5], async (rs) => {
      const at = rs.findIndex((r) => bad.has(r));
      if (at >= 0) throw new TeiplexError('VALIDATION', `row ${rs[at]}`, { index: at });
      return rs.map((r) => r);
    }, rowOf);
    assert.deepEqual(named.map((o) => o.ok), [true, false, true, false, true]);
    let calls = 0;
    const unnamed = await callRows([1, 2, 3], async (rs) => {
      calls++;
      if (rs.includes(2)) throw new TeiplexError('BACKEND', 'no index');
      return rs.map((r) => r);
    }, rowOf);
    assert.deepEqual(unnamed.map((o) => o.ok), [true, false, true]);
    assert.equal(calls, 4, 'the call, then each row');
  });

  test('a passing failure (overloaded, unavailable, timeout) fails no row: it is thrown for a retry', async () => {
    for (const c of ['MODEL_OVERLOADED', 'INSTANCE_UNAVAILABLE', 'MODEL_LOADING', 'REQUEST_TIMEOUT'] as const) {
      assert.ok(passing(new TeiplexError(c, 'x')), c);
      await assert.rejects(callRows([1, 2], async () => Promise.reject(new TeiplexError(c, 'x')), rowOf), (e: TeiplexError) => e.code === c);
    }
    assert.equal(passing(new TeiplexError('VALIDATION', 'x')), false);
    assert.equal(passing(new Error('x')), false);
  });
});

test('completion windows: 24h and teiplex’s <n>h / <n>m up to a week', () => {
  assert.equal(windowSecs('24h'), 86_400);
  assert.equal(windowSecs('30m'), 1800);
  assert.equal(windowSecs('168h'), 604_800);
  for (const bad of ['169h', '0h', '24', 'h', '1d', ' 24h', '24h ']) assert.equal(windowSecs(bad), undefined, bad);
});
