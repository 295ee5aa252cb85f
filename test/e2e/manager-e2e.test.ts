/**
 * `teiplex serve` end to end: real manager process, real `teiplex router` children on generated
 * models, real REST calls. Lifecycle, seeds, restore, crash and hang recovery, crash loops,
 * the TEI runtime's argv (tei_binary_path pointing at `teiplex router`), orphans of a dead
 * manager, SIGKILL of the manager while it writes state.
 */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { projectPath } from '../../src/common/paths.js';
import { parseState } from '../../src/state/state-store.js';
import { isAlive } from '../../src/supervisor/process-record.js';
import { assertErrorCode } from '../helpers/data-plane.js';
import { startManager, type ManagerProcess } from '../helpers/manager-process.js';
import { testModel } from '../helpers/models.js';
import { elapse, until } from '../helpers/wait.js';

let dir: string;
let model: string;
let teiShim: string;
let crasher: string;
let fakeSmi: string;
let envPrinter: string;

function config(name: string, extra = ''): Promise<string> {
  const file = path.join(dir, `${name}.toml`);
  return writeFile(
    file,
    `api_port = 0
grpc_port = 0
listen_host = "127.0.0.1"
state_file = ${JSON.stringify(path.join(dir, `${name}-state.toml`))}
log_dir = ${JSON.stringify(path.join(dir, `${name}-logs`))}
health_check_interval_secs = 0.3
health_check_timeout_secs = 1
max_failures_before_restart = 2
startup_timeout_secs = 60
graceful_shutdown_timeout_secs = 5
instance_port_start = ${20000 + Math.floor(Math.random() * 20000)}
instance_port_end = 45000
tei_binary_path = ${JSON.stringify(teiShim)}
${extra}
[restart]
initial_backoff_ms = 100
max_backoff_ms = 400
max_restarts = ${name === 'backoff' ? 10 : 3}
window_secs = 60
reset_after_secs = 2
[security]
api_commands = [${JSON.stringify(crasher)}, ${JSON.stringify(envPrinter)}]
`,
  ).then(() => file);
}

