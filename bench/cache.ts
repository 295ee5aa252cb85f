/**
 * What the embedding cache and in-request dedup buy (issue 14): a corpus whose rows repeat 0 %,
 * 37 % or 90 % of the time (a repeated row is a copy of an earlier row, drawn uniformly, placed
 * anywhere after it), sent through two front ends: the HTTP data plane as `POST /embed` batches of
 * --batch rows, and the multiplexer's EmbedArrow as Arrow IPC batches of --arrow-batch rows (LZ4),
 * --concurrency requests in flight, to one real manager with two instances of the same generated
 * model: `cached` (the cache on) and `uncached` (`embedding_cache = false`: in-request dedup only).
 * Each run starts with an empty cache (the corpus's texts carry a per-run tag, so no run sees
 * another's entries). Rounds alternate cached/uncached per repeat level.
 *
 * Reported per front end, level and instance: requests/s, texts/s (corpus rows answered per second), the
 * child's own computed inputs (teiplex_batch_items_total from its /metrics), the manager's CPU per
 * request (utime + stime of its process from /proc/<pid>/stat, before and after the run: what the
 * cache and dedup cost the manager itself, which texts/s cannot resolve when the model dominates),
 * and the ratio cached / uncached. The client is Node (undici, bodies built before the clock starts): each call
 * carries a different body, which hey and h2load cannot send; the client's CPU is not what is
 * measured here, the model's work is.
 *
 *   npm run build && node --import tsx bench/cache.ts [--model minilm-l6] [--rows 2048] [--batch 32]
 *        [--arrow-batch 256] [--concurrency 4] [--rounds 2]
 *
 * Prints the table; writes bench/results/cache.json and cache.md.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { projectPath } from '../src/common/paths.js';
import type { ShapeName } from '../src/testmodel/shapes.js';
import { childBatchItems, instanceToml, writeConfig } from '../test/helpers/data-plane.js';
import { readFileSync } from 'node:fs';
import { startManager, type ManagerProcess } from '../test/helpers/manager-process.js';
import { cpuUsPerCall, parseProcStat } from './lib/load-tools.js';
import { testModel } from '../test/helpers/models.js';
import { type AnyClient, mux, unary } from '../test/helpers/mux-client.js';
import { encodeTexts } from '../src/arrow/embedding-batch.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string', default: 'minilm-l6' },
    rows: { type: 'string', default: '2048' },
    batch: { type: 'string', default: '32' },
    'arrow-batch': { type: 'string', default: '256' },
    concurrency: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '2' },
  },
});
const ROWS = Number(args.rows);
const BATCH = Number(args.batch);
const ARROW_BATCH = Number(args['arrow-batch']);
const CONCURRENCY = Number(args.concurrency);
const ROUNDS = Number(args.rounds);
const LEVELS = [0, 0.37, 0.9];
const INSTANCES = ['cached', 'uncached'] as const;
const FRONTS = ['http', 'arrow'] as const;
type Front = (typeof FRONTS)[number];

/** A seeded corpus of `n` rows, a share `repeat` of them copies of earlier rows. */
function corpus(n: number, repeat: number, tag: string, seed: number): string[] {
  let s = seed >>> 0 || 1;
  const rand = (): number => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  const words = 'river market city model vector search energy water music history planet protein garden winter court film engine order invoice language'.split(' ');
  const rows: string[] = [];
  for (let i = 0; i < n; i++) {
    if (i > 0 && rand() < repeat) rows.push(rows[Math.floor(rand() * i)]);
    else rows.push(`${tag} ${i}: ${Array.from({ length: 8 + Math.floor(rand() * 24) }, () => words[Math.floor(rand() * words.length)]).join(' ')}`);
  }
  return rows;
}

interface Run {
  front: Front;
  level: number;
  instance: string;
  seconds: number;
  requests: number;
  texts: number;
  computed: number;
  hits: number;
  /** The manager's CPU microseconds per request. */
  managerCpuUs: number;
}

/** /proc's clock ticks per second (USER_HZ, 100 on Linux). */
const TICKS = 100;
const managerTicks = (m: ManagerProcess) => parseProcStat(readFileSync(`/proc/${m.proc.pid}/stat`, 'latin1'));

/** One call of a front end: its cache counts (`hits=N misses=M`). */
type Send = (k: number) => Promise<string>;

