/**
 * `teiplex router` command line: text-embeddings-router's flags (same names, same defaults, same
 * environment variables) plus teiplex's own, parsed into RouterOptions. Flags win over the
 * environment. Pure: the caller passes argv and env, nothing is read from the process here.
 */
import { isIP } from 'node:net';
import { FlagError, parseFlags, type FlagSpec } from '../common/flags.js';
import type { Device, Pooling } from '../tei/types.js';
import type { RouterOptions } from './options.js';

/** RouterOptions plus what only the process wiring needs. */
export interface RouterArgs extends RouterOptions {
  /** --tokenization-workers: concurrent tokenizer calls (default: the engine's choice). */
  tokenizationWorkers?: number;
  /** --hf-token / --hf-api-token: HuggingFace hub token for downloads. */
  hfToken?: string;
  /** Things the caller should log as warnings: TEI flags accepted but ignored, variables skipped. */
  warnings: string[];
}

export type RouterArgsResult = RouterArgs | { help: true };

/** Documented defaults (text-embeddings-router's where the flag is TEI's). */
export const ROUTER_DEFAULTS = {
  port: 3000,
  hostname: '0.0.0.0',
  maxConcurrentRequests: 512,
  maxBatchTokens: 16384,
  maxClientBatchSize: 32,
  payloadLimit: 2_000_000,
  device: 'cpu' as Device,
} as const;

interface FlagDoc {
  env?: string;
  value?: string;
  help: string;
  boolean?: boolean;
}

