/**
 * `model_id` routing among replicas (docs/multiplexer.md, Target): "Among the running ones, the
 * one with the fewest calls in flight ...; if none is running but some are `unhealthy` (child up,
 * a health check failed), those are used the same way." A real `teiplex serve` with two replicas
 * of one model id, each the FAKE tei.v1 child (test/helpers/fake-tei-child.ts), whose health is
 * switched to NOT_SERVING by a call straight to it (`health:NOT_SERVING`), so the manager's
 * health checks mark it `unhealthy` (restarts out of reach: max_failures_before_restart is high).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fakeChildScript, fakeInstanceToml } from '../helpers/fake-tei-child.js';
import { loopbackConfig, startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { direct, mux, unary, type AnyClient } from '../helpers/mux-client.js';

const MODEL = 'fake/replicated';

let dir: string;
let m: ManagerProcess;
let c: AnyClient;
const ports: Record<string, number> = {};

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-replicas-'));
  const script = await fakeChildScript(dir);
  const file = path.join(dir, 'manager.toml');
  await writeFile(
    file,
    `${loopbackConfig(dir)}startup_timeout_secs = 120\nhealth_check_interval_secs = 1\nhealth_check_timeout_secs = 2\nmax_failures_before_restart = 1000\n` +
      fakeInstanceToml('rep-a', script, MODEL) +
      fakeInstanceToml('rep-b', script, MODEL),
  );
  m = await startManager(file);
  for (const name of ['rep-a', 'rep-b']) ports[name] = (await m.waitFor(name, (i) => i.status === 'running', 120_000)).port;
  c = mux(Number(m.ready.grpc_port));
});

after(async () => {
  c?.close();
  if (m) assert.equal(await m.stop(), 0, 'the manager stops cleanly');
  await rm(dir, { recursive: true, force: true });
});

/** Turn a replica's child NOT_SERVING and wait until the manager calls it unhealthy. */
async function makeUnhealthy(name: string): Promise<void> {
  const embed = direct(ports[name], 'tei.v1.Embed');
  try {
    await unary(embed, 'Embed', { inputs: 'health:NOT_SERVING' });
  } finally {
    embed.close();
  }
  await m.waitFor(name, (i) => i.status === 'unhealthy', 30_000);
}

/** The instances that answered `n` sequential model_id calls. */
async function answeredBy(n: number): Promise<string[]> {
  const by: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await unary(c, 'Embed', { target: { model_id: MODEL }, request: { inputs: `call ${i}` } });
    assert.equal(r.res.embeddings.length, 4);
    by.push(String(r.headers.get('teiplex-instance')[0]));
  }
  return by;
}

describe('model_id routing with unhealthy replicas (fake children)', () => {
  test('both running: calls go to both (ties taken in turn)', async () => {
    assert.deepEqual([...new Set(await answeredBy(4))].sort(), ['rep-a', 'rep-b']);
  });

  test('one unhealthy, one running: every call goes to the running one', async () => {
    await makeUnhealthy('rep-b');
    assert.deepEqual(await answeredBy(4), ['rep-a', 'rep-a', 'rep-a', 'rep-a']);
  });

  test('none running, both unhealthy: the unhealthy replicas are used, in turn', async () => {
    await makeUnhealthy('rep-a');
    assert.equal((await m.waitFor('rep-b', () => true)).status, 'unhealthy', 'rep-b is still unhealthy');
    assert.deepEqual([...new Set(await answeredBy(4))].sort(), ['rep-a', 'rep-b']);
  });
});