const running = (i: { status: string }) => i.status === 'running';

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'teiplex-e2e-'));
  model = await testModel({ kind: 'embedding' });
  // A stand-in for text-embeddings-router: the same flags, served by teiplex router.
  teiShim = path.join(dir, 'text-embeddings-router');
  await writeFile(teiShim, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(projectPath('bin', 'teiplex.js'))} router "$@"\n`);
  await chmod(teiShim, 0o755);
  crasher = path.join(dir, 'crasher');
  await writeFile(crasher, '#!/bin/sh\necho "fatal: cannot load model $2" >&2\nexit 3\n');
  await chmod(crasher, 0o755);
  // Canned nvidia-smi output: this machine has no GPU.
  fakeSmi = path.join(dir, 'nvidia-smi');
  await writeFile(fakeSmi, '#!/bin/sh\necho "0, GPU-aaaa, Fake GPU A, 81559, 10, 0"\necho "1, GPU-bbbb, Fake GPU B, 81559, 20, 5"\n');
  await chmod(fakeSmi, 0o755);
  envPrinter = path.join(dir, 'env-router');
  await writeFile(envPrinter, `#!/bin/sh\necho "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES PORT=\${PORT:-unset} MODEL_ID=\${MODEL_ID:-unset}"\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(projectPath('bin', 'teiplex.js'))} router "$@"\n`);
  await chmod(envPrinter, 0o755);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('manager lifecycle over REST', () => {
  let m: ManagerProcess;
  before(async () => {
    m = await startManager(await config('life', `nvidia_smi_path = ${JSON.stringify(fakeSmi)}\n[[instances]]\nname = "seeded"\nmodel_id = ${JSON.stringify(model)}\n`), {
      // Must not leak into children: TEI reads its flags from these.
      PORT: '1', MODEL_ID: 'leaked', HOSTNAME: 'leaked-host',
    });
  });
  after(async () => {
    await m?.stop();
  });

  test('seeds from config start at boot; the API answers while they start', async () => {
    const list = await m.api('GET', '/instances');
    assert.equal(list.status, 200);
    assert.equal(list.body[0].name, 'seeded');
    assert.ok(['starting', 'running'].includes(list.body[0].status));
    const i = await m.waitFor('seeded', running);
    assert.ok(i.pid > 0 && i.port >= 20000);
    const health = await m.api('GET', '/health/all');
    assert.equal(health.body.status, 'healthy');
    const openapi = await m.api('GET', '/docs/json');
    assert.equal(openapi.status, 200);
    for (const p of ['/instances', '/instances/{name}/logs', '/gpus', '/health/all']) assert.ok(p in openapi.body.paths, p);
  });

  test('create -> running -> stop -> start -> restart -> delete', async () => {
    const created = await m.api('POST', '/instances', { name: 'e1', model_id: model, max_batch_tokens: 4096 });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.status, 'starting');
    const r1 = await m.waitFor('e1', running);
    assertErrorCode(await m.api('POST', '/instances', { name: 'e1', model_id: model }), 409, 'INSTANCE_EXISTS');
    assertErrorCode(await m.api('POST', '/instances/e1/start'), 409, 'ALREADY_RUNNING');
    const stopped = await m.api('POST', '/instances/e1/stop');
    assert.equal(stopped.status, 200);
    assert.equal(stopped.body.status, 'stopped');
    assert.equal(isAlive(r1.pid), false, 'child gone after stop');
    assertErrorCode(await m.api('POST', '/instances/e1/stop'), 409, 'NOT_RUNNING');
    assert.equal((await m.api('POST', '/instances/e1/start')).status, 200);
    const r2 = await m.waitFor('e1', running);
    assert.notEqual(r2.pid, r1.pid);
    assert.equal((await m.api('POST', '/instances/e1/restart')).status, 200);
    const r3 = await m.waitFor('e1', (i) => running(i) && i.pid !== r2.pid);
    assert.equal(r3.restarts, 1);
    const logs = await m.api('GET', '/instances/e1/logs');
    assert.ok(logs.body.lines.some((l: string) => /"msg":"ready"/.test(l)), 'child output captured');
    assert.ok(logs.body.total_lines >= logs.body.lines.length);
    const page = await m.api('GET', `/instances/e1/logs?start=${logs.body.end - 2}&end=${logs.body.end}`);
    assert.equal(page.body.lines.length, 2);
    assert.equal((await m.api('GET', '/instances/e1/health')).body.healthy, true);
    const del = await m.api('DELETE', '/instances/e1');
    assert.equal(del.status, 200);
    assert.equal(isAlive(r3.pid), false);
    assertErrorCode(await m.api('GET', '/instances/e1'), 404, 'INSTANCE_NOT_FOUND');
    const state = parseState(await readFile(path.join(dir, 'life-state.toml'), 'utf8'), 'state');
    assert.deepEqual(state.instances.map((i) => i.name), ['seeded']);
  });

  test('the tei runtime: text-embeddings-router argv and a clean environment work', async () => {
    const created = await m.api('POST', '/instances', { name: 'tei1', model_id: model, runtime: 'tei', pooling: 'mean' });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.ok(created.body.prometheus_port > 0, 'a Prometheus port of its own');
    const i = await m.waitFor('tei1', running);
    const logs = (await m.api('GET', '/instances/tei1/logs')).body.lines.join('\n');
    assert.match(logs, /--model-id \S+ --port \d+ --hostname 127\.0\.0\.1 --json-output --pooling mean --prometheus-port \d+/);
    const metrics = await fetch(`http://127.0.0.1:${i.prometheus_port}/metrics`);
    assert.equal(metrics.status, 200);
    assert.equal((await m.api('DELETE', '/instances/tei1')).status, 200);
  });

  test('kill -9 of a child: noticed at once, back to running with restarts + 1', async () => {
    const before = await m.waitFor('seeded', running);
    process.kill(before.pid, 'SIGKILL');
    const after = await m.waitFor('seeded', (i) => running(i) && i.pid !== before.pid);
    assert.equal(after.restarts, before.restarts + 1);
    assert.equal(after.last_exit.signal, 'SIGKILL');
    const metrics = String((await m.api('GET', '/metrics')).body);
    assert.match(metrics, /teiplex_instance_restarts_total\{instance="seeded",reason="crash"\} 1/);
    assert.match(metrics, /teiplex_instance_up\{instance="seeded",model="[^"]+"\} 1/);
    assert.match(metrics, /teiplex_instances\{status="running"\} \d/);
    assert.match(metrics, /teiplex_instance_start_seconds_count \d/);
    assert.match(metrics, /teiplex_state_writes_total\{result="ok"\} \d/);
  });

  test('a hung child (stops answering health) is killed and restarted', async () => {
    const before = await m.waitFor('seeded', running);
    process.kill(before.pid, 'SIGSTOP');
    const after = await m.waitFor('seeded', (i) => running(i) && i.pid !== before.pid);
    assert.equal(after.restarts, before.restarts + 1);
    assert.match(after.last_error ?? '', /health/);
  });

  test('a child that exits at once: back-off, then failed with its exit code and log tail', async () => {
    const created = await m.api('POST', '/instances', { name: 'crash', model_id: 'x/y', runtime: 'command', command: crasher });
    assert.equal(created.status, 201);
    const failed = await m.waitFor('crash', (i) => i.status === 'failed', 30_000);
    assert.equal(failed.restarts, 3);
    assert.equal(failed.last_exit.code, 3);
    assert.match(failed.last_error, /fatal: cannot load model x\/y/);
    // Each of the 3 restarts went through back-off first (the [restart] table: 100 ms, then doubled, capped at 400).
    const logs = (await m.api('GET', '/instances/crash/logs')).body.lines.join('\n');
    assert.deepEqual([...logs.matchAll(/restarting in (\d+) ms/g)].map((d) => Number(d[1])), [100, 200, 400], logs);
    assert.equal((await m.api('GET', '/health/all')).body.status, 'degraded');
    assert.equal((await m.api('DELETE', '/instances/crash')).status, 200);
  });

  test('GPUs from nvidia-smi (canned output, no GPU here): pinning by CUDA_VISIBLE_DEVICES, bad ids refused', async () => {
    const gpus = await m.api('GET', '/gpus');
    assert.deepEqual(gpus.body.gpus.map((g: { index: number; name: string }) => [g.index, g.name]), [[0, 'Fake GPU A'], [1, 'Fake GPU B']]);
    const bad = await m.api('POST', '/instances', { name: 'gpu', model_id: model, gpu_id: 2 });
    assertErrorCode(bad, 422, 'INVALID_GPU_ID');
    assert.match(bad.body.error, /GPUs are 0, 1/);
    assertErrorCode(await m.api('GET', '/instances/gpu'), 404, 'INSTANCE_NOT_FOUND');
    const ok = await m.api('POST', '/instances', { name: 'gpu', model_id: model, gpu_id: 1, runtime: 'command', command: envPrinter });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
    await m.waitFor('gpu', running);
    const logs = (await m.api('GET', '/instances/gpu/logs')).body.lines.join('\n');
    assert.match(logs, /CUDA_VISIBLE_DEVICES=1 PORT=unset MODEL_ID=unset/, 'pinned, and no TEI variable leaked from the manager');
    assert.equal((await m.api('DELETE', '/instances/gpu')).status, 200);
  });
});

