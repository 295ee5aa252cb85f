/**
 * The router throughput benchmark (issue 2, "Must show"), all in one run, on a generated
 * all-MiniLM-L6-v2-shaped model and the seeded mixed-length workload of bench/workload.ts:
 *
 *   (a)   one ONNX Runtime session (onnxruntime-node directly, the router's session options and
 *         thread count) fed pre-tokenized batches of 32 in workload order, padded to their longest
 *   (a')  the same batches of 32, each split into length-sorted sub-batches at the cuts that
 *         minimise sum(padded tokens + per-batch overhead) (what a length-grouping batcher can reach)
 *   (b)   @huggingface/transformers feature-extraction in-process, batches of 32 (mean, normalized)
 *   (r)   `teiplex router` over gRPC: per batch of 32, 32 concurrent unary tei.v1.Embed/Embed calls
 *   (r64) `teiplex router` over gRPC: 64 concurrent single-text clients in a closed loop
 *
 * Every variant embeds the same texts (truncated at the model's max input length, 256); warm-up
 * texts (another seed) are run first and not timed. Tokenization is excluded from (a)/(a') (they
 * are fed token ids) and included in (b), (r), (r64) (they take text).
 *
 *   node --import tsx bench/router-throughput.ts [--texts N] [--threads T] [--seed S]
 *        [--warmup N] [--clients N] [--model DIR] [--from-source] [--only a,a',b,r,r64]
 *
 * Prints a table and writes bench/results/router-throughput.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { env as hfEnv, pipeline, type FeatureExtractionPipeline } from '@huggingface/transformers';
import * as ort from 'onnxruntime-node';
import { projectPath } from '../src/common/paths.js';
import { findOnnxFile } from '../src/router/model-files.js';
import { routerPackageDefinition } from '../src/tei/proto.js';
import { testModel } from '../test/helpers/models.js';
import { DEFAULT_SEED, makeWorkload } from './workload.js';
import { cosine } from '../test/helpers/vectors.js';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('tokenizers') as typeof import('tokenizers');

const BATCH = 32;

// ---------------------------------------------------------------------------------------------
// Options

const { values: flags } = parseArgs({
  options: {
    texts: { type: 'string', default: '1024' },
    threads: { type: 'string' },
    seed: { type: 'string', default: String(DEFAULT_SEED) },
    warmup: { type: 'string', default: '64' },
    clients: { type: 'string', default: '64' },
    model: { type: 'string' },
    'from-source': { type: 'boolean', default: false },
    only: { type: 'string' },
    out: { type: 'string', default: projectPath('bench', 'results', 'router-throughput.json') },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
if (flags.help) {
  process.stdout.write(readFileSync(new URL(import.meta.url)).toString().split('*/')[0] + '*/\n');
  process.exit(0);
}
function posInt(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return n;
}
const N = posInt('texts', flags.texts, 1024);
const THREADS = posInt('threads', flags.threads, os.availableParallelism());
const SEED = posInt('seed', flags.seed, DEFAULT_SEED);
const WARMUP = posInt('warmup', flags.warmup, 64);
const CLIENTS = posInt('clients', flags.clients, 64);
const VARIANTS = ['a', "a'", 'b', 'r', 'r64'] as const;
type Variant = (typeof VARIANTS)[number];
const only = new Set<Variant>(flags.only ? (flags.only.split(',').map((s) => s.trim()) as Variant[]) : VARIANTS);
for (const v of only) if (!VARIANTS.includes(v)) throw new Error(`--only: unknown variant ${v} (known: ${VARIANTS.join(', ')})`);

// ---------------------------------------------------------------------------------------------
// Helpers

interface VariantResult {
  variant: Variant;
  description: string;
  seconds: number;
  textsPerSec: number;
  tokensPerSec: number;
  /** Padded tokens fed to the model (a, a' only). */
  paddedTokens?: number;
  /** Model runs (a, a', b). */
  runs?: number;
  latencyUnit: 'batch of 32' | 'request';
  p50Ms: number;
  p99Ms: number;
  /** Lowest cosine against (a') over all texts (r, r64, b): the variants compute the same thing. */
  minCosineVsAPrime?: number;
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

function chunks<T>(xs: readonly T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}


function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

// ---------------------------------------------------------------------------------------------
// (a) / (a'): the bare ONNX session

/** The router's session options (src/router/onnx-session.ts) with its default: no spin-waiting. */
function sessionOptions(threads: number): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    interOpNumThreads: 1,
    intraOpNumThreads: threads,
    enableCpuMemArena: true,
    enableMemPattern: false,
    logSeverityLevel: 3,
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
}

