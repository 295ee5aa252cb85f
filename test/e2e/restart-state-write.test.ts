/**
 * "A change is answered only once the state file holds it" (docs/manager.md, State) for the
 * routes that do not change `desired_state`: POST /instances/{name}/restart of a running instance
 * and POST /instances/{name}/start of a failed one (both already desired `running`) write the
 * state file before they answer, like every other change; when that write fails they answer 503
 * STATE_WRITE_FAILED and do nothing (the child is neither restarted nor started). Real manager,
 * real `command` children (test/helpers/fake-child.ts).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseState } from '../../src/state/state-store.js';
import { metricValue, writeFakeChild, type FakeChild } from '../helpers/fake-child.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';

describe('restart and start write the state before answering', () => {
  let dir: string;
  let stateDir: string;
  let stateFile: string;
  let m: ManagerProcess;
  let ok: FakeChild;
  let crash: FakeChild;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-restart-state-'));
    stateDir = path.join(dir, 'state');
    stateFile = path.join(stateDir, 'state.toml');
    ok = await writeFakeChild(dir, 'ok');
    crash = await writeFakeChild(dir, 'crash', { exitAfterMs: 0, exitCode: 1 });
    const file = path.join(dir, 'config.toml');
    const top = loopbackConfig(dir).replace(/^state_file = .*$/m, `state_file = ${JSON.stringify(stateFile)}`);
    await writeFile(
      file,
      `${top}standby_children = 0\nstartup_timeout_secs = 60\n[restart]\ninitial_backoff_ms = 100\nmax_restarts = 0\n[security]\napi_commands = ${JSON.stringify([ok.command, crash.command])}\n`,
    );
    m = await startManager(file, {}, 120_000);
  });
  after(async () => {
    await m?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const writes = async () => metricValue((await m.api('GET', '/metrics')).body as string, 'teiplex_state_writes_total', { result: 'ok' }) ?? 0;

  test('restart of a running instance: the file is written (a new file renamed into place) before the answer', async () => {
    assert.equal((await m.api('POST', '/instances', { name: 'up', model_id: 'org/fake', runtime: 'command', command: ok.command })).status, 201);
    const first = await m.waitFor('up', (x) => x.status === 'running');
    const inode = (await stat(stateFile)).ino;
    const n = await writes();
    const r = await m.api('POST', '/instances/up/restart');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(await writes(), n + 1, 'one state write for the restart');
    assert.notEqual((await stat(stateFile)).ino, inode, 'the state file was replaced');
    const stored = parseState(await readFile(stateFile, 'utf8'), stateFile).instances.find((i) => i.name === 'up');
    assert.equal(stored?.desired_state, 'running');
    await m.waitFor('up', (x) => x.status === 'running' && x.pid !== first.pid);
  });

  test('a restart or start whose write fails: 503 STATE_WRITE_FAILED, and nothing restarted or started', async () => {
    assert.equal((await m.api('POST', '/instances', { name: 'down', model_id: 'org/fake', runtime: 'command', command: crash.command, restart_policy: 'never' })).status, 201);
    await m.waitFor('down', (x) => x.status === 'failed');
    const up = await m.waitFor('up', (x) => x.status === 'running');
    const before = await readFile(stateFile, 'utf8');
    const crashes = (await crash.events()).filter((e) => e.event === 'start').length;
    // The disk goes away under the manager: its state directory is now a file.
    await rename(stateDir, `${stateDir}.moved`);
    await writeFile(stateDir, 'not a directory');
    try {
      for (const url of ['/instances/up/restart', '/instances/down/start', '/instances/down/restart']) {
        const r = await m.api('POST', url);
        assert.equal(r.status, 503, `${url}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.code, 'STATE_WRITE_FAILED');
        assert.match(r.body.error, /could not save state to .*ENOTDIR/);
      }
      const still = (await m.api('GET', '/instances/up')).body;
      assert.equal(still.pid, up.pid, 'the running child was not restarted');
      assert.equal(still.restarts, up.restarts);
      assert.equal((await m.api('GET', '/instances/down')).body.status, 'failed', 'the failed one was not started');
      assert.equal((await crash.events()).filter((e) => e.event === 'start').length, crashes, 'no child spawned');
    } finally {
      await rm(stateDir, { force: true });
      await rename(`${stateDir}.moved`, stateDir);
    }
    assert.equal(await readFile(stateFile, 'utf8'), before, 'the previous file intact');
    assert.equal((await m.api('POST', '/instances/up/restart')).status, 200, 'works again once the disk is back');
  });
});
