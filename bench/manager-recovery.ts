/**
 * Control-plane measurements (issue 3): a real `teiplex serve` with `teiplex router` children on
 * the tiny generated model.
 *
 *   - kill -9 of a child -> running again (ms): the crash is seen from the process exit, then
 *     back-off (initial_backoff_ms), spawn, model load, readiness probe;
 *   - manager RSS idle with 0 and with 4 running instances (the manager process alone);
 *   - state write latency: StateStore.save (write temp, fsync, rename, fsync dir) of 4 and 50
 *     instances, p50/p99, and the manager's own histogram after REST create/delete cycles.
 *
 *   npm run build && node --import tsx bench/manager-recovery.ts [--kills 5] [--writes 200] [--backoff-ms 100]
 *
 * Prints a table and writes bench/results/manager-recovery.json.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectPath } from '../src/common/paths.js';
import { StateStore, type State } from '../src/state/state-store.js';
import { startManager } from '../test/helpers/manager-process.js';
import { testModel } from '../test/helpers/models.js';
import { quantile } from './lib/stats.js';

const { values: flags } = parseArgs({
  options: {
    kills: { type: 'string', default: '5' },
    writes: { type: 'string', default: '200' },
    'backoff-ms': { type: 'string', default: '100' },
    out: { type: 'string', default: projectPath('bench', 'results', 'manager-recovery.json') },
  },
  strict: true,
});

const rssMiB = (pid: number): number => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
};

async function stateWrites(dir: string, n: number, instances: number): Promise<{ p50_ms: number; p99_ms: number; bytes: number }> {
  const store = new StateStore(path.join(dir, `bench-${instances}.toml`));
  const state: State = {
    version: 1,
    instances: Array.from({ length: instances }, (_, i) => ({
      name: `instance-${i}`,
      model_id: `org/model-${i}`,
      port: 8080 + i,
      gpu_id: i % 8,
      extra_args: ['--auto-truncate'],
      desired_state: 'running' as const,
      created_at: new Date().toISOString(),
      source: 'api' as const,
    })),
    models: [],
  };
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    state.instances[0].port = 8080 + (i % 10);
    const t0 = performance.now();
    await store.save(state);
    times.push(performance.now() - t0);
  }
  return { p50_ms: quantile(times, 0.5), p99_ms: quantile(times, 0.99), bytes: readFileSync(store.file).length };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'teiplex-bench-mgr-'));
  try {
    const model = await testModel({ kind: 'embedding' });
    const cfg = path.join(dir, 'c.toml');
    writeFileSync(
      cfg,
      `api_port = 0\ngrpc_port = 0\nlisten_host = "127.0.0.1"\nstate_file = ${JSON.stringify(path.join(dir, 'state.toml'))}\nlog_dir = ${JSON.stringify(path.join(dir, 'logs'))}\nhealth_check_interval_secs = 1\ninstance_port_start = 31000\ninstance_port_end = 31100\n[restart]\ninitial_backoff_ms = ${Number(flags['backoff-ms'])}\nmax_restarts = 100\n`,
    );
    const m = await startManager(cfg);
    const pid = m.proc.pid!;
    await sleep(2000);
    const rssIdle0 = rssMiB(pid);

    const names = ['b0', 'b1', 'b2', 'b3'];
    for (const name of names) await m.api('POST', '/instances', { name, model_id: model });
    for (const name of names) await m.waitFor(name, (i) => i.status === 'running');
    await sleep(2000);
    const rssIdle4 = rssMiB(pid);

    const recovery: number[] = [];
    for (let k = 0; k < Number(flags.kills); k++) {
      const before = await m.waitFor('b0', (i) => i.status === 'running');
      const t0 = performance.now();
      process.kill(before.pid, 'SIGKILL');
      await m.waitFor('b0', (i) => i.status === 'running' && i.pid !== before.pid);
      recovery.push(performance.now() - t0);
    }

    for (let i = 0; i < 50; i++) {
      await m.api('POST', '/instances?start=false', { name: 'tmp', model_id: 'org/x' });
      await m.api('DELETE', '/instances/tmp');
    }
    const metrics = String((await m.api('GET', '/metrics')).body);
    const sum = Number(/teiplex_state_write_seconds_sum (\S+)/.exec(metrics)?.[1]);
    const count = Number(/teiplex_state_write_seconds_count (\S+)/.exec(metrics)?.[1]);
    await m.stop();

    const w4 = await stateWrites(dir, Number(flags.writes), 4);
    const w50 = await stateWrites(dir, Number(flags.writes), 50);
    const result = {
      kill9_to_running_ms: { p50: quantile(recovery, 0.5), max: Math.max(...recovery), runs: recovery, initial_backoff_ms: Number(flags['backoff-ms']) },
      manager_rss_mib: { idle_0_instances: rssIdle0, idle_4_instances: rssIdle4 },
      state_write_ms: { store_4_instances: w4, store_50_instances: w50, manager_mean_over_rest_writes: (sum / count) * 1000, manager_writes: count },
      machine: { cpus: (await import('node:os')).availableParallelism(), node: process.version },
    };
    const rows: Array<[string, string]> = [
      ['kill -9 -> running again (p50 / max)', `${result.kill9_to_running_ms.p50.toFixed(0)} / ${result.kill9_to_running_ms.max.toFixed(0)} ms (back-off ${flags['backoff-ms']} ms included)`],
      ['manager RSS, 0 instances', `${rssIdle0.toFixed(1)} MiB`],
      ['manager RSS, 4 running instances', `${rssIdle4.toFixed(1)} MiB`],
      ['state write, 4 instances (p50 / p99)', `${w4.p50_ms.toFixed(2)} / ${w4.p99_ms.toFixed(2)} ms (${w4.bytes} B)`],
      ['state write, 50 instances (p50 / p99)', `${w50.p50_ms.toFixed(2)} / ${w50.p99_ms.toFixed(2)} ms (${w50.bytes} B)`],
      ['state write in the manager (mean)', `${result.state_write_ms.manager_mean_over_rest_writes.toFixed(2)} ms over ${count} writes`],
    ];
    const w = Math.max(...rows.map((r) => r[0].length));
    for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
    mkdirSync(path.dirname(flags.out), { recursive: true });
    writeFileSync(flags.out, JSON.stringify(result, null, 2) + '\n');
    console.log(`\nwrote ${flags.out}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