class BareModel {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly withTypeIds: boolean,
  ) {}
  static async open(onnxPath: string, threads: number): Promise<BareModel> {
    const session = await ort.InferenceSession.create(onnxPath, sessionOptions(threads));
    return new BareModel(session, session.inputNames.includes('token_type_ids'));
  }
  /** One padded batch: run, mean-pool (mask-aware), normalize. Returns the vectors and the padded size. */
  async run(rows: readonly Int32Array[]): Promise<{ vectors: Float32Array[]; padded: number }> {
    const B = rows.length;
    let T = 0;
    for (const r of rows) if (r.length > T) T = r.length;
    const ids = new BigInt64Array(B * T);
    const mask = new BigInt64Array(B * T);
    for (let b = 0; b < B; b++) {
      const r = rows[b];
      for (let t = 0; t < r.length; t++) {
        ids[b * T + t] = BigInt(r[t]);
        mask[b * T + t] = 1n;
      }
    }
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [B, T]),
      attention_mask: new ort.Tensor('int64', mask, [B, T]),
    };
    if (this.withTypeIds) feeds.token_type_ids = new ort.Tensor('int64', new BigInt64Array(B * T), [B, T]);
    const out = await this.session.run(feeds);
    const hidden = (out.last_hidden_state ?? out.token_embeddings ?? out[this.session.outputNames[0]]) as ort.Tensor;
    const H = hidden.dims[2];
    const data = hidden.data as Float32Array;
    const vectors: Float32Array[] = [];
    for (let b = 0; b < B; b++) {
      const len = rows[b].length;
      const v = new Float32Array(H);
      for (let t = 0; t < len; t++) {
        const base = (b * T + t) * H;
        for (let h = 0; h < H; h++) v[h] += data[base + h];
      }
      let n = 0;
      for (let h = 0; h < H; h++) n += v[h] * v[h];
      n = Math.sqrt(n) || 1;
      for (let h = 0; h < H; h++) v[h] /= n; // the mean's 1/len cancels in the normalization
      vectors.push(v);
    }
    return { vectors, padded: B * T };
  }
  async release(): Promise<void> {
    await this.session.release();
  }
}

/**
 * Cuts of length-sorted `lengths` into consecutive sub-batches minimising
 * sum(count x longest + overhead): O(n^2) dynamic programming. Returns the sub-batch sizes.
 */
export function optimalCuts(sortedLengths: readonly number[], overhead: number): number[] {
  const n = sortedLengths.length;
  const best = new Array<number>(n + 1).fill(Infinity);
  const from = new Array<number>(n + 1).fill(0);
  best[0] = 0;
  for (let j = 1; j <= n; j++) {
    const longest = sortedLengths[j - 1];
    for (let i = 0; i < j; i++) {
      const c = best[i] + (j - i) * longest + overhead;
      if (c < best[j]) {
        best[j] = c;
        from[j] = i;
      }
    }
  }
  const sizes: number[] = [];
  for (let j = n; j > 0; j = from[j]) sizes.unshift(j - from[j]);
  return sizes;
}

/** Per-batch fixed cost in padded-token equivalents: t(B x T) ~ a + b*B*T fitted on two shapes. */
async function calibrateOverhead(model: BareModel): Promise<number> {
  const median = async (B: number, T: number): Promise<number> => {
    const rows = Array.from({ length: B }, () => new Int32Array(T).fill(1000));
    await model.run(rows);
    const times: number[] = [];
    for (let k = 0; k < 7; k++) {
      const t0 = performance.now();
      await model.run(rows);
      times.push(performance.now() - t0);
    }
    return percentile(times, 50);
  };
  const small = { B: 1, T: 8 };
  const large = { B: 32, T: 64 };
  const t1 = await median(small.B, small.T);
  const t2 = await median(large.B, large.T);
  const perToken = (t2 - t1) / (large.B * large.T - small.B * small.T);
  const fixed = t1 - perToken * small.B * small.T;
  return Math.max(1, Math.round(fixed / perToken));
}

