/**
 * The optimized-model cache's bookkeeping (src/router/onnx-cache.ts), on real files: an entry's
 * key follows the ONNX file and the files next to it and the session settings; an entry is
 * complete only with its graph and weights; a staged entry appears whole by rename, and a lost
 * race keeps the first; calibrations are kept per key.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { cacheEntry, entryComplete, GRAPH_FILE, readCalibration, stageEntry, writeCalibration } from '../../src/router/onnx-cache.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-onnx-cache-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('cacheEntry: same model and settings, same entry; a changed file next to the graph, or other settings, another', async () => {
  const model = path.join(dir, 'model', 'onnx');
  await mkdir(model, { recursive: true });
  const onnx = path.join(model, 'model.onnx');
  await writeFile(onnx, 'graph');
  await writeFile(`${onnx}_data`, 'weights');
  const cache = path.join(dir, 'cache');
  const settings = { ort: '1.30.0', level: 'all', threads: null };
  const a = cacheEntry(cache, onnx, settings);
  assert.equal(path.dirname(a), cache);
  assert.equal(cacheEntry(cache, onnx, { ...settings }), a);
  assert.notEqual(cacheEntry(cache, onnx, { ...settings, ort: '1.31.0' }), a);
  assert.notEqual(cacheEntry(cache, onnx, { ...settings, threads: 2 }), a);
  await writeFile(`${onnx}_data`, 'other weights');
  const b = cacheEntry(cache, onnx, settings);
  assert.notEqual(b, a, 'external data changed');
  await utimes(onnx, new Date(1000), new Date(1000));
  assert.notEqual(cacheEntry(cache, onnx, settings), b, 'graph touched');
});

test('stageEntry: an entry appears whole by rename; complete only with graph and weights; a second writer keeps the first', async () => {
  const entry = path.join(dir, 'cache2', 'k');
  assert.equal(entryComplete(entry), false);
  const one = await stageEntry(entry);
  const two = await stageEntry(entry);
  await writeFile(path.join(one.dir, GRAPH_FILE), 'first');
  assert.equal(entryComplete(entry), false, 'not before the rename');
  await writeFile(path.join(one.dir, `${GRAPH_FILE}.data`), 'first');
  await one.commit();
  assert.equal(entryComplete(entry), true);
  await writeFile(path.join(two.dir, GRAPH_FILE), 'second');
  await writeFile(path.join(two.dir, `${GRAPH_FILE}.data`), 'second');
  await two.commit();
  assert.deepEqual((await readdir(path.dirname(entry))).sort(), ['k'], 'the loser\'s staging folder is gone');
  const staged = await stageEntry(path.join(dir, 'cache2', 'j'));
  await staged.discard();
  assert.equal(existsSync(staged.dir), false);
});

test('calibration: kept per key in an entry; none for an unknown key or a missing entry', async () => {
  const entry = path.join(dir, 'cache3', 'k');
  await mkdir(entry, { recursive: true });
  assert.equal(await readCalibration(entry, 'embedding:8x64'), undefined);
  await writeCalibration(entry, 'embedding:8x64', { batchOverheadTokens: 30 });
  await writeCalibration(entry, 'embedding:4x64', { batchOverheadTokens: 12 });
  assert.deepEqual(await readCalibration(entry, 'embedding:8x64'), { batchOverheadTokens: 30 });
  assert.deepEqual(await readCalibration(entry, 'embedding:4x64'), { batchOverheadTokens: 12 });
  assert.equal(await readCalibration(path.join(dir, 'nowhere'), 'embedding:8x64'), undefined);
});
