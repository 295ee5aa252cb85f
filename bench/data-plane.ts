/**
 * The HTTP data plane's benchmark: a real `teiplex serve` with two `teiplex router` children that
 * also serve TEI's HTTP routes themselves (`--http-port 0`), one on the tiny generated model and
 * one on a model of all-MiniLM-L6-v2's real architecture (`minilm-l6`, real compute cost),
 * measured with the real `teiplex bench` CLI at concurrency 32:
 *
 *   1. HTTP /embed through the manager vs straight to the child's --http-port (batch 1; and 32
 *      on the tiny model: 32 x 32 texts in flight on the real-size model outlast a run);
 *   2. OpenAI /v1/embeddings through the manager vs the child's own;
 *   3. HTTP vs gRPC through the manager on the same instance (unary Embed vs /embed batch 1;
 *      tiny: EmbedStream of 32 vs /embed of 32).
 *
 * Children admit 4,096 inputs at once, so 32 requests of 32 are never refused as overloaded (a
 * refused request would count as a fast answer). Pairs run alternately (A B A B) for --rounds
 * rounds; figures are medians. Client, manager and
 * children share this machine's cores, so on a small machine the manager's CPU comes out of the
 * child's budget and the ratios are a floor.
 *
 *   npm run build && node --import tsx bench/data-plane.ts [--duration 5 --rounds 2 --models tiny,minilm-l6]
 *
 * Prints a table; writes bench/results/data-plane.json and bench/results/data-plane.md.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { projectPath } from '../src/common/paths.js';
import type { ShapeName } from '../src/testmodel/shapes.js';
import { childHttpPort } from '../test/helpers/data-plane.js';
import { startManager } from '../test/helpers/manager-process.js';
import { testModel } from '../test/helpers/models.js';

const run = promisify(execFile);

const { values: flags } = parseArgs({
  options: {
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '100' },
    models: { type: 'string', default: 'tiny,minilm-l6' },
    out: { type: 'string', default: projectPath('bench', 'results') },
  },
  strict: true,
});

interface Report {
  throughput_per_sec: number;
  latency_ms: { p50: number; p99: number };
  successful: number;
  failed: number;
  errors: Record<string, number>;
}

async function bench(args: string[]): Promise<Report> {
  const { stdout } = await run(process.execPath, [projectPath('bin', 'teiplex.js'), 'bench', '--no-progress', '--duration', flags.duration, '--warmup', flags.warmup, '-c', '32', ...args], {
    maxBuffer: 16 * 1024 * 1024,
  });
  return JSON.parse(stdout) as Report;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

interface Row {
  model: string;
  name: string;
  a: string;
  b: string;
  a_texts_per_sec: number;
  b_texts_per_sec: number;
  ratio: number;
  a_p50_ms: number;
  b_p50_ms: number;
  failed: number;
}

async function pair(model: string, name: string, a: [string, string[]], b: [string, string[]]): Promise<Row> {
  const ra: Report[] = [];
  const rb: Report[] = [];
  for (let i = 0; i < Number(flags.rounds); i++) {
    ra.push(await bench(a[1]));
    rb.push(await bench(b[1]));
  }
  const tput = (rs: Report[]) => median(rs.map((r) => r.throughput_per_sec));
  const p50 = (rs: Report[]) => median(rs.map((r) => r.latency_ms.p50));
  const row: Row = {
    model,
    name,
    a: a[0],
    b: b[0],
    a_texts_per_sec: tput(ra),
    b_texts_per_sec: tput(rb),
    ratio: tput(rb) / tput(ra),
    a_p50_ms: p50(ra),
    b_p50_ms: p50(rb),
    failed: [...ra, ...rb].reduce((s, r) => s + r.failed, 0),
  };
  console.error(`${model} ${name}: ${row.a_texts_per_sec.toFixed(0)} vs ${row.b_texts_per_sec.toFixed(0)} texts/s (${row.ratio.toFixed(2)}x)${row.failed ? ` failed ${row.failed}` : ''}`);
  return row;
}

async function main(): Promise<void> {
  const shapes = flags.models.split(',') as ShapeName[];
  const dir = mkdtempSync(path.join(tmpdir(), 'teiplex-dp-bench-'));
  let toml = `api_port = 0\ngrpc_port = 0\nlisten_host = "127.0.0.1"\nstate_file = ${JSON.stringify(path.join(dir, 'state.toml'))}\nlog_dir = ${JSON.stringify(path.join(dir, 'logs'))}\ninstance_port_start = 33000\ninstance_port_end = 33100\n`;
  for (const shape of shapes) {
    toml += `[[instances]]\nname = "${shape}"\nmodel_id = ${JSON.stringify(await testModel({ kind: 'embedding', shape }))}\nmax_concurrent_requests = 4096\nextra_args = ["--http-port", "0", "--auto-truncate"]\n`;
  }
  const cfg = path.join(dir, 'c.toml');
  writeFileSync(cfg, toml);
  const m = await startManager(cfg);
  const rows: Row[] = [];
  try {
    const api = `http://127.0.0.1:${m.apiPort}`;
    const mux = `127.0.0.1:${Number(m.ready.grpc_port)}`;
    for (const shape of shapes) {
      await m.waitFor(shape, (i) => i.status === 'running', 300_000);
      const child = `http://127.0.0.1:${await childHttpPort(m, shape)}`;
      // A real-size model answers 32 x 32 texts in flight far slower than a run lasts: batch 1 only.
      const batches = shape === 'tiny' ? ['1', '32'] : ['1'];
      for (const b of batches) {
        rows.push(await pair(shape, `HTTP /embed, batch ${b}`, ['direct to child', ['-e', child, '-m', 'http', '-b', b]], ['through the manager', ['-e', api, '-m', 'http', '--model', shape, '-b', b]]));
      }
      const last = batches[batches.length - 1];
      rows.push(await pair(shape, `OpenAI /v1/embeddings, batch ${last}`, ['direct to child', ['-e', child, '-m', 'openai', '-b', last]], ['through the manager', ['-e', api, '-m', 'openai', '--model', shape, '-b', last]]));
      rows.push(await pair(shape, 'gRPC vs HTTP through the manager, batch 1', ['gRPC unary Embed', ['-e', mux, '-i', shape]], ['HTTP /embed', ['-e', api, '-m', 'http', '--model', shape, '-b', '1']]));
      if (shape === 'tiny') {
        rows.push(await pair(shape, 'gRPC vs HTTP through the manager, 32 texts', ['gRPC EmbedStream of 32', ['-e', mux, '-i', shape, '-m', 'stream', '-b', '32']], ['HTTP /embed of 32', ['-e', api, '-m', 'http', '--model', shape, '-b', '32']]));
      }
    }
  } finally {
    await m.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const machine = { cpus: availableParallelism(), cpu_model: cpus()[0]?.model, node: process.version };
  const md = [
    `# teiplex HTTP data plane`,
    ``,
    `${machine.cpus} cores (${machine.cpu_model}), Node ${machine.node}; concurrency 32; ${flags.duration} s per run, ${flags.rounds} rounds, medians; client, manager and child share the cores.`,
    ``,
    `| model | comparison | A | A texts/s | B | B texts/s | B / A | p50 A ms | p50 B ms |`,
    `| --- | --- | --- | --- | --- | --- | --- | --- | --- |`,
    ...rows.map(
      (r) =>
        `| ${r.model} | ${r.name} | ${r.a} | ${r.a_texts_per_sec.toFixed(0)} | ${r.b} | ${r.b_texts_per_sec.toFixed(0)} | ${r.ratio.toFixed(2)}x | ${r.a_p50_ms.toFixed(1)} | ${r.b_p50_ms.toFixed(1)} |${r.failed ? ` (${r.failed} failed)` : ''}`,
    ),
    ``,
  ].join('\n');
  console.log(md);
  mkdirSync(flags.out, { recursive: true });
  writeFileSync(path.join(flags.out, 'data-plane.json'), JSON.stringify({ machine, duration_secs: Number(flags.duration), rounds: Number(flags.rounds), rows }, null, 2) + '\n');
  writeFileSync(path.join(flags.out, 'data-plane.md'), md);
}

await main();