/** Every flag with its environment variable and help line; the spec for parseFlags derives from it. */
const FLAGS: Record<string, FlagDoc> = {
  'model-id': { env: 'MODEL_ID', value: 'ID|DIR', help: 'HuggingFace hub id or local model directory (required)' },
  revision: { env: 'REVISION', value: 'REV', help: 'hub revision: branch, tag or commit (default main)' },
  port: { env: 'PORT', value: 'N', help: `gRPC (tei.v1) port; 0 picks a free port (default ${ROUTER_DEFAULTS.port})` },
  hostname: { env: 'HOSTNAME', value: 'ADDR', help: `address to listen on (default ${ROUTER_DEFAULTS.hostname})` },
  'max-concurrent-requests': { env: 'MAX_CONCURRENT_REQUESTS', value: 'N', help: `inputs in flight before 429/RESOURCE_EXHAUSTED (default ${ROUTER_DEFAULTS.maxConcurrentRequests})` },
  'max-batch-tokens': { env: 'MAX_BATCH_TOKENS', value: 'N', help: `padded tokens per model batch (default ${ROUTER_DEFAULTS.maxBatchTokens})` },
  'max-batch-requests': { env: 'MAX_BATCH_REQUESTS', value: 'N', help: 'inputs per model batch (default: no limit)' },
  'max-client-batch-size': { env: 'MAX_CLIENT_BATCH_SIZE', value: 'N', help: `inputs per client request (default ${ROUTER_DEFAULTS.maxClientBatchSize})` },
  'auto-truncate': { env: 'AUTO_TRUNCATE', boolean: true, help: 'truncate inputs longer than the max input length when a request does not say (default false)' },
  pooling: { env: 'POOLING', value: 'cls|mean|splade|last-token', help: 'pooling for embedding models (default: 1_Pooling/config.json)' },
  dtype: { env: 'DTYPE', value: 'float32|float16', help: 'reported model dtype (the ONNX graph decides the arithmetic)' },
  'default-prompt-name': { env: 'DEFAULT_PROMPT_NAME', value: 'NAME', help: 'prompt from config_sentence_transformers.json applied by default' },
  'default-prompt': { env: 'DEFAULT_PROMPT', value: 'TEXT', help: 'prompt text applied by default (not with --default-prompt-name)' },
  'served-model-name': { env: 'SERVED_MODEL_NAME', value: 'NAME', help: 'model name reported by Info and /v1/embeddings (default: --model-id)' },
  'api-key': { env: 'API_KEY', value: 'KEY', help: 'require "authorization: Bearer KEY" on every request (health stays open)' },
  'json-output': { env: 'JSON_OUTPUT', boolean: true, help: 'log JSON lines (pino) instead of plain text' },
  'prometheus-port': { env: 'PROMETHEUS_PORT', value: 'N', help: 'serve /metrics on this port; 0 picks a free port (default: off; metrics stay on --http-port /metrics)' },
  'huggingface-hub-cache': { env: 'HUGGINGFACE_HUB_CACHE', value: 'DIR', help: 'HuggingFace cache directory for hub downloads' },
  'payload-limit': { env: 'PAYLOAD_LIMIT', value: 'BYTES', help: `largest request body/message (default ${ROUTER_DEFAULTS.payloadLimit})` },
  'tokenization-workers': { env: 'TOKENIZATION_WORKERS', value: 'N', help: 'concurrent tokenizer calls (default: libuv thread pool size)' },
  'hf-token': { env: 'HF_TOKEN', value: 'TOKEN', help: 'HuggingFace hub token' },
  'hf-api-token': { env: 'HF_API_TOKEN', value: 'TOKEN', help: 'HuggingFace hub token (older TEI name)' },
  'uds-path': { value: 'PATH', help: 'accepted for TEI compatibility; ignored' },
  'otlp-endpoint': { value: 'URL', help: 'accepted for TEI compatibility; ignored' },
  'otlp-service-name': { value: 'NAME', help: 'accepted for TEI compatibility; ignored' },
  'cors-allow-origin': { value: 'ORIGIN', help: 'accepted for TEI compatibility; ignored' },
  'dense-path': { env: 'DENSE_PATH', value: 'PATH', help: "a sentence-transformers Dense module folder in the model (TEI's); no Dense layers are applied here, so a model that has one is refused" },
  'disable-spans': { env: 'DISABLE_SPANS', boolean: true, help: 'accepted for TEI compatibility; no effect (no tracing spans)' },
  device: { env: 'TEIPLEX_DEVICE', value: 'cpu|cuda', help: `ONNX Runtime execution provider (default ${ROUTER_DEFAULTS.device})` },
  threads: { env: 'TEIPLEX_THREADS', value: 'N', help: "ONNX Runtime intra-op threads (default: ONNX Runtime's choice)" },
  'http-port': { env: 'TEIPLEX_HTTP_PORT', value: 'N', help: "also serve TEI's HTTP routes on this port; 0 picks a free port (default: off)" },
  'onnx-file': { env: 'TEIPLEX_ONNX_FILE', value: 'PATH', help: 'ONNX file inside the model directory, e.g. onnx/model_quantized.onnx' },
  'onnx-cache-dir': { env: 'TEIPLEX_ONNX_CACHE_DIR', value: 'DIR', help: 'CPU: keep optimized graphs (weights in an external file) here and load them at the next start (default: off)' },
  help: { boolean: true, help: 'print this help' },
};

const IGNORED = ['uds-path', 'otlp-endpoint', 'otlp-service-name', 'cors-allow-origin'];

function flagSpec(): FlagSpec {
  const spec: FlagSpec = {};
  for (const [name, doc] of Object.entries(FLAGS)) {
    spec[name] = doc.boolean ? { type: 'boolean' } : { type: 'string' };
  }
  spec.help = { type: 'boolean', short: 'h' };
  spec.port = { type: 'string', short: 'p' };
  return spec;
}

export function routerUsage(): string {
  const rows = Object.entries(FLAGS).map(([name, d]) => {
    const left = `--${name}${d.value ? ` <${d.value}>` : ''}`;
    const env = d.env ? ` [env ${d.env}]` : '';
    return { left, right: `${d.help}${env}` };
  });
  const width = Math.max(...rows.map((r) => r.left.length));
  return [
    'Usage: teiplex router --model-id <ID|DIR> [options]',
    '',
    'Serves one model over TEI gRPC (tei.v1, on --port) and, with --http-port, TEI HTTP routes.',
    'Flags follow text-embeddings-router; each also reads its environment variable (flags win).',
    'Once serving, one JSON line {"msg":"ready","grpc_port":N,...} is written to stdout.',
    '',
    'Options:',
    ...rows.map((r) => `  ${r.left.padEnd(width)}  ${r.right}`),
  ].join('\n');
}

