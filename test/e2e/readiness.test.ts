/**
 * Readiness (docs/manager.md): a child is ready when `grpc.health.v1.Health/Check` says SERVING,
 * and a child without the health service is asked `tei.v1.Info` instead. Real manager, real
 * `command` children (test/helpers/fake-child.ts): one serving only Info becomes `running` (and
 * is asked Info), one serving neither never does.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { writeFakeChild, type FakeChild } from '../helpers/fake-child.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';

describe('readiness', () => {
  let dir: string;
  let m: ManagerProcess;
  let infoOnly: FakeChild;
  let neither: FakeChild;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-ready-'));
    infoOnly = await writeFakeChild(dir, 'info-only', { health: false, info: true });
    neither = await writeFakeChild(dir, 'neither', { health: false, info: false });
    const file = path.join(dir, 'config.toml');
    await writeFile(
      file,
      `${loopbackConfig(dir)}standby_children = 0\nstartup_timeout_secs = 60\nhealth_check_interval_secs = 0.5\n[restart]\nmax_restarts = 0\n` +
        `[security]\napi_commands = ${JSON.stringify([infoOnly.command, neither.command])}\n`,
    );
    m = await startManager(file, {}, 120_000);
  });
  after(async () => {
    await m?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('a child without the health service is ready through tei.v1.Info, and health-checked through it', async () => {
    const r = await m.api('POST', '/instances', { name: 'info-only', model_id: 'org/fake', runtime: 'command', command: infoOnly.command });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const i = await m.waitFor('info-only', (x) => x.status === 'running');
    const calls = (await infoOnly.events()).filter((e) => e.event === 'info' && e.pid === i.pid).length;
    assert.ok(calls >= 1, 'asked Info');
    // Later health checks (every 0.5 s) go to Info too and keep it running.
    const checked = await m.waitFor('info-only', (x) => x.last_health_check !== null);
    assert.equal(checked.status, 'running');
    assert.equal(checked.health_check_failures, 0);
    assert.ok((await infoOnly.events()).filter((e) => e.event === 'info' && e.pid === i.pid).length > calls);
  });

  test('a child with neither health nor Info is never ready: killed at its deadline with the reason', async () => {
    const r = await m.api('POST', '/instances', { name: 'neither', model_id: 'org/fake', runtime: 'command', command: neither.command, startup_timeout_secs: 15 });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const failed = await m.waitFor('neither', (x) => x.status === 'failed');
    assert.match(failed.last_error, /^not ready within 15 s \(Info: UNIMPLEMENTED/);
    assert.ok((await neither.events()).some((e) => e.event === 'listening'), 'it did listen');
  });
});