// ---------------------------------------------------------------------------------------------
// (r) / (r64): the router over gRPC

interface EmbedClient extends grpc.Client {
  Embed(
    req: { inputs: string; truncate: boolean; normalize: boolean },
    cb: (err: grpc.ServiceError | null, res?: { embeddings: number[] }) => void,
  ): grpc.ClientUnaryCall;
}

interface RouterProcess {
  child: ChildProcess;
  grpcPort: number;
  output: string[];
  stop(): Promise<number | null>;
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

async function startRouterProcess(modelDir: string, threads: number, fromSource: boolean): Promise<RouterProcess> {
  const args = ['router', '--model-id', modelDir, '--port', '0', '--hostname', '127.0.0.1', '--threads', String(threads)];
  let argv: string[];
  if (fromSource) argv = ['--import', 'tsx', projectPath('src', 'cli', 'main.ts'), ...args];
  else {
    const built = projectPath('dist', 'cli', 'main.js');
    if (!existsSync(built)) throw new Error('dist/ is missing: run `npm run build` first (or pass --from-source)');
    if (newestMtime(projectPath('src')) > statSync(built).mtimeMs) log('warning: src/ is newer than dist/cli/main.js; run `npm run build` (or pass --from-source)');
    argv = [projectPath('bin', 'teiplex.js'), ...args];
  }
  const child = spawn(process.execPath, argv, { cwd: projectPath(), stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const keep = (line: string): void => {
    output.push(line);
    if (output.length > 200) output.shift();
  };
  createInterface({ input: child.stderr! }).on('line', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const grpcPort = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`router not ready after 180 s:\n${output.join('\n')}`)), 180_000);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      keep(line);
      if (!line.startsWith('{')) return;
      try {
        const msg = JSON.parse(line) as { msg?: string; grpc_port?: number };
        if (msg.msg === 'ready' && typeof msg.grpc_port === 'number') {
          clearTimeout(timer);
          resolve(msg.grpc_port);
        }
      } catch {
        /* not the ready line */
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`router exited with ${code} before it was ready:\n${output.join('\n')}`));
    });
  });
  return {
    child,
    grpcPort,
    output,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

function embedClient(port: number): EmbedClient {
  const pkg = grpc.loadPackageDefinition(routerPackageDefinition()) as unknown as {
    tei: { v1: { Embed: new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => EmbedClient } };
  };
  return new pkg.tei.v1.Embed(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
  });
}

function embedOne(client: EmbedClient, text: string): Promise<Float32Array> {
  return new Promise((resolve, reject) => {
    client.Embed({ inputs: text, truncate: true, normalize: true }, (err, res) => {
      if (err) reject(err);
      else resolve(Float32Array.from(res!.embeddings));
    });
  });
}

/** (r): per batch of 32, 32 concurrent unary calls; the next batch starts when all 32 answered. */
async function runBatchedCalls(client: EmbedClient, texts: readonly string[]): Promise<{ vectors: Float32Array[]; batchMs: number[]; seconds: number }> {
  const vectors: Float32Array[] = [];
  const batchMs: number[] = [];
  const t0 = performance.now();
  for (const batch of chunks(texts, BATCH)) {
    const b0 = performance.now();
    vectors.push(...(await Promise.all(batch.map((t) => embedOne(client, t)))));
    batchMs.push(performance.now() - b0);
  }
  return { vectors, batchMs, seconds: (performance.now() - t0) / 1000 };
}