const BOOL_TRUE = new Set(['true', '1', 'yes', 'on']);
const BOOL_FALSE = new Set(['false', '0', 'no', 'off', '']);

/** Boolean flags also take `--flag=true|false` and `--flag true|false` (clap style). */
function normalizeBooleans(argv: string[]): { argv: string[]; explicit: Map<string, boolean> } {
  const out: string[] = [];
  const explicit = new Map<string, boolean>();
  const booleans = new Set(Object.entries(FLAGS).filter(([, d]) => d.boolean).map(([n]) => n));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--([a-z-]+)=(.*)$/.exec(a);
    if (m && booleans.has(m[1])) {
      explicit.set(m[1], boolValue(`--${m[1]}`, m[2]));
      continue;
    }
    if (a.startsWith('--') && booleans.has(a.slice(2))) {
      const next = argv[i + 1];
      if (next !== undefined && (BOOL_TRUE.has(next.toLowerCase()) || (BOOL_FALSE.has(next.toLowerCase()) && next !== ''))) {
        explicit.set(a.slice(2), boolValue(a, next));
        i++;
        continue;
      }
      explicit.set(a.slice(2), true);
      continue;
    }
    out.push(a);
  }
  return { argv: out, explicit };
}

function boolValue(name: string, raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (BOOL_TRUE.has(v)) return true;
  if (BOOL_FALSE.has(v)) return false;
  throw new FlagError(`${name} must be true or false, got '${raw}'`);
}

