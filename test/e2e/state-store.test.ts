/**
 * The desired-state file: round trip, atomic replacement under SIGKILL (real child processes
 * killed mid-write), corrupt files moved aside, bursts of saves collapsed and ordered, temp files
 * of killed writes removed at boot, files private.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { parseState, StateStore, type State } from '../../src/state/state-store.js';
import { projectPath } from '../../src/common/paths.js';
import { elapse, until } from '../helpers/wait.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-state-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sample = (model: string): State => ({
  version: 1,
  instances: [
    { name: 'a', model_id: model, runtime: 'router', gpu_id: 0, env: { X: '1' }, extra_args: ['--auto-truncate'], desired_state: 'running', created_at: '2026-01-01T00:00:00.000Z', source: 'config' },
    { name: 'b', model_id: 'org/b', desired_state: 'stopped', created_at: '2026-01-01T00:00:00.000Z', port: 8081, source: 'api' },
  ],
  models: [],
});

test('round trip; missing file is reported as missing', async () => {
  const store = new StateStore(path.join(dir, 'rt.toml'));
  assert.deepEqual(await store.load(), { kind: 'missing' });
  await store.save(sample('org/a'));
  const loaded = await store.load();
  assert.equal(loaded.kind, 'ok');
  assert.deepEqual(loaded.kind === 'ok' && loaded.state, sample('org/a'));
  // No temp files left behind.
  assert.deepEqual((await readdir(dir)).filter((f) => f.includes('rt.toml')), ['rt.toml']);
});

test('a burst of saves ends with the last state on disk and fewer writes than saves', async () => {
  const store = new StateStore(path.join(dir, 'burst.toml'));
  await Promise.all(Array.from({ length: 50 }, (_, i) => store.save(sample(`org/m${i}`))));
  const loaded = await store.load();
  assert.equal(loaded.kind === 'ok' && loaded.state.instances[0].model_id, 'org/m49');
  assert.ok(store.stats.writes < 50 && store.stats.writes >= 2, `${store.stats.writes} writes`);
});

test('a corrupt state file is moved aside, never overwritten', async () => {
  const file = path.join(dir, 'corrupt.toml');
  await writeFile(file, 'version = 1\ninstances = [ { name = "a" ');
  const store = new StateStore(file);
  const r = await store.load();
  assert.equal(r.kind, 'corrupt');
  assert.ok(r.kind === 'corrupt' && r.movedTo.startsWith(`${file}.corrupt-`));
  assert.equal(await readFile(r.kind === 'corrupt' ? r.movedTo : '', 'utf8'), 'version = 1\ninstances = [ { name = "a" ');
  await writeFile(file, 'version = 1\nmodels = []\n[[instances]]\nname = "UPPER"\nmodel_id = "m"\ndesired_state = "running"\ncreated_at = "x"\nsource = "api"\n');
  const r2 = await store.load();
  assert.ok(r2.kind === 'corrupt' && /instances\[0\]\.name/.test(r2.reason), JSON.stringify(r2));
});

test('SIGKILL at random instants while saving in a loop: the file always parses and holds a committed state', async () => {
  const file = path.join(dir, 'killed.toml');
  for (let round = 0; round < 8; round++) {
    const child = spawn(process.execPath, ['--import', 'tsx', projectPath('test', 'helpers', 'state-writer.ts'), file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await until('the writer\'s first committed state', () => out.includes('\n') || child.exitCode !== null, { timeoutMs: 30_000, everyMs: 5 });
    assert.equal(child.exitCode, null, 'the writer is still saving');
    await elapse(Math.floor(Math.random() * 150), 'a random instant of the save loop for the kill');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const committed = out.trim().split('\n').map(Number);
    const last = committed[committed.length - 1];
    const state = parseState(await readFile(file, 'utf8'), file);
    const n = Number(/--n=(\d+)/.exec(state.instances[0].extra_args![1])![1]);
    // On disk: the last acknowledged state, or the one being written when the kill landed.
    assert.ok(n === last || n === last + 1, `round ${round}: on disk ${n}, last committed ${last}`);
    assert.equal(state.instances.length, 1 + (n % 5));
  }
});

test('prepare: creates the directory 0700, removes temp files of killed writes (only those); files are written 0600', async () => {
  const file = path.join(dir, 'fresh', 'sub', 'state.toml');
  const store = new StateStore(file);
  assert.deepEqual(await store.prepare(), []);
  assert.equal((await stat(path.dirname(file))).mode & 0o777, 0o700);
  await store.save(sample('org/a'));
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  const stale = ['.state.toml.tmp-123-1', '.state.toml.tmp-99999-42'];
  for (const n of stale) await writeFile(path.join(path.dirname(file), n), 'half a write');
  await writeFile(path.join(path.dirname(file), '.other.toml.tmp-1-1'), 'not ours');
  assert.deepEqual((await store.prepare()).sort(), stale);
  assert.deepEqual((await readdir(path.dirname(file))).sort(), ['.other.toml.tmp-1-1', 'state.toml']);
  assert.equal((await store.load()).kind, 'ok');
});

