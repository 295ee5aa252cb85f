/**
 * Stop (docs/manager.md, instance states): SIGTERM to the child's process group, SIGKILL after
 * `graceful_shutdown_timeout_secs`. Real manager, real `command` children that fork a grandchild
 * (test/helpers/fake-child.ts): one that traps SIGTERM is SIGKILLed once the grace is over, one
 * that obeys exits on SIGTERM; in both cases the grandchild dies with it (no orphan left).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { alive, writeFakeChild, type FakeChild } from '../helpers/fake-child.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { until } from '../helpers/wait.js';

describe('stopping a child', () => {
  let dir: string;
  let m: ManagerProcess;
  let stubborn: FakeChild;
  let obedient: FakeChild;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-stop-'));
    stubborn = await writeFakeChild(dir, 'stubborn', { ignoreTerm: true, grandchild: true });
    obedient = await writeFakeChild(dir, 'obedient', { grandchild: true });
    const file = path.join(dir, 'config.toml');
    await writeFile(
      file,
      `${loopbackConfig(dir)}standby_children = 0\nstartup_timeout_secs = 60\ngraceful_shutdown_timeout_secs = 1.5\n` +
        `[security]\napi_commands = ${JSON.stringify([stubborn.command, obedient.command])}\n`,
    );
    m = await startManager(file, {}, 120_000);
  });
  after(async () => {
    await m?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function runningChild(name: string, child: FakeChild): Promise<{ pid: number; grandchild: number }> {
    const r = await m.api('POST', '/instances', { name, model_id: 'org/fake', runtime: 'command', command: child.command });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const i = await m.waitFor(name, (x) => x.status === 'running');
    const start = (await child.events()).find((e) => e.event === 'start' && e.pid === i.pid);
    assert.ok(start !== undefined && start.grandchild > 0, JSON.stringify(await child.events()));
    assert.ok(alive(i.pid) && alive(start.grandchild), 'child and grandchild run');
    return { pid: i.pid, grandchild: start.grandchild };
  }

  test('a child that traps SIGTERM gets SIGKILL after the grace; its grandchild dies with it', async () => {
    const { pid, grandchild } = await runningChild('stubborn', stubborn);
    const stopped = await m.api('POST', '/instances/stubborn/stop');
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    // The stop is answered once the child is gone.
    assert.equal(stopped.body.status, 'stopped');
    assert.deepEqual({ code: stopped.body.last_exit.code, signal: stopped.body.last_exit.signal }, { code: null, signal: 'SIGKILL' });
    const events = await stubborn.events();
    assert.ok(events.some((e) => e.event === 'term' && e.pid === pid), 'SIGTERM came first (and was ignored)');
    assert.equal(alive(pid), false, 'child gone');
    await until('the grandchild gone', () => !alive(grandchild), { timeoutMs: 10_000 });
    const log = await readFile(path.join(dir, 'logs', 'stubborn.log'), 'utf8');
    assert.match(log, /no exit 1500 ms after SIGTERM: SIGKILL/);
  });

  test('a child that obeys SIGTERM exits on it (no SIGKILL); the group signal takes its grandchild too', async () => {
    const { pid, grandchild } = await runningChild('obedient', obedient);
    const stopped = await m.api('POST', '/instances/obedient/stop');
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    assert.equal(stopped.body.status, 'stopped');
    assert.deepEqual({ code: stopped.body.last_exit.code, signal: stopped.body.last_exit.signal }, { code: 0, signal: null });
    assert.ok((await obedient.events()).some((e) => e.event === 'term' && e.pid === pid));
    assert.equal(alive(pid), false);
    await until('the grandchild gone', () => !alive(grandchild), { timeoutMs: 10_000 });
    const log = await readFile(path.join(dir, 'logs', 'obedient.log'), 'utf8');
    assert.doesNotMatch(log, /SIGKILL/);
  });
});
