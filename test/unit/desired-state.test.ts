/**
 * The desired-state owner (src/state/desired-state.ts) on real files: instances and models
 * written together; nothing but the boot write touches the file before boot is over (a model
 * added while the manager restores must not overwrite the file it has not read yet); a failed
 * write undoes the change and throws STATE_WRITE_FAILED; models restored before the catalog
 * exists are kept and handed to it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { TeiplexError } from '../../src/common/errors.js';
import { DesiredState } from '../../src/state/desired-state.js';
import { parseState, type StoredInstance, type StoredModel } from '../../src/state/state-store.js';

const dir = await mkdtemp(path.join(tmpdir(), 'teiplex-desired-'));
after(() => rm(dir, { recursive: true, force: true }));

const inst = (name: string): StoredInstance => ({ name, model_id: 'org/a', desired_state: 'running', created_at: 't', source: 'api' });
const model = (model_id: string): StoredModel => ({ model_id, source: 'api', created_at: 't' });

test('desired state: writes wait for boot; the boot write does not; instances and models together', async () => {
  const file = path.join(dir, 'boot.toml');
  await writeFile(file, 'version = 1\nmodels = []\n[[instances]]\nname = "kept"\nmodel_id = "org/k"\ndesired_state = "running"\ncreated_at = "t"\nsource = "api"\n');
  const d = new DesiredState(file);
  const instances: StoredInstance[] = [];
  const models: StoredModel[] = [];
  d.ownInstances({ snapshot: () => instances });
  d.ownModels({ snapshot: () => models });
  let acked = false;
  const early = d.commit(() => models.push(model('org/early')), () => models.pop()).then(() => (acked = true));
  const loaded = await d.load();
  assert.equal(acked, false, 'not acknowledged before boot (the boot read is done, boot is not over)');
  assert.deepEqual(models, [], 'not applied before boot either');
  assert.ok(loaded.kind === 'ok');
  assert.deepEqual(loaded.state.instances.map((i) => i.name), ['kept'], 'the file read at boot is the one on disk, untouched');
  instances.push(inst('kept'));
  await d.bootSave();
  assert.equal(acked, false, 'not acknowledged by the boot write either');
  assert.deepEqual(models, [], 'nor applied');
  d.opened();
  await early;
  const state = parseState(await readFile(file, 'utf8'), file);
  assert.deepEqual(state.instances.map((i) => i.name), ['kept']);
  assert.deepEqual(state.models.map((m) => m.model_id), ['org/early']);
});

test('desired state: a failed write undoes the change and throws STATE_WRITE_FAILED; boot models kept until the catalog takes them', async () => {
  const blocker = path.join(dir, 'not-a-dir');
  await writeFile(blocker, 'x');
  const d = new DesiredState(path.join(blocker, 'state.toml'));
  d.opened();
  d.restoreModels([model('org/booted')]);
  assert.deepEqual(d.state().models.map((m) => m.model_id), ['org/booted'], 'kept for persistence before a catalog owns them');
  const mine: StoredModel[] = [];
  let restored: StoredModel[] = [];
  d.ownModels({ snapshot: () => mine, restore: (ms) => (restored = ms) });
  assert.deepEqual(restored.map((m) => m.model_id), ['org/booted'], 'handed to the catalog');
  await assert.rejects(
    d.commit(
      () => mine.push(model('org/new')),
      () => mine.pop(),
    ),
    (err: unknown) => err instanceof TeiplexError && err.code === 'STATE_WRITE_FAILED' && /could not save state to .*ENOTDIR/.test(err.message),
  );
  assert.deepEqual(mine, [], 'rolled back');
});
