/**
 * Instance's restart policy on a manual clock, with a real child (`/bin/false`: it exits 1 at once):
 * each unexpected exit waits the back-off (initial, doubling, capped) on the instance's clock,
 * and more than max_restarts restarts within window_secs end in `failed`. Only the child's exit is
 * waited for in real time; the back-off itself never sleeps.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ManualClock } from '../../src/common/manual-clock.js';
import { Instance } from '../../src/supervisor/instance.js';
import type { InstanceState } from '../../src/supervisor/instance-state.js';
import { until } from '../helpers/wait.js';

const dir = await mkdtemp(path.join(tmpdir(), 'teiplex-restart-'));
after(() => rm(dir, { recursive: true, force: true }));

test('restart back-off: 1000, 2000, 4000, 4000 ms on the clock, then failed after max_restarts in the window', { timeout: 60_000 }, async () => {
  const clock = new ManualClock();
  const seen: Array<{ to: InstanceState; reason: string }> = [];
  const instance = new Instance(
    { name: 'flaky', model_id: 'org/x', runtime: 'command', command: '/bin/false', restart_policy: 'always' },
    { port: 1, gpuIds: [], createdAt: new Date(0).toISOString() },
    {
      healthIntervalMs: 10_000,
      healthTimeoutMs: 200,
      maxFailures: 3,
      startupTimeoutMs: 30_000,
      gracefulMs: 1000,
      restart: { initial_backoff_ms: 1000, backoff_factor: 2, max_backoff_ms: 4000, reset_after_secs: 300, max_restarts: 4, window_secs: 600 },
      logDir: dir,
      logMaxBytes: 1 << 20,
      logMaxFiles: 1,
      logTailLines: 50,
      logLineMaxBytes: 4096,
      logBufferBytes: 1 << 16,
      stateFile: path.join(dir, 'state.toml'),
      runtime: { teiBinaryPath: '/bin/false' },
      managerEnv: { PATH: process.env.PATH },
      clock,
    },
    {
      onTransition: (_name, _from, to, reason) => seen.push({ to, reason }),
    },
    true,
  );
  // The child's exit is real: polled (bounded). In back-off the instance waits on the manual clock.
  const settled = (): Promise<InstanceState> =>
    until('the child exited: back-off or failed', () => (instance.status === 'backoff' || instance.status === 'failed') && instance.status);
  const delays: number[] = [];
  instance.start();
  for (let round = 0; round < 10; round++) {
    const status = await settled();
    if (status === 'failed') break;
    const delay = Number(/restarting in (\d+) ms/.exec(seen.at(-1)!.reason)?.[1]);
    delays.push(delay);
    clock.advance(delay - 1);
    assert.equal(instance.status, 'backoff', 'not restarted before its delay');
    clock.advance(1);
    assert.equal(instance.status, 'starting', 'restarted when its delay is up, on the clock');
  }
  assert.equal(instance.status, 'failed', `not failed after ${delays.length} restarts`);
  assert.deepEqual(delays, [1000, 2000, 4000, 4000]);
  assert.match(seen.at(-1)!.reason, /4 restarts within 600 s/);
  assert.equal(instance.restarts, 4);
  assert.equal(clock.timers, 0);
  // A user start begins afresh: the first delay again.
  instance.start();
  await settled();
  assert.match(seen.at(-1)!.reason, /restarting in 1000 ms/);
  await instance.stop();
  instance.dispose();
  await instance.log.close();
});
