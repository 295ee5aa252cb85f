/**
 * What one `teiplex bench` run does, as the CLI resolves it from flags: the protocol mode, where
 * it connects, whom it targets, the workload and the load shape. Defaults live here and in the
 * manager's config defaults (ports, message size), which the bench follows.
 */
import { DEFAULTS } from '../config/config.js';

export const MODES = ['standard', 'stream', 'arrow', 'http', 'openai'] as const;
export type ModeName = (typeof MODES)[number];

/** gRPC modes talk to the multiplexer (or with --direct, to a child's tei.v1 port); the others HTTP. */
export const GRPC_MODES: readonly ModeName[] = ['standard', 'stream', 'arrow'];
export const isGrpcMode = (m: ModeName): boolean => GRPC_MODES.includes(m);

export const BENCH_DEFAULTS = {
  mode: 'standard' as ModeName,
  /** The manager's gRPC multiplexer on this host. */
  grpcEndpoint: `127.0.0.1:${DEFAULTS.grpc_port}`,
  /** The manager's HTTP listener on this host. */
  httpEndpoint: `http://127.0.0.1:${DEFAULTS.api_port}`,
  numTexts: 10_000,
  /** Texts per request for stream, arrow, http and openai (standard sends one). */
  batchSize: 100,
  concurrency: 32,
  /** The manager's own limit, so a batch it accepts is a batch the bench can send. */
  maxMessageSizeMb: DEFAULTS.grpc_max_message_size_mb,
  /** Per-request deadline. */
  timeoutSecs: 60,
  /** How long to wait for the gRPC channel before the clock starts. */
  connectTimeoutSecs: 5,
  warmup: 0,
} as const;

/** Routing target: a multiplexer Target, or the `model` field of an HTTP body. */
export type TargetSpec = { kind: 'instance_name'; value: string } | { kind: 'model_id'; value: string } | { kind: 'instance_index'; value: number };

export function describeTarget(t: TargetSpec | undefined): string | null {
  return t === undefined ? null : `${t.kind}:${t.value}`;
}

export interface TlsFiles {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

export interface Endpoint {
  /** As given on the command line. */
  raw: string;
  /** host:port for gRPC. */
  authority: string;
  /** https:// was given. */
  tls: boolean;
  /** Origin for HTTP (scheme://host:port). */
  origin: string;
  /** Path prefix for HTTP routes ('' or '/prefix'). */
  basePath: string;
}

export interface BenchOptions {
  mode: ModeName;
  endpoint: Endpoint;
  target?: TargetSpec;
  /** tei.v1 straight to a child (standard and stream modes). */
  direct: boolean;
  sparse: boolean;
  noop: boolean;
  truncate: boolean;
  /** LZ4_FRAME on Arrow request bodies. */
  compress: boolean;
  /** openai mode: encoding_format. */
  encodingFormat: 'float' | 'base64';
  texts: string[];
  /** Where the texts came from (a file, or the generator's seed). */
  textsSource: string;
  /** Texts to send; with `durationSecs` the texts cycle until time is up instead. */
  numTexts: number;
  durationSecs?: number;
  batchSize: number;
  concurrency: number;
  warmup: number;
  apiKey?: string;
  tlsFiles: TlsFiles;
  maxMessageBytes: number;
  timeoutMs: number;
  connectTimeoutMs: number;
  /** Draw a progress bar (only ever on a terminal). */
  progress: boolean;
}

/**
 * Parse `-e/--endpoint`: `host:port`, `http://host:port[/prefix]` or `https://...` (TLS). A bare
 * `host:port` is plain text, gRPC or HTTP alike.
 */
export function parseEndpoint(raw: string): Endpoint {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new RangeError(`not a host:port or http(s):// URL: '${raw}'`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new RangeError(`scheme must be http:// or https://, got '${url.protocol}//'`);
  if (url.hostname === '') throw new RangeError(`no host in '${raw}'`);
  const tls = url.protocol === 'https:';
  const port = url.port !== '' ? url.port : tls ? '443' : '80';
  const host = url.hostname;
  return {
    raw,
    authority: `${host}:${port}`,
    tls,
    origin: `${url.protocol}//${host}:${port}`,
    basePath: url.pathname.replace(/\/+$/, ''),
  };
}
