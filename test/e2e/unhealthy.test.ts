/**
 * The `unhealthy` state (docs/manager.md, readiness and health): the first failed health check
 * makes a running instance `unhealthy` (shown by the API and the metrics `teiplex_instances`,
 * `teiplex_instance_up`, `teiplex_health_check_failures_total`); a passing check brings it back
 * to `running` with the same child; `max_failures_before_restart` failures in a row kill it
 * (SIGKILL) and restart it, counted as `reason="unhealthy"`. Real manager, a real `command` child
 * (test/helpers/fake-child.ts) that answers NOT_SERVING while a file exists.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { metricValue, writeFakeChild, type FakeChild } from '../helpers/fake-child.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';

describe('unhealthy', () => {
  let dir: string;
  let flag: string;
  let m: ManagerProcess;
  let sick: FakeChild;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'teiplex-unhealthy-'));
    flag = path.join(dir, 'not-serving');
    sick = await writeFakeChild(dir, 'sick', { notServingWhile: flag });
    const file = path.join(dir, 'config.toml');
    await writeFile(
      file,
      `${loopbackConfig(dir)}standby_children = 0\nstartup_timeout_secs = 60\nhealth_check_interval_secs = 0.5\nhealth_check_timeout_secs = 5\nmax_failures_before_restart = 8\n` +
        `[restart]\ninitial_backoff_ms = 100\n[security]\napi_commands = ${JSON.stringify([sick.command])}\n`,
    );
    m = await startManager(file, {}, 120_000);
  });
  after(async () => {
    await m?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const metrics = async () => (await m.api('GET', '/metrics')).body as string;

  test('a failing health check: unhealthy in the API and the metrics; a passing one: running again, same child', async () => {
    const r = await m.api('POST', '/instances', { name: 'sick', model_id: 'org/fake', runtime: 'command', command: sick.command });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const up = await m.waitFor('sick', (x) => x.status === 'running');
    let text = await metrics();
    assert.equal(metricValue(text, 'teiplex_instance_up', { instance: 'sick', model: 'org/fake' }), 1);
    assert.equal(metricValue(text, 'teiplex_instances', { status: 'unhealthy' }), 0);

    await writeFile(flag, '');
    const sickNow = await m.waitFor('sick', (x) => x.status === 'unhealthy', 30_000);
    assert.equal(sickNow.pid, up.pid, 'not restarted by the first failure');
    assert.match(sickNow.last_error, /^health check failed: health NOT_SERVING/);
    text = await metrics();
    assert.equal(metricValue(text, 'teiplex_instances', { status: 'unhealthy' }), 1, text);
    assert.equal(metricValue(text, 'teiplex_instances', { status: 'running' }), 0);
    assert.equal(metricValue(text, 'teiplex_instance_up', { instance: 'sick', model: 'org/fake' }), 0);
    assert.ok((metricValue(text, 'teiplex_health_check_failures_total', { instance: 'sick' }) ?? 0) >= 1);
    const health = await m.api('GET', '/instances/sick/health');
    assert.equal(health.body.status, 'unhealthy');
    assert.equal(health.body.healthy, false);
    assert.ok(health.body.health_check_failures >= 1);
    // The only instance wanted running is not: down.
    assert.equal((await m.api('GET', '/health/all')).body.status, 'down');

    await rm(flag);
    const back = await m.waitFor('sick', (x) => x.status === 'running', 30_000);
    assert.equal(back.pid, up.pid, 'the same child');
    assert.equal(back.restarts, 0);
    assert.equal(back.health_check_failures, 0);
    assert.equal(metricValue(await metrics(), 'teiplex_instance_up', { instance: 'sick', model: 'org/fake' }), 1);
    const logs = (await m.api('GET', '/instances/sick/logs')).body.lines.join('\n');
    assert.match(logs, /running -> unhealthy: health check failed: health NOT_SERVING/);
    assert.match(logs, /unhealthy -> running: health check passed/);
  });

  test('max_failures_before_restart failures in a row: SIGKILL and a restart counted as unhealthy', async () => {
    const first = await m.waitFor('sick', (x) => x.status === 'running');
    await writeFile(flag, '');
    const restarted = await m.waitFor('sick', (x) => x.restarts === 1, 60_000);
    await rm(flag);
    assert.equal(restarted.last_exit.signal, 'SIGKILL');
    const again = await m.waitFor('sick', (x) => x.status === 'running', 60_000);
    assert.notEqual(again.pid, first.pid, 'a new child');
    const text = await metrics();
    assert.equal(metricValue(text, 'teiplex_instance_restarts_total', { instance: 'sick', reason: 'unhealthy' }), 1, text);
    assert.equal(metricValue(text, 'teiplex_instance_restarts_total', { instance: 'sick', reason: 'crash' }), undefined);
    assert.ok((metricValue(text, 'teiplex_health_check_failures_total', { instance: 'sick' }) ?? 0) >= 9, 'one failure before, eight now');
    const logs = (await m.api('GET', '/instances/sick/logs')).body.lines.join('\n');
    assert.match(logs, /8 health checks failed in a row \(health NOT_SERVING\): SIGKILL/);
    assert.equal((await sick.events()).filter((e) => e.event === 'start').length, 2);
  });
});
