/**
 * The soak benchmark's judges (bench/soak/): the expected state that decides whether an
 * acknowledged change was lost, the event-loop p99 reader, and the /proc scan that finds our
 * children and orphans by their environment marker. The soak itself is a benchmark (bench/soak.ts),
 * not a test; these are the parts whose mistakes would make it report a pass that is not one.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { EventLoopReader } from '../../bench/soak/event-loop.js';
import { ExpectedState, type Desired } from '../../bench/soak/expected-state.js';
import { childrenOf, markedProcesses, orphansOf, RUN_ID_VAR, stillAlive } from '../../bench/soak/processes.js';
import { until } from '../helpers/wait.js';

const obs = (o: Record<string, Desired>): Map<string, Desired> => new Map(Object.entries(o));

test('expected state: an acknowledged change that is not observed is lost, and counted once', () => {
  const e = new ExpectedState({ a: 'running', b: 'absent' });
  e.acknowledged('b', 'stopped');
  assert.deepEqual(e.check(obs({ a: 'running', b: 'stopped' }), 'ok', 1), []);
  e.acknowledged('b', 'absent'); // a delete acknowledged ...
  const lost = e.check(obs({ a: 'running', b: 'stopped' }), 'after kill', 2); // ... but b came back
  assert.deepEqual(lost, [{ name: 'b', expected: ['absent'], observed: 'stopped', where: 'after kill', at_s: 2 }]);
  // Judged from what was observed: the same observation again is no new loss.
  assert.deepEqual(e.check(obs({ a: 'running', b: 'stopped' }), 'again', 3), []);
  // A tracked name missing from the observation is absent; a name nobody created is a mismatch.
  assert.deepEqual(
    e.check(obs({ b: 'stopped', z: 'running' }), 'gone', 4).map((m) => [m.name, m.observed]),
    [
      ['a', 'absent'],
      ['z', 'running'],
    ],
  );
});

test('expected state: a change without an answer accepts either outcome, then collapses to the observed one', () => {
  for (const seen of ['running', 'absent'] as const) {
    const e = new ExpectedState({ c: 'absent' });
    e.ambiguous('c', 'running');
    assert.equal(e.known('c'), undefined);
    assert.deepEqual(e.check(obs(seen === 'running' ? { c: 'running' } : {}), 'restart', 1), []);
    assert.equal(e.known('c'), seen);
  }
  const e = new ExpectedState({ c: 'absent' });
  e.ambiguous('c', 'running');
  assert.equal(e.check(obs({ c: 'stopped' }), 'restart', 1).length, 1, 'neither outcome: lost');
});

test('event-loop reader: summary quantile, histogram deltas between scrapes, prom-client fallback, nothing', () => {
  const r = new EventLoopReader();
  assert.deepEqual(r.read('teiplex_event_loop_delay_seconds{quantile="0.5"} 0.001\nteiplex_event_loop_delay_seconds{quantile="0.99"} 0.25\n'), {
    p99_ms: 250,
    source: 'teiplex_event_loop_delay_seconds{quantile="0.99"}',
  });
  const hist = (a: number, b: number, inf: number): string =>
    `teiplex_event_loop_delay_seconds_bucket{le="0.01"} ${a}\nteiplex_event_loop_delay_seconds_bucket{le="0.1"} ${b}\nteiplex_event_loop_delay_seconds_bucket{le="+Inf"} ${inf}\n`;
  assert.equal(r.read(hist(100, 100, 100))?.p99_ms, 10, 'all 100 samples at or under 10 ms');
  // Since the previous scrape: 50 new samples, 10 of them between 10 and 100 ms -> p99 is <= 100 ms.
  assert.equal(r.read(hist(140, 150, 150))?.p99_ms, 100);
  // And beyond the last finite bucket: the largest finite bound, labelled so.
  const over = r.read(hist(140, 150, 250));
  assert.equal(over?.p99_ms, 100);
  assert.match(over!.source, /above the last bucket/);
  assert.deepEqual(r.read('nodejs_eventloop_lag_p99_seconds 0.0123\n'), { p99_ms: 12.3, source: 'nodejs_eventloop_lag_p99_seconds' });
  assert.equal(r.read('process_cpu_seconds_total 1\n'), undefined);
});

test('processes: children are found by their environment marker; one not descending from the manager is an orphan', async (t) => {
  const runId = randomBytes(6).toString('hex');
  const stateFile = `/nonexistent/soak-${runId}/state.toml`;
  const marker = { stateFile, runId };
  const ours = spawn('sleep', ['30'], { env: { PATH: process.env.PATH, [RUN_ID_VAR]: runId }, stdio: 'ignore' });
  const contract = spawn('sleep', ['30'], { env: { PATH: process.env.PATH, TEIPLEX_MANAGER_STATE: stateFile, TEIPLEX_INSTANCE: 'inst-1' }, stdio: 'ignore' });
  const other = spawn('sleep', ['30'], { env: { PATH: process.env.PATH, [RUN_ID_VAR]: 'someone-else' }, stdio: 'ignore' });
  t.after(() => [ours, contract, other].forEach((p) => p.kill('SIGKILL')));
  await Promise.all([ours, contract, other].map((p) => once(p, 'spawn')));
  // Once exec is done, /proc/<pid>/environ is the new program's: both marked ones show.
  const found = await until('the two marked processes', () => {
    const f = markedProcesses(marker);
    return f.length === 2 ? f : undefined;
  }, { timeoutMs: 10_000 });
  assert.deepEqual(found.map((p) => p.pid).sort(), [ours.pid, contract.pid].sort());
  const c = found.find((p) => p.pid === contract.pid)!;
  assert.equal(c.via, 'contract');
  assert.equal(c.instance, 'inst-1');
  assert.equal(found.find((p) => p.pid === ours.pid)!.via, 'run-id');

  // They descend from this process (the "manager" here): children, no orphans ...
  assert.equal(childrenOf(marker, process.pid).length, 2);
  assert.deepEqual(orphansOf(marker, process.pid), []);
  // ... and from the point of view of another manager (or none) they are orphans.
  assert.equal(orphansOf(marker, ours.pid!).length, 2);
  assert.equal(orphansOf(marker, undefined).length, 2);

  const before = found.find((p) => p.pid === ours.pid)!;
  assert.ok(stillAlive(before));
  ours.kill('SIGKILL');
  await once(ours, 'exit');
  assert.ok(!stillAlive(before));
  assert.deepEqual(
    markedProcesses(marker).map((p) => p.pid),
    [contract.pid],
  );
});
