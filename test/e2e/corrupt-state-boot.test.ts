/**
 * A corrupt state file at boot (docs/manager.md, State): a real manager moves it aside to
 * `<state_file>.corrupt-<time>` (the bytes kept), says so in its log and its ready line, starts
 * the config's `[[instances]]` seeds instead, and writes a state file that holds them.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { parseState } from '../../src/state/state-store.js';
import { writeFakeChild, type FakeChild } from '../helpers/fake-child.js';
import { loopbackConfig, startManager } from '../helpers/manager-process.js';

let dir: string;
let seed: FakeChild;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-corrupt-boot-'));
  seed = await writeFakeChild(dir, 'seed');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('a corrupt state file: moved aside (bytes kept), logged, the config seeds used and saved', async () => {
  const stateFile = path.join(dir, 'state.toml');
  const corrupt = 'version = 1\ninstances = [ { name = "from-state", model_id = ';
  await writeFile(stateFile, corrupt);
  const file = path.join(dir, 'config.toml');
  await writeFile(
    file,
    `${loopbackConfig(dir)}standby_children = 0\nstartup_timeout_secs = 60\n[[instances]]\nname = "seeded"\nmodel_id = "org/fake"\nruntime = "command"\ncommand = ${JSON.stringify(seed.command)}\n`,
  );
  const m = await startManager(file, {}, 120_000);
  try {
    const movedTo = String(m.ready.corruptStateMovedTo);
    assert.equal(m.ready.source, 'config');
    assert.ok(movedTo.startsWith(`${stateFile}.corrupt-`), movedTo);
    assert.match(path.basename(movedTo), /^state\.toml\.corrupt-\d{4}-\d\d-\d\dT[\d-]+Z$/);
    assert.equal(typeof m.ready.corruptReason, 'string');
    assert.equal(await readFile(movedTo, 'utf8'), corrupt, 'the corrupt bytes are kept');
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith('state.toml.corrupt-')), [path.basename(movedTo)]);
    const logLine = m
      .output()
      .split('\n')
      .find((l) => l.includes('state file is corrupt'));
    assert.ok(logLine !== undefined, m.output());
    assert.equal(JSON.parse(logLine).moved_to, movedTo);

    const list = (await m.api('GET', '/instances')).body.map((i: any) => i.name);
    assert.deepEqual(list, ['seeded'], 'the seeds, not what the corrupt file named');
    await m.waitFor('seeded', (x) => x.status === 'running');
    const saved = parseState(await readFile(stateFile, 'utf8'), stateFile);
    assert.deepEqual(saved.instances.map((i) => [i.name, i.desired_state]), [['seeded', 'running']]);
  } finally {
    await m.stop();
  }
});
