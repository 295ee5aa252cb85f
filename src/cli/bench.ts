/**
 * `teiplex bench`: the load generator for the gRPC multiplexer, a child's tei.v1 port and the
 * HTTP front ends (see docs/bench.md). Flags -> BenchOptions -> one run -> one JSON object on
 * stdout. Exit 0 when the run happened (failed requests included), 2 on bad flags, 1 otherwise.
 */
import { readFile } from 'node:fs/promises';
import { FlagError, intFlag, parseFlags } from '../common/flags.js';
import { runBench } from '../bench/run-bench.js';
import { BENCH_DEFAULTS, isGrpcMode, MODES, parseEndpoint, type BenchOptions, type ModeName, type TargetSpec, type TlsFiles } from '../bench/options.js';
import { cycleTo, DEFAULT_SEED, generateTexts, readTextsFile } from '../bench/texts.js';

const SPEC = {
  endpoint: { type: 'string', short: 'e' },
  instance: { type: 'string', short: 'i' },
  model: { type: 'string' },
  'instance-index': { type: 'string' },
  mode: { type: 'string', short: 'm', default: BENCH_DEFAULTS.mode },
  'num-texts': { type: 'string', short: 'n' },
  'batch-size': { type: 'string', short: 'b' },
  concurrency: { type: 'string', short: 'c' },
  duration: { type: 'string' },
  warmup: { type: 'string', default: String(BENCH_DEFAULTS.warmup) },
  sparse: { type: 'boolean', default: false },
  noop: { type: 'boolean', default: false },
  direct: { type: 'boolean', default: false },
  'no-truncate': { type: 'boolean', default: false },
  'no-compress': { type: 'boolean', default: false },
  'encoding-format': { type: 'string' },
  texts: { type: 'string' },
  seed: { type: 'string', default: String(DEFAULT_SEED) },
  cert: { type: 'string' },
  key: { type: 'string' },
  ca: { type: 'string' },
  'api-key': { type: 'string' },
  'max-message-size-mb': { type: 'string', default: String(BENCH_DEFAULTS.maxMessageSizeMb) },
  timeout: { type: 'string', default: String(BENCH_DEFAULTS.timeoutSecs) },
  'connect-timeout': { type: 'string', default: String(BENCH_DEFAULTS.connectTimeoutSecs) },
  'no-progress': { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

export const USAGE = `Usage: teiplex bench [options]

Sends embedding requests in a closed loop and prints one JSON object (throughput, latency
percentiles, failures by code) on stdout. See docs/bench.md.

Where:
  -e, --endpoint ADDR        host:port, http://host:port or https://host:port (https: TLS)
                             (default ${BENCH_DEFAULTS.grpcEndpoint} for gRPC modes, ${BENCH_DEFAULTS.httpEndpoint} for HTTP)
  -i, --instance NAME        target an instance by name          (multiplexer Target.instance_name;
      --model ID             target any instance of a model       HTTP modes: the body's "model")
      --instance-index N     target by position in the name-ordered instance list (gRPC only)
      --direct               straight to a child's gRPC port, no target: tei.v1 (standard, stream),
                             teiplex.v1.Batch in chunks of 256 rows (arrow; a teiplex router child)
What:
  -m, --mode MODE            standard  one unary Embed per text (default)
                             stream    one EmbedStream per request, --batch-size messages
                             arrow     one EmbedArrow per request, --batch-size rows (Arrow IPC, LZ4)
                             http      TEI POST /embed, --batch-size inputs per request
                             openai    POST /v1/embeddings, --batch-size inputs per request
      --sparse               EmbedSparse / EmbedSparseStream / EmbedSparseArrow / POST /embed_sparse
      --noop                 arrow: the multiplexer answers shaped zeros without the child
      --no-truncate          send truncate=false (too-long texts fail; default truncate=true)
      --no-compress          arrow: uncompressed request bodies (default LZ4_FRAME)
      --encoding-format F    openai: float (default) or base64
How much:
  -n, --num-texts N          texts to send (default ${BENCH_DEFAULTS.numTexts}, or the lines of --texts)
  -b, --batch-size N         texts per request in stream, arrow, http, openai (default ${BENCH_DEFAULTS.batchSize});
                             in standard mode without -c it sets the concurrency (tei-manager's meaning)
  -c, --concurrency N        requests in flight (default ${BENCH_DEFAULTS.concurrency})
      --duration SECS        run this long, cycling through the texts (overrides --num-texts as a limit)
      --warmup N             requests sent first and not counted (default 0)
      --texts FILE           one text per line (blank lines skipped); else seeded generated texts
      --seed N               generator seed (default ${DEFAULT_SEED})
Connection:
      --cert FILE --key FILE client certificate and key (mTLS; https:// endpoints)
      --ca FILE              CA bundle to verify the server (https:// endpoints)
      --api-key KEY          send "authorization: Bearer KEY" (default: $TEIPLEX_API_KEY)
      --max-message-size-mb N  gRPC send/receive limit (default ${BENCH_DEFAULTS.maxMessageSizeMb})
      --timeout SECS         per-request deadline (default ${BENCH_DEFAULTS.timeoutSecs})
      --connect-timeout SECS gRPC: wait this long for the channel before the clock starts
                             (default ${BENCH_DEFAULTS.connectTimeoutSecs}; the run goes on if it cannot connect)
      --no-progress          no progress bar (drawn on stderr only when it is a terminal)
`;

type Flags = ReturnType<typeof parseFlags<typeof SPEC>>;

function positiveNumber(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new FlagError(`--${name} must be a number > 0, got '${value}'`);
  return n;
}

async function readFlagFile(name: string, file: string | undefined): Promise<Buffer | undefined> {
  if (file === undefined) return undefined;
  try {
    return await readFile(file);
  } catch (err) {
    throw new FlagError(`--${name}: cannot read '${file}': ${err instanceof Error ? err.message : String(err)}`);
  }
}

function resolveTarget(f: Flags): TargetSpec | undefined {
  const given = [f.instance !== undefined && '-i/--instance', f.model !== undefined && '--model', f['instance-index'] !== undefined && '--instance-index'].filter(Boolean);
  if (given.length > 1) throw new FlagError(`give one target, not ${given.join(' and ')}`);
  if (f.instance !== undefined) return { kind: 'instance_name', value: f.instance };
  if (f.model !== undefined) return { kind: 'model_id', value: f.model };
  const index = intFlag('instance-index', f['instance-index'], 0);
  return index === undefined ? undefined : { kind: 'instance_index', value: index };
}

/** Flags -> options; throws FlagError on anything wrong with them. */
export async function resolveOptions(argv: string[], env: NodeJS.ProcessEnv, warn: (m: string) => void): Promise<BenchOptions | 'help'> {
  const f = parseFlags(argv, SPEC);
  if (f.help) return 'help';
  if (!(MODES as readonly string[]).includes(f.mode)) throw new FlagError(`--mode must be one of ${MODES.join(', ')}, got '${f.mode}'`);
  const mode = f.mode as ModeName;
  const grpcMode = isGrpcMode(mode);

  let target = resolveTarget(f);
  if (f.direct) {
    if (!grpcMode) throw new FlagError(`--direct works with --mode standard, stream or arrow (a child's gRPC port has no ${mode} route)`);
    if (mode === 'arrow' && f.noop) throw new FlagError('--noop is answered by the multiplexer; --direct sends the texts to a child');
    if (mode === 'arrow' && f['no-compress']) throw new FlagError('--no-compress is for Arrow bodies; --direct sends teiplex.v1.Batch messages, no Arrow');
    if (target !== undefined) warn('--direct sends requests with no Target wrapper: the target is ignored');
    target = undefined;
  } else if (grpcMode && target === undefined) {
    throw new FlagError(`--mode ${mode} through the multiplexer needs a target: -i/--instance, --model or --instance-index (or --direct for a child's port)`);
  }
  if (!grpcMode && target?.kind === 'instance_index') throw new FlagError(`--instance-index is for gRPC modes; HTTP modes name the model (-i or --model)`);
  if (f.noop && mode !== 'arrow') throw new FlagError('--noop is for --mode arrow');
  if (f['no-compress'] && mode !== 'arrow') throw new FlagError('--no-compress is for --mode arrow');
  if (f.sparse && mode === 'openai') throw new FlagError('--sparse has no OpenAI route; use --mode http for /embed_sparse');
  if (f['encoding-format'] !== undefined && mode !== 'openai') throw new FlagError('--encoding-format is for --mode openai');
  const encodingFormat = f['encoding-format'] ?? 'float';
  if (encodingFormat !== 'float' && encodingFormat !== 'base64') throw new FlagError(`--encoding-format must be float or base64, got '${encodingFormat}'`);

  let endpoint: ReturnType<typeof parseEndpoint>;
  const rawEndpoint = f.endpoint ?? (grpcMode ? BENCH_DEFAULTS.grpcEndpoint : BENCH_DEFAULTS.httpEndpoint);
  try {
    endpoint = parseEndpoint(rawEndpoint);
  } catch (err) {
    throw new FlagError(`-e/--endpoint: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (grpcMode && endpoint.basePath !== '') throw new FlagError(`-e/--endpoint: a gRPC endpoint has no path, got '${rawEndpoint}'`);
  if ((f.cert === undefined) !== (f.key === undefined)) throw new FlagError('--cert and --key go together (a client certificate and its key)');
  if (!endpoint.tls && (f.cert !== undefined || f.ca !== undefined)) throw new FlagError('--cert/--key/--ca need an https:// endpoint');
  const tlsFiles: TlsFiles = { ca: await readFlagFile('ca', f.ca), cert: await readFlagFile('cert', f.cert), key: await readFlagFile('key', f.key) };

  const batchSize = intFlag('batch-size', f['batch-size'], 1);
  let concurrency = intFlag('concurrency', f.concurrency, 1);
  if (mode === 'standard' && batchSize !== undefined && concurrency === undefined) {
    warn(`standard mode sends one text per request: -b ${batchSize} sets the concurrency (tei-manager's meaning); use -c to set it`);
    concurrency = batchSize;
  }
  const durationSecs = positiveNumber('duration', f.duration);
  const warmup = intFlag('warmup', f.warmup, 0)!;
  const seed = intFlag('seed', f.seed, 0)!;
  let numTexts = intFlag('num-texts', f['num-texts'], 1);

  let texts: string[];
  let textsSource: string;
  if (f.texts !== undefined) {
    let lines: string[];
    try {
      lines = await readTextsFile(f.texts);
    } catch (err) {
      throw new FlagError(`--texts: cannot read '${f.texts}': ${err instanceof Error ? err.message : String(err)}`);
    }
    if (lines.length === 0) throw new FlagError(`--texts: '${f.texts}' has no text (one per line)`);
    numTexts ??= lines.length;
    texts = cycleTo(lines, numTexts);
    textsSource = `file:${f.texts}`;
  } else {
    numTexts ??= BENCH_DEFAULTS.numTexts;
    texts = generateTexts({ count: numTexts, seed });
    textsSource = `generated:seed=${seed}`;
  }

  const maxMessageMb = positiveNumber('max-message-size-mb', f['max-message-size-mb'])!;
  const apiKey = f['api-key'] ?? (env.TEIPLEX_API_KEY || undefined);
  return {
    mode,
    endpoint,
    target,
    direct: f.direct,
    sparse: f.sparse,
    noop: f.noop,
    truncate: !f['no-truncate'],
    compress: !f['no-compress'],
    encodingFormat,
    texts,
    textsSource,
    numTexts,
    durationSecs,
    batchSize: batchSize ?? BENCH_DEFAULTS.batchSize,
    concurrency: concurrency ?? BENCH_DEFAULTS.concurrency,
    warmup,
    apiKey,
    tlsFiles,
    maxMessageBytes: Math.min(Math.floor(maxMessageMb * 1024 * 1024), 2 ** 31 - 1),
    timeoutMs: positiveNumber('timeout', f.timeout)! * 1000,
    connectTimeoutMs: positiveNumber('connect-timeout', f['connect-timeout'])! * 1000,
    progress: !f['no-progress'],
  };
}

export async function run(argv: string[]): Promise<number> {
  const warn = (m: string): void => void process.stderr.write(`teiplex bench: ${m}\n`);
  let opts: BenchOptions | 'help';
  try {
    opts = await resolveOptions(argv, process.env, warn);
  } catch (err) {
    if (err instanceof FlagError) {
      process.stderr.write(`teiplex bench: ${err.message}\nRun \`teiplex bench --help\` for the options.\n`);
      return 2;
    }
    throw err;
  }
  if (opts === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const report = await runBench(opts, { warn, progressStream: process.stderr });
  process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  return 0;
}