/** `POST /embed`, batches of BATCH rows. */
function httpCalls(m: ManagerProcess, instance: string, rows: string[]): { calls: number; send: Send } {
  const bodies: string[] = [];
  for (let i = 0; i < rows.length; i += BATCH) bodies.push(JSON.stringify({ model: instance, inputs: rows.slice(i, i + BATCH) }));
  const url = `http://127.0.0.1:${m.apiPort}/embed`;
  return {
    calls: bodies.length,
    send: async (k) => {
      const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: bodies[k] });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`${instance}: HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
      return String(res.headers['x-teiplex-cache'] ?? '');
    },
  };
}

/** EmbedArrow, Arrow IPC batches of ARROW_BATCH rows (written before the clock starts). */
function arrowCalls(client: AnyClient, instance: string, rows: string[]): { calls: number; send: Send } {
  const bodies: Buffer[] = [];
  for (let i = 0; i < rows.length; i += ARROW_BATCH) bodies.push(Buffer.from(encodeTexts(rows.slice(i, i + ARROW_BATCH))));
  return {
    calls: bodies.length,
    send: async (k) => {
      const { headers } = await unary(client, 'EmbedArrow', { target: { instance_name: instance }, arrow_ipc: bodies[k] });
      return String(headers.get('teiplex-cache')[0] ?? '');
    },
  };
}

async function run(m: ManagerProcess, grpcClient: AnyClient, front: Front, instance: string, rows: string[]): Promise<Omit<Run, 'front' | 'level' | 'instance'>> {
  const { calls, send } = front === 'http' ? httpCalls(m, instance, rows) : arrowCalls(grpcClient, instance, rows);
  const before = await childBatchItems(m, instance);
  const cpuBefore = managerTicks(m);
  let next = 0;
  let hits = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let k = next++; k < calls; k = next++) {
        const h = /hits=(\d+)/.exec(await send(k));
        hits += h ? Number(h[1]) : 0;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const managerCpuUs = cpuUsPerCall(cpuBefore, managerTicks(m), calls, TICKS);
  return { seconds, requests: calls, texts: rows.length, computed: (await childBatchItems(m, instance)) - before, hits, managerCpuUs };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'teiplex-bench-cache-'));
  const model = await testModel({ kind: 'embedding', shape: args.model as ShapeName });
  const http = 'extra_args = ["--http-port", "0"]\nmax_concurrent_requests = 512';
  const file = await writeConfig(dir, `embedding_cache_mb = 256\nmax_request_inputs = ${BATCH}`, instanceToml('cached', model, http) + instanceToml('uncached', model, `embedding_cache = false\n${http}`));
  const m = await startManager(file);
  const grpcClient = mux(Number(m.ready.grpc_port));
  const runs: Run[] = [];
  try {
    for (const name of INSTANCES) await m.waitFor(name, (i) => i.status === 'running', 180_000);
    // warm both children and both front ends (first-call costs) outside the measured runs
    for (const front of FRONTS) for (const name of INSTANCES) await run(m, grpcClient, front, name, corpus(ARROW_BATCH, 0, `warm-${front}-${name}`, 99));
    for (let round = 0; round < ROUNDS; round++) {
      for (const front of FRONTS) {
        for (const level of LEVELS) {
          for (const instance of round % 2 === 0 ? INSTANCES : [...INSTANCES].reverse()) {
            const rows = corpus(ROWS, level, `r${round}-${front}-${instance}-${level}`, 1000 + round * 10 + Math.round(level * 100));
            const r = await run(m, grpcClient, front, instance, rows);
            runs.push({ front, level, instance, ...r });
            console.error(`round ${round + 1} ${front} ${Math.round(level * 100)}% ${instance}: ${(r.texts / r.seconds).toFixed(1)} texts/s, computed ${r.computed}/${r.texts}`);
          }
        }
      }
    }
  } finally {
    grpcClient.close();
    await m.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const lines = [
    `| front end | repeated rows | instance | req/s | texts/s | rows computed by the child | manager CPU per request (µs) | cached / uncached texts/s | cached / uncached manager CPU |`,
    `| --- | --- | --- | --- | --- | --- | --- | --- | --- |`,
  ];
  const summary: Array<Record<string, number | string>> = [];
  for (const front of FRONTS) for (const level of LEVELS) {
    const of = (instance: string) => runs.filter((r) => r.front === front && r.level === level && r.instance === instance);
    const rate = (instance: string, what: 'requests' | 'texts') => {
      const rs = of(instance);
      return rs.reduce((n, r) => n + r[what], 0) / rs.reduce((n, r) => n + r.seconds, 0);
    };
    const computed = (instance: string) => {
      const rs = of(instance);
      return rs.reduce((n, r) => n + r.computed, 0) / rs.reduce((n, r) => n + r.texts, 0);
    };
    const cpu = (instance: string) => {
      const rs = of(instance);
      return rs.reduce((n, r) => n + r.managerCpuUs * r.requests, 0) / rs.reduce((n, r) => n + r.requests, 0);
    };
    const ratio = rate('cached', 'texts') / rate('uncached', 'texts');
    const cpuRatio = cpu('cached') / cpu('uncached');
    for (const instance of INSTANCES) {
      const mine = instance === 'cached';
      lines.push(
        `| ${front} | ${Math.round(level * 100)} % | ${instance} | ${rate(instance, 'requests').toFixed(1)} | ${rate(instance, 'texts').toFixed(1)} | ${(computed(instance) * 100).toFixed(1)} % | ${cpu(instance).toFixed(0)} | ${mine ? `${ratio.toFixed(2)}x` : ''} | ${mine ? `${cpuRatio.toFixed(2)}x` : ''} |`,
      );
      summary.push({ front, repeated: level, instance, requests_per_s: rate(instance, 'requests'), texts_per_s: rate(instance, 'texts'), computed_share: computed(instance), manager_cpu_us_per_request: cpu(instance), ...(mine ? { ratio, cpu_ratio: cpuRatio } : {}) });
    }
  }
  const table = lines.join('\n');
  console.log(`\nembedding cache, ${args.model}, ${ROWS} rows per run, HTTP batches of ${BATCH}, Arrow batches of ${ARROW_BATCH}, ${CONCURRENCY} in flight, ${ROUNDS} rounds\n\n${table}\n`);
  const out = projectPath('bench', 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, 'cache.json'), JSON.stringify({ model: args.model, rows: ROWS, batch: BATCH, arrow_batch: ARROW_BATCH, concurrency: CONCURRENCY, rounds: ROUNDS, summary, runs }, null, 2));
  writeFileSync(path.join(out, 'cache.md'), `${table}\n`);
}

await main();