describe('restart back-off', () => {
  test('grows by backoff_factor, is capped, and resets after a healthy stretch', async () => {
    const m = await startManager(await config('backoff', `[[instances]]\nname = "b"\nmodel_id = ${JSON.stringify(model)}\n`));
    try {
      // The life config's [restart] table: initial 100 ms, cap 400 ms; reset_after_secs is set below.
      const delays = async (): Promise<number[]> =>
        (await m.api('GET', '/instances/b/logs')).body.lines.flatMap((l: string) => {
          const d = /restarting in (\d+) ms/.exec(l);
          return d ? [Number(d[1])] : [];
        });
      for (let k = 0; k < 4; k++) {
        const i = await m.waitFor('b', running);
        process.kill(i.pid, 'SIGKILL');
        await m.waitFor('b', (x) => x.pid !== i.pid && x.status === 'running');
      }
      assert.deepEqual(await delays(), [100, 200, 400, 400]);
      // Running longer than reset_after_secs (2 s) starts the back-off afresh.
      const i = await m.waitFor('b', running);
      await elapse(2500, 'the child runs healthy for longer than reset_after_secs (2 s)');
      process.kill(i.pid, 'SIGKILL');
      await m.waitFor('b', (x) => x.pid !== i.pid && x.status === 'running');
      assert.deepEqual((await delays()).slice(4), [100]);
    } finally {
      await m.stop();
    }
  });
});

