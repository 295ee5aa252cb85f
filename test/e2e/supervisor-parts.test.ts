/**
 * The supervisor's building blocks: state machine, GPU discovery (canned nvidia-smi output: this
 * machine has no GPU), child argv/env per runtime, port allocation with real bind probes, child
 * log rotation and paging.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { until } from '../helpers/wait.js';
import { buildChildCommand } from '../../src/runtimes/runtimes.js';
import { ChildLog } from '../../src/supervisor/child-log.js';
import { discoverGpus, parseNvidiaSmi } from '../../src/supervisor/gpus.js';
import { INSTANCE_STATES, StateMachine, TransitionError, canTransition } from '../../src/supervisor/instance-state.js';
import { allocatePort, portIsFree, PortRangeExhausted } from '../../src/supervisor/ports.js';

test('state machine: allowed transitions pass, others throw and leave the state alone', () => {
  const seen: string[] = [];
  const m = new StateMachine('stopped', (from, to, why) => seen.push(`${from}->${to}:${why}`));
  m.transition('starting', 'start');
  m.transition('running', 'ready');
  m.transition('unhealthy', 'health');
  m.transition('stopping', 'hang');
  m.transition('backoff', 'exited');
  m.transition('starting', 'backoff elapsed');
  m.transition('failed', 'crash loop');
  assert.throws(() => m.transition('running', 'x'), TransitionError);
  assert.equal(m.state, 'failed');
  assert.equal(seen.length, 7);
  assert.equal(canTransition('stopped', 'running'), false, 'never running without starting');
  assert.equal(canTransition('stopping', 'running'), false);
  for (const s of INSTANCE_STATES) assert.ok(INSTANCE_STATES.some((t) => canTransition(s, t)), `${s} is not a dead end`);
});

test('nvidia-smi CSV parsing (canned output; no GPU on the test machine)', () => {
  const canned = [
    '0, GPU-3b4f1c2a-0000-1111-2222-333344445555, NVIDIA H100 80GB HBM3, 81559, 1024, 37',
    '1, GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee, NVIDIA A10G, 23028, [N/A], [Not Supported]',
    '',
  ].join('\n');
  const gpus = parseNvidiaSmi(canned);
  assert.deepEqual(gpus[0], { index: 0, uuid: 'GPU-3b4f1c2a-0000-1111-2222-333344445555', name: 'NVIDIA H100 80GB HBM3', memory_total_mib: 81559, memory_used_mib: 1024, utilization_percent: 37 });
  assert.equal(gpus[1].memory_used_mib, null);
  assert.equal(gpus[1].utilization_percent, null);
  assert.throws(() => parseNvidiaSmi('garbage'), /expected 6 fields/);
});

test('no nvidia-smi: empty GPU list with the reason', async () => {
  const d = await discoverGpus('/nonexistent/nvidia-smi');
  assert.deepEqual(d.gpus, []);
  assert.match(d.error ?? '', /ENOENT/);
});

test('child argv: TEI flags, extra_args override without duplicates; clean environment', () => {
  const ctx = {
    spec: { name: 'a', model_id: 'org/m', max_batch_tokens: 8192, pooling: 'mean' as const, extra_args: ['--max-batch-tokens=4096', '--auto-truncate'], env: { OMP_NUM_THREADS: '2' } },
    port: 8081,
    prometheusPort: 9100,
    gpuIds: [1],
    managerEnv: { PATH: '/usr/bin', PORT: '9999', HOSTNAME: 'box', MODEL_ID: 'leak', API_KEY: 'secret', HF_TOKEN: 'hf', POOLING: 'cls', LC_ALL: 'C' },
  };
  const tei = buildChildCommand('tei', ctx, { teiBinaryPath: '/opt/tei' });
  assert.equal(tei.command, '/opt/tei');
  assert.deepEqual(tei.args, ['--model-id', 'org/m', '--port', '8081', '--hostname', '127.0.0.1', '--json-output', '--pooling', 'mean', '--prometheus-port', '9100', '--max-batch-tokens=4096', '--auto-truncate']);
  assert.deepEqual(tei.env, { PATH: '/usr/bin', HF_TOKEN: 'hf', LC_ALL: 'C', CUDA_VISIBLE_DEVICES: '1', OMP_NUM_THREADS: '2' });
  const router = buildChildCommand('router', { ...ctx, gpuIds: [] }, { teiBinaryPath: '/opt/tei' });
  assert.equal(router.command, process.execPath);
  assert.match(router.args[0], /bin[\\/]teiplex\.js$/);
  assert.equal(router.args[1], 'router');
  assert.equal(router.env.CUDA_VISIBLE_DEVICES, '');
  assert.ok(!router.args.includes('--device'), 'no GPU: the router default (cpu)');
  // Pinned to a GPU: the router uses it, unless the spec says otherwise.
  assert.deepEqual(buildChildCommand('router', ctx, { teiBinaryPath: '/opt/tei' }).args.slice(-2), ['--device', 'cuda']);
  const cpu = buildChildCommand('router', { ...ctx, spec: { ...ctx.spec, extra_args: ['--device', 'cpu'] } }, { teiBinaryPath: '/opt/tei' });
  assert.deepEqual(cpu.args.filter((a) => a === '--device' || a === 'cuda' || a === 'cpu'), ['--device', 'cpu']);
  const byEnv = buildChildCommand('router', { ...ctx, spec: { ...ctx.spec, env: { TEIPLEX_DEVICE: 'cpu' } } }, { teiBinaryPath: '/opt/tei' });
  assert.ok(!byEnv.args.includes('--device'));
  assert.ok(!tei.args.includes('--device'), 'TEI chooses its device by its build');
  assert.throws(() => buildChildCommand('command', ctx, { teiBinaryPath: 'x' }), /needs 'command'/);
});

test('ports: skips held ports and ports bound by someone else', async () => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const busy = (blocker.address() as { port: number }).port;
  try {
    assert.equal(await portIsFree(busy), false);
    const p = await allocatePort(busy, busy + 5, new Set([busy + 1]));
    assert.ok(p >= busy + 2 && p <= busy + 5, `${p}`);
    await assert.rejects(allocatePort(busy, busy, new Set()), PortRangeExhausted);
  } finally {
    blocker.close();
  }
});

test('child log: rotation at the cap, tail kept in memory, paging by absolute line numbers', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'teiplex-log-'));
  try {
    const log = new ChildLog({ dir, name: 'inst', maxBytes: 2048, maxFiles: 2, tailLines: 50, maxLineBytes: 16384, bufferBytes: 1 << 20 });
    for (let i = 0; i < 400; i++) log.write(`line ${i} ${'x'.repeat(20)}\n`);
    log.write('partial');
    log.flush();
    assert.equal(log.totalLines, 401);
    await log.close();
    const files = (await readdir(dir)).sort();
    assert.deepEqual(files, ['inst.log', 'inst.log.1', 'inst.log.2']);
    for (const f of files) assert.ok((await readFile(path.join(dir, f))).length <= 2048);
    const all = log.range();
    assert.equal(all.lines.length, 50);
    assert.equal(all.start, 351);
    assert.equal(all.end, 401);
    assert.equal(all.lines.at(-1), 'partial');
    const page = log.range(360, 362);
    assert.deepEqual(page.lines.map((l) => l.split(' ')[1]), ['360', '361']);
    assert.deepEqual(log.range(0, 5), { lines: [], start: 351, end: 351, total_lines: 401 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('orphan reaping: marked processes (and their group) are found and stopped; unmarked ones and recycled pids are left alone', async () => {
  const { spawn } = await import('node:child_process');
  const { childMarker, findMarked, isAlive, processStartTime, reapOrphans } = await import('../../src/supervisor/process-record.js');
  const stateFile = path.join(tmpdir(), `teiplex-orphans-${process.pid}-${Date.now()}`, 'state.toml');
  const env = { PATH: process.env.PATH, ...childMarker(stateFile, 'orphan') };
  // A process group: a shell and its own child, as a runtime child with helpers would be.
  const orphan = spawn('sh', ['-c', 'sleep 30 & wait'], { detached: true, stdio: 'ignore', env });
  const otherManager = spawn('sleep', ['30'], { detached: true, stdio: 'ignore', env: { PATH: process.env.PATH, ...childMarker(`${stateFile}.other`, 'x') } });
  const bystander = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
  try {
    // The shell's own sleep is forked by then (it inherits the marker).
    const found = await until('the shell and its sleep marked', () => {
      const f = findMarked(stateFile);
      return f.length >= 2 ? f : undefined;
    }, { timeoutMs: 10_000 });
    assert.ok(found.some((p) => p.pid === orphan.pid), 'the marked shell is found');
    assert.equal(found.length, 2, 'the shell and its sleep (the marker is inherited)');
    assert.ok(found.every((p) => p.instance === 'orphan'));
    const recycled = { pid: bystander.pid!, start_time: (processStartTime(bystander.pid!) ?? 0) - 1, instance: 'recycled' };
    const stopped = await reapOrphans([...found, recycled], 1000);
    assert.deepEqual(stopped, ['orphan']);
    for (const p of found) assert.equal(isAlive(p.pid), false, `pid ${p.pid} stopped`);
    assert.equal(isAlive(bystander.pid!), true, 'a recycled pid is never signalled');
    assert.equal(isAlive(otherManager.pid!), true, "another state file's child is not ours");
  } finally {
    orphan.kill('SIGKILL');
    otherManager.kill('SIGKILL');
    bystander.kill('SIGKILL');
  }
});

test('manager lock: of several processes taking it at the same instant (none there, or a stale one), exactly one holds it', async () => {
  const { spawn } = await import('node:child_process');
  const { writeFile } = await import('node:fs/promises');
  const dir = await mkdtemp(path.join(tmpdir(), 'teiplex-lock-'));
  const lockModule = new URL('../../src/supervisor/manager-lock.ts', import.meta.url).href;
  // Each contender waits for the same wall-clock instant, takes the lock, says how it went, and
  // holds on until its stdin closes: after every contender has tried.
  const contender = (stateFile: string, at: number) => {
    const code = `const { ManagerLock } = await import(${JSON.stringify(lockModule)});
        while (Date.now() < ${at}) {}
        try { await new ManagerLock(${JSON.stringify(stateFile)}).acquire(); console.log('held'); } catch (e) { console.log(e.name); }
        process.stdin.resume().on('end', () => process.exit(0));`;
    const p = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    return { p, exited, out: () => out };
  };
  try {
    for (const stale of [false, true]) {
      for (let round = 0; round < 3; round++) {
        const stateFile = path.join(dir, `${stale ? 'stale' : 'fresh'}-${round}.toml`);
        // A stale lock: its owner is long gone (pid 1 with another start time is not it).
        if (stale) await writeFile(`${stateFile}.lock`, JSON.stringify({ pid: 1, start_time: 1 }));
        const at = Date.now() + 2500;
        const cs = [0, 1, 2, 3].map(() => contender(stateFile, at));
        let results: string[];
        try {
          results = await until('every contender\'s answer', () => (cs.every((c) => c.out().includes('\n') || c.p.exitCode !== null) ? cs.map((c) => c.out().trim()) : undefined), { timeoutMs: 60_000 });
        } finally {
          for (const c of cs) c.p.stdin!.end();
          await Promise.all(cs.map((c) => c.exited));
        }
        assert.equal(results.filter((r) => r === 'held').length, 1, `${stale ? 'stale' : 'fresh'} round ${round}: ${results.join(', ')}`);
        assert.equal(results.filter((r) => r === 'StateFileInUse').length, 3, results.join(', '));
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