/** Parse `teiplex router` arguments. Throws FlagError naming the flag (or variable) at fault. */
export function parseRouterArgs(argv: string[], env: Record<string, string | undefined> = {}): RouterArgsResult {
  const { argv: rest, explicit } = normalizeBooleans(argv);
  const flags = parseFlags(rest, flagSpec()) as Record<string, string | boolean | undefined>;
  if (flags.help || explicit.get('help')) return { help: true };

  /** The flag's value, else its environment variable's (empty variables count as unset). */
  const raw = (name: string): { value: string; source: string } | undefined => {
    const f = flags[name];
    if (typeof f === 'string') return { value: f, source: `--${name}` };
    const envName = FLAGS[name].env;
    const e = envName ? env[envName] : undefined;
    if (e !== undefined && e !== '') return { value: e, source: envName! };
    return undefined;
  };
  const str = (name: string): string | undefined => raw(name)?.value;
  const int = (name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined => {
    const r = raw(name);
    if (r === undefined) return undefined;
    const n = Number(r.value.trim());
    if (r.value.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
      throw new FlagError(`${r.source} must be an integer${max < Number.MAX_SAFE_INTEGER ? ` from ${min} to ${max}` : ` >= ${min}`}, got '${r.value}'`);
    }
    return n;
  };
  const bool = (name: string): boolean => {
    const e = explicit.get(name);
    if (e !== undefined) return e;
    const envName = FLAGS[name].env;
    const v = envName ? env[envName] : undefined;
    return v === undefined ? false : boolValue(envName!, v);
  };
  const oneOf = <T extends string>(name: string, allowed: readonly T[], aliases: Record<string, T> = {}): T | undefined => {
    const r = raw(name);
    if (r === undefined) return undefined;
    const v = r.value.trim().toLowerCase();
    const hit = (allowed as readonly string[]).includes(v) ? (v as T) : aliases[v];
    if (hit === undefined) throw new FlagError(`${r.source} must be one of ${allowed.join(', ')}, got '${r.value}'`);
    return hit;
  };

  const modelId = str('model-id');
  if (modelId === undefined || modelId.trim() === '') throw new FlagError('--model-id is required (or set MODEL_ID)');

  // --default-prompt-name and --default-prompt exclude each other; a flag for one hides the other's variable.
  let defaultPromptName: string | undefined;
  let defaultPrompt: string | undefined;
  const flagName = typeof flags['default-prompt-name'] === 'string';
  const flagPrompt = typeof flags['default-prompt'] === 'string';
  if (flagName && flagPrompt) throw new FlagError('--default-prompt-name cannot be used with --default-prompt');
  if (flagName) defaultPromptName = flags['default-prompt-name'] as string;
  else if (flagPrompt) defaultPrompt = flags['default-prompt'] as string;
  else {
    defaultPromptName = str('default-prompt-name');
    defaultPrompt = str('default-prompt');
    if (defaultPromptName !== undefined && defaultPrompt !== undefined) {
      throw new FlagError('DEFAULT_PROMPT_NAME cannot be used with DEFAULT_PROMPT');
    }
  }

  // --disable-spans: TEI's switch for tracing spans; there are none here. Its value is still checked.
  bool('disable-spans');

  const warnings = IGNORED.filter((n) => flags[n] !== undefined).map((n) => `--${n} is accepted for TEI compatibility and ignored`);

  // HOSTNAME is also the machine's name in containers: like TEI, use the variable only when it is an address.
  let hostname = typeof flags.hostname === 'string' ? flags.hostname : undefined;
  if (hostname === undefined && env.HOSTNAME) {
    if (isIP(env.HOSTNAME) !== 0 || env.HOSTNAME === 'localhost') hostname = env.HOSTNAME;
    else warnings.push(`HOSTNAME='${env.HOSTNAME}' is not an IP address; listening on ${ROUTER_DEFAULTS.hostname}`);
  }

  const opts: RouterArgs = {
    modelId,
    revision: str('revision'),
    port: int('port', 0, 65535) ?? ROUTER_DEFAULTS.port,
    hostname: hostname ?? ROUTER_DEFAULTS.hostname,
    maxConcurrentRequests: int('max-concurrent-requests', 1) ?? ROUTER_DEFAULTS.maxConcurrentRequests,
    maxBatchTokens: int('max-batch-tokens', 1) ?? ROUTER_DEFAULTS.maxBatchTokens,
    maxBatchRequests: int('max-batch-requests', 1),
    maxClientBatchSize: int('max-client-batch-size', 1) ?? ROUTER_DEFAULTS.maxClientBatchSize,
    autoTruncate: bool('auto-truncate'),
    pooling: oneOf<Pooling>('pooling', ['cls', 'mean', 'splade', 'last-token'], { last_token: 'last-token', lasttoken: 'last-token' }),
    dtype: oneOf('dtype', ['float32', 'float16'] as const),
    defaultPromptName,
    defaultPrompt,
    servedModelName: str('served-model-name'),
    apiKey: str('api-key'),
    jsonOutput: bool('json-output'),
    prometheusPort: int('prometheus-port', 0, 65535),
    huggingfaceHubCache: str('huggingface-hub-cache'),
    payloadLimit: int('payload-limit', 1) ?? ROUTER_DEFAULTS.payloadLimit,
    device: oneOf<Device>('device', ['cpu', 'cuda']) ?? ROUTER_DEFAULTS.device,
    threads: int('threads', 1),
    httpPort: int('http-port', 0, 65535),
    onnxFile: str('onnx-file'),
    onnxCacheDir: str('onnx-cache-dir') || undefined,
    densePath: str('dense-path'),
    tokenizationWorkers: int('tokenization-workers', 1),
    hfToken: str('hf-token') ?? str('hf-api-token'),
    warnings,
  };
  // Leave unset optionals out, so the options print cleanly and compare with deepEqual.
  for (const k of Object.keys(opts) as (keyof RouterArgs)[]) if (opts[k] === undefined) delete opts[k];
  return opts;
}