describe('manager restarts', () => {
  test('restore after a manager restart; orphans of a SIGKILLed manager are stopped first', async () => {
    const file = await config('restore');
    let m = await startManager(file);
    assert.equal((await m.api('POST', '/instances', { name: 'r1', model_id: model })).status, 201);
    assert.equal((await m.api('POST', '/instances?start=false', { name: 'r2', model_id: model })).status, 201);
    const r1 = await m.waitFor('r1', running);
    // A clean stop stops the children and keeps the desired state.
    assert.equal(await m.stop(), 0);
    assert.equal(isAlive(r1.pid), false);
    m = await startManager(file);
    const again = await m.waitFor('r1', running);
    assert.equal(again.port, r1.port, 'same port after restore');
    assert.equal((await m.api('GET', '/instances/r2')).body.status, 'stopped');
    // Now the manager dies hard: its child survives it...
    await m.stop('SIGKILL');
    assert.equal(isAlive(again.pid), true, 'child outlives a SIGKILLed manager');
    // ...and the next manager stops that orphan before spawning a new child on the same port.
    m = await startManager(file);
    assert.equal(isAlive(again.pid), false, 'orphan stopped at boot');
    assert.deepEqual(m.ready.orphansStopped, ['r1']);
    const fresh = await m.waitFor('r1', running);
    assert.notEqual(fresh.pid, again.pid);
    await m.stop();
  });

  test('SIGKILL of the manager while it writes state in a loop: the state file parses and holds the last acknowledged state or the one in flight', async () => {
    const file = await config('kill');
    const stateFile = path.join(dir, 'kill-state.toml');
    /** A state as the instances' names and model ids, sorted: what the test compares. */
    const key = (instances: Array<{ name: string; model_id: string }>) =>
      JSON.stringify(instances.map((i) => [i.name, i.model_id]).sort((a, b) => (a[0] < b[0] ? -1 : 1)));
    for (let round = 0; round < 4; round++) {
      const m = await startManager(file);
      // What the manager restored is where this round starts (each change is answered only once written).
      const restored = await m.api('GET', '/instances');
      assert.equal(restored.status, 200);
      const now = new Map<string, string>(restored.body.map((i: { name: string; model_id: string }) => [i.name, i.model_id]));
      const asKey = (s: Map<string, string>) => key([...s].map(([name, model_id]) => ({ name, model_id })));
      let acknowledged = asKey(now);
      let inFlight: string | undefined;
      let acks = 0;
      let killed = false;
      let n = 0;
      const loop = (async () => {
        for (let k = 0; k < 100_000; k++) {
          const name = `s${n++ % 7}`;
          const next = new Map(now);
          const existed = now.has(name);
          if (existed) next.delete(name);
          else next.set(name, `org/m${n}`);
          inFlight = asKey(next);
          let r: { status: number; body: unknown };
          try {
            r = existed
              ? await m.api('DELETE', `/instances/${name}`)
              : await m.api('POST', '/instances?start=false', { name, model_id: `org/m${n}`, extra_args: ['--auto-truncate'] });
          } catch (err) {
            if (killed) return; // the connection died with the manager
            throw err;
          }
          assert.equal(r.status, existed ? 200 : 201, `round ${round}: ${JSON.stringify(r.body)}`);
          now.clear();
          for (const [k2, v] of next) now.set(k2, v);
          acknowledged = inFlight;
          inFlight = undefined;
          acks++;
        }
        throw new Error('the write loop ran out of rounds before the kill');
      })();
      // A few acknowledged writes first (however slow a loaded machine makes them), then a kill at a random moment.
      // (The loop only ends by failing before the kill: the race surfaces that at once.)
      await Promise.race([until(`round ${round}: 3 acknowledged writes`, () => acks >= 3, { timeoutMs: 60_000 }), loop]);
      await elapse(Math.random() * 300, 'random kill instant');
      killed = true;
      await m.stop('SIGKILL');
      await loop;
      const state = parseState(await readFile(stateFile, 'utf8'), stateFile);
      const onDisk = key(state.instances);
      assert.ok(onDisk === acknowledged || onDisk === inFlight, `round ${round}: the file holds neither the last acknowledged state nor the one in flight\nfile:         ${onDisk}\nacknowledged: ${acknowledged}\nin flight:    ${inFlight}`);
    }
  });

  test('a bad config exits 2 naming the key, before any child starts', async () => {
    const file = path.join(dir, 'bad.toml');
    await writeFile(file, 'api_port = "nine"\n');
    await assert.rejects(startManager(file), /exit code 2\)[\s\S]*api_port: Expected integer/);
  });
});