/** (r64): `clients` closed-loop clients, each sending one text and waiting for its answer. */
async function runClosedLoop(client: EmbedClient, texts: readonly string[], clients: number): Promise<{ vectors: Float32Array[]; requestMs: number[]; seconds: number }> {
  const vectors: Float32Array[] = new Array(texts.length);
  const requestMs: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let k = next++; k < texts.length; k = next++) {
        const r0 = performance.now();
        vectors[k] = await embedOne(client, texts[k]);
        requestMs.push(performance.now() - r0);
      }
    }),
  );
  return { vectors, requestMs, seconds: (performance.now() - t0) / 1000 };
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const modelDir = flags.model ? path.resolve(flags.model) : await testModel({ kind: 'embedding', shape: 'minilm-l6' });
  const onnxPath = await findOnnxFile(modelDir);
  const sbert = JSON.parse(readFileSync(path.join(modelDir, 'sentence_bert_config.json'), 'utf8')) as { max_seq_length?: number };
  const maxLen = sbert.max_seq_length ?? 256;
  log(`model ${modelDir}; ${N} texts (seed ${SEED}), warm-up ${WARMUP}, ${THREADS} intra-op threads, ${os.availableParallelism()} cores`);

  const texts = makeWorkload({ count: N, seed: SEED });
  const warm = makeWorkload({ count: WARMUP, seed: SEED + 1 });

  // Pre-tokenized ids, truncated at the max input length as the router does.
  const tokenizer = Tokenizer.fromFile(path.join(modelDir, 'tokenizer.json'));
  tokenizer.disablePadding();
  tokenizer.setTruncation(maxLen);
  const tokenize = async (xs: readonly string[]): Promise<Int32Array[]> =>
    Promise.all(xs.map(async (t) => Int32Array.from((await tokenizer.encode(t)).getIds())));
  const ids = await tokenize(texts);
  const warmIds = await tokenize(warm);
  const realTokens = ids.reduce((s, r) => s + r.length, 0);
  const longTexts = ids.filter((r) => r.length >= 64).length;
  log(`workload: ${realTokens} tokens (mean ${(realTokens / N).toFixed(1)}), ${longTexts} texts of 64+ tokens, ${ids.filter((r) => r.length === maxLen).length} truncated at ${maxLen}`);

  const results: Partial<Record<Variant, VariantResult>> = {};
  const finish = (r: Omit<VariantResult, 'textsPerSec' | 'tokensPerSec'>): VariantResult => {
    const full = { ...r, textsPerSec: N / r.seconds, tokensPerSec: realTokens / r.seconds };
    results[r.variant] = full;
    log(`(${r.variant}) ${full.textsPerSec.toFixed(1)} texts/s, ${full.tokensPerSec.toFixed(0)} tokens/s, p50 ${r.p50Ms.toFixed(1)} ms, p99 ${r.p99Ms.toFixed(1)} ms (${r.latencyUnit})`);
    return full;
  };

  // (a) and (a')
  let overhead = 0;
  let aPrimeVectors: Float32Array[] | undefined;
  if (only.has('a') || only.has("a'") || only.has('b') || only.has('r') || only.has('r64')) {
    const model = await BareModel.open(onnxPath, THREADS);
    for (const batch of chunks(warmIds, BATCH)) await model.run(batch);
    overhead = await calibrateOverhead(model);
    log(`per-batch overhead ~ ${overhead} padded tokens (fitted on 1x8 and 32x64)`);

    if (only.has('a')) {
      const batchMs: number[] = [];
      let padded = 0;
      const t0 = performance.now();
      for (const batch of chunks(ids, BATCH)) {
        const b0 = performance.now();
        padded += (await model.run(batch)).padded;
        batchMs.push(performance.now() - b0);
      }
      finish({
        variant: 'a',
        description: 'ONNX session, pre-tokenized batches of 32 padded to their longest',
        seconds: (performance.now() - t0) / 1000,
        paddedTokens: padded,
        runs: batchMs.length,
        latencyUnit: 'batch of 32',
        p50Ms: percentile(batchMs, 50),
        p99Ms: percentile(batchMs, 99),
      });
    }

    // (a') always runs when a comparison needs its vectors.
    const batchMs: number[] = [];
    let padded = 0;
    let runs = 0;
    const vectors: Float32Array[] = new Array(N);
    const t0 = performance.now();
    for (let start = 0; start < N; start += BATCH) {
      const b0 = performance.now();
      const order = Array.from({ length: Math.min(BATCH, N - start) }, (_, i) => start + i).sort((x, y) => ids[x].length - ids[y].length);
      let at = 0;
      for (const size of optimalCuts(order.map((k) => ids[k].length), overhead)) {
        const part = order.slice(at, at + size);
        at += size;
        const out = await model.run(part.map((k) => ids[k]));
        padded += out.padded;
        runs++;
        part.forEach((k, i) => (vectors[k] = out.vectors[i]));
      }
      batchMs.push(performance.now() - b0);
    }
    aPrimeVectors = vectors;
    if (only.has("a'")) {
      finish({
        variant: "a'",
        description: `ONNX session, each batch of 32 split into length-sorted sub-batches (cost model: padded tokens + ${overhead} per run)`,
        seconds: (performance.now() - t0) / 1000,
        paddedTokens: padded,
        runs,
        latencyUnit: 'batch of 32',
        p50Ms: percentile(batchMs, 50),
        p99Ms: percentile(batchMs, 99),
      });
    }
    await model.release();
  }

  const minCos = (vs: Float32Array[]): number | undefined =>
    aPrimeVectors ? Math.min(...vs.map((v, i) => cosine(v, aPrimeVectors![i]))) : undefined;

  // (b)
  if (only.has('b')) {
    hfEnv.allowRemoteModels = false;
    hfEnv.allowLocalModels = true;
    hfEnv.useFSCache = false;
    hfEnv.localModelPath = path.dirname(modelDir) + path.sep;
    const extractor = (await pipeline('feature-extraction', path.basename(modelDir), {
      dtype: 'fp32',
      device: 'cpu',
      local_files_only: true,
      session_options: { intraOpNumThreads: THREADS, interOpNumThreads: 1 },
    })) as FeatureExtractionPipeline;
    // transformers.js truncates at tokenizer_config's model_max_length (512); the router at 256.
    // Texts here stay under 512 tokens, so set its limit to the model's max input length.
    const tokConfig = (extractor.tokenizer as unknown as { _tokenizerConfig?: { model_max_length?: number } })._tokenizerConfig;
    if (tokConfig) tokConfig.model_max_length = maxLen;
    for (const batch of chunks(warm, BATCH)) await extractor(batch, { pooling: 'mean', normalize: true });
    const batchMs: number[] = [];
    const vectors: Float32Array[] = [];
    const t0 = performance.now();
    for (const batch of chunks(texts, BATCH)) {
      const b0 = performance.now();
      const out = await extractor(batch, { pooling: 'mean', normalize: true });
      batchMs.push(performance.now() - b0);
      const H = out.dims[1];
      const data = out.data as Float32Array;
      for (let i = 0; i < batch.length; i++) vectors.push(data.slice(i * H, (i + 1) * H));
    }
    const seconds = (performance.now() - t0) / 1000;
    await extractor.dispose();
    finish({
      variant: 'b',
      description: '@huggingface/transformers feature-extraction in-process, batches of 32 (mean, normalized)',
      seconds,
      runs: batchMs.length,
      latencyUnit: 'batch of 32',
      p50Ms: percentile(batchMs, 50),
      p99Ms: percentile(batchMs, 99),
      // transformers.js drops [SEP] when it truncates (see test/unit/crosscheck-transformers.test.ts).
      minCosineVsAPrime: minCos(vectors),
    });
  }

  // (r) and (r64)
  let routerLog: string[] = [];
  if (only.has('r') || only.has('r64')) {
    const router = await startRouterProcess(modelDir, THREADS, flags['from-source']!);
    log(`router ready on gRPC port ${router.grpcPort} (pid ${router.child.pid})`);
    const client = embedClient(router.grpcPort);
    try {
      await runBatchedCalls(client, warm);
      await runClosedLoop(client, warm, CLIENTS);
      if (only.has('r')) {
        const r = await runBatchedCalls(client, texts);
        finish({
          variant: 'r',
          description: 'teiplex router over gRPC, 32 concurrent unary tei.v1.Embed/Embed calls per batch of 32',
          seconds: r.seconds,
          latencyUnit: 'batch of 32',
          p50Ms: percentile(r.batchMs, 50),
          p99Ms: percentile(r.batchMs, 99),
          minCosineVsAPrime: minCos(r.vectors),
        });
      }
      if (only.has('r64')) {
        const r = await runClosedLoop(client, texts, CLIENTS);
        finish({
          variant: 'r64',
          description: `teiplex router over gRPC, ${CLIENTS} concurrent single-text clients in a closed loop`,
          seconds: r.seconds,
          latencyUnit: 'request',
          p50Ms: percentile(r.requestMs, 50),
          p99Ms: percentile(r.requestMs, 99),
          minCosineVsAPrime: minCos(r.vectors),
        });
      }
    } finally {
      client.close();
      const code = await router.stop();
      routerLog = router.output.slice(-40);
      if (code !== 0) log(`router exited with ${code}:\n${routerLog.join('\n')}`);
    }
  }

  // Report
  const ratio = (x?: VariantResult, y?: VariantResult): number | undefined => (x && y ? x.textsPerSec / y.textsPerSec : undefined);
  const a = results.a;
  const ap = results["a'"];
  const rows = VARIANTS.map((v) => results[v]).filter((r): r is VariantResult => r !== undefined);
  const fmt = (x: number | undefined, d = 2): string => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(d));
  const header = ['variant', 'texts/s', 'tokens/s', 'p50 ms', 'p99 ms', 'latency of', 'x (a)', "x (a')", 'padded tok', 'runs', "min cos vs (a')"];
  const table = [
    header,
    ...rows.map((r) => [
      `(${r.variant})`,
      fmt(r.textsPerSec, 1),
      fmt(r.tokensPerSec, 0),
      fmt(r.p50Ms, 1),
      fmt(r.p99Ms, 1),
      r.latencyUnit,
      fmt(ratio(r, a)),
      fmt(ratio(r, ap)),
      r.paddedTokens === undefined ? '-' : String(r.paddedTokens),
      r.runs === undefined ? '-' : String(r.runs),
      r.minCosineVsAPrime === undefined ? '-' : r.minCosineVsAPrime.toFixed(6),
    ]),
  ];
  const widths = header.map((_, c) => Math.max(...table.map((row) => row[c].length)));
  const lines = table.map((row) => row.map((cell, c) => (c === 0 || c === 5 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  '));

  const targets = {
    "r >= 0.8 x a'": { ratio: ratio(results.r, ap), target: 0.8 },
    'r >= 3 x b': { ratio: ratio(results.r, results.b), target: 3 },
    'r64 >= 0.8 x r': { ratio: ratio(results.r64, results.r), target: 0.8 },
  };
  const out = [
    '',
    `teiplex router throughput: minilm-l6 (generated), ${N} texts (seed ${SEED}; 9 in 10 of 1-40 words, 1 in 10 of 41-300), ` +
      `${realTokens} tokens after truncation at ${maxLen}, ${THREADS} intra-op threads, ${os.availableParallelism()} cores (${os.cpus()[0]?.model ?? 'cpu'})`,
    '',
    ...lines,
    '',
    ...Object.entries(targets).map(
      ([name, t]) => `${name.padEnd(16)} ${t.ratio === undefined ? 'not measured' : `${t.ratio.toFixed(2)}x  ${t.ratio >= t.target ? 'met' : 'NOT met'}`}`,
    ),
    '',
  ];
  process.stdout.write(out.join('\n') + '\n');

  mkdirSync(path.dirname(flags.out!), { recursive: true });
  writeFileSync(
    flags.out!,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        machine: { cores: os.availableParallelism(), cpu: os.cpus()[0]?.model, node: process.version, platform: `${os.platform()} ${os.arch()}` },
        config: { texts: N, seed: SEED, warmup: WARMUP, threads: THREADS, batch: BATCH, clients: CLIENTS, maxInputLength: maxLen, overheadTokens: overhead, model: modelDir },
        workload: { realTokens, meanTokens: realTokens / N, textsOf64PlusTokens: longTexts, truncated: ids.filter((r) => r.length === maxLen).length },
        variants: results,
        ratios: Object.fromEntries(rows.map((r) => [r.variant, { vsA: ratio(r, a), vsAPrime: ratio(r, ap) }])),
        targets: Object.fromEntries(Object.entries(targets).map(([k, t]) => [k, { ...t, met: t.ratio === undefined ? null : t.ratio >= t.target }])),
      },
      null,
      2,
    ) + '\n',
  );
  log(`wrote ${path.relative(process.cwd(), flags.out!)}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
