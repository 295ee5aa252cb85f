/**
 * The front-end benchmark suite (`npm run bench`): a real `teiplex serve` on loopback with a
 * `teiplex router` child on the tiny generated model, measured with the real `teiplex bench` CLI.
 *
 *   1. gRPC unary Embed at concurrency 32: straight to the child vs through the multiplexer
 *      (throughput ratio, added p50 latency in microseconds);
 *   2. EmbedArrow in 1,000-row batches vs unary Embed at concurrency 64, through the multiplexer;
 *   3. HTTP /embed through the manager vs straight to the child's --http-port, concurrency 32;
 *      HTTP vs gRPC on the same instance.
 *
 * Each pair runs alternately (A B A B) for --rounds rounds; figures are the medians. The client,
 * the manager and the child share this machine's cores: on a small machine the client's and the
 * multiplexer's CPU time come out of the child's budget, so ratios are a floor.
 *
 *   npm run bench [-- --duration 5 --rounds 2 --only grpc,arrow,http]
 *
 * Prints a table; writes bench/results/suite.json and bench/results/suite.md. Comparisons whose
 * front end answers nothing but errors are reported as unavailable.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { projectPath } from '../src/common/paths.js';
import { startManager } from '../test/helpers/manager-process.js';
import { testModel } from '../test/helpers/models.js';

const run = promisify(execFile);

const { values: flags } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '200' },
    only: { type: 'string', default: 'grpc,arrow,http' },
    out: { type: 'string', default: projectPath('bench', 'results') },
  },
  strict: true,
});

interface BenchReport {
  throughput_per_sec: number;
  latency_ms: { p50: number; p99: number };
  successful: number;
  failed: number;
  errors: Record<string, number>;
}

async function bench(args: string[]): Promise<BenchReport> {
  const { stdout } = await run(process.execPath, [projectPath('bin', 'teiplex.js'), 'bench', '--no-progress', '--duration', flags.duration, '--warmup', flags.warmup, ...args], {
    maxBuffer: 16 * 1024 * 1024,
  });
  return JSON.parse(stdout) as BenchReport;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

interface Side {
  label: string;
  args: string[];
}
interface PairResult {
  name: string;
  a: { label: string; texts_per_sec: number; p50_ms: number; p99_ms: number; failed: number };
  b: { label: string; texts_per_sec: number; p50_ms: number; p99_ms: number; failed: number };
  ratio_b_over_a: number;
  added_p50_us: number;
  unavailable?: string;
}

async function pair(name: string, a: Side, b: Side): Promise<PairResult> {
  const ra: BenchReport[] = [];
  const rb: BenchReport[] = [];
  for (let i = 0; i < Number(flags.rounds); i++) {
    ra.push(await bench(a.args));
    rb.push(await bench(b.args));
  }
  const side = (label: string, rs: BenchReport[]) => ({
    label,
    texts_per_sec: median(rs.map((r) => r.throughput_per_sec)),
    p50_ms: median(rs.map((r) => r.latency_ms.p50)),
    p99_ms: median(rs.map((r) => r.latency_ms.p99)),
    failed: rs.reduce((s, r) => s + r.failed, 0),
  });
  const A = side(a.label, ra);
  const B = side(b.label, rb);
  const dead = [A, B].filter((x, k) => x.texts_per_sec === 0 || (k === 0 ? ra : rb).every((r) => r.successful === 0));
  return {
    name,
    a: A,
    b: B,
    ratio_b_over_a: A.texts_per_sec > 0 ? B.texts_per_sec / A.texts_per_sec : NaN,
    added_p50_us: (B.p50_ms - A.p50_ms) * 1000,
    unavailable: dead.length > 0 ? `${dead.map((d) => d.label).join(', ')}: no successful request (${JSON.stringify([...ra, ...rb].map((r) => r.errors))})` : undefined,
  };
}

async function main(): Promise<void> {
  const only = new Set(flags.only.split(','));
  const dir = mkdtempSync(path.join(tmpdir(), 'teiplex-suite-'));
  const model = await testModel({ kind: 'embedding' });
  const cfg = path.join(dir, 'c.toml');
  writeFileSync(
    cfg,
    `api_port = 0\ngrpc_port = 0\nlisten_host = "127.0.0.1"\nstate_file = ${JSON.stringify(path.join(dir, 'state.toml'))}\nlog_dir = ${JSON.stringify(path.join(dir, 'logs'))}\ninstance_port_start = 32000\ninstance_port_end = 32100\n` +
      `[[instances]]\nname = "tiny"\nmodel_id = ${JSON.stringify(model)}\nextra_args = ["--http-port", "0"]\n`,
  );
  const m = await startManager(cfg);
  try {
    const inst = await m.waitFor('tiny', (i) => i.status === 'running');
    const logs: string[] = (await m.api('GET', '/instances/tiny/logs')).body.lines;
    const ready = logs.map((l) => (l.includes('"msg":"ready"') ? /"http_port":(\d+)/.exec(l) : null)).find((x) => x);
    const childHttp = ready ? Number(ready[1]) : undefined;
    const mux = `127.0.0.1:${Number(m.ready.grpc_port)}`;
    const api = `http://127.0.0.1:${m.apiPort}`;
    const results: PairResult[] = [];
    if (only.has('grpc')) {
      results.push(
        await pair('gRPC unary Embed, c=32', { label: 'direct to child', args: ['-e', `127.0.0.1:${inst.port}`, '--direct', '-c', '32'] }, { label: 'through multiplexer', args: ['-e', mux, '-i', 'tiny', '-c', '32'] }),
      );
    }
    if (only.has('arrow')) {
      results.push(
        await pair('EmbedArrow 1,000-row batches vs unary Embed, c=64, multiplexer', { label: 'unary Embed c=64', args: ['-e', mux, '-i', 'tiny', '-c', '64'] }, { label: 'EmbedArrow b=1000', args: ['-e', mux, '-i', 'tiny', '-m', 'arrow', '-b', '1000', '-c', '4'] }),
      );
    }
    if (only.has('http') && childHttp !== undefined) {
      results.push(
        await pair('HTTP /embed, c=32, batch 1', { label: 'direct to child --http-port', args: ['-e', `http://127.0.0.1:${childHttp}`, '-m', 'http', '-b', '1', '-c', '32'] }, { label: 'through the manager', args: ['-e', api, '-m', 'http', '--model', 'tiny', '-b', '1', '-c', '32'] }),
      );
      results.push(
        await pair('HTTP vs gRPC on the same instance (through the manager), c=32', { label: 'gRPC unary', args: ['-e', mux, '-i', 'tiny', '-c', '32'] }, { label: 'HTTP /embed', args: ['-e', api, '-m', 'http', '--model', 'tiny', '-b', '1', '-c', '32'] }),
      );
    }
    const machine = { cpus: availableParallelism(), cpu_model: cpus()[0]?.model, node: process.version };
    const lines = [
      `| comparison | A | A texts/s | B | B texts/s | B / A | p50 A ms | p50 B ms | added p50 |`,
      `| --- | --- | --- | --- | --- | --- | --- | --- | --- |`,
      ...results.map((r) =>
        r.unavailable
          ? `| ${r.name} | ${r.a.label} | ${r.a.texts_per_sec.toFixed(0)} | ${r.b.label} | unavailable | - | - | - | ${r.unavailable.slice(0, 80)} |`
          : `| ${r.name} | ${r.a.label} | ${r.a.texts_per_sec.toFixed(0)} | ${r.b.label} | ${r.b.texts_per_sec.toFixed(0)} | ${r.ratio_b_over_a.toFixed(2)}x | ${r.a.p50_ms.toFixed(2)} | ${r.b.p50_ms.toFixed(2)} | ${r.added_p50_us.toFixed(0)} us |`,
      ),
    ];
    const md = `# teiplex front-end suite\n\n${machine.cpus} cores (${machine.cpu_model}), Node ${machine.node}; tiny generated model; ${flags.duration} s per run, ${flags.rounds} rounds, medians.\n\n${lines.join('\n')}\n`;
    console.log(md);
    mkdirSync(flags.out, { recursive: true });
    writeFileSync(path.join(flags.out, 'suite.json'), JSON.stringify({ machine, duration_secs: Number(flags.duration), rounds: Number(flags.rounds), results }, null, 2) + '\n');
    writeFileSync(path.join(flags.out, 'suite.md'), md);
    console.log(`wrote ${path.join(flags.out, 'suite.json')} and suite.md`);
  } finally {
    await m.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
