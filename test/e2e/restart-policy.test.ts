/**
 * `restart_policy` (docs/manager.md, instance spec) with a real manager and real `command`
 * children (test/helpers/fake-child.ts, no model): `on-failure` leaves a child that exited 0
 * stopped and restarts one that exited non-zero; `never` fails at the first exit; `always` (the
 * default) restarts even a clean exit.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseState } from '../../src/state/state-store.js';
import { writeFakeChild, type FakeChild } from '../helpers/fake-child.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { elapse, until } from '../helpers/wait.js';

describe('restart_policy', () => {
  let dir: string;
  let m: ManagerProcess;
  const children: Record<string, FakeChild> = {};
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-policy-'));
    children.clean = await writeFakeChild(dir, 'clean', { exitAfterMs: 300, exitCode: 0 });
    children.crash = await writeFakeChild(dir, 'crash', { exitAfterMs: 300, exitCode: 3 });
    const file = path.join(dir, 'config.toml');
    await writeFile(
      file,
      `${loopbackConfig(dir)}standby_children = 0\nstartup_timeout_secs = 60\n[restart]\ninitial_backoff_ms = 100\nmax_backoff_ms = 100\nmax_restarts = 100\n` +
        `[security]\napi_commands = ${JSON.stringify(Object.values(children).map((c) => c.command))}\n`,
    );
    m = await startManager(file, {}, 120_000);
  });
  after(async () => {
    await m?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const create = async (name: string, child: FakeChild, restart_policy?: string) => {
    const r = await m.api('POST', '/instances', { name, model_id: 'org/fake', runtime: 'command', command: child.command, ...(restart_policy ? { restart_policy } : {}) });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  };
  /** Pids of this instance's children, from the events of `child` (several instances may share a script). */
  const starts = async (child: FakeChild, port: number) => (await child.events()).filter((e) => e.event === 'start' && e.port === port).map((e) => e.pid as number);

  test('on-failure: a child that exits 0 stays stopped, never respawned', async () => {
    await create('of-clean', children.clean, 'on-failure');
    const i = await m.waitFor('of-clean', (x) => x.status === 'stopped' && x.last_exit !== null);
    assert.deepEqual(i.last_exit.code, 0);
    assert.equal(i.restarts, 0);
    await elapse(1500, 'a restart would have come 100 ms (the back-off) after the exit');
    const later = (await m.api('GET', '/instances/of-clean')).body;
    assert.equal(later.status, 'stopped');
    assert.equal(later.restarts, 0);
    assert.equal((await starts(children.clean, i.port)).length, 1, 'one child spawned in all');
    // It stays stopped for good: the desired state says so, in the API and in the state file.
    assert.equal(later.desired_state, 'stopped');
    const stored = await until('the state file saying of-clean is stopped', async () => {
      const s = parseState(await readFile(path.join(dir, 'state.toml'), 'utf8'), 'state').instances.find((x) => x.name === 'of-clean');
      return s?.desired_state === 'stopped' && s;
    });
    assert.equal(stored.port, i.port);
  });

  test('on-failure: a child that exits non-zero is restarted', async () => {
    await create('of-crash', children.crash, 'on-failure');
    const i = await m.waitFor('of-crash', (x) => x.restarts >= 2);
    assert.equal(i.last_exit.code, 3);
    const pids = await until('two children of of-crash', async () => {
      const p = await starts(children.crash, i.port);
      return p.length >= 2 && p;
    });
    assert.notEqual(pids[0], pids[1], 'a new child each time');
    const metrics = (await m.api('GET', '/metrics')).body as string;
    assert.match(metrics, /teiplex_instance_restarts_total\{instance="of-crash",reason="crash"\} [1-9]/);
  });

  test('never: the first exit (even code 0) ends in failed, with the policy named; nothing respawned', async () => {
    await create('nv-crash', children.crash, 'never');
    await create('nv-clean', children.clean, 'never');
    const crash = await m.waitFor('nv-crash', (x) => x.status === 'failed');
    const clean = await m.waitFor('nv-clean', (x) => x.status === 'failed');
    assert.match(crash.last_error, /exit code 3.*restart_policy is never/);
    assert.match(clean.last_error, /exit code 0.*restart_policy is never/);
    await elapse(1500, 'a restart would have come 100 ms (the back-off) after the exit');
    for (const [name, child, port] of [['nv-crash', children.crash, crash.port], ['nv-clean', children.clean, clean.port]] as const) {
      const later = (await m.api('GET', `/instances/${name}`)).body;
      assert.equal(later.status, 'failed', name);
      assert.equal(later.restarts, 0, name);
      assert.equal((await starts(child, port)).length, 1, `${name}: one child spawned in all`);
    }
  });

  test('a manager restart does not start the on-failure instance that exited 0; a start through the API does', async () => {
    const port = (await m.api('GET', '/instances/of-clean')).body.port;
    assert.equal(await m.stop(), 0);
    m = await startManager(path.join(dir, 'config.toml'), {}, 120_000);
    const i = (await m.api('GET', '/instances/of-clean')).body;
    assert.deepEqual([i.status, i.desired_state], ['stopped', 'stopped']);
    assert.equal((await starts(children.clean, port)).length, 1, 'not spawned at boot');
    const started = await m.api('POST', '/instances/of-clean/start');
    assert.equal(started.status, 200, JSON.stringify(started.body));
    assert.equal(started.body.desired_state, 'running');
    await until('a second child of of-clean', async () => (await starts(children.clean, port)).length === 2);
  });

  test('always (the default): even a clean exit is restarted', async () => {
    await create('al-clean', children.clean);
    const i = await m.waitFor('al-clean', (x) => x.restarts >= 1);
    await until('a second child of al-clean', async () => (await starts(children.clean, i.port)).length >= 2);
  });
});
