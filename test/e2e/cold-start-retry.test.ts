/**
 * A catalog model's failed first start (docs/on-demand.md, Failures): a replica that exits before
 * it was ever ready is stopped and a fresh one, on a new port, is tried once more. Real manager,
 * real `command` children (test/helpers/fake-child.ts): the first child hands its port to another
 * process (detached, it keeps holding it) and exits 1, as if someone else took the port between
 * the check and the bind; the retry must not use that port, and the model loads.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { metricValue, writeFakeChild, type FakeChild } from '../helpers/fake-child.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';

let dir: string;
let m: ManagerProcess | undefined;
let flaky: FakeChild;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-cold-retry-'));
  flaky = await writeFakeChild(dir, 'flaky', { losePortOnce: path.join(dir, 'lost-once') });
});
after(async () => {
  await m?.stop();
  for (const e of await flaky.events()) if (e.event === 'holder') process.kill(e.holder, 'SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

test('the first replica loses its port to another process and exits: a fresh replica on a new port serves', async () => {
  const file = path.join(dir, 'config.toml');
  await writeFile(
    file,
    `${loopbackConfig(dir)}standby_children = 0\nstartup_timeout_secs = 60\n[[models]]\nname = "flaky"\nmodel_id = "org/flaky"\nruntime = "command"\ncommand = ${JSON.stringify(flaky.command)}\n`,
  );
  m = await startManager(file, {}, 120_000);
  const load = await m.api('POST', '/models/flaky/load');
  assert.equal(load.status, 200, JSON.stringify(load.body));
  assert.equal(load.body.state, 'loaded');
  assert.equal(load.body.failure, null);
  const events = await flaky.events();
  const starts = events.filter((e) => e.event === 'start');
  const holder = events.find((e) => e.event === 'holder');
  assert.equal(starts.length, 2, JSON.stringify(events));
  assert.ok(holder !== undefined && holder.port === starts[0].port, 'the first port was taken by someone else');
  assert.notEqual(starts[1].port, starts[0].port, 'the retry runs on a fresh port');
  const replica = load.body.replicas[0];
  assert.equal(replica.pid, starts[1].pid);
  assert.equal((await m.api('GET', `/instances/${replica.instance}`)).body.port, starts[1].port);
  const metrics = (await m.api('GET', '/metrics')).body as string;
  assert.equal(metricValue(metrics, 'teiplex_model_loads_total', { model: 'flaky', result: 'ok' }), 1, metrics);
  assert.equal(metricValue(metrics, 'teiplex_model_loads_total', { model: 'flaky', result: 'failed' }), undefined);
  assert.match(m.output(), /a replica failed before it was ready/);
});
