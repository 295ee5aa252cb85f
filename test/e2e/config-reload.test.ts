/**
 * Config reload (docs/on-demand.md, Config reload) of `[[instances]]` and `[[models]]` with a real
 * manager and real `command` children (test/helpers/fake-child.ts): a changed instance spec is
 * reported in `changed` and replaced (a new child with the new spec; a `failed` instance comes
 * back), an unchanged one keeps its child, a removed one is stopped and deleted, a new one added;
 * a catalog model marked `failed` is cleared by a reload that changes its spec, and loads.
 * (Models added, removed and unchanged, invalid files, SIGHUP: test/e2e/on-demand.test.ts.)
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseState } from '../../src/state/state-store.js';
import { alive, writeFakeChild, type FakeChild } from '../helpers/fake-child.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';

describe('config reload', () => {
  let dir: string;
  let file: string;
  let m: ManagerProcess;
  let ok: FakeChild;
  let broken: FakeChild;
  let top: string;
  const instance = (name: string, command: string, extra = '') =>
    `[[instances]]\nname = "${name}"\nmodel_id = "org/${name}"\nruntime = "command"\ncommand = ${JSON.stringify(command)}\nrestart_policy = "never"\n${extra}`;
  const model = (command: string, extra = '') => `[[models]]\nname = "cat"\nmodel_id = "org/cat"\nruntime = "command"\ncommand = ${JSON.stringify(command)}\n${extra}`;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-reload-'));
    ok = await writeFakeChild(dir, 'ok');
    broken = await writeFakeChild(dir, 'broken', { exitAfterMs: 0, exitCode: 1 });
    file = path.join(dir, 'config.toml');
    top = `${loopbackConfig(dir)}standby_children = 0\nstartup_timeout_secs = 60\n`;
    await writeFile(file, top + instance('keep', ok.command) + instance('edit', broken.command) + instance('gone', ok.command) + model(broken.command));
    m = await startManager(file, {}, 120_000);
  });
  after(async () => {
    await m?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('instances: a changed spec is reported and applied (a failed one runs again); unchanged kept, removed deleted, new added', async () => {
    const keep = await m.waitFor('keep', (x) => x.status === 'running');
    const gone = await m.waitFor('gone', (x) => x.status === 'running');
    const edit = await m.waitFor('edit', (x) => x.status === 'failed');
    assert.match(edit.last_error, /exit code 1/);

    await writeFile(file, top + instance('keep', ok.command) + instance('edit', ok.command, 'max_batch_tokens = 512\n') + instance('new', ok.command) + model(broken.command));
    const r = await m.api('POST', '/config/reload');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.instances, { added: ['new'], removed: ['gone'], changed: ['edit'], unchanged: ['keep'], skipped: [] });
    assert.deepEqual(r.body.restart_required, []);

    const edited = await m.waitFor('edit', (x) => x.status === 'running');
    assert.equal(edited.last_error, null, 'the failure is gone with the old spec');
    assert.equal(edited.restarts, 0);
    const spawnLine = (await m.api('GET', '/instances/edit/logs')).body.lines.find((l: string) => l.includes('spawn:'));
    assert.match(spawnLine, /ok .*--max-batch-tokens 512/, 'the new spec runs');
    assert.equal((await m.api('GET', '/instances/keep')).body.pid, keep.pid, 'unchanged: its child untouched');
    const missing = await m.api('GET', '/instances/gone');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, 'INSTANCE_NOT_FOUND');
    assert.equal(alive(gone.pid), false, 'the removed instance was stopped');
    await m.waitFor('new', (x) => x.status === 'running');
    const stored = parseState(await readFile(path.join(dir, 'state.toml'), 'utf8'), 'state');
    assert.deepEqual(
      stored.instances.map((i) => [i.name, i.command, i.max_batch_tokens]),
      [
        ['edit', ok.command, 512],
        ['keep', ok.command, undefined],
        ['new', ok.command, undefined],
      ],
    );
  });

  test('models: a failed model is cleared by a reload that changes its spec, and then loads', async () => {
    const failedLoad = await m.api('POST', '/models/cat/load');
    assert.equal(failedLoad.status, 503, JSON.stringify(failedLoad.body));
    assert.equal(failedLoad.body.code, 'MODEL_LOAD_FAILED');
    const failed = (await m.api('GET', '/models/cat')).body;
    assert.equal(failed.state, 'failed');
    assert.match(failed.failure.reason, /exit code 1/);

    // The same spec again: unchanged, still failed.
    const same = await m.api('POST', '/config/reload');
    assert.deepEqual(same.body.models.unchanged, ['cat']);
    assert.equal((await m.api('GET', '/models/cat')).body.state, 'failed');

    await writeFile(file, top + instance('keep', ok.command) + instance('edit', ok.command, 'max_batch_tokens = 512\n') + instance('new', ok.command) + model(ok.command));
    const r = await m.api('POST', '/config/reload');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.models, { added: [], removed: [], changed: ['cat'], unchanged: [], skipped: [] });
    const cleared = (await m.api('GET', '/models/cat')).body;
    assert.equal(cleared.state, 'available');
    assert.equal(cleared.failure, null);
    const load = await m.api('POST', '/models/cat/load');
    assert.equal(load.status, 200, JSON.stringify(load.body));
    assert.equal(load.body.state, 'loaded');
  });
});
