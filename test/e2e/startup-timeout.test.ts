/**
 * `startup_timeout_secs` (docs/manager.md, readiness): a child not ready in time is killed
 * (SIGKILL) and restarted with back-off, the reason in `last_error`; once the restarts run out the
 * instance is `failed`. Real manager, real `command` children (test/helpers/fake-child.ts) that
 * never bind their port.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { alive, metricValue, writeFakeChild, type FakeChild } from '../helpers/fake-child.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';

describe('a child never ready within startup_timeout_secs', () => {
  let dir: string;
  let m: ManagerProcess;
  let mute: FakeChild;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-startup-'));
    mute = await writeFakeChild(dir, 'mute', { listen: false });
    const file = path.join(dir, 'config.toml');
    // The global deadline is long: the spec's own startup_timeout_secs is the one that counts.
    await writeFile(
      file,
      `${loopbackConfig(dir)}standby_children = 0\nstartup_timeout_secs = 600\n[restart]\ninitial_backoff_ms = 100\nmax_backoff_ms = 100\nmax_restarts = 1\nwindow_secs = 600\n` +
        `[security]\napi_commands = ${JSON.stringify([mute.command])}\n`,
    );
    m = await startManager(file, {}, 120_000);
  });
  after(async () => {
    await m?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('killed with SIGKILL at the deadline, restarted after back-off, then failed when the restarts run out', async () => {
    const r = await m.api('POST', '/instances', { name: 'mute', model_id: 'org/fake', runtime: 'command', command: mute.command, startup_timeout_secs: 10 });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const failed = await m.waitFor('mute', (x) => x.status === 'failed');
    assert.match(failed.last_error, /^not ready within 10 s \(.*\); 1 restarts within 600 s/);
    assert.equal(failed.last_exit.signal, 'SIGKILL');
    assert.equal(failed.restarts, 1);
    assert.equal(failed.pid, null);
    const pids = (await mute.events()).filter((e) => e.event === 'start').map((e) => e.pid as number);
    assert.equal(pids.length, 2, 'the first child and one restart');
    for (const pid of pids) assert.equal(alive(pid), false, `child ${pid} killed`);
    // The kill for a missed deadline counts as an unhealthy restart, not a crash.
    const metrics = (await m.api('GET', '/metrics')).body as string;
    assert.equal(metricValue(metrics, 'teiplex_instance_restarts_total', { instance: 'mute', reason: 'unhealthy' }), 1, metrics);
    assert.equal(metricValue(metrics, 'teiplex_instances', { status: 'failed' }), 1);
    const logs = (await m.api('GET', '/instances/mute/logs')).body.lines.join('\n');
    assert.match(logs, /starting -> backoff: not ready within 10 s/);
    assert.match(logs, /backoff -> starting: restart 1 after: not ready within 10 s/);
  });
});
